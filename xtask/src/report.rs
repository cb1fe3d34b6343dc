//! Turns the demo's per-request outcomes into the report: printed as a table and written
//! as JSON with one named section per concern, so later work can add sections.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::catalog::{Catalog, Usage, costs_match};
use crate::workload::AUTO_MODEL;
/// The tiers from cheapest to strongest.
pub const TIERS: [&str; 3] = ["haiku", "sonnet", "opus"];

fn tier_rank(tier: &str) -> Option<usize> {
    TIERS.iter().position(|t| *t == tier)
}

/// A routing decision as the gateway reports it: `routing` in a `/v1/converse` answer, or
/// the whole body of a `/v1/route` answer.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteInfo {
    pub tier: String,
    pub model_id: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub model_version: String,
    pub min_tier: String,
    pub max_tier: String,
    #[serde(default)]
    pub quality_tolerance: Option<f64>,
    #[serde(default)]
    pub expected_cost_usd: Option<f64>,
    #[serde(default)]
    pub strongest_expected_cost_usd: Option<f64>,
    #[serde(default)]
    pub tiers: Vec<TierInfo>,
    /// Decision time; only `/v1/route` reports it.
    #[serde(default)]
    pub latency_micros: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TierInfo {
    pub tier: String,
    #[serde(default)]
    pub model_id: String,
    pub adequacy: f64,
    #[serde(default)]
    pub expected_cost_usd: Option<f64>,
    #[serde(default)]
    pub allowed: bool,
}

impl RouteInfo {
    pub fn adequacy(&self, tier: &str) -> Option<f64> {
        self.tiers.iter().find(|t| t.tier == tier).map(|t| t.adequacy)
    }

    /// What is wrong with the decision on its own terms, if anything: an unknown tier, a
    /// tier outside its own bounds, or a missing per-tier estimate.
    fn inconsistency(&self) -> Option<String> {
        let (Some(tier), Some(min), Some(max)) =
            (tier_rank(&self.tier), tier_rank(&self.min_tier), tier_rank(&self.max_tier))
        else {
            return Some(format!(
                "routing names unknown tiers ({} in {}..{})",
                self.tier, self.min_tier, self.max_tier
            ));
        };
        if !(min..=max).contains(&tier) {
            return Some(format!("routing chose {} outside {}..{}", self.tier, self.min_tier, self.max_tier));
        }
        if let Some(missing) = TIERS.iter().find(|t| self.adequacy(t).is_none()) {
            return Some(format!("routing.tiers lacks {missing}"));
        }
        None
    }

    /// Whether the decision honours a request's override header (`name: value` label).
    fn knob_problem(&self, knob: Option<&str>) -> Option<String> {
        let (name, value) = knob?.split_once(": ")?;
        match name {
            "x-route-max-tier" if self.max_tier != value => {
                Some(format!("{name}: {value} answered with maxTier {}", self.max_tier))
            }
            "x-route-min-tier" if self.min_tier != value => {
                Some(format!("{name}: {value} answered with minTier {}", self.min_tier))
            }
            "x-route-quality-tolerance" => match (value.parse::<f64>(), self.quality_tolerance) {
                (Ok(asked), Some(got)) if (asked - got).abs() < 1e-9 => None,
                (_, got) => Some(format!("{name}: {value} answered with qualityTolerance {got:?}")),
            },
            _ => None,
        }
    }
}

/// One model call of an answer, from `hops`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HopInfo {
    pub model_id: String,
    #[serde(default)]
    pub tier: Option<String>,
    pub outcome: String,
    #[serde(default)]
    pub error: Option<String>,
}

/// What admission did for one answer, from `admission`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionInfo {
    pub quota: String,
    pub mode: String,
    pub reserved_tokens: u64,
    #[serde(default)]
    pub settled_tokens: Option<u64>,
    pub waited_ms: u64,
    #[serde(default)]
    pub spilled: bool,
    /// Model calls the answer took under admission, continuations included.
    #[serde(default)]
    pub calls: u32,
}

/// A Bedrock ID without its geographic or `global.` profile prefix: what the cache key names.
fn base_model(id: &str) -> &str {
    const PREFIXES: &[&str] = &["us", "eu", "apac", "jp", "au", "ca", "us-gov", "global"];
    match id.split_once('.') {
        Some((prefix, base)) if PREFIXES.contains(&prefix) => base,
        _ => id,
    }
}

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
    /// The request's routing override as `header: value`, if it sent one.
    pub route_knob: Option<String>,
    /// The `x-route-tier` response header.
    pub route_tier_header: Option<String>,
    /// The gateway's routing decision, when it routed the request.
    pub routing: Option<RouteInfo>,
    /// Model calls the answer took (empty on a cache hit).
    pub hops: Vec<HopInfo>,
    /// What quota admission did, when it is on and the answer called Bedrock.
    pub admission: Option<AdmissionInfo>,
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
        if let Some(routing) = parsed.get("routing") {
            match serde_json::from_value(routing.clone()) {
                Ok(routing) => self.routing = Some(routing),
                Err(e) => {
                    self.error = Some(format!("unparsable routing ({e}): {}", excerpt(&routing.to_string())));
                    return self;
                }
            }
        }
        if let Some(hops) = parsed.get("hops") {
            match serde_json::from_value(hops.clone()) {
                Ok(hops) => self.hops = hops,
                Err(e) => {
                    self.error = Some(format!("unparsable hops ({e}): {}", excerpt(&hops.to_string())));
                    return self;
                }
            }
        }
        if let Some(admission) = parsed.get("admission") {
            match serde_json::from_value(admission.clone()) {
                Ok(admission) => self.admission = Some(admission),
                Err(e) => {
                    self.error = Some(format!("unparsable admission ({e}): {}", excerpt(&admission.to_string())));
                    return self;
                }
            }
        }
        self.error = self.validate(header_cache).or_else(|| self.validate_routing());
        self
    }

    /// A routed answer must carry a self-consistent decision that honours the request's
    /// knob, name it in `x-route-tier`, and be served by the routed model: by the last hop
    /// when Bedrock was called, and from an entry of the same base model on a hit (the cache
    /// key carries the routed model).
    fn validate_routing(&self) -> Option<String> {
        let asked = self.requested_model.eq_ignore_ascii_case(AUTO_MODEL);
        let Some(routing) = &self.routing else {
            return asked.then(|| "modelId auto answered without a routing decision".to_string());
        };
        if let Some(problem) = routing.inconsistency() {
            return Some(problem);
        }
        if self.route_tier_header.as_deref() != Some(routing.tier.as_str()) {
            return Some(format!(
                "x-route-tier header {:?} differs from routing.tier {}",
                self.route_tier_header, routing.tier
            ));
        }
        if let Some(problem) = routing.knob_problem(self.route_knob.as_deref()) {
            return Some(problem);
        }
        let served = self.served_model.as_deref().unwrap_or_default();
        if !self.is_hit_result() {
            match self.hops.last() {
                None => return Some("routed answer from Bedrock without hops".into()),
                Some(last) if last.outcome != "served" || last.model_id != served => {
                    return Some(format!(
                        "last hop {} ({}) is not the served model {served}",
                        last.model_id, last.outcome
                    ));
                }
                Some(_) => {}
            }
        }
        if self.hops.len() <= 1 && base_model(served) != base_model(&routing.model_id) {
            return Some(format!("routed to {} but served by {served}", routing.model_id));
        }
        None
    }

    fn is_hit_result(&self) -> bool {
        self.cache_result.as_deref() == Some("HIT")
    }

    /// More than one model call: the first choice failed and another model answered.
    pub fn fell_back(&self) -> bool {
        self.hops.len() > 1
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
        self.error.is_none() && self.is_hit_result()
    }
}

