//! Renderers of the [`RunReport`](crate::model::RunReport): the versioned JSON file (here), [`junit`],
//! [`markdown`] and the [`terminal`] summary. They read the model and nothing else.

pub(crate) mod junit;
pub(crate) mod markdown;
pub(crate) mod terminal;

use crate::model::RunReport;
use crate::model::SCHEMA_VERSION;
use std::io::{self, Write};
use std::path::Path;

impl RunReport {
    /// Writes the report as pretty JSON.
    pub fn write_json(&self, out: impl Write) -> io::Result<()> {
        let mut out = io::BufWriter::new(out);
        serde_json::to_writer_pretty(&mut out, self).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
        out.flush()
    }

    /// Writes the JSON report to `path`, creating parent directories, through a temporary file so a reader
    /// never sees half a report.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        crate::output::write_atomic(path, |file| self.write_json(file))
    }

    /// Reads a saved JSON report.
    pub fn load(path: &Path) -> Result<RunReport, LoadError> {
        let file = std::fs::File::open(path).map_err(|source| LoadError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let report: RunReport =
            serde_json::from_reader(io::BufReader::new(file)).map_err(|source| {
                LoadError::Parse {
                    path: path.display().to_string(),
                    source,
                }
            })?;
        if !(crate::model::OLDEST_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&report.schema_version)
        {
            return Err(LoadError::Version {
                path: path.display().to_string(),
                found: report.schema_version,
            });
        }
        Ok(report)
    }
}

