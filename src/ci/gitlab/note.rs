//! Writing the sticky note: find it, merge this job's section in, write, check, and explain any failure.

use super::api::{Api, ApiError, Note};
use super::{Job, NOTE_LIMIT, NoteOutcome, Section, TOKEN_FIX};
use crate::ci::comment::{self, StickyComment, Stored, Thread, Upsert, UpsertError, section_key};
use crate::ci::http::RetryPolicy;
use crate::report::markdown;
use std::time::Duration;

/// The first line of a section body: the pipeline that wrote it.
pub(super) const PIPELINE_TAG: &str = "<!-- smart-rerun:pipeline ";

/// Writes of the note before giving up on other jobs that keep rewriting it.
const WRITES: usize = 4;

/// Every call, retries included, ends within this.
const BUDGET: Duration = Duration::from_secs(120);

/// Posts (or updates) `sections` of the sticky merge request note; never blocks longer than about two
/// minutes. Whatever happens inside, even a panic, comes back as an outcome: the job's exit code stays
/// the tests'.
pub(crate) fn publish_note(job: &Job, sections: &[Section], retry: RetryPolicy) -> NoteOutcome {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        publish_note_inner(job, sections, retry)
    }))
    .unwrap_or_else(|_| NoteOutcome::Failed("internal error while posting (see above)".into()))
}

fn publish_note_inner(job: &Job, sections: &[Section], retry: RetryPolicy) -> NoteOutcome {
    let Some(token) = job.token.as_deref() else {
        return NoteOutcome::Skipped(if job.job_token {
            format!("merge request note skipped: CI_JOB_TOKEN cannot write notes; {TOKEN_FIX}")
        } else {
            format!("merge request note skipped: no GitLab token; {TOKEN_FIX}")
        });
    };
    let (Some(api_url), Some(project)) = (job.api_url.as_deref(), job.project.as_deref()) else {
        return NoteOutcome::Skipped(
            "merge request note skipped: CI_API_V4_URL or CI_PROJECT_ID is not set".into(),
        );
    };
    let api = match Api::new(api_url, token, retry, BUDGET) {
        Ok(api) => api,
        Err(e) => return NoteOutcome::Failed(e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return NoteOutcome::Failed(format!("cannot start the HTTP client: {e}")),
    };
    match runtime.block_on(post(&api, job, project, sections)) {
        Ok(outcome) => outcome,
        Err(e) => NoteOutcome::Failed(explain(&e, job)),
    }
}

async fn post(
    api: &Api,
    job: &Job,
    project: &str,
    sections: &[Section<'_>],
) -> Result<NoteOutcome, ApiError> {
    let (project, mr) = match job.mr_iid {
        Some(iid) => (project.to_owned(), iid),
        None => {
            let Some(sha) = job.sha.as_deref() else {
                return Ok(NoteOutcome::Skipped(
                    "merge request note skipped: not a merge request pipeline and CI_COMMIT_SHA is not set"
                        .into(),
                ));
            };
            let mrs = api.merge_requests_of_commit(project, sha).await?;
            match mrs.iter().find(|m| m.state == "opened") {
                Some(m) => (m.project_id.to_string(), m.iid),
                None => {
                    return Ok(NoteOutcome::Skipped(format!(
                        "merge request note skipped: no open merge request has commit {}",
                        short_sha(sha)
                    )));
                }
            }
        }
    };
    // Only the token's own notes: anyone can paste the marker into a note, and a note by someone else
    // cannot be edited anyway. A token that may not read its user falls back to the marker alone.
    let me = match api.current_user().await {
        Ok(user) => Some(user.id),
        Err(e) if e.status() == Some(401) => return Err(e),
        Err(_) => None,
    };
    let notes = Notes {
        api,
        project: &project,
        mr,
        me,
    };
    let keys: Vec<String> = sections.iter().map(|s| section_key(&s.key)).collect();
    let named = keys
        .iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let what = if keys.len() == 1 {
        "section"
    } else {
        "sections"
    };
    let render = |key: &str, room: usize| match sections.iter().find(|s| section_key(&s.key) == key)
    {
        Some(section) => fit(room, job, key, &*section.render),
        None => String::new(),
    };
    let keep = |comment: &mut StickyComment| {
        prune(comment, job.pipeline_id).map_err(|newer| {
            format!(
                "merge request note left as it is: !{mr} already shows pipeline {newer}, newer than this one"
            )
        })
    };
    let upsert = Upsert {
        keys: &keys,
        limit: NOTE_LIMIT,
        render: &render,
        keep: &keep,
        writes: WRITES,
        settle: Duration::ZERO,
    };
    match comment::upsert(&notes, &upsert).await {
        Ok(note) if note.confirmed => {
            let verb = if note.created { "posted" } else { "updated" };
            Ok(NoteOutcome::Posted(format!(
                "{verb} the merge request note on !{mr} ({what} {named})"
            )))
        }
        Ok(_) => Ok(NoteOutcome::Failed(format!(
            "other jobs kept rewriting the note on !{mr}; {what} {named} may be missing"
        ))),
        Err(UpsertError::Declined(why)) => Ok(NoteOutcome::Skipped(why)),
        Err(UpsertError::Api(e)) => Err(e),
    }
}

/// A merge request's notes as the sticky note sees them: the token user's own, with the marker.
struct Notes<'a> {
    api: &'a Api,
    project: &'a str,
    mr: u64,
    /// The token's user, when the token may read it.
    me: Option<u64>,
}

fn stored(note: Note) -> Stored {
    Stored {
        id: note.id,
        body: note.body,
        url: None,
    }
}

impl Thread for Notes<'_> {
    type Error = ApiError;

    async fn list(&self) -> Result<Vec<Stored>, ApiError> {
        let ours = |n: &Note| {
            !n.system
                && StickyComment::is_ours(&n.body)
                && self
                    .me
                    .is_none_or(|me| n.author.as_ref().is_some_and(|a| a.id == me))
        };
        let notes = self.api.notes(self.project, self.mr, &ours).await?;
        Ok(notes.into_iter().map(stored).collect())
    }

    /// Read back through the list, where the note was found in the first place.
    async fn get(&self, id: u64) -> Result<Option<Stored>, ApiError> {
        Ok(self.list().await?.into_iter().find(|n| n.id == id))
    }

    async fn create(&self, body: &str) -> Result<Stored, ApiError> {
        let note = self.api.create_note(self.project, self.mr, body).await?;
        Ok(stored(note))
    }

    async fn update(&self, id: u64, body: &str) -> Result<Stored, ApiError> {
        let note = self
            .api
            .update_note(self.project, self.mr, id, body)
            .await?;
        Ok(stored(note))
    }

    async fn delete(&self, id: u64) -> Result<(), ApiError> {
        self.api.delete_note(self.project, self.mr, id).await
    }
}

