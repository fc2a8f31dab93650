//! What the binary tests share: the real `pgkit` run with a clean
//! environment, its output as text, and a connection for set-up and checks.

#![allow(dead_code)] // each test binary uses part of it

use std::process::{Command, Output};

use tokio_postgres::{Client, NoTls};

pub const PGKIT: &str = env!("CARGO_BIN_EXE_pgkit");

/// `pgkit ARGS` with a clean environment: `PATH`, `DATABASE_URL` when a URL
/// is given, and `env`; run from the temp dir so no `.env` is picked up.
pub fn pgkit(url: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(PGKIT);
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

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A plain connection to `url` (test set-up and checks, not the code under test).
pub async fn connect(url: &str) -> Client {
    let (client, conn) = pgkit::dsn::Dsn::parse(url)
        .unwrap()
        .pg_config()
        .connect(NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// Runs `cmd` with its stdout a pipe whose reader is already closed, as in
/// `pgkit lint | true` once `true` has exited: every write gets EPIPE.
/// stderr is captured.
pub fn with_closed_stdout(cmd: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    cmd.stdout(writer).output().expect("pgkit runs")
}
