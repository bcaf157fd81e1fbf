//! The pytest processes: the command each round runs (the collector installed on PYTHONPATH and loaded
//! through PYTEST_PLUGINS), a rerun round's pytest started early and held until its tests are chosen
//! (`prestart`), and the reaping of processes still shutting down when the run ends.

use super::*;

impl Run<'_> {
    /// Where round `round`'s collector writes its events (a held pytest writes there before its release).
    pub(super) fn events_path(&self, round: u32) -> PathBuf {
        self.temp.path().join(format!("round-{round}.jsonl"))
    }

    pub(super) fn select_path(&self, round: u32) -> PathBuf {
        self.temp.path().join(format!("select-{round}.json"))
    }

    /// The command of round `number`: the user's, with the collector and this round's files in the
    /// environment.
    pub(super) fn round_command(
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
    pub(super) fn prestart(&mut self, round: u32, during: u32) {
        if !cfg!(unix)
            || !self.ledger.settings.prestart
            || (self.ledger.settings.fork && self.warm.as_ref().is_some_and(|w| w.may_fork()))
            || self.interrupts.received().is_some()
            || rerun_budget_spent(self.ledger.settings.max_reruns, self.ledger.reruns_started)
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
    pub(super) fn reap_exiting(&mut self) {
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
            self.ledger.warnings.push(format!(
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
    pub(super) fn cancel_held(&mut self) {
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
                Ok(Some(_)) => return stop_group(child.id()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                _ => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        stop_group(child.id());
    }

    pub(super) fn write_selection(
        &self,
        path: &Path,
        selected: &[u32],
        serial: bool,
    ) -> std::io::Result<()> {
        let mut files: Vec<&str> = selected
            .iter()
            .filter_map(|&i| {
                self.ledger.tests[i as usize]
                    .file
                    .map(|f| self.ledger.files_abs[f as usize].as_str())
            })
            .collect();
        files.sort_unstable();
        files.dedup();
        let nodeids: Vec<&str> = selected
            .iter()
            .map(|&i| &*self.ledger.tests[i as usize].nodeid)
            .collect();
        // A test new to the history runs this many times in the round (`new_test_repeats`).
        let repeat: serde_json::Map<String, serde_json::Value> = selected
            .iter()
            .map(|&i| i as usize)
            .filter(|&i| self.ledger.tests[i].runs == 1 && self.ledger.repeats(i) > 0)
            .map(|i| {
                let t = &self.ledger.tests[i];
                (t.nodeid.to_string(), self.ledger.repeats(i).into())
            })
            .collect();
        let body = serde_json::json!({
            "files": files, "nodeids": nodeids, "serial": serial, "repeat": repeat,
        });
        // Whole, then renamed into place: a pytest waiting for the file never reads half of it.
        crate::output::write_atomic(path, |f| {
            std::io::Write::write_all(f, &serde_json::to_vec(&body)?)
        })
    }
}

/// The status of a process that exited with `code`, for a pytest that reported its exit status before
/// its interpreter finished shutting down.
pub(super) fn exit_status_from_code(code: i32) -> ExitStatus {
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

/// A pipe for a held pytest: its reading end goes to the child `cmd` starts, as an inherited descriptor
/// named in `SMART_RERUN_HOLD`; smart-rerun keeps the writing end. `None` where it cannot be made (and on
/// Windows, which never prestarts).
#[cfg(unix)]
pub(super) fn hold_pipe(cmd: &mut Command) -> Option<(std::io::PipeReader, std::io::PipeWriter)> {
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
pub(super) fn hold_pipe(_cmd: &mut Command) -> Option<(std::io::PipeReader, std::io::PipeWriter)> {
    None
}

/// The run's private directory (see [`super::rundir`]), holding the collector plugin.
pub(super) fn install_collector() -> Result<tempfile::TempDir, RunError> {
    let temp = super::rundir::create().map_err(RunError::TempDir)?;
    let plugin_dir = temp.path().join("plugin");
    std::fs::create_dir_all(&plugin_dir).map_err(RunError::TempDir)?;
    std::fs::write(
        plugin_dir.join(format!("{COLLECTOR_MODULE}.py")),
        COLLECTOR_SOURCE,
    )
    .map_err(RunError::TempDir)?;
    std::fs::write(
        plugin_dir.join(format!("{RENDER_MODULE}.py")),
        RENDER_SOURCE,
    )
    .map_err(RunError::TempDir)?;
    std::fs::write(
        plugin_dir.join(format!("{}.py", warm::WARM_MODULE)),
        warm::WARM_SOURCE,
    )
    .map_err(RunError::TempDir)?;
    std::fs::write(
        plugin_dir.join("_smart_rerun_keys.py"),
        crate::config::keys::python_ini_keys(),
    )
    .map_err(RunError::TempDir)?;
    Ok(temp)
}

/// The user's command with the collector loaded through the environment.
pub(super) fn pytest_command(config: &RunConfig, temp: &Path, events_path: &Path) -> Command {
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
    contain(&mut cmd);
    // smart-rerun's own secrets (the AI, GitHub and GitLab tokens, and a history URL that may hold a password) stay with smart-rerun: the code under
    // test, which on a fork PR is anyone's, never sees them. (Our process keeps them: an ini value may
    // still say `{{ env:SMART_RERUN_AI_TOKEN }}`.)
    for key in crate::config::KEYS.iter().filter(|k| k.is_sensitive()) {
        cmd.env_remove(key.env);
    }
    cmd
}

/// Ties the pytest `cmd` starts to smart-rerun's lifetime (Unix). On Linux it gets SIGKILL when
/// smart-rerun dies, however it dies (SIGKILL included), so no pytest outlives its run. And unless
/// smart-rerun runs in a terminal's foreground (where a Ctrl-C must reach pytest straight from the
/// terminal), pytest leads a process group of its own: signals are passed on to the whole group, and what
/// is left of the group (pytest-xdist workers, processes a test started and left running) is stopped when
/// pytest exits; see [`stop_group`].
#[cfg(unix)]
fn contain(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    if crate::signals::own_process_group() {
        cmd.process_group(0);
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: between fork and exec the closure only calls prctl and getppid, both async-signal-safe.
        // The parent-death signal is tied to the thread that forks: every pytest is started by the run's
        // own thread, which lives as long as the run.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                // smart-rerun died before the signal was armed: nothing would ever send it.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
}

#[cfg(not(unix))]
fn contain(_cmd: &mut Command) {}

/// Stops what is left of the process group pytest `pid` led, once pytest itself has exited and been
/// waited for (so its group can hold only processes it left behind). Nothing happens where pytest shares
/// smart-rerun's group.
#[cfg(unix)]
pub(super) fn stop_group(pid: u32) {
    if !crate::signals::own_process_group() {
        return;
    }
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: killpg with a group this run created; ESRCH (nothing left) is the common answer.
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
    }
}

#[cfg(not(unix))]
pub(super) fn stop_group(_pid: u32) {}

pub(super) fn prepend_path(dir: &Path, existing: Option<OsString>) -> OsString {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(existing) = existing.filter(|e| !e.is_empty()) {
        paths.extend(std::env::split_paths(&existing));
    }
    std::env::join_paths(paths).unwrap_or_else(|_| dir.as_os_str().to_owned())
}

pub(super) fn append_plugin(existing: Option<OsString>) -> OsString {
    match existing
        .map(|e| e.to_string_lossy().trim().to_owned())
        .filter(|e| !e.is_empty())
    {
        Some(e) if e.split(',').any(|p| p.trim() == COLLECTOR_MODULE) => e.into(),
        Some(e) => format!("{e},{COLLECTOR_MODULE}").into(),
        None => COLLECTOR_MODULE.into(),
    }
}

pub(super) fn exit_signal(status: ExitStatus) -> Option<i32> {
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

/// Held for a run's length: a run that ends while a round's pytest still runs (an error reading its
/// events, a panic) stops that pytest, and its group, rather than leave them running.
pub(super) struct StopStray<'a>(pub(super) &'a Interrupts);

impl Drop for StopStray<'_> {
    fn drop(&mut self) {
        let Some(target) = self.0.child_target() else {
            return;
        };
        self.0.set_child(None);
        #[cfg(unix)]
        if let Ok(target) = libc::pid_t::try_from(target) {
            // SAFETY: kill(2) of the pytest this run started (or its group); no memory effects.
            unsafe {
                libc::kill(target, libc::SIGKILL);
            }
        }
    }
}
