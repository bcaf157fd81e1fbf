//! The plain HTTP client (`--ai-protocol http`): POST the failure as JSON, read the answer as JSON.

use super::CallError;
use serde_json::Value;

pub(crate) async fn call(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    failure: &Value,
) -> Result<Value, CallError> {
    let mut request = client
        .post(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .json(failure);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| CallError::from_error(&e))?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(CallError::Auth(status.as_u16()));
    }
    if !status.is_success() {
        return Err(CallError::Status(status.as_u16()));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| CallError::from_error(&e))?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(CallError::Garbage(
            "the answer is JSON but not an object".into(),
        )),
        Err(_) => Err(CallError::Garbage(format!(
            "the answer is not JSON: {}",
            super::one_line(&String::from_utf8_lossy(&body), 60)
        ))),
    }
}
