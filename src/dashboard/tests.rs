//! The dashboard's queries on a real SQLite history: per-run counts, per-test counts by branch, the
//! timelines with their failed attempts, fingerprints shared by several tests, and the filters.

use super::data::{self, Dashboard};
use crate::history::record::{Recorded, RunRecord, format_time};
use crate::history::{Location, Store};
use crate::model::{ExceptionInfo, Outcome, Phase, RunReport};
use crate::sample;

const DAY: i64 = 86_400_000;
/// 2026-11-01T00:00:00Z
const T0: i64 = 1_793_491_200_000;

fn report(day: i64, tests: &[(&str, Outcome)]) -> RunReport {
    let mut r = sample::empty();
    r.run.started_at = format_time(T0 + day * DAY);
    r.run.finished_at = format_time(T0 + day * DAY + 60_000);
    for (nodeid, outcome) in tests {
        let mut attempts = match outcome {
            Outcome::Flaky => vec![
                sample::failed_attempt(
                    1,
                    Phase::Call,
                    ExceptionInfo {
                        type_name: "builtins.ConnectionError".into(),
                        mro: vec![],
                        message: "backend unavailable".into(),
                    },
                    "tests/conftest.py",
                    7,
                    "",
                ),
                sample::passed_attempt(2),
            ],
            _ => vec![],
        };
        for a in &mut attempts {
            crate::classify::annotate(a);
        }
        r.tests.push(sample::test(nodeid, *outcome, 1, attempts));
    }
    r.summarize();
    r
}

use Outcome::{Failed, Flaky, Passed};

/// Four runs: `x` flaky on days 1 and 3, `y` flaky on day 2, `z` failed on day 2, `p` always passing;
/// day 3 on branch `dev`, the others on `main`.
fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let loc = Location::Sqlite(dir.path().join("history.db"));
    let mut store = Store::open(&loc, true, std::time::Duration::from_secs(5)).unwrap();
    for day in 0..4 {
        let pick = |o: bool| if o { Flaky } else { Passed };
        let r = report(
            day,
            &[
                ("t.py::x", pick(day == 1 || day == 3)),
                ("t.py::y", pick(day == 2)),
                ("t.py::z", if day == 2 { Failed } else { Passed }),
                ("t.py::p", Passed),
            ],
        );
        let mut run = RunRecord::from_report(&r);
        run.branch = Some(if day == 3 { "dev" } else { "main" }.into());
        run.ci_job = Some("py3.12".into());
        assert!(matches!(store.record(&run, &r), Ok(Recorded::Run { .. })));
    }
    (dir, store)
}

fn load(store: &mut Store, since: Option<i64>, branch: Option<&str>) -> Dashboard {
    data::load(store.backend(), "T", since, branch, T0 + 10 * DAY).unwrap()
}

#[test]
fn runs_tests_timelines_and_fingerprints_come_from_the_history() {
    let (_dir, mut store) = store();
    let d = load(&mut store, None, None);
    let counts: Vec<(i64, i64, i64)> = d
        .runs
        .iter()
        .map(|r| (r.tests, r.flaky, r.failed))
        .collect();
    assert_eq!(counts, vec![(4, 0, 0), (4, 1, 0), (4, 1, 1), (4, 1, 0)]);
    assert!(d.runs.windows(2).all(|w| w[0].started_at < w[1].started_at));
    assert_eq!(d.runs[3].branch.as_deref(), Some("dev"));
    assert_eq!(d.runs[0].job.as_deref(), Some("py3.12"));

    // Flaky or failing tests only, most flaky first; counts per branch.
    let names: Vec<&str> = d.tests.iter().map(|t| t.nodeid.as_str()).collect();
    assert_eq!(names, vec!["t.py::x", "t.py::y", "t.py::z"]);
    let x = &d.tests[0];
    assert_eq!(x.runs, 4);
    let mut groups: Vec<(Option<&str>, i64, i64)> = x
        .groups
        .iter()
        .map(|g| (g.branch.as_deref(), g.flaky, g.failed))
        .collect();
    groups.sort();
    assert_eq!(groups, vec![(Some("dev"), 1, 0), (Some("main"), 1, 0)]);
    let z = &d.tests[2];
    assert_eq!((z.runs, z.groups[0].failed), (4, 1));
    assert_eq!(
        x.groups.iter().filter_map(|g| g.last_flaky).max(),
        Some(T0 + 3 * DAY)
    );

    // The timeline: newest first, the failed attempt of each flaky run with its fingerprint.
    let outcomes: Vec<&str> = x.timeline.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, vec!["flaky", "passed", "flaky", "passed"]);
    let f = &x.timeline[0].failures;
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].number, 1);
    assert_eq!(f[0].message.as_deref(), Some("backend unavailable"));
    assert_eq!(f[0].fingerprint.as_deref().map(str::len), Some(16));
    assert!(f[0].category.is_some());
    assert!(x.timeline[1].failures.is_empty());

    // x and y failed the same way: one fingerprint, two tests, three failed attempts.
    assert_eq!(d.fingerprints.len(), 1);
    let g = &d.fingerprints[0];
    assert_eq!((g.test_count, g.occurrences), (2, 3));
    assert_eq!(g.nodeids, vec!["t.py::x", "t.py::y"]);
    assert_eq!(g.last_seen, T0 + 3 * DAY);
    assert!(d.quarantine.is_none());
}

#[test]
fn the_period_and_the_branch_filter_the_runs() {
    let (_dir, mut store) = store();
    let main = load(&mut store, None, Some("main"));
    assert_eq!(main.runs.len(), 3);
    let x = main.tests.iter().find(|t| t.nodeid == "t.py::x").unwrap();
    assert_eq!(x.groups.len(), 1);
    assert_eq!((x.runs, x.groups[0].flaky), (3, 1));
    assert_eq!(x.timeline.len(), 3);

    let late = load(&mut store, Some(T0 + 2 * DAY), None);
    assert_eq!(late.runs.len(), 2);
    let names: Vec<&str> = late.tests.iter().map(|t| t.nodeid.as_str()).collect();
    // x and y flaky once each (x later), z failed once.
    assert_eq!(names, vec!["t.py::x", "t.py::y", "t.py::z"]);
    assert!(late.tests.iter().all(|t| t.timeline.len() == 2));

    let none = load(&mut store, None, Some("nowhere"));
    assert!(none.runs.is_empty() && none.tests.is_empty() && none.fingerprints.is_empty());
}
