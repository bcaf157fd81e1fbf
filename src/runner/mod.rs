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

mod advice;
mod budget;
pub(crate) mod command;
pub(crate) mod events;
mod exit;
mod ledger;
mod process;
mod render;
mod round;
mod rundir;
mod warm;

use budget::*;
use ledger::{Entry, Ledger, ReportInput, RoundEnd};
use process::*;
use round::*;

use crate::classify::advisor::{Advisor, AttemptSummary, FailureQuery};
use crate::config::{self, ConfigErrors, RawLayer, Settings};
use crate::model::{
    Action, Classification, ClassificationSource, ExceptionInfo, ExitCode, Outcome, PlannedTest,
    PolicyInfo, Prior, ProgressEvent, ProgressSink, Round, RoundKind, RoundPlan, RunReport,
};
use crate::policy::plan_next_round;
use crate::report::counted;
use crate::signals::Interrupts;
use crate::timestamp::now_rfc3339;
use events::{Collected, Event, SessionFinish, SessionStart};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant, SystemTime};

/// The collector plugin's source, written to a private directory for each run.
pub(crate) const COLLECTOR_SOURCE: &str = include_str!("collector.py");
/// The module name PYTEST_PLUGINS loads.
pub(crate) const COLLECTOR_MODULE: &str = "_smart_rerun_collector";
/// The collector's failure rendering (`render.py`), installed beside it; the collector imports it.
pub(crate) const RENDER_SOURCE: &str = include_str!("render.py");
pub(crate) const RENDER_MODULE: &str = "_smart_rerun_render";

/// What to run and how.
#[derive(Debug, Clone)]
pub(crate) struct RunConfig {
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
    pub(crate) fn new(
        command: Vec<OsString>,
        cwd: PathBuf,
        settings: Settings,
        layer: RawLayer,
    ) -> Self {
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
pub(crate) enum RunError {
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
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            RunError::EmptyCommand | RunError::CommandNotFound { .. } => ExitCode::UsageError,
            _ => ExitCode::InternalError,
        }
    }
}

struct Run<'a> {
    config: &'a RunConfig,
    interrupts: &'a Interrupts,
    progress: &'a mut dyn ProgressSink,
    temp: tempfile::TempDir,
    /// Each test's attempts and next step.
    ledger: Ledger,
    rounds: Vec<Round>,
    /// Whether the first round's verdict on the ini values and markers has been given.
    verdict_given: bool,
    /// Invalid settings found in the first round: the run stops with exit 4.
    config_errors: Option<ConfigErrors>,
    /// The AI classifier, when configured, and what it said per fingerprint.
    advisor: Option<&'a mut dyn Advisor>,
    advice: HashMap<String, Classification>,
    /// Every classification the advisor gave, for the AI report.
    pub(crate) advice_trail: Vec<AdviceRecord>,
    /// When the advisor's budget for the whole run runs out.
    advice_deadline: Option<Instant>,
    /// The history, handed to the ledger once the settings in force are known.
    prior: Option<Box<dyn Prior>>,
    /// The next round's pytest, started early and held until its tests are chosen (`prestart`).
    held: Option<Held>,
    /// pytest processes that reported their last line and were still shutting down when their round
    /// ended, by round number; reaped when the run ends.
    exiting: Vec<(u32, ExitWaiter)>,
    /// The first round's warm snapshot, which rerun rounds are forked from (Linux, `fork`).
    warm: Option<warm::Warm>,
    /// The first round's pytest, whose process group (holding the snapshot) is stopped at the run's end.
    first_group: Option<u32>,
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
pub(crate) struct AdviceRecord {
    pub nodeid: String,
    pub attempt: u32,
    pub fingerprint: String,
    pub classification: Classification,
    /// What the runner did with it: `stopped`, `delay set to Ns`, `retry as planned`, `final`.
    pub applied: String,
}

