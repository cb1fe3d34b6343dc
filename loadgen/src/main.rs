//! `quota-load`: one OS process playing one Lambda instance. It sends an open-loop load of
//! Converse calls at one model and prints one JSON summary line on stdout (and, with
//! `--records FILE`, one JSON line per request).
//!
//! Strategies:
//! * `sdk-standard`, `sdk-adaptive`: the AWS SDK alone, with its standard or adaptive retry
//!   mode (3 attempts, the SDK's default); a request the SDK gives up on is lost.
//! * `admission`: the gateway's shared admission over the DynamoDB budget store, Converse
//!   with SDK retries off; a refusal is waited out (`retry_after`) and asked again, as a
//!   well-behaved caller of the gateway's 429 + `Retry-After` does, until `--patience-ms`.

mod admitted;
mod sdk;
mod summary;
mod workload;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::retry::RetryConfig;
use clap::Parser;
use gateway_core::admission::AdmissionSettings;
use gateway_core::catalog::{Catalog, ModelSpec, Quota, Scope};
use gateway_core::request::ConverseRequest;
use gateway_core::splitmix::SplitMix64;
use serde_json::json;

use crate::summary::{Record, Summary};
use crate::workload::{Arrivals, Prompt};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("workload {path}: {reason}")]
    Workload { path: String, reason: String },
    #[error("--model {0}: {1}")]
    Model(String, String),
    #[error("--{0}: {1}")]
    Argument(&'static str, String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    SdkStandard,
    SdkAdaptive,
    Admission,
}

impl Strategy {
    /// The name in summaries and in `bench-quota --json`.
    fn label(self) -> &'static str {
        match self {
            Strategy::SdkStandard => "sdk_standard",
            Strategy::SdkAdaptive => "sdk_adaptive",
            Strategy::Admission => "admission",
        }
    }
}

#[derive(Debug, Parser)]
#[command(name = "quota-load", about = "Open-loop Converse load from one process against Bedrock's quotas")]
struct Args {
    #[arg(long, value_enum)]
    strategy: Strategy,
    /// JSON array of {"prompt", "max_tokens"}; requests take them in turn from a seeded offset.
    #[arg(long)]
    workload: PathBuf,
    /// The ID Bedrock is called with (a profile ID, or a base ID in-Region).
    #[arg(long, default_value = "us.anthropic.claude-haiku-4-5-20251001-v1:0")]
    model: String,
    #[arg(long)]
    bedrock_url: String,
    /// Arrivals per second of this process.
    #[arg(long)]
    rate: f64,
    /// How long arrivals go on; the process ends when every request has ended.
    #[arg(long)]
    seconds: f64,
    #[arg(long, value_enum, default_value = "poisson")]
    arrivals: Arrivals,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// This instance's name in summaries (and in the admission budget).
    #[arg(long, default_value = "quota-load")]
    instance: String,
    /// How long a caller waits for an answer, retries included, before counting it lost.
    #[arg(long, default_value_t = 120_000)]
    patience_ms: u64,
    /// When arrivals begin (Unix milliseconds), so that the processes of one run start
    /// together; default: at once.
    #[arg(long)]
    start_at_unix_ms: Option<u64>,
    /// Admission: the DynamoDB endpoint of the budget table.
    #[arg(long)]
    dynamodb_url: Option<String>,
    /// Admission: the budget table (string partition key `pk`).
    #[arg(long)]
    budget_table: Option<String>,
    /// Admission: the model's limits per window, as the emulator enforces them.
    #[arg(long)]
    tpm: Option<u64>,
    #[arg(long)]
    rpm: Option<u64>,
    /// Admission: the quota window in milliseconds (Bedrock: one minute).
    #[arg(long, default_value_t = 60_000)]
    window_ms: u64,
    /// Admission: the longest one Bedrock call may hold its reservation.
    #[arg(long, default_value_t = 2_000)]
    max_call_ms: u64,
    /// Admission: how long a lease counts; default two windows plus the longest call.
    #[arg(long)]
    lease_ms: Option<u64>,
    /// Admission: the part of the quota no lease may take.
    #[arg(long, default_value_t = 5)]
    headroom_percent: u8,
    /// Admission: the longest a request waits for room before it is refused with a retry-after
    /// (the gateway's `ADMISSION_WAIT_MS`); default: the patience.
    #[arg(long)]
    wait_ms: Option<u64>,
    /// Admission: each budget-store call (moto on a busy machine is slower than DynamoDB).
    #[arg(long, default_value_t = 500)]
    store_timeout_ms: u64,
    /// Writes one JSON line per request here.
    #[arg(long)]
    records: Option<PathBuf>,
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// One request as the strategies send it.
#[derive(Debug, Clone)]
pub struct Job {
    pub index: usize,
    pub prompt: Prompt,
    /// Its input tokens, estimated as the emulator and the gateway count them.
    pub input_tokens: u64,
    pub scheduled: Instant,
    pub scheduled_unix_ms: u64,
    pub patience: Duration,
}

impl Job {
    /// A record of this job, to be completed by the strategy.
    pub fn record(&self) -> Record {
        Record {
            index: self.index,
            outcome: summary::Outcome::LostError,
            scheduled_unix_ms: self.scheduled_unix_ms,
            ended_unix_ms: 0,
            latency_ms: 0,
            calls: 0,
            throttled_calls: 0,
            refusals: 0,
            admitted_unix_ms: None,
            mode: None,
            settled_tokens: 0,
            error: None,
        }
    }

