//! What the runner tells while it runs: typed [`ProgressEvent`]s, handed to a [`ProgressSink`] (the
//! terminal's progress lines, GitHub's command guard around them).

use super::{Round, RoundKind};
use std::time::Duration;

/// A round about to start.
#[derive(Debug, Clone)]
pub(crate) struct RoundPlan<'a> {
    pub number: u32,
    pub kind: RoundKind,
    /// The selected tests; empty for the first round, which runs the suite.
    pub tests: Vec<PlannedTest<'a>>,
    /// Whether the round runs without xdist workers.
    pub serial: bool,
}

/// One test of a [`RoundPlan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlannedTest<'a> {
    pub nodeid: &'a str,
    /// The attempt this round makes, 1-based.
    pub attempt: u32,
    pub max_attempts: u32,
}

/// One step of the run, as it happens.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ProgressEvent<'a> {
    /// The run waits `wait` before the round `plan` (a retry delay).
    Waiting {
        wait: Duration,
        plan: &'a RoundPlan<'a>,
    },
    /// The wait goes on; the round starts in `left`. Sent at the sink's [`ProgressSink::tick_interval`].
    WaitingTick {
        left: Duration,
    },
    /// The wait is over, elapsed or cut short by a signal.
    WaitingDone,
    RoundStarting(&'a RoundPlan<'a>),
    RoundFinished(&'a Round),
}

/// Receives the run's progress.
pub(crate) trait ProgressSink {
    fn event(&mut self, event: ProgressEvent<'_>);

    /// How often a wait sends [`ProgressEvent::WaitingTick`] (`None`: never), for a live countdown.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }
}
