//! The server process: started by `pg_ctl` (detached) or spawned as our child
//! and watched by the `sh` watchdog (supervised); readiness, signals, the
//! bounded stop, `postmaster.pid` and stale lock files, and whether a pid is a
//! live postgres.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{
    describe_pg_error, Inner, LocalCluster, LocalError, LocalStatus, LOG_FILE, LOG_TAIL_BYTES,
    SOCKET_FILE,
};
use crate::rt::block_on_own_runtime;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(25);
const PID_FILE: &str = "postmaster.pid";

/// State of a cluster whose server is our child.
#[derive(Debug)]
pub(super) struct Supervision {
    /// The watchdog's stdin: dropping it (or our death) makes it stop the server.
    watchdog: Mutex<Option<ChildStdin>>,
    /// The current server process, until it is stopped.
    server: Mutex<Option<Arc<ServerChild>>>,
}

/// A server process we spawned; the reaper thread fills in its exit.
#[derive(Debug)]
struct ServerChild {
    pid: u32,
    exit: Mutex<Option<io::Result<ExitStatus>>>,
}

impl ServerChild {
    fn has_exited(&self) -> bool {
        lock(&self.exit).is_some()
    }

    fn exit_description(&self) -> Option<String> {
        lock(&self.exit).as_ref().map(|r| match r {
            Ok(status) => status.to_string(),
            Err(e) => format!("could not wait for it: {e}"),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    /// Starts the server unless it runs; blocking, does not wait for readiness.
    pub(super) fn start_server_if_stopped(&self) -> Result<(), LocalError> {
        if let LocalStatus::Running { .. } = LocalCluster::status(&self.data_dir) {
            return Ok(());
        }
        self.remove_stale_lock_files();
        self.prepare_socket_dir()?;
        self.write_conf()?;
        match &self.supervision {
            None => self.pg_ctl_start(),
            Some(supervision) => {
                let child = self.spawn_server()?;
                *lock(&supervision.server) = Some(child);
                Ok(())
            }
        }
    }

    /// A crashed server leaves `postmaster.pid` (and the socket's lock file);
    /// if its pid now belongs to another process, PostgreSQL would refuse to
    /// start, so we remove files whose process is no live postgres.
    fn remove_stale_lock_files(&self) {
        let candidates = [
            self.data_dir.join(PID_FILE),
            self.socket_dir.join(format!("{SOCKET_FILE}.lock")),
        ];
        for file in candidates {
            let stale = match fs::read_to_string(&file) {
                Ok(text) => text
                    .lines()
                    .next()
                    .and_then(|l| l.trim().parse::<i64>().ok())
                    .is_none_or(|pid| !is_live_postgres(pid.unsigned_abs() as u32)),
                Err(_) => false,
            };
            if stale {
                tracing::info!(file = %file.display(), "removing stale PostgreSQL lock file");
                let _ = fs::remove_file(&file);
            }
        }
    }

    /// The server log, opened for appending and owned by the server's user.
    fn open_log(&self) -> Result<fs::File, LocalError> {
        let path = self.data_dir.join(LOG_FILE);
        let file = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(LocalError::io("open the server log", &path))?;
        if let Some(user) = self.server_user {
            user.chown(&path)?;
        }
        Ok(file)
    }

    fn pg_ctl_start(&self) -> Result<(), LocalError> {
        drop(self.open_log()?);
        let timeout = START_TIMEOUT.as_secs().to_string();
        let out = self
            .command("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.data_dir.join(LOG_FILE))
            .args(["-w", "-t", &timeout, "-s"])
            .output()
            .map_err(LocalError::io("run pg_ctl from", &self.bin_dir))?;
        if out.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err(self.start_error(format!("pg_ctl start failed ({}): {said}", out.status)))
    }

    /// Spawns `postgres` as our child and a thread that reaps it.
    fn spawn_server(&self) -> Result<Arc<ServerChild>, LocalError> {
        let log = self.open_log()?;
        let log_err = log.try_clone().map_err(LocalError::io(
            "open the server log",
            self.data_dir.join(LOG_FILE),
        ))?;
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .stdout(log)
            .stderr(log_err)
            // Its own process group: a Ctrl-C meant for us must not reach it;
            // we (or the watchdog) decide when it stops.
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(LocalError::io("run postgres from", &self.bin_dir))?;
        let server = Arc::new(ServerChild {
            pid: child.id(),
            exit: Mutex::new(None),
        });
        let for_reaper = Arc::clone(&server);
        std::thread::Builder::new()
            .name("pgkit-postgres-reaper".to_owned())
            .spawn(move || {
                let mut child = child;
                let status = child.wait();
                *lock(&for_reaper.exit) = Some(status);
            })
            .map_err(LocalError::io("start a thread for", &self.data_dir))?;
        Ok(server)
    }

    /// Starts the watchdog that stops the server once this process is gone.
    pub(super) fn spawn_watchdog(
        &self,
        remove_on_exit: Option<&Path>,
    ) -> Result<Supervision, LocalError> {
        let mut child: Child = Command::new("/bin/sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("pgkit-watchdog")
            .arg(&self.data_dir)
            .arg(remove_on_exit.unwrap_or(Path::new("")))
            .arg(match remove_on_exit {
                Some(_) if self.socket_dir != self.data_dir => self.socket_dir.as_path(),
                _ => Path::new(""),
            })
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(LocalError::io(
                "start the watchdog (/bin/sh) for",
                &self.data_dir,
            ))?;
        let stdin = child.stdin.take();
        std::thread::Builder::new()
            .name("pgkit-watchdog-reaper".to_owned())
            .spawn(move || {
                let _ = child.wait();
            })
            .map_err(LocalError::io("start a thread for", &self.data_dir))?;
        Ok(Supervision {
            watchdog: Mutex::new(stdin),
            server: Mutex::new(None),
        })
    }

    /// Waits (bounded) until the server accepts connections; blocking.
    pub(super) fn wait_ready(&self) -> Result<(), LocalError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let config = self.config("postgres");
        loop {
            let attempt = block_on_own_runtime(async {
                let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                drop(client);
                connection.await
            })
            .map_err(LocalError::io(
                "run a runtime to connect to",
                &self.socket_dir,
            ))?;
            let last_error = match attempt {
                Ok(()) => return Ok(()),
                Err(e) => describe_pg_error(&e),
            };
            if let Some(exit) = self.current_server().and_then(|s| s.exit_description()) {
                return Err(self.start_error(format!("postgres exited ({exit})")));
            }
            if Instant::now() >= deadline {
                return Err(self.start_error(format!(
                    "it did not accept connections on {} within {} s (last error: {last_error})",
                    self.socket_dir.display(),
                    START_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(POLL * 2);
        }
    }

    fn current_server(&self) -> Option<Arc<ServerChild>> {
        self.supervision
            .as_ref()
            .and_then(|s| lock(&s.server).clone())
    }

    fn start_error(&self, reason: String) -> LocalError {
        let log = self.data_dir.join(LOG_FILE);
        LocalError::Start {
            data_dir: self.data_dir.clone(),
            reason,
            log_tail: read_tail(&log).unwrap_or_else(|e| format!("(could not read it: {e})")),
            log,
        }
    }

    /// Signals the postmaster; a process that is already gone is fine.
    fn signal(&self, pid: u32, sig: rustix::process::Signal) -> Result<(), LocalError> {
        let Some(target) = rustix::process::Pid::from_raw(pid as i32) else {
            return Ok(());
        };
        match rustix::process::kill_process(target, sig) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::SRCH => Ok(()),
            Err(e) => Err(LocalError::Stop {
                data_dir: self.data_dir.clone(),
                reason: format!(
                    "could not signal its server process {pid} ({e}); stop it as the user who \
                     started it"
                ),
            }),
        }
    }

    /// Fast shutdown, bounded; then immediate shutdown; then an error.
    pub(super) fn stop_blocking(&self) -> Result<(), LocalError> {
        let ours = self.current_server();
        let pid = match read_pid_file(&self.data_dir) {
            Some(p) if is_live_postgres(p.pid) => Some(p.pid),
            _ => None,
        };
        if let Some(pid) = pid {
            let running = || {
                is_live_postgres(pid)
                    || ours
                        .as_ref()
                        .is_some_and(|s| s.pid == pid && !s.has_exited())
            };
            self.signal(pid, rustix::process::Signal::INT)?;
            if !wait_until(STOP_TIMEOUT, || !running()) {
                tracing::warn!(
                    pid,
                    "local PostgreSQL ignored fast shutdown; using immediate shutdown"
                );
                self.signal(pid, rustix::process::Signal::QUIT)?;
                if !wait_until(KILL_TIMEOUT, || !running()) {
                    return Err(LocalError::Stop {
                        data_dir: self.data_dir.clone(),
                        reason: format!(
                            "process {pid} still runs {} s after fast and immediate shutdown",
                            (STOP_TIMEOUT + KILL_TIMEOUT).as_secs()
                        ),
                    });
                }
            }
        }
        if let Some(server) = &ours {
            // Our child, if it died on its own, still needs reaping to vanish.
            wait_until(KILL_TIMEOUT, || server.has_exited());
        }
        if let Some(supervision) = &self.supervision {
            *lock(&supervision.server) = None;
        }
        self.remove_stale_lock_files();
        Ok(())
    }
}

impl Drop for Supervision {
    fn drop(&mut self) {
        // End-of-file on its stdin makes the watchdog stop the server (and
        // remove the directory it was given); it does so off our thread.
        lock(&self.watchdog).take();
    }
}

/// The watchdog: `$1` data directory, `$2` and `$3` directories to remove
/// afterwards (or empty: the cluster's root and a socket dir outside it). `cat` returns when the pipe's writer, this process, is gone (closed
/// on exit, crash or SIGKILL alike). Signals from the terminal are ignored so
/// that a Ctrl-C of the test run still gets its cleanup. The server is found
/// through `postmaster.pid` at that moment, so a stopped cluster is left alone.
const WATCHDOG_SCRIPT: &str = r#"
trap '' HUP INT QUIT TERM PIPE
cat >/dev/null 2>&1
alive() {
  [ -e "/proc/$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = postgres ] &&
    ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}
wait_gone() {
  i=0
  while [ "$i" -lt "$2" ] && alive "$1"; do sleep 0.1; i=$((i + 1)); done
}
pid=$(head -n 1 "$1/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ] && alive "$pid"; then
  kill -INT "$pid" 2>/dev/null
  wait_gone "$pid" 300
  if alive "$pid"; then kill -QUIT "$pid" 2>/dev/null; wait_gone "$pid" 50; fi
  if alive "$pid"; then kill -KILL "$pid" 2>/dev/null; wait_gone "$pid" 50; fi
fi
if [ -n "$2" ]; then rm -rf -- "$2"; fi
if [ -n "$3" ]; then rm -rf -- "$3"; fi
"#;

/// Polls `done` until it holds or `timeout` passes; says whether it held.
pub(crate) fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Whether `pid` is a running (not zombie) postgres process. Without /proc
/// (not Linux) any live process counts, which errs on the safe side.
pub(crate) fn is_live_postgres(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    if Path::new("/proc/self/stat").exists() {
        return match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => proc_stat_is_live_postgres(&stat),
            Err(_) => false,
        };
    }
    let Some(pid) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// `/proc/<pid>/stat` is `pid (comm) state ...`; comm may hold spaces.
fn proc_stat_is_live_postgres(stat: &str) -> bool {
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let comm = &stat[open + 1..close];
    let state = stat[close + 1..].split_whitespace().next().unwrap_or("");
    matches!(comm, "postgres" | "postmaster") && !matches!(state, "Z" | "X" | "x")
}

/// The parts of `postmaster.pid` we use.
pub(super) struct PidFile {
    pub(super) pid: u32,
    pub(super) socket_dir: Option<PathBuf>,
}

pub(super) fn read_pid_file(data_dir: &Path) -> Option<PidFile> {
    let text = fs::read_to_string(data_dir.join(PID_FILE)).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse::<i64>().ok()?.unsigned_abs() as u32;
    // Line 5 is the first socket directory.
    let socket_dir = lines
        .nth(3)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    Some(PidFile { pid, socket_dir })
}

fn read_tail(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_zombies_and_other_programs_are_not_live() {
        assert!(proc_stat_is_live_postgres("42 (postgres) S 1 42 42 0"));
        assert!(!proc_stat_is_live_postgres("42 (postgres) Z 1 42 42 0"));
        assert!(!proc_stat_is_live_postgres("42 (bash) S 1 42 42 0"));
        assert!(!proc_stat_is_live_postgres("42 (post gres) S 1"));
    }
}
