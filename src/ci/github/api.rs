//! The sticky PR comment through GitHub's REST API: octocrab's typed calls and models, against
//! `GITHUB_API_URL`, so GitHub Enterprise Server works. The main entry is [`post_sections`]; the comment
//! itself is [`crate::ci::comment::upsert`]'s, over the pull request's comments as a
//! [`crate::ci::comment::Thread`].
//!
//! The comment is found by its hidden marker among *all* the pull request's comments (following the
//! `Link` header page by page, on the API's own origin only), written by a bot or by someone with write
//! access, so a drive-by commenter cannot plant a marker and have smart-rerun rewrite their comment.
//!
//! Failures never fail the job: the caller turns a [`Failure`] into one warning. Only what retrying can
//! fix is retried — 5xx, network errors, and rate limits that reset within [`ApiOptions::max_wait`] —
//! as [`crate::ci::http::retrying`] does it, within [`ApiOptions::deadline`]. octocrab's client sends the
//! token to the API's host only and drops it on a redirect to another origin.

use crate::ci::comment::{self, Stored, Thread, Upsert, UpsertError, section_key};
use crate::ci::http::{self, Failed, Retry, RetryPolicy};
use octocrab::models::issues::Comment;
use octocrab::models::{AuthorAssociation, CommentId};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// GitHub's limit for a comment body.
pub(crate) const COMMENT_LIMIT: usize = 65_536;

/// Where the comment goes.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `https://api.github.com`, or `https://HOST/api/v3`.
    pub api_url: String,
    /// `owner/name`.
    pub repo: String,
    pub pr: u64,
    /// In a `workflow_run` job, the commit the triggering run tested: the pull request's head must be
    /// it, or the number (from an uploaded, untrusted report) is refused.
    pub verify_head: Option<String>,
}

/// Retry and time limits.
#[derive(Debug, Clone)]
pub(crate) struct ApiOptions {
    /// Attempts after the first, for a request that can succeed later.
    pub retries: u32,
    /// The first retry's pause; doubled each time.
    pub backoff: Duration,
    /// The longest a rate limit is waited out.
    pub max_wait: Duration,
    /// The whole operation's budget.
    pub deadline: Duration,
    /// One request's budget.
    pub timeout: Duration,
    /// The pause before reading a shared comment back.
    pub verify_delay: Duration,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            retries: 3,
            backoff: Duration::from_secs(1),
            max_wait: Duration::from_secs(30),
            deadline: Duration::from_secs(90),
            timeout: Duration::from_secs(20),
            verify_delay: Duration::from_millis(1500),
        }
    }
}

impl ApiOptions {
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            retries: self.retries,
            backoff: self.backoff,
            // Doubling from `backoff` for every retry: the deadline bounds it.
            max_backoff: self.backoff.saturating_mul(1 << self.retries.min(16)),
            max_wait: self.max_wait,
        }
    }

    /// The defaults; the end-to-end tests shorten the pauses with `SMART_RERUN_TEST_GITHUB_PAUSE_MS`.
    pub(crate) fn from_env(env: &dyn Fn(&str) -> Option<String>) -> ApiOptions {
        let mut o = ApiOptions::default();
        if let Some(ms) = env("SMART_RERUN_TEST_GITHUB_PAUSE_MS").and_then(|v| v.parse().ok()) {
            o.backoff = Duration::from_millis(ms);
            o.verify_delay = Duration::from_millis(ms);
            o.max_wait = Duration::from_secs(3);
        }
        o
    }
}

/// Why the comment could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// 403 "Resource not accessible by integration": the token cannot write here (a fork's read-only
    /// token, or a workflow without `pull-requests: write`).
    ReadOnly {
        message: String,
    },
    Forbidden {
        message: String,
    },
    Unauthorized {
        message: String,
    },
    NotFound {
        message: String,
    },
    Unprocessable {
        message: String,
    },
    RateLimited {
        wait: Option<Duration>,
        status: u16,
    },
    Server {
        status: u16,
        tries: u32,
    },
    Network {
        message: String,
        tries: u32,
    },
    Http {
        status: u16,
        message: String,
    },
    /// The answer was not what the API documents.
    Response {
        message: String,
    },
    Config {
        message: String,
    },
}

