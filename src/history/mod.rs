//! Memory across runs: a store of every run's tests and attempts, so reports can say "known flaky:
//! flaked 7 of the last 50 runs" or "failing since abc1234". The main type is [`Store`], one interface
//! over an embedded SQLite file (the default) and a PostgreSQL server (for teams), with the same
//! schema, migrations ([`schema`]) and queries ([`query`]).
//!
//! History is optional and never changes a run's result: a missing, corrupt, locked or unreachable
//! store is one warning line ([`RunHistory`]), and what it may add to a run is bounded in time
//! ([`RUN_BUDGET`]). What history says reaches the renderers through the report model
//! ([`crate::model::TestHistory`]), never through this module.

pub(crate) mod backend;
pub(crate) mod cli;
mod location;
mod prior;
pub(crate) mod query;
pub(crate) mod record;
pub(crate) mod schema;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_render;

pub(crate) use backend::{Backend, DbError, Dialect, Value};
pub(crate) use location::Location;
pub(crate) use prior::HistoryPrior;

use crate::model::RunReport;

use std::io::Write;
use std::time::{Duration, Instant};

/// The most a run may spend on history: opening, looking up and recording together.
pub(crate) const RUN_BUDGET: Duration = Duration::from_millis(4_500);

/// How long a `history` subcommand waits for a lock or a server.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub(crate) enum HistoryError {
    #[error("there is no history database at {0}")]
    Missing(String),
    #[error("cannot open the history at {location}")]
    Open {
        location: String,
        #[source]
        source: DbError,
    },
    #[error("the history at {location} cannot be used")]
    Schema {
        location: String,
        #[source]
        source: schema::MigrateError,
    },
    #[error("failed to {what} the history at {location}")]
    Query {
        what: &'static str,
        location: String,
        #[source]
        source: DbError,
    },
}

/// An open, migrated history store.
pub(crate) struct Store {
    db: Box<dyn Backend>,
    location: Location,
}

impl Store {
    /// Opens the store at `location` and brings its schema up to date; waits at most `timeout` for a
    /// server or a lock. A SQLite file is created when `create`, else it must exist.
    pub(crate) fn open(
        location: &Location,
        create: bool,
        timeout: Duration,
    ) -> Result<Store, HistoryError> {
        let shown = location.redacted();
        let mut db: Box<dyn Backend> = match location {
            Location::Sqlite(path) => {
                if !create && !path.exists() {
                    return Err(HistoryError::Missing(shown));
                }
                if create {
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        let _ = std::fs::create_dir_all(dir);
                    }
                }
                Box::new(
                    backend::Sqlite::open(path, create, timeout).map_err(|source| {
                        HistoryError::Open {
                            location: shown.clone(),
                            source,
                        }
                    })?,
                )
            }
            Location::Postgres(url) => Box::new(
                // Within a run's budget every statement is bounded too; a `history` command may
                // scan a large history for as long as it takes.
                backend::Postgres::connect(
                    url,
                    timeout,
                    (timeout <= RUN_BUDGET).then_some(timeout),
                )
                .map_err(|source| HistoryError::Open {
                    location: shown.clone(),
                    source,
                })?,
            ),
        };
        schema::migrate(db.as_mut()).map_err(|source| HistoryError::Schema {
            location: shown.clone(),
            source,
        })?;
        Ok(Store {
            db,
            location: location.clone(),
        })
    }

    pub(crate) fn location(&self) -> &Location {
        &self.location
    }

    /// The open database, for the read-only queries of other modules (the MCP server's, the dashboard's), which wrap
    /// their errors with [`Store::read_error`].
    pub(crate) fn backend(&mut self) -> &mut dyn Backend {
        self.db.as_mut()
    }

    /// A failed read of this store, as its error.
    pub(crate) fn read_error(&self, source: DbError) -> HistoryError {
        HistoryError::Query {
            what: "read",
            location: self.location.redacted(),
            source,
        }
    }

    fn wrap<T>(&self, what: &'static str, r: Result<T, DbError>) -> Result<T, HistoryError> {
        r.map_err(|source| HistoryError::Query {
            what,
            location: self.location.redacted(),
            source,
        })
    }

    /// Records a run in one transaction.
    pub(crate) fn record(
        &mut self,
        run: &record::RunRecord,
        report: &RunReport,
    ) -> Result<record::Recorded, HistoryError> {
        let r = record::record(self.db.as_mut(), run, report);
        self.wrap("write to", r)
    }

    /// What history says about the failed and flaky tests of `report`, by index in `report.tests`.
    pub(crate) fn lookup_report(
        &mut self,
        report: &RunReport,
    ) -> Result<Vec<(usize, crate::model::TestHistory)>, HistoryError> {
        let r = query::lookup_report(self.db.as_mut(), report);
        self.wrap("read", r)
    }

    pub(crate) fn flaky_tests(
        &mut self,
        since: i64,
    ) -> Result<Vec<query::FlakyTest>, HistoryError> {
        let r = query::flaky_tests(self.db.as_mut(), since);
        self.wrap("read", r)
    }

    pub(crate) fn test_runs(
        &mut self,
        nodeid: &str,
        limit: i64,
    ) -> Result<Vec<query::TestRun>, HistoryError> {
        let r = query::test_runs(self.db.as_mut(), nodeid, limit);
        self.wrap("read", r)
    }

    #[cfg(test)]
    pub(crate) fn run_count(&mut self) -> Result<i64, HistoryError> {
        let r = query::run_count(self.db.as_mut());
        self.wrap("read", r)
    }

    /// Deletes the runs started before `cutoff` (Unix ms); returns how many.
    pub(crate) fn prune(&mut self, cutoff: i64) -> Result<u64, HistoryError> {
        let r = record::prune(self.db.as_mut(), cutoff);
        self.wrap("prune", r)
    }

    /// Waits at most `timeout` from now on for another writer's lock (SQLite) or for one statement
    /// (PostgreSQL).
    fn set_timeout(&mut self, timeout: Duration) {
        let ms = timeout.as_millis().max(1);
        let _ = match self.db.dialect() {
            Dialect::Sqlite => self.db.batch(&format!("PRAGMA busy_timeout = {ms}")),
            Dialect::Postgres => self.db.batch(&format!("SET statement_timeout = {ms}")),
        };
    }
}

