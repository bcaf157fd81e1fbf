//! What a run leaves in history: [`RunRecord`] (the run's metadata: start, duration, commit, branch,
//! pull request, CI job, pytest version, the policy in force) built from a [`RunReport`], and the rows of
//! each test and each attempt, written in one transaction.

use super::backend::{Backend, DbError, Value};
use crate::model::{Outcome, RunReport};

/// The run's metadata. Everything but the start and the report's own numbers is optional: a local
/// run has no CI job, an imported report no branch.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RunRecord {
    /// Identifies the run, so importing the same report twice records it once.
    pub run_key: String,
    /// Unix milliseconds.
    pub started_at: i64,
    pub duration_seconds: f64,
    pub commit_sha: Option<String>,
    pub branch: Option<String>,
    pub pull_request: Option<i64>,
    pub ci_platform: Option<String>,
    pub ci_job: Option<String>,
    pub ci_url: Option<String>,
    pub pytest_version: Option<String>,
    pub python_version: Option<String>,
    /// The retry policy in force, as JSON.
    pub settings: Option<String>,
    pub exit_code: i64,
    pub tests: i64,
}

/// Parses an RFC 3339 time into Unix milliseconds.
pub(crate) fn parse_time(text: &str) -> Option<i64> {
    crate::timestamp::parse_ms(text)
}

/// Unix milliseconds as RFC 3339 (UTC, whole seconds).
pub(crate) fn format_time(ms: i64) -> String {
    crate::timestamp::rfc3339_whole_seconds(ms).unwrap_or_default()
}

impl RunRecord {
    /// The record of a saved report alone (`history import`): what the report says about its CI job.
    pub(crate) fn from_report(report: &RunReport) -> RunRecord {
        let run = &report.run;
        let ci = report.ci.as_ref();
        RunRecord {
            run_key: format!("{}|{}|{}", run.started_at, run.finished_at, run.cwd),
            started_at: parse_time(&run.started_at).unwrap_or(0),
            duration_seconds: run.duration_seconds,
            commit_sha: ci.and_then(|c| c.head_sha.clone().or_else(|| c.commit_sha.clone())),
            branch: None,
            pull_request: ci.and_then(|c| c.pull_request).map(|n| n as i64),
            ci_platform: ci.map(|c| c.platform.clone()),
            ci_job: ci.and_then(|c| c.comment_key.clone()),
            ci_url: ci.and_then(|c| c.run_url.clone()),
            pytest_version: run.pytest_version.clone(),
            python_version: run.python_version.clone(),
            settings: serde_json::to_string(&run.policy).ok(),
            exit_code: run.exit_code.code() as i64,
            tests: report.tests.len() as i64,
        }
    }

    /// Fills what the report does not say from the CI's environment (GitHub Actions, GitLab CI), and
    /// the commit and branch from git where the run was not in CI. For `run`, whose environment is the
    /// run's own.
    pub(crate) fn fill_from_env(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
        git: Option<&GitInfo>,
    ) {
        let non_empty = |n: &str| env(n).filter(|v| !v.trim().is_empty());
        if self.commit_sha.is_none() {
            self.commit_sha = non_empty("CI_COMMIT_SHA")
                .or_else(|| non_empty("GITHUB_SHA"))
                .or_else(|| git.and_then(|g| g.commit.clone()));
        }
        if self.branch.is_none() {
            self.branch = non_empty("GITHUB_HEAD_REF")
                .or_else(|| {
                    (env("GITHUB_REF_TYPE").as_deref() == Some("branch"))
                        .then(|| non_empty("GITHUB_REF_NAME"))
                        .flatten()
                })
                .or_else(|| non_empty("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"))
                .or_else(|| non_empty("CI_COMMIT_BRANCH"))
                .or_else(|| git.and_then(|g| g.branch.clone()));
        }
        if self.ci_job.is_none() {
            self.ci_job = non_empty("CI_JOB_NAME").or_else(|| non_empty("GITHUB_JOB"));
        }
        if self.pull_request.is_none() {
            self.pull_request = non_empty("CI_MERGE_REQUEST_IID").and_then(|v| v.parse().ok());
        }
    }
}

/// The commit and branch of a local checkout.
#[derive(Debug, Clone, Default)]
pub(crate) struct GitInfo {
    pub commit: Option<String>,
    pub branch: Option<String>,
}

impl GitInfo {
    /// Asks git in `dir`; nothing when git or the repository is missing.
    pub(crate) fn read(dir: &std::path::Path) -> GitInfo {
        let ask = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(dir)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .filter(|s| !s.is_empty() && s != "HEAD")
        };
        GitInfo {
            commit: ask(&["rev-parse", "HEAD"]),
            branch: ask(&["rev-parse", "--abbrev-ref", "HEAD"]),
        }
    }
}

/// What recording did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// A new run, with its tests.
    Run { tests: u64 },
    /// The same run was recorded before.
    AlreadyThere,
}