impl Failure {
    /// One line: what went wrong.
    pub(crate) fn reason(&self, target: &Target) -> String {
        match self {
            Failure::ReadOnly { message } => format!(
                "the token cannot write to pull request #{} (403 {message})",
                target.pr
            ),
            Failure::Forbidden { message } => format!("GitHub refused the request (403 {message})"),
            Failure::Unauthorized { message } => {
                format!("GitHub rejected the token (401 {message})")
            }
            Failure::NotFound { message } => format!(
                "{} or pull request #{} is not visible to this token (404 {message})",
                target.repo, target.pr
            ),
            Failure::Unprocessable { message } => {
                format!("GitHub refused the comment (422 {message})")
            }
            Failure::RateLimited {
                wait: Some(w),
                status,
            } => format!(
                "the API rate limit is exhausted for another {}s ({status})",
                w.as_secs()
            ),
            Failure::RateLimited { wait: None, status } => {
                format!("the API rate limit is exhausted ({status})")
            }
            Failure::Server { status, tries } => {
                format!("GitHub answered {status} to {tries} tries")
            }
            Failure::Network { message, tries } => format!(
                "could not reach {} ({tries} tries): {message}",
                target.api_url
            ),
            Failure::Http { status, message } => format!("GitHub answered {status} {message}"),
            Failure::Response { message } => format!("unexpected answer from GitHub: {message}"),
            Failure::Config { message } => message.clone(),
        }
    }

    /// Whether a token with more rights would have succeeded (the workflow_run recipe helps).
    pub(crate) fn is_permission(&self) -> bool {
        matches!(
            self,
            Failure::ReadOnly { .. } | Failure::Forbidden { .. } | Failure::NotFound { .. }
        )
    }
}

/// The comment was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Posted {
    pub id: u64,
    pub created: bool,
    pub url: Option<String>,
}

/// Writes `keys`' sections (rendered by `render(key, room in bytes)`) into the pull request's sticky
/// comment, creating it if there is none. Blocks on a private single-threaded runtime.
pub(crate) fn post_sections(
    target: &Target,
    token: &str,
    options: &ApiOptions,
    keys: &[String],
    render: &dyn Fn(&str, usize) -> String,
) -> Result<Posted, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Config {
            message: format!("cannot start the HTTP runtime: {e}"),
        })?;
    runtime.block_on(async {
        let client = Client::new(target, token, options)?;
        let deadline = options.deadline;
        match tokio::time::timeout(deadline, client.post(keys, render)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Network {
                message: format!("gave up after {}s", deadline.as_secs()),
                tries: client.tries.load(Ordering::Relaxed),
            }),
        }
    })
}

/// Writes of the comment before giving up on other jobs that keep rewriting it.
const WRITES: usize = 4;

/// Most pages of comments read: 100 pages of 100.
const MAX_PAGES: usize = 100;

struct Client<'a> {
    octo: octocrab::Octocrab,
    target: &'a Target,
    owner: String,
    name: String,
    options: &'a ApiOptions,
    retry: RetryPolicy,
    deadline: Instant,
    tries: AtomicU32,
    /// The API's origin, the only place `Link` pages are followed to.
    origin: String,
}

impl<'a> Client<'a> {
    fn new(target: &'a Target, token: &str, options: &'a ApiOptions) -> Result<Self, Failure> {
        // `.` and `..` would move the request to another path.
        let valid_part = |p: &str| {
            !matches!(p, "" | "." | "..")
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let (owner, name) = target
            .repo
            .split_once('/')
            .filter(|(o, n)| valid_part(o) && valid_part(n))
            .ok_or_else(|| Failure::Config {
                message: format!("'{}' is not an owner/name repository", target.repo),
            })?;
        let config = |e: &dyn std::fmt::Display| Failure::Config {
            message: format!("bad GitHub API URL '{}': {e}", target.api_url),
        };
        let origin = reqwest::Url::parse(&target.api_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http"))
            .ok_or_else(|| config(&"not http(s)"))?
            .origin()
            .ascii_serialization();
        // A secret pasted with a trailing newline is common; anything else a header cannot hold would make
        // the HTTP client panic, so it is refused here.
        let token = token.trim();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Failure::Config {
                message: "the GitHub token is empty or holds characters an HTTP header cannot"
                    .into(),
            });
        }
        let octo = octocrab::Octocrab::builder()
            .base_uri(target.api_url.as_str())
            .map_err(|e| config(&e))?
            // No Accept or X-GitHub-Api-Version header: the API's defaults (v3 JSON, 2022-11-28) are
            // what octocrab's models read.
            .personal_token(token.to_owned())
            .set_connect_timeout(Some(options.timeout))
            .set_read_timeout(Some(options.timeout))
            .build()
            .map_err(|e| config(&e))?;
        Ok(Client {
            octo,
            target,
            owner: owner.to_owned(),
            name: name.to_owned(),
            options,
            retry: options.retry_policy(),
            deadline: Instant::now() + options.deadline,
            tries: AtomicU32::new(0),
            origin,
        })
    }

