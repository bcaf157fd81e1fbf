//! The HTTP rules every CI adapter follows, written once: when a failed call is worth another try and
//! how long to wait first ([`RetryPolicy`], [`judge`]), the retry loop itself ([`retrying`]), a bounded
//! paging loop ([`collect_pages`]), and the reqwest client for calls that carry a token ([`client`]).
//!
//! - Only what waiting can fix is retried: 5xx, transport errors and rate limits. A rate limit is waited
//!   out when the server says when it lifts (`Retry-After` in seconds or as an HTTP date, or a
//!   `RateLimit-Reset`/`X-RateLimit-Reset` time) and that is within [`RetryPolicy::max_wait`]; a longer
//!   one is reported at once, since no retry before it can succeed. Other 4xx are final.
//! - A token never follows a redirect to another origin. [`client`] follows a redirect only while scheme,
//!   host and port stay those of the request it started from; anything else comes back as the 3xx
//!   answer itself. This matters for headers such as GitLab's `PRIVATE-TOKEN`, which reqwest's own
//!   redirect handling does not know to drop (it drops `Authorization` only). octocrab's client, used
//!   for GitHub, strips `Authorization` on a cross-origin redirect itself.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

/// Redirects followed within one origin before giving up.
const MAX_REDIRECTS: usize = 10;

/// Whether, and when, a failed call is worth another try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Asking again will not change the answer.
    No,
    /// Worth another try after the policy's backoff (the server named no time).
    Backoff,
    /// Worth another try once this much time has passed (the server's own word).
    After(Duration),
}

/// How many times, and how patiently, a call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Tries after the first.
    pub retries: u32,
    /// The pause before the first retry when the server names none; doubled for each later one.
    pub backoff: Duration,
    /// The longest backoff pause.
    pub max_backoff: Duration,
    /// The longest wait the server may ask for that is still waited out.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 3,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_wait: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry number `retry` (1 for the first).
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let doubled = self
            .backoff
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        doubled.min(self.max_backoff)
    }

    /// The pause before the next try, after try number `attempt` failed as `why` says; `None` when there
    /// is no next try.
    pub(crate) fn pause(&self, attempt: u32, why: Retry) -> Option<Duration> {
        if attempt > self.retries {
            return None;
        }
        match why {
            Retry::No => None,
            Retry::Backoff => Some(self.backoff(attempt)),
            Retry::After(wait) if wait <= self.max_wait => Some(wait),
            Retry::After(_) => None,
        }
    }
}

/// A try that failed, and whether another one can help.
#[derive(Debug)]
pub(crate) struct Failed<E> {
    pub error: E,
    pub retry: Retry,
}

impl<E> Failed<E> {
    pub(crate) fn new(error: E, retry: Retry) -> Failed<E> {
        Failed { error, retry }
    }

    pub(crate) fn fatal(error: E) -> Failed<E> {
        Failed::new(error, Retry::No)
    }
}

/// Runs `call(attempt)` (1 for the first try) until it succeeds, fails for good, runs out of retries, or
/// the next pause would end after `deadline`; the error is the last try's. Backoff pauses get up to a
/// quarter more at random, so parallel jobs don't retry in step; a wait the server named is kept as is.
pub(crate) async fn retrying<T, E, Fut>(
    policy: &RetryPolicy,
    deadline: Instant,
    mut call: impl FnMut(u32) -> Fut,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, Failed<E>>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failed = match call(attempt).await {
            Ok(value) => return Ok(value),
            Err(failed) => failed,
        };
        let Some(mut pause) = policy.pause(attempt, failed.retry) else {
            return Err(failed.error);
        };
        if failed.retry == Retry::Backoff {
            pause += jitter(pause);
        }
        if Instant::now() + pause > deadline {
            return Err(failed.error);
        }
        tokio::time::sleep(pause).await;
    }
}

/// What an answer other than 2xx says about trying again. `message` is the error text the API sent (GitHub
/// words some rate limits only there).
pub(crate) fn judge(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    now: SystemTime,
) -> Retry {
    if let Some(wait) = rate_limit(status, headers, message, now) {
        return wait.map_or(Retry::Backoff, Retry::After);
    }
    if status.is_server_error() {
        return retry_after(headers, now).map_or(Retry::Backoff, Retry::After);
    }
    Retry::No
}

