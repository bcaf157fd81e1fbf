//! Reading history: what a report needs per test ([`lookup_report`], the newest [`WINDOW`] runs of
//! each failed or flaky test), the flaky tests of a period ([`flaky_tests`]) and one test's runs
//! ([`test_runs`]). Verdicts are a pure function of the rows ([`verdict`]).

use super::backend::{Backend, DbError, Value};
use super::record::format_time;
use crate::model::{HistoryRun, HistoryVerdict, Outcome, RunReport, TestHistory};
use serde::Serialize;

/// How many earlier runs of a test a verdict looks at.
pub const WINDOW: i64 = 50;

/// At most this many tests of one run are looked up: a run where thousands fail is broken as a whole,
/// and the reports show the first ones only.
pub const LOOKUP_LIMIT: usize = 500;

/// One earlier run of a test, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct PastRun {
    pub outcome: String,
    pub started_at: i64,
    pub commit: Option<String>,
    pub branch: Option<String>,
}

impl PastRun {
    fn failed(&self) -> bool {
        matches!(self.outcome.as_str(), "failed" | "error")
    }
}

/// The verdict on a test that ended `outcome` now, from its earlier runs (newest first) and the start
/// of its first flaky run ever; `None` for an outcome history has nothing to say about.
pub fn verdict(
    outcome: Outcome,
    past: &[PastRun],
    first_seen: Option<i64>,
    first_flaky: Option<i64>,
) -> Option<TestHistory> {
    if !matches!(outcome, Outcome::Flaky | Outcome::Failed | Outcome::Error) {
        return None;
    }
    let flaky_runs = past.iter().filter(|r| r.outcome == "flaky").count() as u32;
    let failed_runs = past.iter().filter(|r| r.failed()).count() as u32;
    let streak = past.iter().take_while(|r| r.failed()).count();
    let verdict = if past.is_empty() {
        HistoryVerdict::FirstRun
    } else if outcome == Outcome::Flaky {
        if flaky_runs > 0 {
            HistoryVerdict::KnownFlaky
        } else {
            HistoryVerdict::NewFlake
        }
    } else if streak > 0 {
        HistoryVerdict::FailingSince
    } else if flaky_runs > 0 {
        HistoryVerdict::KnownFlaky
    } else if failed_runs > 0 {
        HistoryVerdict::Recurring
    } else {
        HistoryVerdict::NewFailure
    };
    let branch = past
        .first()
        .and_then(|r| r.branch.clone())
        .filter(|b| past.iter().all(|r| r.branch.as_deref() == Some(b)));
    let failing_since = (verdict == HistoryVerdict::FailingSince).then(|| {
        let first = &past[streak - 1];
        HistoryRun {
            started_at: format_time(first.started_at),
            commit: first.commit.clone(),
        }
    });
    Some(TestHistory {
        verdict,
        runs: past.len() as u32,
        flaky_runs,
        failed_runs,
        first_seen: first_seen.map(format_time),
        first_flaky: first_flaky.map(format_time),
        failing_since,
        branch,
    })
}

/// The history of one test that ended `outcome` in the run being reported, the run `run_key` left
/// out (a saved report explained after it was recorded).
pub fn lookup(
    db: &mut dyn Backend,
    nodeid: &str,
    outcome: Outcome,
    run_key: &str,
) -> Result<Option<TestHistory>, DbError> {
    let id = [
        Value::Text(Some(nodeid.to_owned())),
        Value::Text(Some(run_key.to_owned())),
    ];
    let rows = db.query(
        "SELECT r.outcome, runs.started_at, runs.commit_sha, runs.branch \
         FROM results r JOIN runs ON runs.id = r.run_id WHERE r.nodeid = $1 AND runs.run_key <> $2 \
         ORDER BY runs.started_at DESC, runs.id DESC LIMIT $3",
        &[id[0].clone(), id[1].clone(), Value::Int(Some(WINDOW))],
    )?;
    let past: Vec<PastRun> = rows
        .into_iter()
        .map(|r| PastRun {
            outcome: r[0].text().unwrap_or_default().to_owned(),
            started_at: r[1].int().unwrap_or(0),
            commit: r[2].text().map(str::to_owned),
            branch: r[3].text().map(str::to_owned),
        })
        .collect();
    if past.is_empty() {
        return Ok(verdict(outcome, &past, None, None));
    }
    let firsts = db.query(
        "SELECT MIN(runs.started_at), MIN(CASE WHEN r.outcome = 'flaky' THEN runs.started_at END) \
         FROM results r JOIN runs ON runs.id = r.run_id WHERE r.nodeid = $1 AND runs.run_key <> $2",
        &id,
    )?;
    let (first_seen, first_flaky) = firsts
        .first()
        .map(|r| (r[0].int(), r[1].int()))
        .unwrap_or_default();
    Ok(verdict(outcome, &past, first_seen, first_flaky))
}

/// History for every failed or flaky test of `report` (up to [`LOOKUP_LIMIT`]), by index in
/// `report.tests`.
pub fn lookup_report(
    db: &mut dyn Backend,
    report: &RunReport,
) -> Result<Vec<(usize, TestHistory)>, DbError> {
    let mut found = Vec::new();
    let run_key = super::record::RunRecord::from_report(report).run_key;
    let interesting = report
        .tests
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(t.outcome, Outcome::Flaky | Outcome::Failed | Outcome::Error))
        .take(LOOKUP_LIMIT);
    for (i, t) in interesting {
        if let Some(h) = lookup(db, &t.nodeid, t.outcome, &run_key)? {
            found.push((i, h));
        }
    }
    Ok(found)
}

