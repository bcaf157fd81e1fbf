//! The ledger with a history in memory: new tests repeated, retries from history.
#![cfg(unix)]

use super::tests::*;
use super::*;
use crate::model::Prior;

/// A history in memory: the node ids it has seen, each test's flakes, the failures it saw for good.
#[derive(Default)]
struct FakeHistory {
    runs: u32,
    seen: Vec<String>,
    flakes: HashMap<String, (u32, u32)>,
    for_good: HashMap<(String, String), u32>,
    broken: bool,
}

impl Prior for FakeHistory {
    fn open(&mut self, _location: &str) -> Result<(), String> {
        Ok(())
    }
    fn unseen(&mut self, nodeids: &[&str]) -> Result<Option<Vec<bool>>, String> {
        if self.broken {
            return Err("database disk image is malformed".into());
        }
        Ok((self.runs > 0).then(|| {
            nodeids
                .iter()
                .map(|n| !self.seen.iter().any(|s| s == n))
                .collect()
        }))
    }
    fn flakes(&mut self, nodeid: &str) -> Result<(u32, u32), String> {
        if self.broken {
            return Err("database disk image is malformed".into());
        }
        Ok(self.flakes.get(nodeid).copied().unwrap_or((0, self.runs)))
    }
    fn failed_for_good(&mut self, nodeid: &str, fingerprint: &str) -> Result<u32, String> {
        let key = (nodeid.to_owned(), fingerprint.to_owned());
        Ok(self.for_good.get(&key).copied().unwrap_or(0))
    }
}

/// A ledger with a history, its settings in force (as after the first round's verdict).
fn with_history(history: FakeHistory, edit: impl FnOnce(&mut Settings)) -> Ledger {
    let mut settings = Settings::default();
    settings.policy.max_attempts = 2;
    settings.history = Some("h.db".into());
    edit(&mut settings);
    let mut l = Ledger::new(settings);
    l.connect_prior(Box::new(history));
    l
}

#[test]
fn a_test_new_to_the_history_repeats_and_a_failed_repeat_makes_it_a_new_flake() {
    let history = FakeHistory {
        runs: 3,
        seen: vec![id("old")],
        ..FakeHistory::default()
    };
    let mut l = with_history(history, |s| s.new_test_repeats = 3);
    l.apply(Entry::RoundStarted { number: 1 });
    l.apply(collection(&["old", "stable", "racy"]));
    for name in ["old", "stable", "racy"] {
        l.apply(result(name, "passed", 100.0));
    }
    l.apply(Entry::RoundEnded {
        end: Box::new(ended(0)),
        selection: None,
    });
    let new = l.new_tests();
    assert_eq!(new, [1, 2], "the tests the history has not seen");
    l.apply(Entry::Repeat {
        tests: &new,
        times: 3,
    });
    assert_eq!(l.queued(), vec![(1, 0.0), (2, 0.0)]);
    assert_eq!((l.max_attempts(1), l.repeats(0)), (4, 0));
    let repeats = vec![
        result("stable", "passed", 200.0),
        result("racy", "passed", 200.1),
        result("stable", "passed", 200.2),
        result("racy", "failed", 200.3),
        result("stable", "passed", 200.4),
        result("racy", "passed", 200.5),
    ];
    round(&mut l, 2, repeats, ended(1), Some(&[1, 2]));
    assert!(l.queued().is_empty(), "a failed repeat is not retried");
    let r = report(l);
    assert_eq!(outcome_of(&r, "old"), (Outcome::Passed, 0, None));
    assert_eq!(outcome_of(&r, "stable"), (Outcome::Passed, 4, None));
    let (outcome, attempts, why) = outcome_of(&r, "racy");
    assert_eq!((outcome, attempts), (Outcome::Flaky, 4));
    assert_eq!(
        why.as_deref(),
        Some(
            "a test new to the history: it passed, then failed on repeat 2 of 3 (smart_rerun_new_test_repeats)"
        )
    );
    assert_eq!(r.run.exit_code, ExitCode::TestsFailed);
    assert_eq!(
        r.run.exit_reason,
        "1 test new to the history failed on a repeat: flaky before it merges (new_test_repeats)"
    );
}

