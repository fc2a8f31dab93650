//! pgkit's commands as a library: the `pgkit` binary is a thin shell over
//! [`run`], and a service binary mounts [`migrate`] and [`seed`] with its
//! own files (`MigrationSource::Embedded`) and its own way to find the
//! database, so `dave migrate` is pgkit's command with dave's files: the
//! same status table, progress lines, errors, Ctrl-C handling and exit
//! codes, with hints that name the program they run in ([`Program`]).
//!
//! Exit codes ([`report`]): 0 success; 1 a failure the user can fix (one
//! `error:` line, then a `hint:` line saying how); 2 bad usage (clap's own);
//! 130 (SIGINT) or 143 (SIGTERM) when `migrate up` was stopped by that
//! signal, after it cancelled and rolled back the running file; 141
//! standard output was closed by its reader (quietly, as a shell reports
//! SIGPIPE); 3 from `local status` when no server runs (as `pg_ctl status`).

pub mod cli;
mod commands;
#[cfg(feature = "testing")]
pub mod testing;

pub use commands::migrate::run as migrate;
pub use commands::seed::run as seed;
pub use commands::{environment_name, hint, message, report, run, Program};
