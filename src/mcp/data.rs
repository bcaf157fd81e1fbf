//! What the MCP tools answer, as plain data: the queries over the history store (through its
//! [`Backend`](crate::history::Backend), read only) and the failed and flaky tests of a saved report.
//! Every text that comes from a test (node ids, messages, tracebacks) is a field of its own, never
//! part of a sentence, so an agent reads it as data.

use crate::history::record::format_time;
use crate::history::{HistoryError, Store, Value, query};
use crate::model::{Outcome, RunReport};
use schemars::JsonSchema;
use serde::Serialize;

/// Longest message and traceback handed out (characters); longer ones keep their start (a message)
/// or their end (a traceback, where the exception is).
pub(crate) const MESSAGE_LIMIT: usize = 2_000;
pub(crate) const TRACEBACK_LIMIT: usize = 8_000;

/// How many tests and example messages one failure group lists.
pub(crate) const GROUP_TESTS: i64 = 20;
pub(crate) const GROUP_EXAMPLES: i64 = 3;

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct FlakyTests {
    /// The tests flaky at least once in the period, most flaky first.
    pub tests: Vec<FlakyTestOut>,
    /// How many there were before `limit` applied.
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub(crate) struct FlakyTestOut {
    pub nodeid: String,
    /// Runs of the period that ran the test.
    pub runs: u64,
    pub flaky_runs: u64,
    pub failed_runs: u64,
    /// The test's first run in all of history (RFC 3339).
    pub first_seen: String,
    /// Its latest flaky run (RFC 3339).
    pub last_flaky: String,
}

impl From<query::FlakyTest> for FlakyTestOut {
    fn from(t: query::FlakyTest) -> Self {
        FlakyTestOut {
            nodeid: t.nodeid,
            runs: t.runs,
            flaky_runs: t.flaky_runs,
            failed_runs: t.failed_runs,
            first_seen: t.first_seen,
            last_flaky: t.last_flaky,
        }
    }
}

/// The flaky tests of the runs started at `since` (Unix ms) or later, at most `limit`, optionally of
/// one branch.
pub(crate) fn flaky_tests(
    store: &mut Store,
    since: i64,
    limit: usize,
    branch: Option<&str>,
) -> Result<FlakyTests, HistoryError> {
    let mut tests: Vec<FlakyTestOut> = match branch {
        None => store
            .flaky_tests(since)?
            .into_iter()
            .map(Into::into)
            .collect(),
        Some(b) => {
            let r = flaky_on_branch(store, since, b);
            r.map_err(|e| store.read_error(e))?
        }
    };
    let total = tests.len();
    tests.truncate(limit);
    Ok(FlakyTests { tests, total })
}

fn flaky_on_branch(
    store: &mut Store,
    since: i64,
    branch: &str,
) -> Result<Vec<FlakyTestOut>, crate::history::DbError> {
    let db = store.backend();
    let rows = db.query(
        "SELECT r.nodeid, COUNT(*), \
         COUNT(CASE WHEN r.outcome = 'flaky' THEN 1 END), \
         COUNT(CASE WHEN r.outcome IN ('failed', 'error') THEN 1 END), \
         MAX(CASE WHEN r.outcome = 'flaky' THEN runs.started_at END) \
         FROM results r JOIN runs ON runs.id = r.run_id \
         WHERE runs.started_at >= $1 AND runs.branch = $2 \
         GROUP BY r.nodeid HAVING COUNT(CASE WHEN r.outcome = 'flaky' THEN 1 END) > 0",
        &[
            Value::Int(Some(since)),
            Value::Text(Some(branch.to_owned())),
        ],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let nodeid = r[0].text().unwrap_or_default().to_owned();
        let first = db.query(
            "SELECT MIN(runs.started_at) FROM results r JOIN runs ON runs.id = r.run_id \
             WHERE r.nodeid = $1",
            &[Value::Text(Some(nodeid.clone()))],
        )?;
        out.push(FlakyTestOut {
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
    sort_flaky(&mut out);
    Ok(out)
}

fn sort_flaky(tests: &mut [FlakyTestOut]) {
    tests.sort_by(|a, b| {
        b.flaky_runs
            .cmp(&a.flaky_runs)
            .then(b.last_flaky.cmp(&a.last_flaky))
            .then(a.nodeid.cmp(&b.nodeid))
    });
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct TestHistoryOut {
    pub nodeid: String,
    /// Newest first.
    pub runs: Vec<query::TestRun>,
}

pub(crate) fn test_history(
    store: &mut Store,
    nodeid: &str,
    limit: i64,
) -> Result<TestHistoryOut, HistoryError> {
    let runs = store.test_runs(nodeid, limit)?;
    Ok(TestHistoryOut {
        nodeid: nodeid.to_owned(),
        runs,
    })
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct FailureGroups {
    /// Largest first: the failure shared by the most tests.
    pub groups: Vec<FailureGroup>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct FailureGroup {
    /// What stays the same when the failure repeats: exception type, normalised message, crash
    /// frame (16 hex digits).
    pub fingerprint: String,
    pub exception_type: Option<String>,
    /// How many distinct tests failed this way.
    pub test_count: u64,
    /// How many failed attempts in all.
    pub occurrences: u64,
    /// How many runs saw it.
    pub runs: u64,
    /// RFC 3339.
    pub first_seen: String,
    pub last_seen: String,
    /// Up to 20 of the tests, by name.
    pub tests: Vec<String>,
    /// Up to 3 distinct first lines of the message.
    pub example_messages: Vec<String>,
}

/// Failed attempts of the runs started at `since` or later, grouped by fingerprint across tests.
pub(crate) fn failure_groups(store: &mut Store, since: i64) -> Result<FailureGroups, HistoryError> {
    let r = failure_groups_db(store, since);
    r.map_err(|e| store.read_error(e))
}

fn failure_groups_db(
    store: &mut Store,
    since: i64,
) -> Result<FailureGroups, crate::history::DbError> {
    let db = store.backend();
    let since_v = Value::Int(Some(since));
    let rows = db.query(
        "SELECT a.fingerprint, COUNT(DISTINCT a.nodeid), COUNT(*), COUNT(DISTINCT a.run_id), \
         MIN(runs.started_at), MAX(runs.started_at), MAX(a.exception_type) \
         FROM attempts a JOIN runs ON runs.id = a.run_id \
         WHERE runs.started_at >= $1 AND a.fingerprint IS NOT NULL \
         AND a.outcome IN ('failed', 'error') GROUP BY a.fingerprint",
        std::slice::from_ref(&since_v),
    )?;
    let mut groups = Vec::with_capacity(rows.len());
    for r in rows {
        let fingerprint = r[0].text().unwrap_or_default().to_owned();
        let fp = Value::Text(Some(fingerprint.clone()));
        let tests = db
            .query(
                "SELECT DISTINCT a.nodeid FROM attempts a JOIN runs ON runs.id = a.run_id \
                 WHERE a.fingerprint = $1 AND runs.started_at >= $2 \
                 AND a.outcome IN ('failed', 'error') ORDER BY a.nodeid LIMIT $3",
                &[fp.clone(), since_v.clone(), Value::Int(Some(GROUP_TESTS))],
            )?
            .into_iter()
            .filter_map(|t| t[0].text().map(str::to_owned))
            .collect();
        let example_messages = db
            .query(
                "SELECT DISTINCT a.message FROM attempts a JOIN runs ON runs.id = a.run_id \
                 WHERE a.fingerprint = $1 AND runs.started_at >= $2 AND a.message IS NOT NULL \
                 AND a.outcome IN ('failed', 'error') ORDER BY a.message LIMIT $3",
                &[fp, since_v.clone(), Value::Int(Some(GROUP_EXAMPLES))],
            )?
            .into_iter()
            .filter_map(|t| t[0].text().map(str::to_owned))
            .collect();
        groups.push(FailureGroup {
            fingerprint,
            exception_type: r[6].text().map(str::to_owned),
            test_count: r[1].int().unwrap_or(0) as u64,
            occurrences: r[2].int().unwrap_or(0) as u64,
            runs: r[3].int().unwrap_or(0) as u64,
            first_seen: r[4].int().map(format_time).unwrap_or_default(),
            last_seen: r[5].int().map(format_time).unwrap_or_default(),
            tests,
            example_messages,
        });
    }
    groups.sort_by(|a, b| {
        b.test_count
            .cmp(&a.test_count)
            .then(b.occurrences.cmp(&a.occurrences))
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    Ok(FailureGroups { groups })
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct LastRun {
    /// `report` (a saved `--report` file) or `history` (the newest recorded run: messages are
    /// first lines, and there are no tracebacks).
    pub source: String,
    /// The report's path, for `report`.
    pub path: Option<String>,
    /// RFC 3339.
    pub started_at: String,
    pub commit: Option<String>,
    pub branch: Option<String>,
    pub exit_code: Option<i64>,
    /// Tests in the run.
    pub total_tests: u64,
    /// The failed, errored and flaky tests, in the report's order.
    pub tests: Vec<LastRunTest>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct LastRunTest {
    pub nodeid: String,
    /// `failed`, `error` or `flaky`.
    pub outcome: String,
    pub attempts: u64,
    /// The verdict's category (`flaky-timing`, `deterministic-assertion`, ...), when classified.
    pub category: Option<String>,
    pub failures: Vec<LastRunFailure>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct LastRunFailure {
    pub attempt: u64,
    pub phase: Option<String>,
    pub exception_type: Option<String>,
    pub message: Option<String>,
    pub traceback: Option<String>,
    pub fingerprint: Option<String>,
}

pub(crate) fn keep_start(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

pub(crate) fn keep_end(text: &str, limit: usize) -> String {
    let n = text.chars().count();
    if n <= limit {
        return text.to_owned();
    }
    let skip = text.char_indices().nth(n - limit).map_or(0, |(i, _)| i);
    format!("…{}", &text[skip..])
}

fn is_interesting(outcome: Outcome) -> bool {
    matches!(outcome, Outcome::Failed | Outcome::Error | Outcome::Flaky)
}

/// The failed and flaky tests of a saved report, with their messages and tracebacks.
pub(crate) fn last_run_of_report(report: &RunReport, path: &str) -> LastRun {
    let tests = report
        .tests
        .iter()
        .filter(|t| is_interesting(t.outcome))
        .map(|t| LastRunTest {
            nodeid: t.nodeid.clone(),
            outcome: t.outcome.as_str().to_owned(),
            attempts: t.attempts.len() as u64,
            category: t
                .classification
                .as_ref()
                .and_then(|c| serde_json::to_value(c.category).ok())
                .and_then(|v| v.as_str().map(str::to_owned)),
            failures: t
                .attempts
                .iter()
                .filter(|a| a.outcome.is_failure())
                .map(|a| LastRunFailure {
                    attempt: a.number as u64,
                    phase: a
                        .phase
                        .and_then(|p| serde_json::to_value(p).ok())
                        .and_then(|v| v.as_str().map(str::to_owned)),
                    exception_type: a.exception.as_ref().map(|e| e.type_name.clone()),
                    message: a
                        .exception
                        .as_ref()
                        .map(|e| keep_start(&e.message, MESSAGE_LIMIT)),
                    traceback: a.traceback.as_deref().map(|t| keep_end(t, TRACEBACK_LIMIT)),
                    fingerprint: a.fingerprint.clone(),
                })
                .collect(),
        })
        .collect();
    LastRun {
        source: "report".into(),
        path: Some(path.to_owned()),
        started_at: report.run.started_at.clone(),
        commit: None,
        branch: None,
        exit_code: Some(report.run.exit_code as i64),
        total_tests: report.tests.len() as u64,
        tests,
    }
}

/// The failed and flaky tests of the newest run in history; `None` when history holds no run.
pub(crate) fn last_run_of_history(store: &mut Store) -> Result<Option<LastRun>, HistoryError> {
    let r = last_run_db(store);
    r.map_err(|e| store.read_error(e))
}

fn last_run_db(store: &mut Store) -> Result<Option<LastRun>, crate::history::DbError> {
    let db = store.backend();
    let runs = db.query(
        "SELECT id, started_at, commit_sha, branch, exit_code, tests FROM runs \
         ORDER BY started_at DESC, id DESC LIMIT 1",
        &[],
    )?;
    let Some(run) = runs.into_iter().next() else {
        return Ok(None);
    };
    let run_id = Value::Int(run[0].int());
    let results = db.query(
        "SELECT nodeid, outcome, attempts, category FROM results \
         WHERE run_id = $1 AND outcome IN ('failed', 'error', 'flaky') ORDER BY nodeid",
        std::slice::from_ref(&run_id),
    )?;
    let mut tests = Vec::with_capacity(results.len());
    for r in results {
        let nodeid = r[0].text().unwrap_or_default().to_owned();
        let failures = db
            .query(
                "SELECT number, phase, exception_type, message, fingerprint FROM attempts \
                 WHERE run_id = $1 AND nodeid = $2 AND outcome IN ('failed', 'error') \
                 ORDER BY number",
                &[run_id.clone(), Value::Text(Some(nodeid.clone()))],
            )?
            .into_iter()
            .map(|a| LastRunFailure {
                attempt: a[0].int().unwrap_or(0) as u64,
                phase: a[1].text().map(str::to_owned),
                exception_type: a[2].text().map(str::to_owned),
                message: a[3].text().map(str::to_owned),
                traceback: None,
                fingerprint: a[4].text().map(str::to_owned),
            })
            .collect();
        tests.push(LastRunTest {
            nodeid,
            outcome: r[1].text().unwrap_or_default().to_owned(),
            attempts: r[2].int().unwrap_or(0) as u64,
            category: r[3].text().map(str::to_owned),
            failures,
        });
    }
    Ok(Some(LastRun {
        source: "history".into(),
        path: None,
        started_at: format_time(run[1].int().unwrap_or(0)),
        commit: run[2].text().map(str::to_owned),
        branch: run[3].text().map(str::to_owned),
        exit_code: run[4].int(),
        total_tests: run[5].int().unwrap_or(0) as u64,
        tests,
    }))
}
