//! Turns the demo's per-request outcomes into the report: printed as a table and written
//! as JSON with one named section per concern, so later work can add sections.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::catalog::{Catalog, Usage, costs_match};

/// What one request produced, as seen by the client.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub requested_model: String,
    pub tenant: String,
    pub cache_off: bool,
    pub status: u16,
    pub latency_ms: f64,
    pub cache_result: Option<String>,
    pub served_model: Option<String>,
    pub cost_usd: Option<f64>,
    pub saved_usd: Option<f64>,
    pub usage: Option<Usage>,
    /// Why the response does not count as a success, if it does not.
    pub error: Option<String>,
}

impl Outcome {
    /// Classifies a response: anything but a well-formed 200 carrying the documented
    /// fields is an error.
    pub fn classify(mut self, status: u16, header_cache: Option<&str>, body: &str, latency_ms: f64) -> Self {
        self.status = status;
        self.latency_ms = latency_ms;
        if status != 200 {
            self.error = Some(format!("HTTP {status}: {}", excerpt(body)));
            return self;
        }
        let parsed: Value = match serde_json::from_str(body) {
            Ok(value) => value,
            Err(e) => {
                self.error = Some(format!("unparsable body ({e}): {}", excerpt(body)));
                return self;
            }
        };
        self.cache_result = parsed.pointer("/cache/result").and_then(Value::as_str).map(str::to_string);
        self.served_model = parsed.get("modelId").and_then(Value::as_str).map(str::to_string);
        self.cost_usd = parsed.get("costUsd").and_then(Value::as_f64);
        self.saved_usd = parsed.pointer("/cache/savedUsd").and_then(Value::as_f64);
        self.usage = parsed.get("usage").and_then(|u| serde_json::from_value(u.clone()).ok());
        self.error = self.validate(header_cache);
        self
    }

    fn validate(&self, header_cache: Option<&str>) -> Option<String> {
        let result = match self.cache_result.as_deref() {
            Some(r @ ("HIT" | "MISS" | "BYPASS")) => r,
            Some(other) => return Some(format!("unknown cache.result {other:?}")),
            None => return Some("body has no cache.result".into()),
        };
        if header_cache != Some(result) {
            return Some(format!("x-cache header {header_cache:?} differs from cache.result {result}"));
        }
        if self.cost_usd.is_none() || self.usage.is_none() || self.served_model.is_none() {
            return Some("body lacks costUsd, usage or modelId".into());
        }
        if result == "HIT" && self.saved_usd.is_none() {
            return Some("HIT without cache.savedUsd".into());
        }
        if self.cache_off && result != "BYPASS" {
            return Some(format!("x-cache-mode: off answered {result}, expected BYPASS"));
        }
        None
    }

    pub fn is_hit(&self) -> bool {
        self.error.is_none() && self.cache_result.as_deref() == Some("HIT")
    }
}

fn excerpt(body: &str) -> String {
    let trimmed = body.trim();
    match trimmed.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_string(),
    }
}

/// Nearest-rank percentile of an ascending slice.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn latency_summary(mut latencies: Vec<f64>) -> Value {
    latencies.sort_by(f64::total_cmp);
    let round = |v: Option<f64>| v.map(|x| (x * 10.0).round() / 10.0);
    json!({
        "count": latencies.len(),
        "p50": round(percentile(&latencies, 50.0)),
        "p90": round(percentile(&latencies, 90.0)),
        "p99": round(percentile(&latencies, 99.0)),
        "max": round(latencies.last().copied()),
    })
}

#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub requests: usize,
    pub concurrency: usize,
    pub seed: u64,
    pub duration_s: f64,
}

