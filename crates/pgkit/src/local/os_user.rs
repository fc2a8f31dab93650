//! Running as the `postgres` system user when this process is root:
//! PostgreSQL refuses root, so the server's files and directories are handed
//! to that user and the directories above the data directory are made
//! traversable for it.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use super::{Inner, LocalError};

const SERVER_USER: &str = "postgres";

/// The system user the server runs as when we are root.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl ServerUser {
    /// `None` when not root: then the server runs as we do.
    pub(crate) fn for_this_process() -> Result<Option<Self>, LocalError> {
        if !rustix::process::geteuid().is_root() {
            return Ok(None);
        }
        let uid = id_of(SERVER_USER, "-u")?;
        let gid = id_of(SERVER_USER, "-g")?;
        Ok(Some(Self { uid, gid }))
    }

    /// Whether this user may pass through `meta`'s directory.
    fn can_traverse(&self, meta: &fs::Metadata) -> bool {
        let mode = meta.mode();
        mode & 0o001 != 0
            || (meta.uid() == self.uid && mode & 0o100 != 0)
            || (meta.gid() == self.gid && mode & 0o010 != 0)
    }

    pub(crate) fn chown(&self, path: &Path) -> Result<(), LocalError> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(LocalError::io("change the owner of", path))
    }
}

/// Looks a user up with `id`, which goes through NSS like every other tool.
fn id_of(user: &str, flag: &str) -> Result<u32, LocalError> {
    let out = Command::new("id")
        .args([flag, user])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LocalError::NoServerUser {
            detail: format!("could not run `id`: {e}"),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim().parse() {
        Ok(id) if out.status.success() => Ok(id),
        _ => Err(LocalError::NoServerUser {
            detail: format!(
                "`id {flag} {user}` said: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }),
    }
}

/// Gives every directory above `dir` the o+x bit the server's user lacks.
fn make_parents_traversable(dir: &Path, user: ServerUser) -> Result<(), LocalError> {
    for parent in dir.ancestors().skip(1) {
        let meta = fs::metadata(parent).map_err(LocalError::io("inspect", parent))?;
        if user.can_traverse(&meta) {
            continue;
        }
        let mode = meta.permissions().mode() | 0o001;
        fs::set_permissions(parent, fs::Permissions::from_mode(mode))
            .map_err(LocalError::io("make traversable", parent))?;
        // Said at info: `pgkit local start` prints its own line for it.
        tracing::info!(
            dir = %parent.display(),
            "made the directory traversable (o+x) so the `postgres` user can reach the data directory"
        );
    }
    Ok(())
}

impl Inner {
    /// Creates `dir` (mode 0700) and its parents, hands it to the server's
    /// user, and makes its parents traversable for that user.
    pub(super) fn create_owned_dir(&self, dir: &Path) -> Result<(), LocalError> {
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent).map_err(LocalError::io("create the directory", parent))?;
        }
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(LocalError::io("create the directory", dir)(e)),
        }
        if let Some(user) = self.server_user {
            user.chown(dir)?;
            make_parents_traversable(dir, user)?;
        }
        Ok(())
    }

    /// The data directory holds the socket unless its path is too long; then
    /// a private directory under /tmp does.
    pub(super) fn prepare_socket_dir(&self) -> Result<(), LocalError> {
        if self.socket_dir == self.data_dir {
            return Ok(());
        }
        let dir = &self.socket_dir;
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {
                if let Some(user) = self.server_user {
                    user.chown(dir)?;
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => self.check_private_dir(dir),
            Err(e) => Err(LocalError::io("create the socket directory", dir)(e)),
        }
    }

    /// Anyone who can reach the socket is superuser, so a reused socket
    /// directory must be the server user's own and closed to everyone else.
    fn check_private_dir(&self, dir: &Path) -> Result<(), LocalError> {
        let meta = fs::symlink_metadata(dir).map_err(LocalError::io("inspect", dir))?;
        let owner = self
            .server_user
            .map_or_else(|| rustix::process::geteuid().as_raw(), |u| u.uid);
        if meta.is_dir() && meta.uid() == owner && meta.mode() & 0o077 == 0 {
            return Ok(());
        }
        Err(LocalError::DataDir {
            path: dir.to_owned(),
            reason: format!(
                "the socket directory exists but is not a directory of uid {owner} with mode 0700; \
                 remove it and start again"
            ),
        })
    }
}
