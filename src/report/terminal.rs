//! The terminal: progress lines between rounds and the colourised end-of-run summary. The main types are
//! [`TerminalProgress`] (a [`ProgressSink`] for the runner's events) and [`render_summary`].
//!
//! Output goes through `anstream`, which drops colour when stdout is not a terminal, when `NO_COLOR` is set,
//! or with `--color never`. Test names and messages come from the code under test: a tab is shown as spaces
//! and every other control character made visible, so they cannot move the cursor, retitle the window or
//! forge colour.

use super::{counted, truncate};
use crate::model::{
    ExitCode, Outcome, ProgressEvent, ProgressSink, RoundKind, RoundPlan, RunReport,
};
use anstyle::{AnsiColor, Style};
use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

const BOLD: Style = Style::new().bold();
const RED: Style = AnsiColor::Red.on_default().bold();
const YELLOW: Style = AnsiColor::Yellow.on_default().bold();
const GREEN: Style = AnsiColor::Green.on_default().bold();
const DIM: Style = Style::new().dimmed();
const CYAN: Style = AnsiColor::Cyan.on_default();

/// How many failed or flaky tests the summary lists before saying how many more there are.
const LIST_LIMIT: usize = 50;

/// How often the live countdown is redrawn on a terminal.
pub const TICK: Duration = Duration::from_millis(200);

/// Prints progress between rounds to stdout, after pytest's own output.
///
/// On a terminal, the wait before a round is a live status line (the tests, attempt k of n, a countdown)
/// redrawn in place and cleared before the round's pytest output; elsewhere it is one plain line. In
/// GitHub Actions each later round's pytest output sits in a collapsible `::group::`.
pub struct TerminalProgress<W: Write> {
    out: W,
    /// Redraw a status line in place while waiting (stdout is a terminal).
    live: bool,
    /// Wrap later rounds in `::group::` / `::endgroup::` (GitHub Actions).
    github_groups: bool,
    /// Terminal width, for the live line; read again at each wait.
    width: fn() -> usize,
    /// The live status: the text after the countdown, and the width last drawn.
    status: Option<(String, usize)>,
    group_open: bool,
}

impl TerminalProgress<anstream::Stdout> {
    /// Progress on stdout: live on a terminal (unless `TERM=dumb`), grouped in GitHub Actions.
    pub fn stdout() -> Self {
        use std::io::IsTerminal;
        let live =
            std::io::stdout().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb");
        let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
        TerminalProgress::new(anstream::stdout())
            .live(live)
            .github_groups(github)
    }
}

impl<W: Write> TerminalProgress<W> {
    /// Plain lines, no live status, no groups.
    pub fn new(out: W) -> Self {
        TerminalProgress {
            out,
            live: false,
            github_groups: false,
            width: terminal_width,
            status: None,
            group_open: false,
        }
    }

    pub fn live(mut self, on: bool) -> Self {
        self.live = on;
        self
    }

    pub fn github_groups(mut self, on: bool) -> Self {
        self.github_groups = on;
        self
    }