/// The full report as JSON. `catalog` is `None` when shared/catalog.toml could not be
/// read; the cost check then fails rather than silently passing.
pub fn build(
    outcomes: &[Outcome],
    run: &RunInfo,
    catalog: Result<&Catalog, &str>,
    emulator_stats: Option<Value>,
) -> Value {
    let ok: Vec<&Outcome> = outcomes.iter().filter(|o| o.error.is_none()).collect();
    let count = |result: &str| ok.iter().filter(|o| o.cache_result.as_deref() == Some(result)).count();
    let (hits, misses, bypasses) = (count("HIT"), count("MISS"), count("BYPASS"));
    let lookups = hits + misses;

    let spent: f64 = ok.iter().filter(|o| !o.is_hit()).filter_map(|o| o.cost_usd).sum();
    let saved: f64 = ok.iter().filter(|o| o.is_hit()).filter_map(|o| o.saved_usd).sum();
    let cost_check = cost_check(&ok, catalog);
    let mismatches = cost_check["mismatches"].as_u64().unwrap_or(0) as usize;
    let check_failed = cost_check["available"] != json!(true);

    let request_errors: Vec<&Outcome> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    let error_count = request_errors.len() + mismatches + usize::from(check_failed);
    let samples: Vec<Value> = request_errors
        .iter()
        .take(10)
        .map(|o| json!({"status": o.status, "model": o.requested_model, "error": o.error}))
        .collect();

    let mut latency = Map::new();
    latency.insert("overall".into(), latency_summary(outcomes.iter().map(|o| o.latency_ms).collect()));
    for result in ["HIT", "MISS", "BYPASS"] {
        let values = ok.iter().filter(|o| o.cache_result.as_deref() == Some(result)).map(|o| o.latency_ms).collect();
        latency.insert(result.to_string(), latency_summary(values));
    }

    let ratio = |n: usize, d: usize| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    json!({
        "workload": {
            "requests": run.requests,
            "concurrency": run.concurrency,
            "seed": run.seed,
            "durationSeconds": (run.duration_s * 100.0).round() / 100.0,
            "throughputRps": (ratio(run.requests, 1) / run.duration_s.max(1e-9) * 10.0).round() / 10.0,
            "tenants": tally(outcomes.iter().map(|o| o.tenant.clone())),
        },
        "cache": {
            "hits": hits,
            "misses": misses,
            "bypasses": bypasses,
            "hitRate": ratio(hits, lookups),
            "hitShareOfRequests": ratio(hits, outcomes.len()),
        },
        "errors": {
            "count": error_count,
            "requests": request_errors.len(),
            "costMismatches": mismatches,
            "samples": samples,
        },
        "cost": {
            "spentUsd": spent,
            "savedUsd": saved,
            "withoutCacheUsd": spent + saved,
            "check": cost_check,
        },
        "latencyMs": Value::Object(latency),
        "models": {
            "requested": tally(outcomes.iter().map(|o| o.requested_model.clone())),
            "served": tally(ok.iter().filter_map(|o| o.served_model.clone())),
        },
        "emulator": emulator_stats.unwrap_or(Value::Null),
    })
}

fn tally(items: impl Iterator<Item = String>) -> Value {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for item in items {
        *counts.entry(item).or_default() += 1;
    }
    json!(counts)
}

/// Re-prices every answer that Bedrock produced (MISS and BYPASS) from its usage.
fn cost_check(ok: &[&Outcome], catalog: Result<&Catalog, &str>) -> Value {
    let catalog = match catalog {
        Ok(catalog) => catalog,
        Err(reason) => {
            return json!({"available": false, "reason": reason, "checked": 0, "mismatches": 0});
        }
    };
    let mut checked = 0usize;
    let mut mismatches = Vec::new();
    for outcome in ok.iter().filter(|o| !o.is_hit()) {
        let (Some(model), Some(usage), Some(reported)) =
            (outcome.served_model.as_deref(), outcome.usage.as_ref(), outcome.cost_usd)
        else {
            continue;
        };
        checked += 1;
        match catalog.cost_usd(model, usage) {
            Some(expected) if costs_match(reported, expected) => {}
            Some(expected) => {
                mismatches.push(json!({"model": model, "reportedUsd": reported, "expectedUsd": expected}))
            }
            None => mismatches.push(
                json!({"model": model, "reportedUsd": reported, "expectedUsd": null, "reason": "model not in catalog"}),
            ),
        }
    }
    json!({
        "available": true,
        "checked": checked,
        "mismatches": mismatches.len(),
        "samples": mismatches.into_iter().take(5).collect::<Vec<_>>(),
    })
}

