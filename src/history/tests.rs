//! The store's queries on a real SQLite file: recording, the verdicts a report gets, the flaky list,
//! one test's runs, pruning, and the databases it must refuse.

use super::record::{Recorded, RunRecord, format_time, parse_time};
use super::*;
use crate::model::{HistoryVerdict, Outcome, RunReport};
use crate::sample;

const DAY: i64 = 86_400_000;
/// 2026-11-01T00:00:00Z
const T0: i64 = 1_793_491_200_000;

fn report(day: i64, tests: &[(&str, Outcome)]) -> RunReport {
    let mut r = sample::empty();
    r.run.started_at = format_time(T0 + day * DAY);
    r.run.finished_at = format_time(T0 + day * DAY + 60_000);
    for (nodeid, outcome) in tests {
        let attempts = match outcome {
            Outcome::Flaky => vec![
                sample::failed_attempt(
                    1,
                    crate::model::Phase::Call,
                    crate::model::ExceptionInfo {
                        type_name: "builtins.ConnectionError".into(),
                        mro: vec![],
                        message: "connection reset by peer".into(),
                    },
                    "tests/test_a.py",
                    3,
                    "",
                ),
                sample::passed_attempt(2),
            ],
            _ => vec![],
        };
        let mut attempts = attempts;
        for a in &mut attempts {
            crate::classify::annotate(a);
        }
        r.tests.push(sample::test(nodeid, *outcome, 1, attempts));
    }
    r.summarize();
    r
}

fn record_day(store: &mut Store, day: i64, commit: &str, tests: &[(&str, Outcome)]) {
    let r = report(day, tests);
    let mut run = RunRecord::from_report(&r);
    run.commit_sha = Some(commit.into());
    run.branch = Some("main".into());
    assert!(matches!(store.record(&run, &r), Ok(Recorded::Run { .. })));
}

fn sqlite() -> (tempfile::TempDir, Location) {
    let dir = tempfile::tempdir().unwrap();
    let loc = Location::Sqlite(dir.path().join("history.db"));
    (dir, loc)
}

use Outcome::{Failed, Flaky, Passed};

/// Ten days of one suite: `a` flaky on days 2 and 5, `b` failing from day 8 (commit c8), `c` always
/// passing, `d` never flaky.
fn ten_days(store: &mut Store) {
    for day in 0..10 {
        let a = if day == 2 || day == 5 { Flaky } else { Passed };
        let b = if day >= 8 { Failed } else { Passed };
        record_day(
            store,
            day,
            &format!("c{day}00000000"),
            &[
                ("t.py::a", a),
                ("t.py::b", b),
                ("t.py::c", Passed),
                ("t.py::d", Passed),
            ],
        );
    }
}

#[test]
fn a_report_gets_the_verdict_of_each_failed_or_flaky_test() {
    let (_dir, loc) = sqlite();
    let mut store = Store::open(&loc, true, COMMAND_TIMEOUT).unwrap();
    ten_days(&mut store);
    let now = report(
        10,
        &[
            ("t.py::a", Flaky),
            ("t.py::b", Failed),
            ("t.py::c", Failed),
            ("t.py::d", Flaky),
            ("t.py::new", Failed),
            ("t.py::ok", Passed),
        ],
    );
    let found = store.lookup_report(&now).unwrap();
    let by_id = |id: &str| {
        found
            .iter()
            .find(|(i, _)| now.tests[*i].nodeid == id)
            .map(|(_, h)| h.clone())
            .unwrap_or_else(|| panic!("no history for {id}"))
    };
    let a = by_id("t.py::a");
    assert_eq!(a.verdict, HistoryVerdict::KnownFlaky);
    assert_eq!((a.runs, a.flaky_runs, a.failed_runs), (10, 2, 0));
    assert_eq!(a.first_flaky.as_deref(), Some("2026-11-03T00:00:00Z"));
    assert_eq!(a.first_seen.as_deref(), Some("2026-11-01T00:00:00Z"));
    assert_eq!(
        a.describe(),
        "known flaky: flaked 2 of the last 10 runs of main, first on 2026-11-03"
    );
    let b = by_id("t.py::b");
    assert_eq!(b.verdict, HistoryVerdict::FailingSince);
    assert_eq!(
        b.failing_since.as_ref().unwrap().commit.as_deref(),
        Some("c800000000")
    );
    assert_eq!(b.describe(), "failing since c800000");
    let c = by_id("t.py::c");
    assert_eq!(
        c.describe(),
        "new failure: passed in the last 10 runs of main"
    );
    assert_eq!(by_id("t.py::d").describe(), "new flake: first in 10 runs");
    assert_eq!(by_id("t.py::new").verdict, HistoryVerdict::FirstRun);
    assert!(
        found
            .iter()
            .all(|(i, _)| now.tests[*i].nodeid != "t.py::ok")
    );
}

