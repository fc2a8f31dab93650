//! `pgkit`: parse the command line, run it, report how it ended (the exit
//! codes are [`pgkit_cli::report`]'s).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use pgkit_cli::{cli::Cli, Program};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    pgkit_cli::report(pgkit_cli::run(cli), &Program::PGKIT)
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
