//! The batch pipeline's events, locally: the bucket that announces dropped files, the
//! EventBridge rules of template.yaml installed on moto, each rule targeting a real SQS
//! queue, and a pump that hands every queued event to its function under `cargo lambda
//! watch`. An event is deleted only once its function succeeded; a failure is delivered
//! again after the queue's visibility timeout and, after `MAX_RECEIVES`, moved to the dead-
//! letter queue, as Lambda's retries and DLQ treat it deployed.
//!
//! moto fires no schedules, so the pump also plays EventBridge Scheduler: a function's
//! `Schedule` events become "Scheduled Event" messages on its queue at the template's rate
//! (or a faster one for the demo), through the same queue as every other event.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::Result;
use crate::aws::{self, ACCOUNT_ID, REGION};
use crate::http;

pub const LOCAL_BATCH_BUCKET: &str = "bedrock-gateway-batch-local";
pub const DEAD_LETTER_QUEUE: &str = "bedrock-gateway-batch-dead-letters";
/// Deliveries of one event before it is dead-lettered: Lambda's two async retries and a spare.
const MAX_RECEIVES: u32 = 4;
/// Long enough for a completion run over the demo's files; a crashed run's event comes
/// back after it.
const VISIBILITY_TIMEOUT_SECONDS: u32 = 60;

/// One function's events: where they queue and how often its schedule fires.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub function: String,
    pub queue_name: String,
    pub queue_url: String,
    pub rules: Vec<String>,
    pub schedule: Option<Duration>,
}

fn sqs(moto: &str, operation: &str, body: &Value) -> Result<Value> {
    aws::ok_json(
        &format!("SQS {operation}"),
        aws::json_call(moto, "sqs", &format!("AmazonSQS.{operation}"), "1.0", body)?,
    )
}

fn events(moto: &str, operation: &str, body: &Value) -> Result<Value> {
    aws::ok_json(
        &format!("EventBridge {operation}"),
        aws::json_call(moto, "events", &format!("AWSEvents.{operation}"), "1.1", body)?,
    )
}

fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}")
}

/// The bucket, with EventBridge notifications on as template.yaml's BatchBucket has them.
pub fn create_bucket(moto: &str, bucket: &str) -> Result<()> {
    let reply = aws::s3("PUT", moto, bucket, b"")?;
    if reply.status != 200 && !reply.body.contains("BucketAlreadyOwnedByYou") {
        return Err(format!("S3 CreateBucket {bucket} failed ({}): {}", reply.status, reply.body).into());
    }
    let notification = br#"<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><EventBridgeConfiguration></EventBridgeConfiguration></NotificationConfiguration>"#;
    let reply = aws::s3("PUT", moto, &format!("{bucket}?notification"), notification)?;
    if reply.status != 200 {
        return Err(format!("S3 PutBucketNotificationConfiguration failed ({}): {}", reply.status, reply.body).into());
    }
    Ok(())
}

fn create_queue(moto: &str, name: &str, attributes: Value) -> Result<String> {
    let reply = sqs(moto, "CreateQueue", &json!({ "QueueName": name, "Attributes": attributes }))?;
    reply["QueueUrl"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("CreateQueue {name}: no QueueUrl in {reply}").into())
}

/// What `Ref` means locally: the stand-ins for template resources, and every parameter's
/// default.
pub fn bindings(template: &Value, resources: &[(&str, &str)]) -> BTreeMap<String, Value> {
    let mut bindings: BTreeMap<String, Value> = template["Parameters"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, parameter)| parameter.get("Default").map(|d| (name.clone(), d.clone())))
        .collect();
    for (logical_id, local) in resources {
        bindings.insert((*logical_id).to_owned(), json!(local));
    }
    bindings
}

