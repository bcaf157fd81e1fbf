//! AI classification on top of the offline heuristics. The main type is [`AiAdvisor`], the runner's
//! [`Advisor`]: for each new failure fingerprint it answers from the cache ([`cache`]) or asks the
//! endpoint — an MCP tool over Streamable HTTP ([`mcp`]) or a plain JSON POST ([`http`]) — after
//! trimming and scrubbing what is sent ([`redact`]). Calls for distinct fingerprints run concurrently on
//! a current-thread tokio runtime made for the batch and dropped after it, each bounded by
//! min(10 s, what is left of the run's budget).
//!
//! Nothing here can fail or hang the run: an endpoint that is down, slow, refuses the token, errs or
//! answers garbage gives one note for the run's warnings, and from then on the heuristics decide alone.

pub mod cache;
pub mod http;
pub mod mcp;
pub mod redact;

use crate::classify::advisor::{Advice, Advisor, FailureQuery, validate_answer};
use crate::config::{AiProtocol, AiSettings};
use crate::model::ClassificationSource;
use crate::signals::Interrupts;
use cache::Cache;
use redact::Redactor;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

/// No single call waits longer than this, whatever the run's budget.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The delay cap when the policy sets none.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(300);

/// Why a call brought no answer. Everything but a refused answer switches the endpoint off for the run.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// Connection refused, no route, DNS failure: the detail says which.
    Unreachable(String),
    /// No answer within this many seconds.
    Timeout(f64),
    /// HTTP 401 or 403.
    Auth(u16),
    /// Another HTTP error status.
    Status(u16),
    /// An answer that is not a classification.
    Garbage(String),
    /// The MCP tool reported an error (`isError`).
    Tool(String),
    /// Anything else the transport or protocol reported.
    Protocol(String),
}

impl CallError {
    /// Classifies an error from reqwest or rmcp by walking its sources (and into rmcp's wrappers, which
    /// hold the transport's error without exposing it as a source).
    pub fn from_error(e: &(dyn std::error::Error + 'static)) -> CallError {
        use rmcp::service::{ClientInitializeError, ServiceError};
        use rmcp::transport::DynamicTransportError;
        use rmcp::transport::streamable_http_client::{HttpStatusError, StreamableHttpError};
        let mut chain = Vec::new();
        let mut current = Some(e);
        while let Some(err) = current {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if let Some(found) = CallError::from_io(io) {
                    return found;
                }
            }
            if let Some(status) = err
                .downcast_ref::<reqwest::Error>()
                .and_then(reqwest::Error::status)
            {
                return CallError::from_status(status.as_u16());
            }
            if let Some(status) = err.downcast_ref::<HttpStatusError>() {
                return CallError::from_status(status.status);
            }
            let inner: Option<&DynamicTransportError> =
                match err.downcast_ref::<ClientInitializeError>() {
                    Some(ClientInitializeError::TransportError { error, .. }) => Some(error),
                    _ => match err.downcast_ref::<ServiceError>() {
                        Some(ServiceError::TransportSend(error)) => Some(error),
                        Some(ServiceError::Timeout { timeout }) => {
                            return CallError::Timeout(timeout.as_secs_f64());
                        }
                        _ => err.downcast_ref::<DynamicTransportError>(),
                    },
                };
            if let Some(http) = inner.and_then(|d| {
                d.error
                    .downcast_ref::<StreamableHttpError<reqwest::Error>>()
            }) {
                match http {
                    StreamableHttpError::Client(re) => return CallError::from_error(re),
                    StreamableHttpError::Io(io) => {
                        if let Some(found) = CallError::from_io(io) {
                            return found;
                        }
                    }
                    StreamableHttpError::HttpStatus(s) => return CallError::from_status(s.status),
                    StreamableHttpError::AuthRequired(_) => return CallError::Auth(401),
                    StreamableHttpError::InsufficientScope(_) => return CallError::Auth(403),
                    StreamableHttpError::Deserialize(e) => {
                        return CallError::Garbage(one_line(&e.to_string(), 120));
                    }
                    StreamableHttpError::UnexpectedContentType(t) => {
                        return CallError::Garbage(format!(
                            "content type {}",
                            t.as_deref().unwrap_or("(none)")
                        ));
                    }
                    other => return CallError::Protocol(one_line(&other.to_string(), 160)),
                }
            }
            chain.push(err.to_string());
            current = err.source();
        }
        let text = chain.join(": ");
        let lower = text.to_ascii_lowercase();
        if lower.contains("dns error") || lower.contains("failed to lookup") {
            return CallError::Unreachable("name resolution failed".into());
        }
        if lower.contains("error sending request") {
            return CallError::Unreachable(one_line(chain.last().map_or("", String::as_str), 120));
        }
        if lower.contains("error decoding") || lower.contains("expected value") {
            return CallError::Garbage(one_line(&text, 160));
        }
        CallError::Protocol(one_line(&text, 160))
    }

