//! Ctrl-C and cancellation. The main type is [`Interrupts`]: it records SIGINT/SIGTERM/SIGHUP, passes each
//! on to the running pytest, and wakes a round that is waiting out a delay.
//!
//! CI runners cancel a job by signalling only the entry process (SIGINT, then SIGTERM 7.5 s later), so the
//! signal must be forwarded. A Ctrl-C typed in a terminal, though, already reached pytest through the
//! foreground process group: forwarding it again would interrupt pytest's own clean-up, so it is not.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

#[derive(Debug, Default)]
struct State {
    signal: Option<i32>,
    count: u32,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    child: AtomicU32,
    /// The child leads a process group of its own, which signals go to as a whole.
    child_leads: std::sync::atomic::AtomicBool,
}

/// Shared interrupt state; cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Interrupts {
    shared: Arc<Shared>,
}

/// SIGINT's number, used when a platform reports no number (Windows' Ctrl-C).
#[cfg(any(windows, test))]
pub(crate) const SIGINT: i32 = 2;

impl Interrupts {
    /// State that no signal will ever set (tests).
    #[cfg(test)]
    pub(crate) fn none() -> Self {
        Interrupts::default()
    }

    /// Installs the process's handlers. Call once, from the binary.
    pub(crate) fn install() -> std::io::Result<Self> {
        let this = Interrupts::default();
        platform::install(this.clone())?;
        Ok(this)
    }

    /// Records the pytest process to forward signals to (`None` between rounds).
    pub(crate) fn set_child(&self, pid: Option<u32>) {
        self.shared
            .child_leads
            .store(own_process_group(), Ordering::SeqCst);
        self.shared.child.store(pid.unwrap_or(0), Ordering::SeqCst);
    }

    /// Records a pytest process that is a member of another's process group (a warm round, forked from
    /// the snapshot in the first round's group): signals go to it alone.
    pub(crate) fn set_member_child(&self, pid: u32) {
        self.shared.child_leads.store(false, Ordering::SeqCst);
        self.shared.child.store(pid, Ordering::SeqCst);
    }

    /// Where a signal for the running pytest goes, as kill(2) takes it: its pid, or its group (negative).
    pub(crate) fn child_target(&self) -> Option<i64> {
        let pid = i64::from(self.child()?);
        Some(if self.shared.child_leads.load(Ordering::SeqCst) {
            -pid
        } else {
            pid
        })
    }

    /// The first signal received, if any.
    pub(crate) fn received(&self) -> Option<i32> {
        self.shared.state.lock().map(|s| s.signal).unwrap_or(None)
    }

    /// Waits until `deadline`; returns early, `false`, when a signal arrives.
    pub(crate) fn sleep_until(&self, deadline: Instant) -> bool {
        let mut state = match self.shared.state.lock() {
            Ok(s) => s,
            Err(_) => return false,
        };
        loop {
            if state.signal.is_some() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            state = match self.shared.wake.wait_timeout(state, deadline - now) {
                Ok((s, _)) => s,
                Err(_) => return false,
            };
        }
    }

    fn record(&self, signal: i32) -> u32 {
        let count = {
            let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            state.signal.get_or_insert(signal);
            state.count += 1;
            state.count
        };
        self.shared.wake.notify_all();
        count
    }

    #[cfg(test)]
    pub(crate) fn simulate(&self, signal: i32) {
        self.record(signal);
    }

    /// The pytest process signals are forwarded to, if one is running.
    pub(crate) fn child(&self) -> Option<u32> {
        match self.shared.child.load(Ordering::SeqCst) {
            0 => None,
            pid => Some(pid),
        }
    }
}

/// Whether each pytest smart-rerun starts leads a process group of its own (Unix, decided once per run):
/// everywhere but in a terminal's foreground, where pytest must stay in the terminal's foreground group
/// for a Ctrl-C to reach it straight from the terminal. In CI, where only smart-rerun is signalled, a group
/// of its own lets smart-rerun pass signals on to pytest's workers too and stop what a test left running.
pub(crate) fn own_process_group() -> bool {
    static OWN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OWN.get_or_init(|| cfg!(unix) && !in_terminal_foreground())
}

#[cfg(unix)]
fn in_terminal_foreground() -> bool {
    platform::terminal_delivered()
}

#[cfg(not(unix))]
fn in_terminal_foreground() -> bool {
    false
}

#[cfg(unix)]
mod platform {
    use super::Interrupts;
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;

    pub(super) fn install(interrupts: Interrupts) -> std::io::Result<()> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        std::thread::Builder::new()
            .name("smart-rerun-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let count = interrupts.record(signal);
                    let Some(target) = interrupts.child_target() else {
                        continue;
                    };
                    if signal == SIGINT
                        && count == 1
                        && !super::own_process_group()
                        && terminal_delivered()
                    {
                        continue;
                    }
                    // A pytest that leads its own group gets the signal with its workers and the
                    // processes its tests started, as a terminal's Ctrl-C would reach them.
                    let Ok(target) = libc::pid_t::try_from(target) else {
                        continue;
                    };
                    // SAFETY: kill(2) with a pid we spawned and a valid signal number has no memory effects.
                    unsafe {
                        libc::kill(target, signal);
                    }
                }
            })?;
        Ok(())
    }

    /// Whether a SIGINT came from a terminal's Ctrl-C, which the kernel sends to the whole foreground
    /// process group, pytest included.
    pub(super) fn terminal_delivered() -> bool {
        // SAFETY: plain queries of the process group and of the terminal on fd 0.
        unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() }
    }
}

#[cfg(windows)]
mod platform {
    use super::{Interrupts, SIGINT};

    /// Windows delivers Ctrl-C and Ctrl-Break to every process of the console, pytest included; record it
    /// so the run stops after the round.
    pub fn install(interrupts: Interrupts) -> std::io::Result<()> {
        ctrlc::set_handler(move || {
            interrupts.record(SIGINT);
        })
        .map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_signal_cuts_a_wait_short() {
        let interrupts = Interrupts::none();
        let other = interrupts.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            other.simulate(15);
        });
        let started = Instant::now();
        assert!(!interrupts.sleep_until(Instant::now() + Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(interrupts.received(), Some(15));
        t.join().unwrap();
    }

    #[test]
    fn without_a_signal_the_wait_runs_out() {
        assert!(Interrupts::none().sleep_until(Instant::now() + Duration::from_millis(5)));
    }
}
