//! AI classification on top of the offline heuristics. The main type is [`AiAdvisor`], the runner's
//! [`Advisor`]: for each new failure fingerprint it answers from the cache ([`cache`]) or asks the
//! endpoint — an MCP tool over Streamable HTTP ([`mcp`]) or a plain JSON POST ([`http`]) — after
//! trimming and scrubbing what is sent ([`redact`]). Calls for distinct fingerprints run concurrently on
//! a current-thread tokio runtime made for the batch and dropped after it, each bounded by
//! min(10 s, what is left of the run's budget).
//!
//! Nothing here can fail or hang the run: an endpoint that is down, slow, refuses the token, errs or
//! answers garbage gives one note for the run's warnings, and from then on the heuristics decide alone.

mod ask;
pub(crate) mod cache;
mod error;
pub(crate) mod http;
pub(crate) mod mcp;
pub(crate) mod redact;

pub(crate) use error::CallError;
pub(crate) use error::one_line;

use crate::classify::advisor::{Advice, Advisor, FailureQuery, validate_answer};
use crate::config::AiSettings;
use crate::model::ClassificationSource;
use crate::signals::Interrupts;
use ask::ask_all;
use cache::Cache;
use redact::Redactor;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// No single call waits longer than this, whatever the run's budget.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The delay cap when the policy sets none.
pub(crate) const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(300);

/// What the advisor did over the run, for the AI report.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct AiStats {
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
pub(crate) struct AiAdvisor {
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
    pub(crate) fn new() -> AiAdvisor {
        AiAdvisor::default()
    }

    /// Calls in flight end as soon as one of these signals arrives.
    pub(crate) fn with_interrupts(mut self, interrupts: Interrupts) -> AiAdvisor {
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

/// Refused answers beyond this many go to the AI report only.
const MAX_REFUSAL_WARNINGS: u32 = 3;

/// The AI report (`--ai-report PATH`): every classification the advisor gave and what was done with it,
/// with the run's metadata. No token, and the endpoint without credentials.
pub(crate) fn write_report(
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
mod tests;