    fn from_io(io: &std::io::Error) -> Option<CallError> {
        use std::io::ErrorKind::*;
        let what = match io.kind() {
            ConnectionRefused => "connection refused",
            ConnectionReset => "connection reset",
            ConnectionAborted => "connection aborted",
            NotConnected => "not connected",
            TimedOut => "connection timed out",
            AddrNotAvailable => "address not available",
            HostUnreachable => "host unreachable",
            NetworkUnreachable => "network unreachable",
            _ => return None,
        };
        Some(CallError::Unreachable(what.into()))
    }

    fn from_status(status: u16) -> CallError {
        match status {
            401 | 403 => CallError::Auth(status),
            s => CallError::Status(s),
        }
    }

    /// The one line for the run's warnings.
    fn note(&self, endpoint: &str, tool: &str, has_token: bool) -> String {
        let what = match self {
            CallError::Unreachable(detail) => format!("unreachable ({detail})"),
            CallError::Timeout(s) => format!("did not answer within {s}s"),
            CallError::Auth(status) if has_token => {
                format!("refused the token (HTTP {status})")
            }
            CallError::Auth(status) => format!(
                "needs a token (HTTP {status}; set smart_rerun_ai_token or SMART_RERUN_AI_TOKEN)"
            ),
            CallError::Status(status) => format!("failed (HTTP {status})"),
            CallError::Garbage(why) => {
                format!("sent an answer that is not a classification ({why})")
            }
            CallError::Tool(text) => format!("tool {tool} failed ({})", one_line(text, 160)),
            CallError::Protocol(text) => format!("failed ({text})"),
        };
        format!("AI endpoint {endpoint} {what}: the heuristics decided")
    }
}

/// The first line of `text`, at most `max` characters.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let line = text.trim().lines().next().unwrap_or("");
    if line.chars().count() > max {
        let mut t: String = line.chars().take(max).collect();
        t.push('…');
        t
    } else {
        line.to_owned()
    }
}

/// What the advisor did over the run, for the AI report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AiStats {
    /// Calls made to the endpoint.
    pub calls: u32,
    /// Valid answers received.
    pub answered: u32,
    /// Answers refused by validation (unknown category, confidence outside 0..1, delay above the cap).
    pub refused: u32,
    /// Calls that brought no answer (endpoint down, slow, 401, 5xx, garbage).
    pub failed: u32,
    /// Fingerprints answered from the cache, without a call.
    pub cache_hits: u32,
}

/// The runner's AI [`Advisor`]. Made before the run; reads its settings at each call, because the
/// pytest ini values are only known once the first round has started.
#[derive(Debug, Default)]
pub struct AiAdvisor {
    cache: Option<Cache>,
    cache_opened: bool,
    /// Set once the endpoint failed: the note given, and no more calls this run.
    broken: Option<String>,
    /// Fingerprints whose answer was refused: not asked again.
    refused: HashSet<String>,
    no_endpoint_noted: bool,
    budget_noted: bool,
    /// The run's signals: a Ctrl-C ends the calls in flight.
    interrupts: Option<Interrupts>,
    pub stats: AiStats,
    /// What was scrubbed from everything sent, by kind: counts for the AI report, never values.
    pub redacted: redact::Redactions,
    /// Every note given, in order.
    pub notes: Vec<String>,
}