#[test]
fn nothing_is_repeated_from_an_empty_or_foreign_history_or_without_one() {
    let finished = |l: &mut Ledger, names: &[&str]| {
        l.apply(Entry::RoundStarted { number: 1 });
        l.apply(collection(names));
        for name in names {
            l.apply(result(name, "passed", 100.0));
        }
        l.apply(Entry::RoundEnded {
            end: Box::new(ended(0)),
            selection: None,
        });
    };
    let mut l = with_history(FakeHistory::default(), |s| s.new_test_repeats = 2);
    finished(&mut l, &["a", "b"]);
    assert!(l.new_tests().is_empty());
    assert!(
        l.warnings[0].contains("the history has no runs yet"),
        "{:?}",
        l.warnings
    );

    let history = FakeHistory {
        runs: 5,
        seen: vec![id("a")],
        ..FakeHistory::default()
    };
    let mut l = with_history(history, |s| s.new_test_repeats = 2);
    finished(&mut l, &["a", "b", "c", "d", "e"]);
    assert!(l.new_tests().is_empty());
    assert!(
        l.warnings[0].starts_with("new_test_repeats: 4 tests of 5 are new"),
        "{:?}",
        l.warnings
    );

    let history = FakeHistory {
        runs: 5,
        broken: true,
        ..FakeHistory::default()
    };
    let mut l = with_history(history, |s| s.new_test_repeats = 2);
    finished(&mut l, &["a"]);
    assert!(l.new_tests().is_empty());
    assert_eq!(
        l.warnings,
        [
            "history not used for retries and repeats: database disk image is malformed (the run goes on without it)"
        ]
    );

    let settings = Settings {
        new_test_repeats: 2,
        history_policy: true,
        ..Settings::default()
    };
    let mut l = Ledger::new(settings);
    l.connect_prior(Box::new(FakeHistory::default()));
    assert_eq!(
        l.warnings,
        [
            "smart_rerun_new_test_repeats and smart_rerun_history_policy need a history (smart_rerun_history, --history): ignored"
        ]
    );
}

#[test]
fn history_gives_a_known_flaky_test_more_attempts_and_stops_a_known_failure() {
    let mut history = FakeHistory {
        runs: 10,
        ..FakeHistory::default()
    };
    history.flakes.insert(id("flaky"), (3, 10));
    // The fingerprint `result` gives every failure of a test.
    let mut probe = ledger(2, true);
    probe.apply(Entry::RoundStarted { number: 1 });
    probe.apply(collection(&["broken"]));
    probe.apply(result("broken", "failed", 100.0));
    let fingerprint = probe.tests[0].attempts()[0].fingerprint.clone().unwrap();
    history.for_good.insert((id("broken"), fingerprint), 3);
    let mut l = with_history(history, |s| {
        s.history_policy = true;
        s.history_max = 4;
    });
    l.apply(Entry::RoundStarted { number: 1 });
    l.apply(collection(&["flaky", "broken"]));
    l.apply(result("flaky", "failed", 100.0));
    l.apply(result("broken", "failed", 100.0));
    l.apply(Entry::RoundEnded {
        end: Box::new(ended(1)),
        selection: None,
    });
    assert_eq!(
        l.max_attempts(0),
        4,
        "known flaky: history's max over the policy's 2"
    );
    assert_eq!(
        l.queued(),
        vec![(0, 100.0)],
        "the known failure is not retried"
    );
    // Failing the same way twice does not stop a known flaky test.
    for number in 2..=3 {
        round(
            &mut l,
            number,
            vec![result("flaky", "failed", 100.0 * f64::from(number))],
            ended(1),
            Some(&[0]),
        );
    }
    round(
        &mut l,
        4,
        vec![result("flaky", "passed", 400.0)],
        ended(0),
        Some(&[0]),
    );
    let r = report(l);
    assert_eq!(outcome_of(&r, "flaky"), (Outcome::Flaky, 4, None));
    assert_eq!(
        outcome_of(&r, "broken"),
        (
            Outcome::Failed,
            1,
            Some("history saw this failure fail the test for good in 3 earlier runs, never passing on a rerun, so the 1 remaining attempt was not spent (smart_rerun_history_policy)".into())
        )
    );
    assert_eq!(r.summary.attempts_saved, 1);
}
