//! GitHub Actions: annotations, the job summary, step outputs and the sticky PR comment, from the
//! [`RunReport`] and nothing else. The main entry is [`publish`], called once the run is over and its
//! files are written; [`commands::GuardedProgress`] keeps the tested code from issuing workflow commands
//! while it runs.
//!
//! Nothing here can fail the job: a comment GitHub refuses is one warning that says why and points to
//! the `workflow_run` recipe in docs/github.md, and the exit code stays the tests'.

pub(crate) mod annotations;
pub(crate) mod api;
pub(crate) mod commands;
pub(crate) mod env;
pub mod files;

use crate::config::GithubSettings;
use crate::model::{CiInfo, RunReport};
use crate::report::markdown::{self, Links};
pub(crate) use env::GithubEnv;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the docs explain fork pull requests and the `workflow_run` recipe: the section `## Fork pull
/// requests` of docs/github.md, by the anchor GitHub gives that heading.
pub(crate) const FORK_HELP: &str =
    "https://github.com/aki-07/smart-rerun/blob/main/docs/github.md#fork-pull-requests";

/// What the run wrote, for the step outputs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Written {
    pub report: Option<PathBuf>,
    pub junit: Option<PathBuf>,
}

/// How the PR comment went, for the job summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommentStatus {
    Off,
    /// No pull request, no token: nothing to do, said once on stdout.
    Skipped(String),
    Posted(api::Posted),
    Failed(String),
}

/// Everything GitHub gets at the end of `smart-rerun run`. `out` is stdout, with workflow commands
/// already resumed; `exit_code` is the run's, which this never changes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn publish(
    report: &RunReport,
    settings: &GithubSettings,
    gh: &GithubEnv,
    env: &dyn Fn(&str) -> Option<String>,
    written: &Written,
    exit_code: i32,
    out: &mut dyn Write,
) {
    let key = gh.comment_key(settings.comment_key.as_deref());
    let links = links(report, env, written);

    let comment = if !settings.comment {
        CommentStatus::Off
    } else {
        comment_from_run(report, settings, gh, env, &key, &links)
    };
    let mut warnings_used = 0;
    match &comment {
        CommentStatus::Skipped(why) => {
            let _ = writeln!(out, "smart-rerun: no PR comment: {why}");
        }
        CommentStatus::Posted(p) => {
            let verb = if p.created { "created" } else { "updated" };
            let _ = writeln!(
                out,
                "smart-rerun: PR comment {verb}{}",
                p.url
                    .as_deref()
                    .map(|u| format!(": {u}"))
                    .unwrap_or_default()
            );
        }
        CommentStatus::Failed(line) => {
            warnings_used = 1;
            let _ = writeln!(
                out,
                "::warning title=smart-rerun PR comment::{}",
                commands::escape_data(line)
            );
        }
        CommentStatus::Off => {}
    }

    let mut notes = Vec::new();
    if settings.annotations {
        let paths = annotations::Paths {
            rootdir: report.run.rootdir.as_ref().map(PathBuf::from),
            workspace: gh.workspace.clone(),
        };
        let a = annotations::annotations(report, &paths, warnings_used);
        for annotation in &a.shown {
            let _ = writeln!(out, "{}", annotation.to_command());
        }
        if a.errors_left_out + a.warnings_left_out > 0 {
            notes.push(format!(
                "Annotations: GitHub shows at most {} errors and {} warnings per step; {} failed and {} flaky \
                 tests are not annotated (all are listed above).",
                annotations::MAX_ERRORS,
                annotations::MAX_WARNINGS,
                a.errors_left_out,
                a.warnings_left_out
            ));
        }
    }
    match &comment {
        CommentStatus::Posted(p) => notes.push(match p.url.as_deref() {
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                format!("PR comment: [updated]({url}).")
            }
            _ => "PR comment: updated.".into(),
        }),
        CommentStatus::Failed(line) => notes.push(format!(
            "PR comment: not posted — {}",
            markdown::inline(line)
        )),
        _ => {}
    }
    let _ = out.flush();

    if settings.summary {
        if let Some(path) = &gh.step_summary {
            let notes_text: String = notes.iter().map(|n| format!("\n{n}\n")).collect();
            let budget = markdown::SUMMARY_BUDGET
                .saturating_sub(files::summary_used(path))
                .saturating_sub(notes_text.len() + 1);
            let text = format!("{}{notes_text}", markdown::render(report, &links, budget));
            if let Err(e) = files::append_summary(path, &text) {
                let _ = writeln!(
                    out,
                    "smart-rerun: failed to write the job summary {}: {e}",
                    path.display()
                );
            }
        }
    }

    if let Some(path) = &gh.output {
        let s = &report.summary;
        let path_text = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| absolute(p).display().to_string())
                .unwrap_or_default()
        };
        let outputs = [
            ("passed", s.passed.to_string()),
            ("failed", (s.failed + s.errors).to_string()),
            ("flaky", s.flaky.to_string()),
            ("skipped", s.skipped.to_string()),
            ("total", s.total.to_string()),
            ("exit-code", exit_code.to_string()),
            ("report-path", path_text(&written.report)),
            ("junit-path", path_text(&written.junit)),
        ];
        match files::write_outputs(path, &outputs) {
            Ok(refused) => {
                for e in refused {
                    let _ = writeln!(out, "smart-rerun: {e}");
                }
            }
            Err(e) => {
                let _ = writeln!(out, "smart-rerun: {e}");
            }
        }
    }
    let _ = out.flush();
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn links(report: &RunReport, env: &dyn Fn(&str) -> Option<String>, written: &Written) -> Links {
    let mut links = crate::ci::markdown_links(env, report.run.rootdir.as_deref());
    links.report_hint = written
        .report
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    links
}

