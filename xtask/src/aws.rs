//! Just enough of the AWS wire protocols to set the local servers up (tables, a bucket,
//! queues, rules) and to feed events to the functions, so that xtask needs no AWS SDK
//! (which would triple its compile time).

use std::time::Duration;

use serde_json::Value;

use crate::Result;
use crate::http::{self, Reply};

pub const REGION: &str = "us-east-1";
/// moto's default account: the one in every ARN it hands out.
pub const ACCOUNT_ID: &str = "123456789012";

/// moto checks no signature but takes the region, and on its single port the service, from
/// the credential scope, so the scope must name both.
fn authorization(service: &str, signed_headers: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=test/20250101/{REGION}/{service}/aws4_request, \
         SignedHeaders={signed_headers}, Signature=0"
    )
}

/// A call in the AWS JSON protocol (DynamoDB, EventBridge, SQS): `X-Amz-Target` names the
/// operation, the body is its input.
pub fn json_call(endpoint: &str, service: &str, target: &str, json_version: &str, body: &Value) -> Result<Reply> {
    let agent = http::agent(Duration::from_secs(30));
    let content_type = format!("application/x-amz-json-{json_version}");
    http::post(
        &agent,
        endpoint,
        &[
            ("X-Amz-Target", target),
            ("Content-Type", content_type.as_str()),
            ("Authorization", authorization(service, "content-type;host;x-amz-target").as_str()),
        ],
        &body.to_string(),
    )
}

/// The error code of a JSON-protocol error reply (`__type`, with or without its namespace).
pub fn error_type(reply: &Reply) -> String {
    serde_json::from_str::<Value>(&reply.body)
        .ok()
        .and_then(|v| v.get("__type").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

/// The parsed body of a successful JSON-protocol reply; any other status is an error
/// naming the operation.
pub fn ok_json(operation: &str, reply: Reply) -> Result<Value> {
    if reply.status != 200 {
        return Err(format!("{operation} failed ({}): {}", reply.status, reply.body).into());
    }
    if reply.body.trim().is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_str(&reply.body)?)
}

/// An S3 REST call, path-style (`{endpoint}/{bucket}/{key}`), as moto serves it.
pub fn s3(method: &str, endpoint: &str, path_and_query: &str, body: &[u8]) -> Result<Reply> {
    let agent = http::agent(Duration::from_secs(30));
    let url = format!("{endpoint}/{path_and_query}");
    let auth = authorization("s3", "host;x-amz-content-sha256");
    let headers = [("Authorization", auth.as_str()), ("x-amz-content-sha256", "UNSIGNED-PAYLOAD")];
    let mut response = match method {
        "PUT" => {
            let mut request = agent.put(&url);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            request.send(body)?
        }
        "GET" => {
            let mut request = agent.get(&url);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            request.call()?
        }
        other => return Err(format!("S3 {other} is not used by xtask").into()),
    };
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string()?;
    Ok(Reply { status, body })
}
