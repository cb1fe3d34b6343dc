//! What several of the emulator's test files share.

use serde_json::Value;

/// A blocking HTTP call (the admin API, raw protocol checks), off the runtime's thread:
/// the status and the body, parsed as JSON when it is JSON.
pub async fn http(method: &'static str, url: String, body: Option<Value>) -> (u16, Value) {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let body = body.map(|b| b.to_string());
        let mut response = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            ("DELETE", _) => agent.delete(&url).call(),
            ("POST", Some(b)) => agent.post(&url).header("content-type", "application/json").send(b.as_str()),
            ("POST", None) => agent.post(&url).send_empty(),
            ("PUT", Some(b)) => agent.put(&url).header("content-type", "application/json").send(b.as_str()),
            _ => panic!("unsupported {method}"),
        }
        .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    })
    .await
    .unwrap()
}