/// The token: the setting (`SMART_RERUN_GITHUB_TOKEN`, `--github-token`), else `GITHUB_TOKEN`.
fn token(settings: &GithubSettings, gh: &GithubEnv) -> Option<String> {
    settings
        .token
        .as_ref()
        .map(|t| t.expose().to_owned())
        .filter(|t| !t.trim().is_empty())
        .or_else(|| gh.token.clone())
}

fn comment_from_run(
    report: &RunReport,
    settings: &GithubSettings,
    gh: &GithubEnv,
    env: &dyn Fn(&str) -> Option<String>,
    key: &str,
    links: &Links,
) -> CommentStatus {
    let Some(pr) = &gh.event else {
        return CommentStatus::Skipped(format!(
            "the {} event is not about a pull request",
            gh.event_name.as_deref().unwrap_or("current")
        ));
    };
    let Some(repo) = gh.repository.clone() else {
        return CommentStatus::Skipped("GITHUB_REPOSITORY is not set".into());
    };
    let Some(token) = token(settings, gh) else {
        return CommentStatus::Skipped(
            "no token: the action passes github-token; from a script, set SMART_RERUN_GITHUB_TOKEN or GITHUB_TOKEN"
                .into(),
        );
    };
    let target = api::Target {
        api_url: gh.api_url.clone(),
        repo,
        pr: pr.number,
        verify_head: None,
    };
    let render = |k: &str, room: usize| section(report, links, k, room);
    match api::post_sections(
        &target,
        &token,
        &api::ApiOptions::from_env(env),
        &[key.to_owned()],
        &render,
    ) {
        Ok(posted) => CommentStatus::Posted(posted),
        Err(f) => CommentStatus::Failed(failure_line(&f, &target, pr.is_fork())),
    }
}

/// One job's section: its key, then the Markdown report within `room` bytes.
pub(crate) fn section(report: &RunReport, links: &Links, key: &str, room: usize) -> String {
    let head = format!("**{}**\n\n", markdown::inline(key));
    if room <= head.len() {
        return markdown::render(report, links, room);
    }
    format!(
        "{head}{}",
        markdown::render(report, links, room - head.len())
    )
}

