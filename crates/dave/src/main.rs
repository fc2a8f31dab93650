//! `dave`: parse the command line, run the command, report how it ended
//! with pgkit's [`pgkit_cli::report`]: 0 success, 1 a failure the user can
//! fix (`error:` and a `hint:` when there is one), 2 bad usage (clap's),
//! 130/143 when `migrate up` was stopped by SIGINT/SIGTERM.

// No `unwrap()` on the service's code paths: a request must never panic on
// a `None` or an `Err` (issue 12 §4). Tests may (clippy.toml:
// allow-unwrap-in-tests); integration tests are other crates, not linted here.
#![deny(clippy::unwrap_used)]

use std::process::ExitCode;

use clap::Parser;
use dave::cli::{self, Cli};

/// mimalloc instead of glibc's malloc: under load glibc's allocator took
/// about 13% of the service's CPU (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    pgkit_cli::report(cli::run(cli), &cli::PROGRAM)
}
