//! Finding and running the PostgreSQL server programs (`initdb`, `postgres`,
//! `pg_ctl`): on PATH, else where Debian installs them; each one run from `/`,
//! as the server's user, without the caller's `PG*` variables.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Inner, LocalError};

/// Finds the directory holding `initdb`, `postgres` and `pg_ctl`: the first
/// PATH entry that has all three, else `/usr/lib/postgresql/<highest>/bin`
/// (where Debian installs them without putting them on PATH).
pub fn find_pg_bin() -> Result<PathBuf, LocalError> {
    // The executable search path, read the way a shell reads it; not a setting.
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .filter(|d| d.is_absolute())
        .chain(debian_bin_dirs())
        .find(|d| has_server_binaries(d))
        .ok_or(LocalError::NoBinaries)
}

fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "postgres", "pg_ctl"].iter().all(|name| {
        fs::metadata(dir.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// `/usr/lib/postgresql/<N>/bin`, highest version first.
fn debian_bin_dirs() -> Vec<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

impl Inner {
    /// A command for a PostgreSQL program, run as the server's user.
    pub(super) fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        // The caller's cwd may be unreadable for the server's user.
        cmd.current_dir("/").stdin(Stdio::null());
        for var in [
            "PGDATA",
            "PGPORT",
            "PGHOST",
            "PGUSER",
            "PGDATABASE",
            "PGOPTIONS",
        ] {
            cmd.env_remove(var);
        }
        if let Some(user) = self.server_user {
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }
}
