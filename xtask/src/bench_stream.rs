//! `cargo xtask bench-stream`: what the gateway adds to a streamed answer's first token.
//!
//! The local stack runs with the emulator's latency model off, so the emulator answers at
//! once and every millisecond measured through the gateway is the gateway's: `cargo lambda
//! watch`'s invoke, the cache lookup in DynamoDB (moto), routing, admission and the opening of
//! Bedrock's stream. Each round asks three things of one fresh prompt, interleaved so they
//! share the machine's state: the emulator's ConverseStream directly (the baseline), the
//! gateway's `/v1/converse-stream` (a MISS), and the gateway again (a HIT, replayed from the
//! cache). Time to first token is until the first `contentBlockDelta` arrives.

use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::Result;
use crate::http::{self, StreamTiming};
use crate::stack::{self, Stack, StackOptions};
use crate::tools;

#[derive(Debug, Args)]
pub struct BenchStreamArgs {
    /// Rounds of (direct, MISS, HIT).
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Rounds run first and left out of the figures.
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
}

const MODEL: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
const DELTA: &[u8] = b"contentBlockDelta";

pub fn run(args: &BenchStreamArgs) -> Result<bool> {
    if args.requests == 0 {
        return Err("--requests must be at least 1".into());
    }
    tools::ensure(&[tools::MOTO, tools::CARGO_LAMBDA])?;
    let mut stack = Stack::start(StackOptions {
        emulator_config: stack::emulator_test_config(),
        lambda_concurrency: 1,
        interactive: false,
    })?;
    let outcome = measure(&stack, args);
    stack.stop();
    let figures = outcome?;
    figures.print(args);
    Ok(true)
}

#[derive(Debug, Default)]
struct Figures {
    direct: Vec<Duration>,
    miss: Vec<Duration>,
    hit: Vec<Duration>,
    miss_first_byte: Vec<Duration>,
    hit_first_byte: Vec<Duration>,
    miss_total: Vec<Duration>,
    hit_total: Vec<Duration>,
    /// What the function itself measured (the `gateway` event): request start to first content sent.
    miss_reported: Vec<Duration>,
    hit_reported: Vec<Duration>,
}

fn measure(stack: &Stack, args: &BenchStreamArgs) -> Result<Figures> {
    let emulator = stack.emulator_url.clone().ok_or("the Bedrock emulator is not running")?;
    let gateway = stack.function_url(stack::STREAM_FUNCTION_NAME, "/v1/converse-stream").ok_or("no functions")?;
    let direct_url = format!("{emulator}/model/{MODEL}/converse-stream");
    let agent = http::agent(Duration::from_secs(60));
    // The stack's tables are new with each start, so a round's prompt is new to the cache.
    let headers = [("content-type", "application/json"), ("x-tenant-id", "bench-stream")];
    let mut figures = Figures::default();
    for round in 0..args.warmup + args.requests {
        let prompt = format!("Explain how response streaming works, in a few sentences. (round {round})");
        let converse = |model: Option<&str>| {
            let mut body = json!({
                "messages": [{"role": "user", "content": [{"text": prompt}]}],
                "inferenceConfig": {"maxTokens": 200, "temperature": 0}
            });
            if let Some(model) = model {
                body["modelId"] = model.into();
            }
            body.to_string()
        };
        let direct = http::post_streamed(&agent, &direct_url, &headers[..1], &converse(None), DELTA)?;
        let miss = http::post_streamed(&agent, &gateway, &headers, &converse(Some(MODEL)), DELTA)?;
        let hit = http::post_streamed(&agent, &gateway, &headers, &converse(Some(MODEL)), DELTA)?;
        check(&direct, None, "the emulator")?;
        check(&miss, Some("MISS"), "the gateway's first call")?;
        check(&hit, Some("HIT"), "the gateway's repeat")?;
        if round < args.warmup {
            continue;
        }
        let first = |t: &StreamTiming| t.first_token.unwrap_or(t.total);
        figures.direct.push(first(&direct));
        figures.miss.push(first(&miss));
        figures.hit.push(first(&hit));
        figures.miss_first_byte.push(miss.first_byte.unwrap_or(miss.total));
        figures.hit_first_byte.push(hit.first_byte.unwrap_or(hit.total));
        figures.miss_total.push(miss.total);
        figures.hit_total.push(hit.total);
        figures.miss_reported.extend(miss.reported_ttft());
        figures.hit_reported.extend(hit.reported_ttft());
    }
    Ok(figures)
}

fn check(timing: &StreamTiming, cache: Option<&str>, what: &str) -> Result<()> {
    if timing.status != 200 || timing.first_token.is_none() {
        let body = String::from_utf8_lossy(&timing.body);
        return Err(format!("{what} answered {} without a content event: {body}", timing.status).into());
    }
    if let Some(expected) = cache
        && timing.header("x-cache") != Some(expected)
    {
        return Err(format!("{what} was {:?}, expected {expected}", timing.header("x-cache")).into());
    }
    Ok(())
}

/// The `p`-th percentile (nearest rank) in milliseconds.
fn percentile(values: &[Duration], p: f64) -> f64 {
    let mut sorted: Vec<Duration> = values.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

impl Figures {
    fn print(&self, args: &BenchStreamArgs) {
        println!();
        println!(
            "Time to first token, {} rounds after {} warm-up (emulator latency model off; {MODEL}):",
            args.requests, args.warmup
        );
        println!("  {:<44} {:>9} {:>9}", "", "p50 ms", "p99 ms");
        let row = |name: &str, values: &[Duration]| {
            println!("  {name:<44} {:>9.2} {:>9.2}", percentile(values, 50.0), percentile(values, 99.0));
        };
        row("emulator ConverseStream, direct (baseline)", &self.direct);
        row("gateway /v1/converse-stream, MISS", &self.miss);
        row("gateway /v1/converse-stream, HIT replayed", &self.hit);
        row("gateway MISS, first byte", &self.miss_first_byte);
        row("gateway HIT, first byte", &self.hit_first_byte);
        row("gateway MISS, whole stream", &self.miss_total);
        row("gateway HIT, whole stream", &self.hit_total);
        row("inside the function, MISS (gateway event)", &self.miss_reported);
        row("inside the function, HIT (gateway event)", &self.hit_reported);
        let added = |p| percentile(&self.miss, p) - percentile(&self.direct, p);
        println!("  gateway's added latency on the first token: p50 {:.2} ms, p99 {:.2} ms", added(50.0), added(99.0));
        println!(
            "  (client-side figures go through `cargo lambda watch`, which forwards a streamed body in bursts; \
             the function's own figures are whole milliseconds)"
        );
    }
}
