//! `DB_IAM_AUTH=true` on the operator's tool: the password is an IAM token,
//! and a token that cannot be had is a clear, fixable error (exit 1).

use std::process::Command;

const PGKIT: &str = env!("CARGO_BIN_EXE_pgkit");

#[test]
fn without_a_token_source_iam_login_fails_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(PGKIT)
        .args(["migrate", "--dir"])
        .arg(dir.path())
        .arg("status")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("DB_IAM_AUTH", "true")
        // Loopback port 9 (discard): nothing listens, the refusal is immediate.
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
        .env(
            "DATABASE_URL",
            "postgresql://svc@/db?host=/nonexistent/pgkit",
        )
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot get an IAM access token"),
        "{stderr}"
    );
    assert!(stderr.contains("metadata server"), "{stderr}");
    assert!(stderr.contains("hint: "), "{stderr}");
}