    /// Stamps the end time on a finished record.
    pub fn finish(&self, mut record: Record) -> Record {
        record.ended_unix_ms = unix_ms(SystemTime::now());
        record.latency_ms = self.scheduled.elapsed().as_millis() as u64;
        record
    }
}

/// Input tokens as the emulator and the gateway estimate them, from the same request body.
fn estimated_input(prompt: &Prompt) -> u64 {
    let body = json!({"messages": [{"role": "user", "content": [{"text": prompt.prompt}]}]});
    ConverseRequest::from_json(body.to_string().as_bytes())
        .map(|request| gateway_core::tokens::estimate_request(&request))
        .unwrap_or_else(|_| gateway_core::tokens::estimate_text(&prompt.prompt))
}

fn model_spec(catalog: &Catalog, model: &str) -> Result<(ModelSpec, Scope), LoadError> {
    catalog
        .resolve_served(model)
        .map(|(spec, scope)| (spec.clone(), scope))
        .map_err(|e| LoadError::Model(model.to_owned(), e.to_string()))
}

/// What sends the jobs of one strategy.
#[derive(Debug, Clone)]
enum Caller {
    Sdk(sdk::SdkCaller),
    Admitted(Arc<admitted::AdmittedCaller>),
}

impl Caller {
    async fn new(args: &Args, spec: Arc<ModelSpec>, scope: Scope) -> Result<Caller, LoadError> {
        let retry = match args.strategy {
            Strategy::SdkStandard => RetryConfig::standard(),
            Strategy::SdkAdaptive => RetryConfig::adaptive(),
            Strategy::Admission => return Ok(Caller::Admitted(Arc::new(admitted_caller(args, spec, scope).await?))),
        };
        Ok(Caller::Sdk(sdk::SdkCaller::new(retry, &args.bedrock_url, args.model.clone(), spec).await))
    }

    async fn send(&self, job: Job) -> Record {
        let record = job.record();
        let record = match self {
            Caller::Sdk(caller) => caller.send(&job, record).await,
            Caller::Admitted(caller) => caller.send(&job, record).await,
        };
        job.finish(record)
    }