/// `Some` when the answer is a rate limit, holding the wait the server names, if any. A 429 always is;
/// a 403 is when it says so (GitHub answers an exhausted quota with 403 and `X-RateLimit-Remaining: 0`,
/// a secondary limit with `Retry-After` or only in its message).
pub(crate) fn rate_limit(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    now: SystemTime,
) -> Option<Option<Duration>> {
    let remaining = header(headers, "x-ratelimit-remaining")
        .or_else(|| header(headers, "ratelimit-remaining"))
        .and_then(|v| v.parse::<u64>().ok());
    let limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN
            && (remaining == Some(0)
                || headers.contains_key(RETRY_AFTER)
                || message.to_ascii_lowercase().contains("rate limit")));
    limited.then(|| retry_after(headers, now).or_else(|| reset_wait(headers, now)))
}

/// `Retry-After`: a number of seconds, or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = header(headers, RETRY_AFTER.as_str())?;
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = u64::try_from(at.timestamp()).ok()?;
    Some(Duration::from_secs(at.saturating_sub(unix_seconds(now))))
}

/// The wait until a rate limit's reset time (Unix seconds), plus a second for clock skew.
fn reset_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let reset = header(headers, "x-ratelimit-reset")
        .or_else(|| header(headers, "ratelimit-reset"))?
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_secs(
        reset.saturating_sub(unix_seconds(now)) + 1,
    ))
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Reads a list page by page: `fetch(None)` reads the first page, `fetch(Some(next))` the page the
/// previous answer named, until an answer names none or `max_pages` pages were read (a server that
/// keeps naming pages must not keep the job waiting).
pub(crate) async fn collect_pages<T, C, E, Fut>(
    max_pages: usize,
    mut fetch: impl FnMut(Option<C>) -> Fut,
) -> Result<Vec<T>, E>
where
    Fut: Future<Output = Result<(Vec<T>, Option<C>), E>>,
{
    let mut items = Vec::new();
    let mut cursor = None;
    for _ in 0..max_pages {
        let (page, next) = fetch(cursor.take()).await?;
        items.extend(page);
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(items)
}

/// A client for calls that carry a token: redirects are followed within the origin only (see the
/// module's docs), `connect` bounds each connection, `timeout` each whole call.
pub(crate) fn client(
    connect: Duration,
    timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    // rustls needs a process-wide crypto provider; the CLI installs ring, unit tests may not have.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("smart-rerun/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect)
        .timeout(timeout)
        .redirect(same_origin_redirects())
        .build()
}

/// Follows a redirect only to the origin (scheme, host, port) the request started at.
pub(crate) fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same = attempt
            .previous()
            .first()
            .is_some_and(|start| start.origin() == attempt.url().origin());
        if !same {
            attempt.stop()
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

/// Up to a quarter of `d`, at random.
pub(crate) fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    d.mul_f64(f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 4.0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A header map from (name, value) rows.
    pub(crate) fn headers(rows: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in rows {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// 2026-11-02T10:00:00Z.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_613_600)
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let rows: &[(&str, Option<u64>)] = &[
            ("7", Some(7)),
            (" 0 ", Some(0)),
            ("Mon, 02 Nov 2026 10:00:30 GMT", Some(30)),
            // A date already past: retry at once.
            ("Mon, 02 Nov 2026 09:00:00 GMT", Some(0)),
            ("soon", None),
            ("-3", None),
        ];
        for (value, seconds) in rows {
            assert_eq!(
                retry_after(&headers(&[("retry-after", value)]), now()),
                seconds.map(Duration::from_secs),
                "{value}"
            );
        }
        assert_eq!(retry_after(&headers(&[]), now()), None);
    }

    #[test]
    fn answers_are_judged_as_github_and_gitlab_send_them() {
        let at = |secs: u64| (1_793_613_600 + secs).to_string();
        let (soon, later) = (at(2), at(3600));
        type Row<'a> = (u16, Vec<(&'static str, &'a str)>, &'a str, Retry);
        let rows: Vec<Row> = vec![
            (502, vec![], "", Retry::Backoff),
            (
                503,
                vec![("retry-after", "5")],
                "",
                Retry::After(Duration::from_secs(5)),
            ),
            (429, vec![], "", Retry::Backoff),
            (
                429,
                vec![("retry-after", "1")],
                "",
                Retry::After(Duration::from_secs(1)),
            ),
            // GitHub's primary limit: 403, nothing left, a reset time.
            (
                403,
                vec![("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &soon)],
                "API rate limit exceeded for installation ID 1.",
                Retry::After(Duration::from_secs(3)),
            ),
            (
                403,
                vec![
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", &later),
                ],
                "",
                Retry::After(Duration::from_secs(3601)),
            ),
            // GitHub's secondary limit, named only in the message.
            (
                403,
                vec![],
                "You have exceeded a secondary rate limit",
                Retry::Backoff,
            ),
            // GitLab's limiter.
            (
                429,
                vec![("ratelimit-remaining", "0"), ("ratelimit-reset", &soon)],
                "",
                Retry::After(Duration::from_secs(3)),
            ),
            // Refusals stay refusals, whatever the quota says.
            (
                403,
                vec![("x-ratelimit-remaining", "4999")],
                "Resource not accessible by integration",
                Retry::No,
            ),
            (401, vec![], "Bad credentials", Retry::No),
            (404, vec![], "Not Found", Retry::No),
            (422, vec![], "Validation Failed", Retry::No),
            (302, vec![], "", Retry::No),
        ];
        for (status, h, message, expected) in rows {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(
                judge(status, &headers(&h), message, now()),
                expected,
                "{status} {h:?} {message}"
            );
        }
    }

    #[test]
    fn retries_are_capped_and_back_off_and_long_waits_are_not_waited() {
        let policy = RetryPolicy {
            retries: 3,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(3),
            max_wait: Duration::from_secs(30),
        };
        let pauses: Vec<Option<Duration>> =
            (1..=4).map(|a| policy.pause(a, Retry::Backoff)).collect();
        let s = |n| Some(Duration::from_secs(n));
        assert_eq!(pauses, [s(1), s(2), s(3), None]);
        assert_eq!(
            policy.pause(1, Retry::After(Duration::from_secs(30))),
            s(30)
        );
        assert_eq!(policy.pause(1, Retry::After(Duration::from_secs(31))), None);
        assert_eq!(policy.pause(1, Retry::No), None);
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            retries: 3,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            max_wait: Duration::from_secs(1),
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Runs `retrying` over a server that answers `answers` in turn; returns the result and the tries.
    fn drive(answers: &[Retry], deadline: Duration) -> (Result<u32, u32>, u32) {
        let tries = AtomicU32::new(0);
        let result = block_on(retrying(&quick(), Instant::now() + deadline, |attempt| {
            tries.fetch_add(1, Ordering::SeqCst);
            let answer = answers.get(attempt as usize - 1).copied();
            async move {
                match answer {
                    None => Ok(attempt),
                    Some(retry) => Err(Failed::new(attempt, retry)),
                }
            }
        }));
        (result, tries.load(Ordering::SeqCst))
    }

    #[test]
    fn the_loop_retries_what_can_succeed_and_stops_at_the_cap() {
        let long = Duration::from_secs(10);
        let (b, after) = (Retry::Backoff, Retry::After(Duration::from_millis(2)));
        assert_eq!(
            drive(&[b, after], long),
            (Ok(3), 3),
            "succeeds on the third try"
        );
        assert_eq!(
            drive(&[b, b, b, b, b], long),
            (Err(4), 4),
            "one try and three retries"
        );
        assert_eq!(
            drive(&[Retry::No], long),
            (Err(1), 1),
            "a 4xx is not retried"
        );
        let far = Retry::After(Duration::from_secs(5));
        assert_eq!(
            drive(&[far], long),
            (Err(1), 1),
            "a wait past max_wait is not waited"
        );
        assert_eq!(
            drive(
                &[Retry::After(Duration::from_millis(500))],
                Duration::from_millis(100)
            ),
            (Err(1), 1),
            "a pause that would end past the deadline is not taken"
        );
    }

    #[test]
    fn pages_are_read_until_none_is_named_and_never_past_the_bound() {
        let pages = block_on(collect_pages(10, |page: Option<u32>| async move {
            let page = page.unwrap_or(1);
            let next = (page < 3).then_some(page + 1);
            Ok::<_, ()>((vec![page * 10, page * 10 + 1], next))
        }));
        assert_eq!(pages, Ok(vec![10, 11, 20, 21, 30, 31]));
        let endless = block_on(collect_pages(4, |page: Option<u32>| async move {
            Ok::<_, ()>((vec![page.unwrap_or(0)], Some(page.unwrap_or(0) + 1)))
        }));
        assert_eq!(endless, Ok(vec![0, 1, 2, 3]));
        let failed = block_on(collect_pages(4, |page: Option<u32>| async move {
            match page {
                None => Ok((vec![1], Some(2))),
                Some(_) => Err("502"),
            }
        }));
        assert_eq!(failed, Err("502"));
    }
}
