//! Seeds: reference rows applied on every run, test data only in tests.
//!
//! `seeds/*.sql` (default prompts, lookup rows) run on every `seed`, so each
//! must be idempotent (`INSERT … ON CONFLICT DO NOTHING | DO UPDATE`).
//! `data/*.sql` (fixtures) run only when the session's environment is `test`;
//! the session's `app.environment` is set from the same value, so the
//! standard's in-file guard `current_setting('app.environment', true) =
//! 'test'` agrees with the runner. Files run as written, like migrations
//! (statement by statement, their own `BEGIN`/`COMMIT` honoured, otherwise
//! one transaction per file), in order of their leading number then name,
//! under an advisory lock so two instances do not seed at once. Nothing is
//! recorded: seeds are meant to run again.

use std::path::Path;
use std::time::Duration;

use crate::connect::{Notice, SessionParams};
use crate::dsn::Dsn;
use crate::migrate::runner::{self, RunError, Script, Session};
use crate::migrate::{lock_key, normalize, sql, Event, MigrateError, MigrationSource, SourceFile};

/// The two seed folders of a service.
#[derive(Debug, Clone)]
pub struct SeedFiles {
    /// Applied on every run.
    pub seeds: MigrationSource,
    /// Applied only when the environment is `test`.
    pub data: MigrationSource,
}

impl SeedFiles {
    /// `DIR/seeds` and `DIR/data` of a migrations directory; either may be absent.
    pub fn from_dir(migrations_dir: &Path) -> SeedFiles {
        SeedFiles {
            seeds: MigrationSource::Dir(migrations_dir.join("seeds")),
            data: MigrationSource::Dir(migrations_dir.join("data")),
        }
    }
}

/// How seeding behaves.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// How long to wait for another instance that is seeding. Default 300 s.
    pub lock_timeout: Duration,
    /// The session's statement_timeout; `None` (default) for no limit.
    pub statement_timeout: Option<Duration>,
}

impl Default for SeedOptions {
    fn default() -> Self {
        SeedOptions {
            lock_timeout: Duration::from_secs(300),
            statement_timeout: None,
        }
    }
}

/// What `run` applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub seeds: Vec<String>,
    pub data: Vec<String>,
    /// `data/` files not run because the environment is not `test`.
    pub data_skipped: usize,
}

/// Applies `seeds/` in order, then `data/` when `params.environment` is
/// `test`. Stops at the first failing file (that file is rolled back).
pub async fn run(
    dsn: &Dsn,
    params: &SessionParams,
    files: &SeedFiles,
    options: &SeedOptions,
    mut on_event: impl FnMut(&Event) + Send,
) -> Result<SeedReport, MigrateError> {
    let seeds = ordered(files.seeds.files_if_present()?);
    let data = ordered(files.data.files_if_present()?);
    let run_data = params.environment == "test";
    let mut session = Session::open(dsn, params, options.statement_timeout).await?;
    let key = lock_key("pgkit_seeds");
    crate::migrate::lock::acquire(&session.client, key, options.lock_timeout, |w| {
        on_event(&Event::WaitingForLock {
            waited: w.waited,
            timeout: w.timeout,
            holder: w.holder,
        })
    })
    .await?;
    let mut report = SeedReport::default();
    let result = async {
        for f in &seeds {
            apply(&mut session, "seeds", f, &mut on_event).await?;
            report.seeds.push(format!("seeds/{}", f.name));
        }
        if run_data {
            for f in &data {
                apply(&mut session, "data", f, &mut on_event).await?;
                report.data.push(format!("data/{}", f.name));
            }
        } else if !data.is_empty() {
            report.data_skipped = data.len();
            on_event(&Event::DataSkipped {
                files: data.len(),
                environment: params.environment.clone(),
            });
        }
        Ok::<_, MigrateError>(())
    }
    .await;
    crate::migrate::lock::release(&session.client, key).await;
    result.map(|()| report)
}

/// Files by leading number (unnumbered last), then by name.
fn ordered(mut files: Vec<SourceFile>) -> Vec<SourceFile> {
    files.sort_by_key(|f| {
        let digits: String = f.name.chars().take_while(char::is_ascii_digit).collect();
        (digits.parse::<u64>().unwrap_or(u64::MAX), f.name.clone())
    });
    files
}

/// Runs one seed file; `folder` ("seeds" or "data") prefixes its name in
/// progress and errors.
async fn apply(
    session: &mut Session,
    folder: &str,
    file: &SourceFile,
    on_event: &mut (dyn FnMut(&Event) + Send),
) -> Result<(), MigrateError> {
    let name = format!("{folder}/{}", file.name);
    let text = normalize(&file.text);
    let statements = sql::split(&text);
    let mode = crate::migrate::source_tx_mode(&name, &text, &statements)?;
    on_event(&Event::Applying { name: name.clone() });
    let script = Script {
        name: &name,
        sql: &text,
        statements: &statements,
        mode: &mode,
    };
    let mut forward = |n: Notice| {
        on_event(&Event::Notice {
            name: name.clone(),
            severity: n.severity,
            message: n.message,
        })
    };
    match runner::run(session, &script, None, &mut forward).await {
        Ok(elapsed) => {
            on_event(&Event::Applied {
                name: name.clone(),
                elapsed,
            });
            Ok(())
        }
        Err(RunError::File(f)) => Err(MigrateError::SeedFailed(Box::new(f))),
        Err(RunError::Record(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_run_in_number_then_name_order() {
        let f = |n: &str| SourceFile {
            name: n.into(),
            text: String::new(),
        };
        let names: Vec<String> = ordered(vec![
            f("prompts.sql"),
            f("10_b.sql"),
            f("2_a.sql"),
            f("002_0.sql"),
        ])
        .into_iter()
        .map(|f| f.name)
        .collect();
        assert_eq!(names, ["002_0.sql", "2_a.sql", "10_b.sql", "prompts.sql"]);
    }
}