/// A refused answer (asked again never), or an answer that is no classification at all.
enum AnswerError {
    Refused(String),
    Garbage(String),
}

impl AiAdvisor {
    pub fn new() -> AiAdvisor {
        AiAdvisor::default()
    }

    /// Calls in flight end as soon as one of these signals arrives.
    pub fn with_interrupts(mut self, interrupts: Interrupts) -> AiAdvisor {
        self.interrupts = Some(interrupts);
        self
    }

    fn cap_for(q: &FailureQuery) -> Duration {
        q.policy
            .max_delay_seconds
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map_or(DEFAULT_MAX_DELAY, Duration::from_secs_f64)
    }

    /// Reads `{category, confidence, reason, action, delay_seconds}`.
    fn parse(
        value: &Value,
        cap: Duration,
        redactor: &Redactor,
    ) -> Result<crate::model::Classification, AnswerError> {
        let Some(obj) = value.as_object() else {
            return Err(AnswerError::Garbage("not a JSON object".into()));
        };
        let Some(category) = obj.get("category").and_then(Value::as_str) else {
            return Err(AnswerError::Garbage("no \"category\"".into()));
        };
        let number = |key: &str| -> Result<Option<f64>, AnswerError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => Ok(n.as_f64()),
                Some(other) => Err(AnswerError::Refused(format!(
                    "{key} {other} is not a number"
                ))),
            }
        };
        let text = |key: &str| obj.get(key).and_then(Value::as_str);
        let reason = text("reason").map(|r| redactor.scrub_tokens(r));
        validate_answer(
            category,
            number("confidence")?,
            reason.as_deref(),
            text("action"),
            number("delay_seconds")?,
            cap,
            ClassificationSource::Ai,
        )
        .map_err(AnswerError::Refused)
    }

    fn note(&mut self, notes: &mut Vec<String>, note: String) {
        self.notes.push(note.clone());
        notes.push(note);
    }
}

