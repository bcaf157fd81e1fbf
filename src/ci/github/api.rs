//! The sticky PR comment through GitHub's REST API (octocrab, against `GITHUB_API_URL`, so GitHub
//! Enterprise Server works). The main entry is [`post_sections`].
//!
//! The comment is found by its hidden marker among *all* the pull request's comments (following the
//! `Link` header page by page), written by a bot or by someone with write access, so a drive-by
//! commenter cannot plant a marker and have smart-rerun rewrite their comment. It is re-read right before
//! each write; a job only replaces its own sections. Two jobs that both find no comment both create one:
//! the later one then folds its sections into the older and deletes its own. When the comment holds
//! other jobs' sections, the job reads it back after a short pause and writes again if a concurrent
//! writer dropped its section (GitHub has no conditional update for comments).
//!
//! Failures never fail the job: the caller turns a [`Failure`] into one warning. Only what retrying can
//! fix is retried — 5xx, network errors, and rate limits that reset within [`ApiOptions::max_wait`] —
//! with exponential backoff, within [`ApiOptions::deadline`].

use crate::ci::comment::{StickyComment, section_key};
use std::time::{Duration, Instant};

/// GitHub's limit for a comment body.
pub const COMMENT_LIMIT: usize = 65_536;

/// Where the comment goes.
#[derive(Debug, Clone)]
pub struct Target {
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
pub struct ApiOptions {
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
    /// The defaults; the end-to-end tests shorten the pauses with `SMART_RERUN_TEST_GITHUB_PAUSE_MS`.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> ApiOptions {
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
pub enum Failure {
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
    pub fn reason(&self, target: &Target) -> String {
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
    pub fn is_permission(&self) -> bool {
        matches!(
            self,
            Failure::ReadOnly { .. } | Failure::Forbidden { .. } | Failure::NotFound { .. }
        )
    }
}

/// The comment was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub id: u64,
    pub created: bool,
    pub url: Option<String>,
}

/// Writes `keys`' sections (rendered by `render(key, room in bytes)`) into the pull request's sticky
/// comment, creating it if there is none. Blocks on a private single-threaded runtime.
pub fn post_sections(
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
        match tokio::time::timeout(deadline, client.upsert(keys, render)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Network {
                message: format!("gave up after {}s", deadline.as_secs()),
                tries: client.tries(),
            }),
        }
    })
}

struct Reply {
    status: u16,
    link_next: Option<String>,
    rate: RateHeaders,
    body: String,
}

struct Client<'a> {
    octo: octocrab::Octocrab,
    target: &'a Target,
    options: &'a ApiOptions,
    started: Instant,
    tries: std::sync::atomic::AtomicU32,
    /// `scheme://authority` of the API, the only place `Link` pages are followed to.
    origin: String,
}

#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

/// A comment of ours, as listed.
struct Found {
    id: u64,
    body: String,
}

