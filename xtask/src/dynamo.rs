//! Just enough of DynamoDB's JSON protocol to create the local cache table, so that xtask
//! needs no AWS SDK (which would triple its compile time).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Result;
use crate::http::{self, Reply};
use crate::process::sleep_interruptibly;

pub const REGION: &str = "us-east-1";

fn call(endpoint: &str, operation: &str, body: &Value) -> Result<Reply> {
    let target = format!("DynamoDB_20120810.{operation}");
    // moto does not check signatures but takes the region from the credential scope, so
    // the scope must name the region the function uses.
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=test/20250101/{REGION}/dynamodb/aws4_request, \
         SignedHeaders=content-type;host;x-amz-target, Signature=0"
    );
    let agent = http::agent(Duration::from_secs(10));
    http::post(
        &agent,
        endpoint,
        &[
            ("X-Amz-Target", target.as_str()),
            ("Content-Type", "application/x-amz-json-1.0"),
            ("Authorization", authorization.as_str()),
        ],
        &body.to_string(),
    )
}

fn error_type(reply: &Reply) -> String {
    serde_json::from_str::<Value>(&reply.body)
        .ok()
        .and_then(|v| v.get("__type").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

/// Creates the table, or accepts an existing one so that re-running against a long-lived
/// moto is harmless.
pub fn create_table(endpoint: &str, create: &Value, ttl: Option<&Value>) -> Result<()> {
    let table = create["TableName"].as_str().unwrap_or_default().to_string();
    let reply = call(endpoint, "CreateTable", create)?;
    if reply.status != 200 && !error_type(&reply).ends_with("ResourceInUseException") {
        return Err(format!("CreateTable {table} failed ({}): {}", reply.status, reply.body).into());
    }
    wait_until_active(endpoint, &table)?;
    if let Some(ttl) = ttl {
        let reply = call(endpoint, "UpdateTimeToLive", ttl)?;
        // Real DynamoDB refuses to re-enable an enabled TTL; that state is what we want.
        if reply.status != 200 && !reply.body.contains("already enabled") {
            return Err(format!("UpdateTimeToLive {table} failed ({}): {}", reply.status, reply.body).into());
        }
    }
    Ok(())
}

/// moto creates tables ACTIVE at once, real DynamoDB does not; waiting keeps this honest
/// against any backend.
fn wait_until_active(endpoint: &str, table: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let reply = call(endpoint, "DescribeTable", &json!({ "TableName": table }))?;
        let status = serde_json::from_str::<Value>(&reply.body)
            .ok()
            .and_then(|v| v.pointer("/Table/TableStatus").and_then(Value::as_str).map(str::to_string));
        if status.as_deref() == Some("ACTIVE") {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!("table {table} is not ACTIVE after 30 s: {}", reply.body).into());
        }
        sleep_interruptibly(Duration::from_millis(200))?;
    }
}
