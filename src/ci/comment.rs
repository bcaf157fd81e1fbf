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
//!
//! [`upsert`] writes a job's sections into the comment wherever it lives: any [`Thread`] (GitHub's
//! pull request comments, GitLab's merge request notes) that can list, create, update and delete.
//! Neither platform has a conditional update, so concurrent jobs are handled by reading back:
//!
//! - the comment is re-read right before each write, and a job only replaces its own sections;
//! - two jobs that both find no comment both create one: each then lists again, and the one that is not
//!   the oldest deletes its own and writes into the oldest;
//! - after an update the job reads the comment back (after a pause when it holds other jobs' sections,
//!   so a concurrent writer has landed) and writes again if a stale copy dropped its sections.

use std::collections::BTreeMap;
use std::time::Duration;

/// The hidden marker that identifies smart-rerun's comment.
pub(crate) const MARKER: &str = "<!-- smart-rerun:sticky v1 -->";
const SECTION_OPEN: &str = "<!-- smart-rerun:section key=\"";
const SECTION_CLOSE: &str = "<!-- smart-rerun:end-section -->";

/// A parsed sticky comment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StickyComment {
    /// Section bodies by key, in key order.
    pub sections: BTreeMap<String, String>,
}

impl StickyComment {
    /// Whether a comment body is smart-rerun's.
    pub(crate) fn is_ours(body: &str) -> bool {
        body.contains(MARKER)
    }

    /// Parses a comment body; text outside sections (an edit by hand) is dropped.
    pub(crate) fn parse(body: &str) -> StickyComment {
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
    pub(crate) fn set(&mut self, key: &str, body: String) {
        self.sections.insert(section_key(key), body);
    }

    /// Renders the comment body.
    pub(crate) fn render(&self) -> String {
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
    pub(crate) fn room_for(&self, key: &str, limit: usize) -> usize {
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
pub(crate) fn merge_by_section(
    reports: Vec<(String, crate::model::RunReport)>,
    key_of: impl Fn(String, &crate::model::RunReport) -> String,
) -> Vec<(String, crate::model::RunReport)> {
    let mut groups: Vec<(String, Vec<crate::model::RunReport>)> = Vec::new();
    for (name, report) in reports {
        let key = key_of(name, &report);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(report),
            None => groups.push((key, vec![report])),
        }
    }
    groups
        .into_iter()
        .filter_map(|(key, list)| Some((key, crate::model::RunReport::merge(list)?)))
        .collect()
}

/// A comment as a [`Thread`] stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub id: u64,
    pub body: String,
    /// Where a person can see it, if the platform says.
    pub url: Option<String>,
}

/// Where a sticky comment lives: the few calls [`upsert`] needs.
#[allow(async_fn_in_trait)] // used generically inside the crate, never as `dyn`
pub(crate) trait Thread {
    type Error;
    /// smart-rerun's comments (the marker, by an author it may take as its own), oldest first.
    async fn list(&self) -> Result<Vec<Stored>, Self::Error>;
    /// One comment as it is now; `None` when it is gone.
    async fn get(&self, id: u64) -> Result<Option<Stored>, Self::Error>;
    async fn create(&self, body: &str) -> Result<Stored, Self::Error>;
    async fn update(&self, id: u64, body: &str) -> Result<Stored, Self::Error>;
    async fn delete(&self, id: u64) -> Result<(), Self::Error>;
}

/// What [`upsert`] writes, and how.
pub(crate) struct Upsert<'a> {
    /// This job's section keys, as [`section_key`] makes them.
    pub keys: &'a [String],
    /// The platform's limit for a comment body, in bytes.
    pub limit: usize,
    /// A section's body for `(key, room in bytes)`; it must fit the room.
    pub render: &'a dyn Fn(&str, usize) -> String,
    /// Applied to the comment as read, before this job's sections go in: it may drop stale sections, or
    /// decline to write at all (the reason comes back as [`UpsertError::Declined`]).
    pub keep: &'a dyn Fn(&mut StickyComment) -> Result<(), String>,
    /// Writes before giving up on jobs that keep rewriting the comment.
    pub writes: usize,
    /// The pause before reading back a comment that holds other jobs' sections (up to twice as long, at
    /// random).
    pub settle: Duration,
}

/// The comment was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upserted {
    pub id: u64,
    /// The comment is the one this job created.
    pub created: bool,
    pub url: Option<String>,
    /// Read back with this job's sections in it; `false` when other jobs kept rewriting it.
    pub confirmed: bool,
}