impl<'a> Client<'a> {
    fn new(target: &'a Target, token: &str, options: &'a ApiOptions) -> Result<Self, Failure> {
        let valid_repo = target.repo.split('/').count() == 2
            && target.repo.split('/').all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            });
        if !valid_repo {
            return Err(Failure::Config {
                message: format!("'{}' is not an owner/name repository", target.repo),
            });
        }
        let config = |e: &dyn std::fmt::Display| Failure::Config {
            message: format!("bad GitHub API URL '{}': {e}", target.api_url),
        };
        let origin = origin_of(&target.api_url).ok_or_else(|| config(&"not http(s)"))?;
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
            // what this code reads.
            .personal_token(token.to_owned())
            .set_connect_timeout(Some(options.timeout))
            .set_read_timeout(Some(options.timeout))
            .build()
            .map_err(|e| config(&e))?;
        Ok(Client {
            octo,
            target,
            options,
            started: Instant::now(),
            tries: Default::default(),
            origin,
        })
    }

    fn tries(&self) -> u32 {
        self.tries.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn repo_path(&self, rest: &str) -> String {
        format!("/repos/{}{rest}", self.target.repo)
    }

    async fn upsert(
        &self,
        keys: &[String],
        render: &dyn Fn(&str, usize) -> String,
    ) -> Result<Posted, Failure> {
        if let Some(expected) = &self.target.verify_head {
            self.verify_head(expected).await?;
        }
        let ours: Vec<String> = keys.iter().map(|k| section_key(k)).collect();
        let mut rounds = 0;
        loop {
            rounds += 1;
            // Re-read right before writing: another job may have written since.
            let found = self.find().await?;
            let mut sticky = found
                .first()
                .map(|f| StickyComment::parse(&f.body))
                .unwrap_or_default();
            fill(&mut sticky, &ours, render);
            let body = sticky.render();
            let mut posted = match found.first() {
                Some(f) => Posted {
                    id: f.id,
                    created: false,
                    url: self.patch(f.id, &body).await?,
                },
                None => {
                    let (id, url) = self.create(&body).await?;
                    Posted {
                        id,
                        created: true,
                        url,
                    }
                }
            };
            if posted.created {
                // A parallel job may have created one too: the oldest wins, the others fold into it.
                let all = self.find().await?;
                if let Some(oldest) = all.first().filter(|o| o.id < posted.id) {
                    let mut merged = StickyComment::parse(&oldest.body);
                    fill(&mut merged, &ours, render);
                    let url = self.patch(oldest.id, &merged.render()).await?;
                    let _ = self.delete(posted.id).await;
                    posted = Posted {
                        id: oldest.id,
                        created: false,
                        url,
                    };
                    sticky = merged;
                }
            }
            let shared = sticky.sections.keys().any(|k| !ours.contains(k));
            if !shared || rounds >= 4 {
                return Ok(posted);
            }
            // Read it back after a pause: a job that read the comment before this write and wrote after
            // it has dropped this job's sections.
            let pause = self.options.verify_delay;
            tokio::time::sleep(pause + jitter(pause * 4)).await;
            let now = self.get_comment(posted.id).await?;
            let now = StickyComment::parse(&now);
            // Compared as written: parsing trims the newlines around a section's body.
            let written = StickyComment::parse(&sticky.render());
            if ours
                .iter()
                .all(|k| now.sections.get(k) == written.sections.get(k))
            {
                return Ok(posted);
            }
        }
    }

    async fn verify_head(&self, expected: &str) -> Result<(), Failure> {
        let uri = self.repo_path(&format!("/pulls/{}", self.target.pr));
        let reply = self.request(Method::Get, &uri, None).await?;
        let v: serde_json::Value =
            serde_json::from_str(&reply.body).map_err(|e| Failure::Response {
                message: format!("the pull request is not JSON: {e}"),
            })?;
        let head = v
            .pointer("/head/sha")
            .and_then(|s| s.as_str())
            .unwrap_or("");
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

    /// Our comments on the pull request, oldest first.
    async fn find(&self) -> Result<Vec<Found>, Failure> {
        let mut next =
            Some(self.repo_path(&format!("/issues/{}/comments?per_page=100", self.target.pr)));
        let mut found = Vec::new();
        let mut pages = 0;
        while let Some(uri) = next.take() {
            pages += 1;
            let reply = self.request(Method::Get, &uri, None).await?;
            let comments: Vec<serde_json::Value> =
                serde_json::from_str(&reply.body).map_err(|e| Failure::Response {
                    message: format!("the comment list is not a JSON array: {e}"),
                })?;
            for c in &comments {
                let body = c.get("body").and_then(|b| b.as_str()).unwrap_or("");
                if StickyComment::is_ours(body) && trusted_author(c) {
                    if let Some(id) = c.get("id").and_then(|i| i.as_u64()) {
                        found.push(Found {
                            id,
                            body: body.to_owned(),
                        });
                    }
                }
            }
            // Bounded: 100 pages of 100 comments.
            if pages < 100 {
                next = reply.link_next.filter(|n| n.starts_with(&self.origin));
            }
        }
        found.sort_by_key(|f| f.id);
        Ok(found)
    }

    async fn get_comment(&self, id: u64) -> Result<String, Failure> {
        let reply = self
            .request(
                Method::Get,
                &self.repo_path(&format!("/issues/comments/{id}")),
                None,
            )
            .await?;
        let v: serde_json::Value =
            serde_json::from_str(&reply.body).map_err(|e| Failure::Response {
                message: format!("the comment is not JSON: {e}"),
            })?;
        Ok(v.get("body")
            .and_then(|b| b.as_str())
            .unwrap_or("")
            .to_owned())
    }

    async fn create(&self, body: &str) -> Result<(u64, Option<String>), Failure> {
        let uri = self.repo_path(&format!("/issues/{}/comments", self.target.pr));
        let reply = self
            .request(
                Method::Post,
                &uri,
                Some(&serde_json::json!({ "body": body })),
            )
            .await?;
        let v: serde_json::Value =
            serde_json::from_str(&reply.body).map_err(|e| Failure::Response {
                message: format!("the new comment is not JSON: {e}"),
            })?;
        let id = v
            .get("id")
            .and_then(|i| i.as_u64())
            .ok_or_else(|| Failure::Response {
                message: "the new comment has no id".into(),
            })?;
        Ok((id, html_url(&v)))
    }

    async fn patch(&self, id: u64, body: &str) -> Result<Option<String>, Failure> {
        let uri = self.repo_path(&format!("/issues/comments/{id}"));
        let reply = self
            .request(
                Method::Patch,
                &uri,
                Some(&serde_json::json!({ "body": body })),
            )
            .await?;
        Ok(serde_json::from_str::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|v| html_url(&v)))
    }

    async fn delete(&self, id: u64) -> Result<(), Failure> {
        let uri = self.repo_path(&format!("/issues/comments/{id}"));
        self.request(Method::Delete, &uri, None).await.map(|_| ())
    }

    /// One API call, retried while retrying can help.
    async fn request(
        &self,
        method: Method,
        uri: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, Failure> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.tries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let backoff = self.options.backoff * 2u32.saturating_pow(attempt - 1);
            let (failure, wait) = match self.send(method, uri, body).await {
                Ok(reply) if (200..300).contains(&reply.status) => return Ok(reply),
                Ok(reply) => match judge(&reply, backoff, self.options.max_wait) {
                    Judged::Retry(failure, wait) => (failure, wait),
                    Judged::Fail(failure) => return Err(failure),
                },
                Err(message) => (
                    Failure::Network {
                        message,
                        tries: attempt,
                    },
                    backoff,
                ),
            };
            let failure = match failure {
                Failure::Server { status, .. } => Failure::Server {
                    status,
                    tries: attempt,
                },
                other => other,
            };
            let late = self.started.elapsed() + wait > self.options.deadline;
            if attempt > self.options.retries || late {
                return Err(failure);
            }
            tokio::time::sleep(wait + jitter(wait)).await;
        }
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, String> {
        let call = async {
            let response = match method {
                Method::Get => self.octo._get(uri).await,
                Method::Post => self.octo._post(uri, body).await,
                Method::Patch => self.octo._patch(uri, body).await,
                Method::Delete => self.octo._delete(uri, None::<&()>).await,
            }
            .map_err(|e| error_text(&e))?;
            let status = response.status().as_u16();
            let headers = response.headers();
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let link_next = header("link").and_then(|l| next_link(&l));
            let rate = RateHeaders {
                remaining: header("x-ratelimit-remaining"),
                reset: header("x-ratelimit-reset"),
                retry_after: header("retry-after"),
            };
            let text = self
                .octo
                .body_to_string(response)
                .await
                .map_err(|e| error_text(&e))?;
            Ok::<_, String>((status, link_next, rate, text))
        };
        let (status, link_next, rate, body) = tokio::time::timeout(self.options.timeout, call)
            .await
            .map_err(|_| format!("no answer within {}s", self.options.timeout.as_secs()))??;
        Ok(Reply {
            status,
            link_next,
            rate,
            body,
        })
    }
}

