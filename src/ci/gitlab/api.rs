//! The few GitLab REST API calls the merge request note needs, over reqwest. The main type is [`Api`];
//! retries, paging and the client's redirect rule are [`crate::ci::http`]'s.
//!
//! - The token goes in the `PRIVATE-TOKEN` header, marked sensitive, and nowhere else: not in a URL, an
//!   error or a log line. reqwest's errors name the URL only. A redirect to another origin is not
//!   followed (reqwest would carry `PRIVATE-TOKEN` along): it comes back as [`ApiError::Redirected`].
//! - 5xx, 429 and transport errors are retried with backoff (429 honours `Retry-After`); 401, 403 and 404
//!   are final and come back as [`ApiError::Status`] with GitLab's own message, for a one-line warning.
//! - Lists are paginated with `X-Next-Page` (GitLab leaves it empty on the last page, and omits
//!   `X-Total-Pages` past 10,000 items), 100 per page, and bounded.

use crate::ci::http::{self, Failed, RetryPolicy};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::time::{Duration, Instant, SystemTime};

/// Most pages read from one list: 100 × 100 notes is far more than a merge request has.
const MAX_PAGES: usize = 100;

/// One call's longest wait for an answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What stays unencoded in a path segment: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("GitLab answered {status} to {method} {path}{}", gitlab_says(.message))]
    Status {
        method: &'static str,
        /// The path under the API root, without the query.
        path: String,
        status: u16,
        /// GitLab's `message` or `error` field, one line.
        message: String,
    },
    #[error(
        "GitLab answered {method} {path} with a redirect to {to}, which is not followed: the token stays with {from}"
    )]
    Redirected {
        method: &'static str,
        path: String,
        /// The origin the redirect points at.
        to: String,
        /// The API's origin.
        from: String,
    },
    #[error("could not reach GitLab at {url}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GitLab's answer to {method} {path} is not what its API documents")]
    Decode {
        method: &'static str,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("gave up after {0:?}: GitLab was too slow")]
    Deadline(Duration),
}

fn gitlab_says(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(" ({message})")
    }
}

impl ApiError {
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// How failed calls are retried: the shared policy, with GitLab's pauses (at most 10s between tries).
pub(crate) fn retry_policy() -> RetryPolicy {
    RetryPolicy::default()
}

/// A note on a merge request, as the notes API returns it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Note {
    pub id: u64,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub system: bool,
    #[serde(default)]
    pub author: Option<User>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct User {
    pub id: u64,
}

/// A merge request, as `GET /projects/:id/repository/commits/:sha/merge_requests` lists it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct MergeRequest {
    pub iid: u64,
    /// The target project, which holds the merge request (and its notes), also for fork MRs.
    pub project_id: u64,
    #[serde(default)]
    pub state: String,
}

/// An authenticated client for one GitLab instance's API v4.
pub(crate) struct Api {
    client: reqwest::Client,
    /// `CI_API_V4_URL`, without a trailing slash.
    base: String,
    token: reqwest::header::HeaderValue,
    retry: RetryPolicy,
    deadline: Instant,
    budget: Duration,
}

impl Api {
    /// `base` is `CI_API_V4_URL`; every call, retries included, ends within `budget`.
    pub(crate) fn new(
        base: &str,
        token: &str,
        retry: RetryPolicy,
        budget: Duration,
    ) -> Result<Api, String> {
        let mut token = reqwest::header::HeaderValue::from_str(token.trim())
            .map_err(|_| "the token has characters an HTTP header cannot carry".to_owned())?;
        token.set_sensitive(true);
        let client = http::client(Duration::from_secs(10), CALL_TIMEOUT)
            .map_err(|e| format!("cannot set up HTTPS: {e}"))?;
        Ok(Api {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token,
            retry,
            deadline: Instant::now() + budget,
            budget,
        })
    }

    pub(crate) async fn current_user(&self) -> Result<User, ApiError> {
        self.get_json("/user", "").await.map(|(v, _)| v)
    }

