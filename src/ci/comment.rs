//! The sticky comment shared by GitHub PR comments and GitLab MR notes. The main type is
//! [`StickyComment`]: one comment, found by a hidden marker, holding one section per job (matrix leg,
//! parallel job), so jobs that finish in any order update their own section and keep the others'.
//!
//! ```text
//! <!-- smart-rerun:sticky v1 -->
//! <!-- smart-rerun:section key="test (3.12, ubuntu)" -->
//! ...the job's Markdown report...
//! <!-- smart-rerun:end-section -->
//! ```
//!
//! Section bodies are Markdown rendered by [`crate::report::markdown`], which escapes `<` in all
//! untrusted text, so a body can never forge a marker.

use std::collections::BTreeMap;

/// The hidden marker that identifies smart-rerun's comment.
pub const MARKER: &str = "<!-- smart-rerun:sticky v1 -->";
const SECTION_OPEN: &str = "<!-- smart-rerun:section key=\"";
const SECTION_CLOSE: &str = "<!-- smart-rerun:end-section -->";

/// A parsed sticky comment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StickyComment {
    /// Section bodies by key, in key order.
    pub sections: BTreeMap<String, String>,
}

impl StickyComment {
    /// Whether a comment body is smart-rerun's.
    pub fn is_ours(body: &str) -> bool {
        body.contains(MARKER)
    }

    /// Parses a comment body; text outside sections (an edit by hand) is dropped.
    pub fn parse(body: &str) -> StickyComment {
        let mut sections = BTreeMap::new();
        let mut rest = body;
        while let Some(start) = rest.find(SECTION_OPEN) {
            let after = &rest[start + SECTION_OPEN.len()..];
            let Some(key_end) = after.find("\" -->") else {
                break;
            };
            let key = after[..key_end].to_owned();
            let content = &after[key_end + "\" -->".len()..];
            let Some(end) = content.find(SECTION_CLOSE) else {
                break;
            };
            sections.insert(key, content[..end].trim_matches('\n').to_owned());
            rest = &content[end + SECTION_CLOSE.len()..];
        }
        StickyComment { sections }
    }

    /// Sets (replaces) one job's section.
    pub fn set(&mut self, key: &str, body: String) {
        self.sections.insert(section_key(key), body);
    }

    /// Renders the comment body.
    pub fn render(&self) -> String {
        let mut out = String::from(MARKER);
        out.push('\n');
        for (key, body) in &self.sections {
            out.push_str(SECTION_OPEN);
            out.push_str(key);
            out.push_str("\" -->\n");
            out.push_str(body);
            out.push('\n');
            out.push_str(SECTION_CLOSE);
            out.push('\n');
        }
        out
    }

    /// The bytes the comment has left for `key`'s section within `limit`, counting every other section
    /// and the markers, so a job never pushes the whole comment over the platform's limit.
    pub fn room_for(&self, key: &str, limit: usize) -> usize {
        let key = section_key(key);
        let others: usize = self
            .sections
            .iter()
            .filter(|(k, _)| **k != key)
            .map(|(k, b)| section_overhead(k) + b.len())
            .sum();
        let own_overhead = section_overhead(&key);
        limit.saturating_sub(MARKER.len() + 1 + others + own_overhead)
    }
}

/// The bytes a section adds besides its body: `OPEN key" -->\n` body `\n CLOSE \n`.
fn section_overhead(key: &str) -> usize {
    SECTION_OPEN.len() + key.len() + "\" -->\n".len() + 1 + SECTION_CLOSE.len() + 1
}

/// `smart-rerun comment`'s sections: the saved reports (file name, report) grouped by the section key
/// `key_of` gives each, in the order the keys first appear, each group merged into one report. A group
/// whose reports cannot be merged is left out.
pub fn merge_by_section(
    reports: Vec<(String, crate::report::RunReport)>,
    key_of: impl Fn(String, &crate::report::RunReport) -> String,
) -> Vec<(String, crate::report::RunReport)> {
    let mut groups: Vec<(String, Vec<crate::report::RunReport>)> = Vec::new();
    for (name, report) in reports {
        let key = key_of(name, &report);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(report),
            None => groups.push((key, vec![report])),
        }
    }
    groups
        .into_iter()
        .filter_map(|(key, list)| Some((key, crate::report::RunReport::merge(list)?)))
        .collect()
}

/// A section key safe inside the marker comment: printable, no quotes, no `--`, at most 200 chars.
pub fn section_key(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '"' | '<' | '>') {
                ' '
            } else {
                c
            }
        })
        .collect();
    let mut key = cleaned.replace("--", "- ");
    while key.contains("--") {
        key = key.replace("--", "- ");
    }
    let key = key.trim();
    let key = if key.is_empty() { "default" } else { key };
    key.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_survive_a_round_trip_and_jobs_keep_each_others() {
        let mut c = StickyComment::default();
        c.set("test (3.11)", "## a\n| x |".into());
        c.set("test (3.12)", "## b".into());
        let body = c.render();
        assert!(StickyComment::is_ours(&body));
        let mut again = StickyComment::parse(&body);
        assert_eq!(again, c);
        again.set("test (3.11)", "## a2".into());
        let updated = StickyComment::parse(&again.render());
        assert_eq!(updated.sections["test (3.11)"], "## a2");
        assert_eq!(updated.sections["test (3.12)"], "## b");
    }

    #[test]
    fn keys_cannot_break_the_marker() {
        let key = section_key("x\" --> <script> -- y\n");
        assert!(
            !key.contains('"') && !key.contains("--") && !key.contains('<') && !key.contains('\n'),
            "{key}"
        );
        assert_eq!(section_key("   "), "default");
    }

    #[test]
    fn room_accounts_for_the_other_sections() {
        let mut c = StickyComment::default();
        c.set("a", "x".repeat(1000));
        let room = c.room_for("b", 65_536);
        c.set("b", "y".repeat(room));
        assert_eq!(c.render().len(), 65_536, "the room is used exactly");
        assert!(room > 60_000);
    }
}
