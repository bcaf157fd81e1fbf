//! GitLab CI: the report as one sticky merge request note. The main entry is [`publish_note`], called
//! after `smart-rerun run` ([`publish_run`]) and by `smart-rerun comment` ([`comment_from_reports`]); the
//! job's predefined variables are read into a [`Job`]; the calls themselves are in [`api`]. The JUnit
//! layout GitLab's test report needs is [`crate::report::junit::JunitCompat::Gitlab`].
//!
//! - The note is found by [`super::comment::MARKER`] among the notes the token's user wrote (all pages),
//!   updated in place, else created. Each job owns one section, keyed by its name (`CI_JOB_NAME`, which
//!   GitLab already suffixes with `1/3` for `parallel:` and `[a, b]` for `parallel:matrix`), so jobs that
//!   finish in any order keep each other's sections.
//! - Concurrent jobs: the note is re-read right before each write and read again after it. A job whose
//!   section went missing (another job wrote a stale copy) writes again; a job that created a second note
//!   while another job created the first merges into the oldest one and deletes its own.
//! - Each section remembers its pipeline (`CI_PIPELINE_ID`): a newer pipeline's job drops the sections of
//!   older pipelines (they describe an older commit), and an older pipeline's job leaves a note that a
//!   newer pipeline already wrote alone.
//! - Tokens: `SMART_RERUN_GITLAB_TOKEN` (also `smart_rerun_gitlab_token`), else `GITLAB_TOKEN`, sent as
//!   `PRIVATE-TOKEN` and never printed; `run` removes `SMART_RERUN_GITLAB_TOKEN` from pytest's
//!   environment. `CI_JOB_TOKEN` cannot write notes, so it is never used; when it is all there is, one
//!   line says so and how to fix it.
//! - Text from the tested code is escaped by the Markdown renderer; [`disarm`] also keeps GitLab from
//!   running a quick action (`/merge` at the start of a traceback line) or linking `#123`/`!123`
//!   references found in it.
//! - Failing to post is one warning line, never a failed job: the caller keeps its exit code.

pub mod api;

use super::comment::{self, StickyComment, Stored, Thread, Upsert, UpsertError, section_key};
use super::http::RetryPolicy;
use crate::config::{GitlabSettings, Settings};
use crate::model::{CiInfo, RunReport};
use crate::report::markdown::{self, Links};
use api::{Api, ApiError, Note};
use std::time::Duration;

/// GitLab's limit for a note body, in characters (this module counts bytes, which is stricter).
pub const NOTE_LIMIT: usize = 1_000_000;

/// Variables a token is read from, in order.
pub const TOKEN_VARS: [&str; 2] = ["SMART_RERUN_GITLAB_TOKEN", "GITLAB_TOKEN"];

/// How to get a token that can write notes; said whenever one is missing.
const TOKEN_FIX: &str = "add a project access token with the api scope as a masked CI/CD variable \
     SMART_RERUN_GITLAB_TOKEN (or turn the note off with SMART_RERUN_GITLAB_NOTE=false)";

/// The first line of a section body: the pipeline that wrote it.
const PIPELINE_TAG: &str = "<!-- smart-rerun:pipeline ";

/// Writes of the note before giving up on other jobs that keep rewriting it.
const WRITES: usize = 4;

/// Every call, retries included, ends within this.
const BUDGET: Duration = Duration::from_secs(120);

