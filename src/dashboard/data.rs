//! What the dashboard shows, read from history with aggregate queries: one row per run (its flaky and
//! failed tests counted), per-test counts by branch and CI job, the newest [`TIMELINE_RUNS`] runs of
//! the [`TOP_TESTS`] most flaky tests with their failed attempts, and failures grouped by fingerprint.
//! Every attempt is never shipped: a page of 1,000 runs of 2,000 tests stays small.

use crate::history::backend::{Backend, DbError, Value};
use serde::Serialize;
use std::collections::BTreeMap;

/// How many tests get a timeline (the most flaky ones of the period).
pub const TOP_TESTS: usize = 100;
/// How many of a test's newest runs its timeline shows.
pub const TIMELINE_RUNS: i64 = 30;
/// How many fingerprints the "same failure" panel lists, and tests per fingerprint.
pub const TOP_FINGERPRINTS: usize = 50;
pub const TESTS_PER_FINGERPRINT: usize = 50;

#[derive(Debug, Clone, Serialize)]
pub struct Dashboard {
    pub title: String,
    /// Unix ms.
    pub generated_at: i64,
    /// Unix ms of the period's start; `None`: all of history.
    pub since: Option<i64>,
    pub branch: Option<String>,
    pub runs: Vec<Run>,
    pub tests: Vec<Test>,
    pub fingerprints: Vec<Fingerprint>,
    /// Quarantine state per test, once history keeps one: `None` (JSON `null`) while it does not.
    pub quarantine: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: i64,
    pub started_at: i64,
    pub branch: Option<String>,
    pub job: Option<String>,
    pub commit: Option<String>,
    pub url: Option<String>,
    pub tests: i64,
    pub flaky: i64,
    pub failed: i64,
    pub exit_code: i64,
}

/// A test that was flaky or failed at least once in the period.
#[derive(Debug, Clone, Serialize)]
pub struct Test {
    pub nodeid: String,
    /// Its counts per branch and job, for the page's filters.
    pub groups: Vec<Group>,
    /// Its newest runs, newest first (only for the most flaky tests, else empty).
    pub timeline: Vec<TimelineRun>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub branch: Option<String>,
    pub job: Option<String>,
    pub runs: i64,
    pub flaky: i64,
    pub failed: i64,
    pub last_flaky: Option<i64>,
    pub last_failed: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineRun {
    pub run: i64,
    pub outcome: String,
    pub attempts: i64,
    pub category: Option<String>,
    pub failures: Vec<Attempt>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub number: i64,
    pub outcome: String,
    pub exception: Option<String>,
    pub message: Option<String>,
    pub fingerprint: Option<String>,
    pub category: Option<String>,
}

/// One failure fingerprint across tests: "the same failure in 12 tests".
#[derive(Debug, Clone, Serialize)]
pub struct Fingerprint {
    pub fingerprint: String,
    pub exception: Option<String>,
    pub message: Option<String>,
    pub occurrences: i64,
    pub last_seen: i64,
    /// How many tests failed with it (`nodeids` lists the first [`TESTS_PER_FINGERPRINT`]).
    pub test_count: usize,
    pub nodeids: Vec<String>,
}

fn text(v: &Value) -> Option<String> {
    v.text().map(str::to_owned)
}

fn int(v: &Value) -> i64 {
    v.int().unwrap_or(0)
}

/// The period's filter: `WHERE`-clause text on `runs` and its parameters (`$1`, then `$2`). SQLite
/// numbers parameters in order of first use: the filter comes first in every statement.
fn period(since: Option<i64>, branch: Option<&str>) -> (String, Vec<Value>) {
    let mut sql = String::from("runs.started_at >= $1");
    let mut params = vec![Value::Int(Some(since.unwrap_or(i64::MIN)))];
    if let Some(b) = branch {
        sql.push_str(" AND runs.branch = $2");
        params.push(Value::Text(Some(b.to_owned())));
    }
    (sql, params)
}

/// Reads everything the page shows, for the runs started at `since` (Unix ms) or later, of `branch`.
pub fn load(
    db: &mut dyn Backend,
    title: &str,
    since: Option<i64>,
    branch: Option<&str>,
    now: i64,
) -> Result<Dashboard, DbError> {
    let (filter, params) = period(since, branch);
    let runs = runs(db, &filter, &params)?;
    let mut tests = tests(db, &filter, &params)?;
    timelines(db, &mut tests, &filter, &params)?;
    let fingerprints = fingerprints(db, &filter, &params)?;
    Ok(Dashboard {
        title: title.to_owned(),
        generated_at: now,
        since,
        branch: branch.map(str::to_owned),
        runs,
        tests,
        fingerprints,
        quarantine: None,
    })
}

fn runs(db: &mut dyn Backend, filter: &str, params: &[Value]) -> Result<Vec<Run>, DbError> {
    let counts: BTreeMap<i64, (i64, i64)> = db
        .query(
            &format!(
                "SELECT r.run_id, COUNT(CASE WHEN r.outcome = 'flaky' THEN 1 END), \
                 COUNT(CASE WHEN r.outcome IN ('failed', 'error') THEN 1 END) \
                 FROM results r JOIN runs ON runs.id = r.run_id \
                 WHERE r.outcome IN ('flaky', 'failed', 'error') AND {filter} GROUP BY r.run_id"
            ),
            params,
        )?
        .into_iter()
        .map(|r| (int(&r[0]), (int(&r[1]), int(&r[2]))))
        .collect();
    let rows = db.query(
        &format!(
            "SELECT runs.id, runs.started_at, runs.branch, runs.ci_job, runs.commit_sha, runs.ci_url, \
             runs.tests, runs.exit_code FROM runs WHERE {filter} ORDER BY runs.started_at, runs.id"
        ),
        params,
    )?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let id = int(&r[0]);
            let (flaky, failed) = counts.get(&id).copied().unwrap_or_default();
            Run {
                id,
                started_at: int(&r[1]),
                branch: text(&r[2]),
                job: text(&r[3]),
                commit: text(&r[4]),
                url: text(&r[5]),
                tests: int(&r[6]),
                flaky,
                failed,
                exit_code: int(&r[7]),
            }
        })
        .collect())
}