#[derive(Default)]
struct RateHeaders {
    remaining: Option<String>,
    reset: Option<String>,
    retry_after: Option<String>,
}

enum Judged {
    Retry(Failure, Duration),
    Fail(Failure),
}

/// Decides what an error answer means and whether waiting can fix it.
fn judge(reply: &Reply, backoff: Duration, max_wait: Duration) -> Judged {
    let message = api_message(&reply.body);
    let status = reply.status;
    let rate = &reply.rate;
    let rate_limited = (status == 403 || status == 429)
        && (rate.remaining.as_deref().map(str::trim) == Some("0")
            || rate.retry_after.is_some()
            || message.to_ascii_lowercase().contains("rate limit"));
    if rate_limited {
        let wait = rate
            .retry_after
            .as_deref()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .or_else(|| {
                let reset = rate.reset.as_deref()?.trim().parse::<u64>().ok()?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()?
                    .as_secs();
                Some(Duration::from_secs(reset.saturating_sub(now) + 1))
            });
        let failure = Failure::RateLimited { wait, status };
        return match wait {
            Some(w) if w <= max_wait => Judged::Retry(failure, w),
            _ => Judged::Fail(failure),
        };
    }
    match status {
        500..=599 => Judged::Retry(Failure::Server { status, tries: 0 }, backoff),
        401 => Judged::Fail(Failure::Unauthorized { message }),
        403 if message.contains("Resource not accessible by integration") => {
            Judged::Fail(Failure::ReadOnly { message })
        }
        403 => Judged::Fail(Failure::Forbidden { message }),
        404 => Judged::Fail(Failure::NotFound { message }),
        422 => Judged::Fail(Failure::Unprocessable { message }),
        _ => Judged::Fail(Failure::Http { status, message }),
    }
}