#[test]
fn the_flaky_list_counts_runs_in_the_period() {
    let (_dir, loc) = sqlite();
    let mut store = Store::open(&loc, true, COMMAND_TIMEOUT).unwrap();
    ten_days(&mut store);
    let all = store.flaky_tests(i64::MIN).unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    let a = &all[0];
    assert_eq!(a.nodeid, "t.py::a");
    assert_eq!((a.runs, a.flaky_runs, a.failed_runs), (10, 2, 0));
    assert_eq!(a.first_seen, "2026-11-01T00:00:00Z");
    assert_eq!(a.last_flaky, "2026-11-06T00:00:00Z");
    // From day 4 on: one flaky run of six, first seen still the first run ever.
    let recent = store.flaky_tests(T0 + 4 * DAY).unwrap();
    assert_eq!((recent[0].runs, recent[0].flaky_runs), (6, 1));
    assert_eq!(recent[0].first_seen, "2026-11-01T00:00:00Z");
    assert!(store.flaky_tests(T0 + 6 * DAY).unwrap().is_empty());
}

#[test]
fn one_tests_runs_come_newest_first_with_their_failures() {
    let (_dir, loc) = sqlite();
    let mut store = Store::open(&loc, true, COMMAND_TIMEOUT).unwrap();
    ten_days(&mut store);
    let runs = store.test_runs("t.py::a", 6).unwrap();
    assert_eq!(runs.len(), 6);
    assert_eq!(runs[0].started_at, "2026-11-10T00:00:00Z");
    assert_eq!(runs[4].outcome, "flaky");
    assert_eq!(runs[4].attempts, 2);
    assert_eq!(runs[4].commit.as_deref(), Some("c500000000"));
    let f = &runs[4].failures[0];
    assert_eq!(
        f.exception_type.as_deref(),
        Some("builtins.ConnectionError")
    );
    assert_eq!(f.message.as_deref(), Some("connection reset by peer"));
    assert!(f.fingerprint.is_some(), "{f:?}");
    assert!(runs[0].failures.is_empty());
}

#[test]
fn a_run_is_recorded_once_and_pruned_by_age() {
    let (_dir, loc) = sqlite();
    let mut store = Store::open(&loc, true, COMMAND_TIMEOUT).unwrap();
    ten_days(&mut store);
    let again = report(3, &[("t.py::a", Passed)]);
    let again_run = RunRecord::from_report(&again);
    assert_eq!(
        store.record(&again_run, &again).unwrap(),
        Recorded::AlreadyThere
    );
    assert_eq!(store.run_count().unwrap(), 10);
    assert_eq!(store.prune(T0 + 7 * DAY).unwrap(), 7);
    assert_eq!(store.run_count().unwrap(), 3);
    assert_eq!(store.test_runs("t.py::a", 50).unwrap().len(), 3);
    let left = store.flaky_tests(i64::MIN).unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_newer_schema_is_refused_with_a_clear_line() {
    let (_dir, loc) = sqlite();
    drop(Store::open(&loc, true, COMMAND_TIMEOUT).unwrap());
    let Location::Sqlite(path) = &loc else {
        unreachable!()
    };
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute("INSERT INTO schema_version (version) VALUES (99)", [])
        .unwrap();
    drop(conn);
    let err = Store::open(&loc, true, COMMAND_TIMEOUT).err().unwrap();
    let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        text.contains("schema version 99, newer than this smart-rerun knows (1)"),
        "{text}"
    );
}