/// History during `smart-rerun run`: looked up before the reports are written, recorded after, within
/// [`RUN_BUDGET`] in all. The first problem is said in one warning line and history is off for the
/// rest of the run; the run's result never depends on it.
pub(crate) struct RunHistory {
    store: Option<Store>,
    started: Instant,
}

impl RunHistory {
    /// Opens the history named by the `smart_rerun_history` setting (none: off) and attaches what it
    /// says about the failed and flaky tests to `report`.
    pub(crate) fn start(
        setting: Option<&str>,
        report: &mut RunReport,
        warn: &mut dyn Write,
    ) -> RunHistory {
        let started = Instant::now();
        let mut h = RunHistory {
            store: None,
            started,
        };
        let Some(text) = setting else { return h };
        let location = match Location::parse(text) {
            Ok(l) => l,
            Err(e) => {
                warning(warn, &e);
                return h;
            }
        };
        let mut store = match Store::open(&location, true, RUN_BUDGET) {
            Ok(s) => s,
            Err(e) => {
                warning(warn, &e);
                return h;
            }
        };
        match store.lookup_report(report) {
            Ok(found) => {
                for (i, history) in found {
                    report.tests[i].history = Some(Box::new(history));
                }
                h.store = Some(store);
            }
            Err(e) => warning(warn, &e),
        }
        h
    }

    /// Records the run, with the commit, branch and CI job from `env` (and git in `cwd`, outside CI).
    pub(crate) fn record(
        mut self,
        report: &RunReport,
        env: &dyn Fn(&str) -> Option<String>,
        cwd: &std::path::Path,
        warn: &mut dyn Write,
    ) {
        let Some(mut store) = self.store.take() else {
            return;
        };
        let left = RUN_BUDGET.saturating_sub(self.started.elapsed());
        if left.is_zero() {
            let _ = writeln!(
                warn,
                "smart-rerun: warning: history: this run was not recorded in {}: out of time",
                store.location()
            );
            return;
        }
        store.set_timeout(left);
        let mut run = record::RunRecord::from_report(report);
        let in_ci = env("CI").is_some_and(|v| !v.is_empty() && v != "false");
        let git = (!in_ci).then(|| record::GitInfo::read(cwd));
        run.fill_from_env(env, git.as_ref());
        if let Err(e) = store.record(&run, report) {
            warning(warn, &e);
        }
    }
}

fn warning(out: &mut dyn Write, e: &dyn std::error::Error) {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    // One line, whatever the database said.
    let text = text.replace(['\n', '\r'], " ");
    let _ = writeln!(
        out,
        "smart-rerun: warning: history not used: {text} (the run's result is unchanged)"
    );
}