/// Every test flaky or failing at least once in the period, with its counts per branch and job, most
/// flaky first.
fn tests(db: &mut dyn Backend, filter: &str, params: &[Value]) -> Result<Vec<Test>, DbError> {
    let rows = db.query(
        &format!(
            "SELECT r.nodeid, runs.branch, runs.ci_job, COUNT(*), \
             COUNT(CASE WHEN r.outcome = 'flaky' THEN 1 END), \
             COUNT(CASE WHEN r.outcome IN ('failed', 'error') THEN 1 END), \
             MAX(CASE WHEN r.outcome = 'flaky' THEN runs.started_at END), \
             MAX(CASE WHEN r.outcome IN ('failed', 'error') THEN runs.started_at END) \
             FROM results r JOIN runs ON runs.id = r.run_id \
             WHERE {filter} AND r.nodeid IN (SELECT DISTINCT r2.nodeid FROM results r2 \
               JOIN runs ON runs.id = r2.run_id \
               WHERE r2.outcome IN ('flaky', 'failed', 'error') AND {filter}) \
             GROUP BY r.nodeid, runs.branch, runs.ci_job"
        ),
        params,
    )?;
    let mut by_test: BTreeMap<String, Vec<Group>> = BTreeMap::new();
    for r in rows {
        by_test
            .entry(text(&r[0]).unwrap_or_default())
            .or_default()
            .push(Group {
                branch: text(&r[1]),
                job: text(&r[2]),
                runs: int(&r[3]),
                flaky: int(&r[4]),
                failed: int(&r[5]),
                last_flaky: r[6].int(),
                last_failed: r[7].int(),
            });
    }
    let mut tests: Vec<Test> = by_test
        .into_iter()
        .map(|(nodeid, groups)| Test {
            nodeid,
            groups,
            timeline: Vec::new(),
        })
        .collect();
    let total = |t: &Test| {
        let flaky: i64 = t.groups.iter().map(|g| g.flaky).sum();
        let failed: i64 = t.groups.iter().map(|g| g.failed).sum();
        let last = t.groups.iter().filter_map(|g| g.last_flaky).max();
        (flaky, failed, last)
    };
    tests.sort_by(|a, b| {
        let (fa, xa, la) = total(a);
        let (fb, xb, lb) = total(b);
        fb.cmp(&fa)
            .then(lb.cmp(&la))
            .then(xb.cmp(&xa))
            .then(a.nodeid.cmp(&b.nodeid))
    });
    Ok(tests)
}