    async fn post(
        &self,
        keys: &[String],
        render: &dyn Fn(&str, usize) -> String,
    ) -> Result<Posted, Failure> {
        if let Some(expected) = &self.target.verify_head {
            self.verify_head(expected).await?;
        }
        let keys: Vec<String> = keys.iter().map(|k| section_key(k)).collect();
        let upsert = Upsert {
            keys: &keys,
            limit: COMMENT_LIMIT,
            render,
            keep: &|_| Ok(()),
            writes: WRITES,
            settle: self.options.verify_delay,
        };
        match comment::upsert(self, &upsert).await {
            // Unconfirmed after every write: other jobs kept rewriting; this job's last write stands.
            Ok(c) => Ok(Posted {
                id: c.id,
                created: c.created,
                url: c.url,
            }),
            Err(UpsertError::Api(f)) => Err(f),
            Err(UpsertError::Declined(message)) => Err(Failure::Config { message }),
        }
    }

    /// One API call, retried while retrying can help; `what` names the answer for a decoding error.
    async fn call<T, Fut>(&self, what: &str, call: impl Fn() -> Fut) -> Result<T, Failure>
    where
        Fut: Future<Output = octocrab::Result<T>>,
    {
        let call = &call;
        http::retrying(&self.retry, self.deadline, |attempt| async move {
            self.tries.fetch_add(1, Ordering::Relaxed);
            match tokio::time::timeout(self.options.timeout, call()).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(judge(e, attempt, what)),
                Err(_) => Err(Failed::new(
                    Failure::Network {
                        message: format!("no answer within {}s", self.options.timeout.as_secs()),
                        tries: attempt,
                    },
                    Retry::Backoff,
                )),
            }
        })
        .await
    }

    async fn verify_head(&self, expected: &str) -> Result<(), Failure> {
        let pr = self
            .call("the pull request", || async {
                self.octo
                    .pulls(&self.owner, &self.name)
                    .get(self.target.pr)
                    .await
            })
            .await?;
        let head = pr.head.sha.as_str();
        if head.eq_ignore_ascii_case(expected) {
            Ok(())
        } else {
            Err(Failure::Config {
                message: format!(
                    "pull request #{} is at {}, not at the commit the workflow run tested ({expected}): \
                     refusing to comment on it",
                    self.target.pr,
                    if head.is_empty() {
                        "an unknown commit"
                    } else {
                        head
                    }
                ),
            })
        }
    }

    /// A `Link` page on the API's own origin; anything else is not followed.
    fn follow<U: std::fmt::Display>(&self, next: Option<U>) -> Option<U> {
        next.filter(|uri| {
            reqwest::Url::parse(&uri.to_string())
                .is_ok_and(|u| u.origin().ascii_serialization() == self.origin)
        })
    }
}