#[derive(Debug)]
pub(crate) enum UpsertError<E> {
    /// A call failed.
    Api(E),
    /// `keep` declined to write.
    Declined(String),
}

impl<E> From<E> for UpsertError<E> {
    fn from(e: E) -> Self {
        UpsertError::Api(e)
    }
}

/// Writes this job's sections into the thread's sticky comment, creating it if there is none (see the
/// module's docs for how concurrent jobs are handled).
pub(crate) async fn upsert<T: Thread>(
    thread: &T,
    job: &Upsert<'_>,
) -> Result<Upserted, UpsertError<T::Error>> {
    let mut last = None;
    for _ in 0..job.writes.max(1) {
        let found = thread.list().await?;
        let oldest = found.first();
        let mut comment = oldest
            .map(|c| StickyComment::parse(&c.body))
            .unwrap_or_default();
        (job.keep)(&mut comment).map_err(UpsertError::Declined)?;
        fill(&mut comment, job.keys, job.limit, job.render);
        let (stored, created) = match oldest {
            Some(c) => (thread.update(c.id, &comment.render()).await?, false),
            None => (thread.create(&comment.render()).await?, true),
        };
        let written = Upserted {
            id: stored.id,
            created,
            url: stored.url.clone(),
            confirmed: false,
        };
        let now = if created {
            let found = thread.list().await?;
            match found.into_iter().next() {
                Some(first) if first.id != stored.id => {
                    // Another job created one too, earlier: fold into it (next round) and drop ours. A
                    // failed delete leaves a duplicate, not a missing section.
                    let _ = thread.delete(stored.id).await;
                    last = Some(written);
                    continue;
                }
                // Not listed at all (an author the list does not trust): creating again would only
                // add duplicates.
                None => Some(stored),
                first => first,
            }
        } else {
            if comment.sections.keys().any(|k| !job.keys.contains(k)) {
                // Up to twice `settle`: parallel jobs read back at different moments.
                tokio::time::sleep(job.settle + crate::ci::http::jitter(job.settle * 4)).await;
            }
            thread.get(stored.id).await?
        };
        if now.is_some_and(|now| holds(&now.body, &comment, job.keys)) {
            return Ok(Upserted {
                confirmed: true,
                ..written
            });
        }
        last = Some(written);
    }
    Ok(last.expect("at least one write"))
}

/// Writes `keys`' sections into `comment`, each within a fair share of `limit`: what the other sections
/// leave, split among this job's, and never more than an equal share of the whole.
pub(crate) fn fill(
    comment: &mut StickyComment,
    keys: &[String],
    limit: usize,
    render: &dyn Fn(&str, usize) -> String,
) {
    for k in keys {
        comment.sections.remove(k);
    }
    let total = comment.sections.len() + keys.len();
    for (i, k) in keys.iter().enumerate() {
        let fair = limit / total.max(1);
        let room = (comment.room_for(k, limit) / (keys.len() - i)).min(fair);
        let body = render(k, room);
        comment.set(k, body);
    }
}

/// Whether `body` holds `keys`' sections as `written` has them, whatever whitespace the platform
/// normalised.
fn holds(body: &str, written: &StickyComment, keys: &[String]) -> bool {
    let squeeze = |t: &str| t.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let now = StickyComment::parse(body);
    keys.iter().all(|k| {
        now.sections.get(k).map(|b| squeeze(b)) == written.sections.get(k).map(|b| squeeze(b))
    })
}

