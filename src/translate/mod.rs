//! Retry policies in plain words: `smart-rerun policy "retry network errors up to 4 times with exponential
//! backoff"` asks the configured AI endpoint to translate the sentence into retry-policy settings, checks
//! the answer with the code that checks every configuration ([`Settings::from_layer`]), and renders the
//! settings as the project's pytest configuration ([`write`] puts them into its file).
//!
//! The question names every retry-policy setting with its kind, allowed values, default and meaning, so
//! the endpoint needs no other knowledge of smart-rerun. Over MCP it is a call of the tool
//! `translate_policy` (`--policy-tool`); over plain HTTP a POST of the same object with
//! `"task": "translate_policy"`. The answer: `{"settings": {KEY: VALUE, ...}, "notes": [TEXT, ...]}`.

pub(crate) mod write;

use crate::classify::ai::{CallError, http, mcp};
use crate::config::{self, Group, KEYS, Key, RawLayer, Settings, Source};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// The tool (MCP) or task (HTTP) that translates, unless `--policy-tool` names another.
pub(crate) const DEFAULT_TOOL: &str = "translate_policy";

/// Most notes shown from one answer, and most characters of each.
const MAX_NOTES: usize = 10;
const NOTE_CHARS: usize = 300;

/// Settings a translation may set: the retry policy's.
pub(crate) fn policy_keys() -> impl Iterator<Item = &'static Key> {
    KEYS.iter().filter(|k| k.group == Group::Policy)
}

/// A checked translation: settings in the table's order, with the endpoint's notes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Translation {
    pub settings: Vec<(&'static str, String)>,
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum TranslateError {
    #[error(
        "`policy` needs an AI endpoint to translate with: set --ai-endpoint URL (or \
         SMART_RERUN_AI_ENDPOINT, or smart_rerun_ai_endpoint in the pytest configuration file)"
    )]
    NoEndpoint,
    /// `what` says what went wrong ([`CallError::what`]).
    #[error("AI endpoint {endpoint} {what}: the policy was not translated")]
    Call { endpoint: String, what: String },
    #[error("the AI endpoint's answer was rejected: {0}")]
    Rejected(String),
}

/// What is sent: the sentence, and every setting the answer may use.
pub(crate) fn question(sentence: &str, tool: &str) -> Value {
    let settings: Vec<Value> = policy_keys()
        .map(|k| {
            json!({
                "key": k.ini,
                "kind": k.value_name(),
                "allowed": k.kind.allowed(),
                "default": k.default,
                "help": k.help,
            })
        })
        .collect();
    json!({ "task": tool, "sentence": sentence, "settings": settings })
}