impl Advisor for AiAdvisor {
    fn advise(
        &mut self,
        settings: &AiSettings,
        queries: &[FailureQuery],
        deadline: Duration,
    ) -> (Vec<Advice>, Vec<String>) {
        let mut advice = Vec::new();
        let mut notes = Vec::new();
        if !settings.enabled {
            return (advice, notes);
        }
        if !self.cache_opened {
            self.cache_opened = true;
            if let Some(path) = &settings.cache {
                let (cache, note) = Cache::open(path);
                if let Some(note) = note {
                    self.note(&mut notes, note);
                }
                self.cache = Some(cache);
            }
        }
        let mut ask: Vec<&FailureQuery> = Vec::new();
        for q in queries {
            let cap = Self::cap_for(q);
            let hit = self
                .cache
                .as_ref()
                .and_then(|c| c.get(&q.fingerprint))
                .and_then(|hit| {
                    // Re-validated: a cap lowered since it was stored makes it a miss.
                    validate_answer(
                        &hit.category,
                        Some(hit.confidence),
                        Some(&hit.reason),
                        Some(&hit.action),
                        hit.delay_seconds,
                        cap,
                        ClassificationSource::Cache,
                    )
                    .ok()
                });
            match hit {
                Some(classification) => {
                    self.stats.cache_hits += 1;
                    advice.push(Advice {
                        fingerprint: q.fingerprint.clone(),
                        classification,
                    });
                }
                None if self.refused.contains(&q.fingerprint) => {}
                None => ask.push(q),
            }
        }
        if ask.is_empty() || self.broken.is_some() {
            return (advice, notes);
        }
        if deadline.is_zero() {
            if !self.budget_noted {
                self.budget_noted = true;
                self.note(
                    &mut notes,
                    "the AI budget for this run is spent (smart_rerun_ai_timeout): the heuristics decided for the remaining failures".into(),
                );
            }
            return (advice, notes);
        }
        let Some(endpoint) = settings.endpoint.as_deref() else {
            if !self.no_endpoint_noted {
                self.no_endpoint_noted = true;
                self.note(
                    &mut notes,
                    "smart_rerun_ai is on but no endpoint is set (smart_rerun_ai_endpoint, --ai-endpoint): the heuristics decided".into(),
                );
            }
            return (advice, notes);
        };
        let token = settings.token.as_ref().map(|t| t.expose().to_owned());
        let redactor = Redactor::from_process_env(token.as_deref().as_slice());
        // The endpoint as printed: no credentials, even with redaction off.
        let shown = redactor.scrub(endpoint);
        let mut payloads: Vec<Value> = Vec::with_capacity(ask.len());
        for q in &ask {
            let sent = redactor.query_counted(q, settings.redact, &mut self.redacted);
            payloads.push(serde_json::to_value(sent).unwrap_or(Value::Null));
        }
        let asked = ask_all(
            settings,
            endpoint,
            token.as_deref(),
            payloads,
            deadline,
            self.interrupts.as_ref(),
        );
        let results = match asked {
            Ok(Some(results)) => results,
            Ok(None) => {
                // Interrupted: no note (the run says it was interrupted), and no more calls.
                self.broken = Some("interrupted".into());
                return (advice, notes);
            }
            Err(e) => {
                let note =
                    format!("AI classification could not start ({e}): the heuristics decided");
                self.broken = Some(note.clone());
                self.note(&mut notes, note);
                return (advice, notes);
            }
        };
        let mut failure: Option<CallError> = None;
        for (q, result) in ask.iter().zip(results) {
            self.stats.calls += 1;
            let answer = result.map_err(|e| match e {
                CallError::Garbage(why) => AnswerError::Garbage(why),
                other => {
                    failure.get_or_insert(other);
                    AnswerError::Garbage(String::new())
                }
            });
            match answer.and_then(|v| Self::parse(&v, Self::cap_for(q), &redactor)) {
                Ok(classification) => {
                    self.stats.answered += 1;
                    if let Some(cache) = &mut self.cache {
                        cache.put(&q.fingerprint, &classification);
                    }
                    advice.push(Advice {
                        fingerprint: q.fingerprint.clone(),
                        classification,
                    });
                }
                Err(AnswerError::Refused(why)) => {
                    self.stats.refused += 1;
                    self.refused.insert(q.fingerprint.clone());
                    let note = format!(
                        "AI answer for {} ignored: {}",
                        redactor.scrub(&q.nodeid),
                        redactor.scrub_tokens(&why)
                    );
                    // A classifier that answers badly throughout must not flood the warnings: the
                    // first few are shown, all are in the AI report.
                    if self.stats.refused <= MAX_REFUSAL_WARNINGS {
                        self.note(&mut notes, note);
                    } else {
                        self.notes.push(note);
                        if self.stats.refused == MAX_REFUSAL_WARNINGS + 1 {
                            notes.push("more AI answers were ignored; the AI report (smart_rerun_ai_report) lists them all".into());
                        }
                    }
                }
                Err(AnswerError::Garbage(why)) => {
                    self.stats.failed += 1;
                    if !why.is_empty() {
                        failure.get_or_insert(CallError::Garbage(why));
                    }
                }
            }
        }
        if let Some(e) = failure {
            let note = redactor.scrub_tokens(&e.note(&shown, &settings.tool, token.is_some()));
            self.broken = Some(note.clone());
            self.note(&mut notes, note);
        }
        if let Some(cache) = &mut self.cache {
            if let Err(e) = cache.save() {
                let note = format!(
                    "AI cache {} not written: {e}",
                    settings.cache.as_deref().unwrap_or(Path::new("")).display()
                );
                self.note(&mut notes, note);
            }
        }
        (advice, notes)
    }
}