/// A section key safe inside the marker comment: printable, no quotes, no `--`, at most 200 chars.
pub(crate) fn section_key(raw: &str) -> String {
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

    /// A thread in memory, with the other jobs a test needs: one that creates a comment right before ours
    /// does, one that writes a stale copy right after each of our updates.
    #[derive(Default)]
    struct Memory {
        comments: std::sync::Mutex<Vec<Stored>>,
        next: std::sync::atomic::AtomicU64,
        /// Created (as another job's) just before our next create.
        rival: std::sync::Mutex<Option<String>>,
        /// Written over the comment after this many of our updates, each.
        stale_writes: std::sync::atomic::AtomicUsize,
        stale: String,
        /// Our created comments are not listed (an author the list does not trust).
        unlisted: bool,
        calls: std::sync::Mutex<Vec<String>>,
    }

    impl Memory {
        fn with(bodies: &[&str]) -> Memory {
            let m = Memory::default();
            for b in bodies {
                m.add(b);
            }
            m
        }

        fn add(&self, body: &str) -> Stored {
            let id = 100 + self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let c = Stored {
                id,
                body: body.to_owned(),
                url: Some(format!("https://example.com/{id}")),
            };
            self.comments.lock().unwrap().push(c.clone());
            c
        }

        fn bodies(&self) -> Vec<String> {
            let all = self.comments.lock().unwrap();
            all.iter().map(|c| c.body.clone()).collect()
        }

        fn writes(&self) -> Vec<String> {
            let calls = self.calls.lock().unwrap();
            calls
                .iter()
                .filter(|c| *c != "list" && *c != "get")
                .cloned()
                .collect()
        }

        fn call(&self, what: &str) {
            self.calls.lock().unwrap().push(what.to_owned());
        }
    }

    impl Thread for Memory {
        type Error = String;

        async fn list(&self) -> Result<Vec<Stored>, String> {
            self.call("list");
            let all = self.comments.lock().unwrap().clone();
            Ok(all
                .into_iter()
                .filter(|c| StickyComment::is_ours(&c.body) && !(self.unlisted && c.id >= 100))
                .collect())
        }

        async fn get(&self, id: u64) -> Result<Option<Stored>, String> {
            self.call("get");
            Ok(self
                .comments
                .lock()
                .unwrap()
                .iter()
                .find(|c| c.id == id)
                .cloned())
        }

        async fn create(&self, body: &str) -> Result<Stored, String> {
            self.call("create");
            if let Some(rival) = self.rival.lock().unwrap().take() {
                self.add(&rival);
            }
            Ok(self.add(body))
        }

        async fn update(&self, id: u64, body: &str) -> Result<Stored, String> {
            self.call("update");
            let mut all = self.comments.lock().unwrap();
            let c = all.iter_mut().find(|c| c.id == id).ok_or("404")?;
            c.body = body.to_owned();
            let written = c.clone();
            if self.stale_writes.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                self.stale_writes
                    .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                c.body = self.stale.clone();
            }
            Ok(written)
        }

        async fn delete(&self, id: u64) -> Result<(), String> {
            self.call("delete");
            self.comments.lock().unwrap().retain(|c| c.id != id);
            Ok(())
        }
    }

    fn section(key: &str, body: &str) -> String {
        let mut c = StickyComment::default();
        c.set(key, body.into());
        c.render()
    }

    /// Upserts `keys` (each rendered as "`key` report") into `thread`.
    fn run(
        thread: &Memory,
        keys: &[&str],
        keep: &dyn Fn(&mut StickyComment) -> Result<(), String>,
    ) -> Result<Upserted, UpsertError<String>> {
        let keys: Vec<String> = keys.iter().map(|k| section_key(k)).collect();
        let render = |k: &str, _room: usize| format!("{k} report");
        let job = Upsert {
            keys: &keys,
            limit: 65_536,
            render: &render,
            keep,
            writes: 4,
            settle: Duration::ZERO,
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(upsert(thread, &job))
    }

    fn keys_of(body: &str) -> Vec<String> {
        StickyComment::parse(body).sections.into_keys().collect()
    }

    #[test]
    fn the_first_job_creates_the_comment_and_the_next_updates_it_in_place() {
        let thread = Memory::with(&["LGTM"]);
        let first = run(&thread, &["test (3.11)"], &|_| Ok(())).unwrap();
        assert!(first.created && first.confirmed, "{first:?}");
        assert_eq!(first.url.as_deref(), Some("https://example.com/101"));
        let second = run(&thread, &["test (3.12)"], &|_| Ok(())).unwrap();
        assert_eq!((second.id, second.created), (first.id, false));
        let bodies = thread.bodies();
        assert_eq!(bodies[0], "LGTM", "other comments are left alone");
        assert_eq!(keys_of(&bodies[1]), ["test (3.11)", "test (3.12)"]);
        assert!(bodies[1].contains("test (3.12) report"));
        assert_eq!(thread.writes(), ["create", "update"]);
    }

    #[test]
    fn a_job_that_created_a_second_comment_folds_into_the_oldest() {
        let thread = Memory::default();
        *thread.rival.lock().unwrap() = Some(section("rival", "rival report"));
        let done = run(&thread, &["mine"], &|_| Ok(())).unwrap();
        let bodies = thread.bodies();
        assert_eq!(bodies.len(), 1, "ours was deleted: {bodies:?}");
        assert_eq!(keys_of(&bodies[0]), ["mine", "rival"]);
        assert_eq!((done.id, done.created, done.confirmed), (100, false, true));
        assert_eq!(thread.writes(), ["create", "delete", "update"]);
    }

    #[test]
    fn a_stale_copy_written_over_ours_is_written_again_and_endless_ones_are_given_up() {
        let stale = section("other", "other report");
        let thread = Memory {
            stale: stale.clone(),
            stale_writes: 1.into(),
            ..Memory::with(&[&stale])
        };
        let done = run(&thread, &["mine"], &|_| Ok(())).unwrap();
        assert!(done.confirmed);
        assert_eq!(keys_of(&thread.bodies()[0]), ["mine", "other"]);
        assert_eq!(thread.writes(), ["update", "update"]);

        let thread = Memory {
            stale: stale.clone(),
            stale_writes: 100.into(),
            ..Memory::with(&[&stale])
        };
        let done = run(&thread, &["mine"], &|_| Ok(())).unwrap();
        assert!(!done.confirmed, "{done:?}");
        assert_eq!(thread.writes().len(), 4, "bounded");
    }

    #[test]
    fn keep_can_drop_sections_or_decline_to_write() {
        let thread = Memory::with(&[&section("old", "old report")]);
        run(&thread, &["new"], &|c: &mut StickyComment| {
            c.sections.remove("old");
            Ok(())
        })
        .unwrap();
        assert_eq!(keys_of(&thread.bodies()[0]), ["new"]);
        let declined = run(&thread, &["newer"], &|_| {
            Err("a newer pipeline wrote it".into())
        });
        assert!(
            matches!(&declined, Err(UpsertError::Declined(why)) if why == "a newer pipeline wrote it"),
            "{declined:?}"
        );
        assert_eq!(thread.writes(), ["update"]);
    }

    #[test]
    fn a_created_comment_the_list_does_not_show_is_not_created_again() {
        let thread = Memory {
            unlisted: true,
            ..Memory::default()
        };
        let done = run(&thread, &["mine"], &|_| Ok(())).unwrap();
        assert!(done.created);
        assert_eq!(thread.writes(), ["create"]);
    }

    #[test]
    fn sections_share_the_limit_fairly() {
        let mut sticky = StickyComment::default();
        sticky.set("other", "o".repeat(40_000));
        let keys = vec!["a".to_owned(), "b".to_owned()];
        fill(&mut sticky, &keys, 65_536, &|_, room| "x".repeat(room));
        assert!(sticky.render().len() <= 65_536);
        let (a, b) = (sticky.sections["a"].len(), sticky.sections["b"].len());
        assert!(a <= 65_536 / 3 && b > 10_000, "{a} {b}");
        assert_eq!(
            sticky.sections["other"].len(),
            40_000,
            "others' sections are kept"
        );
    }
}
