//! Warm rounds: rerun rounds forked from a snapshot of the first round's pytest, taken right after
//! collection (before any test or fixture ran), instead of a fresh pytest that pays the interpreter, the
//! imports, the conftest files and the collection again. The main type is [`Warm`], the binary's end of
//! the two pipes the first round's pytest is given; the Python side is `warm.py`, shipped beside the
//! collector.
//!
//! The first round's pytest forks at the start of its test loop; the child, the snapshot, waits on the
//! control pipe. A rerun round is one line on that pipe (its number, events file and selection file): the
//! snapshot forks a round process, which runs the round's tests and reports through the round's events
//! file exactly as a fresh pytest would; the snapshot tells its pid and, once it exits, its exit status
//! on the status pipe. The snapshot leaves at the control pipe's end of file: when the run is over, or
//! when smart-rerun dies, even by SIGKILL (the kernel closes the writing end); a round process dies
//! with the snapshot (PR_SET_PDEATHSIG).
//!
//! Where forking is unsafe (threads alive after collection, pytest-xdist, not Linux) the first round says
//! why on the status pipe and does not fork; rerun rounds then start a fresh pytest, as they do when the
//! snapshot is gone, and the run says why in one warning.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The Python side, written beside the collector for each run.
pub(super) const WARM_SOURCE: &str = include_str!("warm.py");
/// Its module name (the collector imports it).
pub(super) const WARM_MODULE: &str = "_smart_rerun_warm";

/// How long a round waits for the snapshot to fork its process before starting a fresh pytest.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a rerun round waits to learn whether the first round forked at all.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the status pipe has said so far.
// Only Linux forks: elsewhere `attach` makes none of these.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
#[derive(Debug, Default)]
struct State {
    snapshot: Option<u32>,
    fallback: Option<String>,
    started: HashMap<u32, u32>,
    exits: HashMap<u32, ExitStatus>,
    /// End of file: the snapshot is gone (or the first round never forked and has exited).
    closed: bool,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

/// smart-rerun's end of a warm snapshot: the control pipe it writes rounds to, and what the snapshot
/// reported.
// Only Linux forks: elsewhere `attach` makes none of these.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
#[derive(Debug)]
pub(super) struct Warm {
    control: Option<std::io::PipeWriter>,
    shared: Shared,
    /// Why the last round could not start warm, said once per run.
    pub(super) told: bool,
}

/// The first round's ends of the two pipes, kept open until its pytest has started.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) struct ChildEnds {
    _control: std::io::PipeReader,
    status: Option<std::io::PipeWriter>,
    status_reader: std::io::PipeReader,
}