    fn store_ops(&self) -> (u64, u64) {
        match self {
            Caller::Sdk(_) => (0, 0),
            Caller::Admitted(caller) => caller.store_ops(),
        }
    }
}

async fn admitted_caller(
    args: &Args,
    spec: Arc<ModelSpec>,
    scope: Scope,
) -> Result<admitted::AdmittedCaller, LoadError> {
    let missing = |name: &'static str| LoadError::Argument(name, "the admission strategy needs it".to_owned());
    let (Some(tpm), Some(rpm)) = (args.tpm, args.rpm) else {
        return Err(missing("tpm"));
    };
    if args.window_ms == 0 {
        return Err(LoadError::Argument("window-ms", "must be at least 1".to_owned()));
    }
    let window = Duration::from_millis(args.window_ms);
    let max_call = Duration::from_millis(args.max_call_ms);
    let lease_term = args.lease_ms.map(Duration::from_millis).unwrap_or(2 * window + max_call);
    let settings = AdmissionSettings {
        window,
        lease_term,
        max_call,
        headroom_percent: args.headroom_percent,
        wait: Duration::from_millis(args.wait_ms.unwrap_or(args.patience_ms)),
        store_timeout: Duration::from_millis(args.store_timeout_ms),
        ..AdmissionSettings::default()
    };
    if settings.usable_lease().is_zero() {
        return Err(LoadError::Argument(
            "lease-ms",
            "a lease must outlast one window plus the longest call".to_owned(),
        ));
    }
    let budget = admitted::BudgetArgs {
        dynamodb_url: args.dynamodb_url.clone().ok_or_else(|| missing("dynamodb-url"))?,
        table: args.budget_table.clone().ok_or_else(|| missing("budget-table"))?,
        limits: Quota { tpm, rpm },
        settings,
    };
    Ok(admitted::AdmittedCaller::new(
        budget,
        &args.bedrock_url,
        args.model.clone(),
        spec,
        scope,
        args.instance.clone(),
        max_call,
    )
    .await)
}

async fn run(args: Args) -> Result<Summary, LoadError> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err(LoadError::Argument("rate", format!("{} must be a positive number", args.rate)));
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        return Err(LoadError::Argument("seconds", format!("{} must be a positive number", args.seconds)));
    }
    let prompts = workload::read(&args.workload)?;
    let catalog = Catalog::embedded().map_err(|e| LoadError::Model(args.model.clone(), e.to_string()))?;
    let (spec, scope) = model_spec(&catalog, &args.model)?;
    let spec = Arc::new(spec);
    let mut rng = SplitMix64::new(args.seed);
    let offsets = workload::schedule(args.arrivals, args.rate, Duration::from_secs_f64(args.seconds), &mut rng);
    let first_prompt = rng.below(prompts.len() as u64) as usize;

    let caller = Caller::new(&args, spec, scope).await?;
    if let Some(start) = args.start_at_unix_ms {
        let wait = Duration::from_millis(start.saturating_sub(unix_ms(SystemTime::now())));
        tokio::time::sleep(wait).await;
    }
    let started = Instant::now();
    let started_unix = SystemTime::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, offset) in offsets.into_iter().enumerate() {
        tokio::time::sleep_until((started + offset).into()).await;
        let Some(prompt) = prompts.get((first_prompt + index) % prompts.len()).cloned() else {
            continue;
        };
        let job = Job {
            index,
            input_tokens: estimated_input(&prompt),
            prompt,
            scheduled: started + offset,
            scheduled_unix_ms: unix_ms(started_unix + offset),
            patience: Duration::from_millis(args.patience_ms),
        };
        let caller = caller.clone();
        tasks.spawn(async move { caller.send(job).await });
    }
    let mut records = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        // A task cannot panic (the lints forbid it); a join error would be a cancelled task,
        // which this process never does.
        if let Ok(record) = joined {
            records.push(record);
        }
    }
    records.sort_by_key(|r| r.index);
    if let Some(path) = &args.records {
        write_records(path, &records)?;
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(Summary::of(args.strategy.label(), args.instance.clone(), &records, caller.store_ops(), elapsed_ms))
}

fn write_records(path: &PathBuf, records: &[Record]) -> Result<(), LoadError> {
    let write_error = |source| LoadError::Write { path: path.display().to_string(), source };
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(write_error)?);
    for record in records {
        let line = serde_json::to_string(record).map_err(|e| write_error(std::io::Error::other(e)))?;
        writeln!(file, "{line}").map_err(write_error)?;
    }
    file.flush().map_err(write_error)
}

fn main() -> ExitCode {
    let args = Args::parse();
    // One process is one Lambda instance, which runs its requests on one thread as well.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("quota-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(summary) => match serde_json::to_string(&summary) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("quota-load: cannot encode the summary: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("quota-load: {e}");
            ExitCode::FAILURE
        }
    }
}