/// A test that was flaky at least once in a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlakyTest {
    pub nodeid: String,
    /// Runs of the period that ran the test.
    pub runs: u64,
    pub flaky_runs: u64,
    pub failed_runs: u64,
    /// The test's earliest run in history (RFC 3339).
    pub first_seen: String,
    /// Its latest flaky run (RFC 3339).
    pub last_flaky: String,
}

/// The tests flaky at least once in the runs started at `since` (Unix ms) or later, most flaky first.
pub fn flaky_tests(db: &mut dyn Backend, since: i64) -> Result<Vec<FlakyTest>, DbError> {
    let rows = db.query(
        "SELECT r.nodeid, COUNT(*), \
         COUNT(CASE WHEN r.outcome = 'flaky' THEN 1 END), \
         COUNT(CASE WHEN r.outcome IN ('failed', 'error') THEN 1 END), \
         MAX(CASE WHEN r.outcome = 'flaky' THEN runs.started_at END) \
         FROM results r JOIN runs ON runs.id = r.run_id WHERE runs.started_at >= $1 \
         GROUP BY r.nodeid HAVING COUNT(CASE WHEN r.outcome = 'flaky' THEN 1 END) > 0",
        &[Value::Int(Some(since))],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let nodeid = r[0].text().unwrap_or_default().to_owned();
        let first = db.query(
            "SELECT MIN(runs.started_at) FROM results r JOIN runs ON runs.id = r.run_id \
             WHERE r.nodeid = $1",
            &[Value::Text(Some(nodeid.clone()))],
        )?;
        out.push(FlakyTest {
            nodeid,
            runs: r[1].int().unwrap_or(0) as u64,
            flaky_runs: r[2].int().unwrap_or(0) as u64,
            failed_runs: r[3].int().unwrap_or(0) as u64,
            first_seen: first
                .first()
                .and_then(|f| f[0].int())
                .map(format_time)
                .unwrap_or_default(),
            last_flaky: r[4].int().map(format_time).unwrap_or_default(),
        });
    }
    out.sort_by(|a, b| {
        b.flaky_runs
            .cmp(&a.flaky_runs)
            .then(b.last_flaky.cmp(&a.last_flaky))
            .then(a.nodeid.cmp(&b.nodeid))
    });
    Ok(out)
}

/// One run of one test, for `history show`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestRun {
    pub started_at: String,
    pub commit: Option<String>,
    pub branch: Option<String>,
    pub ci_job: Option<String>,
    pub outcome: String,
    pub attempts: u64,
    pub duration_seconds: f64,
    pub category: Option<String>,
    /// Failed attempts: exception type and fingerprint.
    pub failures: Vec<TestFailure>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestFailure {
    pub attempt: u64,
    pub exception_type: Option<String>,
    pub message: Option<String>,
    pub fingerprint: Option<String>,
    pub category: Option<String>,
}

/// The newest `limit` runs of a test, newest first.
pub fn test_runs(db: &mut dyn Backend, nodeid: &str, limit: i64) -> Result<Vec<TestRun>, DbError> {
    let rows = db.query(
        "SELECT runs.id, runs.started_at, runs.commit_sha, runs.branch, runs.ci_job, r.outcome, \
         r.attempts, r.duration_seconds, r.category \
         FROM results r JOIN runs ON runs.id = r.run_id WHERE r.nodeid = $1 \
         ORDER BY runs.started_at DESC, runs.id DESC LIMIT $2",
        &[
            Value::Text(Some(nodeid.to_owned())),
            Value::Int(Some(limit)),
        ],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let failures = if r[6].int().unwrap_or(1) > 1
            || matches!(r[5].text(), Some("failed" | "error"))
        {
            db.query(
                "SELECT number, exception_type, message, fingerprint, category FROM attempts \
                 WHERE nodeid = $1 AND run_id = $2 AND outcome IN ('failed', 'error') ORDER BY number",
                &[Value::Text(Some(nodeid.to_owned())), Value::Int(r[0].int())],
            )?
            .into_iter()
            .map(|a| TestFailure {
                attempt: a[0].int().unwrap_or(0) as u64,
                exception_type: a[1].text().map(str::to_owned),
                message: a[2].text().map(str::to_owned),
                fingerprint: a[3].text().map(str::to_owned),
                category: a[4].text().map(str::to_owned),
            })
            .collect()
        } else {
            Vec::new()
        };
        out.push(TestRun {
            started_at: format_time(r[1].int().unwrap_or(0)),
            commit: r[2].text().map(str::to_owned),
            branch: r[3].text().map(str::to_owned),
            ci_job: r[4].text().map(str::to_owned),
            outcome: r[5].text().unwrap_or_default().to_owned(),
            attempts: r[6].int().unwrap_or(0) as u64,
            duration_seconds: match &r[7] {
                Value::Real(Some(f)) => *f,
                v => v.int().unwrap_or(0) as f64,
            },
            category: r[8].text().map(str::to_owned),
            failures,
        });
    }
    Ok(out)
}

/// How many runs history holds.
#[cfg(test)]
pub fn run_count(db: &mut dyn Backend) -> Result<i64, DbError> {
    let rows = db.query("SELECT COUNT(*) FROM runs", &[])?;
    Ok(rows.first().and_then(|r| r[0].int()).unwrap_or(0))
}