/// A value of the template with every `Ref` replaced by its binding; any other intrinsic
/// in an event pattern is a template this code does not understand.
fn resolve(value: &Value, bindings: &BTreeMap<String, Value>) -> Result<Value> {
    Ok(match value {
        Value::Object(object) if object.len() == 1 && object.contains_key("Ref") => {
            let name = object["Ref"].as_str().unwrap_or_default();
            bindings.get(name).cloned().ok_or_else(|| format!("no local value for !Ref {name}"))?
        }
        Value::Object(object) => {
            if let Some(key) = object.keys().find(|k| k.starts_with("Fn::")) {
                return Err(format!("{key} in an event pattern is not resolved locally").into());
            }
            let mut resolved = Map::new();
            for (key, item) in object {
                resolved.insert(key.clone(), resolve(item, bindings)?);
            }
            Value::Object(resolved)
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| resolve(i, bindings)).collect::<Result<_>>()?),
        other => other.clone(),
    })
}

/// `rate(5 minutes)` and the like; cron schedules are not fired locally.
pub fn parse_rate(expression: &str) -> Option<Duration> {
    let inner = expression.strip_prefix("rate(")?.strip_suffix(')')?;
    let (count, unit) = inner.split_once(' ')?;
    let count: u64 = count.parse().ok()?;
    let seconds = match unit {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(count * seconds))
}

/// Installs, for every function in `functions`, a queue and each of its `EventBridgeRule`
/// events as a rule on moto targeting that queue; returns the routes for the pump.
pub fn install_rules(
    moto: &str,
    template: &Value,
    bindings: &BTreeMap<String, Value>,
    functions: &[&str],
) -> Result<Vec<Route>> {
    create_queue(moto, DEAD_LETTER_QUEUE, json!({}))?;
    let redrive =
        json!({ "deadLetterTargetArn": queue_arn(DEAD_LETTER_QUEUE), "maxReceiveCount": MAX_RECEIVES.to_string() });
    let mut routes = Vec::new();
    let resources = template["Resources"].as_object().ok_or("template has no Resources")?;
    for function in functions {
        let (logical_id, resource) = resources
            .iter()
            .find(|(_, r)| r.pointer("/Metadata/BuildProperties/Binary").and_then(Value::as_str) == Some(function))
            .ok_or_else(|| format!("template.yaml has no function with Binary {function}"))?;
        let queue_name = format!("bedrock-gateway-{function}-events");
        let queue_url = create_queue(
            moto,
            &queue_name,
            json!({
                "VisibilityTimeout": VISIBILITY_TIMEOUT_SECONDS.to_string(),
                "RedrivePolicy": redrive.to_string(),
            }),
        )?;
        let mut rules = Vec::new();
        let mut schedule = None;
        for (event_name, event) in
            resource.pointer("/Properties/Events").and_then(Value::as_object).into_iter().flatten()
        {
            match event["Type"].as_str() {
                Some("EventBridgeRule") => {
                    let pattern = resolve(&event["Properties"]["Pattern"], bindings)?;
                    let rule = format!("{logical_id}-{event_name}");
                    events(
                        moto,
                        "PutRule",
                        &json!({ "Name": rule, "EventPattern": pattern.to_string(), "State": "ENABLED" }),
                    )?;
                    let targets =
                        json!({ "Rule": rule, "Targets": [{ "Id": queue_name, "Arn": queue_arn(&queue_name) }] });
                    let reply = events(moto, "PutTargets", &targets)?;
                    if reply["FailedEntryCount"].as_u64().unwrap_or(0) != 0 {
                        return Err(format!("PutTargets {rule} failed: {reply}").into());
                    }
                    rules.push(rule);
                }
                Some("Schedule") => {
                    let expression = event["Properties"]["Schedule"].as_str().unwrap_or_default();
                    let rate = parse_rate(expression)
                        .ok_or_else(|| format!("{logical_id}.{event_name}: {expression} is not a rate() schedule"))?;
                    schedule = Some(schedule.map_or(rate, |s: Duration| s.min(rate)));
                }
                _ => {}
            }
        }
        routes.push(Route { function: (*function).to_owned(), queue_name, queue_url, rules, schedule });
    }
    Ok(routes)
}