/// Returns once a signal has been received (never without `interrupts`).
async fn until_interrupted(interrupts: Option<&Interrupts>) {
    let Some(interrupts) = interrupts else {
        return std::future::pending().await;
    };
    while interrupts.received().is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Refused answers beyond this many go to the AI report only.
const MAX_REFUSAL_WARNINGS: u32 = 3;

/// At most this many calls are in flight at once.
const MAX_IN_FLIGHT: usize = 8;

/// One call's bounds: a place among the calls in flight, then min(per call, the batch's end).
struct Bounded {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    end: Instant,
    per_call: Duration,
    timeout: CallError,
}

impl Bounded {
    async fn run(
        self,
        call: impl std::future::Future<Output = Result<Value, CallError>>,
    ) -> Result<Value, CallError> {
        let Ok(Ok(_permit)) = tokio::time::timeout_at(self.end, self.permits.acquire_owned()).await
        else {
            return Err(self.timeout);
        };
        let call_end = self.end.min(Instant::now() + self.per_call);
        tokio::time::timeout_at(call_end, call)
            .await
            .unwrap_or(Err(self.timeout))
    }
}

/// Asks every question concurrently; one result per payload, in order. Runs on its own current-thread
/// runtime, shut down without waiting for anything still in flight.
fn ask_all(
    settings: &AiSettings,
    endpoint: &str,
    token: Option<&str>,
    payloads: Vec<Value>,
    budget: Duration,
    interrupts: Option<&Interrupts>,
) -> Result<Option<Vec<Result<Value, CallError>>>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("no async runtime: {e}"))?;
    let per_call = CALL_TIMEOUT.min(budget);
    let client = reqwest::Client::builder()
        .connect_timeout(per_call)
        .user_agent(concat!("smart-rerun/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("no HTTP client: {e}"))?;
    let work = async {
        let end = Instant::now() + budget;
        let timeout = CallError::Timeout((per_call.as_secs_f64() * 10.0).round() / 10.0);
        let mut results: Vec<Result<Value, CallError>> = vec![Err(timeout.clone()); payloads.len()];
        let mut calls = tokio::task::JoinSet::new();
        let session = match settings.protocol {
            AiProtocol::Mcp => {
                let connect = mcp::connect(endpoint, token, client.clone());
                match tokio::time::timeout_at(end.min(Instant::now() + per_call), connect).await {
                    Ok(Ok(session)) => Some(session),
                    Ok(Err(e)) => return results.iter().map(|_| Err(e.clone())).collect(),
                    Err(_) => return results,
                }
            }
            AiProtocol::Http => None,
        };
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        for (i, payload) in payloads.into_iter().enumerate() {
            let bounded = Bounded {
                permits: permits.clone(),
                end,
                per_call,
                timeout: timeout.clone(),
            };
            match &session {
                Some(session) => {
                    let peer = session.peer();
                    let tool = settings.tool.clone();
                    calls.spawn(
                        async move { (i, bounded.run(mcp::call(&peer, &tool, payload)).await) },
                    );
                }
                None => {
                    let client = client.clone();
                    let url = endpoint.to_owned();
                    let token = token.map(str::to_owned);
                    calls.spawn(async move {
                        let call = http::call(&client, &url, token.as_deref(), &payload);
                        (i, bounded.run(call).await)
                    });
                }
            }
        }
        while let Some(done) = calls.join_next().await {
            if let Ok((i, result)) = done {
                results[i] = result;
            }
        }
        if let Some(session) = session {
            session.close().await;
        }
        results
    };
    // Ctrl-C or SIGTERM drops every call in flight at once: the run stops without waiting on the AI.
    let results = runtime.block_on(async {
        tokio::select! {
            results = work => Some(results),
            _ = until_interrupted(interrupts) => None,
        }
    });
    runtime.shutdown_background();
    Ok(results)
}

/// The AI report (`--ai-report PATH`): every classification the advisor gave and what was done with it,
/// with the run's metadata. No token, and the endpoint without credentials.
pub fn write_report(
    path: &Path,
    settings: &AiSettings,
    advisor: &AiAdvisor,
    trail: &impl Serialize,
    run: &crate::model::RunInfo,
) -> std::io::Result<()> {
    let redactor =
        Redactor::from_process_env(settings.token.as_ref().map(|t| t.expose()).as_slice());
    let doc = serde_json::json!({
        "schema_version": 1,
        "kind": "smart-rerun-ai-report",
        "enabled": settings.enabled,
        "endpoint": settings.endpoint.as_deref().map(|e| redactor.scrub(e)),
        "protocol": settings.protocol.as_str(),
        "tool": settings.tool,
        "redact": settings.redact,
        "cache": settings.cache.as_ref().map(|p| p.display().to_string()),
        "budget_seconds": settings.timeout.as_secs_f64(),
        "run": {
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "exit_code": run.exit_code,
            "pytest_version": run.pytest_version,
            "rootdir": run.rootdir,
        },
        "stats": advisor.stats,
        "redacted": advisor.redacted,
        "notes": advisor.notes,
        "classifications": trail,
    });
    let text = redactor.scrub_tokens(&serde_json::to_string_pretty(&doc)?);
    crate::output::write_atomic(path, |f| {
        use std::io::Write;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, Category};

    #[test]
    fn answers_are_read_refused_or_called_garbage() {
        let r = Redactor::new(Vec::<(String, String)>::new(), &["the-token-123"]);
        let cap = Duration::from_secs(30);
        let ok = AiAdvisor::parse(
            &serde_json::json!({"category": "flaky-network", "confidence": 0.9, "reason": "reset; the-token-123", "action": "retry_with_delay", "delay_seconds": 2}),
            cap,
            &r,
        )
        .ok()
        .unwrap();
        assert_eq!(ok.category, Category::FlakyNetwork);
        assert_eq!(ok.action, Action::RetryWithDelay { seconds: 2.0 });
        assert_eq!(ok.reason, "reset; ***");
        assert_eq!(ok.source, ClassificationSource::Ai);
        let refused = |v: Value| match AiAdvisor::parse(&v, cap, &r) {
            Err(AnswerError::Refused(why)) => why,
            _ => panic!("{v} not refused"),
        };
        assert!(refused(serde_json::json!({"category": "cosmic"})).contains("not a category"));
        assert!(
            refused(serde_json::json!({"category": "unknown", "confidence": 1.7}))
                .contains("outside 0..1")
        );
        assert!(
            refused(serde_json::json!({"category": "unknown", "confidence": "high"}))
                .contains("not a number")
        );
        for garbage in [
            serde_json::json!([1]),
            serde_json::json!({"verdict": "flaky"}),
        ] {
            assert!(matches!(
                AiAdvisor::parse(&garbage, cap, &r),
                Err(AnswerError::Garbage(_))
            ));
        }
    }

    #[test]
    fn notes_name_the_endpoint_and_what_went_wrong() {
        let e = CallError::Unreachable("connection refused".into());
        assert_eq!(
            e.note("http://127.0.0.1:9/mcp", "classify_failure", false),
            "AI endpoint http://127.0.0.1:9/mcp unreachable (connection refused): the heuristics decided"
        );
        assert!(
            CallError::Auth(401)
                .note("u", "t", false)
                .contains("needs a token")
        );
        assert!(
            CallError::Auth(401)
                .note("u", "t", true)
                .contains("refused the token")
        );
        assert!(
            CallError::Status(503)
                .note("u", "t", true)
                .contains("failed (HTTP 503)")
        );
    }

    #[test]
    fn a_disabled_advisor_asks_nothing_and_no_endpoint_is_one_note() {
        let mut a = AiAdvisor::new();
        let settings = AiSettings::default();
        let q = sample_query();
        assert_eq!(
            a.advise(&settings, std::slice::from_ref(&q), Duration::from_secs(1)),
            (vec![], vec![])
        );
        let on = AiSettings {
            enabled: true,
            ..AiSettings::default()
        };
        let (advice, notes) = a.advise(&on, std::slice::from_ref(&q), Duration::from_secs(1));
        assert!(advice.is_empty());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            a.advise(&on, &[q], Duration::from_secs(1)).1.is_empty(),
            "noted once"
        );
    }

    #[test]
    fn cache_hits_cost_no_call_and_an_unreachable_endpoint_is_noted_once() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.json");
        let q = sample_query();
        let (mut cache, _) = Cache::open(&path);
        cache.put(
            &q.fingerprint,
            &crate::model::Classification {
                category: Category::FlakyTiming,
                confidence: 0.6,
                action: Action::RetryWithDelay { seconds: 1.0 },
                reason: "slow".into(),
                source: ClassificationSource::Ai,
            },
        );
        cache.save().unwrap();
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = AiSettings {
            enabled: true,
            endpoint: Some(format!("http://127.0.0.1:{port}/mcp")),
            cache: Some(path),
            tool: "classify_failure".into(),
            ..AiSettings::default()
        };
        let mut a = AiAdvisor::new();
        let (advice, notes) = a.advise(&settings, std::slice::from_ref(&q), Duration::from_secs(5));
        assert_eq!(advice.len(), 1);
        assert_eq!(advice[0].classification.source, ClassificationSource::Cache);
        assert!(notes.is_empty());
        assert_eq!((a.stats.calls, a.stats.cache_hits), (0, 1));
        let mut other = sample_query();
        other.fingerprint = "fedcba9876543210".into();
        for protocol in [AiProtocol::Mcp, AiProtocol::Http] {
            let settings = AiSettings {
                protocol,
                ..settings.clone()
            };
            let mut a = AiAdvisor::new();
            let started = std::time::Instant::now();
            let (advice, notes) = a.advise(
                &settings,
                std::slice::from_ref(&other),
                Duration::from_secs(5),
            );
            assert!(advice.is_empty());
            assert_eq!(notes.len(), 1, "{notes:?}");
            assert!(
                notes[0].contains("unreachable (connection refused)"),
                "{protocol:?}: {notes:?}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(4),
                "{:?}",
                started.elapsed()
            );
            assert!(
                a.advise(&settings, &[other.clone()], Duration::from_secs(5))
                    .1
                    .is_empty(),
                "noted once"
            );
            assert_eq!(a.stats.calls, 1, "no second call to a broken endpoint");
        }
    }

    /// A plain HTTP endpoint on a thread that answers every request with `body`, and counts them.
    fn fixed_http_endpoint(
        body: &'static str,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicU32>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/classify", listener.local_addr().unwrap());
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut request = vec![0; length];
                let _ = reader.read_exact(&mut request);
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (url, count)
    }

    #[test]
    fn refused_answers_are_warned_about_a_few_times_then_only_reported() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (url, count) = fixed_http_endpoint(r#"{"category": "cosmic-rays", "confidence": 0.5}"#);
        let settings = AiSettings {
            enabled: true,
            endpoint: Some(url),
            protocol: AiProtocol::Http,
            ..AiSettings::default()
        };
        let queries: Vec<FailureQuery> = (0..5)
            .map(|i| {
                let mut q = sample_query();
                q.nodeid = format!("t.py::test_{i}");
                q.fingerprint = format!("{i:016x}");
                q
            })
            .collect();
        let mut a = AiAdvisor::new();
        let (advice, notes) = a.advise(&settings, &queries, Duration::from_secs(10));
        assert!(advice.is_empty());
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 5);
        assert_eq!(notes.len(), MAX_REFUSAL_WARNINGS as usize + 1, "{notes:?}");
        assert!(notes[0].contains("ignored: 'cosmic-rays' is not a category"));
        assert!(
            notes
                .last()
                .unwrap()
                .starts_with("more AI answers were ignored")
        );
        assert_eq!(a.notes.len(), 5, "every refusal is in the AI report");
        assert_eq!(a.stats.refused, 5);
        // Refused fingerprints are not asked again; the endpoint is not written off.
        let (_, notes) = a.advise(&settings, &queries, Duration::from_secs(10));
        assert!(notes.is_empty());
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 5);
        assert!(a.broken.is_none());
    }

    fn sample_query() -> FailureQuery {
        FailureQuery {
            nodeid: "t.py::test_x".into(),
            fingerprint: "0123456789abcdef".into(),
            exception_type: "builtins.TimeoutError".into(),
            exception_bases: vec!["builtins.TimeoutError".into(), "builtins.OSError".into()],
            message: "timed out".into(),
            traceback: "E   TimeoutError: timed out".into(),
            attempts: vec![],
            heuristic: crate::model::Classification {
                category: Category::FlakyTiming,
                confidence: 0.7,
                action: Action::Retry,
                reason: "TimeoutError".into(),
                source: ClassificationSource::Heuristic,
            },
            policy: crate::model::PolicyInfo::from(&crate::policy::RetryPolicy::default()),
        }
    }
}
