//! The harness of pgkit-cli's integration tests (feature `testing`): the real
//! `pgkit` binary run with a clean environment, and its output as text.
//!
//! It is a library module, not a `tests/support/mod.rs` compiled into every
//! test binary, because each binary uses a different part of it and an
//! included file would need `#[allow(dead_code)]` to hide the rest; public
//! items of a library are never dead. Connections for set-up and checks come
//! from `pgkit::testing::check`, the throwaway-PostgreSQL harness's own, so
//! there is no second copy here. Nothing in the binary uses this module:
//! plain `cargo build` leaves the feature off. See docs/testing.md.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `pgkit` binary cargo built for this test run
/// (`env!("CARGO_BIN_EXE_pgkit")` only exists in an integration test itself).
pub fn pgkit_binary() -> PathBuf {
    pgkit::testing::cargo_bin("pgkit")
}

/// `pgkit ARGS` with a clean environment: `PATH`, `DATABASE_URL` when a URL
/// is given, and `env`; run from the temp dir so no `.env` is picked up.
pub fn pgkit(url: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(pgkit_binary());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .current_dir(std::env::temp_dir());
    if let Some(url) = url {
        cmd.env("DATABASE_URL", url);
    }
    cmd
}

/// The command's standard output, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The command's standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `cmd` with its stdout a pipe whose reader is already closed, as in
/// `pgkit lint | true` once `true` has exited: every write gets EPIPE.
/// stderr is captured.
pub fn with_closed_stdout(cmd: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    cmd.stdout(writer).output().expect("pgkit runs")
}
