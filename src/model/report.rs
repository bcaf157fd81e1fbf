//! The run's result: [`RunReport`], every collected test with its final outcome and, where it failed at
//! least once, each attempt. The JSON form is documented by `schema/report.schema.json`; bump
//! [`SCHEMA_VERSION`] on any change that is not a pure addition.

use super::{Classification, ExitCode};
use serde::{Deserialize, Serialize};

/// Version of the JSON report's shape. 2 added `history` to tests; 3 added `quarantine` to tests (a
/// quarantined test's failure no longer fails the run).
pub const SCHEMA_VERSION: u32 = 3;

/// The oldest version smart-rerun still reads (a version 1 report is a version 2 report without
/// history).
pub const OLDEST_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub schema_version: u32,
    pub tool: Tool,
    pub run: RunInfo,
    pub summary: Summary,
    pub tests: Vec<TestResult>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collection_errors: Vec<CollectionError>,
    /// Things the user should know that are not test results (a plugin that reruns in-process, a
    /// session that failed for a reason other than a test).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The CI job the run happened in, for what acts on the report later (`smart-rerun comment` in a
    /// privileged workflow); absent outside CI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<CiInfo>,
}

/// The CI job a run happened in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiInfo {
    /// `github` or `gitlab`.
    pub platform: String,
    /// `owner/name` on GitHub; the project path on GitLab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The pull request number (GitHub) or merge request IID (GitLab) the job ran for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<u64>,
    /// The head commit of that pull request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_sha: Option<String>,
    /// The commit the job ran on (on GitHub, a pull request's merge commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_sha: Option<String>,
    /// The CI run's page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_url: Option<String>,
    /// The job's section of the sticky comment (job id and matrix values, or as configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

