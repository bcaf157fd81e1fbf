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
pub(crate) const TICK: Duration = Duration::from_millis(200);

/// Prints progress between rounds to stdout, after pytest's own output.
///
/// On a terminal, the wait before a round is a live status line (the tests, attempt k of n, a countdown)
/// redrawn in place and cleared before the round's pytest output; elsewhere it is one plain line. In
/// GitHub Actions each later round's pytest output sits in a collapsible `::group::`.
pub(crate) struct TerminalProgress<W: Write> {
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
    pub(crate) fn stdout() -> Self {
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
    pub(crate) fn new(out: W) -> Self {
        TerminalProgress {
            out,
            live: false,
            github_groups: false,
            width: terminal_width,
            status: None,
            group_open: false,
        }
    }

    pub(crate) fn live(mut self, on: bool) -> Self {
        self.live = on;
        self
    }

    pub(crate) fn github_groups(mut self, on: bool) -> Self {
        self.github_groups = on;
        self
    }

    /// Where the live line's width comes from (the terminal's, by default).
    #[cfg(test)]
    pub(crate) fn width_from(mut self, width: fn() -> usize) -> Self {
        self.width = width;
        self
    }

    #[cfg(test)]
    pub(crate) fn into_inner(self) -> W {
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

/// The terminal's width in columns: stdout's terminal, else `COLUMNS`, else 80.
fn terminal_width() -> usize {
    if let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size_of(std::io::stdout()) {
        if w > 0 {
            return usize::from(w);
        }
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&c: &usize| c > 0)
        .unwrap_or(80)
}

/// Columns a string takes (East Asian wide characters and emoji take two, combining marks none), so the
/// live line never wraps.
fn display_width(text: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(text)
}

/// Cuts `text` to at most `max` columns, ending with `…` when cut.
fn fit(text: &str, max: usize) -> String {
    if display_width(text) <= max {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
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
pub(crate) fn render_summary(report: &RunReport) -> String {
    let s = &report.summary;
    let mut out = String::new();
    let _ = writeln!(out, "{BOLD}{:=^72}{BOLD:#}", " smart-rerun summary ");

    let flaky: Vec<_> = report
        .tests
        .iter()
        .filter(|t| t.outcome == Outcome::Flaky && !t.is_quarantined())
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
        .filter(|t| t.outcome.is_failure() && !t.is_quarantined())
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
    let quarantined: Vec<_> = report.tests.iter().filter(|t| t.is_quarantined()).collect();
    for t in quarantined.iter().take(LIST_LIMIT) {
        let Some(q) = t.quarantine.as_deref() else {
            continue;
        };
        let exc = t
            .last_failure()
            .and_then(|a| a.exception.as_ref())
            .map(|e| format!(" - {}", one_line(e.short_type(), &e.message)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{CYAN}QUARANTINED{CYAN:#} {} {}{exc}\n       {DIM}quarantined ({}:{}): {}{DIM:#}",
            sanitize_line(&t.nodeid),
            t.outcome.as_str(),
            sanitize_line(&q.file),
            q.line,
            sanitize_line(&q.describe())
        );
    }
    if quarantined.len() > LIST_LIMIT {
        let _ = writeln!(
            out,
            "{DIM}... and {} more quarantined{DIM:#}",
            quarantined.len() - LIST_LIMIT
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
    match s.quarantined_failures {
        0 => push(s.failed, "failed", RED),
        q => push(s.failed, &format!("failed ({q} quarantined)"), RED),
    }
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
pub(crate) fn print_summary(report: &RunReport, mut out: impl Write) -> std::io::Result<()> {
    out.write_all(render_summary(report).as_bytes())?;
    out.flush()
}

fn one_line(kind: &str, message: &str) -> String {
    sanitize_line(&truncate(&crate::model::headline(kind, message), 200))
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
pub(crate) fn sanitize_line(text: &str) -> String {
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
mod tests;