/// A count and its noun, singular for one: `counted(1, "round")` is "1 round", `counted(3, "failed test")`
/// "3 failed tests". Every noun the reports count takes a plain "s".
pub(crate) fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `text` cut to `max_chars` characters, with an ellipsis when something was cut.
pub(crate) fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read report {path}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a smart-rerun JSON report")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path} has schema_version {found}; this smart-rerun reads versions {} to {SCHEMA_VERSION}",
        crate::model::OLDEST_SCHEMA_VERSION
    )]
    Version { path: String, found: u32 },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use serde_json::json;

    // Built from JSON, so fields added to the model later (with `serde(default)`) need no change here;
    // the snapshot shows them.
    fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
        serde_json::from_value(value).expect("the JSON matches the model")
    }

    /// A small report with fixed values: one passed, one flaky and one skipped test, two rounds.
    fn small_report() -> RunReport {
        let mut report: RunReport = from_json(json!({
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "smart-rerun", "version": "0.0.0-test"},
            "run": {
                "command": ["python", "-m", "pytest"],
                "cwd": "/work/project",
                "python_version": "3.12.1",
                "pytest_version": "8.3.4",
                "python_executable": null,
                "rootdir": "/work/project",
                "started_at": "2026-01-02T03:04:00Z",
                "finished_at": "2026-01-02T03:04:03.5Z",
                "duration_seconds": 3.5,
                "exit_code": 0,
                "exit_reason": "all tests passed; 1 flaky",
                "interrupted": false,
                "policy": {
                    "enabled": true,
                    "max_attempts": 2,
                    "delay_seconds": 0.0,
                    "backoff": "none",
                    "max_delay_seconds": null,
                    "errors": [],
                },
                "rounds": [
                    {
                        "number": 1,
                        "kind": "first",
                        "started_at": "2026-01-02T03:04:00Z",
                        "duration_seconds": 2.0,
                        "selected": 3,
                        "exit_status": 1,
                    },
                    {
                        "number": 2,
                        "kind": "rerun",
                        "started_at": "2026-01-02T03:04:02Z",
                        "duration_seconds": 1.25,
                        "selected": 1,
                        "exit_status": 0,
                    },
                ],
            },
            "summary": Summary::default(),
            "tests": [
                {
                    "nodeid": "tests/test_a.py::test_ok",
                    "outcome": "passed",
                    "file": "tests/test_a.py",
                    "line": 1,
                    "duration_seconds": 0.125,
                },
                {
                    "nodeid": "tests/test_a.py::test_flaky[a b]",
                    "outcome": "flaky",
                    "file": "tests/test_a.py",
                    "line": 4,
                    "duration_seconds": 0.5,
                    "classification": {
                        "category": "flaky-timing",
                        "confidence": 0.95,
                        "action": {"kind": "retry"},
                        "reason": "passed on attempt 2 after failing (a timeout)",
                        "source": "observed",
                    },
                    "attempts": [
                        {
                            "number": 1,
                            "round": 1,
                            "outcome": "failed",
                            "phase": "call",
                            "duration_seconds": 0.25,
                            "finished_at": "2026-01-02T03:04:01.5Z",
                            "exception": {
                                "type": "builtins.TimeoutError",
                                "mro": [
                                    "builtins.TimeoutError",
                                    "builtins.OSError",
                                    "builtins.Exception",
                                    "builtins.BaseException",
                                ],
                                "message": "timed out",
                            },
                            "crash": {"file": "tests/test_a.py", "line": 6},
                            "test_location": {"file": "tests/test_a.py", "line": 6},
                            "traceback": "E   TimeoutError: timed out",
                            "captured": [{"name": "Captured stdout call", "text": "connecting\n"}],
                            "fingerprint": "0123456789abcdef",
                            "classification": {
                                "category": "flaky-timing",
                                "confidence": 0.7,
                                "action": {"kind": "retry_with_delay", "seconds": 0.5},
                                "reason": "a timeout",
                                "source": "heuristic",
                            },
                        },
                        {
                            "number": 2,
                            "round": 2,
                            "outcome": "passed",
                            "duration_seconds": 0.5,
                            "finished_at": "2026-01-02T03:04:03Z",
                        },
                    ],
                },
                {
                    "nodeid": "tests/test_a.py::test_skipped",
                    "outcome": "skipped",
                    "file": "tests/test_a.py",
                    "line": 9,
                    "duration_seconds": 0.0,
                    "reason": "needs the network",
                },
            ],
        }));
        report.summarize();
        report
    }

    fn rendered(report: &RunReport) -> String {
        let mut out = Vec::new();
        report.write_json(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn summarize_counts_outcomes_reruns_and_rerun_time() {
        let s = small_report().summary;
        let expected = Summary {
            total: 3,
            passed: 1,
            flaky: 1,
            skipped: 1,
            reruns: 1,
            rerun_seconds: 1.25,
            ..Summary::default()
        };
        assert_eq!(s, expected);
    }

    #[test]
    fn truncation_counts_characters_and_says_it_cut() {
        assert_eq!(truncate("héllo wörld", 5), "héllo…");
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("", 0), "");
    }

    #[test]
    fn counts_are_singular_for_one_only() {
        assert_eq!(counted(0, "round"), "0 rounds");
        assert_eq!(counted(1, "round"), "1 round");
        assert_eq!(counted(2, "failed test"), "2 failed tests");
    }

    #[test]
    fn no_rerun_rounds_is_zero_rerun_seconds_never_negative_zero() {
        let mut report = small_report();
        report.run.rounds.retain(|r| r.kind != RoundKind::Rerun);
        report.summarize();
        assert!(
            report.summary.rerun_seconds == 0.0 && report.summary.rerun_seconds.is_sign_positive(),
            "{:?}",
            report.summary.rerun_seconds
        );
        let json = rendered(&report);
        assert!(json.contains("\"rerun_seconds\": 0.0,"), "{json}");
        assert!(!json.contains("-0.0"), "{json}");
    }

    #[test]
    fn json_rendering() {
        insta::assert_snapshot!(rendered(&small_report()));
    }

    #[test]
    fn a_saved_report_loads_back_unchanged() {
        let report = small_report();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/report.json");
        report.save(&path).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            written,
            rendered(&report),
            "save writes what write_json renders"
        );
        let loaded = RunReport::load(&path).unwrap();
        assert_eq!(
            serde_json::to_value(&loaded).unwrap(),
            serde_json::to_value(&report).unwrap()
        );
        assert_eq!(rendered(&loaded), written);
    }

    #[test]
    fn load_refuses_another_schema_version_and_non_reports() {
        let dir = tempfile::tempdir().unwrap();
        let mut report = small_report();
        report.schema_version = SCHEMA_VERSION + 1;
        let path = dir.path().join("future.json");
        report.save(&path).unwrap();
        let err = RunReport::load(&path).unwrap_err();
        assert!(matches!(err, LoadError::Version { found, .. } if found == SCHEMA_VERSION + 1));

        // A report saved before history existed still loads.
        report.schema_version = OLDEST_SCHEMA_VERSION;
        let path = dir.path().join("old.json");
        report.save(&path).unwrap();
        assert_eq!(RunReport::load(&path).unwrap().schema_version, 1);

        let path = dir.path().join("junk.json");
        std::fs::write(&path, "{\"schema_version\": 1}").unwrap();
        assert!(matches!(
            RunReport::load(&path).unwrap_err(),
            LoadError::Parse { .. }
        ));
        assert!(matches!(
            RunReport::load(&dir.path().join("missing.json")).unwrap_err(),
            LoadError::Io { .. }
        ));
    }

    #[test]
    fn the_published_schema_is_for_this_schema_version() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schema/report.schema.json")).unwrap();
        assert_eq!(
            schema["properties"]["schema_version"]["const"],
            SCHEMA_VERSION
        );
    }
}