/// What a GitLab CI job's predefined variables say about where to post.
#[derive(Clone)]
pub struct Job {
    /// `CI_API_V4_URL` (self-hosted instances have their own).
    pub api_url: Option<String>,
    /// The project that holds the merge request: `CI_MERGE_REQUEST_PROJECT_ID` (a fork MR's target
    /// project), else `CI_PROJECT_ID`.
    pub project: Option<String>,
    /// `CI_MERGE_REQUEST_IID`, set in merge request pipelines only.
    pub mr_iid: Option<u64>,
    pub sha: Option<String>,
    pub pipeline_id: Option<u64>,
    /// The section key: the job's name.
    pub key: String,
    token: Option<String>,
    /// `CI_JOB_TOKEN` is set (and cannot write notes).
    job_token: bool,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("api_url", &self.api_url)
            .field("project", &self.project)
            .field("mr_iid", &self.mr_iid)
            .field("sha", &self.sha)
            .field("pipeline_id", &self.pipeline_id)
            .field("key", &self.key)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Job {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Job {
        let var = |name: &str| {
            env(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Job {
            api_url: var("CI_API_V4_URL"),
            project: var("CI_MERGE_REQUEST_PROJECT_ID").or_else(|| var("CI_PROJECT_ID")),
            mr_iid: var("CI_MERGE_REQUEST_IID").and_then(|v| v.parse().ok()),
            sha: var("CI_COMMIT_SHA"),
            pipeline_id: var("CI_PIPELINE_ID").and_then(|v| v.parse().ok()),
            key: job_key(env),
            token: TOKEN_VARS.iter().find_map(|n| var(n)),
            job_token: var("CI_JOB_TOKEN").is_some(),
        }
    }

    /// Overrides the section key (`smart-rerun comment --key`).
    pub fn with_key(mut self, key: &str) -> Job {
        self.key = section_key(key);
        self
    }
}

/// The job's section key: `CI_JOB_NAME`, with `CI_NODE_INDEX/CI_NODE_TOTAL` added when the name does not
/// already end with it (GitLab adds it to `parallel: N` job names; a script may not).
pub fn job_key(env: &dyn Fn(&str) -> Option<String>) -> String {
    let var = |name: &str| {
        env(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let name = var("CI_JOB_NAME").unwrap_or_else(|| "smart-rerun".into());
    let node = var("CI_NODE_INDEX").zip(var("CI_NODE_TOTAL"));
    let key = match node {
        Some((i, t)) if t != "1" && !name.ends_with(&format!(" {i}/{t}")) => {
            format!("{name} {i}/{t}")
        }
        _ => name,
    };
    section_key(&key)
}

/// How posting went; each is one line for the job log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteOutcome {
    Posted(String),
    /// Nothing to do, or nothing that can be done (no token, no merge request); not a problem.
    Skipped(String),
    /// A call failed: a warning, never a failed job.
    Failed(String),
}

impl NoteOutcome {
    /// The line for the job log: `Posted` and `Skipped` on stdout, `Failed` on stderr.
    pub fn print(&self, out: &mut dyn std::io::Write) {
        use std::io::Write as _;
        let _ = match self {
            NoteOutcome::Posted(m) | NoteOutcome::Skipped(m) => writeln!(out, "smart-rerun: {m}"),
            NoteOutcome::Failed(m) => writeln!(
                anstream::stderr(),
                "smart-rerun: warning: merge request note not posted: {m}"
            ),
        };
    }
}

/// One section of the note: its key and its Markdown within a byte budget.
pub struct Section<'a> {
    pub key: String,
    pub render: Box<dyn Fn(usize) -> String + 'a>,
}

/// Removes `SMART_RERUN_GITLAB_TOKEN` from this process's environment once the settings have read it,
/// so the pytest processes (the code under test, maybe a fork's) do not inherit it. `GITLAB_TOKEN` is
/// the user's own variable and stays.
pub fn forget_token() {
    if let Some(k) = crate::config::keys::key("smart_rerun_gitlab_token") {
        if std::env::var_os(k.env).is_some() {
            // SAFETY: called from `run` before any thread is started (signal handlers, runtimes); nothing
            // else reads or writes the environment concurrently.
            unsafe { std::env::remove_var(k.env) };
        }
    }
}

/// The report's `ci` block for a GitLab job: what `smart-rerun comment` needs later.
pub fn ci_info(settings: &GitlabSettings, env: &dyn Fn(&str) -> Option<String>) -> CiInfo {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    CiInfo {
        platform: "gitlab".into(),
        repository: var("CI_PROJECT_PATH"),
        pull_request: var("CI_MERGE_REQUEST_IID").and_then(|v| v.trim().parse().ok()),
        head_sha: var("CI_MERGE_REQUEST_SOURCE_BRANCH_SHA"),
        commit_sha: var("CI_COMMIT_SHA"),
        run_url: var("CI_JOB_URL"),
        comment_key: Some(
            settings
                .note_key
                .as_deref()
                .map(section_key)
                .unwrap_or_else(|| job_key(env)),
        ),
    }
}

/// After `smart-rerun run` under GitLab CI: this job's section of the merge request note.
pub fn publish_run(report: &RunReport, settings: &Settings, out: &mut dyn std::io::Write) {
    if !settings.gitlab.note {
        return;
    }
    if report.run.interrupted {
        // Cancelled: GitLab stops the job soon after its signal, too soon for API retries.
        NoteOutcome::Skipped("no merge request note: the run was interrupted".into()).print(out);
        return;
    }
    let env = |n: &str| std::env::var(n).ok();
    let mut job = Job::from_env(&env);
    if let Some(key) = settings.gitlab.note_key.as_deref() {
        job = job.with_key(key);
    }
    if let Some(token) = &settings.gitlab.token {
        job.token = Some(token.expose().to_owned()).filter(|t| !t.trim().is_empty());
    }
    let mut links = super::markdown_links(&env, report.run.rootdir.as_deref());
    links.report_hint = settings.report.as_ref().map(|p| p.display().to_string());
    let section = Section {
        key: job.key.clone(),
        render: Box::new(|budget| markdown::render(report, &links, budget)),
    };
    publish_note(&job, &[section], api::retry_policy()).print(out);
}

/// Why `smart-rerun comment` cannot post to GitLab (a usage error).
#[derive(Debug, thiserror::Error)]
pub enum CommentUsage {
    #[error(
        "no GitLab token: set SMART_RERUN_GITLAB_TOKEN (a project access token with the api scope; CI_JOB_TOKEN cannot write notes)"
    )]
    NoToken,
    #[error("no GitLab project: set CI_API_V4_URL and CI_PROJECT_ID, or pass --repo")]
    NoProject,
    #[error("the reports are for different merge requests ({0}): pass --pr")]
    ManyMergeRequests(String),
}

/// What `smart-rerun comment` was asked to do, under GitLab CI.
#[derive(Debug, Clone, Default)]
pub struct CommentRequest {
    /// The merge request IID (`--pr`).
    pub mr: Option<u64>,
    /// The project, by ID or path (`--repo`).
    pub project: Option<String>,
    /// Merge every report into one section with this key.
    pub key: Option<String>,
}

/// `smart-rerun comment` under GitLab CI: one section per job of the saved reports (their `ci` block
/// names it; else the file's name), or one merged section, written into the merge request's note.
pub fn comment_from_reports(
    reports: Vec<(String, RunReport)>,
    request: &CommentRequest,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<NoteOutcome, CommentUsage> {
    let mut job = Job::from_env(env);
    if job.token.is_none() {
        return Err(CommentUsage::NoToken);
    }
    if let Some(project) = &request.project {
        job.project = Some(project.clone());
    }
    if job.api_url.is_none() || job.project.is_none() {
        return Err(CommentUsage::NoProject);
    }
    let from_reports: Vec<u64> = {
        let mut mrs: Vec<u64> = reports
            .iter()
            .filter_map(|(_, r)| {
                r.ci.as_ref()
                    .filter(|c| c.platform == "gitlab")?
                    .pull_request
            })
            .collect();
        mrs.sort_unstable();
        mrs.dedup();
        mrs
    };
    job.mr_iid = match (request.mr.or(job.mr_iid), from_reports.as_slice()) {
        (Some(mr), _) => Some(mr),
        (None, [mr]) => Some(*mr),
        (None, []) => None,
        (None, many) => {
            return Err(CommentUsage::ManyMergeRequests(
                many.iter()
                    .map(|n| format!("!{n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
    };
    let merged: Vec<(String, RunReport, Links)> =
        crate::ci::comment::merge_by_section(reports, |name, report| {
            section_key(&request.key.clone().unwrap_or_else(|| {
                report
                    .ci
                    .as_ref()
                    .filter(|c| c.platform == "gitlab")
                    .and_then(|c| c.comment_key.clone())
                    .unwrap_or(name)
            }))
        })
        .into_iter()
        .map(|(key, report)| {
            let mut links = super::markdown_links(env, report.run.rootdir.as_deref());
            // A job page of this project only: the report is data, its URL is not trusted blindly.
            let jobs = env("CI_PROJECT_URL").map(|p| format!("{p}/-/jobs/"));
            if let Some(url) = report
                .ci
                .as_ref()
                .and_then(|c| c.run_url.clone())
                .filter(|u| {
                    jobs.as_deref()
                        .and_then(|j| u.strip_prefix(j))
                        .is_some_and(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
                })
            {
                links.run_url = Some(url);
            }
            links.report_hint = Some("the job's JSON report artifact".into());
            (key, report, links)
        })
        .collect();
    let sections: Vec<Section> = merged
        .iter()
        .map(|(key, report, links)| Section {
            key: key.clone(),
            render: Box::new(move |budget| markdown::render(report, links, budget)),
        })
        .collect();
    Ok(publish_note(&job, &sections, api::retry_policy()))
}

/// Posts (or updates) `sections` of the sticky merge request note; never blocks longer than about two
/// minutes. Whatever happens inside, even a panic, comes back as an outcome: the job's exit code stays
/// the tests'.
pub fn publish_note(job: &Job, sections: &[Section], retry: RetryPolicy) -> NoteOutcome {
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
fn prune(comment: &mut StickyComment, mine: Option<u64>) -> Result<(), u64> {
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
fn fit(room: usize, job: &Job, key: &str, render: &dyn Fn(usize) -> String) -> String {
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
pub fn disarm(text: &str) -> String {
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
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    let text = text.replace(['\n', '\r'], " ");
    if hint.is_empty() {
        text
    } else {
        format!("{text}: {hint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    /// A report with one flaky test (failed once, then passed) and one passed test.
    pub(crate) fn sample_report() -> RunReport {
        serde_json::from_value(serde_json::json!({
            "schema_version": 1,
            "tool": {"name": "smart-rerun", "version": "0.1.0"},
            "run": {
                "command": ["pytest"], "cwd": "/builds/g/p", "rootdir": "/builds/g/p",
                "started_at": "2026-11-02T10:00:00Z", "finished_at": "2026-11-02T10:00:03Z",
                "duration_seconds": 3.0, "exit_code": 0, "exit_reason": "all tests passed",
                "interrupted": false,
                "policy": {"enabled": true, "max_attempts": 2, "delay_seconds": 0.0, "backoff": "none",
                           "max_delay_seconds": null, "errors": []},
                "rounds": []
            },
            "summary": {"total": 2, "passed": 1, "failed": 0, "flaky": 1, "skipped": 0, "xfailed": 0,
                        "xpassed": 0, "errors": 0, "not_run": 0, "collection_errors": 0, "reruns": 1,
                        "rerun_seconds": 0.5},
            "tests": [
                {"nodeid": "tests/test_pay.py::test_gateway[eu]", "outcome": "flaky",
                 "file": "tests/test_pay.py", "line": 12, "duration_seconds": 0.2,
                 "attempts": [
                    {"number": 1, "round": 1, "outcome": "failed", "phase": "call",
                     "duration_seconds": 0.3,
                     "exception": {"type": "builtins.ConnectionResetError",
                                   "mro": ["ConnectionResetError", "ConnectionError", "OSError"],
                                   "message": "[Errno 104] Connection reset by peer"},
                     "traceback": "def test_gateway():\n>       pay()\nE       ConnectionResetError: [Errno 104] Connection reset by peer"},
                    {"number": 2, "round": 2, "outcome": "passed", "duration_seconds": 0.2}
                 ]},
                {"nodeid": "tests/test_pay.py::test_refund", "outcome": "passed",
                 "file": "tests/test_pay.py", "line": 30, "duration_seconds": 0.1}
            ]
        }))
        .expect("a valid report")
    }

    /// What GitLab's test report shows for a JUnit file, by the rules of its parser
    /// (`lib/gitlab/ci/parsers/test/junit.rb`) and suite (`lib/gitlab/ci/reports/test_suite.rb`): a
    /// testcase is failed, error or skipped by the presence of that element, else success (flaky and
    /// rerun elements are not read); one testcase per status and `suite_classname_name`; a failed or
    /// errored testcase turns the report red; a passed testcase shows no text.
    #[derive(Debug, Default)]
    struct GitlabView {
        /// (status, classname, name, the text GitLab shows)
        cases: Vec<(&'static str, String, String, String)>,
    }

    impl GitlabView {
        fn of(xml: &str) -> GitlabView {
            use quick_junit::{NonSuccessKind, TestCaseStatus};
            let report = quick_junit::Report::deserialize_from_str(xml).unwrap();
            let mut view = GitlabView::default();
            for suite in &report.test_suites {
                for case in &suite.test_cases {
                    let out = case
                        .system_out
                        .as_ref()
                        .map(|s| format!("System Out:\n\n{}", s.as_str()));
                    let (status, text) = match &case.status {
                        TestCaseStatus::Success { .. } => ("success", String::new()),
                        TestCaseStatus::NonSuccess {
                            kind, description, ..
                        } => (
                            if *kind == NonSuccessKind::Failure {
                                "failed"
                            } else {
                                "error"
                            },
                            [description.as_ref().map(|d| d.as_str().to_owned()), out]
                                .into_iter()
                                .flatten()
                                .collect::<Vec<_>>()
                                .join("\n\n"),
                        ),
                        TestCaseStatus::Skipped { description, .. } => (
                            "skipped",
                            description
                                .as_ref()
                                .map(|d| d.as_str().to_owned())
                                .unwrap_or_default(),
                        ),
                    };
                    let classname = case
                        .classname
                        .as_ref()
                        .map(|c| c.as_str().to_owned())
                        .unwrap_or_default();
                    let name = case.name.as_str().to_owned();
                    // A later testcase of the same status and name replaces the earlier one.
                    view.cases
                        .retain(|(s, c, n, _)| !(*s == status && *c == classname && *n == name));
                    view.cases.push((status, classname, name, text));
                }
            }
            view
        }

        fn red(&self) -> bool {
            self.cases.iter().any(|c| c.0 == "failed" || c.0 == "error")
        }

        fn find(&self, name: &str) -> Vec<&(&'static str, String, String, String)> {
            self.cases.iter().filter(|c| c.2 == name).collect()
        }
    }

    #[test]
    fn gitlab_shows_a_flaky_test_as_passed_plus_a_skipped_companion_with_the_failure() {
        use crate::report::junit::{JunitCompat, JunitOptions, to_junit};
        let report = sample_report();
        let xml = |compat| {
            to_junit(
                &report,
                &JunitOptions {
                    compat,
                    ..Default::default()
                },
            )
            .to_string()
            .unwrap()
        };

        let view = GitlabView::of(&xml(JunitCompat::Gitlab));
        assert!(
            !view.red(),
            "a test that passed never turns the report red: {view:?}"
        );
        let flaky = view.find("test_gateway[eu]");
        assert_eq!(flaky.len(), 1);
        assert_eq!(flaky[0].0, "success", "same name, same history: {view:?}");
        assert_eq!(flaky[0].1, "tests.test_pay");
        let companion = view.find("test_gateway[eu] [flaky]");
        assert_eq!(companion.len(), 1, "{view:?}");
        let (status, _, _, text) = companion[0];
        assert_eq!(*status, "skipped");
        assert!(
            text.contains("FLAKY")
                && text.contains("passed on attempt 2")
                && text.contains(
                    "attempt 1 failed: ConnectionResetError: [Errno 104] Connection reset by peer"
                )
                && text.contains(">       pay()"),
            "GitLab shows the failure and its traceback: {text}"
        );
        assert_eq!(view.find("test_refund")[0].0, "success");
        assert_eq!(view.cases.len(), 3);

        // Why not the others: Surefire's layout hides the flake (a plain pass, no text) ...
        let surefire = GitlabView::of(&xml(JunitCompat::Surefire));
        assert!(!surefire.red());
        assert_eq!(surefire.find("test_gateway[eu]")[0].3, "", "nothing shown");
        assert!(surefire.find("test_gateway[eu] [flaky]").is_empty());
        // ... and one testcase per attempt turns the report red for a test that passed.
        let per_attempt = GitlabView::of(&xml(JunitCompat::PerAttempt));
        assert!(per_attempt.red(), "{per_attempt:?}");
    }

    #[test]
    fn the_section_key_is_the_job_name_with_its_node() {
        let rows: &[(&[(&str, &str)], &str)] = &[
            (&[("CI_JOB_NAME", "pytest")], "pytest"),
            // GitLab names `parallel: 3` jobs "pytest 2/3" itself.
            (
                &[
                    ("CI_JOB_NAME", "pytest 2/3"),
                    ("CI_NODE_INDEX", "2"),
                    ("CI_NODE_TOTAL", "3"),
                ],
                "pytest 2/3",
            ),
            (
                &[
                    ("CI_JOB_NAME", "pytest"),
                    ("CI_NODE_INDEX", "2"),
                    ("CI_NODE_TOTAL", "3"),
                ],
                "pytest 2/3",
            ),
            (
                &[("CI_JOB_NAME", "test: [3.12, \"ubuntu\"]")],
                "test: [3.12,  ubuntu ]",
            ),
            (&[], "smart-rerun"),
        ];
        for (vars, key) in rows {
            let env = |n: &str| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            };
            assert_eq!(job_key(&env), *key, "{vars:?}");
        }
    }

    #[test]
    fn tokens_come_from_our_variables_never_from_the_job_token() {
        let job = Job::from_env(&env_of(&[
            ("CI_JOB_TOKEN", "job-token"),
            ("GITLAB_TOKEN", "glpat-second"),
            ("SMART_RERUN_GITLAB_TOKEN", "glpat-first"),
        ]));
        assert_eq!(job.token.as_deref(), Some("glpat-first"));
        assert!(!format!("{job:?}").contains("glpat"));
        let job = Job::from_env(&env_of(&[("CI_JOB_TOKEN", "job-token")]));
        assert!(job.token.is_none());
        let report = sample_report();
        let section = Section {
            key: job.key.clone(),
            render: Box::new(|b| markdown::render(&report, &Links::default(), b)),
        };
        let out = publish_note(&job, &[section], api::retry_policy());
        let NoteOutcome::Skipped(line) = out else {
            panic!("{out:?}")
        };
        assert!(
            line.contains("CI_JOB_TOKEN cannot write notes")
                && line.contains("api scope")
                && line.contains("SMART_RERUN_GITLAB_TOKEN")
                && !line.contains('\n'),
            "{line}"
        );
    }

    #[test]
    fn the_merge_request_lives_in_the_target_project() {
        let job = Job::from_env(&env_of(&[
            ("CI_PROJECT_ID", "11"),
            ("CI_MERGE_REQUEST_PROJECT_ID", "7"),
            ("CI_MERGE_REQUEST_IID", "3"),
        ]));
        assert_eq!(job.project.as_deref(), Some("7"));
        assert_eq!(job.mr_iid, Some(3));
    }

    #[test]
    fn quick_actions_and_references_from_tested_code_are_disarmed() {
        let text = "<pre>Traceback\n/merge\n  /approve now\nsee #12, !3 and &4 $5 &#124; #L10 issue#x\n</pre>";
        let out = disarm(text);
        for line in out.lines() {
            assert!(!line.trim_start().starts_with('/'), "{line:?}");
        }
        assert!(out.contains("&#47;merge") && out.contains("  &#47;approve now"));
        for reference in ["see #12", "!3 ", "&4 ", "$5 "] {
            assert!(!out.contains(reference), "{reference} in {out}");
        }
        assert!(out.contains("&#124;") && out.contains("#L10") && out.contains("issue#x"));
    }

    #[test]
    fn older_pipelines_give_way_and_newer_ones_are_left_alone() {
        let mut c = StickyComment::default();
        c.set("a", format!("{PIPELINE_TAG}10 -->\nold"));
        c.set("b", format!("{PIPELINE_TAG}12 -->\nsame"));
        c.set("c", "no tag".into());
        let mut newer = c.clone();
        assert_eq!(prune(&mut newer, Some(11)), Err(12));
        assert_eq!(prune(&mut c, Some(12)), Ok(()));
        assert_eq!(c.sections.keys().collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn a_section_fits_the_room_the_others_leave() {
        let mut c = StickyComment::default();
        c.set("other", "x".repeat(NOTE_LIMIT - 5_000));
        let job = Job::from_env(&env_of(&[("CI_JOB_NAME", "me"), ("CI_PIPELINE_ID", "5")]));
        // A renderer that fills its budget with text GitLab would act on.
        let render = |budget: usize| "/x #1\n".repeat(budget / 6);
        let section = fit(c.room_for("me", NOTE_LIMIT), &job, "me", &render);
        assert!(section.starts_with(&format!("{PIPELINE_TAG}5 -->\n")));
        c.set("me", section);
        assert!(c.render().len() <= NOTE_LIMIT);
    }
}
