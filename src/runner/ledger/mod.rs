//! The run's ledger: a state machine fed [`Entry`]s in the order things happen (the first round's
//! collection, each test's start and result, each round's end, a signal) that keeps each test's attempts
//! and its next step, and at the end makes the report and its exit code.
//!
//! It starts no process, reads no file and no clock: a round's end carries the time it ended, and the
//! report's inputs (the rounds, the quarantine file) are handed to [`Ledger::into_report`]. So every path
//! a run can take (a crash mid-test, `-x`, an interrupt, a rerun round that collects nothing) is replayed
//! in the unit tests on synthetic entries, without pytest.

mod prior;
mod render;
mod report;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_history;

pub(super) use report::ReportInput;
#[cfg(test)]
use report::final_outcome;

use super::events::{Collected, SessionFinish, SessionStart, TestEvent};
use super::{describe_status, relative_to};
use crate::config::{Settings, marker::MarkerPolicy};
use crate::model::{Attempt, CollectionError, ExceptionInfo, ExitCode, Outcome, Phase, Prior};
use crate::policy::{RetryPolicy, Step, StopReason, next_step};
use crate::report::counted;
use crate::timestamp::rfc3339_from_epoch;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::process::ExitStatus;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Status {
    /// Due to run in a later round, not before `ready_at` (seconds since the epoch).
    Queued {
        ready_at: f64,
    },
    Done,
}

/// One test's progress through the run. A suite can hold 100,000 of them, most of which pass at once:
/// what only some tests have lives in [`TestNotes`], boxed.
#[derive(Debug)]
pub(super) struct TestState {
    pub(super) nodeid: Box<str>,
    pub(super) file: Option<u32>,
    pub(super) line: Option<u32>,
    pub(super) runs: u32,
    pub(super) last: Option<Outcome>,
    pub(super) last_duration: f64,
    /// When the latest attempt ended (seconds since the epoch), for delays an advisor sets.
    pub(super) last_stop: f64,
    pub(super) status: Status,
    pub(super) notes: Option<Box<TestNotes>>,
}

#[derive(Debug, Default)]
pub(super) struct TestNotes {
    /// Stored once the test has failed; a test that passes its only attempt keeps none.
    pub(super) attempts: Vec<Attempt>,
    pub(super) reason: Option<String>,
    pub(super) stopped_because: Option<String>,
    /// A test history has never seen, run this many more times after it passed (`new_test_repeats`).
    pub(super) repeats: u32,
    /// The attempts history gives this known flaky test (`history_policy`), once it has failed.
    pub(super) history_max: Option<u32>,
}

impl TestState {
    pub(super) fn attempts(&self) -> &[Attempt] {
        self.notes.as_ref().map_or(&[], |n| &n.attempts)
    }

    pub(super) fn set_reason(&mut self, reason: Option<String>) {
        if reason.is_some() || self.notes.is_some() {
            self.notes.get_or_insert_default().reason = reason;
        }
    }

    pub(super) fn set_stopped_because(&mut self, why: Option<String>) {
        if why.is_some() || self.notes.is_some() {
            self.notes.get_or_insert_default().stopped_because = why;
        }
    }
}