impl Thread for Client<'_> {
    type Error = Failure;

    /// Our comments on the pull request, oldest first.
    async fn list(&self) -> Result<Vec<Stored>, Failure> {
        let mut ours = http::collect_pages(MAX_PAGES, |next| async move {
            let page = match next {
                None => {
                    self.call("the comment list", || async {
                        self.octo
                            .issues(&self.owner, &self.name)
                            .list_comments(self.target.pr)
                            .per_page(100)
                            .send()
                            .await
                    })
                    .await?
                }
                Some(uri) => {
                    let uri = Some(uri);
                    match self
                        .call("the comment list", || self.octo.get_page::<Comment>(&uri))
                        .await?
                    {
                        Some(page) => page,
                        None => return Ok((Vec::new(), None)),
                    }
                }
            };
            let next = self.follow(page.next);
            let page: Vec<Stored> = page.items.into_iter().filter(ours).map(stored).collect();
            Ok((page, next))
        })
        .await?;
        ours.sort_by_key(|c| c.id);
        Ok(ours)
    }

    async fn get(&self, id: u64) -> Result<Option<Stored>, Failure> {
        let got = self
            .call("the comment", || async {
                self.octo
                    .issues(&self.owner, &self.name)
                    .get_comment(CommentId(id))
                    .await
            })
            .await;
        match got {
            Ok(c) => Ok(Some(stored(c))),
            Err(Failure::NotFound { .. }) => Ok(None),
            Err(f) => Err(f),
        }
    }

    async fn create(&self, body: &str) -> Result<Stored, Failure> {
        self.call("the new comment", || async {
            self.octo
                .issues(&self.owner, &self.name)
                .create_comment(self.target.pr, body)
                .await
        })
        .await
        .map(stored)
    }

    async fn update(&self, id: u64, body: &str) -> Result<Stored, Failure> {
        // GitHub documents PATCH for this; octocrab's `update_comment` sends POST (an old alias that
        // GitHub Enterprise proxies need not pass), so the route is called directly, still typed.
        let route = format!("/repos/{}/{}/issues/comments/{id}", self.owner, self.name);
        let payload = serde_json::json!({ "body": body });
        self.call("the updated comment", || {
            self.octo
                .patch::<Comment, _, _>(route.as_str(), Some(&payload))
        })
        .await
        .map(stored)
    }

    async fn delete(&self, id: u64) -> Result<(), Failure> {
        self.call("the deletion", || async {
            self.octo
                .issues(&self.owner, &self.name)
                .delete_comment(CommentId(id))
                .await
        })
        .await
    }
}

fn stored(c: Comment) -> Stored {
    Stored {
        id: c.id.0,
        body: c.body.unwrap_or_default(),
        url: Some(c.html_url.to_string()),
    }
}

/// Comments smart-rerun may take as its own: with the marker, by a bot (the Actions token, an app) or by
/// someone with write access (a personal token).
fn ours(c: &Comment) -> bool {
    let bot = c.user.r#type == "Bot";
    let writer = matches!(
        c.author_association,
        Some(
            AuthorAssociation::Owner | AuthorAssociation::Member | AuthorAssociation::Collaborator
        )
    );
    c.body
        .as_deref()
        .is_some_and(comment::StickyComment::is_ours)
        && (bot || writer)
}

/// What a failed call means, and whether waiting can fix it.
fn judge(e: octocrab::Error, attempt: u32, what: &str) -> Failed<Failure> {
    let error = match e {
        octocrab::Error::GitHub { source, .. } => source,
        octocrab::Error::Serde { .. } | octocrab::Error::Json { .. } => {
            return Failed::fatal(Failure::Response {
                message: format!("{what} is not what the API documents: {}", error_text(&e)),
            });
        }
        other => {
            return Failed::new(
                Failure::Network {
                    message: error_text(&other),
                    tries: attempt,
                },
                Retry::Backoff,
            );
        }
    };
    let none = Default::default();
    let headers = error.headers.as_ref().unwrap_or(&none);
    let message = api_message(&error.message, error.errors.as_deref());
    judge_status(
        error.status_code,
        headers,
        message,
        attempt,
        SystemTime::now(),
    )
}

/// What an error answer means, and whether waiting can fix it.
fn judge_status(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    message: String,
    attempt: u32,
    now: SystemTime,
) -> Failed<Failure> {
    if let Some(wait) = http::rate_limit(status, headers, &message, now) {
        let failure = Failure::RateLimited {
            wait,
            status: status.as_u16(),
        };
        return Failed::new(failure, wait.map_or(Retry::Backoff, Retry::After));
    }
    let retry = http::judge(status, headers, &message, now);
    let failure = match status.as_u16() {
        status @ 500..=599 => Failure::Server {
            status,
            tries: attempt,
        },
        401 => Failure::Unauthorized { message },
        403 if message.contains("Resource not accessible by integration") => {
            Failure::ReadOnly { message }
        }
        403 => Failure::Forbidden { message },
        404 => Failure::NotFound { message },
        422 => Failure::Unprocessable { message },
        status => Failure::Http { status, message },
    };
    Failed::new(failure, retry)
}

/// GitHub's error `message`, with a 422's `errors`, cut to one short line.
fn api_message(message: &str, errors: Option<&[serde_json::Value]>) -> String {
    let mut message = message.trim().to_owned();
    let details: Vec<String> = errors
        .unwrap_or_default()
        .iter()
        .map(|e| {
            e.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| e.to_string())
        })
        .collect();
    if !details.is_empty() {
        message = format!("{message}: {}", details.join("; "));
    }
    let one_line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    one_line.trim().to_owned()
}