    /// Merge requests that contain `sha` (for branch pipelines, which have no `CI_MERGE_REQUEST_IID`).
    pub(crate) async fn merge_requests_of_commit(
        &self,
        project: &str,
        sha: &str,
    ) -> Result<Vec<MergeRequest>, ApiError> {
        let path = format!(
            "/projects/{}/repository/commits/{}/merge_requests",
            encode(project),
            encode(sha)
        );
        self.get_json(&path, "").await.map(|(v, _)| v)
    }

    /// Every note of a merge request that `keep` accepts, oldest first, reading all pages.
    pub(crate) async fn notes(
        &self,
        project: &str,
        mr: u64,
        keep: &dyn Fn(&Note) -> bool,
    ) -> Result<Vec<Note>, ApiError> {
        let path = format!("/projects/{}/merge_requests/{mr}/notes", encode(project));
        let path = path.as_str();
        http::collect_pages(MAX_PAGES, |page: Option<u32>| async move {
            let page = page.unwrap_or(1);
            let query = format!("sort=asc&order_by=created_at&per_page=100&page={page}");
            let (notes, headers): (Vec<Note>, _) = self.get_json(path, &query).await?;
            let notes: Vec<Note> = notes.into_iter().filter(|n| keep(n)).collect();
            Ok((notes, next_page(&headers, page)))
        })
        .await
    }

    pub(crate) async fn create_note(
        &self,
        project: &str,
        mr: u64,
        body: &str,
    ) -> Result<Note, ApiError> {
        let path = format!("/projects/{}/merge_requests/{mr}/notes", encode(project));
        let body = serde_json::json!({ "body": body });
        let text = self.send("POST", &path, "", Some(&body)).await?.1;
        decode("POST", &path, &text)
    }

    pub(crate) async fn update_note(
        &self,
        project: &str,
        mr: u64,
        note: u64,
        body: &str,
    ) -> Result<Note, ApiError> {
        let path = format!(
            "/projects/{}/merge_requests/{mr}/notes/{note}",
            encode(project)
        );
        let body = serde_json::json!({ "body": body });
        let text = self.send("PUT", &path, "", Some(&body)).await?.1;
        decode("PUT", &path, &text)
    }

    pub(crate) async fn delete_note(
        &self,
        project: &str,
        mr: u64,
        note: u64,
    ) -> Result<(), ApiError> {
        let path = format!(
            "/projects/{}/merge_requests/{mr}/notes/{note}",
            encode(project)
        );
        self.send("DELETE", &path, "", None).await.map(|_| ())
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &str,
    ) -> Result<(T, reqwest::header::HeaderMap), ApiError> {
        let (headers, text) = self.send("GET", path, query, None).await?;
        Ok((decode("GET", path, &text)?, headers))
    }

    /// One call, retried as [`http::retrying`] decides. Returns the headers and body of a 2xx answer.
    async fn send(
        &self,
        method: &'static str,
        path: &str,
        query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(reqwest::header::HeaderMap, String), ApiError> {
        let url = if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{query}", self.base)
        };
        let (url, path) = (url.as_str(), path);
        http::retrying(&self.retry, self.deadline, |_| async move {
            let remaining = self
                .deadline
                .checked_duration_since(Instant::now())
                .ok_or_else(|| Failed::fatal(ApiError::Deadline(self.budget)))?;
            let m = reqwest::Method::from_bytes(method.as_bytes()).expect("a valid method");
            let mut request = self
                .client
                .request(m, url)
                .header("PRIVATE-TOKEN", self.token.clone())
                .header(reqwest::header::ACCEPT, "application/json")
                .timeout(remaining.min(CALL_TIMEOUT));
            if let Some(b) = body {
                request = request.json(b);
            }
            let transport = |source| {
                Failed::new(
                    ApiError::Transport {
                        url: url.to_owned(),
                        source,
                    },
                    http::Retry::Backoff,
                )
            };
            let response = request.send().await.map_err(transport)?;
            let status = response.status();
            let headers = response.headers().clone();
            if status.is_redirection() {
                return Err(Failed::fatal(self.redirected(method, path, &headers)));
            }
            let text = response.text().await.map_err(transport)?;
            if status.is_success() {
                return Ok((headers, text));
            }
            let message = error_message(&text);
            let retry = http::judge(status, &headers, &message, SystemTime::now());
            Err(Failed::new(
                ApiError::Status {
                    method,
                    path: path.to_owned(),
                    status: status.as_u16(),
                    message,
                },
                retry,
            ))
        })
        .await
    }

