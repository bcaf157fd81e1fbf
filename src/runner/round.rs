//! One round: start (or release) its pytest, follow the collector's events while it runs, and fold
//! each event into the run as it is read; and the wait before a round, which a signal cuts short.

use super::*;

impl Run<'_> {
    pub(super) fn run_round(
        &mut self,
        number: u32,
        kind: RoundKind,
        selection: Option<&[u32]>,
        serial: bool,
    ) -> Result<(RoundEnd, Round), RunError> {
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
        let warm_pid = match select_path.as_deref() {
            Some(select) if number > 1 => self.start_warm(number, &events_path, select),
            _ => None,
        };
        let (child, note) = match (warm_pid, held) {
            (Some(pid), held) => {
                if let Some(held) = held {
                    discard_held(held);
                }
                let note = format!(
                    "forked from the first round's pytest, as it was after collection: no interpreter start-up, imports, conftest or collection (pid {pid})"
                );
                (Proc::Warm(pid), Some(note))
            }
            (None, Some(mut held)) => {
                // The release. A pytest that died while held cannot read it; its exit is reported below
                // like any other pytest's.
                let _ = std::io::Write::write_all(&mut held.release, &[HOLD_RELEASE]);
                let note = format!(
                    "pytest was started during round {} and held until this round's tests were chosen",
                    held.during
                );
                (Proc::Child(held.child), Some(note))
            }
            (None, None) => {
                let mut cmd = self.round_command(number, &events_path, select_path.as_deref());
                let mut warm_ends = None;
                if number == 1 {
                    cmd.env("SMART_RERUN_VERDICT", &verdict_path);
                    if self.ledger.settings.fork {
                        if let Some((warm, ends)) = super::warm::attach(&mut cmd) {
                            self.warm = Some(warm);
                            warm_ends = Some(ends);
                        }
                    }
                }
                let child = cmd.spawn().map_err(|source| {
                    let program = program.to_string_lossy().into_owned();
                    if source.kind() == std::io::ErrorKind::NotFound {
                        RunError::CommandNotFound { program }
                    } else {
                        RunError::Spawn { program, source }
                    }
                })?;
                if let (Some(warm), Some(ends)) = (&self.warm, warm_ends) {
                    warm.started(ends);
                }
                (Proc::Child(child), None)
            }
        };
        let pid = match &child {
            Proc::Child(child) => {
                self.interrupts.set_child(Some(child.id()));
                child.id()
            }
            Proc::Warm(pid) => {
                self.interrupts.set_member_child(*pid);
                *pid
            }
        };
        let events_error = |source| RunError::Events {
            path: events_path.display().to_string(),
            source,
        };
        // A thread waits for pytest, so its exit ends the loop below at once rather than at the next poll.
        let (exited_tx, exited) = std::sync::mpsc::channel();
        // The first round's group holds the warm snapshot: what its tests left running is stopped when
        // the snapshot has gone, at the run's end.
        let keep_group = number == 1 && self.warm.is_some();
        if keep_group {
            self.first_group = Some(pid);
        }
        let waiter = match (child, &self.warm) {
            (Proc::Child(mut child), _) => std::thread::spawn(move || {
                let status = child.wait();
                if !keep_group {
                    stop_group(pid);
                }
                let _ = exited_tx.send(());
                status
            }),
            (Proc::Warm(_), Some(warm)) => warm.waiter(number, exited_tx),
            (Proc::Warm(_), None) => unreachable!("a warm round without its snapshot"),
        };
        // Follow the events while pytest runs: the first round waits for a verdict on its settings.
        self.ledger.apply(Entry::RoundStarted { number });
        let mut progress = RoundProgress::new(number, verdict_path);
        let mut tail = events::Tail::new(events_path.clone());
        let mut worker_tail = events::Tail::new(events::worker_path(&events_path));
        let mut pause = Duration::from_millis(1);
        loop {
            let fresh = self.follow(&mut progress, &mut tail, &mut worker_tail);
            let fresh = fresh.map_err(events_error)?;
            if let Some(e) = progress.verdict_error.take() {
                return Err(RunError::TempDir(e));
            }
            self.answer_render_queries(&mut progress)
                .map_err(RunError::TempDir)?;
            if self.ledger.retry_due() && self.held.is_none() {
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
        let signalled = self.interrupts.received().is_some();
        Ok((progress.end(status, signalled), round))
    }

    /// Reads the events appended to the round's file, and to the first xdist worker's while no
    /// collection has come (under xdist the controller never collects). Returns whether any was new.
    pub(super) fn follow(
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
    pub(super) fn absorb_event(&mut self, progress: &mut RoundProgress, event: Event) {
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
                    self.ledger.apply(Entry::Listed(&collected));
                }
            }
            Event::CollectError { nodeid, traceback } => progress
                .collect_errors
                .push((nodeid, traceback.unwrap_or_default())),
            Event::Start { nodeid } => self.ledger.apply(Entry::Started { nodeid: &nodeid }),
            Event::Test(event) => {
                progress.any_test = true;
                self.ledger.apply(Entry::Finished(event));
            }
            Event::Interrupted => progress.interrupted = true,
            Event::SessionFinish(finish) => progress.finish = Some(finish),
            Event::Done { exitstatus } => progress.done = exitstatus,
            Event::RenderQuery { worker, nodeids } => progress
                .render_queries
                .push(super::render::RenderQuery::new(worker, nodeids)),
            Event::Rendered {
                nodeid,
                phase,
                traceback,
            } => self.ledger.apply(Entry::Rendered {
                nodeid: &nodeid,
                phase,
                traceback,
            }),
        }
    }

    /// The first round, once the session and the collection are in: the verdict on the settings (the
    /// collector waits for it before running any test), and the tests, made from the collection.
    pub(super) fn settle_collection(&mut self, progress: &mut RoundProgress) {
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
                self.ledger.apply(Entry::Collected { collected, rootdir });
            }
        }
    }
}

/// A round's process: a pytest smart-rerun started, or one the warm snapshot forked (by its pid).
enum Proc {
    Child(std::process::Child),
    Warm(u32),
}

/// Sends away a held pytest that a warm round made unneeded, without waiting for it: it leaves at the end
/// of file on its pipe, and a thread reaps it.
fn discard_held(held: Held) {
    let Held {
        mut child, release, ..
    } = held;
    drop(release);
    std::thread::spawn(move || {
        let _ = child.wait();
    });
}

/// Waits `wait` before a round, ticking the progress sink at its interval; `false` when a signal cut the wait
/// short.
pub(super) fn wait_before_round(
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