impl Default for Tool {
    fn default() -> Self {
        Tool {
            name: env!("CARGO_PKG_NAME").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunInfo {
    /// The pytest command as run for the first round (argv).
    pub command: Vec<String>,
    pub cwd: String,
    pub python_version: Option<String>,
    pub pytest_version: Option<String>,
    pub python_executable: Option<String>,
    pub rootdir: Option<String>,
    /// RFC 3339 timestamps.
    pub started_at: String,
    pub finished_at: String,
    pub duration_seconds: f64,
    pub exit_code: ExitCode,
    /// Why the run ended with this exit code, in one line.
    pub exit_reason: String,
    pub interrupted: bool,
    pub policy: PolicyInfo,
    pub rounds: Vec<Round>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<String>,
}

/// The global policy in force, as serialised into the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyInfo {
    pub enabled: bool,
    pub max_attempts: u32,
    pub delay_seconds: f64,
    pub backoff: String,
    pub max_delay_seconds: Option<f64>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoundKind {
    /// The whole suite, as the user's command selects it.
    First,
    /// Failed tests, again.
    Rerun,
    /// Tests that had not run when pytest died; no attempt is charged for them.
    Continuation,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Round {
    pub number: u32,
    pub kind: RoundKind,
    pub started_at: String,
    pub duration_seconds: f64,
    /// How many tests the round was asked to run (the whole suite for the first round).
    pub selected: usize,
    /// pytest's exit status, when it exited on its own.
    pub exit_status: Option<i32>,
    /// The signal that ended pytest, on Unix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub flaky: usize,
    pub skipped: usize,
    pub xfailed: usize,
    pub xpassed: usize,
    pub errors: usize,
    /// Collected tests that never ran (the run was interrupted, or stopped by `-x`).
    pub not_run: usize,
    pub collection_errors: usize,
    /// Test executions after each test's first.
    pub reruns: usize,
    /// Wall time of the rerun rounds, in seconds.
    pub rerun_seconds: f64,
    /// Attempts not spent on failures confirmed deterministic (the same failure twice), and the seconds
    /// they would have taken (their durations and delays).
    #[serde(default)]
    pub attempts_saved: usize,
    #[serde(default)]
    pub seconds_saved: f64,
    /// Failed or errored tests a quarantine entry protects: counted in `failed` and `errors` too, but
    /// not failing the run.
    #[serde(default)]
    pub quarantined_failures: usize,
}

/// A test's final outcome, or one attempt's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Passed,
    Failed,
    /// Failed at least once, then passed.
    Flaky,
    Skipped,
    Xfailed,
    Xpassed,
    /// Setup or teardown failed, or pytest died while the test ran.
    Error,
    NotRun,
}

impl Outcome {
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Failed | Outcome::Error)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Flaky => "flaky",
            Outcome::Skipped => "skipped",
            Outcome::Xfailed => "xfailed",
            Outcome::Xpassed => "xpassed",
            Outcome::Error => "error",
            Outcome::NotRun => "not-run",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Setup,
    Call,
    Teardown,
    /// pytest died (signal, `os._exit`) while the test ran.
    Crash,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestResult {
    pub nodeid: String,
    pub outcome: Outcome,
    /// Path relative to pytest's rootdir (absolute when outside it).
    pub file: Option<String>,
    /// 1-based line of the test's definition.
    pub line: Option<u32>,
    /// Duration of the final attempt, all phases.
    pub duration_seconds: f64,
    /// Why the test was skipped, the xfail reason of an xfailed or xpassed test, or why it did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a test that failed at least once: why it was not attempted again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_because: Option<String>,
    /// For a test that failed at least once: the verdict, observed outcomes first. Boxed: most tests
    /// have none, and a report can list 100,000 tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Box<Classification>>,
    /// Every attempt, for a test that failed at least once; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// What the history store says about a failed or flaky test (with `--history`). Boxed, like the
    /// classification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Box<super::TestHistory>>,
    /// The quarantine entry that protects this test: its outcome stays what it was, but a failure does
    /// not fail the run. Boxed, like the classification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<Box<QuarantineInfo>>,
}

/// The entry of the quarantine file that protects a test, as the reports show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineInfo {
    /// The entry's `nodeid`: the test's node id, or a glob (`*`, `?`) that matched it.
    pub entry: String,
    pub reason: String,
    /// The last day of the quarantine (`YYYY-MM-DD`).
    pub expires: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<String>,
    /// The quarantine file and the entry's line in it.
    pub file: String,
    pub line: usize,
    /// The entry has expired and protects the test only for its grace days.
    #[serde(default)]
    pub expired: bool,
}

impl QuarantineInfo {
    /// "reason; owner: x; issue: y; expires 2027-01-31" for one line of a report.
    pub fn describe(&self) -> String {
        let mut parts = vec![self.reason.clone()];
        if let Some(o) = &self.owner {
            parts.push(format!("owner: {o}"));
        }
        if let Some(i) = &self.issue {
            parts.push(format!("issue: {i}"));
        }
        parts.push(format!(
            "{} {}",
            if self.expired { "expired" } else { "expires" },
            self.expires
        ));
        parts.join("; ")
    }
}

impl TestResult {
    /// The attempt a flaky test passed on.
    pub(crate) fn passed_on_attempt(&self) -> Option<u32> {
        if self.outcome != Outcome::Flaky {
            return None;
        }
        self.attempts
            .iter()
            .rev()
            .find(|a| !a.outcome.is_failure())
            .map(|a| a.number)
    }

    /// Whether a quarantine entry protects this test.
    pub fn is_quarantined(&self) -> bool {
        self.quarantine.is_some()
    }

    /// The first failed attempt, whose exception best describes the test's failure.
    pub(crate) fn first_failure(&self) -> Option<&Attempt> {
        self.attempts.iter().find(|a| a.outcome.is_failure())
    }

    /// The last failed attempt.
    pub(crate) fn last_failure(&self) -> Option<&Attempt> {
        self.attempts.iter().rev().find(|a| a.outcome.is_failure())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based.
    pub number: u32,
    /// The round it ran in.
    pub round: u32,
    pub outcome: Outcome,
    /// The phase that failed, for a failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    pub duration_seconds: f64,
    /// When the attempt ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<ExceptionInfo>,
    /// Where the exception was raised (the innermost frame).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash: Option<Location>,
    /// The deepest frame inside the test's own file, where annotations point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_location: Option<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
    /// Captured output (`Captured stdout call`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub captured: Vec<CapturedSection>,
    /// Other phases that failed in the same attempt (a teardown error after a failed call).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_failed: Vec<Phase>,
    /// The xdist worker that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// For a failed attempt: what stays the same when the failure repeats (type, normalised message,
    /// crash frame), as 16 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// For a failed attempt: what the heuristics (or the AI) made of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionInfo {
    /// Qualified class name (`builtins.ValueError`, `requests.exceptions.ConnectionError`).
    #[serde(rename = "type")]
    pub type_name: String,
    /// The class and its bases, most derived first, `object` left out.
    pub mro: Vec<String>,
    pub message: String,
}

impl ExceptionInfo {
    /// The class name without its module (`ValueError`).
    pub(crate) fn short_type(&self) -> &str {
        let t = self.type_name.as_str();
        match t.strip_prefix("builtins.") {
            Some(short) => short,
            None => t,
        }
    }

    /// The failure's headline: [`headline`] of the short type and the message.
    pub(crate) fn headline(&self) -> String {
        headline(self.short_type(), &self.message)
    }
}

/// `Type: first line of the message` (its first non-blank line, trimmed), or the type alone when the
/// message is blank: how every renderer names a failure in one line. Not escaped and not shortened.
pub(crate) fn headline(kind: &str, message: &str) -> String {
    let first = message
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if first.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {first}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub file: String,
    pub line: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CapturedSection {
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectionError {
    /// The collector that failed (usually a module path).
    pub nodeid: String,
    pub traceback: String,
}

impl RunReport {
    /// Recomputes [`Summary`] from the tests and rounds.
    pub fn summarize(&mut self) {
        let mut s = Summary {
            attempts_saved: self.summary.attempts_saved,
            seconds_saved: self.summary.seconds_saved,
            total: self.tests.len(),
            ..Summary::default()
        };
        for t in &self.tests {
            match t.outcome {
                Outcome::Passed => s.passed += 1,
                Outcome::Failed => s.failed += 1,
                Outcome::Flaky => s.flaky += 1,
                Outcome::Skipped => s.skipped += 1,
                Outcome::Xfailed => s.xfailed += 1,
                Outcome::Xpassed => s.xpassed += 1,
                Outcome::Error => s.errors += 1,
                Outcome::NotRun => s.not_run += 1,
            }
            if t.is_quarantined() && t.outcome.is_failure() {
                s.quarantined_failures += 1;
            }
            s.reruns += t.attempts.len().saturating_sub(1);
        }
        s.collection_errors = self.collection_errors.len();
        // A fold from +0.0, not `sum()`: a float sum of nothing is -0.0, which JSON and every "{:.1}" print
        // as "-0.0" when nothing was rerun.
        s.rerun_seconds = self
            .run
            .rounds
            .iter()
            .filter(|r| r.kind == RoundKind::Rerun)
            .fold(0.0, |total, r| total + r.duration_seconds);
        self.summary = s;
    }

    /// Merges the reports of several jobs (matrix shards) into one: every test of every report, counts
    /// recomputed, the worst exit code, the earliest start and latest end.
    pub(crate) fn merge(mut reports: Vec<RunReport>) -> Option<RunReport> {
        if reports.len() <= 1 {
            return reports.pop();
        }
        let mut iter = reports.into_iter();
        let mut merged = iter.next()?;
        for r in iter {
            if r.run.started_at < merged.run.started_at {
                merged.run.started_at = r.run.started_at.clone();
            }
            if r.run.finished_at > merged.run.finished_at {
                merged.run.finished_at = r.run.finished_at.clone();
            }
            merged.run.duration_seconds = merged.run.duration_seconds.max(r.run.duration_seconds);
            if r.run.exit_code > merged.run.exit_code {
                merged.run.exit_code = r.run.exit_code;
                merged.run.exit_reason = r.run.exit_reason.clone();
            }
            merged.run.interrupted |= r.run.interrupted;
            merged.run.rounds.extend(r.run.rounds);
            merged.summary.attempts_saved += r.summary.attempts_saved;
            merged.summary.seconds_saved += r.summary.seconds_saved;
            merged.tests.extend(r.tests);
            merged.collection_errors.extend(r.collection_errors);
            for w in r.warnings {
                if !merged.warnings.contains(&w) {
                    merged.warnings.push(w);
                }
            }
        }
        merged.summarize();
        if merged.run.exit_code == ExitCode::Ok
            && merged.summary.failed + merged.summary.errors > merged.summary.quarantined_failures
        {
            merged.run.exit_code = ExitCode::TestsFailed;
        }
        Some(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_headline_is_the_type_and_the_first_line_that_says_something() {
        let e = ExceptionInfo {
            type_name: "builtins.ValueError".into(),
            mro: vec![],
            message: "\n  bad value  \nmore".into(),
        };
        assert_eq!(e.headline(), "ValueError: bad value");
        assert_eq!(headline("AssertionError", " \n\t\n"), "AssertionError");
        assert_eq!(headline("a.B", "x"), "a.B: x");
    }
}