/// The one warning line for a comment that could not be written.
pub(crate) fn failure_line(f: &api::Failure, target: &api::Target, fork: bool) -> String {
    let advice = if matches!(f, api::Failure::ReadOnly { .. }) && fork {
        " Pull requests from forks get a read-only token: post the comment from a workflow_run job"
    } else if matches!(f, api::Failure::ReadOnly { .. }) {
        " Give the job `permissions: pull-requests: write`, or, for pull requests from forks, post from a workflow_run job"
    } else if f.is_permission() {
        " Check the token's access, or post from a workflow_run job"
    } else {
        ""
    };
    format!(
        "smart-rerun could not write the PR comment: {}.{advice} (see {FORK_HELP}). The tests' result is unchanged.",
        f.reason(target)
    )
}

/// The report's `ci` block for a run in GitHub Actions.
pub(crate) fn ci_info(gh: &GithubEnv, settings: &GithubSettings) -> CiInfo {
    gh.ci_info(settings.comment_key.as_deref())
}

/// What `smart-rerun comment` was asked to do.
#[derive(Debug, Clone, Default)]
pub(crate) struct CommentRequest {
    pub pr: Option<u64>,
    pub repo: Option<String>,
    /// Merge every report into one section with this key.
    pub key: Option<String>,
    pub token: Option<String>,
}

/// Why `smart-rerun comment` cannot start (a usage error).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommentUsage {
    #[error("no repository: pass --repo OWNER/NAME or set GITHUB_REPOSITORY")]
    NoRepository,
    #[error("no token: set SMART_RERUN_GITHUB_TOKEN or GITHUB_TOKEN")]
    NoToken,
    #[error("the reports are for different pull requests ({0}): pass --pr")]
    ManyPullRequests(String),
}