/// Gives the first round's command the two pipes, inherited as descriptors named in `SMART_RERUN_WARM`.
/// `None` where they cannot be made, and off Linux.
#[cfg(target_os = "linux")]
pub(super) fn attach(cmd: &mut Command) -> Option<(Warm, ChildEnds)> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    // All four ends are close-on-exec: only the first round's pytest gets its two, by the pre_exec below.
    let (control_reader, control) = std::io::pipe().ok()?;
    let (status_reader, status) = std::io::pipe().ok()?;
    let (cfd, sfd) = (control_reader.as_raw_fd(), status.as_raw_fd());
    cmd.env("SMART_RERUN_WARM", format!("{cfd},{sfd}"));
    // SAFETY: between fork and exec the closure only calls fcntl, which is async-signal-safe, on two
    // descriptors this process owns; it lets them survive the exec.
    unsafe {
        cmd.pre_exec(move || {
            for fd in [cfd, sfd] {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let warm = Warm {
        control: Some(control),
        shared: Arc::new((Mutex::new(State::default()), Condvar::new())),
        told: false,
    };
    let ends = ChildEnds {
        _control: control_reader,
        status: Some(status),
        status_reader,
    };
    Some((warm, ends))
}

#[cfg(not(target_os = "linux"))]
pub(super) fn attach(_cmd: &mut Command) -> Option<(Warm, ChildEnds)> {
    None
}

impl Warm {
    /// Once the first round's pytest has started: closes the ends only it needs, and follows the status
    /// pipe in a thread (its end of file is the snapshot's end).
    pub(super) fn started(&self, mut ends: ChildEnds) {
        drop(ends.status.take());
        let shared = Arc::clone(&self.shared);
        std::thread::spawn(move || {
            let reader = std::io::BufReader::new(ends.status_reader);
            for line in reader.lines() {
                let Ok(line) = line else { break };
                let (lock, wake) = &*shared;
                let Ok(mut state) = lock.lock() else { return };
                state.absorb(&line);
                wake.notify_all();
            }
            let (lock, wake) = &*shared;
            if let Ok(mut state) = lock.lock() {
                state.closed = true;
            }
            wake.notify_all();
        });
    }

    /// Whether the snapshot is there to fork a round from, as far as is known now; else why not.
    pub(super) fn ready(&self) -> Result<u32, String> {
        let state = self.shared.0.lock().map_err(|_| "poisoned".to_string())?;
        match (state.snapshot, &state.fallback) {
            (_, Some(why)) => Err(why.clone()),
            (Some(_), _) if state.closed || self.control.is_none() => {
                Err("the first round's warm snapshot has exited".into())
            }
            (Some(pid), None) => Ok(pid),
            (None, None) if state.closed => {
                Err("the first round's pytest stopped before its tests started".into())
            }
            (None, None) => Err("the first round's pytest has not reached its tests".into()),
        }
    }

    /// Whether rounds may yet start warm: the first round has not said it cannot fork, and has not
    /// stopped without forking. A rerun round is then not prestarted.
    pub(super) fn may_fork(&self) -> bool {
        self.control.is_some()
            && self
                .shared
                .0
                .lock()
                .is_ok_and(|s| s.fallback.is_none() && !s.closed)
    }

    /// Waits, briefly, until the first round has said whether it forked: it says so before its first
    /// test, so by a rerun round the line is written, though the thread reading it may not have run yet.
    fn settle(&self) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let (lock, wake) = &*self.shared;
        let Ok(mut state) = lock.lock() else { return };
        while state.snapshot.is_none() && state.fallback.is_none() && !state.closed {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            match wake.wait_timeout(state, deadline - now) {
                Ok((s, _)) => state = s,
                Err(_) => return,
            }
        }
    }

    /// Asks the snapshot for round `round`'s process; its pid once it is forked, else why not (the round
    /// then starts a fresh pytest).
    pub(super) fn start_round(
        &mut self,
        round: u32,
        events: &Path,
        select: &Path,
    ) -> Result<u32, String> {
        self.settle();
        self.ready()?;
        let line = serde_json::json!({ "round": round, "events": events, "select": select });
        let sent = self
            .control
            .as_mut()
            .map(|c| c.write_all(format!("{line}\n").as_bytes()));
        if !matches!(sent, Some(Ok(()))) {
            self.control = None;
            return Err("the first round's warm snapshot has exited".into());
        }
        let deadline = Instant::now() + START_TIMEOUT;
        let (lock, wake) = &*self.shared;
        let mut state = lock.lock().map_err(|_| "poisoned".to_string())?;
        loop {
            if let Some(&pid) = state.started.get(&round) {
                return Ok(pid);
            }
            if state.closed {
                return Err("the first round's warm snapshot exited".into());
            }
            let now = Instant::now();
            if now >= deadline {
                drop(state);
                // A snapshot that does not answer is of no use to later rounds either.
                self.control = None;
                return Err("the warm snapshot did not fork the round in time".into());
            }
            state = wake
                .wait_timeout(state, deadline - now)
                .map_err(|_| "poisoned".to_string())?
                .0;
        }
    }

    /// A thread that returns round `round`'s exit status, as the snapshot reports it. A snapshot gone
    /// before it reported one took the round process with it (PR_SET_PDEATHSIG, SIGKILL).
    pub(super) fn waiter(
        &self,
        round: u32,
        exited: std::sync::mpsc::Sender<()>,
    ) -> super::ExitWaiter {
        let shared = Arc::clone(&self.shared);
        std::thread::spawn(move || {
            let (lock, wake) = &*shared;
            let status = {
                let mut state = lock.lock().map_err(|_| std::io::Error::other("poisoned"))?;
                loop {
                    if let Some(status) = state.exits.remove(&round) {
                        break status;
                    }
                    if state.closed {
                        break killed_status();
                    }
                    state = wake
                        .wait(state)
                        .map_err(|_| std::io::Error::other("poisoned"))?;
                }
            };
            let _ = exited.send(());
            Ok(status)
        })
    }

    /// The end of the run: the snapshot reads the end of file and leaves.
    pub(super) fn close(&mut self) {
        self.control = None;
    }
}

impl super::Run<'_> {
    /// Round `number`'s process, forked from the warm snapshot; `None` when there is none to fork from
    /// (the round starts a fresh pytest, and the first time the run says why).
    pub(super) fn start_warm(&mut self, number: u32, events: &Path, select: &Path) -> Option<u32> {
        let warm = self.warm.as_mut()?;
        if !self.ledger.settings.fork {
            // `smart_rerun_fork = false` in the ini file, read after the first round had started.
            warm.close();
            self.warm = None;
            return None;
        }
        match warm.start_round(number, events, select) {
            Ok(pid) => Some(pid),
            Err(why) => {
                let first = !std::mem::replace(&mut warm.told, true);
                if first {
                    self.ledger.warnings.push(format!(
                        "round {number} started a fresh pytest instead of a warm fork: {why}"
                    ));
                }
                None
            }
        }
    }
}

impl State {
    fn absorb(&mut self, line: &str) {
        let mut words = line.splitn(2, ' ');
        let (word, rest) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let numbers = || -> Option<(u32, i32)> {
            let mut it = rest.split(' ');
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        };
        match word {
            "snapshot" => self.snapshot = rest.trim().parse().ok(),
            "fallback" => self.fallback = Some(rest.trim().to_owned()),
            "started" => {
                if let Some((round, pid)) = numbers() {
                    self.started.insert(round, pid as u32);
                }
            }
            "exit" => {
                if let Some((round, code)) = numbers() {
                    self.exits
                        .insert(round, super::process::exit_status_from_code(code));
                }
            }
            "signal" => {
                if let Some((round, signal)) = numbers() {
                    self.exits.insert(round, signal_status(signal));
                }
            }
            _ => {}
        }
    }
}

fn signal_status(signal: i32) -> ExitStatus {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        ExitStatus::from_raw(signal & 0x7f)
    }
    #[cfg(not(unix))]
    {
        let _ = signal;
        super::process::exit_status_from_code(1)
    }
}

fn killed_status() -> ExitStatus {
    signal_status(9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_into_the_state() {
        let mut state = State::default();
        for line in [
            "snapshot 41",
            "started 2 42",
            "exit 2 1",
            "started 3 43",
            "signal 3 9",
            "nonsense",
            "exit x y",
        ] {
            state.absorb(line);
        }
        assert_eq!(state.snapshot, Some(41));
        assert_eq!(state.started.get(&2), Some(&42));
        assert_eq!(state.exits.get(&2).and_then(|s| s.code()), Some(1));
        assert_eq!(
            state
                .exits
                .get(&3)
                .and_then(|&s| super::super::exit_signal(s)),
            Some(9)
        );
        assert_eq!(state.exits.len(), 2);
        state.absorb("fallback 1 threads besides the main one were alive after collection (t)");
        assert_eq!(
            state.fallback.as_deref(),
            Some("1 threads besides the main one were alive after collection (t)")
        );
    }
}
