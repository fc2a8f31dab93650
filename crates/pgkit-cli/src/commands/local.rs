//! `pgkit local start|stop|status`: the embedded development PostgreSQL.
//!
//! The same cluster code as the test harness and `dave serve`: a data
//! directory, a Unix socket inside it, no TCP. `start` leaves the server
//! running after pgkit exits and prints its URL on stdout.

use pgkit::local::{LocalCluster, LocalOptions, LocalStatus};

use super::{outln, QuietExit};
use crate::cli::{LocalAction, LocalArgs};

/// `local status` when no server runs: 3, as `pg_ctl status` exits.
const NOT_RUNNING: u8 = 3;

pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    let opts = LocalOptions::new(absolute(&args.data_dir)?);
    match args.action {
        LocalAction::Start => {
            let was_running = matches!(
                LocalCluster::status(&opts.data_dir),
                LocalStatus::Running { .. }
            );
            let before = ancestor_modes(&opts.data_dir);
            let cluster = LocalCluster::start(opts).await?;
            // Run as root, the server runs as `postgres`, and the folders
            // above the data directory are made traversable for it: say so.
            for (dir, old) in before {
                let new = mode_of(&dir);
                if new.is_some_and(|new| new != old) {
                    eprintln!(
                        "changed the mode of {} from {:04o} to {:04o} (o+x), so the postgres user can reach the data directory",
                        dir.display(),
                        old,
                        new.unwrap_or(old)
                    );
                }
            }
            eprintln!(
                "local PostgreSQL {} in {} (pid {})",
                if was_running {
                    "already running"
                } else {
                    "started"
                },
                cluster.data_dir().display(),
                cluster
                    .pid()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "?".into())
            );
            outln(cluster.url("postgres"))?;
        }
        LocalAction::Stop => match LocalCluster::attach(opts.clone()).await? {
            Some(cluster) => {
                cluster.stop().await?;
                eprintln!("local PostgreSQL in {} stopped", opts.data_dir.display());
            }
            None => eprintln!(
                "local PostgreSQL in {} is not running",
                opts.data_dir.display()
            ),
        },
        LocalAction::Status => match LocalCluster::status(&opts.data_dir) {
            LocalStatus::NotInitialized => {
                outln(format_args!(
                    "not initialized: {} holds no cluster (`pgkit local start` creates it)",
                    opts.data_dir.display()
                ))?;
                return Err(QuietExit(NOT_RUNNING).into());
            }
            LocalStatus::Stopped => {
                outln(format_args!("stopped: {}", opts.data_dir.display()))?;
                return Err(QuietExit(NOT_RUNNING).into());
            }
            LocalStatus::Running { pid } => {
                let url = LocalCluster::attach(opts.clone())
                    .await?
                    .map(|c| c.url("postgres"))
                    .unwrap_or_default();
                outln(format_args!("running: pid {pid}, {url}"))?;
            }
        },
    }
    Ok(())
}

/// The permission bits of each existing folder above `dir`.
fn ancestor_modes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    dir.ancestors()
        .skip(1)
        .filter_map(|d| mode_of(d).map(|m| (d.to_path_buf(), m)))
        .collect()
}

fn mode_of(dir: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(dir)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

fn absolute(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    if dir.is_absolute() {
        return Ok(dir.to_path_buf());
    }
    Ok(std::env::current_dir()?.join(dir))
}