/// RFC 3339 UTC to the second, as EventBridge writes `time`.
pub fn rfc3339(at: SystemTime) -> String {
    let seconds = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Howard Hinnant's civil-from-days, for the proleptic Gregorian calendar.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

fn scheduled_event(function: &str, sequence: u64) -> Value {
    json!({
        "version": "0",
        "id": format!("local-schedule-{function}-{sequence}"),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": rfc3339(SystemTime::now()),
        "region": REGION,
        "resources": [format!("arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{function}-schedule")],
        "detail": {}
    })
}

/// What the pump did, for the demo's report and the tests.
#[derive(Debug, Default)]
pub struct PumpCounts {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub scheduled: AtomicU64,
}

#[derive(Debug)]
pub struct Pump {
    stop: Arc<AtomicBool>,
    pub counts: Arc<PumpCounts>,
    thread: Option<JoinHandle<()>>,
}

impl Pump {
    /// Starts delivering; `schedule_every` replaces the template's rates (the demo cannot
    /// wait minutes).
    pub fn start(
        moto: &str,
        lambda_port: u16,
        routes: Vec<Route>,
        schedule_every: Option<Duration>,
        log: File,
    ) -> Pump {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(PumpCounts::default());
        let worker = Worker { moto: moto.to_owned(), lambda_port, routes, schedule_every, log, counts: counts.clone() };
        let flag = stop.clone();
        let thread = std::thread::spawn(move || worker.run(&flag));
        Pump { stop, counts, thread: Some(thread) }
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Worker {
    moto: String,
    lambda_port: u16,
    routes: Vec<Route>,
    schedule_every: Option<Duration>,
    log: File,
    counts: Arc<PumpCounts>,
}

impl Worker {
    fn run(mut self, stop: &AtomicBool) {
        let mut next_tick: Vec<Option<Instant>> = self
            .routes
            .iter()
            .map(|r| self.schedule_every.or(r.schedule).map(|every| Instant::now() + every))
            .collect();
        let mut sequence = 0;
        while !stop.load(Ordering::SeqCst) {
            let mut idle = true;
            for (index, next) in next_tick.iter_mut().enumerate() {
                if let Some(due) = *next
                    && Instant::now() >= due
                {
                    sequence += 1;
                    self.tick(index, sequence);
                    let every = self.schedule_every.or(self.routes[index].schedule).unwrap_or(Duration::from_secs(60));
                    *next = Some(Instant::now() + every);
                }
                match self.drain(index) {
                    Ok(0) => {}
                    Ok(_) => idle = false,
                    Err(e) => self.note(&format!("receive from {} failed: {e}", self.routes[index].queue_name)),
                }
            }
            if idle {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    fn note(&mut self, line: &str) {
        let _ = writeln!(self.log, "{} {line}", rfc3339(SystemTime::now()));
    }

    fn tick(&mut self, index: usize, sequence: u64) {
        let route = &self.routes[index];
        let body = scheduled_event(&route.function, sequence).to_string();
        match sqs(&self.moto, "SendMessage", &json!({ "QueueUrl": route.queue_url, "MessageBody": body })) {
            Ok(_) => {
                self.counts.scheduled.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                let line = format!("schedule for {} not sent: {e}", route.function);
                self.note(&line);
            }
        }
    }

    /// One receive from the route's queue, each message delivered in turn (one function
    /// instance per queue: the submission's reserved concurrency of 1). Returns how many.
    fn drain(&mut self, index: usize) -> Result<usize> {
        let route = self.routes[index].clone();
        let reply = sqs(
            &self.moto,
            "ReceiveMessage",
            &json!({ "QueueUrl": route.queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 0 }),
        )?;
        let messages = reply["Messages"].as_array().cloned().unwrap_or_default();
        for message in &messages {
            let body = message["Body"].as_str().unwrap_or_default();
            let receipt = message["ReceiptHandle"].as_str().unwrap_or_default();
            match self.invoke(&route.function, body) {
                Ok(answer) => {
                    self.counts.delivered.fetch_add(1, Ordering::SeqCst);
                    self.note(&format!("{} <- {}: {answer}", route.function, summary_of(body)));
                    sqs(
                        &self.moto,
                        "DeleteMessage",
                        &json!({ "QueueUrl": route.queue_url, "ReceiptHandle": receipt }),
                    )?;
                }
                Err(e) => {
                    self.counts.failed.fetch_add(1, Ordering::SeqCst);
                    self.note(&format!("{} <- {} FAILED (redelivered later): {e}", route.function, summary_of(body)));
                }
            }
        }
        Ok(messages.len())
    }

    /// The Lambda Invoke API of `cargo lambda watch`; a function error is an error here.
    fn invoke(&self, function: &str, payload: &str) -> Result<String> {
        let url = format!("http://127.0.0.1:{}/2015-03-31/functions/{function}/invocations", self.lambda_port);
        let agent = http::agent(Duration::from_secs(900));
        let reply = http::post(&agent, &url, &[("Content-Type", "application/json")], payload)?;
        let failed = reply.status != 200
            || serde_json::from_str::<Value>(&reply.body)
                .is_ok_and(|v| v.get("errorType").is_some() && v.get("errorMessage").is_some());
        if failed {
            return Err(format!("status {}: {}", reply.status, truncate(&reply.body, 400)).into());
        }
        Ok(truncate(&reply.body, 400))
    }
}

fn truncate(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn summary_of(body: &str) -> String {
    let event: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let kind = event["detail-type"].as_str().unwrap_or("?");
    let detail = &event["detail"];
    let what = detail["batchJobName"]
        .as_str()
        .map(|name| format!("{name} {}", detail["status"].as_str().unwrap_or("?")))
        .or_else(|| detail.pointer("/object/key").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    format!("{kind} {what}").trim().to_owned()
}

/// Opens the pump's log, appending (a restarted stack keeps the earlier lines).
pub fn open_log(path: &std::path::Path) -> Result<File> {
    Ok(OpenOptions::new().create(true).append(true).open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_cron_does_not() {
        assert_eq!(parse_rate("rate(1 minute)"), Some(Duration::from_secs(60)));
        assert_eq!(parse_rate("rate(5 minutes)"), Some(Duration::from_secs(300)));
        assert_eq!(parse_rate("rate(2 hours)"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_rate("cron(0 12 * * ? *)"), None);
        assert_eq!(parse_rate("rate(five minutes)"), None);
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_796_191_445)), "2026-12-02T06:04:05Z");
    }

    #[test]
    fn patterns_resolve_refs_to_local_values_and_refuse_other_intrinsics() {
        let template = json!({ "Parameters": { "Prefix": { "Type": "String", "Default": "batch/drop/" } } });
        let bindings = bindings(&template, &[("Bucket", "local-bucket")]);
        let pattern = json!({ "detail": { "bucket": { "name": [{ "Ref": "Bucket" }] }, "object": { "key": [{ "prefix": { "Ref": "Prefix" } }] } } });
        assert_eq!(
            resolve(&pattern, &bindings).unwrap(),
            json!({ "detail": { "bucket": { "name": ["local-bucket"] }, "object": { "key": [{ "prefix": "batch/drop/" }] } } })
        );
        assert!(resolve(&json!({ "Fn::Sub": "x" }), &bindings).is_err());
        assert!(resolve(&json!({ "Ref": "Missing" }), &bindings).is_err());
    }

    #[test]
    fn the_templates_batch_functions_have_rules_and_schedules() {
        let template = crate::template::load_template(&crate::paths::repo_root().join("template.yaml")).unwrap();
        let resources = template["Resources"].as_object().unwrap();
        for binary in ["batch-submission", "batch-completion"] {
            let (_, function) = resources
                .iter()
                .find(|(_, r)| r.pointer("/Metadata/BuildProperties/Binary").and_then(Value::as_str) == Some(binary))
                .unwrap();
            let events = function.pointer("/Properties/Events").and_then(Value::as_object).unwrap();
            assert!(events.values().any(|e| e["Type"] == "EventBridgeRule"), "{binary} has no rule");
            let rate = events
                .values()
                .find(|e| e["Type"] == "Schedule")
                .and_then(|e| e["Properties"]["Schedule"].as_str())
                .unwrap();
            assert!(parse_rate(rate).is_some(), "{binary}: {rate}");
        }
    }
}
