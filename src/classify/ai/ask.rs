//! Asking the endpoint: every question of a batch concurrently, each call bounded in time and by the
//! number in flight, all of it cut short by a signal.

use super::{CALL_TIMEOUT, CallError, http, mcp};
use crate::config::{AiProtocol, AiSettings};
use crate::signals::Interrupts;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

/// Returns once a signal has been received (never without `interrupts`).
async fn until_interrupted(interrupts: Option<&Interrupts>) {
    let Some(interrupts) = interrupts else {
        return std::future::pending().await;
    };
    while interrupts.received().is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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
pub(super) fn ask_all(
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
