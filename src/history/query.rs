//! Reading history: what a report needs per test ([`lookup_report`], the newest [`WINDOW`] runs of
//! each failed or flaky test), the flaky tests of a period ([`flaky_tests`]) and one test's runs
//! ([`test_runs`]). Verdicts are a pure function of the rows ([`verdict`]).

use super::backend::{Backend, DbError, Value};
use super::record::format_time;
use crate::model::{HistoryRun, HistoryVerdict, Outcome, RunReport, TestHistory};
use serde::Serialize;

/// How many earlier runs of a test a verdict looks at.
pub(crate) const WINDOW: i64 = 50;

/// At most this many tests of one run are looked up: a run where thousands fail is broken as a whole,
/// and the reports show the first ones only.
pub(crate) const LOOKUP_LIMIT: usize = 500;

/// One earlier run of a test, newest first.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PastRun {
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
pub(crate) fn verdict(
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

/// The history of one test that ended `outcome` in the run being reported, the run `own_run` left
/// out (a saved report explained after it was recorded; -1 for a run not recorded). Every query here
/// reads an index only, and at most [`WINDOW`] rows of `runs`.
pub(crate) fn lookup(
    db: &mut dyn Backend,
    nodeid: &str,
    outcome: Outcome,
    own_run: i64,
) -> Result<Option<TestHistory>, DbError> {
    let id = [
        Value::Text(Some(nodeid.to_owned())),
        Value::Int(Some(own_run)),
    ];
    let rows = db.query(
        "SELECT r.outcome, r.started_at, runs.commit_sha, runs.branch \
         FROM results r JOIN runs ON runs.id = r.run_id WHERE r.nodeid = $1 AND r.run_id <> $2 \
         ORDER BY r.started_at DESC, r.run_id DESC LIMIT $3",
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
    let first = |db: &mut dyn Backend, sql: &str| -> Result<Option<i64>, DbError> {
        Ok(db.query(sql, &id)?.first().and_then(|r| r[0].int()))
    };
    let first_seen = first(
        db,
        "SELECT MIN(started_at) FROM results WHERE nodeid = $1 AND run_id <> $2",
    )?;
    let first_flaky = first(
        db,
        "SELECT MIN(started_at) FROM results WHERE nodeid = $1 AND run_id <> $2 AND outcome = 'flaky'",
    )?;
    Ok(verdict(outcome, &past, first_seen, first_flaky))
}

/// History for every failed or flaky test of `report` (up to [`LOOKUP_LIMIT`]), by index in
/// `report.tests`.
pub(crate) fn lookup_report(
    db: &mut dyn Backend,
    report: &RunReport,
) -> Result<Vec<(usize, TestHistory)>, DbError> {
    let mut found = Vec::new();
    let run_key = super::record::RunRecord::from_report(report).run_key;
    let own_run = db
        .query(
            "SELECT id FROM runs WHERE run_key = $1",
            &[Value::Text(Some(run_key))],
        )?
        .first()
        .and_then(|r| r[0].int())
        .unwrap_or(-1);
    let interesting = report
        .tests
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(t.outcome, Outcome::Flaky | Outcome::Failed | Outcome::Error))
        .take(LOOKUP_LIMIT);
    for (i, t) in interesting {
        if let Some(h) = lookup(db, &t.nodeid, t.outcome, own_run)? {
            found.push((i, h));
        }
    }
    Ok(found)
}

/// A test that was flaky at least once in a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct FlakyTest {
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
/// The flaky tests come from the small partial index of flaky results; then each one's counts.
pub(crate) fn flaky_tests(db: &mut dyn Backend, since: i64) -> Result<Vec<FlakyTest>, DbError> {
    let since_v = Value::Int(Some(since));
    let rows = db.query(
        "SELECT nodeid, COUNT(*), MAX(started_at) FROM results \
         WHERE outcome = 'flaky' AND started_at >= $1 GROUP BY nodeid",
        std::slice::from_ref(&since_v),
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let nodeid = r[0].text().unwrap_or_default().to_owned();
        let id = Value::Text(Some(nodeid.clone()));
        let counts = db.query(
            "SELECT COUNT(*), COUNT(CASE WHEN outcome IN ('failed', 'error') THEN 1 END) \
             FROM results WHERE nodeid = $1 AND started_at >= $2",
            &[id.clone(), since_v.clone()],
        )?;
        let first = db.query(
            "SELECT MIN(started_at) FROM results WHERE nodeid = $1",
            &[id],
        )?;
        let count = |i: usize| counts.first().and_then(|c| c[i].int()).unwrap_or(0) as u64;
        out.push(FlakyTest {
            nodeid,
            runs: count(0),
            flaky_runs: r[1].int().unwrap_or(0) as u64,
            failed_runs: count(1),
            first_seen: first
                .first()
                .and_then(|f| f[0].int())
                .map(format_time)
                .unwrap_or_default(),
            last_flaky: r[2].int().map(format_time).unwrap_or_default(),
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

/// One run of one test, for `history show` and the MCP server's `test_history`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub(crate) struct TestRun {
    /// RFC 3339.
    pub started_at: String,
    pub commit: Option<String>,
    pub branch: Option<String>,
    pub ci_job: Option<String>,
    pub outcome: String,
    pub attempts: u64,
    pub duration_seconds: f64,
    pub category: Option<String>,
    /// The failed attempts of this run.
    pub failures: Vec<TestFailure>,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub(crate) struct TestFailure {
    pub attempt: u64,
    pub exception_type: Option<String>,
    /// The first line of the message, as recorded.
    pub message: Option<String>,
    pub fingerprint: Option<String>,
    pub category: Option<String>,
}

/// The newest `limit` runs of a test, newest first.
pub(crate) fn test_runs(
    db: &mut dyn Backend,
    nodeid: &str,
    limit: i64,
) -> Result<Vec<TestRun>, DbError> {
    let rows = db.query(
        "SELECT runs.id, runs.started_at, runs.commit_sha, runs.branch, runs.ci_job, r.outcome, \
         r.attempts, r.duration_seconds, r.category \
         FROM results r JOIN runs ON runs.id = r.run_id WHERE r.nodeid = $1 \
         ORDER BY r.started_at DESC, r.run_id DESC LIMIT $2",
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
pub(crate) fn run_count(db: &mut dyn Backend) -> Result<i64, DbError> {
    let rows = db.query("SELECT COUNT(*) FROM runs", &[])?;
    Ok(rows.first().and_then(|r| r[0].int()).unwrap_or(0))
}