    /// Where the live line's width comes from (the terminal's, by default).
    pub fn width_from(mut self, width: fn() -> usize) -> Self {
        self.width = width;
        self
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    fn line(&mut self, text: &str) {
        // A closed stdout (`| head`) must not stop the run; the report is still written.
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    /// Redraws the live status: carriage return, the line cut to the terminal's width, and blanks over
    /// whatever the previous line had beyond it. No cursor escapes, so it works with colour off.
    fn draw(&mut self, left: Duration) {
        let Some((rest, drawn)) = &self.status else {
            return;
        };
        let max = (self.width)().saturating_sub(1).max(20);
        let prefix = "smart-rerun ";
        let text = fit(
            &format!("{:.1}s {rest}", left.as_secs_f64()),
            max - prefix.len(),
        );
        let shown = prefix.len() + display_width(&text);
        let pad = " ".repeat(drawn.saturating_sub(shown));
        let _ = write!(self.out, "\r{CYAN}smart-rerun{CYAN:#} {text}{pad}");
        let _ = self.out.flush();
        if let Some((_, drawn)) = &mut self.status {
            *drawn = shown;
        }
    }
}

impl<W: Write> ProgressSink for TerminalProgress<W> {
    fn event(&mut self, event: ProgressEvent<'_>) {
        match event {
            ProgressEvent::Waiting { wait, plan } => self.waiting(wait, plan),
            ProgressEvent::WaitingTick { left } => self.draw(left),
            ProgressEvent::WaitingDone => self.waiting_done(),
            ProgressEvent::RoundStarting(plan) => self.round_starting(plan),
            ProgressEvent::RoundFinished(_) => self.round_finished(),
        }
    }

    fn tick_interval(&self) -> Option<Duration> {
        self.live.then_some(TICK)
    }
}

impl<W: Write> TerminalProgress<W> {
    fn round_starting(&mut self, plan: &RoundPlan<'_>) {
        if plan.kind == RoundKind::First {
            return;
        }
        let what = round_title(plan);
        let n = plan.tests.len();
        let mut text = format!(
            "{CYAN}smart-rerun{CYAN:#} {BOLD}round {}{BOLD:#}: {what}{}",
            plan.number,
            if plan.serial { "" } else { " (in parallel)" }
        );
        for t in plan.tests.iter().take(10) {
            let _ = write!(
                text,
                "\n  {} {DIM}attempt {} of {}{DIM:#}",
                sanitize_line(t.nodeid),
                t.attempt,
                t.max_attempts
            );
        }
        if n > 10 {
            let _ = write!(text, "\n  {DIM}... and {} more{DIM:#}", n - 10);
        }
        self.line(&text);
        if self.github_groups {
            // Our own text only: a test name could carry a workflow command.
            self.line(&format!(
                "::group::smart-rerun round {}: {what}",
                plan.number
            ));
            self.group_open = true;
        }
    }

    fn waiting(&mut self, wait: Duration, plan: &RoundPlan<'_>) {
        let n = plan.tests.len();
        if !self.live {
            self.line(&format!(
                "{CYAN}smart-rerun{CYAN:#} waiting {:.1}s before round {} ({n} test{})",
                wait.as_secs_f64(),
                plan.number,
                plural(n)
            ));
            return;
        }
        let mut rest = format!("until round {}:", plan.number);
        for (i, t) in plan.tests.iter().enumerate() {
            if i == 3 {
                let _ = write!(rest, " +{} more", n - 3);
                break;
            }
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                rest,
                "{sep} {} (attempt {} of {})",
                sanitize_line(t.nodeid),
                t.attempt,
                t.max_attempts
            );
        }
        self.status = Some((rest, 0));
        self.draw(wait);
    }

    fn waiting_done(&mut self) {
        if let Some((_, drawn)) = self.status.take() {
            let _ = write!(self.out, "\r{}\r", " ".repeat(drawn));
            let _ = self.out.flush();
        }
    }

    fn round_finished(&mut self) {
        if std::mem::take(&mut self.group_open) {
            self.line("::endgroup::");
        }
    }
}

/// What a later round does, counted: "rerunning 2 failed tests", "running 3 tests not yet run", or both
/// when a round reruns failures and also runs the tests that never ran (after `-x` or a crash). A test
/// on its first attempt has never run.
fn round_title(plan: &RoundPlan<'_>) -> String {
    let fresh = plan.tests.iter().filter(|t| t.attempt <= 1).count();
    let reruns = plan.tests.len() - fresh;
    match (reruns, fresh) {
        (0, fresh) => format!("running {} not yet run", counted(fresh, "test")),
        (reruns, 0) => format!("rerunning {}", counted(reruns, "failed test")),
        (reruns, fresh) => format!(
            "rerunning {} and running {fresh} not yet run",
            counted(reruns, "failed test")
        ),
    }
}

/// The terminal's width in columns: the tty's, else `COLUMNS`, else 80.
fn terminal_width() -> usize {
    #[cfg(unix)]
    {
        // SAFETY: TIOCGWINSZ fills a winsize; on failure it is left zeroed and ignored.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0
            && ws.ws_col > 0
        {
            return usize::from(ws.ws_col);
        }
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&c: &usize| c > 0)
        .unwrap_or(80)
}

/// Columns a string takes, counting East Asian wide characters and emoji as two, so the live line
/// never wraps.
fn display_width(text: &str) -> usize {
    text.chars()
        .map(|c| match c as u32 {
            0x1100..=0x115F
            | 0x2E80..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6
            | 0x1F300..=0x1F64F
            | 0x1F900..=0x1F9FF
            | 0x20000..=0x3FFFD => 2,
            _ => 1,
        })
        .sum()
}

/// Cuts `text` to at most `max` columns, ending with `…` when cut.
fn fit(text: &str, max: usize) -> String {
    if display_width(text) <= max {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = display_width(c.encode_utf8(&mut [0; 4]));
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// The end-of-run summary, with ANSI styles (strip them with `anstream` for plain output).
pub fn render_summary(report: &RunReport) -> String {
    let s = &report.summary;
    let mut out = String::new();
    let _ = writeln!(out, "{BOLD}{:=^72}{BOLD:#}", " smart-rerun summary ");

    let flaky: Vec<_> = report
        .tests
        .iter()
        .filter(|t| t.outcome == Outcome::Flaky)
        .collect();
    for t in flaky.iter().take(LIST_LIMIT) {
        let attempt = t.passed_on_attempt().unwrap_or(0);
        let max = report.run.policy.max_attempts;
        let why = t
            .first_failure()
            .and_then(|a| a.exception.as_ref())
            .map(|e| {
                format!(
                    " {DIM}(first failed: {}){DIM:#}",
                    one_line(e.short_type(), &e.message)
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{YELLOW}FLAKY{YELLOW:#}  {} passed on attempt {attempt} (of up to {max}){why}",
            sanitize_line(&t.nodeid)
        );
        out.push_str(&history_line(t));
    }
    if flaky.len() > LIST_LIMIT {
        let _ = writeln!(
            out,
            "{DIM}... and {} more flaky{DIM:#}",
            flaky.len() - LIST_LIMIT
        );
    }
    let failed: Vec<_> = report
        .tests
        .iter()
        .filter(|t| t.outcome.is_failure())
        .collect();
    for t in failed.iter().take(LIST_LIMIT) {
        let label = if t.outcome == Outcome::Error {
            "ERROR "
        } else {
            "FAILED"
        };
        let exc = t
            .last_failure()
            .and_then(|a| a.exception.as_ref())
            .map(|e| format!(" - {}", one_line(e.short_type(), &e.message)))
            .unwrap_or_default();
        let attempts = match t.attempts.len() {
            0 | 1 => String::new(),
            n => format!(" {DIM}({n} attempts){DIM:#}"),
        };
        let class = t
            .classification
            .as_ref()
            .map(|c| format!(" {DIM}[{}]{DIM:#}", c.category.as_str()))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{RED}{label}{RED:#} {}{exc}{attempts}{class}",
            sanitize_line(&t.nodeid)
        );
        out.push_str(&history_line(t));
    }
    if failed.len() > LIST_LIMIT {
        let _ = writeln!(
            out,
            "{DIM}... and {} more failed{DIM:#}",
            failed.len() - LIST_LIMIT
        );
    }
    for e in &report.collection_errors {
        let _ = writeln!(
            out,
            "{RED}ERROR{RED:#}  collecting {}",
            sanitize_line(&e.nodeid)
        );
    }
    for w in &report.warnings {
        let _ = writeln!(out, "{YELLOW}warning{YELLOW:#}: {}", sanitize_lines(w));
    }
    let code = report.run.exit_code;
    if matches!(code, ExitCode::InternalError | ExitCode::UsageError)
        && !report.warnings.contains(&report.run.exit_reason)
    {
        let _ = writeln!(
            out,
            "{RED}error{RED:#}: {}",
            sanitize_lines(&report.run.exit_reason)
        );
    }

    let mut counts: Vec<String> = Vec::new();
    let mut push = |n: usize, label: &str, style: Style| {
        if n > 0 {
            counts.push(format!("{style}{n} {label}{style:#}"));
        }
    };
    push(s.failed, "failed", RED);
    push(
        s.errors,
        if s.errors == 1 { "error" } else { "errors" },
        RED,
    );
    push(
        s.collection_errors,
        if s.collection_errors == 1 {
            "collection error"
        } else {
            "collection errors"
        },
        RED,
    );
    push(s.passed, "passed", GREEN);
    push(s.flaky, "flaky", YELLOW);
    push(s.skipped, "skipped", YELLOW);
    push(s.xfailed, "xfailed", YELLOW);
    push(s.xpassed, "xpassed", YELLOW);
    push(s.not_run, "not run", YELLOW);
    if counts.is_empty() {
        counts.push("no tests ran".into());
    }
    let reruns = if s.reruns > 0 {
        format!(
            ", {} rerun{} in {:.2}s",
            s.reruns,
            plural(s.reruns),
            s.rerun_seconds
        )
    } else {
        String::new()
    };
    let rounds = report.run.rounds.len();
    let _ = writeln!(
        out,
        "{} of {} test{}{reruns}, {rounds} round{} in {:.2}s",
        counts.join(", "),
        s.total,
        plural(s.total),
        plural(rounds),
        report.run.duration_seconds
    );
    out
}

/// What history says of a listed test, as an indented line under it (with `--history`), or nothing.
fn history_line(t: &crate::model::TestResult) -> String {
    t.history
        .as_ref()
        .map(|h| {
            format!(
                "       {DIM}history: {}{DIM:#}\n",
                sanitize_line(&h.describe())
            )
        })
        .unwrap_or_default()
}

/// Writes the summary to `out`, which decides on colour (an `anstream` stream).
pub fn print_summary(report: &RunReport, mut out: impl Write) -> std::io::Result<()> {
    out.write_all(render_summary(report).as_bytes())?;
    out.flush()
}

fn one_line(kind: &str, message: &str) -> String {
    let first = message
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let text = if first.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {first}")
    };
    sanitize_line(&truncate(&text, 200))
}

/// Like [`sanitize_line`], keeping line breaks (indented under the first line).
fn sanitize_lines(text: &str) -> String {
    text.lines()
        .map(sanitize_line)
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// Makes untrusted text safe for one terminal line: a tab becomes spaces (it moves the cursor only
/// forward, and a message is aligned with tabs as often as not), every other control character (ESC, CR,
/// BEL, newlines, ...) and the invisible direction and width marks become visible escapes.
pub fn sanitize_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\t' {
            // Fixed, not to the next tab stop: the text lands mid-line, after a label whose width
            // varies, so no stop would line up anyway; and the live line's width stays countable.
            out.push_str("    ");
        } else if c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PlannedTest, Round};

    fn planned(nodeid: &str, attempt: u32, max_attempts: u32) -> PlannedTest<'_> {
        PlannedTest {
            nodeid,
            attempt,
            max_attempts,
        }
    }

    #[test]
    fn escape_sequences_in_test_names_are_neutralised() {
        let hostile = "tests/t.py::test[\u{1b}]0;pwned\u{7}\u{1b}[2J\r\nFAKE]";
        let clean = sanitize_line(hostile);
        assert!(!clean.chars().any(|c| c.is_control()), "{clean:?}");
        assert!(clean.contains("\\u{1b}]0;pwned"));
    }

    #[test]
    fn a_tab_is_spaces_and_other_control_characters_are_escaped() {
        assert_eq!(
            one_line("AssertionError", "expected:\t1\u{1b}[31m"),
            "AssertionError: expected:    1\\u{1b}[31m"
        );
        assert_eq!(sanitize_line("a\tb\rc\u{7}"), "a    b\\u{d}c\\u{7}");
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let msg = "é".repeat(500);
        let line = one_line("ValueError", &msg);
        assert!(line.chars().count() <= 201);
        assert!(line.ends_with('…'));
    }

    use crate::sample;

    /// Removes the styles this module writes, so what is left over is text from elsewhere.
    fn without_our_styles(text: &str) -> String {
        let mut codes: Vec<String> = [BOLD, RED, YELLOW, GREEN, DIM, CYAN]
            .iter()
            .flat_map(|s| [s.render().to_string(), s.render_reset().to_string()])
            .collect();
        // Longest first: a bold colour starts with the code for bold.
        codes.sort_by_key(|c| std::cmp::Reverse(c.len()));
        let mut out = text.to_owned();
        for code in codes {
            out = out.replace(&code, "");
        }
        out
    }

    fn plan() -> RoundPlan<'static> {
        RoundPlan {
            number: 2,
            kind: RoundKind::Rerun,
            tests: vec![
                planned("tests/test_a.py::test_one", 2, 3),
                planned(
                    "tests/test_b.py::test_two[\u{1b}[2J\u{1b}]0;pwned\u{7}]",
                    2,
                    3,
                ),
                planned("tests/test_c.py::test_three", 3, 3),
                planned("tests/test_d.py::test_four", 2, 2),
            ],
            serial: true,
        }
    }

    fn fake(live: bool, github: bool) -> TerminalProgress<Vec<u8>> {
        TerminalProgress::new(Vec::new())
            .live(live)
            .github_groups(github)
            .width_from(|| 100)
    }

    fn countdown(obs: &mut dyn ProgressSink) {
        let plan = plan();
        obs.event(ProgressEvent::Waiting {
            wait: Duration::from_millis(2500),
            plan: &plan,
        });
        obs.event(ProgressEvent::WaitingTick {
            left: Duration::from_millis(2300),
        });
        obs.event(ProgressEvent::WaitingTick {
            left: Duration::from_millis(100),
        });
        obs.event(ProgressEvent::WaitingDone);
        obs.event(ProgressEvent::RoundStarting(&plan));
    }

    #[test]
    fn on_a_terminal_the_wait_is_a_countdown_redrawn_in_place_then_cleared() {
        let mut obs = fake(true, false);
        assert_eq!(obs.tick_interval(), Some(TICK));
        countdown(&mut obs);
        let out = without_our_styles(&String::from_utf8(obs.into_inner()).unwrap());
        assert!(!out.contains('\u{1b}'), "{out:?}");
        // Everything before the round's header is drawn on one line, frame over frame.
        let (live, header) = out.split_once("\rsmart-rerun round 2").unwrap();
        assert!(!live.contains('\n'), "{live:?}");
        assert!(
            header.starts_with(": rerunning 4 failed tests\n"),
            "{header:?}"
        );
        let frames: Vec<&str> = live.split('\r').filter(|f| !f.is_empty()).collect();
        insta::assert_debug_snapshot!("live_countdown_frames", frames);
        assert_eq!(frames.len(), 4, "three draws and the clearing blank");
        for f in &frames {
            assert!(display_width(f) <= 99, "wider than the terminal: {f:?}");
        }
        assert!(frames[0].starts_with(
            "smart-rerun 2.5s until round 2: tests/test_a.py::test_one (attempt 2 of 3)"
        ));
        assert!(
            frames[1].starts_with("smart-rerun 2.3s ")
                && frames[2].starts_with("smart-rerun 0.1s ")
        );
        let widest = frames[..3].iter().map(|f| display_width(f)).max().unwrap();
        assert!(
            frames[3].len() >= widest && frames[3].trim().is_empty(),
            "the status is blanked out"
        );
    }

    #[test]
    fn a_round_says_how_many_tests_it_reruns_and_how_many_it_runs_for_the_first_time() {
        let header = |tests: Vec<PlannedTest<'static>>, serial| {
            let mut obs = fake(false, false);
            obs.round_starting(&RoundPlan {
                number: 2,
                kind: if tests.iter().all(|t| t.attempt == 1) {
                    RoundKind::Continuation
                } else {
                    RoundKind::Rerun
                },
                tests,
                serial,
            });
            let out = without_our_styles(&String::from_utf8(obs.into_inner()).unwrap());
            out.lines().next().unwrap().to_owned()
        };
        assert_eq!(
            header(vec![planned("t.py::a", 2, 3)], true),
            "smart-rerun round 2: rerunning 1 failed test"
        );
        assert_eq!(
            header(
                vec![planned("t.py::a", 2, 3), planned("t.py::b", 3, 3)],
                false
            ),
            "smart-rerun round 2: rerunning 2 failed tests (in parallel)"
        );
        // After `-x` or a crash, a rerun round also runs the tests that never ran.
        assert_eq!(
            header(
                vec![
                    planned("t.py::a", 2, 2),
                    planned("t.py::b", 2, 2),
                    planned("t.py::c", 1, 2),
                    planned("t.py::d", 1, 2),
                    planned("t.py::e", 1, 2)
                ],
                true
            ),
            "smart-rerun round 2: rerunning 2 failed tests and running 3 not yet run"
        );
        assert_eq!(
            header(vec![planned("t.py::c", 1, 2)], true),
            "smart-rerun round 2: running 1 test not yet run"
        );
    }