/// The newest runs of the first [`TOP_TESTS`] tests, with their failed attempts.
fn timelines(
    db: &mut dyn Backend,
    tests: &mut [Test],
    filter: &str,
    params: &[Value],
) -> Result<(), DbError> {
    let n = params.len();
    for t in tests.iter_mut().take(TOP_TESTS) {
        let mut p = params.to_vec();
        p.push(Value::Text(Some(t.nodeid.clone())));
        p.push(Value::Int(Some(TIMELINE_RUNS)));
        let rows = db.query(
            &format!(
                "SELECT runs.id, r.outcome, r.attempts, r.category FROM results r \
                 JOIN runs ON runs.id = r.run_id WHERE {filter} AND r.nodeid = ${} \
                 ORDER BY runs.started_at DESC, runs.id DESC LIMIT ${}",
                n + 1,
                n + 2
            ),
            &p,
        )?;
        let Some(oldest) = rows.iter().map(|r| int(&r[0])).min() else {
            continue;
        };
        let mut failures: BTreeMap<i64, Vec<Attempt>> = BTreeMap::new();
        let attempts = db.query(
            "SELECT run_id, number, outcome, exception_type, message, fingerprint, category \
             FROM attempts WHERE nodeid = $1 AND run_id >= $2 AND outcome IN ('failed', 'error') \
             ORDER BY run_id, number",
            &[
                Value::Text(Some(t.nodeid.clone())),
                Value::Int(Some(oldest)),
            ],
        )?;
        for a in attempts {
            failures.entry(int(&a[0])).or_default().push(Attempt {
                number: int(&a[1]),
                outcome: text(&a[2]).unwrap_or_default(),
                exception: text(&a[3]),
                message: text(&a[4]),
                fingerprint: text(&a[5]),
                category: text(&a[6]),
            });
        }
        t.timeline = rows
            .into_iter()
            .map(|r| {
                let run = int(&r[0]);
                TimelineRun {
                    run,
                    outcome: text(&r[1]).unwrap_or_default(),
                    attempts: int(&r[2]),
                    category: text(&r[3]),
                    failures: failures.remove(&run).unwrap_or_default(),
                }
            })
            .collect();
    }
    Ok(())
}

/// Failures grouped by fingerprint across tests, those shared by the most tests first.
fn fingerprints(
    db: &mut dyn Backend,
    filter: &str,
    params: &[Value],
) -> Result<Vec<Fingerprint>, DbError> {
    let rows = db.query(
        &format!(
            "SELECT a.fingerprint, a.nodeid, COUNT(*), MAX(runs.started_at), MIN(a.exception_type), \
             MIN(a.message) FROM attempts a JOIN runs ON runs.id = a.run_id \
             WHERE a.outcome IN ('failed', 'error') AND a.fingerprint IS NOT NULL AND {filter} \
             GROUP BY a.fingerprint, a.nodeid"
        ),
        params,
    )?;
    let mut groups: BTreeMap<String, Fingerprint> = BTreeMap::new();
    for r in rows {
        let fp = text(&r[0]).unwrap_or_default();
        let g = groups.entry(fp.clone()).or_insert_with(|| Fingerprint {
            fingerprint: fp,
            exception: text(&r[4]),
            message: text(&r[5]),
            occurrences: 0,
            last_seen: 0,
            test_count: 0,
            nodeids: Vec::new(),
        });
        g.occurrences += int(&r[2]);
        g.last_seen = g.last_seen.max(int(&r[3]));
        g.test_count += 1;
        if g.nodeids.len() < TESTS_PER_FINGERPRINT {
            g.nodeids.push(text(&r[1]).unwrap_or_default());
        }
    }
    let mut list: Vec<Fingerprint> = groups.into_values().collect();
    list.sort_by(|a, b| {
        b.test_count
            .cmp(&a.test_count)
            .then(b.occurrences.cmp(&a.occurrences))
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    list.truncate(TOP_FINGERPRINTS);
    Ok(list)
}
