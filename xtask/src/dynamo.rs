//! The local tables, created over DynamoDB's JSON protocol (`crate::aws`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Result;
use crate::aws;
use crate::http::Reply;
use crate::process::sleep_interruptibly;

pub use crate::aws::REGION;

fn call(endpoint: &str, operation: &str, body: &Value) -> Result<Reply> {
    aws::json_call(endpoint, "dynamodb", &format!("DynamoDB_20120810.{operation}"), "1.0", body)
}

fn error_type(reply: &Reply) -> String {
    aws::error_type(reply)
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

/// One item by its key, `None` when the table has no such item.
pub fn get_item(endpoint: &str, table: &str, key: &Value) -> Result<Option<Value>> {
    let reply = call(endpoint, "GetItem", &json!({ "TableName": table, "Key": key, "ConsistentRead": true }))?;
    let body = aws::ok_json(&format!("GetItem {table}"), reply)?;
    Ok(body.get("Item").cloned())
}
