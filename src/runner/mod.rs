//! Attempt rounds: run the user's pytest command, read what the embedded collector reports, and run the
//! tests that failed again — each round a fresh pytest process with the same command — until they pass
//! or reach their attempt limit. The main entry is [`run`]; it returns the [`RunReport`].
//!
//! The collector (`collector.py`, embedded here) is loaded through PYTHONPATH and PYTEST_PLUGINS, so any
//! wrapper (`uv run pytest`, `poetry run pytest`) works. A rerun round's selection reaches it through a
//! file named in the environment, never as node ids on the command line.
//!
//! A rerun round's pytest is started early (`prestart`): as soon as a test fails that will be retried, the
//! next round's process starts and the collector holds it, before any conftest, until
//! [`Run::run_round`] writes its selection. A round ends when pytest says it has printed its last line
//! (the `done` event), not when its interpreter has finished shutting down; the process is reaped when
//! the run ends.
//!
//! Nothing collected is lost: a test that was running when pytest died is an error attempt; tests that had
//! not run yet go to a continuation round that charges them no attempt; tests never run at all (an
//! interrupted run, `-x`) are reported as `not-run`.

pub mod command;
pub mod events;

use crate::classify::advisor::{Advisor, AttemptSummary, FailureQuery};
use crate::config::{self, ConfigErrors, RawLayer, Settings, marker::MarkerPolicy};
use crate::model::{
    Action, Attempt, CapturedSection, Classification, ClassificationSource, CollectionError,
    ExceptionInfo, ExitCode, Location, Outcome, Phase, PlannedTest, PolicyInfo, ProgressEvent,
    ProgressSink, Round, RoundKind, RoundPlan, RunInfo, RunReport, SCHEMA_VERSION, Summary,
    TestResult, Tool,
};
use crate::policy::{RetryPolicy, plan_next_round};
use crate::report::counted;
use crate::signals::Interrupts;
use events::{Collected, Event, FailureEvent, SessionFinish, SessionStart, TestEvent};
use std::collections::HashMap;
use std::ffi::OsString;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant, SystemTime};

/// The collector plugin's source, written to a private directory for each run.
pub const COLLECTOR_SOURCE: &str = include_str!("collector.py");
/// The module name PYTEST_PLUGINS loads.
pub const COLLECTOR_MODULE: &str = "_smart_rerun_collector";

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// argv of every round.
    pub command: Vec<OsString>,
    pub cwd: PathBuf,
    /// Settings from the environment and the command line, validated; the ini keys pytest reports are
    /// merged under them once the first round starts.
    pub settings: Settings,
    /// The raw layer behind `settings` (environment < flags), re-validated on top of the ini values.
    pub layer: RawLayer,
    /// Tests ready within this long of the earliest join its round (one pytest start-up saved).
    pub coalesce: Duration,
    /// A rerun round whose tests took less than this last time runs without xdist workers.
    pub serial_below: Duration,
    /// Keep the temp dir with events files (debugging).
    pub keep_temp: bool,
}

impl RunConfig {
    pub fn new(command: Vec<OsString>, cwd: PathBuf, settings: Settings, layer: RawLayer) -> Self {
        RunConfig {
            command,
            cwd,
            settings,
            layer,
            coalesce: Duration::from_secs(1),
            serial_below: Duration::from_secs(10),
            keep_temp: false,
        }
    }
}

/// Why a run could not happen at all (as opposed to a run whose tests failed).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the command is empty")]
    EmptyCommand,
    #[error("command '{program}' not found: check the command after `--`, or PATH")]
    CommandNotFound { program: String },
    #[error("failed to start '{program}'")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "pytest never reported its configuration ({status}): check the command, and that a wrapper passes PYTHONPATH, PYTEST_PLUGINS and SMART_RERUN_* through"
    )]
    NoSession { status: String },
    #[error("failed to prepare the collector plugin in a temporary directory")]
    TempDir(#[source] std::io::Error),
    #[error("failed to read the collector's events from {path}")]
    Events {
        path: String,
        #[source]
        source: events::ReadError,
    },
}

impl RunError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RunError::EmptyCommand | RunError::CommandNotFound { .. } => ExitCode::UsageError,
            _ => ExitCode::InternalError,
        }
    }
}

/// Waits `wait` before a round, ticking the progress sink at its interval; `false` when a signal cut the wait
/// short.
fn wait_before_round(
    interrupts: &Interrupts,
    progress: &mut dyn ProgressSink,
    wait: Duration,
    plan: &RoundPlan<'_>,
) -> bool {
    let deadline = Instant::now() + wait;
    progress.event(ProgressEvent::Waiting { wait, plan });
    let completed = loop {
        let next = match progress.tick_interval() {
            Some(every) => (Instant::now() + every).min(deadline),
            None => deadline,
        };
        if !interrupts.sleep_until(next) {
            break false;
        }
        let now = Instant::now();
        if now >= deadline {
            break true;
        }
        progress.event(ProgressEvent::WaitingTick {
            left: deadline - now,
        });
    };
    progress.event(ProgressEvent::WaitingDone);
    completed
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Status {
    /// Due to run in a later round, not before `ready_at` (seconds since the epoch).
    Queued {
        ready_at: f64,
    },
    Done,
}

/// One test's progress through the run. A suite can hold 100,000 of them, most of which pass at once:
/// what only some tests have lives in [`TestNotes`], boxed.
#[derive(Debug)]
struct TestState {
    nodeid: Box<str>,
    file: Option<u32>,
    line: Option<u32>,
    runs: u32,
    last: Option<Outcome>,
    last_duration: f64,
    /// When the latest attempt ended (seconds since the epoch), for delays an advisor sets.
    last_stop: f64,
    status: Status,
    notes: Option<Box<TestNotes>>,
}

#[derive(Debug, Default)]
struct TestNotes {
    /// Stored once the test has failed; a test that passes its only attempt keeps none.
    attempts: Vec<Attempt>,
    reason: Option<String>,
    stopped_because: Option<String>,
}

impl TestState {
    fn attempts(&self) -> &[Attempt] {
        self.notes.as_ref().map_or(&[], |n| &n.attempts)
    }

    fn set_reason(&mut self, reason: Option<String>) {
        if reason.is_some() || self.notes.is_some() {
            self.notes.get_or_insert_default().reason = reason;
        }
    }

    fn set_stopped_because(&mut self, why: Option<String>) {
        if why.is_some() || self.notes.is_some() {
            self.notes.get_or_insert_default().stopped_because = why;
        }
    }
}

struct Run<'a> {
    config: &'a RunConfig,
    interrupts: &'a Interrupts,
    progress: &'a mut dyn ProgressSink,
    temp: tempfile::TempDir,
    tests: Vec<TestState>,
    /// Positions in `tests` by node id, hashed with `hasher`: each node id is stored once, in its test.
    index: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
    /// Rootdir-relative test files; `files_abs` the same, absolute, for selections.
    files: Vec<String>,
    files_abs: Vec<String>,
    session: Option<SessionStart>,
    /// The first round's rootdir, which failure locations are made relative to.
    rootdir: PathBuf,
    collection_errors: Vec<CollectionError>,
    rounds: Vec<Round>,
    warnings: Vec<String>,
    /// pytest stopped the first round because of collection errors (it exits 2 then).
    collection_aborted: bool,
    interrupted: bool,
    /// A problem with the final round's session that is not a test result.
    session_problem: Option<(ExitCode, String)>,
    early_exit: Option<(ExitCode, String)>,
    /// The settings in force: the command line's and environment's over the ini values.
    settings: Settings,
    /// Policies from markers, by node id (unmarked tests follow `settings.policy`).
    markers: HashMap<String, MarkerPolicy>,
    /// Reruns started so far, for `max_reruns`.
    reruns_started: u32,
    /// Whether the first round's verdict on the ini values and markers has been given.
    verdict_given: bool,
    /// Invalid settings found in the first round: the run stops with exit 4.
    config_errors: Option<ConfigErrors>,
    /// What early stops on confirmed deterministic failures saved.
    attempts_saved: usize,
    seconds_saved: f64,
    /// The AI classifier, when configured, and what it said per fingerprint.
    advisor: Option<&'a mut dyn Advisor>,
    advice: HashMap<String, Classification>,
    /// Every classification the advisor gave, for the AI report.
    pub(crate) advice_trail: Vec<AdviceRecord>,
    /// When the advisor's budget for the whole run runs out.
    advice_deadline: Option<Instant>,
    /// The next round's pytest, started early and held until its tests are chosen (`prestart`).
    held: Option<Held>,
    /// pytest processes that reported their last line and were still shutting down when their round
    /// ended, by round number; reaped when the run ends.
    exiting: Vec<(u32, ExitWaiter)>,
}

