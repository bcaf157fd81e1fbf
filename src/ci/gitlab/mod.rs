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
//! - Text from the tested code is escaped by the Markdown renderer; [`note::disarm`] also keeps GitLab from
//!   running a quick action (`/merge` at the start of a traceback line) or linking `#123`/`!123`
//!   references found in it.
//! - Failing to post is one warning line, never a failed job: the caller keeps its exit code.

pub(crate) mod api;
mod note;

use super::comment::section_key;
use crate::config::{GitlabSettings, Settings};
use crate::model::{CiInfo, RunReport};
use crate::report::markdown::{self, Links};
pub(crate) use note::publish_note;

/// GitLab's limit for a note body, in characters (this module counts bytes, which is stricter).
pub(crate) const NOTE_LIMIT: usize = 1_000_000;

/// Variables a token is read from, in order.
pub(crate) const TOKEN_VARS: [&str; 2] = ["SMART_RERUN_GITLAB_TOKEN", "GITLAB_TOKEN"];

/// How to get a token that can write notes; said whenever one is missing.
const TOKEN_FIX: &str = "add a project access token with the api scope as a masked CI/CD variable \
     SMART_RERUN_GITLAB_TOKEN (or turn the note off with SMART_RERUN_GITLAB_NOTE=false)";

/// What a GitLab CI job's predefined variables say about where to post.
#[derive(Clone)]
pub(crate) struct Job {
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
    pub(crate) fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Job {
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
    pub(crate) fn with_key(mut self, key: &str) -> Job {
        self.key = section_key(key);
        self
    }
}

/// The job's section key: `CI_JOB_NAME`, with `CI_NODE_INDEX/CI_NODE_TOTAL` added when the name does not
/// already end with it (GitLab adds it to `parallel: N` job names; a script may not).
pub(crate) fn job_key(env: &dyn Fn(&str) -> Option<String>) -> String {
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
pub(crate) enum NoteOutcome {
    Posted(String),
    /// Nothing to do, or nothing that can be done (no token, no merge request); not a problem.
    Skipped(String),
    /// A call failed: a warning, never a failed job.
    Failed(String),
}

impl NoteOutcome {
    /// The line for the job log: `Posted` and `Skipped` on stdout, `Failed` on stderr.
    pub(crate) fn print(&self, out: &mut dyn std::io::Write) {
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
pub(crate) struct Section<'a> {
    pub key: String,
    pub render: Box<dyn Fn(usize) -> String + 'a>,
}

/// Removes `SMART_RERUN_GITLAB_TOKEN` from this process's environment once the settings have read it,
/// so the pytest processes (the code under test, maybe a fork's) do not inherit it. `GITLAB_TOKEN` is
/// the user's own variable and stays.
pub(crate) fn forget_token() {
    if let Some(k) = crate::config::keys::key("smart_rerun_gitlab_token") {
        if std::env::var_os(k.env).is_some() {
            // SAFETY: called from `run` before any thread is started (signal handlers, runtimes); nothing
            // else reads or writes the environment concurrently.
            unsafe { std::env::remove_var(k.env) };
        }
    }
}

/// The report's `ci` block for a GitLab job: what `smart-rerun comment` needs later.
pub(crate) fn ci_info(settings: &GitlabSettings, env: &dyn Fn(&str) -> Option<String>) -> CiInfo {
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
pub(crate) fn publish_run(report: &RunReport, settings: &Settings, out: &mut dyn std::io::Write) {
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
pub(crate) enum CommentUsage {
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
pub(crate) struct CommentRequest {
    /// The merge request IID (`--pr`).
    pub mr: Option<u64>,
    /// The project, by ID or path (`--repo`).
    pub project: Option<String>,
    /// Merge every report into one section with this key.
    pub key: Option<String>,
}

/// `smart-rerun comment` under GitLab CI: one section per job of the saved reports (their `ci` block
/// names it; else the file's name), or one merged section, written into the merge request's note.
pub(crate) fn comment_from_reports(
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

#[cfg(test)]
mod tests;
