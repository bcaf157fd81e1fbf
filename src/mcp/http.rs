//! `smart-rerun mcp --http`: rmcp's Streamable HTTP service, served by hyper, behind a bearer token.
//! A request without `Authorization: Bearer <token>` (compared in constant time) gets 401 before the
//! MCP service sees it; the token itself is never printed.

use super::server::{SmartRerunServer, Sources};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::net::SocketAddr;
use std::sync::Arc;
use tower_service::Service;

/// Whether `header` (the `Authorization` value) carries `token`.
pub(super) fn authorized(header: Option<&[u8]>, token: &str) -> bool {
    let Some(value) = header else { return false };
    let Some(given) = value
        .strip_prefix(b"Bearer ")
        .or_else(|| value.strip_prefix(b"bearer "))
    else {
        return false;
    };
    let want = token.as_bytes();
    // Constant time over the token's length: the answer does not tell how much of it matched.
    let mut diff = (given.len() != want.len()) as u8;
    for (i, w) in want.iter().enumerate() {
        diff |= w ^ given.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

fn unauthorized()
-> http::Response<http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>> {
    let body = r#"{"error":"unauthorized: send Authorization: Bearer <token>"}"#;
    http::Response::builder()
        .status(http::StatusCode::UNAUTHORIZED)
        .header(http::header::WWW_AUTHENTICATE, "Bearer")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())).boxed_unsync())
        .expect("a static response")
}

pub(super) async fn serve(addr: SocketAddr, token: String, sources: Sources) -> Result<(), String> {
    let server = SmartRerunServer::new(sources);
    let mut config = StreamableHttpServerConfig::default();
    // rmcp answers only requests addressed to loopback by default (DNS rebinding). A server bound to
    // another address answers that one too; one bound to every interface (0.0.0.0, ::) answers any
    // name the machine is reached by: there the bearer token, which a rebinding page cannot know, is
    // the guard.
    if addr.ip().is_unspecified() {
        config = config.disable_allowed_hosts();
    } else if !addr.ip().is_loopback() {
        config.allowed_hosts.push(addr.ip().to_string());
    }
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        LocalSessionManager::default().into(),
        config,
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().unwrap_or(addr);
    eprintln!("smart-rerun: MCP server listening on http://{local}/mcp (bearer token required)");
    let token = Arc::new(token);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("smart-rerun: warning: MCP server: accept failed: {e}");
                continue;
            }
        };
        let service = service.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let handler =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let mut service = service.clone();
                    let token = token.clone();
                    async move {
                        let auth = req
                            .headers()
                            .get(http::header::AUTHORIZATION)
                            .map(|v| v.as_bytes());
                        if !authorized(auth, &token) {
                            return Ok::<_, std::convert::Infallible>(unauthorized());
                        }
                        if req.uri().path() != "/mcp" {
                            let not_found = http::Response::builder()
                                .status(http::StatusCode::NOT_FOUND)
                                .body(
                                    Full::new(Bytes::from_static(b"the MCP endpoint is /mcp"))
                                        .boxed_unsync(),
                                )
                                .expect("a static response");
                            return Ok(not_found);
                        }
                        let response = service.call(req).await?;
                        Ok(response.map(|b| b.boxed_unsync()))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler)
                .await;
        });
    }
}