/// What a round's pytest has said so far besides its tests' starts and results (which go to the
/// ledger as they are read, and are dropped: a round of 100,000 tests is never held in memory).
struct RoundProgress {
    number: u32,
    hello: bool,
    session: Option<SessionStart>,
    /// The first round's collection until the tests are made from it, which waits for the session.
    collected: Option<Collected>,
    /// How many items the round's collection listed, once it arrived (under xdist each worker collects;
    /// the first collection is the suite's).
    collected_items: Option<usize>,
    collect_errors: Vec<(String, String)>,
    /// Any test result, of a collected test or not.
    any_test: bool,
    interrupted: bool,
    finish: Option<SessionFinish>,
    /// The exit status pytest reported once it had printed its last line (the `done` event).
    done: Option<i32>,
    /// The collector's questions about its briefly drawn failures, not answered yet.
    render_queries: Vec<render::RenderQuery>,
    /// The first round's verdict file, and a failure to write it (raised once the poll is over).
    verdict_path: PathBuf,
    verdict_error: Option<std::io::Error>,
}

impl RoundProgress {
    fn new(number: u32, verdict_path: PathBuf) -> Self {
        RoundProgress {
            number,
            hello: false,
            session: None,
            collected: None,
            collected_items: None,
            collect_errors: Vec::new(),
            any_test: false,
            interrupted: false,
            done: None,
            render_queries: Vec::new(),
            finish: None,
            verdict_path,
            verdict_error: None,
        }
    }

    /// What the ledger needs from the round once it has ended. `signalled`: smart-rerun received a signal.
    fn end(self, status: ExitStatus, signalled: bool) -> RoundEnd {
        RoundEnd {
            status,
            at: epoch_now(),
            hello: self.hello,
            session: self.session,
            collected: self.collected_items.is_some(),
            collect_errors: self.collect_errors,
            any_test: self.any_test,
            interrupted: self.interrupted || signalled,
            finish: self.finish,
        }
    }
}