/// Asks the endpoint in `ai` (its protocol, token and time budget) to translate `sentence`.
pub(crate) fn ask(
    ai: &config::AiSettings,
    sentence: &str,
    tool: &str,
) -> Result<Value, TranslateError> {
    let endpoint = ai.endpoint.clone().ok_or(TranslateError::NoEndpoint)?;
    let call_error = |error: CallError| TranslateError::Call {
        endpoint: endpoint.clone(),
        what: error.what(tool, ai.token.is_some(), "a translation"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| call_error(CallError::Protocol(format!("no async runtime: {e}"))))?;
    let timeout = ai.timeout.max(Duration::from_secs(1));
    let client = crate::ci::http::client(timeout, timeout)
        .map_err(|e| call_error(CallError::Protocol(format!("no HTTP client: {e}"))))?;
    let token = ai.token.as_ref().map(|t| t.expose().to_owned());
    let body = question(sentence, tool);
    let work = async {
        match ai.protocol {
            config::AiProtocol::Mcp => {
                let session = mcp::connect(&endpoint, token.as_deref(), client).await?;
                let answer = mcp::call(&session.peer(), tool, body).await;
                session.close().await;
                answer
            }
            config::AiProtocol::Http => {
                http::call(&client, &endpoint, token.as_deref(), &body).await
            }
        }
    };
    let secs = (timeout.as_secs_f64() * 10.0).round() / 10.0;
    match runtime.block_on(async { tokio::time::timeout(timeout, work).await }) {
        Ok(answer) => answer.map_err(call_error),
        Err(_) => Err(call_error(CallError::Timeout(secs))),
    }
}

/// Checks an answer: an object whose `settings` set only retry-policy keys, each to a value the
/// configuration accepts (every problem listed), and at least one of them.
pub(crate) fn check(answer: &Value, cwd: &Path) -> Result<Translation, TranslateError> {
    let reject = |why: String| TranslateError::Rejected(why);
    let Some(given) = answer.get("settings").and_then(Value::as_object) else {
        return Err(reject(
            "it has no \"settings\" object (expected {\"settings\": {\"smart_rerun_max\": \"3\", ...}})"
                .into(),
        ));
    };
    let allowed: Vec<&str> = policy_keys().map(|k| k.ini).collect();
    let mut layer = RawLayer::default();
    let mut problems = Vec::new();
    for (key, value) in given {
        let Some(k) = policy_keys().find(|k| k.ini == key) else {
            problems.push(format!(
                "{} is not a retry-policy setting (the policy may set {})",
                crate::classify::ai::one_line(key, 60),
                allowed.join(", ")
            ));
            continue;
        };
        match scalar(value) {
            Some(text) if !text.contains(['\n', '\r']) => {
                layer.set(k.ini, text, Source::Translated)
            }
            _ => problems.push(format!(
                "{}: {} is not a single-line value ({})",
                k.ini,
                crate::classify::ai::one_line(&value.to_string(), 60),
                k.kind.allowed()
            )),
        }
    }
    // Values are checked as written: `{{ env:NAME }}` is not expanded from an answer.
    let no_env = |_: &str| None;
    if let Err(errors) = Settings::from_layer(&layer, &no_env, cwd) {
        problems.extend(errors.0.iter().map(|e| e.to_string()));
    }
    if !problems.is_empty() {
        return Err(reject(problems.join("; ")));
    }
    let settings: Vec<(&'static str, String)> = policy_keys()
        .filter_map(|k| layer.get(k.ini).map(|raw| (k.ini, raw.value.clone())))
        .collect();
    if settings.is_empty() {
        return Err(reject("it sets nothing".into()));
    }
    let notes = answer
        .get("notes")
        .and_then(Value::as_array)
        .map(|notes| {
            notes
                .iter()
                .filter_map(Value::as_str)
                .take(MAX_NOTES)
                .map(|n| {
                    // The endpoint's text goes to a terminal: no escape sequences.
                    let n: String = n
                        .chars()
                        .map(|c| if c.is_control() { ' ' } else { c })
                        .collect();
                    crate::classify::ai::one_line(&n, NOTE_CHARS)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Translation { settings, notes })
}

/// A JSON scalar as configuration text: strings as they are, numbers and booleans written out, a list of
/// names joined with commas (`smart_rerun_errors`).
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::trim))
            .collect::<Option<Vec<_>>>()
            .map(|names| names.join(",")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cwd() -> &'static Path {
        Path::new("/")
    }

    #[test]
    fn the_question_lists_every_policy_setting_and_no_other() {
        let q = question("retry twice", DEFAULT_TOOL);
        assert_eq!(q["sentence"], "retry twice");
        assert_eq!(q["task"], "translate_policy");
        let keys: Vec<&str> = q["settings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["key"].as_str().unwrap())
            .collect();
        assert!(keys.contains(&"smart_rerun_max") && keys.contains(&"smart_rerun_errors"));
        assert!(
            !keys
                .iter()
                .any(|k| k.contains("token") || k.contains("github"))
        );
        let backoff = q["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == "smart_rerun_backoff")
            .unwrap();
        assert_eq!(backoff["allowed"], "none, linear or exp");
    }

    #[test]
    fn a_valid_answer_becomes_settings_in_table_order() {
        let answer = json!({
            "settings": {
                "smart_rerun_errors": ["ConnectionError", "requests.exceptions.Timeout"],
                "smart_rerun_backoff": "exp",
                "smart_rerun_max": 5,
                "smart_rerun_delay": 0.5,
                "smart_rerun_fail_on_flaky": false
            },
            "notes": ["\"up to 4 times\" read as 4 retries: 5 attempts in all", 7]
        });
        let t = check(&answer, cwd()).unwrap();
        assert_eq!(
            t.settings,
            [
                ("smart_rerun_max", "5".to_owned()),
                ("smart_rerun_delay", "0.5".to_owned()),
                ("smart_rerun_backoff", "exp".to_owned()),
                (
                    "smart_rerun_errors",
                    "ConnectionError,requests.exceptions.Timeout".to_owned()
                ),
                ("smart_rerun_fail_on_flaky", "false".to_owned()),
            ]
        );
        assert_eq!(t.notes.len(), 1);
    }

    #[test]
    fn an_answer_that_does_not_validate_is_rejected_with_every_reason() {
        let answer = json!({
            "settings": {
                "smart_rerun_max": "lots",
                "smart_rerun_backoff": "fibonacci",
                "smart_rerun_github_token": "x",
                "smart_rerun_delay": {"seconds": 2},
                "smart_rerun_errors": "A\nsmart_rerun_max = 99"
            }
        });
        let Err(TranslateError::Rejected(why)) = check(&answer, cwd()) else {
            panic!("accepted")
        };
        for part in [
            "smart_rerun_max",
            "lots",
            "use 1 or more",
            "fibonacci",
            "none, linear or exp",
            "smart_rerun_github_token is not a retry-policy setting",
            "smart_rerun_delay",
            "smart_rerun_errors",
        ] {
            assert!(why.contains(part), "{part:?} missing from: {why}");
        }
        assert!(!why.contains("\"x\""), "{why}");
    }

    #[test]
    fn an_answer_without_settings_or_setting_nothing_is_rejected() {
        for answer in [
            json!({"category": "flaky"}),
            json!({"settings": {}}),
            json!([]),
        ] {
            assert!(
                matches!(check(&answer, cwd()), Err(TranslateError::Rejected(_))),
                "{answer}"
            );
        }
    }
}