type ExitWaiter = std::thread::JoinHandle<std::io::Result<ExitStatus>>;

/// A pytest process started for round `round` before that round's tests were known. It waits in the
/// collector's first hook, blocked on reading a pipe: one byte once the selection file is written releases
/// it; the pipe's end of file (dropping `release`, or smart-rerun dying) sends it away.
#[derive(Debug)]
struct Held {
    round: u32,
    child: std::process::Child,
    release: std::io::PipeWriter,
    /// The round it was started in.
    during: u32,
}

/// One entry of the AI report: a test's failure, what the advisor said, and what was done.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdviceRecord {
    pub nodeid: String,
    pub attempt: u32,
    pub fingerprint: String,
    pub classification: Classification,
    /// What the runner did with it: `stopped`, `delay set to Ns`, `retry as planned`, `final`.
    pub applied: String,
}

/// What a round has said so far, besides the test results: each event is folded into the run's state as
/// it is read and then dropped (a passing test's result leaves nothing here), so a round of 100,000 tests
/// is never held in memory at once.
struct RoundProgress {
    number: u32,
    hello: bool,
    session: Option<SessionStart>,
    /// The first round's collection until the tests are made from it, which waits for the session.
    collected: Option<Collected>,
    /// How many items the round's collection listed, once it arrived (under xdist each worker collects;
    /// the first collection is the suite's).
    collected_items: Option<usize>,
    /// A rerun round: which tests its collection listed.
    present: Option<Vec<bool>>,
    collect_errors: Vec<(String, String)>,
    /// Each test's progress in this round.
    seen: Vec<Seen>,
    /// Tests that started, in the order they started; those that finished are pruned as the list grows.
    /// The ones still [`Seen::Running`] at the end were running when pytest died or was interrupted.
    running: Vec<u32>,
    /// Any test result, of a collected test or not.
    any_test: bool,
    /// A collected test ran.
    progressed: bool,
    interrupted: bool,
    finish: Option<SessionFinish>,
    /// The exit status pytest reported once it had printed its last line (the `done` event).
    done: Option<i32>,
    /// A test of this round failed and is due another attempt: time to start the next round's pytest.
    retry_due: bool,
    /// The first round's verdict file, and a failure to write it (raised once the poll is over).
    verdict_path: PathBuf,
    verdict_error: Option<std::io::Error>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    NotStarted,
    Running,
    /// It has an attempt from this round: its result, or the error of a crash while it ran.
    Ran,
}