/// An error and its causes, on one line (octocrab's errors never hold the token).
fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let s = cause.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = cause.source();
    }
    let line = text.lines().next().unwrap_or("").to_owned();
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn judged(status: u16, body: &str, rows: &[(&'static str, &str)]) -> (Failure, Retry) {
        let mut headers = HeaderMap::new();
        for (k, v) in rows {
            headers.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        let errors = v.get("errors").and_then(|e| e.as_array()).cloned();
        let message = api_message(v["message"].as_str().unwrap_or(""), errors.as_deref());
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_613_600);
        let f = judge_status(
            StatusCode::from_u16(status).unwrap(),
            &headers,
            message,
            2,
            now,
        );
        (f.error, f.retry)
    }

    #[test]
    fn errors_are_judged_as_github_sends_them() {
        let (f, retry) = judged(
            403,
            r#"{"message":"Resource not accessible by integration","documentation_url":"https://docs.github.com/rest"}"#,
            &[("x-ratelimit-remaining", "4999")],
        );
        assert!(
            matches!(f, Failure::ReadOnly { .. }) && retry == Retry::No,
            "{f:?}"
        );
        assert!(f.is_permission());

        let limited = r#"{"message":"API rate limit exceeded for installation ID 1."}"#;
        let (f, retry) = judged(
            403,
            limited,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1793613602"),
            ],
        );
        let soon = Some(Duration::from_secs(3));
        assert_eq!(
            f,
            Failure::RateLimited {
                wait: soon,
                status: 403
            }
        );
        assert_eq!(retry, Retry::After(Duration::from_secs(3)));

        let (f, _) = judged(
            403,
            limited,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1793617200"),
            ],
        );
        let target = Target {
            api_url: "https://api.github.com".into(),
            repo: "o/r".into(),
            pr: 7,
            verify_head: None,
        };
        assert_eq!(
            f.reason(&target),
            "the API rate limit is exhausted for another 3601s (403)"
        );

        let (f, retry) = judged(502, "{}", &[]);
        assert_eq!(
            f,
            Failure::Server {
                status: 502,
                tries: 2
            }
        );
        assert_eq!(retry, Retry::Backoff);
        assert_eq!(f.reason(&target), "GitHub answered 502 to 2 tries");

        let invalid = r#"{"message":"Validation Failed","errors":[{"resource":"IssueComment","code":"custom","field":"body","message":"body is too long (maximum is 65536 characters)"}]}"#;
        let (f, retry) = judged(422, invalid, &[]);
        assert_eq!(retry, Retry::No);
        assert_eq!(
            f.reason(&target),
            "GitHub refused the comment (422 Validation Failed: body is too long (maximum is 65536 characters))"
        );

        let (f, retry) = judged(404, r#"{"message":"Not Found"}"#, &[]);
        assert_eq!(retry, Retry::No);
        assert_eq!(
            f.reason(&target),
            "o/r or pull request #7 is not visible to this token (404 Not Found)"
        );
    }

    #[test]
    fn a_bad_repository_api_url_or_token_is_refused_before_any_call() {
        // octocrab's client starts a task when it is built.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _inside = runtime.enter();
        let options = ApiOptions::default();
        let target = |api: &str, repo: &str| Target {
            api_url: api.into(),
            repo: repo.into(),
            pr: 7,
            verify_head: None,
        };
        let refused = |t: &Target, token: &str| match Client::new(t, token, &options) {
            Err(Failure::Config { message }) => message,
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("accepted {t:?}"),
        };
        let ok = target("https://ghe.example.com/api/v3", "o/r");
        assert!(refused(&target("file:///etc/passwd", "o/r"), "t").contains("not http(s)"));
        assert!(refused(&target("https://api.github.com", "o/r/x"), "t").contains("owner/name"));
        assert!(refused(&target("https://api.github.com", "../r"), "t").contains("owner/name"));
        assert!(refused(&ok, "ghs_one\ttwo").contains("characters an HTTP header cannot"));
        let client = Client::new(&ok, "ghs_token\n", &options).unwrap();
        assert_eq!(client.origin, "https://ghe.example.com");
        assert_eq!(
            client.follow(Some(
                "https://ghe.example.com/api/v3/repositories/1/issues/7/comments?page=2"
            )),
            Some("https://ghe.example.com/api/v3/repositories/1/issues/7/comments?page=2")
        );
        assert_eq!(
            client.follow(Some("https://elsewhere.example/api/v3?page=2")),
            None
        );
    }
}
