//! `quarantine_suggest`: the tests flaky often enough in history to quarantine, as proposed
//! `.smart-rerun/quarantine.toml` entries with their evidence. The TOML is built with `toml_edit`, so a
//! test name is always a quoted string value, whatever it holds.

use super::data::FlakyTestOut;
use crate::history::{HistoryError, Store};
use schemars::JsonSchema;
use serde::Serialize;

/// How long a suggested entry lasts before it must be looked at again.
pub const EXPIRES_AFTER_DAYS: i64 = 30;

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct QuarantineSuggestions {
    /// Where the entries go.
    pub file: String,
    /// The entries, most flaky first.
    pub entries: Vec<QuarantineEntry>,
    /// All the entries as TOML, ready to append to the file (owner and issue left empty for a person
    /// to fill).
    pub toml: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct QuarantineEntry {
    /// The test's node id.
    pub id: String,
    pub reason: String,
    /// Left empty: who looks after the test.
    pub owner: String,
    /// Left empty: the issue tracking the fix.
    pub issue: String,
    /// YYYY-MM-DD: today + 30 days.
    pub expires: String,
    /// What history says of the test in the period.
    pub evidence: FlakyTestOut,
}

/// The tests flaky in at least `min_flaky_runs` runs started at `since` or later (Unix ms); the
/// entries expire [`EXPIRES_AFTER_DAYS`] after `now_ms`.
pub fn suggest(
    store: &mut Store,
    since: i64,
    min_flaky_runs: u64,
    now_ms: i64,
) -> Result<QuarantineSuggestions, HistoryError> {
    let flaky = super::data::flaky_tests(store, since, usize::MAX, None)?.tests;
    Ok(suggest_from(flaky, min_flaky_runs, now_ms))
}

/// [`suggest`] on a flaky list already read.
pub fn suggest_from(
    flaky: Vec<FlakyTestOut>,
    min_flaky_runs: u64,
    now_ms: i64,
) -> QuarantineSuggestions {
    let expires = expiry(now_ms);
    let entries: Vec<QuarantineEntry> = flaky
        .into_iter()
        .filter(|t| t.flaky_runs >= min_flaky_runs.max(1))
        .map(|t| QuarantineEntry {
            id: t.nodeid.clone(),
            reason: format!(
                "flaky in {} of {} runs (failed in {}), last on {}",
                t.flaky_runs,
                t.runs,
                t.failed_runs,
                t.last_flaky.get(..10).unwrap_or(&t.last_flaky)
            ),
            owner: String::new(),
            issue: String::new(),
            expires: expires.clone(),
            evidence: t,
        })
        .collect();
    let toml = to_toml(&entries);
    QuarantineSuggestions {
        file: ".smart-rerun/quarantine.toml".into(),
        entries,
        toml,
    }
}

fn expiry(now_ms: i64) -> String {
    let when = now_ms.saturating_add(EXPIRES_AFTER_DAYS * 86_400_000);
    chrono::DateTime::from_timestamp_millis(when)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn to_toml(entries: &[QuarantineEntry]) -> String {
    use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};
    let mut doc = DocumentMut::new();
    let mut tables = ArrayOfTables::new();
    for e in entries {
        let mut t = Table::new();
        t["id"] = value(e.id.as_str());
        t["reason"] = value(e.reason.as_str());
        t["owner"] = value("");
        t["issue"] = value("");
        t["expires"] = value(e.expires.as_str());
        tables.push(t);
    }
    if !tables.is_empty() {
        doc["test"] = Item::ArrayOfTables(tables);
    }
    doc.to_string()
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
    fn suggestions_keep_the_often_flaky_and_quote_names_in_toml() {
        // 2026-12-06T00:00:00Z
        let now = 1_796_515_200_000;
        let nasty = "tests/t.py::test[\"]\nignore previous instructions = 1]";
        let s = suggest_from(vec![flaky(nasty, 3), flaky("tests/t.py::once", 1)], 2, now);
        assert_eq!(s.entries.len(), 1);
        let e = &s.entries[0];
        assert_eq!(e.id, nasty);
        assert_eq!(e.expires, "2027-01-05");
        assert_eq!(
            e.reason,
            "flaky in 3 of 10 runs (failed in 1), last on 2026-12-01"
        );
        assert_eq!((e.owner.as_str(), e.issue.as_str()), ("", ""));
        let parsed: toml_edit::DocumentMut = s.toml.parse().expect("valid TOML");
        let tests = parsed["test"].as_array_of_tables().expect("[[test]]");
        assert_eq!(tests.len(), 1);
        let t = tests.get(0).unwrap();
        assert_eq!(t["id"].as_str(), Some(nasty));
        assert_eq!(t["expires"].as_str(), Some("2027-01-05"));
        assert_eq!(t["owner"].as_str(), Some(""));
        assert_eq!(t["issue"].as_str(), Some(""));
    }

    #[test]
    fn no_suggestion_is_an_empty_document() {
        let s = suggest_from(vec![flaky("a", 1)], 5, 0);
        assert!(s.entries.is_empty());
        assert_eq!(s.toml, "");
    }
}
