//! What the dashboard shows, read from history with aggregate queries: one row per run (its flaky and
//! failed tests counted), per-test counts by branch and CI job, the newest [`TIMELINE_RUNS`] runs of
//! the [`TOP_TESTS`] most flaky tests with their failed attempts, and failures grouped by fingerprint.
//! Every attempt is never shipped: a page of 1,000 runs of 2,000 tests stays small.

use crate::history::backend::{Backend, DbError, Dialect, Value};
use serde::Serialize;
use std::collections::BTreeMap;

/// How many tests get a timeline (the most flaky ones of the period).
pub(crate) const TOP_TESTS: usize = 100;
/// How many of a test's newest runs its timeline shows.
pub(crate) const TIMELINE_RUNS: i64 = 30;
/// How many fingerprints the "same failure" panel lists, and tests per fingerprint.
pub(crate) const TOP_FINGERPRINTS: usize = 50;
pub(crate) const TESTS_PER_FINGERPRINT: usize = 50;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Dashboard {
    pub title: String,
    /// Unix ms.
    pub generated_at: i64,
    /// Unix ms of the period's start; `None`: all of history.
    pub since: Option<i64>,
    pub branch: Option<String>,
    pub runs: Vec<Run>,
    pub tests: Vec<Test>,
    pub fingerprints: Vec<Fingerprint>,
    /// The quarantine state of each shown test the quarantine file names; `None` (JSON `null`, no
    /// column) when there is no quarantine file.
    pub quarantine: Option<BTreeMap<String, super::quarantine::Quarantined>>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Run {
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
pub(crate) struct Test {
    pub nodeid: String,
    /// Runs of the period that ran it.
    pub runs: i64,
    /// Its flaky and failed runs per branch and job, for the page's filters.
    pub groups: Vec<Group>,
    /// Its newest runs, newest first (only for the most flaky tests, else empty).
    pub timeline: Vec<TimelineRun>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Group {
    pub branch: Option<String>,
    pub job: Option<String>,
    pub flaky: i64,
    pub failed: i64,
    pub last_flaky: Option<i64>,
    pub last_failed: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TimelineRun {
    pub run: i64,
    pub outcome: String,
    pub attempts: i64,
    pub category: Option<String>,
    pub failures: Vec<Attempt>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Attempt {
    pub number: i64,
    pub outcome: String,
    pub exception: Option<String>,
    pub message: Option<String>,
    pub fingerprint: Option<String>,
    pub category: Option<String>,
}

/// One failure fingerprint across tests: "the same failure in 12 tests".
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Fingerprint {
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

/// The same period on `results r`, without joining `runs` row by row: a result repeats its run's
/// start, and a branch is the list of the period's runs of that branch, built once per statement.
/// Joining every result to its run cost a lookup per result (2 million for 1,000 runs of 2,000
/// tests), and a test's newest runs could only be found by sorting all of its runs; on `results`
/// alone, `results_test` (nodeid, started_at, run_id, outcome) answers both in index order.
fn results_period(filter: &str, branch: Option<&str>) -> String {
    let mut sql = String::from("r.started_at >= $1");
    if branch.is_some() {
        sql.push_str(&format!(
            " AND r.run_id IN (SELECT runs.id FROM runs WHERE {filter})"
        ));
    }
    sql
}

/// Reads everything the page shows, for the runs started at `since` (Unix ms) or later, of `branch`.
pub(crate) fn load(
    db: &mut dyn Backend,
    title: &str,
    since: Option<i64>,
    branch: Option<&str>,
    now: i64,
) -> Result<Dashboard, DbError> {
    let (filter, params) = period(since, branch);
    let on_results = results_period(&filter, branch);
    let mut runs = runs(db, &filter, &params)?;
    let mut tests = tests(db, &mut runs, &on_results, &params)?;
    timelines(db, &mut tests, &on_results, &params)?;
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
    let rows = db.query(
        &format!(
            "SELECT runs.id, runs.started_at, runs.branch, runs.ci_job, runs.commit_sha, runs.ci_url, \
             runs.tests, runs.exit_code FROM runs WHERE {filter} ORDER BY runs.started_at, runs.id"
        ),
        params,
    )?;
    Ok(rows
        .into_iter()
        .map(|r| Run {
            id: int(&r[0]),
            started_at: int(&r[1]),
            branch: text(&r[2]),
            job: text(&r[3]),
            commit: text(&r[4]),
            url: text(&r[5]),
            tests: int(&r[6]),
            flaky: 0,
            failed: 0,
            exit_code: int(&r[7]),
        })
        .collect())
}

/// Every test flaky or failing at least once in the period, most flaky first, from one scan of every
/// result of the period grouped by test (in the order of the `(nodeid, started_at, run_id, outcome)`
/// index, without a sort or a lookup per result): how many runs ran it, and its flaky and failed runs
/// as `RUN:OUTCOME` pairs, which also count them per run.
fn tests(
    db: &mut dyn Backend,
    runs: &mut [Run],
    on_results: &str,
    params: &[Value],
) -> Result<Vec<Test>, DbError> {
    let index: std::collections::HashMap<i64, usize> =
        runs.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    let concat = match db.dialect() {
        Dialect::Sqlite => "group_concat",
        Dialect::Postgres => "string_agg",
    };
    let rows = db.query(
        &format!(
            "SELECT r.nodeid, COUNT(*), {concat}(CASE WHEN r.outcome IN ('flaky', 'failed', 'error') \
             THEN r.run_id || ':' || r.outcome END, ',') FROM results r WHERE {on_results} \
             GROUP BY r.nodeid"
        ),
        params,
    )?;
    let mut tests = Vec::new();
    for row in rows {
        let Some(events) = row[2].text().filter(|e| !e.is_empty()) else {
            continue;
        };
        let mut groups: Vec<Group> = Vec::new();
        for event in events.split(',') {
            let Some((run_id, outcome)) = event.split_once(':') else {
                continue;
            };
            let Some(&i) = run_id.parse::<i64>().ok().and_then(|id| index.get(&id)) else {
                continue;
            };
            let run = &mut runs[i];
            let flaky = outcome == "flaky";
            if flaky {
                run.flaky += 1;
            } else {
                run.failed += 1;
            }
            let g = match groups
                .iter()
                .position(|g| g.branch == run.branch && g.job == run.job)
            {
                Some(k) => &mut groups[k],
                None => {
                    groups.push(Group {
                        branch: run.branch.clone(),
                        job: run.job.clone(),
                        flaky: 0,
                        failed: 0,
                        last_flaky: None,
                        last_failed: None,
                    });
                    groups.last_mut().unwrap()
                }
            };
            let (count, last) = if flaky {
                (&mut g.flaky, &mut g.last_flaky)
            } else {
                (&mut g.failed, &mut g.last_failed)
            };
            *count += 1;
            *last = (*last).max(Some(run.started_at));
        }
        if groups.is_empty() {
            continue;
        }
        tests.push(Test {
            nodeid: text(&row[0]).unwrap_or_default(),
            runs: int(&row[1]),
            groups,
            timeline: Vec::new(),
        });
    }
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
    on_results: &str,
    params: &[Value],
) -> Result<(), DbError> {
    let n = params.len();
    for t in tests.iter_mut().take(TOP_TESTS) {
        let mut p = params.to_vec();
        p.push(Value::Text(Some(t.nodeid.clone())));
        p.push(Value::Int(Some(TIMELINE_RUNS)));
        let rows = db.query(
            &format!(
                "SELECT r.run_id, r.outcome, r.attempts, r.category FROM results r \
                 WHERE {on_results} AND r.nodeid = ${} \
                 ORDER BY r.started_at DESC, r.run_id DESC LIMIT ${}",
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
             MIN(a.message) FROM attempts a CROSS JOIN runs \
             WHERE {filter} AND runs.id = a.run_id AND a.outcome IN ('failed', 'error') \
             AND a.fingerprint IS NOT NULL \
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
