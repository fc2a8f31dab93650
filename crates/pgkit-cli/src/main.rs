//! `pgkit`: parse the command line, run it, pick the exit code.
//!
//! Exit codes: 0 success; 1 a failure the user can fix (the error, then one
//! `hint:` line saying how); 2 bad usage (clap's own); 141 standard output
//! was closed by its reader (quietly, as a shell reports SIGPIPE); 3 from
//! `local status` when no server runs (as `pg_ctl status`); 130 (SIGINT) or
//! 143 (SIGTERM) when `migrate up` was stopped by that signal, after it
//! cancelled and rolled back the running file.

mod cli;
mod commands;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away (`pgkit lint | head -1`): stop
        // quietly with the status a shell shows for SIGPIPE (128 + 13).
        Err(e) if e.is::<commands::ClosedPipe>() => ExitCode::from(141),
        Err(e) if e.is::<commands::QuietExit>() => match e.downcast_ref() {
            Some(commands::QuietExit(code)) => ExitCode::from(*code),
            None => ExitCode::FAILURE,
        },
        Err(e) => {
            eprintln!("error: {}", commands::message(&e));
            eprintln!("hint: {}", commands::hint(&e));
            // Stopped by Ctrl-C or SIGTERM, after cleaning up: the status a
            // shell shows for that signal.
            match e.downcast_ref::<pgkit::migrate::MigrateError>() {
                Some(pgkit::migrate::MigrateError::Interrupted(i)) => {
                    ExitCode::from(i.signal.exit_code())
                }
                _ => ExitCode::from(1),
            }
        }
    }
}

/// Logs to stderr (stdout is for results such as `status --json`); RUST_LOG
/// picks the level, warnings by default.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not into files or pipes.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