/// Pass criteria of `cargo xtask demo`.
pub fn passed(report: &Value) -> bool {
    report.pointer("/errors/count") == Some(&json!(0))
        && report.pointer("/cache/hits").and_then(Value::as_u64).unwrap_or(0) > 0
}

pub fn render_table(report: &Value) -> String {
    let get = |pointer: &str| report.pointer(pointer).cloned().unwrap_or(Value::Null);
    let num = |pointer: &str| get(pointer).as_f64().unwrap_or(0.0);
    let int = |pointer: &str| get(pointer).as_u64().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Demo report: {} requests, concurrency {}, seed {}, {:.1} s ({:.1} req/s)",
        int("/workload/requests"),
        int("/workload/concurrency"),
        int("/workload/seed"),
        num("/workload/durationSeconds"),
        num("/workload/throughputRps"),
    );
    let _ = writeln!(
        out,
        "  cache    {} hits, {} misses, {} bypasses; hit rate {:.1} % of lookups ({:.1} % of requests)",
        int("/cache/hits"),
        int("/cache/misses"),
        int("/cache/bypasses"),
        num("/cache/hitRate") * 100.0,
        num("/cache/hitShareOfRequests") * 100.0,
    );
    let _ = writeln!(
        out,
        "  errors   {} ({} failed requests, {} cost mismatches)",
        int("/errors/count"),
        int("/errors/requests"),
        int("/errors/costMismatches"),
    );
    let check = get("/cost/check");
    let check_text = if check["available"] == json!(true) {
        format!("{} re-priced from the catalog, {} mismatches", check["checked"], check["mismatches"])
    } else {
        format!("NOT RUN: {}", check["reason"].as_str().unwrap_or("unknown"))
    };
    let _ = writeln!(
        out,
        "  cost     spent ${:.6}, saved ${:.6}, without cache ${:.6} (check: {check_text})",
        num("/cost/spentUsd"),
        num("/cost/savedUsd"),
        num("/cost/withoutCacheUsd"),
    );
    let _ = writeln!(out, "  latency (ms, client-side)");
    let _ = writeln!(out, "    {:<8} {:>6} {:>9} {:>9} {:>9}", "", "count", "p50", "p90", "p99");
    for section in ["overall", "HIT", "MISS", "BYPASS"] {
        let cell = |key: &str| {
            get(&format!("/latencyMs/{section}/{key}")).as_f64().map_or_else(|| "-".to_string(), |v| format!("{v:.1}"))
        };
        let _ = writeln!(
            out,
            "    {:<8} {:>6} {:>9} {:>9} {:>9}",
            section,
            int(&format!("/latencyMs/{section}/count")),
            cell("p50"),
            cell("p90"),
            cell("p99"),
        );
    }
    for (title, pointer) in [
        ("models requested", "/models/requested"),
        ("models served", "/models/served"),
        ("tenants", "/workload/tenants"),
    ] {
        let listing = get(pointer)
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        let _ = writeln!(out, "  {title}: {listing}");
    }
    if let Some(samples) = get("/errors/samples").as_array().filter(|s| !s.is_empty()) {
        let _ = writeln!(out, "  first errors:");
        for sample in samples {
            let _ = writeln!(out, "    {sample}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::FIXTURE;

    const HAIKU_US: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";

    fn body(result: &str, cost: f64, saved: Option<f64>) -> String {
        let mut cache = json!({"result": result, "key": "k"});
        if let Some(saved) = saved {
            cache["savedUsd"] = json!(saved);
        }
        json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 1000, "outputTokens": 200, "totalTokens": 1200},
            "metrics": {"latencyMs": 5},
            "modelId": HAIKU_US,
            "costUsd": cost,
            "latencyMs": 6,
            "cache": cache,
        })
        .to_string()
    }

    fn outcome(result: &str, cost: f64, saved: Option<f64>, latency: f64) -> Outcome {
        let base = Outcome {
            requested_model: "haiku".into(),
            tenant: "acme".into(),
            cache_off: result == "BYPASS",
            ..Outcome::default()
        };
        base.classify(200, Some(result), &body(result, cost, saved), latency)
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 90.0), Some(90.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn responses_are_classified() {
        let good = outcome("MISS", 0.0022, None, 10.0);
        assert_eq!(good.error, None);
        let bad_status = Outcome::default().classify(502, None, r#"{"error":{}}"#, 1.0);
        assert!(bad_status.error.unwrap().starts_with("HTTP 502"));
        let garbage = Outcome::default().classify(200, Some("MISS"), "not json", 1.0);
        assert!(garbage.error.unwrap().contains("unparsable"));
        let header_mismatch = Outcome::default().classify(200, Some("HIT"), &body("MISS", 0.1, None), 1.0);
        assert!(header_mismatch.error.unwrap().contains("x-cache"));
        let off = Outcome { cache_off: true, ..Outcome::default() };
        let not_bypassed = off.classify(200, Some("MISS"), &body("MISS", 0.1, None), 1.0);
        assert!(not_bypassed.error.unwrap().contains("BYPASS"));
    }

    #[test]
    fn report_sections_add_up_and_costs_are_rechecked() {
        let catalog = Catalog::parse(FIXTURE).unwrap();
        // 1000 input and 200 output tokens of Haiku 4.5 through a us. profile.
        let price = (1000.0 * 1.0 + 200.0 * 5.0) / 1e6 * 1.1;
        let outcomes = vec![
            outcome("MISS", price, None, 100.0),
            outcome("HIT", 0.0, Some(price), 5.0),
            outcome("HIT", 0.0, Some(price), 7.0),
            outcome("BYPASS", price, None, 90.0),
        ];
        let run = RunInfo { requests: 4, concurrency: 2, seed: 1, duration_s: 2.0 };
        let report = build(&outcomes, &run, Ok(&catalog), None);
        assert_eq!(report["cache"]["hits"], 2);
        assert_eq!(report["cache"]["misses"], 1);
        assert_eq!(report["cache"]["bypasses"], 1);
        assert_eq!(report["cache"]["hitRate"], json!(2.0 / 3.0));
        assert_eq!(report["errors"]["count"], 0);
        assert!(costs_match(report["cost"]["spentUsd"].as_f64().unwrap(), 2.0 * price));
        assert!(costs_match(report["cost"]["savedUsd"].as_f64().unwrap(), 2.0 * price));
        assert!(costs_match(report["cost"]["withoutCacheUsd"].as_f64().unwrap(), 4.0 * price));
        assert_eq!(report["cost"]["check"]["checked"], 2);
        assert_eq!(report["latencyMs"]["HIT"]["p50"], json!(5.0));
        assert_eq!(report["latencyMs"]["overall"]["count"], 4);
        assert_eq!(report["models"]["requested"]["haiku"], 4);
        assert!(passed(&report));
        let table = render_table(&report);
        assert!(table.contains("2 hits, 1 misses, 1 bypasses"), "{table}");
    }

    #[test]
    fn wrong_prices_and_a_missing_catalog_fail_the_demo() {
        let catalog = Catalog::parse(FIXTURE).unwrap();
        let outcomes = vec![outcome("MISS", 0.5, None, 1.0), outcome("HIT", 0.0, Some(0.5), 1.0)];
        let report = build(&outcomes, &RunInfo::default(), Ok(&catalog), None);
        assert_eq!(report["errors"]["costMismatches"], 1);
        assert!(!passed(&report));

        let report = build(&outcomes, &RunInfo::default(), Err("no catalog"), None);
        assert_eq!(report["cost"]["check"]["available"], false);
        assert!(!passed(&report));
    }

    #[test]
    fn no_hits_fails_the_demo() {
        let catalog = Catalog::parse(FIXTURE).unwrap();
        let price = (1000.0 * 1.0 + 200.0 * 5.0) / 1e6 * 1.1;
        let outcomes = vec![outcome("MISS", price, None, 1.0)];
        let report = build(&outcomes, &RunInfo::default(), Ok(&catalog), None);
        assert_eq!(report["errors"]["count"], 0);
        assert!(!passed(&report));
    }
}