/// Runs the suite and its reruns, telling `progress` as it goes and consulting the AI [`Advisor`], if
/// any, after each round, and the history (`prior`) when the settings ask for it (`new_test_repeats`,
/// `history_policy`). Errors are for runs that could not start; everything else, including a pytest
/// that crashed, ends in a report. Also returns the settings in force (ini values included) and the
/// advisor's trail.
pub(crate) fn run<'a>(
    config: &'a RunConfig,
    interrupts: &'a Interrupts,
    progress: &'a mut dyn ProgressSink,
    advisor: Option<&'a mut dyn Advisor>,
    prior: Option<Box<dyn Prior>>,
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
        ledger: Ledger::new(config.settings.clone()),
        rounds: Vec::new(),
        verdict_given: false,
        config_errors: None,
        advisor,
        advice: HashMap::new(),
        advice_trail: Vec::new(),
        advice_deadline: None,
        prior,
        held: None,
        exiting: Vec::new(),
        warm: None,
        first_group: None,
    };
    // Declared after the run, so dropped before it: a stray pytest is stopped before its files go.
    let _stray = StopStray(interrupts);
    let looped = run.rounds_loop();
    run.cancel_held();
    run.reap_exiting();
    if let Some(warm) = &mut run.warm {
        warm.close();
    }
    if let Some(pid) = run.first_group {
        stop_group(pid);
    }
    looped?;
    let Run {
        config,
        ledger,
        rounds,
        advice_trail,
        temp,
        ..
    } = run;
    let settings = ledger.settings.clone();
    let input = ReportInput {
        command: config
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        cwd: config.cwd.display().to_string(),
        started_at,
        finished_at: now_rfc3339(),
        duration_seconds: started.elapsed().as_secs_f64(),
        rounds,
        quarantine: exit::load_quarantine(&settings, &config.cwd),
        today: chrono::Local::now().date_naive(),
    };
    let mut report = ledger.into_report(input);
    if config.keep_temp {
        let kept = temp.keep();
        rundir::disown(&kept);
        report
            .warnings
            .push(format!("kept the collector's events in {}", kept.display()));
    }
    Ok((report, settings, advice_trail))
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
        let (end, round) = self.run_round(1, RoundKind::First, None, false)?;
        self.ledger.apply(Entry::RoundEnded {
            end: Box::new(end),
            selection: None,
        });
        if self.ledger.early_exit.is_none() {
            self.consult_advisor();
        }
        self.finish_round(round);
        if let Some(errors) = &self.config_errors {
            self.ledger
                .apply(Entry::InvalidSettings(errors.to_string()));
        }
        if self.ledger.early_exit.is_some() {
            return Ok(());
        }
        self.ledger.apply_failure_budget();
        let new = self.ledger.new_tests();
        if !new.is_empty() {
            let times = self.ledger.settings.new_test_repeats;
            self.ledger.apply(Entry::Repeat { tests: &new, times });
        }
        let mut number = 1;
        loop {
            if self.ledger.interrupted || self.interrupts.received().is_some() {
                self.ledger.apply(Entry::Interrupted);
                break;
            }
            let ready = self.ledger.queued();
            let Some(mut plan) =
                plan_next_round(&ready, epoch_now(), self.config.coalesce.as_secs_f64())
            else {
                break;
            };
            self.ledger.apply_rerun_budget(&mut plan.tests);
            if plan.tests.is_empty() {
                continue;
            }
            number += 1;
            let tests = &self.ledger.tests;
            let kind = if plan.tests.iter().all(|&i| tests[i].runs == 0) {
                RoundKind::Continuation
            } else {
                RoundKind::Rerun
            };
            let estimate: f64 = plan.tests.iter().map(|&i| tests[i].last_duration).sum();
            // Repeats run as copies of one item in one pytest: never split over xdist workers.
            let serial = estimate < self.config.serial_below.as_secs_f64()
                || plan.tests.iter().any(|&i| self.ledger.repeats(i) > 0);
            let selected: Vec<u32> = plan.tests.iter().map(|&i| i as u32).collect();
            let round_plan = RoundPlan {
                number,
                kind,
                tests: selected
                    .iter()
                    .map(|&i| {
                        let t = &tests[i as usize];
                        PlannedTest {
                            nodeid: &t.nodeid,
                            attempt: t.runs + 1,
                            max_attempts: self.ledger.max_attempts(i as usize),
                        }
                    })
                    .collect(),
                serial,
            };
            let wait = plan.start_at - epoch_now();
            if wait > 0.0 {
                let wait = Duration::from_secs_f64(wait);
                if !wait_before_round(self.interrupts, self.progress, wait, &round_plan) {
                    self.ledger.apply(Entry::Interrupted);
                    break;
                }
            }
            self.progress
                .event(ProgressEvent::RoundStarting(&round_plan));
            let (end, round) = self.run_round(number, kind, Some(&selected), serial)?;
            self.ledger.apply(Entry::RoundEnded {
                end: Box::new(end),
                selection: Some(&selected),
            });
            self.consult_advisor();
            self.finish_round(round);
        }
        if self.ledger.interrupted {
            self.ledger.apply(Entry::Interrupted);
        }
        Ok(())
    }

    fn finish_round(&mut self, round: Round) {
        self.progress.event(ProgressEvent::RoundFinished(&round));
        self.rounds.push(round);
    }
}

/// The byte that releases a held pytest (the collector's `RELEASE`).
const HOLD_RELEASE: u8 = b'r';

/// What `smart-rerun config` shows: the settings in force for this command, with the ini values pytest
/// itself finds (its discovery rules, `-c`, `--rootdir`), without collecting or running any test.
pub(crate) fn probe_settings(
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
pub(crate) fn relative_to(path: &str, root: &Path) -> String {
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

/// "killed by signal 11 (SIGSEGV)" or "exit status 3".
pub(crate) fn describe_status(status: ExitStatus) -> String {
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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod wait_tests;
