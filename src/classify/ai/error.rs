//! Why a call to the AI endpoint brought no answer, and the one note the run's warnings get for it.

/// Why a call brought no answer. Everything but a refused answer switches the endpoint off for the run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CallError {
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
    pub(crate) fn from_error(e: &(dyn std::error::Error + 'static)) -> CallError {
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
    pub(super) fn note(&self, endpoint: &str, tool: &str, has_token: bool) -> String {
        let what = self.what(tool, has_token, "a classification");
        format!("AI endpoint {endpoint} {what}: the heuristics decided")
    }

    /// What went wrong, after the endpoint's name: "unreachable (connection refused)", "needs a token
    /// (HTTP 401; ...)". `expected` names what an answer should have been.
    pub(crate) fn what(&self, tool: &str, has_token: bool, expected: &str) -> String {
        match self {
            CallError::Unreachable(detail) => format!("unreachable ({detail})"),
            CallError::Timeout(s) => format!("did not answer within {s}s"),
            CallError::Auth(status) if has_token => {
                format!("refused the token (HTTP {status})")
            }
            CallError::Auth(status) => format!(
                "needs a token (HTTP {status}; set smart_rerun_ai_token or SMART_RERUN_AI_TOKEN)"
            ),
            CallError::Status(status) => format!("failed (HTTP {status})"),
            CallError::Garbage(why) => format!("sent an answer that is not {expected} ({why})"),
            CallError::Tool(text) => format!("tool {tool} failed ({})", one_line(text, 160)),
            CallError::Protocol(text) => format!("failed ({text})"),
        }
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
