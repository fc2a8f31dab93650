//! `pgkit`: parse the command line, run it, pick the exit code.
//!
//! Exit codes: 0 success; 1 a failure the user can fix (the error, then one
//! `hint:` line saying how); 2 bad usage (clap's own); 141 standard output
//! was closed by its reader (quietly, as a shell reports SIGPIPE).

mod cli;
mod commands;

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
        Err(e) => {
            eprintln!("error: {}", commands::message(&e));
            eprintln!("hint: {}", commands::hint(&e));
            ExitCode::from(1)
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
        .init();
}
