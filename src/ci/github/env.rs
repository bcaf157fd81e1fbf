//! What the Actions runner tells a step about itself: the variables, the event payload and the files a
//! step writes to. The main type is [`GithubEnv`]; it is read once, through a lookup function, so tests
//! can give any environment.

use crate::model::CiInfo;
use std::path::PathBuf;

/// The runner's environment, as far as smart-rerun uses it.
#[derive(Debug, Clone, Default)]
pub(crate) struct GithubEnv {
    /// `GITHUB_API_URL` (GitHub Enterprise Server: `https://HOST/api/v3`).
    pub api_url: String,
    pub server_url: String,
    /// `owner/name`.
    pub repository: Option<String>,
    pub sha: Option<String>,
    pub run_id: Option<String>,
    /// The job's id in the workflow (the same for every matrix leg).
    pub job: Option<String>,
    /// The matrix values the action passes (`toJSON(matrix)`), in order.
    pub matrix: Vec<String>,
    pub workspace: Option<PathBuf>,
    pub step_summary: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub event_name: Option<String>,
    pub event: Option<PullRequest>,
    /// For a `workflow_run` event: the run that triggered this one.
    pub workflow_run: Option<WorkflowRun>,
    /// `SMART_RERUN_GITHUB_TOKEN` / `--github-token` are settings; this is the fallback.
    pub token: Option<String>,
}

/// The pull request an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PullRequest {
    pub number: u64,
    pub head_sha: Option<String>,
    /// `owner/name` of the head repository; differs from the base for a fork.
    pub head_repo: Option<String>,
    pub base_repo: Option<String>,
}

impl PullRequest {
    /// A pull request from a fork: GitHub gives its `pull_request` workflows a read-only token.
    pub(crate) fn is_fork(&self) -> bool {
        matches!((&self.head_repo, &self.base_repo), (Some(h), Some(b)) if h != b)
    }
}

/// The run a `workflow_run` event is about. Its fields come from GitHub, not from the triggering run's
/// code: they can be trusted where the uploaded reports cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkflowRun {
    pub head_sha: Option<String>,
    /// Pull requests GitHub associates with the run; empty for pull requests from forks.
    pub pull_requests: Vec<u64>,
}

/// The environment variable through which the action passes `toJSON(matrix)`.
pub(crate) const MATRIX_ENV: &str = "SMART_RERUN_GITHUB_MATRIX";

impl GithubEnv {
    pub(crate) fn read(env: &dyn Fn(&str) -> Option<String>) -> GithubEnv {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let event_name = get("GITHUB_EVENT_NAME");
        let payload = get("GITHUB_EVENT_PATH")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
        let event = payload.as_ref().and_then(pull_request_of);
        let workflow_run = payload.as_ref().and_then(workflow_run_of);
        GithubEnv {
            api_url: get("GITHUB_API_URL")
                .unwrap_or_else(|| "https://api.github.com".into())
                .trim_end_matches('/')
                .to_owned(),
            server_url: get("GITHUB_SERVER_URL")
                .unwrap_or_else(|| "https://github.com".into())
                .trim_end_matches('/')
                .to_owned(),
            repository: get("GITHUB_REPOSITORY"),
            sha: get("GITHUB_SHA"),
            run_id: get("GITHUB_RUN_ID"),
            job: get("GITHUB_JOB"),
            matrix: get(MATRIX_ENV)
                .map(|m| matrix_values(&m))
                .unwrap_or_default(),
            workspace: get("GITHUB_WORKSPACE").map(PathBuf::from),
            step_summary: get("GITHUB_STEP_SUMMARY").map(PathBuf::from),
            output: get("GITHUB_OUTPUT").map(PathBuf::from),
            event_name,
            event,
            workflow_run,
            token: get("GITHUB_TOKEN"),
        }
    }

    pub(crate) fn run_url(&self) -> Option<String> {
        let repo = self.repository.as_ref()?;
        let id = self.run_id.as_ref()?;
        Some(format!("{}/{repo}/actions/runs/{id}", self.server_url))
    }