#[test]
fn a_corrupt_or_missing_file_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    std::fs::write(
        &path,
        b"this is not a database, just text that is long enough........",
    )
    .unwrap();
    let err = Store::open(&Location::Sqlite(path), true, COMMAND_TIMEOUT)
        .err()
        .unwrap();
    assert!(
        matches!(err, HistoryError::Open { .. } | HistoryError::Schema { .. }),
        "{err:?}"
    );
    let missing = Location::Sqlite(dir.path().join("none.db"));
    assert!(matches!(
        Store::open(&missing, false, COMMAND_TIMEOUT),
        Err(HistoryError::Missing(_))
    ));
}

#[test]
fn during_a_run_a_bad_history_is_one_warning_and_the_report_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("h.db");
    std::fs::write(&corrupt, vec![b'x'; 4096]).unwrap();
    for setting in [
        corrupt.to_str().unwrap(),
        "mysql://db/x",
        "postgres://127.0.0.1:1/none",
    ] {
        let mut r = report(0, &[("t.py::a", Flaky)]);
        let mut warn = Vec::new();
        let started = std::time::Instant::now();
        let h = RunHistory::start(Some(setting), &mut r, &mut warn);
        h.record(&r, &|_| None, dir.path(), &mut warn);
        let text = String::from_utf8(warn).unwrap();
        assert_eq!(text.lines().count(), 1, "{setting}: {text}");
        assert!(
            text.starts_with("smart-rerun: warning: history not used: "),
            "{text}"
        );
        assert!(r.tests[0].history.is_none());
        assert!(started.elapsed() < RUN_BUDGET, "{setting}");
    }
}

#[test]
fn a_run_records_itself_after_its_lookups() {
    let (dir, loc) = sqlite();
    let setting = loc.redacted();
    for day in 0..3 {
        let mut r = report(day, &[("t.py::a", if day == 2 { Flaky } else { Passed })]);
        let mut warn = Vec::new();
        let h = RunHistory::start(Some(&setting), &mut r, &mut warn);
        let env = |n: &str| match n {
            "CI" => Some("true".to_owned()),
            "GITHUB_SHA" => Some(format!("abc{day}")),
            "GITHUB_REF_TYPE" => Some("branch".to_owned()),
            "GITHUB_REF_NAME" => Some("main".to_owned()),
            _ => None,
        };
        h.record(&r, &env, dir.path(), &mut warn);
        assert!(warn.is_empty(), "{}", String::from_utf8_lossy(&warn));
        if day == 2 {
            let h = r.tests[0].history.as_ref().unwrap();
            assert_eq!(h.describe(), "new flake: first in 2 runs");
        }
    }
    let mut store = Store::open(&loc, false, COMMAND_TIMEOUT).unwrap();
    let runs = store.test_runs("t.py::a", 10).unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0].commit.as_deref(), Some("abc2"));
    assert_eq!(runs[0].branch.as_deref(), Some("main"));
}

#[test]
fn two_writers_on_one_sqlite_file_lose_nothing() {
    let (_dir, loc) = sqlite();
    drop(Store::open(&loc, true, COMMAND_TIMEOUT).unwrap());
    let threads: Vec<_> = (0..2)
        .map(|w| {
            let loc = loc.clone();
            std::thread::spawn(move || {
                let mut store = Store::open(&loc, true, COMMAND_TIMEOUT).unwrap();
                for day in 0..20 {
                    let tests: Vec<(String, Outcome)> = (0..200)
                        .map(|i| (format!("t.py::w{w}_{i}"), Passed))
                        .collect();
                    let refs: Vec<(&str, Outcome)> =
                        tests.iter().map(|(n, o)| (n.as_str(), *o)).collect();
                    let mut r = report(day, &refs);
                    r.run.cwd = format!("/writer/{w}");
                    let run = RunRecord::from_report(&r);
                    assert!(matches!(
                        store.record(&run, &r),
                        Ok(Recorded::Run { tests: 200 })
                    ));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut store = Store::open(&loc, false, COMMAND_TIMEOUT).unwrap();
    assert_eq!(store.run_count().unwrap(), 40);
    assert_eq!(store.test_runs("t.py::w1_199", 100).unwrap().len(), 20);
}

#[test]
fn times_round_trip() {
    assert_eq!(parse_time("2026-11-01T00:00:00Z"), Some(T0));
    assert_eq!(format_time(T0), "2026-11-01T00:00:00Z");
}
