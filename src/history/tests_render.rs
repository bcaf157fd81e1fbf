//! What history says, as every renderer shows it: from the report model alone (the renderers never see
//! the store), escaped like any other untrusted text — a branch name is chosen by whoever pushed it.

use crate::ci::github::annotations::{Paths, annotations};
use crate::model::{HistoryRun, HistoryVerdict, Outcome, RunReport, TestHistory};
use crate::report::{markdown, terminal};
use crate::sample;

fn with_history() -> RunReport {
    let mut r = sample::every_outcome();
    for t in &mut r.tests {
        t.history = match t.outcome {
            Outcome::Flaky => Some(Box::new(TestHistory {
                verdict: HistoryVerdict::KnownFlaky,
                runs: 50,
                flaky_runs: 7,
                failed_runs: 0,
                first_seen: Some("2026-10-01T00:00:00Z".into()),
                first_flaky: Some("2026-11-02T10:00:00Z".into()),
                failing_since: None,
                branch: None,
            })),
            Outcome::Failed | Outcome::Error => Some(Box::new(TestHistory {
                verdict: HistoryVerdict::FailingSince,
                runs: 12,
                flaky_runs: 0,
                failed_runs: 3,
                first_seen: None,
                first_flaky: None,
                failing_since: Some(HistoryRun {
                    started_at: "2026-11-01T00:00:00Z".into(),
                    commit: Some("abc1234ffff".into()),
                }),
                branch: Some("<b>x|y</b>@team".into()),
            })),
            _ => None,
        };
    }
    r
}

#[test]
fn the_terminal_summary_says_it_under_each_listed_test() {
    let r = with_history();
    let text = terminal::render_summary(&r);
    assert!(
        text.contains("history: known flaky: flaked 7 of the last 50 runs, first on 2026-11-02"),
        "{text}"
    );
    assert!(text.contains("history: failing since abc1234"), "{text}");
    // Nothing without history.
    let plain = terminal::render_summary(&sample::every_outcome());
    assert!(!plain.contains("history:"), "{plain}");
}

#[test]
fn markdown_says_it_in_the_classification_cell_escaped() {
    // `:` is escaped in cells (it would start an :emoji: code); the rendered text reads the same.
    let mut r = with_history();
    let failed = r
        .tests
        .iter_mut()
        .find(|t| t.outcome == Outcome::Failed)
        .unwrap();
    failed.history.as_mut().unwrap().verdict = HistoryVerdict::NewFailure;
    let text = markdown::render(&r, &markdown::Links::default(), markdown::COMMENT_BUDGET);
    assert!(
        text.contains(
            "**history**: known flaky\\: flaked 7 of the last 50 runs, first on 2026-11-02"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "**history**: new failure\\: passed in the last 12 runs of &lt;b&gt;x&#124;y&lt;/b&gt;@\u{200b}team"
        ),
        "{text}"
    );
    assert!(!text.contains("<b>x"), "{text}");
}

#[test]
fn annotations_say_it_after_the_verdict() {
    let r = with_history();
    let a = annotations(&r, &Paths::default(), 0);
    let flaky = a
        .shown
        .iter()
        .find(|a| a.title.starts_with("Flaky"))
        .unwrap();
    assert!(
        flaky
            .message
            .contains("\nHistory: known flaky: flaked 7 of the last 50 runs, first on 2026-11-02"),
        "{}",
        flaky.message
    );
    let failed = a
        .shown
        .iter()
        .find(|a| a.title.starts_with("Failed"))
        .unwrap();
    assert!(
        failed.message.contains("\nHistory: failing since abc1234"),
        "{}",
        failed.message
    );
    // Escaped as the rest of the message: one command line.
    assert_eq!(failed.to_command().lines().count(), 1);
}

#[test]
fn the_json_report_carries_the_block_and_reads_it_back() {
    let r = with_history();
    let mut buf = Vec::new();
    r.write_json(&mut buf).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&buf).unwrap();
    let flaky = doc["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["outcome"] == "flaky")
        .unwrap();
    assert_eq!(
        flaky["history"],
        serde_json::json!({
            "verdict": "known-flaky", "runs": 50, "flaky_runs": 7, "failed_runs": 0,
            "first_seen": "2026-10-01T00:00:00Z", "first_flaky": "2026-11-02T10:00:00Z",
        })
    );
    let back: RunReport = serde_json::from_slice(&buf).unwrap();
    assert_eq!(
        back.tests.iter().filter(|t| t.history.is_some()).count(),
        r.tests.iter().filter(|t| t.history.is_some()).count()
    );
}
