//! The MCP client: Streamable HTTP through rmcp, protocol 2025-11-25 with `initialize` (rmcp 3.x would
//! default to the session-less 2026 revision, which today's servers don't speak yet), JSON or SSE answers,
//! a bearer token. One session per batch of questions; the tool calls in it run concurrently.

use super::CallError;
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    ProtocolVersion,
};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::Value;
use std::time::Duration;

pub(crate) struct Session {
    running: RunningService<RoleClient, ClientConfig>,
}

/// Opens a session: `initialize`, then `notifications/initialized`.
pub(crate) async fn connect(
    url: &str,
    token: Option<&str>,
    client: reqwest::Client,
) -> Result<Session, CallError> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(token) = token {
        // rmcp adds the `Bearer ` itself.
        config = config.auth_header(token.to_owned());
    }
    let transport = StreamableHttpClientTransport::with_client(client, config);
    let hello = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("smart-rerun", env!("CARGO_PKG_VERSION")),
    )
    .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE);
    match hello.serve(transport).await {
        Ok(running) => Ok(Session { running }),
        Err(e) => Err(CallError::from_error(&e)),
    }
}

impl Session {
    pub(crate) fn peer(&self) -> rmcp::Peer<RoleClient> {
        self.running.peer().clone()
    }

    /// Ends the session (bounded: a server that does not answer the close is left behind).
    pub(crate) async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_millis(500), self.running.cancel()).await;
    }
}

/// Calls `tool` with `arguments` and returns the answer: `structuredContent`, else the first text block
/// that holds JSON.
pub(crate) async fn call(
    peer: &rmcp::Peer<RoleClient>,
    tool: &str,
    arguments: Value,
) -> Result<Value, CallError> {
    let Value::Object(arguments) = arguments else {
        return Err(CallError::Protocol(
            "the failure is not a JSON object".into(),
        ));
    };
    let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
    let result = peer
        .call_tool(params)
        .await
        .map_err(|e| CallError::from_error(&e))?;
    answer_of(&result)
}

pub(crate) fn answer_of(result: &CallToolResult) -> Result<Value, CallError> {
    let texts: Vec<&str> = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect();
    if result.is_error == Some(true) {
        let text = texts.first().copied().unwrap_or("no text");
        return Err(CallError::Tool(text.to_owned()));
    }
    if let Some(v @ Value::Object(_)) = &result.structured_content {
        return Ok(v.clone());
    }
    for text in &texts {
        if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(text.trim()) {
            return Ok(v);
        }
    }
    Err(CallError::Garbage(match texts.first() {
        Some(t) => format!(
            "the tool answered text that is not a JSON object: {}",
            super::one_line(t, 80)
        ),
        None => "the tool answered neither structuredContent nor a JSON text block".into(),
    }))
}
