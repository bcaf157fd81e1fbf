//! The terminal: progress lines between rounds and the colourised end-of-run summary. The main types are
//! [`TerminalObserver`] (implements the runner's [`Observer`]) and [`render_summary`].
//!
//! Output goes through `anstream`, which drops colour when stdout is not a terminal, when `NO_COLOR` is set,
//! or with `--color never`. Test names and messages come from the code under test: control characters are
//! made visible, so they cannot move the cursor, retitle the window or forge colour.

use super::{Outcome, Round, RoundKind, RunReport};
use crate::runner::{Observer, RoundPlan};
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

/// Prints progress between rounds to stdout, after pytest's own output.
pub struct TerminalObserver<W: Write> {
    out: W,
}

impl TerminalObserver<anstream::Stdout> {
    pub fn stdout() -> Self {
        TerminalObserver {
            out: anstream::stdout(),
        }
    }
}

impl<W: Write> TerminalObserver<W> {
    pub fn new(out: W) -> Self {
        TerminalObserver { out }
    }

    fn line(&mut self, text: &str) {
        // A closed stdout (`| head`) must not stop the run; the report is still written.
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }
}

impl<W: Write> Observer for TerminalObserver<W> {
    fn round_starting(&mut self, plan: &RoundPlan<'_>) {
        if plan.kind == RoundKind::First {
            return;
        }
        let what = match plan.kind {
            RoundKind::Continuation => "running the tests that had not run yet",
            _ => "rerunning failed tests",
        };
        let n = plan.tests.len();
        let mut text = format!(
            "{CYAN}smart-rerun{CYAN:#} {BOLD}round {}{BOLD:#}: {what} ({n} test{}{})",
            plan.number,
            plural(n),
            if plan.serial { "" } else { ", in parallel" }
        );
        for (nodeid, attempt, max) in plan.tests.iter().take(10) {
            let _ = write!(
                text,
                "\n  {} {DIM}attempt {attempt} of {max}{DIM:#}",
                sanitize_line(nodeid)
            );
        }
        if n > 10 {
            let _ = write!(text, "\n  {DIM}... and {} more{DIM:#}", n - 10);
        }
        self.line(&text);
    }

    fn waiting(&mut self, wait: Duration, plan: &RoundPlan<'_>) {
        let n = plan.tests.len();
        self.line(&format!(
            "{CYAN}smart-rerun{CYAN:#} waiting {:.1}s before round {} ({n} test{})",
            wait.as_secs_f64(),
            plan.number,
            plural(n)
        ));
    }

    fn note(&mut self, message: &str) {
        self.line(&format!("{CYAN}smart-rerun{CYAN:#} {message}"));
    }

    fn round_finished(&mut self, _round: &Round) {}
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
        let _ = writeln!(
            out,
            "{RED}{label}{RED:#} {}{exc}{attempts}",
            sanitize_line(&t.nodeid)
        );
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
    if (code == 3 || code == 4) && !report.warnings.contains(&report.run.exit_reason) {
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
    push(s.collection_errors, "collection errors", RED);
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

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Like [`sanitize_line`], keeping line breaks (indented under the first line).
fn sanitize_lines(text: &str) -> String {
    text.lines()
        .map(sanitize_line)
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// Makes untrusted text safe for one terminal line: control characters (ESC, CR, BEL, newlines, ...)
/// become visible escapes.
pub fn sanitize_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control()
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

    #[test]
    fn escape_sequences_in_test_names_are_neutralised() {
        let hostile = "tests/t.py::test[\u{1b}]0;pwned\u{7}\u{1b}[2J\r\nFAKE]";
        let clean = sanitize_line(hostile);
        assert!(!clean.chars().any(|c| c.is_control()), "{clean:?}");
        assert!(clean.contains("\\u{1b}]0;pwned"));
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let msg = "é".repeat(500);
        let line = one_line("ValueError", &msg);
        assert!(line.chars().count() <= 201);
        assert!(line.ends_with('…'));
    }
}