/// One dry run of `POST /v1/route`.
#[derive(Debug, Clone, Default)]
pub struct DryRun {
    pub prompt: String,
    /// The override header sent, as `header: value`.
    pub knob: Option<String>,
    pub status: u16,
    /// Round trip seen by the client, including `cargo lambda watch`.
    pub latency_ms: f64,
    pub tier_header: Option<String>,
    pub decision: Option<RouteInfo>,
    pub error: Option<String>,
}

impl DryRun {
    /// Anything but a 200 with a self-consistent decision that honours the knob, names its
    /// tier in `x-route-tier` and reports its decision time is an error.
    pub fn classify(mut self, status: u16, tier_header: Option<&str>, body: &str, latency_ms: f64) -> Self {
        self.status = status;
        self.latency_ms = latency_ms;
        self.tier_header = tier_header.map(str::to_string);
        if status != 200 {
            self.error = Some(format!("HTTP {status}: {}", excerpt(body)));
            return self;
        }
        let decision: RouteInfo = match serde_json::from_str(body) {
            Ok(decision) => decision,
            Err(e) => {
                self.error = Some(format!("unparsable decision ({e}): {}", excerpt(body)));
                return self;
            }
        };
        self.error = decision
            .inconsistency()
            .or_else(|| decision.knob_problem(self.knob.as_deref()))
            .or_else(|| {
                (tier_header != Some(decision.tier.as_str()))
                    .then(|| format!("x-route-tier header {tier_header:?} differs from tier {}", decision.tier))
            })
            .or_else(|| decision.latency_micros.is_none().then(|| "no latencyMicros".to_string()));
        self.decision = Some(decision);
        self
    }

    fn to_json(&self) -> Value {
        let d = self.decision.as_ref();
        let adequacy: Map<String, Value> =
            TIERS.iter().filter_map(|t| d.and_then(|d| d.adequacy(t)).map(|a| ((*t).to_string(), json!(a)))).collect();
        json!({
            "prompt": self.prompt,
            "knob": self.knob,
            "status": self.status,
            "tier": d.map(|d| &d.tier),
            "modelId": d.map(|d| &d.model_id),
            "reason": d.map(|d| &d.reason),
            "adequacy": adequacy,
            "expectedCostUsd": d.and_then(|d| d.expected_cost_usd),
            "strongestExpectedCostUsd": d.and_then(|d| d.strongest_expected_cost_usd),
            "latencyMicros": d.and_then(|d| d.latency_micros),
            "clientLatencyMs": (self.latency_ms * 10.0).round() / 10.0,
            "error": self.error,
        })
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

/// What the routing section needs beyond the outcomes.
#[derive(Debug, Clone, Copy)]
pub struct RoutingInputs<'a> {
    /// The strongest tier's Bedrock ID (the catalog's `[tiers] opus`), at whose price every
    /// routed answer is re-priced; or why it is unknown.
    pub strongest_model: Result<&'a str, &'a str>,
    pub dry_runs: &'a [DryRun],
}

/// The full report as JSON. `catalog` is `Err` when shared/catalog.toml could not be
/// read; the cost check then fails rather than silently passing.
pub fn build(
    outcomes: &[Outcome],
    run: &RunInfo,
    catalog: Result<&Catalog, &str>,
    routing: RoutingInputs<'_>,
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
    let dry_run_errors = routing.dry_runs.iter().filter(|d| d.error.is_some()).count();
    let error_count = request_errors.len() + mismatches + usize::from(check_failed) + dry_run_errors;
    let samples: Vec<Value> = request_errors
        .iter()
        .take(10)
        .map(|o| json!({"status": o.status, "model": o.requested_model, "error": o.error}))
        .chain(
            routing
                .dry_runs
                .iter()
                .filter(|d| d.error.is_some())
                .map(|d| json!({"status": d.status, "route": d.prompt, "error": d.error})),
        )
        .take(10)
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
            "routeDryRuns": dry_run_errors,
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
        "routing": routing_section(outcomes.len(), &ok, catalog.ok(), routing),
        "quota": quota_section(outcomes, &ok, emulator_stats.as_ref(), run.duration_s),
        "emulator": emulator_stats.unwrap_or(Value::Null),
    })
}