/// Records a run and its tests in one transaction.
pub(crate) fn record(
    db: &mut dyn Backend,
    record: &RunRecord,
    report: &RunReport,
) -> Result<Recorded, DbError> {
    db.begin_write()?;
    match record_locked(db, record, report) {
        Ok(r) => {
            db.batch("COMMIT")?;
            Ok(r)
        }
        Err(e) => {
            let _ = db.batch("ROLLBACK");
            Err(e)
        }
    }
}

fn text(s: &Option<String>) -> Value {
    Value::Text(s.clone())
}

fn record_locked(
    db: &mut dyn Backend,
    r: &RunRecord,
    report: &RunReport,
) -> Result<Recorded, DbError> {
    let inserted = db.query(
        "INSERT INTO runs (run_key, started_at, duration_seconds, commit_sha, branch, pull_request, \
         ci_platform, ci_job, ci_url, pytest_version, python_version, settings, exit_code, tests, \
         recorded_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (run_key) DO NOTHING RETURNING id",
        &[
            Value::Text(Some(r.run_key.clone())),
            Value::Int(Some(r.started_at)),
            Value::Real(Some(r.duration_seconds)),
            text(&r.commit_sha),
            text(&r.branch),
            Value::Int(r.pull_request),
            text(&r.ci_platform),
            text(&r.ci_job),
            text(&r.ci_url),
            text(&r.pytest_version),
            text(&r.python_version),
            text(&r.settings),
            Value::Int(Some(r.exit_code)),
            Value::Int(Some(r.tests)),
            Value::Text(Some(format!("smart-rerun {}", env!("CARGO_PKG_VERSION")))),
        ],
    )?;
    let Some(run_id) = inserted.first().and_then(|row| row[0].int()) else {
        return Ok(Recorded::AlreadyThere);
    };
    let mut results = report
        .tests
        .iter()
        // A test that never ran says nothing about the test.
        .filter(|t| t.outcome != Outcome::NotRun)
        .map(|t| {
            vec![
                Value::Int(Some(run_id)),
                Value::Text(Some(t.nodeid.clone())),
                Value::Int(Some(r.started_at)),
                Value::Text(Some(t.outcome.as_str().to_owned())),
                Value::Real(Some(t.duration_seconds)),
                Value::Int(Some(t.attempts.len().max(1) as i64)),
                Value::Text(
                    t.classification
                        .as_ref()
                        .map(|c| c.category.as_str().to_owned()),
                ),
            ]
        });
    let tests = db.insert_rows(
        "results",
        &[
            "run_id",
            "nodeid",
            "started_at",
            "outcome",
            "duration_seconds",
            "attempts",
            "category",
        ],
        &mut results,
    )?;
    let mut attempts = report.tests.iter().flat_map(|t| {
        t.attempts.iter().map(move |a| {
            vec![
                Value::Int(Some(run_id)),
                Value::Text(Some(t.nodeid.clone())),
                Value::Int(Some(a.number as i64)),
                Value::Text(Some(a.outcome.as_str().to_owned())),
                Value::Real(Some(a.duration_seconds)),
                Value::Text(a.phase.map(|p| {
                    serde_json::to_value(p)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                })),
                Value::Text(a.exception.as_ref().map(|e| e.type_name.clone())),
                // The first line, bounded: enough to recognise a failure, not a copy of the log.
                Value::Text(a.exception.as_ref().map(|e| {
                    e.message
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .chars()
                        .take(500)
                        .collect()
                })),
                Value::Text(a.fingerprint.clone()),
                Value::Text(
                    a.classification
                        .as_ref()
                        .map(|c| c.category.as_str().to_owned()),
                ),
            ]
        })
    });
    db.insert_rows(
        "attempts",
        &[
            "run_id",
            "nodeid",
            "number",
            "outcome",
            "duration_seconds",
            "phase",
            "exception_type",
            "message",
            "fingerprint",
            "category",
        ],
        &mut attempts,
    )?;
    Ok(Recorded::Run { tests })
}

/// Deletes the runs that started before `cutoff` (Unix ms) and their tests; returns how many runs.
pub(crate) fn prune(db: &mut dyn Backend, cutoff: i64) -> Result<u64, DbError> {
    db.begin_write()?;
    let done = (|| {
        let old = "SELECT id FROM runs WHERE started_at < $1";
        let cut = [Value::Int(Some(cutoff))];
        db.execute(
            &format!("DELETE FROM attempts WHERE run_id IN ({old})"),
            &cut,
        )?;
        db.execute(
            &format!("DELETE FROM results WHERE run_id IN ({old})"),
            &cut,
        )?;
        db.execute("DELETE FROM runs WHERE started_at < $1", &cut)
    })();
    match done {
        Ok(n) => {
            db.batch("COMMIT")?;
            Ok(n)
        }
        Err(e) => {
            let _ = db.batch("ROLLBACK");
            Err(e)
        }
    }
}
