//! The run's ledger: each test's attempts as they are recorded, what a round's end settles (tests that
//! never ran, a pytest that crashed mid-test), and the final report with its exit code.

use super::exit::{apply_quarantine, decide_exit};
use super::*;
use crate::policy::{Step, StopReason, next_step};

impl Run<'_> {
    /// Makes the tests' states from the first round's collection, moving the node ids into them.
    pub(super) fn absorb_collection(&mut self, collected: Collected, rootdir: PathBuf) {
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
    pub(super) fn find(&self, nodeid: &str) -> Option<usize> {
        self.index
            .find(self.hasher.hash_one(nodeid), |&i| {
                &*self.tests[i as usize].nodeid == nodeid
            })
            .map(|&i| i as usize)
    }

    /// Records a test's result as soon as it is read.
    pub(super) fn absorb_test(&mut self, progress: &mut RoundProgress, event: TestEvent) {
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

    /// Settles what only the first round can tell: whether pytest ran at all, the session, the collection.
    pub(super) fn absorb_first(&mut self, progress: &mut RoundProgress, status: ExitStatus) {
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

    pub(super) fn collection_errors_from(&mut self, progress: &RoundProgress) {
        for (nodeid, traceback) in &progress.collect_errors {
            self.collection_errors.push(CollectionError {
                nodeid: nodeid.clone(),
                traceback: traceback.clone(),
            });
        }
    }

    /// Settles a round once pytest has exited (its results are recorded as they are read) and decides
    /// the next step of the tests that did not run. Returns whether any test ran or was charged an attempt.
    pub(super) fn absorb(
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

    pub(super) fn record(&mut self, i: usize, mut attempt: Attempt, stop: f64) {
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
        let deterministic =
            self.settings.early_stop && crate::classify::confirmed_deterministic(&notes.attempts);
        match next_step(&policy, &t.nodeid, t.runs, &mro, deterministic, stop) {
            Step::Retry { at } => {
                notes.stopped_because = None;
                t.status = Status::Queued { ready_at: at };
            }
            Step::Stop(reason) => {
                if let StopReason::Deterministic {
                    attempts_left,
                    waits,
                } = reason
                {
                    self.attempts_saved += attempts_left as usize;
                    self.seconds_saved += t.last_duration * f64::from(attempts_left) + waits;
                }
                notes.stopped_because = Some(reason.to_string());
            }
        }
    }

    pub(super) fn into_report(self, started_at: String, elapsed: Duration) -> RunReport {
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
        let failing_flakes: std::collections::HashSet<String> = tests
            .iter()
            .filter(|t| final_outcome(t) == Outcome::Flaky)
            .filter(|t| match self.markers.get(&*t.nodeid) {
                Some(m) => m.apply(&self.settings.policy).fail_on_flaky,
                None => self.settings.policy.fail_on_flaky,
            })
            .map(|t| t.nodeid.to_string())
            .collect();
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
                history: None,
                quarantine: None,
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
        // The quarantine file marks the tests it protects; their outcomes stay, their failures do not
        // decide the exit code.
        let quarantine_error =
            apply_quarantine(&self.settings, &config.cwd, &mut report, &mut warnings);
        report.summarize();
        report.summary.attempts_saved = self.attempts_saved;
        report.summary.seconds_saved = self.seconds_saved;
        let (mut exit, mut reason) = decide_exit(
            &report,
            self.early_exit,
            self.session_problem,
            self.collection_aborted,
        );
        let failing_flakes = report
            .tests
            .iter()
            .filter(|t| failing_flakes.contains(&t.nodeid) && !t.is_quarantined())
            .count();
        if exit == ExitCode::Ok && failing_flakes > 0 {
            exit = ExitCode::TestsFailed;
            reason = format!(
                "{failing_flakes} flaky test{} and flaky results are set to fail the run (fail_on_flaky)",
                if failing_flakes == 1 { "" } else { "s" }
            );
        }
        if let Some(e) = quarantine_error {
            (exit, reason) = (ExitCode::UsageError, e);
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
            super::rundir::disown(&kept);
            report
                .warnings
                .push(format!("kept the collector's events in {}", kept.display()));
        }
        report
    }
}

pub(super) fn final_outcome(t: &TestState) -> Outcome {
    let Some(last) = t.last else {
        return Outcome::NotRun;
    };
    let failed_before = t.attempts().iter().any(|a| a.outcome.is_failure());
    match last {
        Outcome::Passed if failed_before => Outcome::Flaky,
        other => other,
    }
}

pub(super) fn attempt_from_event(event: &TestEvent, round: u32, rootdir: &Path) -> Attempt {
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

pub(super) fn fill_failure(attempt: &mut Attempt, f: &FailureEvent, rootdir: &Path) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(number: u32, outcome: Outcome) -> Attempt {
        serde_json::from_value(serde_json::json!({
            "number": number, "round": number, "outcome": outcome, "duration_seconds": 0.1,
        }))
        .unwrap()
    }

    fn test_state(attempts: &[Outcome]) -> TestState {
        let mut t = TestState {
            nodeid: "t.py::test_a".into(),
            file: None,
            line: None,
            runs: attempts.len() as u32,
            last: attempts.last().copied(),
            last_duration: 0.1,
            last_stop: 0.0,
            status: Status::Done,
            notes: None,
        };
        if attempts.iter().any(|o| o.is_failure()) {
            t.notes.get_or_insert_default().attempts = attempts
                .iter()
                .enumerate()
                .map(|(i, &o)| attempt(i as u32 + 1, o))
                .collect();
        }
        t
    }

    #[test]
    fn a_test_s_final_outcome_follows_from_its_attempts() {
        use Outcome::*;
        let cases: &[(&[Outcome], Outcome)] = &[
            (&[Passed], Passed),
            (&[Failed, Passed], Flaky),
            (&[Error, Failed, Passed], Flaky),
            (&[Failed, Failed], Failed),
            (&[Failed, Error], Error),
            (&[Skipped], Skipped),
            (&[Xfailed], Xfailed),
            // Collected, never run: pytest died first, or the run was interrupted.
            (&[], NotRun),
        ];
        for (attempts, expected) in cases {
            assert_eq!(
                final_outcome(&test_state(attempts)),
                *expected,
                "{attempts:?}"
            );
        }
    }

    fn report(outcomes: &[Outcome], collection_errors: usize, interrupted: bool) -> RunReport {
        let mut r = RunReport {
            schema_version: SCHEMA_VERSION,
            tool: Tool::default(),
            run: RunInfo {
                interrupted,
                ..RunInfo::default()
            },
            summary: Summary::default(),
            tests: outcomes
                .iter()
                .map(|&outcome| {
                    serde_json::from_value(serde_json::json!({
                        "nodeid": "t.py::x", "outcome": outcome, "file": null, "line": null,
                        "duration_seconds": 0.0,
                    }))
                    .unwrap()
                })
                .collect(),
            collection_errors: (0..collection_errors)
                .map(|_| CollectionError {
                    nodeid: "t.py".into(),
                    traceback: String::new(),
                })
                .collect(),
            warnings: Vec::new(),
            ci: None,
        };
        r.summarize();
        r
    }

    #[test]
    fn the_exit_code_and_its_reason_follow_pytest() {
        use Outcome::*;
        let usage = Some((ExitCode::UsageError, "bad settings".to_owned()));
        let crashed = Some((ExitCode::InternalError, "pytest crashed".to_owned()));
        let cases = [
            // (tests, collection errors, interrupted, early exit, session problem, collection aborted)
            (
                report(&[Passed, Passed], 0, false),
                None,
                None,
                false,
                (ExitCode::Ok, "all tests passed"),
            ),
            (
                report(&[Passed, Flaky], 0, false),
                None,
                None,
                false,
                (ExitCode::Ok, "all tests passed; 1 flaky"),
            ),
            (
                report(&[Failed, Error, Error, Flaky], 1, false),
                None,
                None,
                false,
                (
                    ExitCode::TestsFailed,
                    "1 failed, 2 errors, 1 collection error after reruns",
                ),
            ),
            (
                report(&[], 0, false),
                None,
                None,
                false,
                (ExitCode::NoTestsCollected, "no tests were collected"),
            ),
            (
                report(&[Passed, NotRun], 0, true),
                None,
                None,
                false,
                (ExitCode::Interrupted, "the run was interrupted"),
            ),
            (
                report(&[], 1, false),
                None,
                None,
                true,
                (
                    ExitCode::Interrupted,
                    "pytest stopped: errors during collection",
                ),
            ),
            // An early exit (invalid settings) outranks everything the tests did.
            (
                report(&[Failed], 0, true),
                usage.clone(),
                None,
                false,
                (ExitCode::UsageError, "bad settings"),
            ),
            // A session problem counts only when no test failed.
            (
                report(&[Passed], 0, false),
                None,
                crashed.clone(),
                false,
                (ExitCode::InternalError, "pytest crashed"),
            ),
            (
                report(&[Failed], 0, false),
                None,
                crashed,
                false,
                (ExitCode::TestsFailed, "1 failed after reruns"),
            ),
        ];
        for (report, early, problem, aborted, (code, reason)) in cases {
            assert_eq!(
                decide_exit(&report, early, problem, aborted),
                (code, reason.to_owned()),
                "{:?}",
                report.summary
            );
        }
    }
}