impl RoundProgress {
    fn new(number: u32, tests: usize, verdict_path: PathBuf) -> Self {
        RoundProgress {
            number,
            hello: false,
            session: None,
            collected: None,
            collected_items: None,
            present: None,
            collect_errors: Vec::new(),
            seen: vec![Seen::NotStarted; tests],
            running: Vec::new(),
            any_test: false,
            progressed: false,
            interrupted: false,
            done: None,
            retry_due: false,
            finish: None,
            verdict_path,
            verdict_error: None,
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

/// Runs the suite and its reruns, telling `progress` as it goes and consulting the AI [`Advisor`], if
/// any, after each round. Errors are for runs that could not start; everything else, including a pytest
/// that crashed, ends in a report. Also returns the settings in force (ini values included) and the
/// advisor's trail.
pub fn run<'a>(
    config: &'a RunConfig,
    interrupts: &'a Interrupts,
    progress: &'a mut dyn ProgressSink,
    advisor: Option<&'a mut dyn Advisor>,
) -> Result<(RunReport, Settings, Vec<AdviceRecord>), RunError> {
    if config.command.is_empty() {
        return Err(RunError::EmptyCommand);
    }
    let temp = install_collector()?;

    let started_at = now_rfc3339();
    let started = Instant::now();
    let mut run = Run {
        config,
        interrupts,
        progress,
        temp,
        tests: Vec::new(),
        index: hashbrown::HashTable::new(),
        hasher: std::hash::RandomState::new(),
        files: Vec::new(),
        files_abs: Vec::new(),
        session: None,
        rootdir: PathBuf::new(),
        collection_errors: Vec::new(),
        rounds: Vec::new(),
        warnings: Vec::new(),
        collection_aborted: false,
        interrupted: false,
        session_problem: None,
        early_exit: None,
        settings: config.settings.clone(),
        markers: HashMap::new(),
        reruns_started: 0,
        verdict_given: false,
        config_errors: None,
        attempts_saved: 0,
        seconds_saved: 0.0,
        advisor,
        advice: HashMap::new(),
        advice_trail: Vec::new(),
        advice_deadline: None,
        held: None,
        exiting: Vec::new(),
    };
    let looped = run.rounds_loop();
    run.cancel_held();
    run.reap_exiting();
    looped?;
    let settings = run.settings.clone();
    let trail = std::mem::take(&mut run.advice_trail);
    let report = run.into_report(started_at, started.elapsed());
    Ok((report, settings, trail))
}

impl Run<'_> {
    fn rounds_loop(&mut self) -> Result<(), RunError> {
        let first = RoundPlan {
            number: 1,
            kind: RoundKind::First,
            tests: Vec::new(),
            serial: false,
        };
        self.progress.event(ProgressEvent::RoundStarting(&first));
        let (mut progress, status, round) = self.run_round(1, RoundKind::First, None, false)?;
        self.absorb_first(&mut progress, status);
        if self.early_exit.is_none() {
            self.absorb(&mut progress, status, None);
            self.consult_advisor();
        } else if progress.interrupted || self.interrupts.received().is_some() {
            // No tests to settle, and no crash to guess at: the early exit says what happened.
            self.interrupted = true;
        }
        self.finish_round(round);
        if let Some(errors) = &self.config_errors {
            self.early_exit = Some((ExitCode::UsageError, errors.to_string()));
            for t in self.tests.iter_mut().filter(|t| t.runs == 0) {
                t.set_reason(Some(
                    "not run: smart-rerun stopped on invalid settings".into(),
                ));
            }
        }
        if self.early_exit.is_some() {
            return Ok(());
        }
        self.apply_failure_budget();
        let mut number = 1;
        loop {
            if self.interrupted || self.interrupts.received().is_some() {
                self.interrupted = true;
                break;
            }
            let ready: Vec<(usize, f64)> = self
                .tests
                .iter()
                .enumerate()
                .filter_map(|(i, t)| match t.status {
                    Status::Queued { ready_at } => Some((i, ready_at)),
                    Status::Done => None,
                })
                .collect();
            let Some(mut plan) =
                plan_next_round(&ready, epoch_now(), self.config.coalesce.as_secs_f64())
            else {
                break;
            };
            self.apply_rerun_budget(&mut plan.tests);
            if plan.tests.is_empty() {
                continue;
            }
            number += 1;
            let kind = if plan.tests.iter().all(|&i| self.tests[i].runs == 0) {
                RoundKind::Continuation
            } else {
                RoundKind::Rerun
            };
            let estimate: f64 = plan
                .tests
                .iter()
                .map(|&i| self.tests[i].last_duration)
                .sum();
            let serial = estimate < self.config.serial_below.as_secs_f64();
            let selected: Vec<u32> = plan.tests.iter().map(|&i| i as u32).collect();
            let maxes: Vec<u32> = selected
                .iter()
                .map(|&i| self.policy_for(&self.tests[i as usize].nodeid).max_attempts)
                .collect();
            let round_plan = RoundPlan {
                number,
                kind,
                tests: selected
                    .iter()
                    .zip(maxes)
                    .map(|(&i, max_attempts)| {
                        let t = &self.tests[i as usize];
                        PlannedTest {
                            nodeid: &t.nodeid,
                            attempt: t.runs + 1,
                            max_attempts,
                        }
                    })
                    .collect(),
                serial,
            };
            let wait = plan.start_at - epoch_now();
            if wait > 0.0 {
                let wait = Duration::from_secs_f64(wait);
                if !wait_before_round(self.interrupts, self.progress, wait, &round_plan) {
                    self.interrupted = true;
                    break;
                }
            }
            self.progress
                .event(ProgressEvent::RoundStarting(&round_plan));
            let (mut progress, status, round) =
                self.run_round(number, kind, Some(&selected), serial)?;
            let progressed = self.absorb(&mut progress, status, Some(&selected));
            self.consult_advisor();
            self.finish_round(round);
            if !progressed && !self.interrupted {
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
                for &i in &selected {
                    let t = &mut self.tests[i as usize];
                    if matches!(t.status, Status::Queued { .. }) {
                        t.status = Status::Done;
                        t.set_stopped_because(Some(why.clone()));
                    }
                }
            }
        }
        if self.interrupted {
            for t in &mut self.tests {
                if let Status::Queued { .. } = t.status {
                    t.status = Status::Done;
                    t.set_stopped_because(Some("the run was interrupted".into()));
                }
            }
        }
        Ok(())
    }

    fn finish_round(&mut self, round: Round) {
        self.progress.event(ProgressEvent::RoundFinished(&round));
        self.rounds.push(round);
    }

    fn run_round(
        &mut self,
        number: u32,
        kind: RoundKind,
        selection: Option<&[u32]>,
        serial: bool,
    ) -> Result<(RoundProgress, ExitStatus, Round), RunError> {
        let events_path = self.events_path(number);
        let program = self.config.command[0].clone();
        let verdict_path = self.temp.path().join(format!("verdict-{number}.json"));
        let select_path = selection.map(|_| self.select_path(number));
        let held = self.held.take_if(|h| h.round == number);
        if let (Some(path), Some(selected)) = (&select_path, selection) {
            self.write_selection(path, selected, serial)
                .map_err(RunError::TempDir)?;
        }
        let selected_count = selection.map_or(0, |s| s.len());
        let started_at = now_rfc3339();
        let started = Instant::now();
        let (mut child, note) = match held {
            Some(mut held) => {
                // The release. A pytest that died while held cannot read it; its exit is reported below
                // like any other pytest's.
                let _ = std::io::Write::write_all(&mut held.release, &[HOLD_RELEASE]);
                let note = format!(
                    "pytest was started during round {} and held until this round's tests were chosen",
                    held.during
                );
                (held.child, Some(note))
            }
            None => {
                let mut cmd = self.round_command(number, &events_path, select_path.as_deref());
                if number == 1 {
                    cmd.env("SMART_RERUN_VERDICT", &verdict_path);
                }
                let child = cmd.spawn().map_err(|source| {
                    let program = program.to_string_lossy().into_owned();
                    if source.kind() == std::io::ErrorKind::NotFound {
                        RunError::CommandNotFound { program }
                    } else {
                        RunError::Spawn { program, source }
                    }
                })?;
                (child, None)
            }
        };
        self.interrupts.set_child(Some(child.id()));
        let events_error = |source| RunError::Events {
            path: events_path.display().to_string(),
            source,
        };
        // A thread waits for pytest, so its exit ends the loop below at once rather than at the next poll.
        let (exited_tx, exited) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let status = child.wait();
            let _ = exited_tx.send(());
            status
        });
        // Follow the events while pytest runs: the first round waits for a verdict on its settings.
        let tests = if number == 1 { 0 } else { self.tests.len() };
        let mut progress = RoundProgress::new(number, tests, verdict_path);
        let mut tail = events::Tail::new(events_path.clone());
        let mut worker_tail = events::Tail::new(events::worker_path(&events_path));
        let mut pause = Duration::from_millis(1);
        loop {
            let fresh = self.follow(&mut progress, &mut tail, &mut worker_tail);
            let fresh = fresh.map_err(events_error)?;
            if let Some(e) = progress.verdict_error.take() {
                return Err(RunError::TempDir(e));
            }
            if progress.retry_due && self.held.is_none() {
                self.prestart(number + 1, number);
            }
            // Every test of the run waits on the verdict, asked for once the collection is reported, and
            // the next round on the `done` event that follows pytest's session_finish: poll each
            // millisecond from the session's start until the verdict is given, and from session_finish on.
            // The events before and in between are in no hurry, and reading them each millisecond took 4%
            // of a core beside pytest (0.12 s of CPU in a 2.6 s run of 2,000 tests).
            let verdict_pending = number == 1 && !self.verdict_given;
            let awaited = verdict_pending && progress.session.is_some();
            pause = if awaited || progress.finish.is_some() {
                Duration::from_millis(1)
            } else if fresh {
                Duration::from_millis(10)
            } else {
                (pause * 2).clamp(Duration::from_millis(10), Duration::from_millis(20))
            };
            if progress.done.is_some() && !verdict_pending {
                // pytest has said all it will say; its interpreter's shutdown need not hold up the run.
                break;
            }
            match exited.recv_timeout(pause) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let done_early = match (progress.done, exited.try_recv()) {
            (Some(code), Err(_)) => Some(code),
            _ => None,
        };
        let status = if let Some(code) = done_early {
            self.exiting.push((number, waiter));
            exit_status_from_code(code)
        } else {
            match waiter.join() {
                Ok(Ok(status)) => status,
                Ok(Err(source)) => {
                    self.interrupts.set_child(None);
                    return Err(RunError::Spawn {
                        program: program.to_string_lossy().into_owned(),
                        source,
                    });
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        };
        self.interrupts.set_child(None);
        let duration = started.elapsed().as_secs_f64();
        self.follow(&mut progress, &mut tail, &mut worker_tail)
            .map_err(events_error)?;
        if let Some(e) = progress.verdict_error.take() {
            return Err(RunError::TempDir(e));
        }
        if number == 1 && !self.verdict_given && progress.session.is_some() {
            self.give_verdict(
                progress.session.as_ref(),
                progress.collected.as_ref(),
                &progress.verdict_path,
            )
            .map_err(RunError::TempDir)?;
        }
        let selected = if number == 1 {
            progress.collected_items.unwrap_or(0)
        } else {
            selected_count
        };
        let round = Round {
            number,
            kind,
            started_at,
            duration_seconds: duration,
            selected,
            exit_status: status.code(),
            signal: exit_signal(status),
            note,
        };
        Ok((progress, status, round))
    }

    /// Reads the events appended to the round's file, and to the first xdist worker's while no
    /// collection has come (under xdist the controller never collects). Returns whether any was new.
    fn follow(
        &mut self,
        progress: &mut RoundProgress,
        tail: &mut events::Tail,
        worker_tail: &mut events::Tail,
    ) -> Result<bool, events::ReadError> {
        let mut fresh = tail.poll(|event| self.absorb_event(progress, event))?;
        if progress.collected_items.is_none() {
            fresh |= worker_tail.poll(|event| self.absorb_event(progress, event))?;
        }
        Ok(fresh)
    }

    /// Folds one event into the run: a test's result is recorded at once.
    fn absorb_event(&mut self, progress: &mut RoundProgress, event: Event) {
        match event {
            Event::Hello => {
                progress.hello = true;
                self.settle_collection(progress);
            }
            Event::SessionStart(session) => {
                progress.session = Some(session);
                self.settle_collection(progress);
            }
            Event::Collected(collected) => {
                if progress.collected_items.is_some() {
                    return;
                }
                progress.collected_items = Some(collected.items.len());
                if progress.number == 1 {
                    progress.collected = Some(collected);
                    self.settle_collection(progress);
                } else {
                    let mut present = vec![false; self.tests.len()];
                    for (nodeid, _, _) in &collected.items {
                        if let Some(i) = self.find(nodeid) {
                            present[i] = true;
                        }
                    }
                    progress.present = Some(present);
                }
            }
            Event::CollectError { nodeid, traceback } => progress
                .collect_errors
                .push((nodeid, traceback.unwrap_or_default())),
            Event::Start { nodeid } => {
                if let Some(i) = self.find(&nodeid) {
                    progress.started(i);
                }
            }
            Event::Test(event) => {
                progress.any_test = true;
                self.absorb_test(progress, event);
            }
            Event::Interrupted => progress.interrupted = true,
            Event::SessionFinish(finish) => progress.finish = Some(finish),
            Event::Done { exitstatus } => progress.done = exitstatus,
        }
    }

    /// The first round, once the session and the collection are in: the verdict on the settings (the
    /// collector waits for it before running any test), and the tests, made from the collection.
    fn settle_collection(&mut self, progress: &mut RoundProgress) {
        let (Some(session), Some(collected)) = (&progress.session, &progress.collected) else {
            return;
        };
        if !self.verdict_given {
            if let Err(e) =
                self.give_verdict(Some(session), Some(collected), &progress.verdict_path)
            {
                progress.verdict_error.get_or_insert(e);
            }
        }
        if progress.hello {
            let rootdir = PathBuf::from(&session.rootdir);
            if let Some(collected) = progress.collected.take() {
                self.absorb_collection(collected, rootdir);
            }
            progress.seen = vec![Seen::NotStarted; self.tests.len()];
        }
    }

    /// Makes the tests' states from the first round's collection, moving the node ids into them.
    fn absorb_collection(&mut self, collected: Collected, rootdir: PathBuf) {
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

    /// The position of the test with this node id.
    fn find(&self, nodeid: &str) -> Option<usize> {
        self.index
            .find(self.hasher.hash_one(nodeid), |&i| {
                &*self.tests[i as usize].nodeid == nodeid
            })
            .map(|&i| i as usize)
    }

    /// Records a test's result as soon as it is read.
    fn absorb_test(&mut self, progress: &mut RoundProgress, event: TestEvent) {
        let Some(i) = self.find(&event.nodeid) else {
            return;
        };
        progress.seen[i] = Seen::Ran;
        progress.progressed = true;
        let mut attempt = attempt_from_event(&event, progress.number, &self.rootdir);
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
            progress.retry_due = true;
        }
    }

    /// Validates the ini values and markers pytest reported, with the command line and environment over
    /// them, and tells the waiting collector to go on or to stop (exit 4) before any test runs.
    fn give_verdict(
        &mut self,
        session: Option<&SessionStart>,
        collected: Option<&Collected>,
        path: &Path,
    ) -> std::io::Result<()> {
        self.verdict_given = true;
        let mut errors = Vec::new();
        if let Some(session) = session {
            let inifile = session.inifile.as_deref().map(Path::new);
            let mut layer = RawLayer::from_ini(&session.ini, inifile);
            layer.mark_overrides(&session.ini_overrides);
            layer.update(&self.config.layer);
            match Settings::from_layer(&layer, &|n| std::env::var(n).ok(), &self.config.cwd) {
                Ok(settings) => self.settings = settings,
                Err(e) => errors.extend(e.0),
            }
            let invoked = session
                .invocation_dir
                .as_deref()
                .map_or_else(|| self.config.cwd.clone(), PathBuf::from);
            self.settings.pytest_junitxml = session.junitxml.as_deref().map(|p| invoked.join(p));
            self.settings.junit_suite_name = session.junit_suite_name.clone();
        }
        if let Some(collected) = collected {
            for (idx, markers) in &collected.markers {
                let Some((nodeid, _, _)) = idx
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| collected.items.get(i))
                else {
                    continue;
                };
                match config::marker::parse(nodeid, markers) {
                    Ok(Some(policy)) => {
                        self.markers.insert(nodeid.clone(), policy);
                    }
                    Ok(None) => {}
                    Err(e) => errors.extend(e),
                }
            }
        }
        if let Some(session) = session {
            let flaky_marked = self.markers.values().any(|m| m.from == "flaky");
            for (plugin, state) in &session.rerun_plugins {
                let switched_on = state.as_object().is_some_and(|o| {
                    o.values()
                        .any(|v| v.as_u64().is_some_and(|n| n > 0) || v.as_bool() == Some(true))
                });
                if switched_on || flaky_marked {
                    let module = match plugin.as_str() {
                        "pytest-rerunfailures" => "rerunfailures",
                        "pytest-retry" => "pytest_retry",
                        other => other,
                    };
                    self.warnings.push(format!(
                        "{plugin} is active in this run: it reruns failed tests inside the same pytest process, \
                         and smart-rerun then reruns them again. Disable it for smart-rerun's runs with \
                         `-p no:{module}` in the command (or PYTEST_ADDOPTS=\"-p no:{module}\"); \
                         smart-rerun reads @pytest.mark.flaky(reruns=N, reruns_delay=S) itself"
                    ));
                }
            }
        }
        let body = if errors.is_empty() {
            serde_json::json!({ "abort": false })
        } else {
            let errors = ConfigErrors(errors);
            let message = format!("smart-rerun: {errors}");
            self.config_errors = Some(errors);
            serde_json::json!({ "abort": true, "message": message })
        };
        write_json_atomic(path, &body)
    }

    /// Asks the advisor about this round's new failures — one query per distinct fingerprint not asked
    /// before — and applies its answers: a category and reason on the attempt, and for a test still due
    /// for a rerun, stop, or a new delay. The advisor's own deadline and the run's AI budget bound the
    /// wait; whatever is not answered keeps the heuristics' classification.
    fn consult_advisor(&mut self) {
        if self.advisor.is_none() || !self.settings.ai.enabled {
            return;
        }
        let budget = self.settings.ai.timeout;
        let deadline = *self
            .advice_deadline
            .get_or_insert_with(|| Instant::now() + budget);
        let mut queries: Vec<FailureQuery> = Vec::new();
        let mut asked = std::collections::HashSet::new();
        let policy_info = PolicyInfo::from(&self.settings.policy);
        for t in &self.tests {
            let Some(last) = t.attempts().last().filter(|a| a.outcome.is_failure()) else {
                continue;
            };
            let Some(fp) = last.fingerprint.clone() else {
                continue;
            };
            if self.advice.contains_key(&fp) || !asked.insert(fp.clone()) {
                continue;
            }
            let exc = last.exception.clone().unwrap_or_else(|| ExceptionInfo {
                type_name: "smart_rerun.Unknown".into(),
                mro: Vec::new(),
                message: String::new(),
            });
            queries.push(FailureQuery {
                nodeid: t.nodeid.to_string(),
                fingerprint: fp,
                exception_type: exc.type_name,
                exception_bases: exc.mro,
                message: exc.message,
                traceback: last.traceback.clone().unwrap_or_default(),
                attempts: t
                    .attempts()
                    .iter()
                    .map(|a| AttemptSummary {
                        number: a.number,
                        outcome: a.outcome.as_str().to_owned(),
                        exception_type: a.exception.as_ref().map(|e| e.type_name.clone()),
                    })
                    .collect(),
                heuristic: last
                    .classification
                    .clone()
                    .unwrap_or_else(|| crate::classify::heuristics::classify(last)),
                policy: policy_info.clone(),
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if !queries.is_empty() {
            // With the budget spent the advisor still answers from its cache, and says so once.
            if let Some(advisor) = self.advisor.as_mut() {
                let (answers, notes) = advisor.advise(&self.settings.ai, &queries, left);
                for note in notes {
                    if !self.warnings.contains(&note) {
                        self.warnings.push(note);
                    }
                }
                for advice in answers {
                    self.advice
                        .insert(advice.fingerprint.clone(), advice.classification);
                }
            }
        }
        let max_delay = self.settings.policy.max_delay;
        for t in &mut self.tests {
            let Some(notes) = t.notes.as_deref_mut() else {
                continue;
            };
            let Some(last) = notes.attempts.last_mut().filter(|a| a.outcome.is_failure()) else {
                continue;
            };
            let Some(fp) = last.fingerprint.clone() else {
                continue;
            };
            // This round's new fingerprints, and new failures with a fingerprint answered earlier; an
            // attempt that already carries the advice is not advised twice.
            let advised = last.classification.as_ref().is_some_and(|c| {
                matches!(
                    c.source,
                    ClassificationSource::Ai | ClassificationSource::Cache
                )
            });
            if advised {
                continue;
            }
            let Some(c) = self.advice.get(&fp).cloned() else {
                continue;
            };
            last.classification = Some(c.clone());
            let applied = match (t.status, c.action) {
                (Status::Queued { .. }, Action::StopRetry) => {
                    t.status = Status::Done;
                    notes.stopped_because = Some(format!(
                        "the AI classifier said {} ({}): stop_retry",
                        c.category.as_str(),
                        c.reason
                    ));
                    "stopped".to_owned()
                }
                (Status::Queued { .. }, Action::RetryWithDelay { seconds }) => {
                    let seconds = max_delay.map_or(seconds, |cap| seconds.min(cap.as_secs_f64()));
                    t.status = Status::Queued {
                        ready_at: t.last_stop + seconds,
                    };
                    format!("delay set to {seconds}s")
                }
                (Status::Queued { .. }, Action::Retry) => "retry as planned".to_owned(),
                (Status::Done, _) => "final: no attempts left".to_owned(),
            };
            self.advice_trail.push(AdviceRecord {
                nodeid: t.nodeid.to_string(),
                attempt: last.number,
                fingerprint: fp,
                classification: c,
                applied,
            });
        }
    }

    /// The policy a test runs under: its marker's, else the global one.
    fn policy_for(&self, nodeid: &str) -> std::borrow::Cow<'_, RetryPolicy> {
        match self.markers.get(nodeid) {
            Some(m) => std::borrow::Cow::Owned(m.apply(&self.settings.policy)),
            None => std::borrow::Cow::Borrowed(&self.settings.policy),
        }
    }

    /// `max_failures`: when more tests than that failed in the first round, the build is broken, not
    /// flaky; nothing is rerun.
    fn apply_failure_budget(&mut self) {
        let Some(limit) = self.settings.max_failures else {
            return;
        };
        let failed = self
            .tests
            .iter()
            .filter(|t| t.last.is_some_and(Outcome::is_failure))
            .count();
        if failed as u64 <= limit as u64 {
            return;
        }
        let why = format!(
            "{} failed in the first round, more than max_failures = {limit}: the build looks broken, not flaky, so nothing was rerun",
            counted(failed, "test")
        );
        let mut held = 0;
        for t in &mut self.tests {
            if t.runs > 0 && matches!(t.status, Status::Queued { .. }) {
                t.status = Status::Done;
                t.set_stopped_because(Some(why.clone()));
                held += 1;
            }
        }
        if held > 0 {
            self.warnings.push(why);
        }
    }

    /// `max_reruns`: trims a round's reruns to what is left of the budget; continuation runs are free.
    fn apply_rerun_budget(&mut self, tests: &mut Vec<usize>) {
        let all = &self.tests;
        let Some(limit) = self.settings.max_reruns else {
            self.reruns_started += tests.iter().filter(|&&i| all[i].runs > 0).count() as u32;
            return;
        };
        let mut started = self.reruns_started;
        let before = tests.len();
        tests.retain(|&i| {
            if all[i].runs == 0 {
                return true;
            }
            started += 1;
            started <= limit
        });
        self.reruns_started = started.min(limit);
        if tests.len() == before {
            return;
        }
        let why = format!("the run's rerun budget (max_reruns = {limit}) is spent");
        let kept: std::collections::HashSet<usize> = tests.iter().copied().collect();
        for (i, t) in self.tests.iter_mut().enumerate() {
            if t.runs > 0 && matches!(t.status, Status::Queued { .. }) && !kept.contains(&i) {
                t.status = Status::Done;
                t.set_stopped_because(Some(why.clone()));
            }
        }
        if !self.warnings.contains(&why) {
            self.warnings.push(why);
        }
    }

    /// Where round `round`'s collector writes its events (a held pytest writes there before its release).
    fn events_path(&self, round: u32) -> PathBuf {
        self.temp.path().join(format!("round-{round}.jsonl"))
    }

    fn select_path(&self, round: u32) -> PathBuf {
        self.temp.path().join(format!("select-{round}.json"))
    }

    /// The command of round `number`: the user's, with the collector and this round's files in the
    /// environment.
    fn round_command(
        &self,
        number: u32,
        events_path: &Path,
        select_path: Option<&Path>,
    ) -> Command {
        let mut cmd = pytest_command(self.config, self.temp.path(), events_path);
        cmd.env("SMART_RERUN_ROUND", number.to_string());
        cmd.env_remove("SMART_RERUN_MODE");
        cmd.env_remove("SMART_RERUN_VERDICT");
        cmd.env_remove("SMART_RERUN_HOLD");
        match select_path {
            Some(path) => cmd.env("SMART_RERUN_SELECT", path),
            None => cmd.env_remove("SMART_RERUN_SELECT"),
        };
        cmd
    }

    /// Starts round `round`'s pytest now, held until [`Run::run_round`] writes its selection. Only where
    /// it can be sent away cleanly (Unix), when reruns are possible at all, and never after a signal.
    fn prestart(&mut self, round: u32, during: u32) {
        if !cfg!(unix)
            || !self.settings.prestart
            || self.interrupts.received().is_some()
            || rerun_budget_spent(self.settings.max_reruns, self.reruns_started)
        {
            return;
        }
        let events_path = self.events_path(round);
        let select_path = self.select_path(round);
        let mut cmd = self.round_command(round, &events_path, Some(&select_path));
        let Some((reader, release)) = hold_pipe(&mut cmd) else {
            return;
        };
        // A failure to start shows again, with its error, when the round starts its own pytest.
        let spawned = cmd.spawn();
        // Only the child keeps the reading end: the pipe's end of file is then smart-rerun's going.
        drop(reader);
        if let Ok(child) = spawned {
            self.held = Some(Held {
                round,
                child,
                release,
                during,
            });
        }
    }

    /// Waits for the pytest processes still shutting down, and records how each really exited. A process
    /// that reported its last line normally and then died (a crash in an exit handler) is named in a
    /// warning; its tests' results stand.
    fn reap_exiting(&mut self) {
        for (number, waiter) in std::mem::take(&mut self.exiting) {
            let Ok(Ok(status)) = waiter.join() else {
                continue;
            };
            let Some(round) = self.rounds.iter_mut().find(|r| r.number == number) else {
                continue;
            };
            if round.exit_status == status.code() && exit_signal(status).is_none() {
                continue;
            }
            self.warnings.push(format!(
                "round {number}: pytest reported exit status {} and then exited with {}",
                round.exit_status.map_or("-".into(), |c| c.to_string()),
                describe_status(status)
            ));
            round.exit_status = status.code();
            round.signal = exit_signal(status);
        }
    }

    /// Sends away a held pytest whose round never came: closing the pipe it waits on, it leaves without
    /// running or printing anything. One still starting up (it has not reached the hold) gets a few seconds
    /// to get there; then it is killed.
    fn cancel_held(&mut self) {
        let Some(Held {
            mut child, release, ..
        }) = self.held.take()
        else {
            return;
        };
        drop(release);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                _ => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn write_selection(&self, path: &Path, selected: &[u32], serial: bool) -> std::io::Result<()> {
        let mut files: Vec<&str> = selected
            .iter()
            .filter_map(|&i| {
                self.tests[i as usize]
                    .file
                    .map(|f| self.files_abs[f as usize].as_str())
            })
            .collect();
        files.sort_unstable();
        files.dedup();
        let nodeids: Vec<&str> = selected
            .iter()
            .map(|&i| &*self.tests[i as usize].nodeid)
            .collect();
        let body = serde_json::json!({ "files": files, "nodeids": nodeids, "serial": serial });
        write_json_atomic(path, &body)
    }

    /// Settles what only the first round can tell: whether pytest ran at all, the session, the collection.
    fn absorb_first(&mut self, progress: &mut RoundProgress, status: ExitStatus) {
        let code = status.code();
        if !progress.hello {
            let why = format!(
                "the collector plugin never reported in, so the command's environment did not reach pytest ({}). \
                 A wrapper that drops environment variables must pass PYTHONPATH, PYTEST_PLUGINS and SMART_RERUN_* \
                 through (tox: `passenv = PYTHONPATH, PYTEST_PLUGINS, SMART_RERUN_*`), and the command must run pytest",
                describe_status(status)
            );
            self.early_exit = Some((ExitCode::InternalError, why));
            return;
        }
        if let Some(session) = progress.session.take() {
            if session.protocol != events::PROTOCOL {
                self.warnings.push(format!(
                    "the collector speaks protocol {}, this binary {}",
                    session.protocol,
                    events::PROTOCOL
                ));
            }
            self.session = Some(session);
        }
        if self.session.is_none() || progress.collected_items.is_none() {
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
                Some(2) if !progress.collect_errors.is_empty() => (
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
            self.collection_errors_from(progress);
            self.early_exit = Some((exit, why));
            return;
        }
        self.collection_errors_from(progress);
        if !progress.collect_errors.is_empty() && code == Some(2) && !progress.any_test {
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

    fn collection_errors_from(&mut self, progress: &RoundProgress) {
        for (nodeid, traceback) in &progress.collect_errors {
            self.collection_errors.push(CollectionError {
                nodeid: nodeid.clone(),
                traceback: traceback.clone(),
            });
        }
    }

    /// Settles a round once pytest has exited (its results are recorded as they are read) and decides
    /// the next step of the tests that did not run. Returns whether any test ran or was charged an attempt.
    fn absorb(
        &mut self,
        progress: &mut RoundProgress,
        status: ExitStatus,
        selection: Option<&[u32]>,
    ) -> bool {
        let number = progress.number;
        if progress.interrupted || self.interrupts.received().is_some() {
            self.interrupted = true;
        }
        let crashed = progress.finish.is_none() && !self.interrupted;
        if crashed {
            let reason = format!(
                "pytest died while this test ran ({})",
                describe_status(status)
            );
            // The tests that started but never finished were running when pytest died.
            for &i in &progress.running {
                let i = i as usize;
                if progress.seen[i] != Seen::Running {
                    continue;
                }
                progress.seen[i] = Seen::Ran;
                progress.progressed = true;
                let attempt = Attempt {
                    number: 0,
                    round: number,
                    outcome: Outcome::Error,
                    phase: Some(Phase::Crash),
                    duration_seconds: 0.0,
                    finished_at: rfc3339_from_epoch(epoch_now()),
                    exception: Some(ExceptionInfo {
                        type_name: "smart_rerun.PytestCrash".into(),
                        mro: Vec::new(),
                        message: reason.clone(),
                    }),
                    crash: None,
                    test_location: None,
                    traceback: None,
                    captured: Vec::new(),
                    also_failed: Vec::new(),
                    worker: None,
                    fingerprint: None,
                    classification: None,
                };
                self.record(i, attempt, epoch_now());
            }
            let note = format!(
                "pytest died before finishing the round ({})",
                describe_status(status)
            );
            self.warnings.push(format!("round {number}: {note}"));
        }
        // Tests selected for this round that did not run.
        let selected: Box<dyn Iterator<Item = usize>> = match selection {
            Some(s) => Box::new(s.iter().map(|&i| i as usize)),
            None => Box::new(0..self.tests.len()),
        };
        let stopped_early = progress
            .finish
            .as_ref()
            .and_then(|f| f.shouldstop.clone().or(f.shouldfail.clone()));
        let retries_pending = self
            .tests
            .iter()
            .any(|t| t.runs > 0 && matches!(t.status, Status::Queued { .. }));
        let seen = &progress.seen;
        let selected: Vec<usize> = selected.filter(|&i| seen[i] != Seen::Ran).collect();
        for i in selected {
            let carry = !self.interrupted
                && !self.collection_aborted
                && (crashed || (stopped_early.is_some() && retries_pending));
            let missing = progress.present.as_ref().is_some_and(|p| !p[i]);
            // Under an interrupt, the tests that started but never finished are the ones that were running.
            let was_running = seen[i] == Seen::Running;
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
        self.session_problem = match &progress.finish {
            Some(f)
                if f.exitstatus == 1
                    && f.testsfailed == 0
                    && progress.collect_errors.is_empty() =>
            {
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
        progress.progressed
    }

    fn record(&mut self, i: usize, mut attempt: Attempt, stop: f64) {
        let policy = match self.markers.get(&*self.tests[i].nodeid) {
            Some(m) => std::borrow::Cow::Owned(m.apply(&self.settings.policy)),
            None => std::borrow::Cow::Borrowed(&self.settings.policy),
        };
        let t = &mut self.tests[i];
        t.runs += 1;
        attempt.number = t.runs;
        let outcome = attempt.outcome;
        t.last = Some(outcome);
        t.last_duration = attempt.duration_seconds;
        t.last_stop = stop;
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
        let notes = t.notes.get_or_insert_default();
        notes.attempts.push(attempt);
        if !outcome.is_failure() {
            t.status = Status::Done;
            return;
        }
        t.status = Status::Done;
        if !policy.enabled {
            notes.stopped_because =
                Some("reruns are off for unmarked tests (smart_rerun = false)".into());
        } else if t.runs >= policy.max_attempts {
            notes.stopped_because = Some(format!(
                "reached the attempt limit ({})",
                policy.max_attempts
            ));
        } else if !policy.allows(&mro) {
            let class = mro.first().map(|s| s.as_str()).unwrap_or("a crash");
            let allowed: Vec<&str> = policy.errors.iter().map(|e| e.as_str()).collect();
            notes.stopped_because = Some(format!(
                "{class} is not in the errors allow-list ({})",
                allowed.join(", ")
            ));
        } else if self.settings.early_stop
            && crate::classify::confirmed_deterministic(&notes.attempts)
        {
            // The same failure twice, nothing transient about it: more attempts would fail the same way.
            let left = policy.max_attempts - t.runs;
            let per_attempt = t.last_duration;
            let waits: f64 = (t.runs..policy.max_attempts)
                .map(|k| policy.delay_for(&t.nodeid, k).as_secs_f64())
                .sum();
            self.attempts_saved += left as usize;
            self.seconds_saved += per_attempt * left as f64 + waits;
            notes.stopped_because = Some(format!(
                "failed the same way twice: a deterministic failure, so the {} not spent (smart_rerun_early_stop)",
                if left == 1 {
                    "1 remaining attempt was".to_owned()
                } else {
                    format!("{left} remaining attempts were")
                }
            ));
        } else {
            notes.stopped_because = None;
            t.status = Status::Queued {
                ready_at: stop + policy.delay_for(&t.nodeid, t.runs).as_secs_f64(),
            };
        }
    }

    fn into_report(self, started_at: String, elapsed: Duration) -> RunReport {
        let Run {
            config,
            tests,
            files,
            session,
            collection_errors,
            rounds,
            mut warnings,
            temp,
            ..
        } = self;
        let interrupted = self.interrupted;
        // Flaky tests whose policy says a flake fails the run (`fail_on_flaky`, or `flaky="fail"`).
        let failing_flakes = tests
            .iter()
            .filter(|t| final_outcome(t) == Outcome::Flaky)
            .filter(|t| match self.markers.get(&*t.nodeid) {
                Some(m) => m.apply(&self.settings.policy).fail_on_flaky,
                None => self.settings.policy.fail_on_flaky,
            })
            .count();
        let mut results = Vec::with_capacity(tests.len());
        for t in tests {
            let outcome = final_outcome(&t);
            let notes = t.notes.map(|n| *n).unwrap_or_default();
            results.push(TestResult {
                file: t.file.map(|f| files[f as usize].clone()),
                nodeid: t.nodeid.into(),
                outcome,
                line: t.line,
                duration_seconds: t.last_duration,
                reason: notes.reason,
                stopped_because: if outcome.is_failure() {
                    notes.stopped_because
                } else {
                    None
                },
                classification: crate::classify::observe(outcome, &notes.attempts).map(Box::new),
                attempts: notes.attempts,
            });
        }
        let mut report = RunReport {
            schema_version: SCHEMA_VERSION,
            tool: Tool::default(),
            run: RunInfo {
                command: config
                    .command
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
                cwd: config.cwd.display().to_string(),
                python_version: session.as_ref().map(|s| s.python_version.clone()),
                pytest_version: session.as_ref().map(|s| s.pytest_version.clone()),
                python_executable: session.as_ref().and_then(|s| s.python_executable.clone()),
                rootdir: session.as_ref().map(|s| s.rootdir.clone()),
                started_at,
                finished_at: now_rfc3339(),
                duration_seconds: elapsed.as_secs_f64(),
                exit_code: ExitCode::Ok,
                exit_reason: String::new(),
                interrupted,
                policy: PolicyInfo::from(&self.settings.policy),
                rounds,
                plugins: session
                    .as_ref()
                    .map(|s| s.plugins.clone())
                    .unwrap_or_default(),
            },
            summary: Summary::default(),
            tests: results,
            collection_errors,
            warnings: Vec::new(),
            ci: None,
        };
        report.summarize();
        report.summary.attempts_saved = self.attempts_saved;
        report.summary.seconds_saved = self.seconds_saved;
        let (mut exit, mut reason) = decide_exit(
            &report,
            self.early_exit,
            self.session_problem,
            self.collection_aborted,
        );
        if exit == ExitCode::Ok && failing_flakes > 0 {
            exit = ExitCode::TestsFailed;
            reason = format!(
                "{failing_flakes} flaky test{} and flaky results are set to fail the run (fail_on_flaky)",
                if failing_flakes == 1 { "" } else { "s" }
            );
        }
        if let Some(note) = (exit != ExitCode::Ok).then(|| reason.clone()) {
            if !warnings.contains(&note) && matches!(exit, ExitCode::InternalError) {
                warnings.push(note);
            }
        }
        report.run.exit_code = exit;
        report.run.exit_reason = reason;
        report.warnings = warnings;
        if config.keep_temp {
            let kept = temp.keep();
            report
                .warnings
                .push(format!("kept the collector's events in {}", kept.display()));
        }
        report
    }
}

fn final_outcome(t: &TestState) -> Outcome {
    let Some(last) = t.last else {
        return Outcome::NotRun;
    };
    let failed_before = t.attempts().iter().any(|a| a.outcome.is_failure());
    match last {
        Outcome::Passed if failed_before => Outcome::Flaky,
        other => other,
    }
}

/// The run's exit code, pytest's way, and why.
fn decide_exit(
    report: &RunReport,
    early: Option<(ExitCode, String)>,
    session_problem: Option<(ExitCode, String)>,
    collection_aborted: bool,
) -> (ExitCode, String) {
    let s = &report.summary;
    if let Some(early) = early {
        return early;
    }
    if report.run.interrupted {
        return (ExitCode::Interrupted, "the run was interrupted".into());
    }
    if collection_aborted {
        return (
            ExitCode::Interrupted,
            "pytest stopped: errors during collection".into(),
        );
    }
    let failing = s.failed + s.errors + s.collection_errors;
    if failing > 0 {
        let mut parts = Vec::new();
        if s.failed > 0 {
            parts.push(format!("{} failed", s.failed));
        }
        if s.errors > 0 {
            parts.push(format!(
                "{} error{}",
                s.errors,
                if s.errors == 1 { "" } else { "s" }
            ));
        }
        if s.collection_errors > 0 {
            parts.push(format!(
                "{} collection error{}",
                s.collection_errors,
                if s.collection_errors == 1 { "" } else { "s" }
            ));
        }
        return (
            ExitCode::TestsFailed,
            format!("{} after reruns", parts.join(", ")),
        );
    }
    if let Some(problem) = session_problem {
        return problem;
    }
    if s.total == 0 {
        return (ExitCode::NoTestsCollected, "no tests were collected".into());
    }
    if s.flaky > 0 {
        return (ExitCode::Ok, format!("all tests passed; {} flaky", s.flaky));
    }
    (ExitCode::Ok, "all tests passed".into())
}

fn attempt_from_event(event: &TestEvent, round: u32, rootdir: &Path) -> Attempt {
    let outcome = Outcome::from(event.outcome);
    let mut attempt = Attempt {
        number: 0,
        round,
        outcome,
        phase: None,
        duration_seconds: event.duration,
        finished_at: rfc3339_from_epoch(event.stop),
        exception: None,
        crash: None,
        test_location: None,
        traceback: None,
        captured: Vec::new(),
        also_failed: Vec::new(),
        worker: event.worker.clone(),
        fingerprint: None,
        classification: None,
    };
    if let Some(first) = event.failures.first() {
        fill_failure(&mut attempt, first, rootdir);
        attempt.also_failed = event.failures[1..].iter().map(|f| f.phase).collect();
    }
    attempt
}

fn fill_failure(attempt: &mut Attempt, f: &FailureEvent, rootdir: &Path) {
    attempt.phase = Some(f.phase);
    let type_name = f
        .type_name
        .clone()
        .unwrap_or_else(|| "builtins.Exception".to_owned());
    let mro = if f.mro.is_empty() {
        vec![type_name.clone()]
    } else {
        f.mro.clone()
    };
    attempt.exception = Some(ExceptionInfo {
        type_name,
        mro,
        message: f.message.clone().unwrap_or_default(),
    });
    attempt.crash = f
        .crash_path
        .as_ref()
        .zip(f.crash_line)
        .map(|(path, line)| Location {
            file: relative_to(path, rootdir),
            line,
        });
    attempt.test_location = None;
    if let Some(line) = f.test_line {
        attempt.test_location = Some(Location {
            file: String::new(),
            line,
        });
    }
    attempt.traceback = f.traceback.clone();
    attempt.captured = f
        .sections
        .iter()
        .map(|(name, text)| CapturedSection {
            name: name.clone(),
            text: text.clone().unwrap_or_default(),
        })
        .collect();
}

/// Writes `value` to `path` whole, then renames it into place: a pytest waiting for the file never reads
/// half of it.
fn write_json_atomic(path: &Path, value: &serde_json::Value) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(value)?)?;
    std::fs::rename(&tmp, path)
}

/// The status of a process that exited with `code`, for a pytest that reported its exit status before
/// its interpreter finished shutting down.
fn exit_status_from_code(code: i32) -> ExitStatus {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        ExitStatus::from_raw((code & 0xff) << 8)
    }
    #[cfg(windows)]
    {
        use std::os::windows::process::ExitStatusExt;
        ExitStatus::from_raw(code as u32)
    }
}

/// Whether `max_reruns` leaves nothing to rerun.
fn rerun_budget_spent(limit: Option<u32>, started: u32) -> bool {
    limit.is_some_and(|limit| started >= limit)
}

/// The byte that releases a held pytest (the collector's `RELEASE`).
const HOLD_RELEASE: u8 = b'r';

/// A pipe for a held pytest: its reading end goes to the child `cmd` starts, as an inherited descriptor
/// named in `SMART_RERUN_HOLD`; smart-rerun keeps the writing end. `None` where it cannot be made (and on
/// Windows, which never prestarts).
#[cfg(unix)]
fn hold_pipe(cmd: &mut Command) -> Option<(std::io::PipeReader, std::io::PipeWriter)> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    // Both ends are close-on-exec, so no other child ever holds the writing end open.
    let (reader, writer) = std::io::pipe().ok()?;
    let fd = reader.as_raw_fd();
    cmd.env("SMART_RERUN_HOLD", fd.to_string());
    // SAFETY: between fork and exec the closure only calls fcntl, which is async-signal-safe, on a
    // descriptor this process owns; it lets that one descriptor survive the exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Some((reader, writer))
}

#[cfg(not(unix))]
fn hold_pipe(_cmd: &mut Command) -> Option<(std::io::PipeReader, std::io::PipeWriter)> {
    None
}

/// A private directory holding the collector plugin, for one run.
fn install_collector() -> Result<tempfile::TempDir, RunError> {
    let temp = tempfile::Builder::new()
        .prefix("smart-rerun-")
        .tempdir()
        .map_err(RunError::TempDir)?;
    let plugin_dir = temp.path().join("plugin");
    std::fs::create_dir_all(&plugin_dir).map_err(RunError::TempDir)?;
    std::fs::write(
        plugin_dir.join(format!("{COLLECTOR_MODULE}.py")),
        COLLECTOR_SOURCE,
    )
    .map_err(RunError::TempDir)?;
    Ok(temp)
}

/// The user's command with the collector loaded through the environment.
fn pytest_command(config: &RunConfig, temp: &Path, events_path: &Path) -> Command {
    let mut cmd = Command::new(&config.command[0]);
    cmd.args(&config.command[1..]).current_dir(&config.cwd);
    cmd.env(
        "PYTHONPATH",
        prepend_path(&temp.join("plugin"), std::env::var_os("PYTHONPATH")),
    );
    cmd.env(
        "PYTEST_PLUGINS",
        append_plugin(std::env::var_os("PYTEST_PLUGINS")),
    );
    cmd.env("SMART_RERUN_EVENTS", events_path);
    // smart-rerun's own secrets (the AI, GitHub and GitLab tokens) stay with smart-rerun: the code under
    // test, which on a fork PR is anyone's, never sees them. (Our process keeps them: an ini value may
    // still say `{{ env:SMART_RERUN_AI_TOKEN }}`.)
    for key in crate::config::KEYS
        .iter()
        .filter(|k| k.kind == crate::config::Kind::Secret)
    {
        cmd.env_remove(key.env);
    }
    cmd
}

/// What `smart-rerun config` shows: the settings in force for this command, with the ini values pytest
/// itself finds (its discovery rules, `-c`, `--rootdir`), without collecting or running any test.
pub fn probe_settings(
    config: &RunConfig,
) -> Result<(SessionStart, Result<Settings, ConfigErrors>), RunError> {
    if config.command.is_empty() {
        return Err(RunError::EmptyCommand);
    }
    let temp = install_collector()?;
    let events_path = temp.path().join("config.jsonl");
    let mut cmd = pytest_command(config, temp.path(), &events_path);
    cmd.env("SMART_RERUN_MODE", "config")
        .env("SMART_RERUN_ROUND", "1")
        .env_remove("SMART_RERUN_SELECT")
        .env_remove("SMART_RERUN_VERDICT")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let program = config.command[0].to_string_lossy().into_owned();
    let output = cmd.output().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            RunError::CommandNotFound {
                program: program.clone(),
            }
        } else {
            RunError::Spawn {
                program: program.clone(),
                source,
            }
        }
    })?;
    let mut session = None;
    events::read(&events_path, |event| {
        if let Event::SessionStart(s) = event {
            session = Some(s);
        }
    })
    .map_err(|source| RunError::Events {
        path: events_path.display().to_string(),
        source,
    })?;
    let Some(session) = session else {
        // Show what pytest said (its usage error, say); its stderr was held back to hide the
        // "configuration read" exit line of a successful probe.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let status = describe_status(output.status);
        let said = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        return Err(RunError::NoSession {
            status: if said.is_empty() {
                status
            } else {
                format!("{status}; pytest said:\n{said}")
            },
        });
    };
    let inifile = session.inifile.as_deref().map(Path::new);
    let mut layer = RawLayer::from_ini(&session.ini, inifile);
    layer.mark_overrides(&session.ini_overrides);
    layer.update(&config.layer);
    let settings = Settings::from_layer(&layer, &|n| std::env::var(n).ok(), &config.cwd);
    Ok((session, settings))
}

/// `path` relative to `root` when it is inside it, with `/` separators, else as given.
pub fn relative_to(path: &str, root: &Path) -> String {
    let p = Path::new(path);
    match p.strip_prefix(root) {
        Ok(rel) if !root.as_os_str().is_empty() => rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
        _ => path.to_owned(),
    }
}

fn prepend_path(dir: &Path, existing: Option<OsString>) -> OsString {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(existing) = existing.filter(|e| !e.is_empty()) {
        paths.extend(std::env::split_paths(&existing));
    }
    std::env::join_paths(paths).unwrap_or_else(|_| dir.as_os_str().to_owned())
}

fn append_plugin(existing: Option<OsString>) -> OsString {
    match existing
        .map(|e| e.to_string_lossy().trim().to_owned())
        .filter(|e| !e.is_empty())
    {
        Some(e) if e.split(',').any(|p| p.trim() == COLLECTOR_MODULE) => e.into(),
        Some(e) => format!("{e},{COLLECTOR_MODULE}").into(),
        None => COLLECTOR_MODULE.into(),
    }
}

fn exit_signal(status: ExitStatus) -> Option<i32> {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        status.signal()
    }
    #[cfg(not(unix))]
    {
        let _ = status;
        None
    }
}

/// "killed by signal 11 (SIGSEGV)" or "exit status 3".
pub fn describe_status(status: ExitStatus) -> String {
    if let Some(sig) = exit_signal(status) {
        let name = match sig {
            1 => " (SIGHUP)",
            2 => " (SIGINT)",
            6 => " (SIGABRT)",
            9 => " (SIGKILL)",
            11 => " (SIGSEGV)",
            15 => " (SIGTERM)",
            _ => "",
        };
        return format!("killed by signal {sig}{name}");
    }
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "no exit status".into(),
    }
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn rfc3339_from_epoch(secs: f64) -> Option<String> {
    jiff::Timestamp::from_microsecond((secs * 1e6) as i64)
        .ok()
        .map(|t| t.to_string())
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_tests_are_kept_in_start_order_and_finished_ones_pruned() {
        let mut round = RoundProgress::new(2, 1000, PathBuf::new());
        for i in (0..1000).rev() {
            round.started(i);
            if i != 700 && i != 40 {
                round.seen[i] = Seen::Ran;
            }
        }
        // Started again: once running, or after its result (an in-process rerun plugin).
        round.started(700);
        round.started(3);
        assert!(round.running.len() <= 8, "{:?}", round.running);
        let running: Vec<u32> = round
            .running
            .iter()
            .copied()
            .filter(|&i| round.seen[i as usize] == Seen::Running)
            .collect();
        assert_eq!(running, vec![700, 40]);
    }

    #[test]
    fn the_plugin_joins_existing_pytest_plugins_once() {
        assert_eq!(append_plugin(None), OsString::from(COLLECTOR_MODULE));
        assert_eq!(
            append_plugin(Some("a,b".into())),
            OsString::from(format!("a,b,{COLLECTOR_MODULE}"))
        );
        let already = format!("x,{COLLECTOR_MODULE}");
        assert_eq!(
            append_plugin(Some(already.clone().into())),
            OsString::from(already)
        );
    }

    #[test]
    fn paths_inside_rootdir_become_relative() {
        assert_eq!(
            relative_to("/r/tests/test_a.py", Path::new("/r")),
            "tests/test_a.py"
        );
        assert_eq!(
            relative_to("/elsewhere/x.py", Path::new("/r")),
            "/elsewhere/x.py"
        );
    }
}

#[cfg(test)]
mod wait_tests {
    use super::*;

    #[derive(Default)]
    struct Ticks {
        every: Option<Duration>,
        waits: usize,
        ticks: Vec<Duration>,
        done: usize,
    }

    impl ProgressSink for Ticks {
        fn event(&mut self, event: ProgressEvent<'_>) {
            match event {
                ProgressEvent::Waiting { .. } => self.waits += 1,
                ProgressEvent::WaitingTick { left } => self.ticks.push(left),
                ProgressEvent::WaitingDone => self.done += 1,
                ProgressEvent::RoundStarting(_) | ProgressEvent::RoundFinished(_) => {}
            }
        }
        fn tick_interval(&self) -> Option<Duration> {
            self.every
        }
    }

    fn plan() -> RoundPlan<'static> {
        RoundPlan {
            number: 2,
            kind: RoundKind::Rerun,
            tests: vec![PlannedTest {
                nodeid: "t.py::test_a",
                attempt: 2,
                max_attempts: 3,
            }],
            serial: true,
        }
    }

    #[test]
    fn a_wait_ticks_the_progress_sink_with_the_time_left() {
        let mut obs = Ticks {
            every: Some(Duration::from_millis(40)),
            ..Ticks::default()
        };
        let started = Instant::now();
        assert!(wait_before_round(
            &Interrupts::none(),
            &mut obs,
            Duration::from_millis(300),
            &plan()
        ));
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!((obs.waits, obs.done), (1, 1));
        assert!(obs.ticks.len() >= 3, "{:?}", obs.ticks);
        assert!(obs.ticks.windows(2).all(|w| w[0] > w[1]), "{:?}", obs.ticks);
        assert!(
            obs.ticks
                .iter()
                .all(|&left| left <= Duration::from_millis(300))
        );
    }

    #[test]
    fn without_a_tick_interval_the_wait_is_one_sleep() {
        let mut obs = Ticks::default();
        assert!(wait_before_round(
            &Interrupts::none(),
            &mut obs,
            Duration::from_millis(50),
            &plan()
        ));
        assert!(obs.ticks.is_empty());
        assert_eq!(obs.done, 1);
    }

    #[test]
    fn a_signal_cuts_a_ticking_wait_short_and_clears_the_status() {
        let interrupts = Interrupts::none();
        let signaller = interrupts.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            signaller.simulate(crate::signals::SIGINT);
        });
        let mut obs = Ticks {
            every: Some(Duration::from_millis(100)),
            ..Ticks::default()
        };
        let started = Instant::now();
        assert!(!wait_before_round(
            &interrupts,
            &mut obs,
            Duration::from_secs(30),
            &plan()
        ));
        thread.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(obs.done, 1);
    }
}
