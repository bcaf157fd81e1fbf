//! Attempt rounds: run the user's pytest command, read what the embedded collector reports, and run the
//! tests that failed again — each round a fresh pytest process with the same command — until they pass
//! or reach their attempt limit. The main entry is [`run`]; it returns the [`RunReport`].
//!
//! The collector (`collector.py`, embedded here) is loaded through PYTHONPATH and PYTEST_PLUGINS, so any
//! wrapper (`uv run pytest`, `poetry run pytest`) works. A rerun round's selection reaches it through a
//! file named in the environment, never as node ids on the command line.
//!
//! Nothing collected is lost: a test that was running when pytest died is an error attempt; tests that had
//! not run yet go to a continuation round that charges them no attempt; tests never run at all (an
//! interrupted run, `-x`) are reported as `not-run`.

pub mod command;
pub mod events;
pub mod signals;

use crate::policy::{RetryPolicy, plan_next_round};
use crate::report::{
    Attempt, CapturedSection, CollectionError, ExceptionInfo, Location, Outcome, Phase, PolicyInfo,
    Round, RoundKind, RunInfo, RunReport, SCHEMA_VERSION, Summary, TestResult, Tool,
};
use events::{FailureEvent, RoundEvents, SessionStart, TestEvent};
use signals::Interrupts;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant, SystemTime};

/// The collector plugin's source, written to a private directory for each run.
pub const COLLECTOR_SOURCE: &str = include_str!("collector.py");
/// The module name PYTEST_PLUGINS loads.
pub const COLLECTOR_MODULE: &str = "_smart_rerun_collector";

/// pytest's exit codes, which smart-rerun's follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitCode {
    Ok = 0,
    TestsFailed = 1,
    Interrupted = 2,
    InternalError = 3,
    UsageError = 4,
    NoTestsCollected = 5,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// argv of every round.
    pub command: Vec<OsString>,
    pub cwd: PathBuf,
    pub policy: RetryPolicy,
    /// Tests ready within this long of the earliest join its round (one pytest start-up saved).
    pub coalesce: Duration,
    /// A rerun round whose tests took less than this last time runs without xdist workers.
    pub serial_below: Duration,
    /// Keep the temp dir with events files (debugging).
    pub keep_temp: bool,
}