/// How much of each quota the run used (from the emulator's counters) and how many throttles
/// admission avoided: requests it held back until capacity freed, spilled to another quota
/// before Bedrock refused them, or answered 429 itself instead of spending a call.
fn quota_section(outcomes: &[Outcome], ok: &[&Outcome], emulator_stats: Option<&Value>, duration_s: f64) -> Value {
    let admitted: Vec<&AdmissionInfo> = ok.iter().filter_map(|o| o.admission.as_ref()).collect();
    let waited = admitted.iter().filter(|a| a.waited_ms > 0).count();
    let spilled = admitted.iter().filter(|a| a.spilled).count();
    let degraded = admitted.iter().filter(|a| a.mode == "degraded").count();
    let continuations: u64 = admitted.iter().map(|a| u64::from(a.calls.saturating_sub(1))).sum();
    let refused = outcomes.iter().filter(|o| o.status == 429).count();
    let waits: Vec<f64> = admitted.iter().filter(|a| a.waited_ms > 0).map(|a| a.waited_ms as f64).collect();
    let throttled = |counters: &Value| {
        counters.pointer("/throttled/rpm").and_then(Value::as_u64).unwrap_or(0)
            + counters.pointer("/throttled/tpm").and_then(Value::as_u64).unwrap_or(0)
    };
    let mut models = Map::new();
    if let Some(stats) = emulator_stats.and_then(|s| s.get("models")).and_then(Value::as_object) {
        for (quota, counters) in stats {
            let window = counters.pointer("/window/seconds").and_then(Value::as_f64).unwrap_or(60.0);
            let windows = (duration_s / window).max(1e-9);
            let quota_tokens = counters.get("quota_tokens").and_then(Value::as_u64).unwrap_or(0);
            let succeeded = counters.get("succeeded").and_then(Value::as_u64).unwrap_or(0);
            let share =
                |used: f64, limit: Option<f64>| limit.map(|l| (used / (l * windows) * 10_000.0).round() / 10_000.0);
            models.insert(
                quota.clone(),
                json!({
                    "requests": counters.get("requests").cloned().unwrap_or(Value::Null),
                    "throttled": throttled(counters),
                    "quotaTokens": quota_tokens,
                    "tpmLimit": counters.pointer("/window/tpm_limit").cloned().unwrap_or(Value::Null),
                    "rpmLimit": counters.pointer("/window/rpm_limit").cloned().unwrap_or(Value::Null),
                    "tokenUtilisation": share(quota_tokens as f64, counters.pointer("/window/tpm_limit").and_then(Value::as_f64)),
                    "requestUtilisation": share(succeeded as f64, counters.pointer("/window/rpm_limit").and_then(Value::as_f64)),
                }),
            );
        }
    }
    let bedrock_throttles = emulator_stats.and_then(|s| s.get("totals")).map_or(0, throttled);
    json!({
        "admitted": admitted.len(),
        "waited": waited,
        "waitMs": latency_summary(waits),
        "spilled": spilled,
        "refused": refused,
        "degraded": degraded,
        "continuations": continuations,
        "throttlesAvoided": waited + spilled + refused,
        "bedrockThrottles": bedrock_throttles,
        "models": Value::Object(models),
    })
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn savings_percent(spent: f64, strongest: f64) -> Option<f64> {
    (strongest > 0.0).then(|| (1.0 - spent / strongest) * 100.0)
}

/// Routed requests (answers that carry a decision): share per chosen tier, predicted
/// adequacy, fallbacks, and their cost against the strongest tier, re-priced from the
/// catalog and as the router estimated it; plus the `/v1/route` dry runs.
fn routing_section(total: usize, ok: &[&Outcome], catalog: Option<&Catalog>, inputs: RoutingInputs<'_>) -> Value {
    let routed: Vec<(&Outcome, &RouteInfo)> = ok.iter().filter_map(|o| o.routing.as_ref().map(|r| (*o, r))).collect();
    let share = |n: usize, d: usize| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    let mut tiers = Map::new();
    for tier in TIERS {
        let chosen = routed.iter().filter(|(_, r)| r.tier == tier).count();
        let adequacy: Vec<f64> = routed.iter().filter_map(|(_, r)| r.adequacy(tier)).collect();
        tiers.insert(
            tier.to_string(),
            json!({"requests": chosen, "share": share(chosen, routed.len()), "meanAdequacy": mean(&adequacy)}),
        );
    }
    let mut by_knob: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (outcome, decision) in &routed {
        let knob = outcome.route_knob.clone().unwrap_or_else(|| "default".into());
        *by_knob.entry(knob).or_default().entry(decision.tier.clone()).or_default() += 1;
    }
    let versions: std::collections::BTreeSet<&str> = routed.iter().map(|(_, r)| r.model_version.as_str()).collect();

    // Every routed answer Bedrock produced (MISS or BYPASS): what it cost, and what the same
    // usage costs at the strongest tier's price. Hits cost nothing on any tier.
    let answers: Vec<(&Outcome, &RouteInfo)> = routed.iter().copied().filter(|(o, _)| !o.is_hit()).collect();
    let spent: f64 = answers.iter().filter_map(|(o, _)| o.cost_usd).sum();
    let strongest = match (inputs.strongest_model, catalog) {
        (Err(reason), _) => Err(reason.to_string()),
        (Ok(_), None) => Err("the catalog could not be read".to_string()),
        (Ok(model), Some(catalog)) => answers
            .iter()
            .map(|(o, _)| o.usage.as_ref().and_then(|u| catalog.cost_usd(model, u)))
            .sum::<Option<f64>>()
            .map(|cost| (model, cost))
            .ok_or_else(|| format!("{model} cannot be priced from the catalog")),
    };
    let expected: f64 = answers.iter().filter_map(|(_, r)| r.expected_cost_usd).sum();
    let strongest_expected: f64 = answers.iter().filter_map(|(_, r)| r.strongest_expected_cost_usd).sum();
    let mut cost = json!({
        "answers": answers.len(),
        "spentUsd": spent,
        "routerEstimate": {
            "expectedUsd": expected,
            "strongestExpectedUsd": strongest_expected,
            "savingsPercent": savings_percent(expected, strongest_expected),
        },
    });
    match strongest {
        Ok((model, strongest_usd)) => {
            cost["available"] = json!(true);
            cost["strongestModelId"] = json!(model);
            cost["strongestTierUsd"] = json!(strongest_usd);
            cost["savedUsd"] = json!(strongest_usd - spent);
            cost["savingsPercent"] = json!(savings_percent(spent, strongest_usd));
        }
        Err(reason) => {
            cost["available"] = json!(false);
            cost["reason"] = json!(reason);
        }
    }

    json!({
        "requests": routed.len(),
        "shareOfRequests": share(routed.len(), total),
        "modelVersion": versions.into_iter().collect::<Vec<_>>().join(", "),
        "tiers": tiers,
        "reasons": tally(routed.iter().map(|(_, r)| r.reason.clone())),
        "byKnob": by_knob,
        "fallbacks": routed.iter().filter(|(o, _)| o.fell_back()).count(),
        "cost": cost,
        "dryRuns": inputs.dry_runs.iter().map(DryRun::to_json).collect::<Vec<_>>(),
        "dryRunErrors": inputs.dry_runs.iter().filter(|d| d.error.is_some()).count(),
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
    let mut routed = 0usize;
    let mut mismatches = Vec::new();
    for outcome in ok.iter().filter(|o| !o.is_hit()) {
        let (Some(model), Some(usage), Some(reported)) =
            (outcome.served_model.as_deref(), outcome.usage.as_ref(), outcome.cost_usd)
        else {
            continue;
        };
        checked += 1;
        routed += usize::from(outcome.routing.is_some());
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
        "routedChecked": routed,
        "mismatches": mismatches.len(),
        "samples": mismatches.into_iter().take(5).collect::<Vec<_>>(),
    })
}

/// Pass criteria of `cargo xtask demo`: no errors (requests, prices, dry runs), at least one
/// cache hit and one routed request, and dry runs of `/v1/route` that all succeeded.
pub fn passed(report: &Value) -> bool {
    let count = |pointer: &str| report.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    report.pointer("/errors/count") == Some(&json!(0))
        && count("/cache/hits") > 0
        && count("/routing/requests") > 0
        && report.pointer("/routing/dryRunErrors") == Some(&json!(0))
        && report.pointer("/routing/dryRuns").and_then(Value::as_array).is_some_and(|runs| !runs.is_empty())
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
        "  errors   {} ({} failed requests, {} cost mismatches, {} failed route dry runs)",
        int("/errors/count"),
        int("/errors/requests"),
        int("/errors/costMismatches"),
        int("/errors/routeDryRuns"),
    );
    let check = get("/cost/check");
    let check_text = if check["available"] == json!(true) {
        format!(
            "{} re-priced from the catalog ({} routed), {} mismatches",
            check["checked"], check["routedChecked"], check["mismatches"]
        )
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
    render_quota(&mut out, &get("/quota"));
    render_routing(&mut out, &get("/routing"));
    if let Some(samples) = get("/errors/samples").as_array().filter(|s| !s.is_empty()) {
        let _ = writeln!(out, "  first errors:");
        for sample in samples {
            let _ = writeln!(out, "    {sample}");
        }
    }
    out
}

fn render_quota(out: &mut String, quota: &Value) {
    let int = |key: &str| quota.get(key).and_then(Value::as_u64).unwrap_or(0);
    let _ = writeln!(
        out,
        "  quota    {} admitted ({} waited, p99 wait {} ms; {} spilled; {} degraded), {} refused with 429, {} continuations; \
         throttles avoided {}, Bedrock throttles {}",
        int("admitted"),
        int("waited"),
        quota.pointer("/waitMs/p99").and_then(Value::as_f64).map_or_else(|| "-".to_string(), |v| format!("{v:.0}")),
        int("spilled"),
        int("degraded"),
        int("refused"),
        int("continuations"),
        int("throttlesAvoided"),
        int("bedrockThrottles"),
    );
    if let Some(models) = quota.get("models").and_then(Value::as_object) {
        for (id, m) in models.iter().filter(|(_, m)| m["requests"].as_u64().unwrap_or(0) > 0) {
            let share = |key: &str| m[key].as_f64().map_or_else(|| "-".to_string(), |v| format!("{:.1} %", v * 100.0));
            let _ = writeln!(
                out,
                "    {id}: {} requests, {} throttled, TPM used {} of {}, RPM used {}",
                m["requests"],
                m["throttled"],
                share("tokenUtilisation"),
                m["tpmLimit"],
                share("requestUtilisation"),
            );
        }
    }
}

fn usd(value: &Value) -> String {
    value.as_f64().map_or_else(|| "-".to_string(), |v| format!("${v:.6}"))
}

fn percent(value: &Value) -> String {
    value.as_f64().map_or_else(|| "-".to_string(), |v| format!("{v:.1} %"))
}

fn two_places(value: &Value) -> String {
    value.as_f64().map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}

/// A prompt cut to `width` characters, on one line.
fn prompt_excerpt(prompt: &str, width: usize) -> String {
    let flat = prompt.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(width.saturating_sub(1)) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

fn render_routing(out: &mut String, routing: &Value) {
    let int = |v: &Value| v.as_u64().unwrap_or(0);
    let _ = writeln!(
        out,
        "  routing  {} routed requests (modelId auto, {:.1} % of requests), router model {}, {} fell back (>1 hop)",
        int(&routing["requests"]),
        routing["shareOfRequests"].as_f64().unwrap_or(0.0) * 100.0,
        routing["modelVersion"].as_str().filter(|v| !v.is_empty()).unwrap_or("-"),
        int(&routing["fallbacks"]),
    );
    let _ = writeln!(out, "    {:<8} {:>8} {:>8}   mean predicted adequacy", "tier", "requests", "share");
    for tier in TIERS {
        let row = &routing["tiers"][tier];
        let _ = writeln!(
            out,
            "    {:<8} {:>8} {:>8}   {}",
            tier,
            int(&row["requests"]),
            percent(&json!(row["share"].as_f64().unwrap_or(0.0) * 100.0)),
            two_places(&row["meanAdequacy"]),
        );
    }
    if let Some(knobs) = routing["byKnob"].as_object() {
        let listing: Vec<String> = knobs
            .iter()
            .map(|(knob, tiers)| {
                let chosen = tiers
                    .as_object()
                    .map(|m| m.iter().map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default();
                format!("{knob} → {chosen}")
            })
            .collect();
        let _ = writeln!(out, "    tiers by override: {}", listing.join("; "));
    }
    let cost = &routing["cost"];
    let strongest = if cost["available"] == json!(true) {
        format!(
            "{} if every answer had come from {} (re-priced from the catalog): {} saved",
            usd(&cost["strongestTierUsd"]),
            cost["strongestModelId"].as_str().unwrap_or("the strongest tier"),
            percent(&cost["savingsPercent"]),
        )
    } else {
        format!("strongest-tier comparison NOT RUN: {}", cost["reason"].as_str().unwrap_or("unknown"))
    };
    let _ = writeln!(
        out,
        "    cost of {} routed answers from Bedrock: {} spent, {strongest}",
        int(&cost["answers"]),
        usd(&cost["spentUsd"]),
    );
    let estimate = &cost["routerEstimate"];
    let _ = writeln!(
        out,
        "    router's estimate for them: {} expected, {} on the strongest allowed tier: {} saved",
        usd(&estimate["expectedUsd"]),
        usd(&estimate["strongestExpectedUsd"]),
        percent(&estimate["savingsPercent"]),
    );
    let Some(runs) = routing["dryRuns"].as_array() else {
        return;
    };
    let _ = writeln!(out, "  route dry runs (POST /v1/route, no model called)");
    let row = |prompt: &str, knob: &str, tier: &str, adequacy: &str, expected: &str, strongest: &str, micros: &str| {
        format!("    {prompt:<42} {knob:<16} {tier:<7} {adequacy:>12} {expected:>10} {strongest:>10} {micros:>6}")
    };
    let _ = writeln!(out, "{}", row("prompt", "override", "tier", "haiku/sonnet", "expected", "strongest", "µs"));
    for run in runs {
        let prompt = prompt_excerpt(run["prompt"].as_str().unwrap_or_default(), 42);
        let knob = run["knob"].as_str().map_or("-", |k| k.trim_start_matches("x-route-"));
        if let Some(error) = run["error"].as_str() {
            let _ = writeln!(out, "    {prompt:<42} {knob:<16} ERROR {error}");
            continue;
        }
        let adequacy = format!("{}/{}", two_places(&run["adequacy"]["haiku"]), two_places(&run["adequacy"]["sonnet"]));
        let micros = run["latencyMicros"].as_u64().map_or_else(|| "-".to_string(), |v| v.to_string());
        let line = row(
            &prompt,
            knob,
            run["tier"].as_str().unwrap_or("-"),
            &adequacy,
            &usd(&run["expectedCostUsd"]),
            &usd(&run["strongestExpectedCostUsd"]),
            &micros,
        );
        let _ = writeln!(out, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::FIXTURE;

    const HAIKU_US: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
    const SONNET_US: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
    const OPUS_US: &str = "us.anthropic.claude-opus-4-5-20251101-v1:0";
    const OPUS_ENTRY: &str = r#"
[[models]]
key = "opus-4.5"
tier = "opus"
model_id = "anthropic.claude-opus-4-5-20251101-v1:0"
regional_premium = 0.1
[models.price]
input = 5.0
output = 25.0
"#;
    /// Per-token USD list prices (input, output) of the three tiers, with the 10 % premium of
    /// a `us.` profile applied by the callers.
    const HAIKU_PRICE: (f64, f64) = (1.0, 5.0);
    const SONNET_PRICE: (f64, f64) = (3.0, 15.0);
    const OPUS_PRICE: (f64, f64) = (5.0, 25.0);

    fn catalog() -> Catalog {
        Catalog::parse(&format!("{FIXTURE}{OPUS_ENTRY}")).unwrap()
    }

    /// 1000 input and 200 output tokens through a `us.` profile.
    fn price((input, output): (f64, f64)) -> f64 {
        (1000.0 * input + 200.0 * output) / 1e6 * 1.1
    }

    fn inputs(dry_runs: &[DryRun]) -> RoutingInputs<'_> {
        RoutingInputs { strongest_model: Ok(OPUS_US), dry_runs }
    }

    fn body(result: &str, cost: f64, saved: Option<f64>) -> String {
        routed_body(result, cost, saved, HAIKU_US, None).to_string()
    }

    /// A `/v1/converse` answer served by `model`, with `decision` as its `routing`.
    fn routed_body(result: &str, cost: f64, saved: Option<f64>, model: &str, decision: Option<Value>) -> Value {
        let mut cache = json!({"result": result, "key": "k"});
        if let Some(saved) = saved {
            cache["savedUsd"] = json!(saved);
        }
        let mut body = json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 1000, "outputTokens": 200, "totalTokens": 1200},
            "metrics": {"latencyMs": 5},
            "modelId": model,
            "costUsd": cost,
            "latencyMs": 6,
            "cache": cache,
        });
        if let Some(decision) = decision {
            if result != "HIT" {
                body["hops"] = json!([{"modelId": model, "tier": decision["tier"], "outcome": "served"}]);
            }
            body["routing"] = decision;
        }
        body
    }

    /// A routing decision as the gateway serialises it; `haiku`/`sonnet` are the predicted
    /// adequacies, the strongest allowed tier is opus.
    fn decision(tier: &str, haiku: f64, sonnet: f64) -> Value {
        let model = |t: &str| match t {
            "haiku" => HAIKU_US,
            "sonnet" => SONNET_US,
            _ => OPUS_US,
        };
        let expected = |t: &str| match t {
            "haiku" => 0.002,
            "sonnet" => 0.006,
            _ => 0.01,
        };
        json!({
            "tier": tier,
            "modelId": model(tier),
            "reason": if tier == "opus" { "strongest_allowed" } else { "predicted_adequate" },
            "qualityTolerance": 10.0,
            "minTier": "haiku",
            "maxTier": "opus",
            "modelVersion": "v1-test",
            "estimatedInputTokens": 1000,
            "expectedOutputTokens": 200,
            "expectedCostUsd": expected(tier),
            "strongestExpectedCostUsd": 0.01,
            "tiers": [
                {"tier": "haiku", "modelId": HAIKU_US, "adequacy": haiku, "threshold": 0.9, "expectedCostUsd": 0.002, "allowed": true},
                {"tier": "sonnet", "modelId": SONNET_US, "adequacy": sonnet, "threshold": 0.6, "expectedCostUsd": 0.006, "allowed": true},
                {"tier": "opus", "modelId": OPUS_US, "adequacy": 1.0, "expectedCostUsd": 0.01, "allowed": true},
            ],
        })
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

    /// An `auto` request answered with `body`; the `x-route-tier` header is the body's tier.
    fn routed_with(knob: Option<&str>, result: &str, body: &Value) -> Outcome {
        let base = Outcome {
            requested_model: "auto".into(),
            tenant: "acme".into(),
            cache_off: result == "BYPASS",
            route_knob: knob.map(str::to_string),
            route_tier_header: body["routing"]["tier"].as_str().map(str::to_string),
            ..Outcome::default()
        };
        base.classify(200, Some(result), &body.to_string(), 50.0)
    }

    /// A routed answer priced correctly for its tier.
    fn routed(tier: &str, result: &str, haiku: f64, sonnet: f64) -> Outcome {
        let (model, list) = match tier {
            "haiku" => (HAIKU_US, HAIKU_PRICE),
            "sonnet" => (SONNET_US, SONNET_PRICE),
            _ => (OPUS_US, OPUS_PRICE),
        };
        let (cost, saved) = if result == "HIT" { (0.0, Some(price(list))) } else { (price(list), None) };
        routed_with(None, result, &routed_body(result, cost, saved, model, Some(decision(tier, haiku, sonnet))))
    }

    fn route_body(tier: &str, max_tier: &str) -> String {
        let mut body = decision(tier, 0.4, 0.7);
        body["maxTier"] = json!(max_tier);
        body["latencyMicros"] = json!(42);
        body["forced"] = json!(false);
        body.to_string()
    }

    fn dry_run(knob: Option<&str>, status: u16, header: Option<&str>, body: &str) -> DryRun {
        let run =
            DryRun { prompt: "Say thank you in Japanese.".into(), knob: knob.map(str::to_string), ..DryRun::default() };
        run.classify(status, header, body, 3.0)
    }

    fn good_dry_runs() -> Vec<DryRun> {
        vec![
            dry_run(None, 200, Some("sonnet"), &route_body("sonnet", "opus")),
            dry_run(Some("x-route-max-tier: haiku"), 200, Some("haiku"), &route_body("haiku", "haiku")),
        ]
    }

    #[test]
    fn the_quota_section_counts_what_admission_did_and_how_much_of_each_quota_was_used() {
        let body = |admission: Value| {
            let mut b: Value = serde_json::from_str(&body("MISS", 0.001, None)).unwrap();
            b["admission"] = admission;
            b.to_string()
        };
        let admission = |waited: u64, spilled: bool, calls: u32| {
            json!({"quota": "us.m", "mode": "shared", "reservedTokens": 900, "settledTokens": 400,
                   "waitedMs": waited, "spilled": spilled, "calls": calls})
        };
        let answered = |a: Value| {
            let base = Outcome { requested_model: "haiku".into(), tenant: "acme".into(), ..Outcome::default() };
            base.classify(200, Some("MISS"), &body(a), 10.0)
        };
        let outcomes = vec![
            answered(admission(0, false, 1)),
            answered(admission(250, false, 1)),
            answered(admission(0, true, 3)),
            Outcome { status: 429, error: Some("HTTP 429".into()), ..Outcome::default() },
        ];
        assert!(outcomes[..3].iter().all(|o| o.error.is_none() && o.admission.is_some()), "{outcomes:?}");
        let ok: Vec<&Outcome> = outcomes.iter().filter(|o| o.error.is_none()).collect();
        let stats = json!({
            "totals": {"throttled": {"rpm": 1, "tpm": 2}},
            "models": {"us.m": {"requests": 3, "succeeded": 3, "throttled": {"rpm": 1, "tpm": 2}, "quota_tokens": 3000,
                                "window": {"seconds": 60.0, "tpm_limit": 10000, "rpm_limit": 10}}}
        });
        let section = quota_section(&outcomes, &ok, Some(&stats), 30.0);
        assert_eq!(section["admitted"], 3);
        assert_eq!(section["waited"], 1);
        assert_eq!(section["spilled"], 1);
        assert_eq!(section["refused"], 1);
        assert_eq!(section["continuations"], 2);
        assert_eq!(section["throttlesAvoided"], 3);
        assert_eq!(section["bedrockThrottles"], 3);
        // 3,000 tokens in half a window of a 10,000-token quota; 3 requests of 5 allowed.
        assert_eq!(section["models"]["us.m"]["tokenUtilisation"], 0.6);
        assert_eq!(section["models"]["us.m"]["requestUtilisation"], 0.6);
        assert!(render_table(&json!({"quota": section})).contains("throttles avoided 3"));
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
    fn routed_answers_are_parsed_and_checked() {
        let miss = routed("sonnet", "MISS", 0.3, 0.8);
        assert_eq!(miss.error, None);
        let chosen = miss.routing.as_ref().unwrap();
        assert_eq!((chosen.tier.as_str(), chosen.model_id.as_str()), ("sonnet", SONNET_US));
        assert_eq!(chosen.adequacy("haiku"), Some(0.3));
        assert_eq!(miss.hops.len(), 1);
        assert!(!miss.fell_back());
        // A hit has no hops and is served from the routed model's entry.
        assert_eq!(routed("haiku", "HIT", 0.95, 0.97).error, None);

        let good = routed_body("MISS", 0.1, None, SONNET_US, Some(decision("sonnet", 0.3, 0.8)));
        let error = |o: Outcome| o.error.unwrap_or_default();

        let auto = Outcome { requested_model: "auto".into(), ..Outcome::default() };
        let no_header = auto.clone().classify(200, Some("MISS"), &good.to_string(), 1.0);
        assert!(error(no_header).contains("x-route-tier"));

        let mut unrouted = good.clone();
        unrouted.as_object_mut().unwrap().remove("routing");
        assert!(error(auto.classify(200, Some("MISS"), &unrouted.to_string(), 1.0)).contains("without a routing"));

        let mut elsewhere = good.clone();
        elsewhere["modelId"] = json!(OPUS_US);
        elsewhere["hops"][0]["modelId"] = json!(OPUS_US);
        assert!(error(routed_with(None, "MISS", &elsewhere)).contains("served by"));

        let mut hopless = good.clone();
        hopless.as_object_mut().unwrap().remove("hops");
        assert!(error(routed_with(None, "MISS", &hopless)).contains("without hops"));

        let mut outside = good.clone();
        outside["routing"]["maxTier"] = json!("haiku");
        assert!(error(routed_with(None, "MISS", &outside)).contains("outside"));

        let mut broken = good.clone();
        broken["routing"]["tiers"] = json!("none");
        assert!(error(routed_with(None, "MISS", &broken)).contains("unparsable routing"));

        // Knobs must reach the decision.
        assert_eq!(routed_with(Some("x-route-quality-tolerance: 10"), "MISS", &good).error, None);
        assert!(error(routed_with(Some("x-route-quality-tolerance: 30"), "MISS", &good)).contains("qualityTolerance"));
        assert!(error(routed_with(Some("x-route-max-tier: sonnet"), "MISS", &good)).contains("maxTier opus"));

        // A fallback: the routed model was throttled and the adjacent tier answered.
        let mut fallback = routed_body("MISS", 0.1, None, OPUS_US, Some(decision("sonnet", 0.3, 0.8)));
        fallback["hops"] = json!([
            {"modelId": SONNET_US, "tier": "sonnet", "outcome": "throttled", "error": "slow down"},
            {"modelId": OPUS_US, "tier": "opus", "outcome": "served"},
        ]);
        let fell_back = routed_with(None, "MISS", &fallback);
        assert_eq!(fell_back.error, None);
        assert!(fell_back.fell_back());
    }

    #[test]
    fn report_sections_add_up_and_costs_are_rechecked() {
        let catalog = catalog();
        let price = price(HAIKU_PRICE);
        let outcomes = vec![
            outcome("MISS", price, None, 100.0),
            outcome("HIT", 0.0, Some(price), 5.0),
            outcome("HIT", 0.0, Some(price), 7.0),
            outcome("BYPASS", price, None, 90.0),
            routed("haiku", "MISS", 0.95, 0.97),
        ];
        let run = RunInfo { requests: 5, concurrency: 2, seed: 1, duration_s: 2.0 };
        let dry_runs = good_dry_runs();
        let report = build(&outcomes, &run, Ok(&catalog), inputs(&dry_runs), None);
        assert_eq!(report["cache"]["hits"], 2);
        assert_eq!(report["cache"]["misses"], 2);
        assert_eq!(report["cache"]["bypasses"], 1);
        assert_eq!(report["cache"]["hitRate"], json!(0.5));
        assert_eq!(report["errors"]["count"], 0);
        assert!(costs_match(report["cost"]["spentUsd"].as_f64().unwrap(), 3.0 * price));
        assert!(costs_match(report["cost"]["savedUsd"].as_f64().unwrap(), 2.0 * price));
        assert!(costs_match(report["cost"]["withoutCacheUsd"].as_f64().unwrap(), 5.0 * price));
        assert_eq!(report["cost"]["check"]["checked"], 3);
        assert_eq!(report["cost"]["check"]["routedChecked"], 1);
        assert_eq!(report["latencyMs"]["HIT"]["p50"], json!(5.0));
        assert_eq!(report["latencyMs"]["overall"]["count"], 5);
        assert_eq!(report["models"]["requested"]["haiku"], 4);
        assert_eq!(report["models"]["requested"]["auto"], 1);
        assert!(passed(&report));
        let table = render_table(&report);
        assert!(table.contains("2 hits, 2 misses, 1 bypasses"), "{table}");
        assert!(table.contains("1 routed requests"), "{table}");
    }

    #[test]
    fn the_routing_section_counts_tiers_and_compares_with_the_strongest_tier() {
        let catalog = catalog();
        let outcomes = vec![
            routed("haiku", "MISS", 0.9, 0.95),
            routed("haiku", "HIT", 0.9, 0.95),
            routed("sonnet", "MISS", 0.2, 0.7),
            routed("opus", "BYPASS", 0.1, 0.3),
            outcome("MISS", price(HAIKU_PRICE), None, 1.0),
        ];
        let mut with_knob = routed("sonnet", "MISS", 0.5, 0.6);
        with_knob.route_knob = Some("x-route-max-tier: sonnet".into());
        let mut outcomes = outcomes;
        outcomes.push(with_knob);
        let dry_runs = good_dry_runs();
        let report = build(&outcomes, &RunInfo::default(), Ok(&catalog), inputs(&dry_runs), None);
        assert_eq!(report["errors"]["count"], 0, "{:#}", report["errors"]);
        let routing = &report["routing"];
        assert_eq!(routing["requests"], 5);
        assert_eq!(routing["shareOfRequests"], json!(5.0 / 6.0));
        assert_eq!(routing["modelVersion"], "v1-test");
        assert_eq!(routing["tiers"]["haiku"]["requests"], 2);
        assert_eq!(routing["tiers"]["sonnet"]["requests"], 2);
        assert_eq!(routing["tiers"]["opus"]["requests"], 1);
        assert_eq!(routing["tiers"]["opus"]["share"], json!(0.2));
        let mean_haiku = routing["tiers"]["haiku"]["meanAdequacy"].as_f64().unwrap();
        assert!((mean_haiku - (0.9 + 0.9 + 0.2 + 0.1 + 0.5) / 5.0).abs() < 1e-12, "{mean_haiku}");
        assert_eq!(routing["tiers"]["opus"]["meanAdequacy"], json!(1.0));
        assert_eq!(routing["byKnob"]["default"]["haiku"], 2);
        assert_eq!(routing["byKnob"]["x-route-max-tier: sonnet"]["sonnet"], 1);
        assert_eq!(routing["fallbacks"], 0);
        assert_eq!(routing["reasons"]["predicted_adequate"], 4);

        // The four answers from Bedrock (the hit costs nothing anywhere), re-priced at Opus.
        let cost = &routing["cost"];
        assert_eq!(cost["answers"], 4);
        let spent = price(HAIKU_PRICE) + 2.0 * price(SONNET_PRICE) + price(OPUS_PRICE);
        assert!(costs_match(cost["spentUsd"].as_f64().unwrap(), spent));
        assert_eq!(cost["strongestModelId"], OPUS_US);
        let strongest = 4.0 * price(OPUS_PRICE);
        assert!(costs_match(cost["strongestTierUsd"].as_f64().unwrap(), strongest));
        let savings = cost["savingsPercent"].as_f64().unwrap();
        assert!((savings - (1.0 - spent / strongest) * 100.0).abs() < 1e-9, "{savings}");
        assert!(savings > 0.0);
        // The router's own estimate sums the decisions' expected costs.
        let estimate = &cost["routerEstimate"];
        assert!(costs_match(estimate["expectedUsd"].as_f64().unwrap(), 0.002 + 0.006 + 0.01 + 0.006));
        assert!(costs_match(estimate["strongestExpectedUsd"].as_f64().unwrap(), 0.04));
        assert!(estimate["savingsPercent"].as_f64().unwrap() > 0.0);

        assert_eq!(routing["dryRuns"].as_array().unwrap().len(), 2);
        assert_eq!(routing["dryRuns"][1]["tier"], "haiku");
        assert_eq!(routing["dryRuns"][1]["latencyMicros"], 42);
        assert_eq!(routing["dryRuns"][0]["adequacy"]["sonnet"], json!(0.7));
        assert!(passed(&report));

        let table = render_table(&report);
        for expected in
            ["5 routed requests", "v1-test", "sonnet", "x-route-max-tier: sonnet → sonnet 1", OPUS_US, "dry runs"]
        {
            assert!(table.contains(expected), "{expected} missing from\n{table}");
        }

        // Without the strongest tier's ID the comparison is reported as not run.
        let unknown = RoutingInputs { strongest_model: Err("no [tiers]"), dry_runs: &dry_runs };
        let report = build(&outcomes, &RunInfo::default(), Ok(&catalog), unknown, None);
        assert_eq!(report["routing"]["cost"]["available"], false);
        assert!(render_table(&report).contains("NOT RUN: no [tiers]"));
    }

    #[test]
    fn routed_answers_go_through_the_cost_check() {
        let catalog = catalog();
        // Served by Sonnet but priced as Haiku.
        let wrong = routed_body("MISS", price(HAIKU_PRICE), None, SONNET_US, Some(decision("sonnet", 0.2, 0.8)));
        let outcomes = vec![routed_with(None, "MISS", &wrong), routed("haiku", "HIT", 0.9, 0.9)];
        assert_eq!(outcomes[0].error, None);
        let dry_runs = good_dry_runs();
        let report = build(&outcomes, &RunInfo::default(), Ok(&catalog), inputs(&dry_runs), None);
        assert_eq!(report["cost"]["check"]["routedChecked"], 1);
        assert_eq!(report["errors"]["costMismatches"], 1);
        assert_eq!(report["cost"]["check"]["samples"][0]["model"], SONNET_US);
        assert!(!passed(&report));
    }

    #[test]
    fn dry_runs_are_checked() {
        let [plain, capped] = <[DryRun; 2]>::try_from(good_dry_runs()).unwrap();
        assert_eq!(plain.error, None);
        assert_eq!(capped.error, None);
        assert_eq!(capped.decision.as_ref().and_then(|d| d.latency_micros), Some(42));

        let failed = dry_run(None, 500, None, r#"{"error":{"type":"internal"}}"#);
        assert!(failed.error.unwrap().starts_with("HTTP 500"));
        let garbage = dry_run(None, 200, Some("opus"), "nope");
        assert!(garbage.error.unwrap().contains("unparsable"));
        let header = dry_run(None, 200, Some("opus"), &route_body("sonnet", "opus"));
        assert!(header.error.unwrap().contains("x-route-tier"));
        let cap_ignored = dry_run(Some("x-route-max-tier: haiku"), 200, Some("sonnet"), &route_body("sonnet", "opus"));
        assert!(cap_ignored.error.unwrap().contains("maxTier"));
        let mut no_timing: Value = serde_json::from_str(&route_body("sonnet", "opus")).unwrap();
        no_timing.as_object_mut().unwrap().remove("latencyMicros");
        let untimed = dry_run(None, 200, Some("sonnet"), &no_timing.to_string());
        assert!(untimed.error.unwrap().contains("latencyMicros"));
    }

    #[test]
    fn routing_problems_fail_the_demo() {
        let catalog = catalog();
        let price = price(HAIKU_PRICE);
        let unrouted = vec![outcome("MISS", price, None, 1.0), outcome("HIT", 0.0, Some(price), 1.0)];
        let dry_runs = good_dry_runs();
        // No routed request.
        let report = build(&unrouted, &RunInfo::default(), Ok(&catalog), inputs(&dry_runs), None);
        assert_eq!(report["errors"]["count"], 0);
        assert_eq!(report["routing"]["requests"], 0);
        assert!(!passed(&report));

        let mut outcomes = unrouted.clone();
        outcomes.push(routed("haiku", "MISS", 0.9, 0.9));
        assert!(passed(&build(&outcomes, &RunInfo::default(), Ok(&catalog), inputs(&dry_runs), None)));
        // A failed dry run.
        let mut failing = good_dry_runs();
        failing.push(dry_run(None, 502, None, "bad gateway"));
        let report = build(&outcomes, &RunInfo::default(), Ok(&catalog), inputs(&failing), None);
        assert_eq!(report["errors"]["routeDryRuns"], 1);
        assert_eq!(report["routing"]["dryRunErrors"], 1);
        assert!(!passed(&report));
        assert!(render_table(&report).contains("ERROR HTTP 502"));
        // No dry run at all.
        let report = build(&outcomes, &RunInfo::default(), Ok(&catalog), inputs(&[]), None);
        assert!(!passed(&report));
    }

    #[test]
    fn wrong_prices_and_a_missing_catalog_fail_the_demo() {
        let catalog = catalog();
        let outcomes = vec![
            outcome("MISS", 0.5, None, 1.0),
            outcome("HIT", 0.0, Some(0.5), 1.0),
            routed("haiku", "HIT", 0.9, 0.9),
        ];
        let dry_runs = good_dry_runs();
        let report = build(&outcomes, &RunInfo::default(), Ok(&catalog), inputs(&dry_runs), None);
        assert_eq!(report["errors"]["costMismatches"], 1);
        assert!(!passed(&report));

        let report = build(&outcomes, &RunInfo::default(), Err("no catalog"), inputs(&dry_runs), None);
        assert_eq!(report["cost"]["check"]["available"], false);
        assert_eq!(report["routing"]["cost"]["available"], false);
        assert!(!passed(&report));
    }

    #[test]
    fn no_hits_fails_the_demo() {
        let catalog = catalog();
        let outcomes = vec![outcome("MISS", price(HAIKU_PRICE), None, 1.0), routed("haiku", "MISS", 0.9, 0.9)];
        let dry_runs = good_dry_runs();
        let report = build(&outcomes, &RunInfo::default(), Ok(&catalog), inputs(&dry_runs), None);
        assert_eq!(report["errors"]["count"], 0);
        assert!(!passed(&report));
    }

    #[test]
    fn prompt_excerpts_are_one_short_line() {
        assert_eq!(prompt_excerpt("short", 10), "short");
        assert_eq!(prompt_excerpt("a\nlong   prompt here", 8), "a long …");
        assert_eq!(base_model(OPUS_US), "anthropic.claude-opus-4-5-20251101-v1:0");
        assert_eq!(base_model("anthropic.claude-opus-4-5-20251101-v1:0"), "anthropic.claude-opus-4-5-20251101-v1:0");
    }
}