    #[test]
    fn a_shorter_frame_blanks_what_the_longer_one_left() {
        let mut obs = fake(true, false).width_from(|| 200);
        let long = RoundPlan {
            number: 3,
            kind: RoundKind::Rerun,
            tests: vec![planned("tests/test_a.py::test_one", 2, 3)],
            serial: true,
        };
        obs.event(ProgressEvent::Waiting {
            wait: Duration::from_secs(100),
            plan: &long,
        });
        obs.event(ProgressEvent::WaitingTick {
            left: Duration::from_millis(9_900),
        });
        let out = without_our_styles(&String::from_utf8(obs.into_inner()).unwrap());
        let frames: Vec<&str> = out.split('\r').filter(|f| !f.is_empty()).collect();
        assert_eq!(frames[0].len(), frames[1].len(), "{frames:?}");
        assert!(frames[1].ends_with(")  "), "{frames:?}");
    }

    #[test]
    fn with_colour_off_the_live_status_writes_no_escape_at_all() {
        // NO_COLOR makes anstream choose `Never`; the countdown needs no escape sequence.
        let stream = anstream::AutoStream::new(Vec::new(), anstream::ColorChoice::Never);
        let mut obs = TerminalProgress::new(stream).live(true).width_from(|| 40);
        countdown(&mut obs);
        let out = String::from_utf8(obs.into_inner().into_inner()).unwrap();
        assert!(!out.contains('\u{1b}'), "{out:?}");
        assert!(out.contains("\rsmart-rerun 2.3s until round 2"), "{out:?}");
    }