/// GitHub's error `message`, with a 422's `errors`, cut to one short line.
fn api_message(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let mut message = v
        .get("message")
        .and_then(|m| m.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| body.trim().to_owned());
    if let Some(errors) = v.get("errors").and_then(|e| e.as_array()) {
        let details: Vec<String> = errors
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
    }
    let one_line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    one_line.trim().to_owned()
}

/// Writes `keys`' sections into `sticky`, each within a fair share of the comment's limit.
fn fill(sticky: &mut StickyComment, keys: &[String], render: &dyn Fn(&str, usize) -> String) {
    for k in keys {
        sticky.sections.remove(k);
    }
    let total = sticky.sections.len() + keys.len();
    for (i, k) in keys.iter().enumerate() {
        let fair = COMMENT_LIMIT / total.max(1);
        let room = (sticky.room_for(k, COMMENT_LIMIT) / (keys.len() - i)).min(fair);
        let body = render(k, room);
        sticky.set(k, body);
    }
}

/// Comments smart-rerun may take as its own: by a bot (the Actions token, an app), or by someone with
/// write access (a personal token).
fn trusted_author(comment: &serde_json::Value) -> bool {
    let bot = comment.pointer("/user/type").and_then(|t| t.as_str()) == Some("Bot");
    let association = comment
        .get("author_association")
        .and_then(|a| a.as_str())
        .unwrap_or("");
    bot || matches!(association, "OWNER" | "MEMBER" | "COLLABORATOR")
}

