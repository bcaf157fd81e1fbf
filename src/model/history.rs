//! What history says about a test: [`TestHistory`], attached to a test of the report by whoever read
//! the history store, and worded for people by [`TestHistory::describe`], so every renderer says the
//! same thing without knowing where history lives.

use serde::{Deserialize, Serialize};

/// The verdict of history on this run's failure or flake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HistoryVerdict {
    /// Flaked before, within the window.
    KnownFlaky,
    /// Flaky now, never flaky or failing in the window before.
    NewFlake,
    /// Failing now, passed in every earlier run of the window.
    NewFailure,
    /// Failing now and in the runs just before, since the run named by `failing_since`.
    FailingSince,
    /// Failing now, and failed in some earlier runs of the window (not the last one).
    Recurring,
    /// The test has no earlier run in history.
    FirstRun,
}

/// A run, as history names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRun {
    /// RFC 3339.
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// A test's record over the earlier runs in history (this run not counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestHistory {
    pub verdict: HistoryVerdict,
    /// Earlier runs of this test looked at (the newest, up to the window's size).
    pub runs: u32,
    /// Of those, how many ended flaky and how many failed.
    pub flaky_runs: u32,
    pub failed_runs: u32,
    /// The earliest run of this test in history (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    /// The earliest run in which it was flaky (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_flaky: Option<String>,
    /// For `failing-since`: the first run of the unbroken streak of failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<HistoryRun>,
    /// The branch of every run looked at, when they share one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

fn day(ts: &str) -> &str {
    ts.get(..10).unwrap_or(ts)
}

fn plural(n: u32, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

impl TestHistory {
    /// One line for people: "known flaky: flaked 7 of the last 50 runs, first on 2026-11-02".
    pub fn describe(&self) -> String {
        let last = |n: u32| {
            let of = self
                .branch
                .as_deref()
                .map(|b| format!(" of {b}"))
                .unwrap_or_default();
            if n == 1 {
                format!("the last run{of}")
            } else {
                format!("the last {n} runs{of}")
            }
        };
        match self.verdict {
            HistoryVerdict::KnownFlaky => {
                let mut s = format!(
                    "known flaky: flaked {} of {}",
                    self.flaky_runs,
                    last(self.runs)
                );
                if let Some(first) = &self.first_flaky {
                    s.push_str(&format!(", first on {}", day(first)));
                }
                s
            }
            HistoryVerdict::NewFlake => format!("new flake: first in {}", plural(self.runs, "run")),
            HistoryVerdict::NewFailure => format!("new failure: passed in {}", last(self.runs)),
            HistoryVerdict::FailingSince => match &self.failing_since {
                Some(HistoryRun {
                    commit: Some(c), ..
                }) => format!("failing since {}", c.get(..7).unwrap_or(c)),
                Some(run) => format!("failing since {}", day(&run.started_at)),
                None => "failing".to_owned(),
            },
            HistoryVerdict::Recurring => {
                format!(
                    "recurring failure: failed {} of {}",
                    self.failed_runs,
                    last(self.runs)
                )
            }
            HistoryVerdict::FirstRun => "first run in history".to_owned(),
        }
    }
}

/// What the run asks the history while it runs (`new_test_repeats`, `history_policy`), answered by the
/// history store. Every answer may be an error, said once in a warning: the run then goes on without
/// history, as if it had none.
pub(crate) trait Prior {
    /// Opens the history named by the `smart_rerun_history` setting.
    fn open(&mut self, location: &str) -> Result<(), String>;
    /// Of `nodeids`, which no earlier run ran (by position); `None` when the history has no runs yet,
    /// so that every test would count as new.
    fn unseen(&mut self, nodeids: &[&str]) -> Result<Option<Vec<bool>>, String>;
    /// In how many of its newest runs (up to 50) the test was flaky, and how many runs that is.
    fn flakes(&mut self, nodeid: &str) -> Result<(u32, u32), String>;
    /// In how many earlier runs the test failed for good with this failure fingerprint, when it never
    /// passed on a rerun after failing that way (0 otherwise).
    fn failed_for_good(&mut self, nodeid: &str, fingerprint: &str) -> Result<u32, String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(verdict: HistoryVerdict) -> TestHistory {
        TestHistory {
            verdict,
            runs: 50,
            flaky_runs: 7,
            failed_runs: 0,
            first_seen: Some("2026-10-01T08:00:00Z".into()),
            first_flaky: Some("2026-11-02T10:11:12Z".into()),
            failing_since: None,
            branch: None,
        }
    }

    #[test]
    fn verdicts_read_as_one_line() {
        assert_eq!(
            history(HistoryVerdict::KnownFlaky).describe(),
            "known flaky: flaked 7 of the last 50 runs, first on 2026-11-02"
        );
        assert_eq!(
            history(HistoryVerdict::NewFlake).describe(),
            "new flake: first in 50 runs"
        );
        let mut h = history(HistoryVerdict::NewFailure);
        h.branch = Some("main".into());
        assert_eq!(
            h.describe(),
            "new failure: passed in the last 50 runs of main"
        );
        let mut h = history(HistoryVerdict::FailingSince);
        h.failing_since = Some(HistoryRun {
            started_at: "2026-11-30T00:00:00Z".into(),
            commit: Some("abc1234def5678".into()),
        });
        assert_eq!(h.describe(), "failing since abc1234");
        h.failing_since = Some(HistoryRun {
            started_at: "2026-11-30T00:00:00Z".into(),
            commit: None,
        });
        assert_eq!(h.describe(), "failing since 2026-11-30");
        let mut h = history(HistoryVerdict::Recurring);
        h.failed_runs = 3;
        h.runs = 20;
        assert_eq!(
            h.describe(),
            "recurring failure: failed 3 of the last 20 runs"
        );
    }
}