    #[test]
    fn not_on_a_terminal_the_wait_is_one_plain_line() {
        let mut obs = fake(false, false);
        assert_eq!(obs.tick_interval(), None);
        countdown(&mut obs);
        let out = without_our_styles(&String::from_utf8(obs.into_inner()).unwrap());
        assert!(!out.contains('\r'), "{out:?}");
        assert!(
            out.starts_with(
                "smart-rerun waiting 2.5s before round 2 (4 tests)\nsmart-rerun round 2:"
            ),
            "{out:?}"
        );
    }

    #[test]
    fn in_github_actions_each_later_round_is_a_group_titled_without_test_names() {
        let mut obs = fake(false, true);
        let first = RoundPlan {
            number: 1,
            kind: RoundKind::First,
            tests: Vec::new(),
            serial: false,
        };
        let round = |number, kind| Round {
            number,
            kind,
            started_at: String::new(),
            duration_seconds: 0.0,
            selected: 0,
            exit_status: Some(0),
            signal: None,
            note: None,
        };
        let second = plan();
        obs.event(ProgressEvent::RoundStarting(&first));
        obs.event(ProgressEvent::RoundFinished(&round(1, RoundKind::First)));
        obs.event(ProgressEvent::RoundStarting(&second));
        obs.event(ProgressEvent::RoundFinished(&round(2, RoundKind::Rerun)));
        let cont = RoundPlan {
            number: 3,
            kind: RoundKind::Continuation,
            tests: vec![planned("tests/test_z.py::test_z", 1, 2)],
            serial: true,
        };
        obs.event(ProgressEvent::RoundStarting(&cont));
        obs.event(ProgressEvent::RoundFinished(&round(
            3,
            RoundKind::Continuation,
        )));
        let out = without_our_styles(&String::from_utf8(obs.into_inner()).unwrap());
        let lines: Vec<&str> = out.lines().collect();
        let groups: Vec<&&str> = lines.iter().filter(|l| l.starts_with("::")).collect();
        assert_eq!(
            groups,
            [
                &"::group::smart-rerun round 2: rerunning 4 failed tests",
                &"::endgroup::",
                &"::group::smart-rerun round 3: running 1 test not yet run",
                &"::endgroup::"
            ],
            "{out}"
        );
        // The test list comes first, outside the collapsed group.
        let group_at = lines
            .iter()
            .position(|l| l.starts_with("::group::"))
            .unwrap();
        assert!(
            lines[..group_at]
                .iter()
                .any(|l| l.contains("tests/test_a.py::test_one"))
        );
    }

    #[test]
    fn the_summary_lists_every_kind_of_result() {
        let report = sample::every_outcome();
        let text = render_summary(&report);
        assert!(
            text.contains(&RED.render().to_string()),
            "coloured when asked"
        );
        insta::assert_snapshot!("summary", anstream::adapter::strip_str(&text).to_string());
    }

    #[test]
    fn hostile_text_reaches_the_terminal_without_a_raw_escape() {
        let report = sample::hostile();
        let text = without_our_styles(&render_summary(&report));
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(!text.contains('\u{7}') && !text.contains('\r') && !text.contains('\0'));
        assert!(text.contains("\\u{1b}[31mred"), "made visible: {text}");
        // 100 KB messages are cut to one short line.
        assert!(
            text.lines().all(|l| l.chars().count() < 1200),
            "{}",
            text.len()
        );
    }
}