    fn redirected(
        &self,
        method: &'static str,
        path: &str,
        headers: &reqwest::header::HeaderMap,
    ) -> ApiError {
        let origin = |u: reqwest::Url| u.origin().ascii_serialization();
        // Only a redirect elsewhere comes back here: one within the origin was followed.
        let to = headers
            .get(reqwest::header::LOCATION)
            .and_then(|l| reqwest::Url::parse(l.to_str().ok()?).ok())
            .map_or_else(|| "another address".to_owned(), origin);
        ApiError::Redirected {
            method,
            path: path.to_owned(),
            to,
            from: reqwest::Url::parse(&self.base).map_or_else(|_| self.base.clone(), origin),
        }
    }
}

fn decode<T: DeserializeOwned>(
    method: &'static str,
    path: &str,
    text: &str,
) -> Result<T, ApiError> {
    serde_json::from_str(text).map_err(|source| ApiError::Decode {
        method,
        path: path.to_owned(),
        source,
    })
}

/// GitLab's error body, `{"message": "403 Forbidden"}` or `{"error": "insufficient_scope", ...}`, as one
/// short line (a proxy's HTML error page is not worth echoing).
fn error_message(body: &str) -> String {
    let value: serde_json::Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => return String::new(),
    };
    let text = match (&value["message"], &value["error"]) {
        (serde_json::Value::String(m), _) => m.clone(),
        (serde_json::Value::Null, serde_json::Value::String(e)) => e.clone(),
        (m, _) if !m.is_null() => m.to_string(),
        _ => String::new(),
    };
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    line.trim().to_owned()
}

/// The page after `page`: `X-Next-Page`, else `X-Total-Pages` when it says there are more.
fn next_page(headers: &reqwest::header::HeaderMap, page: u32) -> Option<u32> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    match headers.get("x-next-page") {
        // Present: empty on the last page.
        Some(_) => number("x-next-page").filter(|&n| n > page),
        None => number("x-total-pages")
            .filter(|&total| page < total)
            .map(|_| page + 1),
    }
}

/// Percent-encodes a path segment (a project id may be `group/project`, sent as `group%2Fproject`).
pub(crate) fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ci::http::tests::headers;

    #[test]
    fn pages_follow_x_next_page_and_stop_on_the_last() {
        assert_eq!(next_page(&headers(&[("x-next-page", "3")]), 2), Some(3));
        assert_eq!(
            next_page(&headers(&[("x-next-page", ""), ("x-total-pages", "3")]), 3),
            None
        );
        // Without X-Next-Page (some proxies drop it), X-Total-Pages still says whether there is more.
        assert_eq!(next_page(&headers(&[("x-total-pages", "3")]), 1), Some(2));
        assert_eq!(next_page(&headers(&[("x-total-pages", "3")]), 3), None);
        // Past 10,000 items GitLab sends neither total: X-Next-Page alone decides.
        assert_eq!(next_page(&headers(&[]), 1), None);
        // A next page that does not move forward would loop forever.
        assert_eq!(next_page(&headers(&[("x-next-page", "1")]), 1), None);
    }

    #[test]
    fn gitlab_error_bodies_become_one_short_line() {
        assert_eq!(
            error_message(r#"{"message":"401 Unauthorized"}"#),
            "401 Unauthorized"
        );
        assert_eq!(
            error_message(r#"{"error":"insufficient_scope","error_description":"x"}"#),
            "insufficient_scope"
        );
        assert_eq!(
            error_message(r#"{"message":{"note":["is too long"]}}"#),
            r#"{"note":["is too long"]}"#
        );
        assert_eq!(error_message("<html>502 Bad Gateway</html>"), "");
        assert!(!error_message(r#"{"message":"a\nb"}"#).contains('\n'));
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode("42"), "42");
        assert_eq!(encode("group/project"), "group%2Fproject");
        assert_eq!(encode("a b?"), "a%20b%3F");
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let api = Api::new(
            "https://gitlab.example.com/api/v4/",
            "glpat-s3cr3t",
            retry_policy(),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(api.base, "https://gitlab.example.com/api/v4");
        assert!(!format!("{:?}", api.token).contains("s3cr3t"));
    }
}