    /// This job's section of the sticky comment: the configured key, else the job id with the matrix
    /// values, as GitHub names matrix jobs (`test (3.12, ubuntu-latest)`).
    pub(crate) fn comment_key(&self, configured: Option<&str>) -> String {
        if let Some(k) = configured {
            return k.to_owned();
        }
        let job = self.job.clone().unwrap_or_else(|| "tests".into());
        if self.matrix.is_empty() {
            job
        } else {
            format!("{job} ({})", self.matrix.join(", "))
        }
    }

    /// The report's `ci` block.
    pub(crate) fn ci_info(&self, configured_key: Option<&str>) -> CiInfo {
        CiInfo {
            platform: "github".into(),
            repository: self.repository.clone(),
            pull_request: self.event.as_ref().map(|p| p.number),
            head_sha: self.event.as_ref().and_then(|p| p.head_sha.clone()),
            commit_sha: self.sha.clone(),
            run_url: self.run_url(),
            comment_key: Some(self.comment_key(configured_key)),
        }
    }
}

/// The pull request of a `pull_request` or `pull_request_target` payload (any payload with a
/// `pull_request` object, as `pull_request_review` has too).
pub(crate) fn pull_request_of(payload: &serde_json::Value) -> Option<PullRequest> {
    let pr = payload.get("pull_request")?;
    let number = pr.get("number")?.as_u64()?;
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_owned);
    Some(PullRequest {
        number,
        head_sha: text(pr.pointer("/head/sha")),
        head_repo: text(pr.pointer("/head/repo/full_name")),
        base_repo: text(pr.pointer("/base/repo/full_name")),
    })
}

/// The triggering run of a `workflow_run` payload.
pub(crate) fn workflow_run_of(payload: &serde_json::Value) -> Option<WorkflowRun> {
    let run = payload.get("workflow_run")?;
    Some(WorkflowRun {
        head_sha: run
            .get("head_sha")
            .and_then(|s| s.as_str())
            .map(str::to_owned),
        pull_requests: run
            .get("pull_requests")
            .and_then(|p| p.as_array())
            .map(|prs| {
                prs.iter()
                    .filter_map(|pr| pr.get("number").and_then(|n| n.as_u64()))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// The values of `toJSON(matrix)`, in the workflow's order (how GitHub names matrix jobs): strings as
/// they are, other values as JSON. `null` (no matrix) and anything unparsable give none.
pub(crate) fn matrix_values(json: &str) -> Vec<String> {
    struct Ordered(Vec<String>);
    struct Visit;
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = Ordered;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
            let mut values = Vec::new();
            while let Some((_, v)) = map.next_entry::<String, serde_json::Value>()? {
                values.push(match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                });
            }
            Ok(Ordered(values))
        }
    }
    impl<'de> serde::Deserialize<'de> for Ordered {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(Visit)
        }
    }
    serde_json::from_str::<Ordered>(json)
        .map(|o| o.0)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_request_payloads_and_forks() {
        let payload = serde_json::json!({
            "action": "synchronize",
            "number": 12,
            "pull_request": {
                "number": 12,
                "head": {"sha": "abc", "repo": {"full_name": "fork/r"}},
                "base": {"repo": {"full_name": "o/r"}},
            }
        });
        let pr = pull_request_of(&payload).unwrap();
        assert_eq!(pr.number, 12);
        assert_eq!(pr.head_sha.as_deref(), Some("abc"));
        assert!(pr.is_fork());
        assert!(pull_request_of(&serde_json::json!({"ref": "refs/heads/main"})).is_none());
    }

    #[test]
    fn matrix_values_keep_their_order_and_name_the_section() {
        assert_eq!(
            matrix_values(r#"{"python": "3.12", "os": "ubuntu-latest", "shard": 2}"#),
            ["3.12", "ubuntu-latest", "2"]
        );
        assert!(matrix_values("null").is_empty());
        let env = GithubEnv {
            job: Some("test".into()),
            matrix: matrix_values(r#"{"python": "3.12", "os": "ubuntu"}"#),
            ..Default::default()
        };
        assert_eq!(env.comment_key(None), "test (3.12, ubuntu)");
        assert_eq!(env.comment_key(Some("mine")), "mine");
    }
}
