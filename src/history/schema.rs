//! Versioned migrations, the same on both databases. `schema_version` holds one row per migration
//! applied; a database whose newest version is above [`SCHEMA_VERSION`] was written by a newer
//! smart-rerun and is refused rather than misread.

use super::backend::{Backend, DbError, Dialect, Value};

/// The newest schema this binary knows.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// Migration `i` brings the schema to version `i + 1`. `{id}` is the dialect's auto-numbered key.
///
/// `results` repeats its run's start so that the lookups a report needs are index-only:
/// `results_test` gives a test's newest runs in order and its first run, the small partial index
/// `results_flaky` its flaky runs and the flaky tests of a period.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE runs (
    id {id},
    run_key TEXT NOT NULL UNIQUE,
    started_at BIGINT NOT NULL,
    duration_seconds DOUBLE PRECISION NOT NULL,
    commit_sha TEXT,
    branch TEXT,
    pull_request BIGINT,
    ci_platform TEXT,
    ci_job TEXT,
    ci_url TEXT,
    pytest_version TEXT,
    python_version TEXT,
    settings TEXT,
    exit_code BIGINT NOT NULL,
    tests BIGINT NOT NULL,
    recorded_by TEXT NOT NULL
);
CREATE INDEX runs_started_at ON runs (started_at);
CREATE TABLE results (
    run_id BIGINT NOT NULL,
    nodeid TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    duration_seconds DOUBLE PRECISION NOT NULL,
    attempts BIGINT NOT NULL,
    category TEXT
);
CREATE INDEX results_test ON results (nodeid, started_at, run_id, outcome);
CREATE INDEX results_flaky ON results (nodeid, started_at) WHERE outcome = 'flaky';
CREATE TABLE attempts (
    run_id BIGINT NOT NULL,
    nodeid TEXT NOT NULL,
    number BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    duration_seconds DOUBLE PRECISION NOT NULL,
    phase TEXT,
    exception_type TEXT,
    message TEXT,
    fingerprint TEXT,
    category TEXT
);
CREATE INDEX attempts_nodeid ON attempts (nodeid, run_id);
"#];

#[derive(Debug, thiserror::Error)]
pub(crate) enum MigrateError {
    #[error(
        "the database has history schema version {found}, newer than this smart-rerun knows \
         ({SCHEMA_VERSION}): upgrade smart-rerun, or point --history at another database"
    )]
    Newer { found: i64 },
    #[error("{0}")]
    Db(#[from] DbError),
}

/// Brings the schema up to date, in one transaction that holds the write lock (two processes starting
/// on an empty database migrate it once).
pub(crate) fn migrate(db: &mut dyn Backend) -> Result<(), MigrateError> {
    // Fast path, without a write lock: already current.
    if let Ok(rows) = db.query("SELECT MAX(version) FROM schema_version", &[]) {
        let found = rows.first().and_then(|r| r[0].int()).unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(MigrateError::Newer { found });
        }
        if found == SCHEMA_VERSION {
            return Ok(());
        }
    }
    db.begin_write()?;
    match migrate_locked(db) {
        Ok(()) => {
            db.batch("COMMIT")?;
            Ok(())
        }
        Err(e) => {
            let _ = db.batch("ROLLBACK");
            Err(e)
        }
    }
}

fn migrate_locked(db: &mut dyn Backend) -> Result<(), MigrateError> {
    let id = match db.dialect() {
        Dialect::Sqlite => "INTEGER PRIMARY KEY",
        Dialect::Postgres => {
            // Serialises concurrent first runs (CREATE TABLE IF NOT EXISTS races in PostgreSQL).
            db.query("SELECT pg_advisory_xact_lock(7262331)", &[])?;
            "BIGSERIAL PRIMARY KEY"
        }
    };
    db.batch(
        "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL, applied_at TEXT)",
    )?;
    let rows = db.query("SELECT MAX(version) FROM schema_version", &[])?;
    let found = rows.first().and_then(|r| r[0].int()).unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(MigrateError::Newer { found });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        db.batch(&sql.replace("{id}", id))?;
        db.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
            &[
                Value::Int(Some(i as i64 + 1)),
                Value::Text(Some(crate::timestamp::now_rfc3339())),
            ],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn there_is_one_migration_per_version() {
        assert_eq!(super::MIGRATIONS.len() as i64, super::SCHEMA_VERSION);
    }
}
