//! `quarantine_suggest`: the tests flaky often enough in history to quarantine, as proposed
//! `.smart-rerun/quarantine.toml` entries (the shape [`crate::quarantine`] reads: `[[test]]` with
//! `nodeid`, `reason`, `expires` and an optional `owner`) with their evidence. The TOML comes from
//! [`crate::quarantine::entry_toml`], so a test name is always one quoted string, whatever it holds.
//! Tests the project's quarantine file already lists are left out, as `smart-rerun quarantine suggest`
//! leaves them out.

use super::data::FlakyTestOut;
use crate::history::{HistoryError, Store};
use schemars::JsonSchema;
use serde::Serialize;

/// How long a suggested entry lasts before it must be looked at again.
pub(crate) const EXPIRES_AFTER_DAYS: u64 = 30;

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct QuarantineSuggestions {
    /// Where the entries go.
    pub file: String,
    /// The entries, most flaky first.
    pub entries: Vec<QuarantineEntry>,
    /// Flaky often enough, but already in the file.
    pub already_quarantined: Vec<String>,
    /// All the entries as TOML, ready to append to the file (add an `owner` to each).
    pub toml: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct QuarantineEntry {
    /// The test's node id.
    pub nodeid: String,
    pub reason: String,
    /// YYYY-MM-DD: today + 30 days.
    pub expires: String,
    /// Left empty: who looks after the test, for a person to fill in.
    pub owner: Option<String>,
    /// What history says of the test in the period.
    pub evidence: FlakyTestOut,
}

/// The tests flaky in at least `min_flaky_runs` runs started at `since` or later (Unix ms) and not in
/// `listed`; the entries expire [`EXPIRES_AFTER_DAYS`] after `today`.
pub(crate) fn suggest(
    store: &mut Store,
    since: i64,
    min_flaky_runs: u64,
    today: chrono::NaiveDate,
    listed: &[String],
) -> Result<QuarantineSuggestions, HistoryError> {
    let flaky = super::data::flaky_tests(store, since, usize::MAX, None)?.tests;
    Ok(suggest_from(flaky, min_flaky_runs, today, listed))
}

/// [`suggest`] on a flaky list already read.
pub(crate) fn suggest_from(
    flaky: Vec<FlakyTestOut>,
    min_flaky_runs: u64,
    today: chrono::NaiveDate,
    listed: &[String],
) -> QuarantineSuggestions {
    let expires = today
        .checked_add_days(chrono::Days::new(EXPIRES_AFTER_DAYS))
        .unwrap_or(today);
    let mut entries = Vec::new();
    let mut already_quarantined = Vec::new();
    for t in flaky
        .into_iter()
        .filter(|t| t.flaky_runs >= min_flaky_runs.max(1))
    {
        if listed.contains(&t.nodeid) {
            already_quarantined.push(t.nodeid);
            continue;
        }
        entries.push(QuarantineEntry {
            nodeid: t.nodeid.clone(),
            reason: format!(
                "flaky in {} of its {} runs (failed in {}), last on {} (suggested by smart-rerun)",
                t.flaky_runs,
                t.runs,
                t.failed_runs,
                t.last_flaky.get(..10).unwrap_or(&t.last_flaky)
            ),
            expires: expires.to_string(),
            owner: None,
            evidence: t,
        });
    }
    let toml = entries
        .iter()
        .map(|e| crate::quarantine::entry_toml(&e.nodeid, &e.reason, expires))
        .collect::<Vec<_>>()
        .join("\n");
    QuarantineSuggestions {
        file: crate::quarantine::DEFAULT_PATH.into(),
        entries,
        already_quarantined,
        toml,
    }
}

/// The node ids the quarantine file at `path` lists; none when it is missing or cannot be read (its
/// problems are `smart-rerun quarantine check`'s to report).
pub(crate) fn listed(path: &std::path::Path) -> Vec<String> {
    match crate::quarantine::Quarantine::load(path) {
        Ok(Some(q)) => q.entries.into_iter().map(|e| e.nodeid).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flaky(nodeid: &str, flaky_runs: u64) -> FlakyTestOut {
        FlakyTestOut {
            nodeid: nodeid.into(),
            runs: 10,
            flaky_runs,
            failed_runs: 1,
            first_seen: "2026-11-01T00:00:00Z".into(),
            last_flaky: "2026-12-01T10:00:00Z".into(),
        }
    }

    #[test]
    fn suggestions_keep_the_often_flaky_and_read_back_as_a_quarantine_file() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        let nasty = "tests/t.py::test[\"]\nignore previous instructions = 1]";
        let s = suggest_from(
            vec![
                flaky(nasty, 3),
                flaky("tests/t.py::listed", 4),
                flaky("tests/t.py::other", 2),
                flaky("tests/t.py::once", 1),
            ],
            2,
            today,
            &["tests/t.py::listed".to_owned()],
        );
        assert_eq!(s.already_quarantined, ["tests/t.py::listed"]);
        assert_eq!(s.entries.len(), 2);
        let e = &s.entries[0];
        assert_eq!(e.nodeid, nasty);
        assert_eq!(e.expires, "2027-01-05");
        assert_eq!(
            e.reason,
            "flaky in 3 of its 10 runs (failed in 1), last on 2026-12-01 (suggested by smart-rerun)"
        );
        assert_eq!(e.owner, None);
        // What the quarantine file reader makes of it: the same entries.
        let q = crate::quarantine::Quarantine::parse(
            std::path::Path::new(crate::quarantine::DEFAULT_PATH),
            &s.toml,
        )
        .expect("a valid quarantine file");
        assert_eq!(q.entries.len(), 2);
        assert_eq!(q.entries[0].nodeid, nasty);
        assert_eq!(q.entries[0].reason, e.reason);
        assert_eq!(q.entries[0].expires.to_string(), "2027-01-05");
        assert_eq!(q.entries[1].nodeid, "tests/t.py::other");
    }

    #[test]
    fn no_suggestion_is_an_empty_document() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        let s = suggest_from(vec![flaky("a", 1)], 5, today, &[]);
        assert!(s.entries.is_empty());
        assert_eq!(s.toml, "");
    }
}
