//! A reader that goes away (`pgkit lint | true`, `| head -1`) ends the real
//! binary quietly: no panic message, no exit 101.

use std::path::{Path, PathBuf};
use std::process::Output;

use pgkit::testing;
use pgkit_cli::testing::{pgkit, stderr, with_closed_stdout};

fn dave_migrations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dave/migrations")
}

/// Quiet: nothing on stderr and the status a shell shows for SIGPIPE.
fn assert_quiet(out: &Output) {
    assert_eq!(stderr(out), "", "{out:?}");
    assert_eq!(out.status.code(), Some(141), "{out:?}");
}

#[test]
fn lint_into_a_closed_pipe_stops_quietly() {
    let dir = dave_migrations();
    let out = with_closed_stdout(&mut pgkit(None, &[], &["lint", dir.to_str().unwrap()]));
    assert_quiet(&out);
    let json = with_closed_stdout(&mut pgkit(
        None,
        &[],
        &["lint", dir.to_str().unwrap(), "--format", "json"],
    ));
    assert_quiet(&json);
}

#[tokio::test]
async fn audit_and_migrate_status_into_a_closed_pipe_stop_quietly() {
    let db = testing::cluster().await.database().await;
    let url = Some(db.url());
    assert_quiet(&with_closed_stdout(&mut pgkit(url, &[], &["audit"])));
    let dir = dave_migrations();
    let d = dir.to_str().unwrap();
    assert_quiet(&with_closed_stdout(&mut pgkit(
        url,
        &[],
        &["migrate", "--dir", d, "status"],
    )));
    assert_quiet(&with_closed_stdout(&mut pgkit(
        url,
        &[],
        &["migrate", "--dir", d, "status", "--json"],
    )));
}
