//! The first round's deferred rendering, as the ledger sees it: which briefly drawn failures stay
//! failed (the collector draws those again in full), and the full text replacing an attempt's brief one.

use super::{Ledger, Seen, Status};
use crate::model::{Outcome, Phase};

impl Ledger {
    /// Whether every one of `nodeids` has its result from this round (under xdist a worker's query can
    /// arrive before the controller has written the results of the worker's last tests). An unknown
    /// node id has none to wait for.
    pub(in crate::runner) fn render_ready(&self, nodeids: &[String]) -> bool {
        nodeids.iter().all(|nodeid| {
            self.find(nodeid)
                .is_none_or(|i| self.round.seen.get(i) == Some(&Seen::Ran))
        })
    }

    /// Which of `nodeids` (tests of this round drawn briefly) will not be run again: the ones to draw
    /// in full. `stop_all`: nothing will be rerun (an interrupt, an early exit). `round_complete`: every
    /// result of the round is in; until then the run-wide budgets (`max_failures`, `max_reruns`) may
    /// still stop any of them, so every one is answered. Saying too many costs only time (a failure
    /// drawn in full, as without deferral); saying too few would lose text, so the doubtful cases are
    /// answered as staying failed. A node id without a result counts as staying failed.
    pub(in crate::runner) fn render_answer(
        &self,
        nodeids: &[String],
        stop_all: bool,
        round_complete: bool,
    ) -> Vec<String> {
        let s = &self.settings;
        let budgets = s.max_failures.is_some() || s.max_reruns.is_some();
        if stop_all || self.interrupted || self.early_exit.is_some() || (budgets && !round_complete)
        {
            return nodeids.to_vec();
        }
        if let Some(limit) = s.max_failures {
            let failed = self
                .tests
                .iter()
                .filter(|t| t.last.is_some_and(Outcome::is_failure))
                .count();
            if failed as u64 > u64::from(limit) {
                return nodeids.to_vec();
            }
        }
        if let Some(limit) = s.max_reruns {
            let due = self
                .tests
                .iter()
                .filter(|t| t.runs > 0 && matches!(t.status, Status::Queued { .. }))
                .count();
            if self.reruns_started as usize + due > limit as usize {
                return nodeids.to_vec();
            }
        }
        nodeids
            .iter()
            .filter(|nodeid| {
                self.find(nodeid).is_none_or(|i| {
                    let t = &self.tests[i];
                    self.round.seen.get(i) != Some(&Seen::Ran)
                        || !matches!(t.status, Status::Queued { .. })
                })
            })
            .cloned()
            .collect()
    }

    /// The full text of a failure of this round that stays failed: it replaces the brief traceback of
    /// the test's attempt, when that attempt's failure is in this phase.
    pub(super) fn rendered(&mut self, nodeid: &str, phase: Phase, traceback: Option<String>) {
        let Some(i) = self.find(nodeid) else {
            return;
        };
        let number = self.round.number;
        let Some(notes) = self.tests[i].notes.as_deref_mut() else {
            return;
        };
        if let Some(attempt) = notes
            .attempts
            .iter_mut()
            .rev()
            .find(|a| a.round == number && a.phase == Some(phase))
        {
            attempt.traceback = traceback;
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::super::tests::{collection, id, ledger, result};
    use super::super::{Entry, Ledger};
    use crate::model::Phase;

    /// A first round under `max` attempts where `flaky` failed, `ok` passed and `later` has not run.
    fn first_round(max: u32) -> Ledger {
        let mut l = ledger(max, true);
        l.apply(Entry::RoundStarted { number: 1 });
        l.apply(collection(&["flaky", "ok", "later"]));
        l.apply(result("flaky", "failed", 10.0));
        l.apply(result("ok", "passed", 10.0));
        l
    }

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| id(n)).collect()
    }

    #[test]
    fn the_answer_names_the_tests_that_will_not_be_rerun() {
        /// Max attempts, stop all, round complete, max_failures, max_reruns, answered as staying failed.
        type Row = (
            u32,
            bool,
            bool,
            Option<u32>,
            Option<u32>,
            &'static [&'static str],
        );
        let rows: &[Row] = &[
            (3, false, true, None, None, &[]),
            (1, false, true, None, None, &["flaky"]),
            (3, true, true, None, None, &["flaky"]),
            // A budget could still stop it while results are to come.
            (3, false, false, Some(10), None, &["flaky"]),
            (3, false, true, Some(10), None, &[]),
            (3, false, true, Some(0), None, &["flaky"]),
            (3, false, true, None, Some(1), &[]),
            (3, false, false, None, Some(1), &["flaky"]),
        ];
        for &(max, stop_all, complete, max_failures, max_reruns, want) in rows {
            let mut l = first_round(max);
            l.settings.max_failures = max_failures;
            l.settings.max_reruns = max_reruns;
            let asked = ids(&["flaky"]);
            assert!(l.render_ready(&asked));
            assert_eq!(
                l.render_answer(&asked, stop_all, complete),
                ids(want),
                "max {max}, stop all {stop_all}, complete {complete}, {max_failures:?}, {max_reruns:?}"
            );
        }
    }

    #[test]
    fn a_test_without_its_result_is_waited_for_and_else_counted_as_staying_failed() {
        let l = first_round(3);
        let asked = ids(&["flaky", "later"]);
        assert!(!l.render_ready(&asked), "later has no result yet");
        assert_eq!(l.render_answer(&asked, false, true), ids(&["later"]));
        let unknown = vec!["tests/test_a.py::nowhere".to_owned()];
        assert!(l.render_ready(&unknown));
        assert_eq!(l.render_answer(&unknown, false, true), unknown);
    }

    #[test]
    fn the_full_text_replaces_the_brief_one_of_the_same_round_and_phase() {
        let mut l = first_round(1);
        let traceback = |l: &Ledger| {
            let i = l.find(&id("flaky")).unwrap();
            l.tests[i].attempts()[0].traceback.clone()
        };
        let brief = traceback(&l);
        l.apply(Entry::Rendered {
            nodeid: &id("flaky"),
            phase: Phase::Teardown,
            traceback: Some("not this phase".into()),
        });
        assert_eq!(traceback(&l), brief);
        l.apply(Entry::Rendered {
            nodeid: &id("flaky"),
            phase: Phase::Call,
            traceback: Some("full, with locals".into()),
        });
        assert_eq!(traceback(&l).as_deref(), Some("full, with locals"));
        // A test that passed keeps no attempts: nothing to replace, and no error.
        l.apply(Entry::Rendered {
            nodeid: &id("ok"),
            phase: Phase::Call,
            traceback: Some("x".into()),
        });
    }
}