/// Drops sections written by older pipelines; `Err(newer)` when a newer pipeline has written one.
pub(super) fn prune(comment: &mut StickyComment, mine: Option<u64>) -> Result<(), u64> {
    let Some(mine) = mine else { return Ok(()) };
    if let Some(newer) = comment
        .sections
        .values()
        .filter_map(|b| pipeline_of(b))
        .filter(|&p| p > mine)
        .max()
    {
        return Err(newer);
    }
    comment
        .sections
        .retain(|_, body| pipeline_of(body).is_none_or(|p| p == mine));
    Ok(())
}

fn pipeline_of(section: &str) -> Option<u64> {
    section
        .strip_prefix(PIPELINE_TAG)?
        .split_once(" -->")?
        .0
        .parse()
        .ok()
}

/// A section: pipeline tag, a line naming the job, then the report, within `room` bytes.
pub(super) fn fit(room: usize, job: &Job, key: &str, render: &dyn Fn(usize) -> String) -> String {
    let mut head = String::new();
    if let Some(p) = job.pipeline_id {
        head.push_str(&format!("{PIPELINE_TAG}{p} -->\n"));
    }
    let mut facts = vec![format!("job {}", markdown::inline(key))];
    if let Some(p) = job.pipeline_id {
        facts.push(format!("pipeline {p}"));
    }
    if let Some(sha) = job.sha.as_deref() {
        facts.push(format!("commit {}", short_sha(sha)));
    }
    head.push_str(&format!("<sub>{}</sub>\n\n", facts.join(" · ")));
    let mut budget = room.saturating_sub(head.len());
    let mut section = String::new();
    for _ in 0..8 {
        section = format!("{head}{}", disarm(&render(budget)));
        if section.len() <= room {
            return section;
        }
        // Escaping for GitLab grew the text past the room; ask for less.
        budget = budget.saturating_sub(section.len() - room + 1024);
    }
    let mut end = room.min(section.len());
    while !section.is_char_boundary(end) {
        end -= 1;
    }
    section.truncate(end);
    section
}

/// Keeps GitLab from acting on text that came from the tested code:
///
/// - a line starting with `/` is a quick action when a note is created (`/merge`, `/approve`, `/close`),
///   run as the token's user. A traceback line can start with one; `&#47;` shows the same `/` in HTML
///   (inside `<pre>` too) and is no command.
/// - `#123`, `!123`, `&123`, `$123` link (and cross-reference) issues, merge requests, epics and
///   snippets; a zero-width space after the sigil leaves the text readable and unlinked. The `#` of an
///   HTML entity (`&#124;`) is left alone.
pub(super) fn disarm(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        let (lead, rest) = line.split_at(indent);
        out.push_str(lead);
        let rest = match rest.strip_prefix('/') {
            Some(after) => {
                out.push_str("&#47;");
                after
            }
            None => rest,
        };
        let mut prev = '\n';
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            out.push(c);
            let sigil = matches!(c, '#' | '!' | '&' | '$') && !(c == '#' && prev == '&');
            if sigil && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
                out.push('\u{200b}');
            }
            prev = c;
        }
    }
    out
}

fn short_sha(sha: &str) -> String {
    sha.chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(8)
        .collect()
}

/// One line: what GitLab said and what to do about it.
fn explain(e: &ApiError, job: &Job) -> String {
    let hint = match e.status() {
        Some(401) => {
            "the token was refused: expired, revoked or mistyped (CI_JOB_TOKEN cannot write notes)"
                .to_owned()
        }
        Some(403) => "the token may not write notes here: it needs the api scope and at least the \
             Reporter role in the project"
            .to_owned(),
        Some(404) => format!(
            "project {} or its merge request is not visible to this token",
            job.project.as_deref().unwrap_or("?")
        ),
        Some(429) => "GitLab's rate limit, still after retries".to_owned(),
        Some(s) if s >= 500 => "GitLab kept failing, still after retries".to_owned(),
        _ => String::new(),
    };
    let text = crate::errors::chain(e).replace(['\n', '\r'], " ");
    if hint.is_empty() {
        text
    } else {
        format!("{text}: {hint}")
    }
}
