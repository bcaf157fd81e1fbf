//! Annotations: one `::error` per failed test and one `::warning` per flaky test, at the failure's file
//! and line. The main entry is [`annotations`].
//!
//! The runner attaches at most 10 errors and 10 warnings per step, and a composite action's steps share
//! one budget, so smart-rerun ranks them and emits only what will be shown: confirmed deterministic
//! failures first, then failed tests before tests with errors (setup, teardown, crashes) and collection
//! errors, each by attempts spent; flaky tests by attempts needed. The job summary says how many were
//! left out.

use super::commands::{escape_data, escape_property};
use crate::model::Category;
use crate::model::{Attempt, Location, Outcome, RunReport, TestResult};
use std::path::{Component, Path, PathBuf};

/// The runner's per-step limits.
pub(crate) const MAX_ERRORS: usize = 10;
pub(crate) const MAX_WARNINGS: usize = 10;
/// The runner truncates a message to this many UTF-16 code units (after masking).
const MESSAGE_LIMIT: usize = 4096;
/// Titles are shown on one line; longer ones are cut.
const TITLE_LIMIT: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Error,
    Warning,
    /// A quarantined test that failed or was flaky: reported, not a problem of the change.
    Notice,
}

impl Level {
    fn command(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Notice => "notice",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Annotation {
    pub level: Level,
    /// Relative to the workspace (the repository root), `/`-separated.
    pub file: Option<String>,
    pub line: Option<u32>,
    pub title: String,
    pub message: String,
}

impl Annotation {
    /// The workflow command, escaped, on one line.
    pub(crate) fn to_command(&self) -> String {
        let mut props = Vec::new();
        if let Some(file) = &self.file {
            props.push(format!("file={}", escape_property(file)));
            if let Some(line) = self.line {
                props.push(format!("line={line}"));
            }
        }
        props.push(format!(
            "title={}",
            escape_property(&cut_utf16(&strip_controls(&self.title), TITLE_LIMIT, "…"))
        ));
        format!(
            "::{} {}::{}",
            self.level.command(),
            props.join(","),
            escape_data(&cut_utf16(
                &strip_controls(&self.message),
                MESSAGE_LIMIT,
                "\n… (cut; the job summary and the JSON report have it all)"
            ))
        )
    }
}

/// Test output without what a terminal or the annotation renderer would act on: ANSI escape sequences
/// (colours, OSC 8 hyperlinks, title changes) removed whole, other control characters but the newline
/// dropped (a tab becomes a space), and the bidirectional overrides that can make text read differently
/// from what it is.
fn strip_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC, DCS, SOS, PM, APC: up to BEL or ESC \.
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' {
                            if chars.peek() == Some(&'\\') {
                                chars.next();
                            }
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\n' => out.push('\n'),
            '\t' => out.push(' '),
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The annotations to emit and how many were left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Annotations {
    pub shown: Vec<Annotation>,
    pub errors_left_out: usize,
    pub warnings_left_out: usize,
}

/// Maps pytest's rootdir-relative paths to workspace-relative ones.
#[derive(Debug, Clone, Default)]
pub(crate) struct Paths {
    pub rootdir: Option<PathBuf>,
    /// `GITHUB_WORKSPACE`.
    pub workspace: Option<PathBuf>,
}

impl Paths {
    /// `file` (relative to the rootdir, or absolute) relative to the workspace; `None` when it is outside
    /// the workspace, where an annotation could not point.
    pub(crate) fn in_workspace(&self, file: &str) -> Option<String> {
        let workspace = self.workspace.as_deref()?;
        let file = Path::new(file);
        let absolute = if file.is_absolute() || looks_absolute(file) {
            file.to_path_buf()
        } else {
            self.rootdir.as_deref()?.join(file)
        };
        let absolute = normalize(&absolute);
        let rel = absolute.strip_prefix(normalize(workspace)).ok()?;
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        (!parts.is_empty()).then(|| parts.join("/"))
    }
}

/// `C:\...` or `C:/...` on any host, so a Windows report read elsewhere still maps.
fn looks_absolute(p: &Path) -> bool {
    let s = p.to_string_lossy();
    let b = s.as_bytes();
    b.len() > 2 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b[2] == b'\\' || b[2] == b'/')
}

/// Drops `.` and resolves `..` lexically (no file system access: the files may be gone).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Ranks and caps the annotations for `report`. `warnings_used` slots of the warning budget are already
/// taken (by a warning about the PR comment).
pub(crate) fn annotations(report: &RunReport, paths: &Paths, warnings_used: usize) -> Annotations {
    let mut errors: Vec<((u8, u8, i64, usize), Annotation)> = Vec::new();
    let mut warnings: Vec<((i64, usize), Annotation)> = Vec::new();
    for (index, t) in report.tests.iter().enumerate() {
        let attempts = t.attempts.len().max(1) as i64;
        match t.outcome {
            // GitHub caps notices like warnings; quarantined tests share the warnings' room, after them.
            Outcome::Failed | Outcome::Error | Outcome::Flaky if t.is_quarantined() => {
                warnings.push(((i64::MAX - attempts, index), test_annotation(t, paths)))
            }
            Outcome::Failed | Outcome::Error => {
                let deterministic = t
                    .classification
                    .as_ref()
                    .is_some_and(|c| c.category == Category::Deterministic);
                let kind = if t.outcome == Outcome::Failed { 0 } else { 1 };
                errors.push((
                    (u8::from(!deterministic), kind, -attempts, index),
                    test_annotation(t, paths),
                ));
            }
            Outcome::Flaky => warnings.push(((-attempts, index), test_annotation(t, paths))),
            _ => {}
        }
    }
    for (index, e) in report.collection_errors.iter().enumerate() {
        let file = e.nodeid.split("::").next().unwrap_or(&e.nodeid);
        let message = last_lines(&e.traceback, 30);
        errors.push((
            (1, 2, 0, index),
            Annotation {
                level: Level::Error,
                file: paths.in_workspace(file),
                line: None,
                title: format!("Collection error: {}", e.nodeid),
                message: if message.trim().is_empty() {
                    "pytest could not collect this module".into()
                } else {
                    message
                },
            },
        ));
    }
    errors.sort_by_key(|a| a.0);
    warnings.sort_by_key(|a| a.0);
    let warning_room = MAX_WARNINGS.saturating_sub(warnings_used);
    let errors_left_out = errors.len().saturating_sub(MAX_ERRORS);
    let warnings_left_out = warnings.len().saturating_sub(warning_room);
    let shown = errors
        .into_iter()
        .take(MAX_ERRORS)
        .map(|(_, a)| a)
        .chain(warnings.into_iter().take(warning_room).map(|(_, a)| a))
        .collect();
    Annotations {
        shown,
        errors_left_out,
        warnings_left_out,
    }
}

fn test_annotation(t: &TestResult, paths: &Paths) -> Annotation {
    let (level, label) = match t.outcome {
        _ if t.is_quarantined() => (
            Level::Notice,
            match t.outcome {
                Outcome::Flaky => "Quarantined (flaky)",
                Outcome::Error => "Quarantined (error)",
                _ => "Quarantined (failed)",
            },
        ),
        Outcome::Flaky => (Level::Warning, "Flaky"),
        Outcome::Error => (Level::Error, "Error"),
        _ => (Level::Error, "Failed"),
    };
    // A flaky test is described by how it failed; a failed one by how it failed last.
    let attempt = if t.outcome == Outcome::Flaky {
        t.first_failure()
    } else {
        t.last_failure()
    };
    let (file, line) = location(t, attempt, paths);
    let mut message = String::new();
    match attempt.and_then(|a| a.exception.as_ref()) {
        Some(e) if e.message.trim().is_empty() => message.push_str(e.short_type()),
        Some(e) => {
            message.push_str(e.short_type());
            message.push_str(": ");
            message.push_str(e.message.trim_end());
        }
        None => message.push_str(match t.outcome {
            Outcome::Error => "error",
            _ => "failed",
        }),
    }
    message.push_str("\n\n");
    message.push_str(&verdict(t, attempt));
    if let Some(q) = &t.quarantine {
        message.push_str(&format!(
            "\nQuarantined ({}:{}): {}; its failure does not fail the run",
            q.file,
            q.line,
            q.describe()
        ));
    }
    if let Some(h) = &t.history {
        message.push_str("\nHistory: ");
        message.push_str(&h.describe());
    }
    if let Some(c) = &t.classification {
        message.push_str(&format!(
            "\nClassification: {} ({:.0}% confidence, {}): {}",
            c.category.as_str(),
            c.confidence * 100.0,
            match c.source {
                crate::model::ClassificationSource::Heuristic => "heuristics",
                crate::model::ClassificationSource::Observed => "observed on reruns",
                crate::model::ClassificationSource::Ai => "AI",
                crate::model::ClassificationSource::Cache => "AI, cached",
            },
            c.reason
        ));
    }
    Annotation {
        level,
        file,
        line,
        title: format!("{label}: {}", t.nodeid),
        message,
    }
}

/// What happened across the attempts, in one line.
fn verdict(t: &TestResult, attempt: Option<&Attempt>) -> String {
    let n = t.attempts.len();
    let phase = attempt
        .and_then(|a| a.phase)
        .filter(|p| *p != crate::model::Phase::Call)
        .map(|p| match p {
            crate::model::Phase::Setup => " in setup",
            crate::model::Phase::Teardown => " in teardown",
            crate::model::Phase::Crash => " (pytest crashed)",
            crate::model::Phase::Call => "",
        })
        .unwrap_or("");
    match t.outcome {
        Outcome::Flaky => {
            let failed = t.attempts.iter().filter(|a| a.outcome.is_failure()).count();
            let times = if failed == 1 {
                "once".to_owned()
            } else {
                format!("{failed} times")
            };
            format!(
                "Flaky: failed{phase} {times}, then passed on attempt {}.",
                t.passed_on_attempt().unwrap_or(n as u32)
            )
        }
        _ => {
            let what = if t.outcome == Outcome::Error {
                "Error"
            } else {
                "Failed"
            };
            let mut text = if n <= 1 {
                format!("{what}{phase} on its only attempt.")
            } else {
                format!("{what}{phase} on all {n} attempts.")
            };
            if let Some(why) = &t.stopped_because {
                text.push_str(&format!(" Not retried further: {why}."));
            }
            text
        }
    }
}

/// The failure's place in the test's file: the deepest frame in the test's file, else the crash when it
/// is in that file, else the test's own line.
fn location(
    t: &TestResult,
    attempt: Option<&Attempt>,
    paths: &Paths,
) -> (Option<String>, Option<u32>) {
    let Some(test_file) = t.file.as_deref() else {
        return (None, None);
    };
    let in_test_file = |l: &&Location| same_file(&l.file, test_file);
    let line = attempt
        .and_then(|a| a.test_location.as_ref().filter(in_test_file))
        .or_else(|| attempt.and_then(|a| a.crash.as_ref().filter(in_test_file)))
        .map(|l| l.line)
        .or(t.line);
    match paths.in_workspace(test_file) {
        Some(file) => (Some(file), line),
        None => (None, None),
    }
}

fn same_file(a: &str, b: &str) -> bool {
    a.replace('\\', "/") == b.replace('\\', "/")
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Cuts `text` to at most `limit` UTF-16 code units (how the runner counts), `tail` included.
fn cut_utf16(text: &str, limit: usize, tail: &str) -> String {
    if text.encode_utf16().count() <= limit {
        return text.to_owned();
    }
    let room = limit.saturating_sub(tail.encode_utf16().count());
    let mut used = 0;
    let mut out = String::new();
    for c in text.chars() {
        used += c.len_utf16();
        if used > room {
            break;
        }
        out.push(c);
    }
    out.push_str(tail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attempt(number: u32, outcome: &str, message: &str, line: u32) -> serde_json::Value {
        if outcome == "passed" {
            return json!({"number": number, "round": number, "outcome": "passed", "duration_seconds": 0.1});
        }
        json!({
            "number": number, "round": number, "outcome": outcome,
            "phase": if outcome == "error" { "setup" } else { "call" },
            "duration_seconds": 0.1,
            "exception": {"type": "builtins.AssertionError", "mro": ["builtins.AssertionError"], "message": message},
            "crash": {"file": "/usr/lib/python3/site-packages/lib.py", "line": 99},
            "test_location": {"file": "tests/test_a.py", "line": line},
        })
    }

    fn test(nodeid: &str, outcome: &str, attempts: Vec<serde_json::Value>) -> serde_json::Value {
        json!({
            "nodeid": nodeid, "outcome": outcome, "file": nodeid.split("::").next(), "line": 3,
            "duration_seconds": 0.1, "attempts": attempts,
        })
    }

    fn report(tests: Vec<serde_json::Value>) -> RunReport {
        let mut r: RunReport = serde_json::from_value(json!({
            "schema_version": crate::model::SCHEMA_VERSION,
            "tool": {"name": "smart-rerun", "version": "0"},
            "run": {
                "command": ["pytest"], "cwd": "/ws/python", "python_version": null, "pytest_version": null,
                "python_executable": null, "rootdir": "/ws/python", "started_at": "", "finished_at": "",
                "duration_seconds": 1.0, "exit_code": 1, "exit_reason": "", "interrupted": false,
                "policy": {"enabled": true, "max_attempts": 3, "delay_seconds": 0.0, "backoff": "none",
                           "max_delay_seconds": null, "errors": []},
                "rounds": [],
            },
            "summary": {"total": 0, "passed": 0, "failed": 0, "flaky": 0, "skipped": 0, "xfailed": 0,
                        "xpassed": 0, "errors": 0, "not_run": 0, "collection_errors": 0, "reruns": 0,
                        "rerun_seconds": 0.0},
            "tests": tests,
        }))
        .unwrap();
        r.summarize();
        r
    }

    fn paths() -> Paths {
        Paths {
            rootdir: Some("/ws/python".into()),
            workspace: Some("/ws".into()),
        }
    }

    #[test]
    fn annotations_snapshot() {
        let mut broken = test(
            "tests/test_a.py::test_broken",
            "failed",
            vec![
                attempt(1, "failed", "assert 1 == 2\nwhere 1 = f()", 12),
                attempt(2, "failed", "assert 1 == 2\nwhere 1 = f()", 12),
            ],
        );
        broken["classification"] = json!({
            "category": "deterministic", "confidence": 0.9, "action": {"kind": "stop_retry"},
            "reason": "failed the same way on attempts 1 and 2", "source": "observed",
        });
        let r = report(vec![
            test(
                "tests/test_a.py::test_flaky",
                "flaky",
                vec![attempt(1, "failed", "boom", 7), attempt(2, "passed", "", 0)],
            ),
            broken,
            test(
                "tests/test_a.py::test_setup",
                "error",
                vec![attempt(1, "error", "db down", 20)],
            ),
        ]);
        let a = annotations(&r, &paths(), 0);
        let lines: Vec<String> = a.shown.iter().map(Annotation::to_command).collect();
        insta::assert_snapshot!(lines.join("\n"));
    }

    #[test]
    fn ranked_and_capped_to_the_runners_limits() {
        let mut tests = Vec::new();
        for i in 0..12 {
            tests.push(test(
                &format!("tests/test_a.py::test_error_{i}"),
                "error",
                vec![attempt(1, "error", "x", 1)],
            ));
        }
        for i in 0..3 {
            tests.push(test(
                &format!("tests/test_a.py::test_failed_{i}"),
                "failed",
                (1..=i + 1).map(|n| attempt(n, "failed", "x", 1)).collect(),
            ));
        }
        for i in 0..11 {
            tests.push(test(
                &format!("tests/test_a.py::test_flaky_{i}"),
                "flaky",
                vec![attempt(1, "failed", "x", 1), attempt(2, "passed", "", 0)],
            ));
        }
        let a = annotations(&report(tests), &paths(), 1);
        let titles: Vec<&str> = a.shown.iter().map(|a| a.title.as_str()).collect();
        assert_eq!(
            &titles[..4],
            &[
                "Failed: tests/test_a.py::test_failed_2",
                "Failed: tests/test_a.py::test_failed_1",
                "Failed: tests/test_a.py::test_failed_0",
                "Error: tests/test_a.py::test_error_0",
            ],
            "failed before error, more attempts first"
        );
        let errors = a.shown.iter().filter(|a| a.level == Level::Error).count();
        let warnings = a.shown.iter().filter(|a| a.level == Level::Warning).count();
        assert_eq!((errors, warnings), (10, 9), "one warning slot was taken");
        assert_eq!((a.errors_left_out, a.warnings_left_out), (5, 2));
    }

    #[test]
    fn locations_prefer_the_test_frame_then_the_test_line_and_map_to_the_workspace() {
        let p = paths();
        assert_eq!(
            p.in_workspace("tests/test_a.py").as_deref(),
            Some("python/tests/test_a.py")
        );
        assert_eq!(p.in_workspace("/ws/x/../y.py").as_deref(), Some("y.py"));
        assert_eq!(p.in_workspace("/elsewhere/y.py"), None);
        let no_ws = Paths {
            rootdir: Some("/ws".into()),
            workspace: None,
        };
        assert_eq!(no_ws.in_workspace("a.py"), None);

        let r = report(vec![test(
            "tests/test_a.py::t",
            "failed",
            vec![json!({
                "number": 1, "round": 1, "outcome": "failed", "phase": "call", "duration_seconds": 0.1,
                "crash": {"file": "tests/test_a.py", "line": 41},
            })],
        )]);
        let a = annotations(&r, &p, 0);
        assert_eq!(a.shown[0].line, Some(41), "crash in the test's own file");
        let r = report(vec![test(
            "tests/test_a.py::t",
            "failed",
            vec![json!({
                "number": 1, "round": 1, "outcome": "failed", "phase": "call", "duration_seconds": 0.1,
                "crash": {"file": "lib/other.py", "line": 41},
            })],
        )]);
        let a = annotations(&r, &p, 0);
        assert_eq!(a.shown[0].line, Some(3), "the test's own line");
        assert_eq!(a.shown[0].file.as_deref(), Some("python/tests/test_a.py"));
    }

    #[test]
    fn hostile_messages_stay_one_escaped_command_within_the_limit() {
        let hostile = "x\n::set-output name=exit-code::0\r\n::add-mask::secret\n##[error]forged%0A::warning::y ".repeat(200);
        let r = report(vec![test(
            "tests/test_a.py::test_x[::error::a,b:c]",
            "failed",
            vec![attempt(1, "failed", &hostile, 5)],
        )]);
        let a = annotations(&r, &paths(), 0);
        let line = a.shown[0].to_command();
        assert!(!line.contains('\n') && !line.contains('\r'));
        let (name, props, data) =
            super::super::commands::tests::runner_parse(&line).expect("one command");
        assert_eq!(name, "error");
        assert!(
            data.encode_utf16().count() <= MESSAGE_LIMIT,
            "{}",
            data.len()
        );
        assert!(data.starts_with("AssertionError: x\n::set-output"));
        let title = &props.iter().find(|(k, _)| k == "title").unwrap().1;
        assert_eq!(title, "Failed: tests/test_a.py::test_x[::error::a,b:c]");
        assert_eq!(props.len(), 3, "file, line, title: {props:?}");
    }

    #[test]
    fn escape_sequences_and_control_characters_never_reach_an_annotation() {
        let message = "\u{1b}[31mred\u{1b}[0m \u{1b}]8;;https://evil.example\u{7}link\u{1b}]8;;\u{1b}\\ \
                       bell\u{7} nul\u{0} tab\there \u{202e}txt.exe\u{9b}2J\nnext line";
        let r = report(vec![test(
            "tests/test_a.py::test_\u{1b}[2Jx",
            "failed",
            vec![attempt(1, "failed", message, 5)],
        )]);
        let line = annotations(&r, &paths(), 0).shown[0].to_command();
        let (_, props, data) =
            super::super::commands::tests::runner_parse(&line).expect("one command");
        assert_eq!(
            data,
            "AssertionError: red link bell nul tab here txt.exe2J\nnext line\n\nFailed on its only attempt."
        );
        let title = &props.iter().find(|(k, _)| k == "title").unwrap().1;
        assert_eq!(title, "Failed: tests/test_a.py::test_x");
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
    }
}
