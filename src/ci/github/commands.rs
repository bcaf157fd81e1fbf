//! Workflow commands: escaping, and the guard that keeps the tested code from issuing any. The main type
//! is [`GuardedProgress`].
//!
//! The runner reads workflow commands from every line a step prints, on stdout and stderr: `::cmd
//! k=v::data` at the start of a line, and the legacy `##[cmd k=v;]data` *anywhere* in a line. pytest's
//! output is inherited, so a test (on a fork PR, an attacker's) could print `::set-output`, `::add-mask`
//! or `##[error]`, and so could a test name or message that smart-rerun prints itself.
//!
//! The guard is the runner's own mechanism: `::stop-commands::TOKEN` turns every command off until a line
//! `::TOKEN::`. The token is random per stop, so output printed before it cannot guess it. Commands are
//! stopped from before the first round until smart-rerun has printed its summary; they are resumed only
//! around smart-rerun's own `::group::` lines between rounds and for the annotations at the end, whose
//! untrusted text is escaped by [`escape_data`] and [`escape_property`].

use crate::model::{PlannedTest, ProgressEvent, ProgressSink, RoundKind, RoundPlan};
use std::io::Write;
use std::time::Duration;

/// Escapes the data of a workflow command (after the second `::`), exactly as the runner unescapes it.
pub(crate) fn escape_data(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a property value (`file=`, `title=`): the data rules plus `:` and `,`, which end a property.
pub(crate) fn escape_property(text: &str) -> String {
    // The data escapes write no `:` or `,`, so these two apply to the original text only.
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// `bytes` random bytes from the operating system, as lowercase hex. There is no weaker fallback: a
/// token someone could predict protects nothing, so callers refuse to go on without one.
pub(crate) fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    random_hex_from(getrandom::fill, bytes)
}

/// A source of random bytes: the operating system's, or a failing one in tests.
pub(crate) type Fill = fn(&mut [u8]) -> Result<(), getrandom::Error>;

fn random_hex_from(fill: Fill, bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    fill(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Workflow commands cannot be stopped: the operating system gave no random bytes for the token.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot stop GitHub workflow commands while pytest runs: the operating system gave no random bytes \
     for the stop token ({0}); pytest's output could then issue commands, so smart-rerun does not start it \
     (github-stop-commands: false runs it anyway)"
)]
pub(crate) struct NoStopToken(pub getrandom::Error);

/// Untrusted text for a line smart-rerun prints while commands run: a leading `::` and any `##[` are
/// broken by an invisible word joiner, so the line cannot be read as a command.
pub(crate) fn defuse(text: &str) -> String {
    let mut out = text.replace("##[", "##\u{2060}[");
    if out.trim_start().starts_with("::") {
        out.insert(0, '\u{2060}');
    }
    out
}

/// Stops and resumes workflow commands on one output stream.
pub(crate) struct CommandGuard<W: Write> {
    out: W,
    /// Outside GitHub Actions the guard does nothing.
    enabled: bool,
    /// The token of the stop in force.
    token: Option<String>,
    /// A pause before resuming, so lines pytest wrote to the other stream just before it exited are read
    /// by the runner before the resume token (it reads stdout and stderr on separate threads).
    settle: Duration,
    fill: Fill,
}

impl<W: Write> CommandGuard<W> {
    pub(crate) fn new(out: W) -> Self {
        CommandGuard {
            out,
            enabled: true,
            token: None,
            settle: Duration::from_millis(30),
            fill: getrandom::fill,
        }
    }

    /// A guard that never prints (not in GitHub Actions).
    pub(crate) fn disabled(out: W) -> Self {
        CommandGuard {
            enabled: false,
            ..CommandGuard::new(out)
        }
    }

    /// No pause before resuming (tests).
    #[cfg(test)]
    pub(crate) fn without_settle(mut self) -> Self {
        self.settle = Duration::ZERO;
        self
    }

    #[cfg(test)]
    pub(crate) fn is_stopped(&self) -> bool {
        self.token.is_some()
    }

    /// A random source other than the operating system's (tests).
    #[cfg(test)]
    fn with_fill(mut self, fill: Fill) -> Self {
        self.fill = fill;
        self
    }

    /// Stops commands with a fresh token (no-op when already stopped). Without random bytes for a token,
    /// commands are not stopped and the error says so.
    pub(crate) fn stop(&mut self) -> Result<(), NoStopToken> {
        if !self.enabled || self.token.is_some() {
            return Ok(());
        }
        let token = self.fresh_token()?;
        self.stop_with(token);
        Ok(())
    }

    fn fresh_token(&self) -> Result<String, NoStopToken> {
        Ok(format!(
            "smart-rerun-{}",
            random_hex_from(self.fill, 16).map_err(NoStopToken)?
        ))
    }

    fn stop_with(&mut self, token: String) {
        let _ = writeln!(self.out, "::stop-commands::{token}");
        let _ = self.out.flush();
        self.token = Some(token);
    }

    /// Resumes commands (no-op when not stopped).
    pub(crate) fn resume(&mut self) {
        if let Some(token) = self.token.take() {
            if !self.settle.is_zero() {
                std::thread::sleep(self.settle);
            }
            let _ = writeln!(self.out, "::{token}::");
            let _ = self.out.flush();
        }
    }

    #[cfg(test)]
    pub(crate) fn into_inner(self) -> W {
        self.out
    }
}

/// A progress sink that keeps workflow commands stopped while pytest runs and while the inner sink
/// prints test names, and lets the inner sink's own `::group::` lines through.
pub(crate) struct GuardedProgress<P: ProgressSink, W: Write> {
    inner: P,
    guard: CommandGuard<W>,
    /// Keep commands stopped during pytest's rounds (`false`: pytest's output may issue commands; test
    /// names smart-rerun prints are still defused).
    stop_pytest: bool,
}

impl<P: ProgressSink, W: Write> GuardedProgress<P, W> {
    /// Stops commands now, before the first round, unless `stop_pytest` is off. Fails closed: when they
    /// cannot be stopped, pytest must not be started.
    pub(crate) fn new(
        inner: P,
        mut guard: CommandGuard<W>,
        stop_pytest: bool,
    ) -> Result<Self, NoStopToken> {
        if stop_pytest {
            guard.stop()?;
        }
        Ok(GuardedProgress {
            inner,
            guard,
            stop_pytest,
        })
    }

    /// The inner sink and the guard, to keep commands stopped over the summary and resume them for the
    /// annotations.
    pub(crate) fn into_parts(self) -> (P, CommandGuard<W>) {
        (self.inner, self.guard)
    }

    /// Hands `event` to the inner sink with commands resumed, stopping them again after unless pytest's
    /// output may issue them.
    /// The token to stop them again with is drawn first: without one, commands stay stopped (the inner
    /// sink's `::group::` lines then show as plain text) rather than stay resumed for pytest.
    fn resumed(&mut self, event: ProgressEvent<'_>) {
        let next = if self.stop_pytest {
            match self.guard.fresh_token() {
                Ok(token) => Some(token),
                Err(_) => return self.inner.event(event),
            }
        } else {
            None
        };
        self.guard.resume();
        self.inner.event(event);
        if let Some(token) = next {
            self.guard.stop_with(token);
        }
    }
}

impl<P: ProgressSink, W: Write> ProgressSink for GuardedProgress<P, W> {
    fn event(&mut self, event: ProgressEvent<'_>) {
        match event {
            // Round 1's progress prints nothing; commands stay stopped.
            ProgressEvent::RoundStarting(plan)
                if plan.kind != RoundKind::First && self.guard.enabled =>
            {
                // The inner sink lists the tests, then may open a `::group::`, which must be read as a
                // command: resume, with every test name defused.
                let names: Vec<String> = plan.tests.iter().map(|t| defuse(t.nodeid)).collect();
                let defused = RoundPlan {
                    tests: plan
                        .tests
                        .iter()
                        .zip(&names)
                        .map(|(t, name)| PlannedTest { nodeid: name, ..*t })
                        .collect(),
                    ..plan.clone()
                };
                self.resumed(ProgressEvent::RoundStarting(&defused));
            }
            // The inner sink may close its `::group::`.
            ProgressEvent::RoundFinished(round)
                if round.kind != RoundKind::First && self.guard.enabled =>
            {
                self.resumed(event);
            }
            _ => self.inner.event(event),
        }
    }

    fn tick_interval(&self) -> Option<Duration> {
        self.inner.tick_interval()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Parses a line the way the runner's `ActionCommand.TryParseV2` and `TryParse` do, returning the
    /// command name, properties and data.
    /// A parsed command: name, properties, data.
    pub(crate) type Parsed = (String, Vec<(String, String)>, String);

    pub(crate) fn runner_parse(line: &str) -> Option<Parsed> {
        let unescape_data = |s: &str| {
            s.replace("%0D", "\r")
                .replace("%0A", "\n")
                .replace("%25", "%")
        };
        let unescape_prop = |s: &str| {
            s.replace("%0D", "\r")
                .replace("%0A", "\n")
                .replace("%3A", ":")
                .replace("%2C", ",")
                .replace("%25", "%")
        };
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("::") {
            let end = rest.find("::")?;
            let info = &rest[..end];
            let (name, props) = info.split_once(' ').unwrap_or((info, ""));
            let props = props
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_owned(), unescape_prop(v)))
                .collect();
            return Some((name.to_owned(), props, unescape_data(&rest[end + 2..])));
        }
        let at = line.find("##[")?;
        let rest = &line[at + 3..];
        let end = rest.find(']')?;
        let info = &rest[..end];
        let name = info.split(' ').next().unwrap_or("");
        Some((name.to_owned(), Vec::new(), rest[end + 1..].to_owned()))
    }

    #[test]
    fn escaping_round_trips_through_the_runners_unescaping() {
        for text in [
            "plain",
            "100% done\nnext line\r\n",
            "%0A literal, %25 literal: %3A",
            "a::b,c:d",
            "%%0A%",
        ] {
            let line = format!(
                "::error file={},title={}::{}",
                escape_property(text),
                escape_property(text),
                escape_data(text)
            );
            assert!(!line.contains('\n') && !line.contains('\r'));
            let (name, props, data) = runner_parse(&line).expect("parses");
            assert_eq!(name, "error");
            assert_eq!(data, text);
            assert_eq!(props.len(), 2, "{line}");
            assert!(props.iter().all(|(_, v)| v == text), "{props:?}");
        }
    }

    #[test]
    fn defused_names_are_not_commands() {
        for hostile in [
            "::set-output name=exit-code::0",
            "  ::add-mask::x",
            "tests/t.py::test[##[set-output name=x;]y]",
        ] {
            let line = format!("  {}", defuse(hostile));
            let parsed = runner_parse(&line);
            assert!(
                parsed
                    .as_ref()
                    .is_none_or(|(name, _, _)| name.starts_with('\u{2060}') || name.is_empty()),
                "{line:?} -> {parsed:?}"
            );
            assert!(!line.contains("##["));
        }
        assert_eq!(defuse("tests/a.py::test_b"), "tests/a.py::test_b");
    }

    #[test]
    fn tokens_are_random_and_guard_resumes_only_its_own_stop() {
        assert_ne!(random_hex(16).unwrap(), random_hex(16).unwrap());
        assert_eq!(random_hex(16).unwrap().len(), 32);
        let mut g = CommandGuard::new(Vec::new()).without_settle();
        g.resume();
        g.stop().unwrap();
        g.stop().unwrap();
        assert!(g.is_stopped());
        g.resume();
        g.stop().unwrap();
        g.resume();
        let text = String::from_utf8(g.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        let t1 = lines[0].strip_prefix("::stop-commands::").unwrap();
        assert_eq!(lines[1], format!("::{t1}::"));
        let t2 = lines[2].strip_prefix("::stop-commands::").unwrap();
        assert_ne!(t1, t2, "a fresh token for every stop");
    }

    /// Shares one buffer between the guard and a fake inner sink, as stdout is shared.
    #[derive(Clone, Default)]
    struct Shared(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Prints what the terminal's progress prints in Actions: the test list, then a group.
    struct Printer(Shared);
    impl ProgressSink for Printer {
        fn event(&mut self, event: ProgressEvent<'_>) {
            match event {
                ProgressEvent::RoundStarting(plan) if plan.kind != RoundKind::First => {
                    for t in &plan.tests {
                        let _ = writeln!(self.0, "  {}", t.nodeid);
                    }
                    let _ = writeln!(self.0, "::group::round {}", plan.number);
                }
                ProgressEvent::RoundFinished(round) if round.kind != RoundKind::First => {
                    let _ = writeln!(self.0, "::endgroup::");
                }
                _ => {}
            }
        }
    }

    fn planned(nodeid: &str, attempt: u32, max_attempts: u32) -> PlannedTest<'_> {
        PlannedTest {
            nodeid,
            attempt,
            max_attempts,
        }
    }

    fn round(number: u32, kind: RoundKind) -> crate::model::Round {
        serde_json::from_value(serde_json::json!({
            "number": number, "kind": kind, "started_at": "", "duration_seconds": 0.0,
            "selected": 1, "exit_status": 0,
        }))
        .unwrap()
    }

    /// Replays the lines through a model of the runner: which commands take effect.
    fn effective(text: &str) -> Vec<String> {
        let mut stopped: Option<String> = None;
        let mut done = Vec::new();
        for line in text.lines() {
            let Some((name, _, data)) = runner_parse(line) else {
                continue;
            };
            match &stopped {
                Some(token) if name == *token => stopped = None,
                Some(_) => {}
                None if name == "stop-commands" => stopped = Some(data),
                None => done.push(line.to_owned()),
            }
        }
        done
    }

    #[test]
    fn groups_get_through_and_pytest_output_and_test_names_do_not() {
        let out = Shared::default();
        let guard = CommandGuard::new(out.clone()).without_settle();
        let mut o = GuardedProgress::new(Printer(out.clone()), guard, true).unwrap();
        let hostile = "::set-output name=exit-code::0";
        let plan = |number, kind| RoundPlan {
            number,
            kind,
            tests: vec![
                planned(hostile, 2, 3),
                planned("t.py::x[##[add-mask]y]", 2, 3),
            ],
            serial: true,
        };
        o.event(ProgressEvent::RoundStarting(&plan(1, RoundKind::First)));
        let _ = writeln!(out.clone(), "{hostile} from pytest, round 1");
        o.event(ProgressEvent::RoundFinished(&round(1, RoundKind::First)));
        o.event(ProgressEvent::RoundStarting(&plan(2, RoundKind::Rerun)));
        let _ = writeln!(out.clone(), "::error::from pytest, round 2");
        let _ = writeln!(out.clone(), "text ##[warning]legacy from pytest");
        o.event(ProgressEvent::RoundFinished(&round(2, RoundKind::Rerun)));
        let (_, mut guard) = o.into_parts();
        let _ = writeln!(out.clone(), "FLAKY {hostile} (the summary)");
        guard.resume();
        let _ = writeln!(out.clone(), "::error title=ours::annotation");
        let text = String::from_utf8(out.0.borrow().clone()).unwrap();
        assert_eq!(
            effective(&text),
            [
                "::group::round 2",
                "::endgroup::",
                "::error title=ours::annotation"
            ],
            "{text}"
        );
    }

    #[test]
    fn with_stop_commands_off_pytest_output_gets_through_but_names_stay_defused() {
        let out = Shared::default();
        let guard = CommandGuard::new(out.clone()).without_settle();
        let mut o = GuardedProgress::new(Printer(out.clone()), guard, false).unwrap();
        o.event(ProgressEvent::RoundStarting(&RoundPlan {
            number: 2,
            kind: RoundKind::Rerun,
            tests: vec![planned("::add-mask::x", 2, 2)],
            serial: true,
        }));
        let _ = writeln!(out.clone(), "::notice::from a pytest plugin");
        o.event(ProgressEvent::RoundFinished(&round(2, RoundKind::Rerun)));
        let text = String::from_utf8(out.0.borrow().clone()).unwrap();
        assert_eq!(
            effective(&text),
            [
                "::group::round 2",
                "::notice::from a pytest plugin",
                "::endgroup::"
            ],
            "{text}"
        );
    }

    fn no_randomness(_: &mut [u8]) -> Result<(), getrandom::Error> {
        Err(getrandom::Error::UNSUPPORTED)
    }

    #[test]
    fn without_random_bytes_pytest_is_not_started_with_commands_live() {
        let guard = CommandGuard::new(Vec::new()).with_fill(no_randomness);
        let refused = GuardedProgress::new(Printer(Shared::default()), guard, true);
        let Err(e) = refused else {
            panic!("commands would run unstopped")
        };
        assert!(e.to_string().contains("github-stop-commands: false"), "{e}");
        // Off by choice: nothing to stop, nothing refused.
        let guard = CommandGuard::new(Vec::new()).with_fill(no_randomness);
        assert!(GuardedProgress::new(Printer(Shared::default()), guard, false).is_ok());
    }

    #[test]
    fn without_a_token_for_the_next_stop_commands_stay_stopped() {
        let out = Shared::default();
        let guard = CommandGuard::new(out.clone()).without_settle();
        let mut o = GuardedProgress::new(Printer(out.clone()), guard, true).unwrap();
        // The operating system stops giving random bytes after the first stop.
        o.guard.fill = no_randomness;
        o.event(ProgressEvent::RoundStarting(&RoundPlan {
            number: 2,
            kind: RoundKind::Rerun,
            tests: vec![planned("t.py::x", 2, 2)],
            serial: true,
        }));
        let _ = writeln!(out.clone(), "::error::from pytest, round 2");
        o.event(ProgressEvent::RoundFinished(&round(2, RoundKind::Rerun)));
        assert!(o.guard.is_stopped());
        let text = String::from_utf8(out.0.borrow().clone()).unwrap();
        assert_eq!(effective(&text), Vec::<String>::new(), "{text}");
    }
}