fn html_url(v: &serde_json::Value) -> Option<String> {
    v.get("html_url")
        .and_then(|u| u.as_str())
        .map(str::to_owned)
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        is_next.then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

/// `scheme://authority` of a URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    Some(format!("{scheme}://{authority}"))
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

/// Up to a quarter of `d`, so parallel jobs don't retry in step.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    d.mul_f64(f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 4.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        let h = r#"<https://api.github.com/repositories/1/issues/7/comments?page=2>; rel="next", <https://api.github.com/repositories/1/issues/7/comments?page=5>; rel="last""#;
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://api.github.com/repositories/1/issues/7/comments?page=2")
        );
        assert_eq!(next_link(r#"<https://x/?page=1>; rel="prev""#), None);
        assert_eq!(
            origin_of("https://ghe.example.com/api/v3").as_deref(),
            Some("https://ghe.example.com")
        );
        assert_eq!(origin_of("file:///etc/passwd"), None);
    }

    fn reply(
        status: u16,
        body: &str,
        remaining: Option<&str>,
        reset: Option<&str>,
        retry_after: Option<&str>,
    ) -> Reply {
        let own = |v: Option<&str>| v.map(str::to_owned);
        Reply {
            status,
            link_next: None,
            rate: RateHeaders {
                remaining: own(remaining),
                reset: own(reset),
                retry_after: own(retry_after),
            },
            body: body.to_owned(),
        }
    }

    #[test]
    fn errors_are_judged_as_github_sends_them() {
        let b = Duration::from_millis(10);
        let max = Duration::from_secs(30);
        let body = r#"{"message":"Resource not accessible by integration","documentation_url":"https://docs.github.com/rest"}"#;
        assert!(matches!(
            judge(&reply(403, body, Some("4999"), None, None), b, max),
            Judged::Fail(Failure::ReadOnly { .. })
        ));
        let limited = r#"{"message":"API rate limit exceeded for installation ID 1."}"#;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let soon = (now + 2).to_string();
        let later = (now + 3600).to_string();
        assert!(
            matches!(judge(&reply(403, limited, Some("0"), Some(&soon), None), b, max), Judged::Retry(Failure::RateLimited { .. }, w) if w <= Duration::from_secs(3))
        );
        assert!(
            matches!(judge(&reply(403, limited, Some("0"), Some(&later), None), b, max), Judged::Fail(Failure::RateLimited { wait: Some(w), .. }) if w > max)
        );
        assert!(
            matches!(judge(&reply(429, "{}", None, None, Some("1")), b, max), Judged::Retry(_, w) if w == Duration::from_secs(1))
        );
        assert!(matches!(
            judge(
                &reply(502, "<html>bad gateway</html>", None, None, None),
                b,
                max
            ),
            Judged::Retry(Failure::Server { status: 502, .. }, _)
        ));
        let invalid = r#"{"message":"Validation Failed","errors":[{"resource":"IssueComment","code":"custom","field":"body","message":"body is too long (maximum is 65536 characters)"}]}"#;
        match judge(&reply(422, invalid, None, None, None), b, max) {
            Judged::Fail(Failure::Unprocessable { message }) => assert_eq!(
                message,
                "Validation Failed: body is too long (maximum is 65536 characters)"
            ),
            _ => panic!("422 is final"),
        }
        assert!(matches!(
            judge(
                &reply(404, r#"{"message":"Not Found"}"#, None, None, None),
                b,
                max
            ),
            Judged::Fail(Failure::NotFound { .. })
        ));
    }

    #[test]
    fn sections_share_the_limit_fairly() {
        let mut sticky = StickyComment::default();
        sticky.set("other", "o".repeat(40_000));
        let keys = vec!["a".to_owned(), "b".to_owned()];
        fill(&mut sticky, &keys, &|_, room| "x".repeat(room));
        assert!(sticky.render().len() <= COMMENT_LIMIT);
        let (a, b) = (sticky.sections["a"].len(), sticky.sections["b"].len());
        assert!(a <= COMMENT_LIMIT / 3 && b > 10_000, "{a} {b}");
        assert_eq!(
            sticky.sections["other"].len(),
            40_000,
            "others' sections are kept"
        );
    }
}