/// `smart-rerun comment`: one section per job of the saved reports (or one merged section), written into
/// the pull request's sticky comment. In a `workflow_run` job the reports and any number read from them
/// are the triggering run's, untrusted: the pull request must be at the commit that run tested, and the
/// repository and links come from this job's environment, not from the reports.
pub(crate) fn comment_from_reports(
    reports: Vec<(String, RunReport)>,
    request: &CommentRequest,
    gh: &GithubEnv,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<CommentStatus, CommentUsage> {
    let in_workflow_run = gh.workflow_run.is_some();
    let repo = request
        .repo
        .clone()
        .or_else(|| gh.repository.clone())
        .or_else(|| {
            // Outside Actions only: in a workflow_run job the reports are not to be trusted with it.
            (!in_workflow_run)
                .then(|| {
                    reports
                        .iter()
                        .find_map(|(_, r)| r.ci.as_ref()?.repository.clone())
                })
                .flatten()
        })
        .ok_or(CommentUsage::NoRepository)?;
    let token = request
        .token
        .clone()
        .filter(|t| !t.trim().is_empty())
        .or_else(|| gh.token.clone())
        .ok_or(CommentUsage::NoToken)?;

    // The pull request: given, else the event's, else the one GitHub names for the triggering run, else
    // the reports'.
    let trusted = gh
        .event
        .as_ref()
        .map(|p| p.number)
        .or_else(|| gh.workflow_run.as_ref()?.pull_requests.first().copied());
    let from_reports: Vec<u64> = {
        let mut prs: Vec<u64> = reports
            .iter()
            .filter_map(|(_, r)| r.ci.as_ref()?.pull_request)
            .collect();
        prs.sort_unstable();
        prs.dedup();
        prs
    };
    let pr = match (request.pr, trusted) {
        (Some(pr), _) => Some(pr),
        (None, Some(pr)) => Some(pr),
        (None, None) => match from_reports.as_slice() {
            [] => None,
            [one] => Some(*one),
            many => {
                return Err(CommentUsage::ManyPullRequests(
                    many.iter()
                        .map(|n| format!("#{n}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                ));
            }
        },
    };
    let Some(pr) = pr else {
        return Ok(CommentStatus::Skipped(
            "the reports and the event name no pull request".into(),
        ));
    };
    let verify_head = match &gh.workflow_run {
        Some(run) if !run.pull_requests.contains(&pr) => run.head_sha.clone(),
        _ => None,
    };
    let target = api::Target {
        api_url: gh.api_url.clone(),
        repo: repo.clone(),
        pr,
        verify_head: verify_head.clone(),
    };

    // Sections: one per job key, or all merged under the given key.
    let sections: Vec<(String, RunReport, Links)> =
        crate::ci::comment::merge_by_section(reports, |name, report| {
            request.key.clone().unwrap_or_else(|| {
                report
                    .ci
                    .as_ref()
                    .and_then(|c| c.comment_key.clone())
                    .unwrap_or(name)
            })
        })
        .into_iter()
        .map(|(key, report)| {
            let links = report_links(&report, gh, &repo, verify_head.as_deref(), env);
            (key, report, links)
        })
        .collect();
    let keys: Vec<String> = sections.iter().map(|(k, _, _)| k.clone()).collect();
    let render = |k: &str, room: usize| {
        sections
            .iter()
            .find(|(key, _, _)| crate::ci::comment::section_key(key) == k || key == k)
            .map(|(key, report, links)| section(report, links, key, room))
            .unwrap_or_default()
    };
    let fork = gh.event.as_ref().is_some_and(|p| p.is_fork());
    Ok(
        match api::post_sections(
            &target,
            &token,
            &api::ApiOptions::from_env(env),
            &keys,
            &render,
        ) {
            Ok(posted) => CommentStatus::Posted(posted),
            Err(f) => CommentStatus::Failed(failure_line(&f, &target, fork)),
        },
    )
}

/// Links for a saved report: files at the commit the run tested, the run that made the report — both
/// checked against this job's repository, since the report may come from untrusted code.
fn report_links(
    report: &RunReport,
    gh: &GithubEnv,
    repo: &str,
    trusted_sha: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Links {
    let mut links = crate::ci::markdown_links(env, report.run.rootdir.as_deref());
    let ci = report.ci.as_ref();
    let runs = format!("{}/{repo}/actions/runs/", gh.server_url);
    links.run_url = ci
        .and_then(|c| c.run_url.clone())
        .filter(|u| {
            u.strip_prefix(&runs).is_some_and(|id| {
                !id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '/')
            })
        })
        .or(links.run_url);
    let hex = |s: &str| (7..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit());
    let sha = trusted_sha
        .map(str::to_owned)
        .or_else(|| ci.and_then(|c| c.head_sha.clone().or(c.commit_sha.clone())))
        .filter(|s| hex(s));
    if let (Some(sha), Some(_)) = (sha, links.blob_base.as_ref()) {
        links.blob_base = Some(format!("{}/{repo}/blob/{sha}/", gh.server_url));
    }
    links.report_hint = Some("the uploaded JSON report".into());
    links
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `failed` tests failing with a long traceback, and `flaky` flaky ones.
    fn big_report(failed: usize, flaky: usize) -> RunReport {
        let traceback = format!("{}\n", "x".repeat(200)).repeat(60);
        let failure = |n: u32| {
            json!({"number": n, "round": n, "outcome": "failed", "phase": "call", "duration_seconds": 0.1,
                   "exception": {"type": "builtins.AssertionError", "mro": ["builtins.AssertionError"],
                                 "message": "no"},
                   "traceback": traceback})
        };
        let mut tests = Vec::new();
        for i in 0..failed {
            tests.push(
                json!({"nodeid": format!("tests/test_a.py::test_f{i}"), "outcome": "failed",
                              "file": "tests/test_a.py", "line": 1, "duration_seconds": 0.1,
                              "attempts": [failure(1), failure(2)]}),
            );
        }
        for i in 0..flaky {
            tests.push(json!({"nodeid": format!("tests/test_a.py::test_k{i}"), "outcome": "flaky",
                              "file": "tests/test_a.py", "line": 1, "duration_seconds": 0.1,
                              "attempts": [failure(1), {"number": 2, "round": 2, "outcome": "passed",
                                                        "duration_seconds": 0.1}]}));
        }
        let mut r: RunReport = serde_json::from_value(json!({
            "schema_version": crate::model::SCHEMA_VERSION,
            "tool": {"name": "smart-rerun", "version": "0"},
            "run": {"command": ["pytest"], "cwd": "/ws", "python_version": null, "pytest_version": null,
                    "python_executable": null, "rootdir": "/ws", "started_at": "", "finished_at": "",
                    "duration_seconds": 1.0, "exit_code": 1, "exit_reason": "", "interrupted": false,
                    "policy": {"enabled": true, "max_attempts": 2, "delay_seconds": 0.0, "backoff": "none",
                               "max_delay_seconds": null, "errors": []},
                    "rounds": []},
            "summary": {"total": 0, "passed": 0, "failed": 0, "flaky": 0, "skipped": 0, "xfailed": 0,
                        "xpassed": 0, "errors": 0, "not_run": 0, "collection_errors": 0, "reruns": 0,
                        "rerun_seconds": 0.0},
            "tests": tests,
        }))
        .unwrap();
        r.summarize();
        r
    }

    #[test]
    fn the_summary_stays_within_a_mebibyte_and_says_what_was_not_annotated() {
        let dir = tempfile::tempdir().unwrap();
        let summary = dir.path().join("summary.md");
        std::fs::write(&summary, "# an earlier step's summary\n".repeat(1000)).unwrap();
        let gh = GithubEnv {
            workspace: Some("/ws".into()),
            step_summary: Some(summary.clone()),
            output: Some(dir.path().join("output")),
            ..Default::default()
        };
        let settings = GithubSettings {
            comment: false,
            ..Default::default()
        };
        let report = big_report(300, 12);
        let mut out = Vec::new();
        publish(
            &report,
            &settings,
            &gh,
            &|_| None,
            &Written::default(),
            1,
            &mut out,
        );
        let size = std::fs::metadata(&summary).unwrap().len() as usize;
        assert!(size <= markdown::SUMMARY_BUDGET, "{size}");
        let text = std::fs::read_to_string(&summary).unwrap();
        assert!(
            text.contains("Left out to fit the size limit"),
            "the report was cut to fit, not written whole"
        );
        assert!(
            text.contains("290 failed and 2 flaky tests are not annotated"),
            "{}",
            &text[text.len().saturating_sub(500)..]
        );
        let printed = String::from_utf8(out).unwrap();
        assert_eq!(
            printed
                .lines()
                .filter(|l| l.starts_with("::error "))
                .count(),
            10
        );
        assert_eq!(
            printed
                .lines()
                .filter(|l| l.starts_with("::warning "))
                .count(),
            10
        );
        let outputs =
            files::parse_outputs(&std::fs::read_to_string(dir.path().join("output")).unwrap());
        assert!(outputs.contains(&("failed".to_owned(), "300".to_owned())));
        assert!(outputs.contains(&("exit-code".to_owned(), "1".to_owned())));
    }

    /// GitHub's anchor for a Markdown heading: lowercase, punctuation but `-` and `_` dropped, spaces as
    /// `-`.
    fn slug(heading: &str) -> String {
        heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect()
    }

    #[test]
    fn the_fork_help_link_is_a_heading_of_the_docs() {
        let (page, anchor) = FORK_HELP.split_once('#').unwrap();
        let path = page
            .strip_prefix("https://github.com/aki-07/smart-rerun/blob/main/")
            .expect("a page of this repository");
        let text =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        let anchors: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with('#'))
            .map(|l| slug(l.trim_start_matches('#')))
            .collect();
        assert!(
            anchors.iter().any(|a| a == anchor),
            "{anchor} is none of {anchors:?}"
        );
        assert_eq!(
            slug("## `smart-rerun comment`".trim_start_matches('#')),
            "smart-rerun-comment"
        );
    }
}
