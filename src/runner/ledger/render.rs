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
