//! CI platforms, detected from the environment the job runs in. The main type is [`Platform`]; this module
//! also derives the links renderers put in Markdown (file at the commit, the CI run). Adapters read the
//! rendered output and the report, nothing else.

pub(crate) mod comment;
pub mod github;
pub(crate) mod gitlab;
pub(crate) mod http;

use crate::report::markdown::Links;
use std::path::Path;

/// Where smart-rerun is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Platform {
    GitHub,
    GitLab,
    Other,
}

impl Platform {
    pub(crate) fn detect(env: &dyn Fn(&str) -> Option<String>) -> Platform {
        if env("GITHUB_ACTIONS").as_deref() == Some("true") {
            Platform::GitHub
        } else if env("GITLAB_CI").as_deref() == Some("true") {
            Platform::GitLab
        } else {
            Platform::Other
        }
    }
}

/// Links for the Markdown report: files at the commit and the CI run, on GitHub and GitLab.
pub(crate) fn markdown_links(env: &dyn Fn(&str) -> Option<String>, rootdir: Option<&str>) -> Links {
    let mut links = Links::default();
    let nonempty = |name: &str| env(name).filter(|v| !v.is_empty());
    let (workspace, blob, run) = match Platform::detect(env) {
        Platform::GitHub => {
            let server =
                nonempty("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
            let repo = nonempty("GITHUB_REPOSITORY");
            let sha = nonempty("GITHUB_SHA");
            let blob = repo
                .as_ref()
                .zip(sha)
                .map(|(r, s)| format!("{server}/{r}/blob/{s}/"));
            let run = repo
                .zip(nonempty("GITHUB_RUN_ID"))
                .map(|(r, id)| format!("{server}/{r}/actions/runs/{id}"));
            (nonempty("GITHUB_WORKSPACE"), blob, run)
        }
        Platform::GitLab => {
            let blob = nonempty("CI_PROJECT_URL")
                .zip(nonempty("CI_COMMIT_SHA"))
                .map(|(p, s)| format!("{p}/-/blob/{s}/"));
            (nonempty("CI_PROJECT_DIR"), blob, nonempty("CI_JOB_URL"))
        }
        Platform::Other => (None, None, None),
    };
    links.run_url = run;
    // Test paths are relative to pytest's rootdir; links need them relative to the repository.
    if let (Some(blob), Some(ws), Some(root)) = (blob, workspace, rootdir) {
        if let Ok(rel) = Path::new(root).strip_prefix(&ws) {
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            links.path_prefix = if rel.is_empty() {
                String::new()
            } else {
                format!("{}/", rel.join("/"))
            };
            links.blob_base = Some(blob);
        }
    }
    links
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

    #[test]
    fn github_links_point_at_the_commit_and_the_run() {
        let env = env_of(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SERVER_URL", "https://ghe.example.com"),
            ("GITHUB_REPOSITORY", "o/r"),
            ("GITHUB_SHA", "abc123"),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_WORKSPACE", "/home/runner/work/r/r"),
        ]);
        let links = markdown_links(&env, Some("/home/runner/work/r/r/python"));
        assert_eq!(
            links.blob_base.as_deref(),
            Some("https://ghe.example.com/o/r/blob/abc123/")
        );
        assert_eq!(links.path_prefix, "python/");
        assert_eq!(
            links.run_url.as_deref(),
            Some("https://ghe.example.com/o/r/actions/runs/42")
        );
    }

    #[test]
    fn gitlab_links_and_no_links_elsewhere() {
        let env = env_of(&[
            ("GITLAB_CI", "true"),
            ("CI_PROJECT_URL", "https://gitlab.example.com/g/p"),
            ("CI_COMMIT_SHA", "def"),
            ("CI_JOB_URL", "https://gitlab.example.com/g/p/-/jobs/7"),
            ("CI_PROJECT_DIR", "/builds/g/p"),
        ]);
        let links = markdown_links(&env, Some("/builds/g/p"));
        assert_eq!(
            links.blob_base.as_deref(),
            Some("https://gitlab.example.com/g/p/-/blob/def/")
        );
        assert_eq!(links.path_prefix, "");
        assert_eq!(
            links.run_url.as_deref(),
            Some("https://gitlab.example.com/g/p/-/jobs/7")
        );
        let none = markdown_links(&env_of(&[]), Some("/x"));
        assert!(none.blob_base.is_none() && none.run_url.is_none());
    }
}