/// What the ledger is told, in the order it happens.
#[derive(Debug)]
pub(super) enum Entry<'a> {
    /// Round `number` starts (the first round's tests come with its collection).
    RoundStarted { number: u32 },
    /// The first round's collection, once its session is known (`rootdir` is the session's): the tests
    /// are made from it, in its order.
    Collected {
        collected: Collected,
        rootdir: PathBuf,
    },
    /// A later round's collection: which of the run's tests it listed.
    Listed(&'a Collected),
    /// A test started; its result may never come (pytest can die while it runs).
    Started { nodeid: &'a str },
    /// A test's result.
    Finished(TestEvent),
    /// The round's pytest has exited, or has said its last word; `selection` is what a rerun round was
    /// given (the first round runs everything).
    RoundEnded {
        end: Box<RoundEnd>,
        selection: Option<&'a [u32]>,
    },
    /// The first round found settings the run cannot go on with (exit 4): nothing more runs.
    InvalidSettings(String),
    /// A signal: the tests still due for another attempt are settled, and nothing more runs.
    Interrupted,
    /// Run these tests, new to the history and passed, `times` more times in the next round.
    Repeat { tests: &'a [u32], times: u32 },
    /// A failure of this round drawn in full, replacing its brief traceback (`render.py`).
    Rendered {
        nodeid: &'a str,
        phase: Phase,
        traceback: Option<String>,
    },
}

/// What a round's pytest said besides its test results, read once it has ended.
#[derive(Debug)]
pub(super) struct RoundEnd {
    pub(super) status: ExitStatus,
    /// When it ended (seconds since the epoch): the end of an attempt that a crash cut short.
    pub(super) at: f64,
    /// The collector reported in (the command's environment reached pytest).
    pub(super) hello: bool,
    pub(super) session: Option<SessionStart>,
    /// A collection was reported.
    pub(super) collected: bool,
    /// Collection errors: node id and traceback.
    pub(super) collect_errors: Vec<(String, String)>,
    /// Any test result came, of a collected test or not.
    pub(super) any_test: bool,
    /// pytest reported an interrupt, or smart-rerun received a signal.
    pub(super) interrupted: bool,
    pub(super) finish: Option<SessionFinish>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    NotStarted,
    Running,
    /// It has an attempt from this round: its result, or the error of a crash while it ran.
    Ran,
}

/// Each test's progress in the round being recorded.
#[derive(Debug)]
struct Tally {
    number: u32,
    seen: Vec<Seen>,
    /// Tests that started, in the order they started; those that finished are pruned as the list grows.
    /// The ones still [`Seen::Running`] at the end were running when pytest died or was interrupted.
    running: Vec<u32>,
    /// A rerun round: which tests its collection listed.
    present: Option<Vec<bool>>,
    /// A collected test ran, or was charged an attempt.
    progressed: bool,
    /// A test of this round failed and is due another attempt.
    retry_due: bool,
}

impl Tally {
    fn new(number: u32, tests: usize) -> Self {
        Tally {
            number,
            seen: vec![Seen::NotStarted; tests],
            running: Vec::new(),
            present: None,
            progressed: false,
            retry_due: false,
        }
    }

    fn started(&mut self, i: usize) {
        if self.seen[i] != Seen::NotStarted {
            return;
        }
        self.seen[i] = Seen::Running;
        if self.running.len() == self.running.capacity() {
            let seen = &self.seen;
            self.running.retain(|&r| seen[r as usize] == Seen::Running);
            // At most half full after pruning, so pruning stays linear in the round's tests.
            self.running.reserve(self.running.len());
        }
        self.running.push(i as u32);
    }
}

/// Each test's attempts and next step, and what the run's end needs to decide its exit code.
pub(super) struct Ledger {
    pub(super) tests: Vec<TestState>,
    /// Positions in `tests` by node id, hashed with `hasher`: each node id is stored once, in its test.
    index: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
    /// Rootdir-relative test files; `files_abs` the same, absolute, for selections.
    pub(super) files: Vec<String>,
    pub(super) files_abs: Vec<String>,
    session: Option<SessionStart>,
    /// The first round's rootdir, which failure locations are made relative to.
    rootdir: PathBuf,
    collection_errors: Vec<CollectionError>,
    pub(super) warnings: Vec<String>,
    /// pytest stopped the first round because of collection errors (it exits 2 then).
    collection_aborted: bool,
    pub(super) interrupted: bool,
    /// A problem with the final round's session that is not a test result.
    session_problem: Option<(ExitCode, String)>,
    /// The run ends before any rerun, with this exit code and reason.
    pub(super) early_exit: Option<(ExitCode, String)>,
    /// The settings in force: the command line's and environment's over the ini values.
    pub(super) settings: Settings,
    /// Policies from markers, by node id (unmarked tests follow `settings.policy`).
    pub(super) markers: HashMap<String, MarkerPolicy>,
    /// Reruns started so far, for `max_reruns`.
    pub(super) reruns_started: u32,
    /// What early stops on confirmed deterministic failures saved.
    attempts_saved: usize,
    seconds_saved: f64,
    round: Tally,
    /// The history, for `new_test_repeats` and `history_policy` (see [`Ledger::connect_prior`]).
    prior: Option<Box<dyn Prior>>,
}

impl Ledger {
    pub(super) fn new(settings: Settings) -> Self {
        Ledger {
            tests: Vec::new(),
            index: hashbrown::HashTable::new(),
            hasher: std::hash::RandomState::new(),
            files: Vec::new(),
            files_abs: Vec::new(),
            session: None,
            rootdir: PathBuf::new(),
            collection_errors: Vec::new(),
            warnings: Vec::new(),
            collection_aborted: false,
            interrupted: false,
            session_problem: None,
            early_exit: None,
            settings,
            markers: HashMap::new(),
            reruns_started: 0,
            attempts_saved: 0,
            seconds_saved: 0.0,
            round: Tally::new(1, 0),
            prior: None,
        }
    }

    /// Records one entry.
    pub(super) fn apply(&mut self, entry: Entry<'_>) {
        match entry {
            Entry::RoundStarted { number } => self.round = Tally::new(number, self.tests.len()),
            Entry::Collected { collected, rootdir } => {
                self.make_tests(collected, rootdir);
                self.round.seen = vec![Seen::NotStarted; self.tests.len()];
            }
            Entry::Listed(collected) => {
                let mut present = vec![false; self.tests.len()];
                for (nodeid, _, _) in &collected.items {
                    if let Some(i) = self.find(nodeid) {
                        present[i] = true;
                    }
                }
                self.round.present = Some(present);
            }
            Entry::Started { nodeid } => {
                if let Some(i) = self.find(nodeid) {
                    self.round.started(i);
                }
            }
            Entry::Finished(event) => self.finished(event),
            Entry::RoundEnded { end, selection } => self.round_ended(*end, selection),
            Entry::InvalidSettings(message) => {
                self.early_exit = Some((ExitCode::UsageError, message));
                for t in self.tests.iter_mut().filter(|t| t.runs == 0) {
                    t.set_reason(Some(
                        "not run: smart-rerun stopped on invalid settings".into(),
                    ));
                }
            }
            Entry::Repeat { tests, times } => {
                for &i in tests {
                    let t = &mut self.tests[i as usize];
                    if t.runs != 1 || t.last != Some(Outcome::Passed) || t.notes.is_some() {
                        continue;
                    }
                    // The first run's pass, kept so that the report shows every run of the test.
                    let first = Attempt {
                        number: 1,
                        ..bare_attempt(1, Outcome::Passed, t.last_duration, t.last_stop)
                    };
                    let notes = t.notes.get_or_insert_default();
                    notes.attempts.push(first);
                    notes.repeats = times;
                    t.status = Status::Queued { ready_at: 0.0 };
                }
            }
            Entry::Rendered {
                nodeid,
                phase,
                traceback,
            } => self.rendered(nodeid, phase, traceback),
            Entry::Interrupted => {
                self.interrupted = true;
                for t in &mut self.tests {
                    if let Status::Queued { .. } = t.status {
                        t.status = Status::Done;
                        t.set_stopped_because(Some("the run was interrupted".into()));
                    }
                }
            }
        }
    }

    /// A test of the current round failed and is due another attempt (time to start the next round's
    /// pytest).
    pub(super) fn retry_due(&self) -> bool {
        self.round.retry_due
    }

    /// The tests due for another attempt, with the time each may start (seconds since the epoch).
    pub(super) fn queued(&self) -> Vec<(usize, f64)> {
        self.tests
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match t.status {
                Status::Queued { ready_at } => Some((i, ready_at)),
                Status::Done => None,
            })
            .collect()
    }

    /// The position of the test with this node id.
    pub(super) fn find(&self, nodeid: &str) -> Option<usize> {
        self.index
            .find(self.hasher.hash_one(nodeid), |&i| {
                &*self.tests[i as usize].nodeid == nodeid
            })
            .map(|&i| i as usize)
    }

    /// The policy a test runs under: its marker's, else the run's.
    fn policy_for(&self, nodeid: &str) -> std::borrow::Cow<'_, RetryPolicy> {
        match self.markers.get(nodeid) {
            Some(m) => std::borrow::Cow::Owned(m.apply(&self.settings.policy)),
            None => std::borrow::Cow::Borrowed(&self.settings.policy),
        }
    }

    /// The repeats test `i` runs as new to the history (0: none).
    pub(super) fn repeats(&self, i: usize) -> u32 {
        self.tests[i].notes.as_ref().map_or(0, |n| n.repeats)
    }

    /// The attempts test `i` may get in all: its policy's, or its first run and its repeats.
    pub(super) fn max_attempts(&self, i: usize) -> u32 {
        match self.repeats(i) {
            0 => self.policy_of(i).max_attempts,
            n => 1 + n,
        }
    }

    /// Test `i`'s policy, with the attempts history gives it when it is known flaky (a marker's own
    /// `max` wins).
    fn policy_of(&self, i: usize) -> std::borrow::Cow<'_, RetryPolicy> {
        let t = &self.tests[i];
        let mut policy = self.policy_for(&t.nodeid);
        let marked_max = self
            .markers
            .get(&*t.nodeid)
            .is_some_and(|m| m.max_attempts.is_some());
        if let Some(max) = t.notes.as_ref().and_then(|n| n.history_max) {
            if !marked_max && max > policy.max_attempts {
                policy.to_mut().max_attempts = max;
            }
        }
        policy
    }

    /// Makes the tests' states from the first round's collection, moving the node ids into them.
    fn make_tests(&mut self, collected: Collected, rootdir: PathBuf) {
        self.files = collected
            .files
            .iter()
            .map(|f| relative_to(f, &rootdir))
            .collect();
        let files = collected.files.len();
        self.files_abs = collected.files;
        self.rootdir = rootdir;
        self.tests.reserve_exact(collected.items.len());
        let hasher = &self.hasher;
        self.index.reserve(collected.items.len(), |&i| {
            hasher.hash_one(&*self.tests[i as usize].nodeid)
        });
        for (nodeid, file, line) in collected.items {
            let tests = &self.tests;
            let entry = self.index.entry(
                hasher.hash_one(nodeid.as_str()),
                |&i| *tests[i as usize].nodeid == nodeid,
                |&i| hasher.hash_one(&*tests[i as usize].nodeid),
            );
            let hashbrown::hash_table::Entry::Vacant(entry) = entry else {
                continue;
            };
            entry.insert(tests.len() as u32);
            self.tests.push(TestState {
                nodeid: nodeid.into_boxed_str(),
                file: u32::try_from(file).ok().filter(|&f| (f as usize) < files),
                line,
                runs: 0,
                last: None,
                last_duration: 0.0,
                last_stop: 0.0,
                status: Status::Queued { ready_at: 0.0 },
                notes: None,
            });
        }
    }

    /// Records a test's result as soon as it is read.
    fn finished(&mut self, event: TestEvent) {
        let Some(i) = self.find(&event.nodeid) else {
            return;
        };
        self.round.seen[i] = Seen::Ran;
        self.round.progressed = true;
        let mut attempt = report::attempt_from_event(&event, self.round.number, &self.rootdir);
        if let (Some(loc), Some(f)) = (attempt.test_location.as_mut(), self.tests[i].file) {
            loc.file = self.files[f as usize].clone();
        }
        if attempt
            .test_location
            .as_ref()
            .is_some_and(|l| l.file.is_empty())
        {
            attempt.test_location = None;
        }
        // Why it was skipped or xfailed (the collector sends it); the latest attempt's reason wins.
        self.tests[i].set_reason(event.reason);
        self.record(i, attempt, event.stop);
        if self.tests[i].runs > 0 && matches!(self.tests[i].status, Status::Queued { .. }) {
            self.round.retry_due = true;
        }
    }

    fn round_ended(&mut self, mut end: RoundEnd, selection: Option<&[u32]>) {
        let number = self.round.number;
        if number == 1 {
            self.first_round_ended(&mut end);
            if self.early_exit.is_some() {
                // No tests to settle, and no crash to guess at: the early exit says what happened.
                self.interrupted |= end.interrupted;
                return;
            }
        }
        let status = end.status;
        self.settle(end, selection);
        if number > 1 && !self.round.progressed && !self.interrupted {
            // Nothing ran: running the same selection again would spin. Settle what is left.
            let why = match status.code() {
                Some(code) => format!(
                    "the round {number} pytest process ran none of its tests (exit status {code})"
                ),
                None => format!(
                    "the round {number} pytest process ran none of its tests ({})",
                    describe_status(status)
                ),
            };
            self.warnings.push(why.clone());
            for &i in selection.unwrap_or_default() {
                let t = &mut self.tests[i as usize];
                if matches!(t.status, Status::Queued { .. }) {
                    t.status = Status::Done;
                    t.set_stopped_because(Some(why.clone()));
                }
            }
        }
    }

    /// Settles what only the first round can tell: whether pytest ran at all, the session, the collection.
    fn first_round_ended(&mut self, end: &mut RoundEnd) {
        let status = end.status;
        let code = status.code();
        if !end.hello {
            let why = format!(
                "the collector plugin never reported in, so the command's environment did not reach pytest ({}). \
                 A wrapper that drops environment variables must pass PYTHONPATH, PYTEST_PLUGINS and SMART_RERUN_* \
                 through (tox: `passenv = PYTHONPATH, PYTEST_PLUGINS, SMART_RERUN_*`), and the command must run pytest",
                describe_status(status)
            );
            self.early_exit = Some((ExitCode::InternalError, why));
            return;
        }
        if let Some(session) = end.session.take() {
            if session.protocol != super::events::PROTOCOL {
                self.warnings.push(format!(
                    "the collector speaks protocol {}, this binary {}",
                    session.protocol,
                    super::events::PROTOCOL
                ));
            }
            self.session = Some(session);
        }
        self.collection_errors_from(end);
        if self.session.is_none() || !end.collected {
            // pytest stopped before collecting: a usage error it has printed itself, or an internal error.
            let (exit, why) = match code {
                Some(4) => (
                    ExitCode::UsageError,
                    "pytest stopped on a usage error before running tests".to_owned(),
                ),
                Some(5) => (
                    ExitCode::NoTestsCollected,
                    "no tests were collected".to_owned(),
                ),
                Some(2) if !end.collect_errors.is_empty() => (
                    ExitCode::Interrupted,
                    "pytest stopped: errors during collection".to_owned(),
                ),
                Some(2) => (
                    ExitCode::Interrupted,
                    "pytest was interrupted before running tests".to_owned(),
                ),
                _ => (
                    ExitCode::InternalError,
                    format!(
                        "pytest ended before collecting any tests ({})",
                        describe_status(status)
                    ),
                ),
            };
            self.early_exit = Some((exit, why));
            return;
        }
        if !end.collect_errors.is_empty() && code == Some(2) && !end.any_test {
            self.collection_aborted = true;
        }
        if self.tests.is_empty()
            && self.collection_errors.is_empty()
            && matches!(code, Some(0) | Some(5))
        {
            self.early_exit = Some((
                ExitCode::NoTestsCollected,
                "no tests were collected".to_owned(),
            ));
        }
    }

    fn collection_errors_from(&mut self, end: &RoundEnd) {
        for (nodeid, traceback) in &end.collect_errors {
            self.collection_errors.push(CollectionError {
                nodeid: nodeid.clone(),
                traceback: traceback.clone(),
            });
        }
    }

    /// Settles a round once pytest has exited (its results are recorded as they are read): the tests
    /// that were running when it died, and the next step of the tests that did not run.
    fn settle(&mut self, end: RoundEnd, selection: Option<&[u32]>) {
        let number = self.round.number;
        self.interrupted |= end.interrupted;
        let crashed = end.finish.is_none() && !self.interrupted;
        if crashed {
            let reason = format!(
                "pytest died while this test ran ({})",
                describe_status(end.status)
            );
            // The tests that started but never finished were running when pytest died.
            for k in 0..self.round.running.len() {
                let i = self.round.running[k] as usize;
                if self.round.seen[i] != Seen::Running {
                    continue;
                }
                self.round.seen[i] = Seen::Ran;
                self.round.progressed = true;
                let attempt = Attempt {
                    phase: Some(Phase::Crash),
                    exception: Some(ExceptionInfo {
                        type_name: "smart_rerun.PytestCrash".into(),
                        mro: Vec::new(),
                        message: reason.clone(),
                    }),
                    ..bare_attempt(number, Outcome::Error, 0.0, end.at)
                };
                self.record(i, attempt, end.at);
            }
            self.warnings.push(format!(
                "round {number}: pytest died before finishing the round ({})",
                describe_status(end.status)
            ));
        }
        let stopped_early = end
            .finish
            .as_ref()
            .and_then(|f| f.shouldstop.clone().or(f.shouldfail.clone()));
        let retries_pending = self
            .tests
            .iter()
            .any(|t| t.runs > 0 && matches!(t.status, Status::Queued { .. }));
        // Tests selected for this round that did not run.
        let seen = &self.round.seen;
        let not_run: Vec<usize> = match selection {
            Some(s) => s
                .iter()
                .map(|&i| i as usize)
                .filter(|&i| seen[i] != Seen::Ran)
                .collect(),
            None => (0..self.tests.len())
                .filter(|&i| seen[i] != Seen::Ran)
                .collect(),
        };
        let carry = !self.interrupted
            && !self.collection_aborted
            && (crashed || (stopped_early.is_some() && retries_pending));
        for i in not_run {
            let missing = self.round.present.as_ref().is_some_and(|p| !p[i]);
            // Under an interrupt, the tests that started but never finished are the ones that were running.
            let was_running = self.round.seen[i] == Seen::Running;
            let t = &mut self.tests[i];
            if missing {
                t.status = Status::Done;
                t.set_stopped_because(Some(format!("round {number} did not collect it again")));
            } else if carry {
                t.status = Status::Queued { ready_at: 0.0 };
            } else {
                t.status = Status::Done;
                let why = if self.interrupted && was_running {
                    "the run was interrupted while it ran".to_owned()
                } else if self.interrupted {
                    "the run was interrupted".to_owned()
                } else if self.collection_aborted {
                    "pytest stopped after errors during collection".to_owned()
                } else if let Some(stop) = &stopped_early {
                    format!("pytest stopped early: {stop}")
                } else {
                    format!("pytest did not run it in round {number}")
                };
                if t.runs == 0 {
                    t.set_reason(Some(why));
                } else {
                    t.set_stopped_because(Some(why));
                }
            }
        }
        // A problem of the session itself (not of a test), judged on the latest round.
        self.session_problem = match &end.finish {
            Some(f) if f.exitstatus == 1 && f.testsfailed == 0 && end.collect_errors.is_empty() => {
                Some((
                    ExitCode::TestsFailed,
                    format!(
                        "pytest exited 1 in round {number} though no test failed (a plugin failed the session, e.g. --cov-fail-under)"
                    ),
                ))
            }
            Some(f) if ![0, 1, 2, 5].contains(&f.exitstatus) => Some((
                if f.exitstatus == 3 {
                    ExitCode::InternalError
                } else if f.exitstatus == 4 {
                    // e.g. `pytest no_such_dir`: a usage error pytest found after starting its session.
                    ExitCode::UsageError
                } else {
                    ExitCode::TestsFailed
                },
                format!("pytest exited {} in round {number}", f.exitstatus),
            )),
            _ => None,
        };
    }

    /// Adds an attempt to test `i` and decides its next step: another attempt (when), or a stop (why).
    fn record(&mut self, i: usize, mut attempt: Attempt, stop: f64) {
        let t = &mut self.tests[i];
        t.runs += 1;
        attempt.number = t.runs;
        let outcome = attempt.outcome;
        t.last = Some(outcome);
        t.last_duration = attempt.duration_seconds;
        t.last_stop = stop;
        let repeats = t.notes.as_ref().map_or(0, |n| n.repeats);
        if !outcome.is_failure() && t.attempts().is_empty() {
            // Passed (or skipped) without ever failing: no attempt history to keep.
            t.status = Status::Done;
            return;
        }
        let mro = attempt
            .exception
            .as_ref()
            .map(|e| e.mro.clone())
            .unwrap_or_default();
        crate::classify::annotate(&mut attempt);
        let fingerprint = attempt.fingerprint.clone();
        let notes = t.notes.get_or_insert_default();
        notes.attempts.push(attempt);
        t.status = Status::Done;
        if repeats > 0 {
            // A new test's repeats all run in one round; the first failure makes it a new flaky test.
            if outcome.is_failure() && notes.stopped_because.is_none() {
                notes.stopped_because = Some(format!(
                    "a test new to the history: it passed, then failed on repeat {} of {repeats} (smart_rerun_new_test_repeats)",
                    t.runs - 1
                ));
            }
            return;
        }
        if !outcome.is_failure() {
            return;
        }
        let failed_for_good = self.consult_prior(i, fingerprint.as_deref());
        let policy = self.policy_of(i);
        let t = &self.tests[i];
        let known_failure = failed_for_good >= 2;
        // A test history knows as flaky may well fail the same way twice before it passes.
        let known_flaky = t.notes.as_ref().is_some_and(|n| n.history_max.is_some());
        let deterministic = self.settings.early_stop
            && (known_failure
                || (!known_flaky && crate::classify::confirmed_deterministic(t.attempts())));
        let step = next_step(&policy, &t.nodeid, t.runs, &mro, deterministic, stop);
        let t = &mut self.tests[i];
        let notes = t.notes.get_or_insert_default();
        match step {
            Step::Retry { at } => {
                notes.stopped_because = None;
                t.status = Status::Queued { ready_at: at };
            }
            Step::Stop(mut reason) => {
                if let (
                    true,
                    StopReason::Deterministic {
                        attempts_left,
                        waits,
                    },
                ) = (known_failure, &reason)
                {
                    reason = StopReason::KnownFailure {
                        runs: failed_for_good,
                        attempts_left: *attempts_left,
                        waits: *waits,
                    };
                }
                if let Some((attempts_left, waits)) = reason.saved() {
                    self.attempts_saved += attempts_left as usize;
                    self.seconds_saved += t.last_duration * f64::from(attempts_left) + waits;
                }
                notes.stopped_because = Some(reason.to_string());
            }
        }
    }
}

/// An attempt with only its round, outcome, duration and end (seconds since the epoch); numbered when
/// it is recorded.
fn bare_attempt(round: u32, outcome: Outcome, duration: f64, at: f64) -> Attempt {
    Attempt {
        number: 0,
        round,
        outcome,
        phase: None,
        duration_seconds: duration,
        finished_at: rfc3339_from_epoch(at),
        exception: None,
        crash: None,
        test_location: None,
        traceback: None,
        captured: Vec::new(),
        also_failed: Vec::new(),
        worker: None,
        fingerprint: None,
        classification: None,
    }
}