impl RunConfig {
    pub fn new(command: Vec<OsString>, cwd: PathBuf, policy: RetryPolicy) -> Self {
        RunConfig {
            command,
            cwd,
            policy,
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
    #[error("failed to prepare the collector plugin in a temporary directory")]
    TempDir(#[source] std::io::Error),
    #[error("failed to read the collector's events from {path}")]
    Events {
        path: String,
        #[source]
        source: std::io::Error,
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

/// A round about to start, for progress output.
#[derive(Debug)]
pub struct RoundPlan<'a> {
    pub number: u32,
    pub kind: RoundKind,
    /// `(nodeid, attempt number, max attempts)` of each selected test; empty for the first round.
    pub tests: Vec<(&'a str, u32, u32)>,
    pub serial: bool,
}

/// Receives progress as the run goes; the terminal renderer implements it.
pub trait Observer {
    fn round_starting(&mut self, _plan: &RoundPlan<'_>) {}
    fn round_finished(&mut self, _round: &Round) {}
    fn waiting(&mut self, _wait: Duration, _plan: &RoundPlan<'_>) {}
    fn note(&mut self, _message: &str) {}
}

/// An observer that shows nothing.
pub struct Silent;
impl Observer for Silent {}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Status {
    /// Due to run in a later round, not before `ready_at` (seconds since the epoch).
    Queued {
        ready_at: f64,
    },
    Done,
}

#[derive(Debug)]
struct TestState {
    nodeid: String,
    file: Option<u32>,
    line: Option<u32>,
    /// Stored once the test has failed; a test that passes its only attempt keeps none.
    attempts: Vec<Attempt>,
    runs: u32,
    last: Option<Outcome>,
    last_duration: f64,
    reason: Option<String>,
    stopped_because: Option<String>,
    status: Status,
}

struct Run<'a> {
    config: &'a RunConfig,
    interrupts: &'a Interrupts,
    observer: &'a mut dyn Observer,
    temp: tempfile::TempDir,
    tests: Vec<TestState>,
    index: HashMap<String, u32>,
    /// Rootdir-relative test files; `files_abs` the same, absolute, for selections.
    files: Vec<String>,
    files_abs: Vec<String>,
    session: Option<SessionStart>,
    collection_errors: Vec<CollectionError>,
    rounds: Vec<Round>,
    warnings: Vec<String>,
    /// pytest stopped the first round because of collection errors (it exits 2 then).
    collection_aborted: bool,
    interrupted: bool,
    /// A problem with the final round's session that is not a test result.
    session_problem: Option<(ExitCode, String)>,
    early_exit: Option<(ExitCode, String)>,
}

/// Runs the suite and its reruns. Errors are for runs that could not start; everything else, including a
/// pytest that crashed, ends in a report.
pub fn run(
    config: &RunConfig,
    interrupts: &Interrupts,
    observer: &mut dyn Observer,
) -> Result<RunReport, RunError> {
    if config.command.is_empty() {
        return Err(RunError::EmptyCommand);
    }
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

    let started_at = now_rfc3339();
    let started = Instant::now();
    let mut run = Run {
        config,
        interrupts,
        observer,
        temp,
        tests: Vec::new(),
        index: HashMap::new(),
        files: Vec::new(),
        files_abs: Vec::new(),
        session: None,
        collection_errors: Vec::new(),
        rounds: Vec::new(),
        warnings: Vec::new(),
        collection_aborted: false,
        interrupted: false,
        session_problem: None,
        early_exit: None,
    };
    run.rounds_loop()?;
    let report = run.into_report(started_at, started.elapsed());
    Ok(report)
}

impl Run<'_> {
    fn rounds_loop(&mut self) -> Result<(), RunError> {
        let first = RoundPlan {
            number: 1,
            kind: RoundKind::First,
            tests: Vec::new(),
            serial: false,
        };
        self.observer.round_starting(&first);
        let (events, status, round) = self.run_round(1, RoundKind::First, None, false)?;
        self.absorb_first(&events, status);
        self.absorb(1, &events, status, None);
        self.finish_round(round);
        if self.early_exit.is_some() {
            return Ok(());
        }
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
            let Some(plan) =
                plan_next_round(&ready, epoch_now(), self.config.coalesce.as_secs_f64())
            else {
                break;
            };
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
            let max = self.config.policy.max_attempts;
            let round_plan = RoundPlan {
                number,
                kind,
                tests: selected
                    .iter()
                    .map(|&i| {
                        let t = &self.tests[i as usize];
                        (t.nodeid.as_str(), t.runs + 1, max)
                    })
                    .collect(),
                serial,
            };
            let wait = plan.start_at - epoch_now();
            if wait > 0.0 {
                let wait = Duration::from_secs_f64(wait);
                self.observer.waiting(wait, &round_plan);
                if !self.interrupts.sleep_until(Instant::now() + wait) {
                    self.interrupted = true;
                    break;
                }
            }
            self.observer.round_starting(&round_plan);
            let (events, status, round) = self.run_round(number, kind, Some(&selected), serial)?;
            let progressed = self.absorb(number, &events, status, Some(&selected));
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
                        t.stopped_because = Some(why.clone());
                    }
                }
            }
        }
        if self.interrupted {
            for t in &mut self.tests {
                if let Status::Queued { .. } = t.status {
                    t.status = Status::Done;
                    t.stopped_because = Some("the run was interrupted".into());
                }
            }
        }
        Ok(())
    }

    fn finish_round(&mut self, round: Round) {
        self.observer.round_finished(&round);
        self.rounds.push(round);
    }

    fn run_round(
        &mut self,
        number: u32,
        kind: RoundKind,
        selection: Option<&[u32]>,
        serial: bool,
    ) -> Result<(RoundEvents, ExitStatus, Round), RunError> {
        let events_path = self.temp.path().join(format!("round-{number}.jsonl"));
        let program = self.config.command[0].clone();
        let mut cmd = Command::new(&program);
        cmd.args(&self.config.command[1..])
            .current_dir(&self.config.cwd);
        cmd.env(
            "PYTHONPATH",
            prepend_path(
                &self.temp.path().join("plugin"),
                std::env::var_os("PYTHONPATH"),
            ),
        );
        cmd.env(
            "PYTEST_PLUGINS",
            append_plugin(std::env::var_os("PYTEST_PLUGINS")),
        );
        cmd.env("SMART_RERUN_EVENTS", &events_path);
        cmd.env("SMART_RERUN_ROUND", number.to_string());
        match selection {
            Some(selected) => {
                let path = self.temp.path().join(format!("select-{number}.json"));
                self.write_selection(&path, selected, serial)
                    .map_err(RunError::TempDir)?;
                cmd.env("SMART_RERUN_SELECT", &path);
            }
            None => {
                cmd.env_remove("SMART_RERUN_SELECT");
            }
        }
        let selected_count = selection.map_or(0, |s| s.len());
        let started_at = now_rfc3339();
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|source| {
            let program = program.to_string_lossy().into_owned();
            if source.kind() == std::io::ErrorKind::NotFound {
                RunError::CommandNotFound { program }
            } else {
                RunError::Spawn { program, source }
            }
        })?;
        self.interrupts.set_child(Some(child.id()));
        let status = loop {
            match child.wait() {
                Ok(status) => break status,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    self.interrupts.set_child(None);
                    return Err(RunError::Spawn {
                        program: program.to_string_lossy().into_owned(),
                        source,
                    });
                }
            }
        };
        self.interrupts.set_child(None);
        let duration = started.elapsed().as_secs_f64();
        let events = RoundEvents::read(&events_path).map_err(|source| RunError::Events {
            path: events_path.display().to_string(),
            source,
        })?;
        let selected = if number == 1 {
            events.collected.as_ref().map_or(0, |c| c.items.len())
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
            note: None,
        };
        Ok((events, status, round))
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
            .map(|&i| self.tests[i as usize].nodeid.as_str())
            .collect();
        let body = serde_json::json!({ "files": files, "nodeids": nodeids, "serial": serial });
        std::fs::write(path, serde_json::to_vec(&body)?)
    }

    /// Settles what only the first round can tell: whether pytest ran at all, the session, the collection.
    fn absorb_first(&mut self, events: &RoundEvents, status: ExitStatus) {
        let code = status.code();
        if !events.hello {
            let why = format!(
                "the collector plugin never reported in, so the command's environment did not reach pytest ({}). \
                 A wrapper that drops environment variables must pass PYTHONPATH, PYTEST_PLUGINS and SMART_RERUN_* \
                 through (tox: `passenv = PYTHONPATH, PYTEST_PLUGINS, SMART_RERUN_*`), and the command must run pytest",
                describe_status(status)
            );
            self.early_exit = Some((ExitCode::InternalError, why));
            return;
        }
        if let Some(session) = &events.session {
            if session.protocol != events::PROTOCOL {
                self.warnings.push(format!(
                    "the collector speaks protocol {}, this binary {}",
                    session.protocol,
                    events::PROTOCOL
                ));
            }
            self.session = Some(session.clone());
        }
        if events.session.is_none() || events.collected.is_none() {
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
                Some(2) if !events.collect_errors.is_empty() => (
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
            self.collection_errors_from(events);
            self.early_exit = Some((exit, why));
            return;
        }
        let rootdir = PathBuf::from(
            &events
                .session
                .as_ref()
                .map(|s| s.rootdir.clone())
                .unwrap_or_default(),
        );
        if let Some(collected) = &events.collected {
            self.files_abs = collected.files.clone();
            self.files = collected
                .files
                .iter()
                .map(|f| relative_to(f, &rootdir))
                .collect();
            self.tests.reserve_exact(collected.items.len());
            for (nodeid, file, line) in &collected.items {
                if self.index.contains_key(nodeid) {
                    continue;
                }
                self.index.insert(nodeid.clone(), self.tests.len() as u32);
                self.tests.push(TestState {
                    nodeid: nodeid.clone(),
                    file: u32::try_from(*file)
                        .ok()
                        .filter(|&f| (f as usize) < collected.files.len()),
                    line: *line,
                    attempts: Vec::new(),
                    runs: 0,
                    last: None,
                    last_duration: 0.0,
                    reason: None,
                    stopped_because: None,
                    status: Status::Queued { ready_at: 0.0 },
                });
            }
        }
        self.collection_errors_from(events);
        if !events.collect_errors.is_empty() && code == Some(2) && events.tests.is_empty() {
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

    fn collection_errors_from(&mut self, events: &RoundEvents) {
        for (nodeid, traceback) in &events.collect_errors {
            self.collection_errors.push(CollectionError {
                nodeid: nodeid.clone(),
                traceback: traceback.clone(),
            });
        }
    }

    /// Records a round's results and decides each test's next step. Returns whether any test ran or was
    /// charged an attempt.
    fn absorb(
        &mut self,
        number: u32,
        events: &RoundEvents,
        status: ExitStatus,
        selection: Option<&[u32]>,
    ) -> bool {
        let mut progressed = false;
        let mut ran = vec![false; self.tests.len()];
        for event in &events.tests {
            let Some(&i) = self.index.get(&event.nodeid) else {
                continue;
            };
            ran[i as usize] = true;
            progressed = true;
            let mut attempt = attempt_from_event(event, number, &self.session_rootdir());
            if let (Some(loc), Some(f)) =
                (attempt.test_location.as_mut(), self.tests[i as usize].file)
            {
                loc.file = self.files[f as usize].clone();
            }
            if attempt
                .test_location
                .as_ref()
                .is_some_and(|l| l.file.is_empty())
            {
                attempt.test_location = None;
            }
            self.record(i as usize, attempt, event.stop);
        }
        if events.interrupted || self.interrupts.received().is_some() {
            self.interrupted = true;
        }
        let crashed = events.finish.is_none() && !self.interrupted;
        if crashed {
            let reason = format!(
                "pytest died while this test ran ({})",
                describe_status(status)
            );
            // The tests that started but never finished were running when pytest died.
            for nodeid in &events.started {
                let Some(&i) = self.index.get(nodeid) else {
                    continue;
                };
                if ran[i as usize] {
                    continue;
                }
                ran[i as usize] = true;
                progressed = true;
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
                };
                self.record(i as usize, attempt, epoch_now());
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
        let stopped_early = events
            .finish
            .as_ref()
            .and_then(|f| f.shouldstop.clone().or(f.shouldfail.clone()));
        let retries_pending = self
            .tests
            .iter()
            .any(|t| t.runs > 0 && matches!(t.status, Status::Queued { .. }));
        let selected: Vec<usize> = selected.filter(|&i| !ran[i]).collect();
        let present: Option<std::collections::HashSet<&str>> = if number > 1 {
            events
                .collected
                .as_ref()
                .map(|c| c.items.iter().map(|(n, _, _)| n.as_str()).collect())
        } else {
            None
        };
        for i in selected {
            let carry = !self.interrupted
                && !self.collection_aborted
                && (crashed || (stopped_early.is_some() && retries_pending));
            let missing = present
                .as_ref()
                .is_some_and(|p| !p.contains(self.tests[i].nodeid.as_str()));
            let t = &mut self.tests[i];
            if missing {
                t.status = Status::Done;
                t.stopped_because = Some(format!("round {number} did not collect it again"));
            } else if carry {
                t.status = Status::Queued { ready_at: 0.0 };
            } else {
                t.status = Status::Done;
                let why = if self.interrupted {
                    "the run was interrupted".to_owned()
                } else if self.collection_aborted {
                    "pytest stopped after errors during collection".to_owned()
                } else if let Some(stop) = &stopped_early {
                    format!("pytest stopped early: {stop}")
                } else {
                    format!("pytest did not run it in round {number}")
                };
                if t.runs == 0 {
                    t.reason = Some(why);
                } else {
                    t.stopped_because = Some(why);
                }
            }
        }
        // A problem of the session itself (not of a test), judged on the latest round.
        self.session_problem = match &events.finish {
            Some(f)
                if f.exitstatus == 1 && f.testsfailed == 0 && events.collect_errors.is_empty() =>
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
                } else {
                    ExitCode::TestsFailed
                },
                format!("pytest exited {} in round {number}", f.exitstatus),
            )),
            _ => None,
        };
        progressed
    }

    fn session_rootdir(&self) -> PathBuf {
        PathBuf::from(
            self.session
                .as_ref()
                .map(|s| s.rootdir.as_str())
                .unwrap_or(""),
        )
    }

    fn record(&mut self, i: usize, mut attempt: Attempt, stop: f64) {
        let policy = &self.config.policy;
        let t = &mut self.tests[i];
        t.runs += 1;
        attempt.number = t.runs;
        let outcome = attempt.outcome;
        t.last = Some(outcome);
        t.last_duration = attempt.duration_seconds;
        if !outcome.is_failure() && t.attempts.is_empty() {
            // Passed (or skipped) without ever failing: no attempt history to keep.
            t.status = Status::Done;
            return;
        }
        let mro = attempt
            .exception
            .as_ref()
            .map(|e| e.mro.clone())
            .unwrap_or_default();
        t.attempts.push(attempt);
        if !outcome.is_failure() {
            t.status = Status::Done;
            return;
        }
        t.status = Status::Done;
        if !policy.enabled {
            t.stopped_because = Some("reruns are off for this test".into());
        } else if t.runs >= policy.max_attempts {
            t.stopped_because = Some(format!(
                "reached the attempt limit ({})",
                policy.max_attempts
            ));
        } else if !policy.allows(&mro) {
            let class = mro.first().map(|s| s.as_str()).unwrap_or("a crash");
            let allowed: Vec<&str> = policy.errors.iter().map(|e| e.as_str()).collect();
            t.stopped_because = Some(format!(
                "{class} is not in the errors allow-list ({})",
                allowed.join(", ")
            ));
        } else {
            t.stopped_because = None;
            t.status = Status::Queued {
                ready_at: stop + policy.delay_after(t.runs).as_secs_f64(),
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
        let mut results = Vec::with_capacity(tests.len());
        for t in tests {
            let outcome = final_outcome(&t);
            let duration = t.last_duration;
            results.push(TestResult {
                file: t.file.map(|f| files[f as usize].clone()),
                nodeid: t.nodeid,
                outcome,
                line: t.line,
                duration_seconds: duration,
                reason: t.reason,
                stopped_because: if outcome.is_failure() {
                    t.stopped_because
                } else {
                    None
                },
                attempts: t.attempts,
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
                exit_code: 0,
                exit_reason: String::new(),
                interrupted,
                policy: PolicyInfo::from(&config.policy),
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
        };
        report.summarize();
        let (exit, reason) = decide_exit(
            &report,
            self.early_exit,
            self.session_problem,
            self.collection_aborted,
        );
        if let Some(note) = (exit != ExitCode::Ok).then(|| reason.clone()) {
            if !warnings.contains(&note) && matches!(exit, ExitCode::InternalError) {
                warnings.push(note);
            }
        }
        report.run.exit_code = exit.code();
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
    let failed_before = t.attempts.iter().any(|a| a.outcome.is_failure());
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
    if report.run.interrupted {
        return (ExitCode::Interrupted, "the run was interrupted".into());
    }
    if let Some(early) = early {
        return early;
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
    let outcome = match event.outcome.as_str() {
        "passed" => Outcome::Passed,
        "failed" => Outcome::Failed,
        "skipped" => Outcome::Skipped,
        "xfailed" => Outcome::Xfailed,
        "xpassed" => Outcome::Xpassed,
        _ => Outcome::Error,
    };
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
    };
    if let Some(first) = event.failures.first() {
        fill_failure(&mut attempt, first, rootdir);
        attempt.also_failed = event.failures[1..]
            .iter()
            .filter_map(|f| phase(&f.phase))
            .collect();
    }
    attempt
}

fn fill_failure(attempt: &mut Attempt, f: &FailureEvent, rootdir: &Path) {
    attempt.phase = phase(&f.phase);
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

fn phase(name: &str) -> Option<Phase> {
    match name {
        "setup" => Some(Phase::Setup),
        "call" => Some(Phase::Call),
        "teardown" => Some(Phase::Teardown),
        _ => None,
    }
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
    jiff::Timestamp::from_microsecond((secs * 1e6) as i64).ok().map(|t| t.to_string())
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
