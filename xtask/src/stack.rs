//! The local stack: moto for DynamoDB, the Bedrock emulator, and the functions under
//! `cargo lambda watch`. `stack`, `demo` and `test` all start it through this module.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::Result;
use crate::events::{self, Pump};
use crate::process::{Output, Supervisor, interrupted, run_checked, sleep_interruptibly};
use crate::{dynamo, http, paths, template, tools};

pub const LOCAL_TABLE_NAME: &str = "bedrock-gateway-cache-local";
pub const LOCAL_BUDGET_TABLE_NAME: &str = "bedrock-gateway-budget-local";
pub const LOCAL_BATCH_TABLE_NAME: &str = "bedrock-gateway-batch-local";
pub const LOCAL_USAGE_TABLE_NAME: &str = "bedrock-gateway-usage-local";
pub const FUNCTION_NAME: &str = "invoke-with-cache";
/// The streaming endpoint (a Function URL with response streaming when deployed).
pub const STREAM_FUNCTION_NAME: &str = "invoke-stream";
/// The routing-decision function (`POST /v1/route`); it needs no table and no Bedrock.
pub const ROUTER_FUNCTION_NAME: &str = "router";
pub const EMULATOR_BINARY: &str = "bedrock-emulator";
/// Built in the same cargo invocation as the servers: a `cargo run -p gateway-fuzz` of its own
/// would resolve the SDK's features differently and compile it a second time.
pub const FUZZ_BINARY: &str = "gateway-fuzz";
/// The package of `bench_quota::QUOTA_LOAD_BINARY`, built with the servers.
pub const LOADGEN_PACKAGE: &str = "gateway-loadgen";
/// Every Lambda binary `cargo lambda watch` may be asked to run; built up front so that
/// the first invocation does not wait for a compile.
pub const FUNCTION_BINARIES: &[&str] = &[
    FUNCTION_NAME,
    STREAM_FUNCTION_NAME,
    ROUTER_FUNCTION_NAME,
    SUBMISSION_FUNCTION_NAME,
    COMPLETION_FUNCTION_NAME,
    METRICS_PUBLISHER_FUNCTION_NAME,
    CALIBRATION_FUNCTION_NAME,
];
/// The package a function binary is built from: every function is a package of its own, but
/// invoke-stream is a second binary of invoke-with-cache's.
pub fn package_of(binary: &'static str) -> &'static str {
    if binary == STREAM_FUNCTION_NAME { FUNCTION_NAME } else { binary }
}

/// The schedule's publisher of per-minute figures to CloudWatch.
pub const METRICS_PUBLISHER_FUNCTION_NAME: &str = "metrics-publisher";
/// The router's calibration; its hourly schedule is off by default, so locally it runs when
/// `cargo xtask calibrate` (or the events smoke check) invokes it, never from the pump.
pub const CALIBRATION_FUNCTION_NAME: &str = "calibration";
/// The one tenant opted into calibration locally: only its prompts are sampled.
pub const LOCAL_CALIBRATION_TENANT: &str = "calibration-demo";
/// The batch pipeline's functions, fed by EventBridge (moto) through SQS queues.
pub const SUBMISSION_FUNCTION_NAME: &str = "batch-submission";
pub const COMPLETION_FUNCTION_NAME: &str = "batch-completion";
/// Every function an EventBridge rule or schedule invokes: the pump feeds each from its queue.
pub const EVENT_FUNCTIONS: &[&str] =
    &[SUBMISSION_FUNCTION_NAME, COMPLETION_FUNCTION_NAME, METRICS_PUBLISHER_FUNCTION_NAME];
/// The role Bedrock would assume for the local jobs; the emulator checks its shape only.
/// The tenant dropped files run as locally: their answers are cached for it.
pub const LOCAL_FILE_TENANT: &str = "batch-files";
pub const LOCAL_BATCH_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/bedrock-gateway-batch-local";
pub const EMULATOR_TEST_CONFIG: &str = "tests/emulator-test.toml";
/// The publisher's settle time locally: the shortest its configuration accepts.
pub const METRICS_SETTLE_SECONDS: u64 = 10;

/// The single list of environment variables the functions get locally. Deployed
/// functions get theirs from template.yaml.
pub fn function_env(
    moto_url: &str,
    emulator_url: &str,
    service_quotas_url: &str,
    cloudwatch_url: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_REGION", dynamo::REGION.to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_ENDPOINT_URL_DYNAMODB", moto_url.to_string()),
        ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", emulator_url.to_string()),
        // The emulator serves Bedrock's batch control plane on the runtime's port.
        ("AWS_ENDPOINT_URL_BEDROCK", emulator_url.to_string()),
        ("AWS_ENDPOINT_URL_S3", moto_url.to_string()),
        ("CACHE_TABLE_NAME", LOCAL_TABLE_NAME.to_string()),
        ("BATCH_BUCKET", events::LOCAL_BATCH_BUCKET.to_string()),
        ("BATCH_ROLE_ARN", LOCAL_BATCH_ROLE_ARN.to_string()),
        ("BATCH_FILE_TENANT", LOCAL_FILE_TENANT.to_string()),
        // Locally a record that cannot fill a job waits seconds, not the deployed 15 minutes,
        // before it runs on demand: the demo shows the whole path.
        ("BATCH_MAX_WAIT_SECONDS", "20".to_string()),
        // One opted-in tenant, every prompt of it sampled, so `cargo xtask calibrate` fills a
        // run quickly; the other tenants of the demo and the tests are never sampled.
        ("CALIBRATION_TENANTS", format!("{LOCAL_CALIBRATION_TENANT}=1")),
        ("CALIBRATION_BUCKET", events::LOCAL_BATCH_BUCKET.to_string()),
        ("CALIBRATION_ROLE_ARN", LOCAL_BATCH_ROLE_ARN.to_string()),
        // The local stack runs as a deployer would: every model call admitted against its
        // quota, and the quotas read at cold start from (the emulator's) Service Quotas, which
        // serves the values the emulator enforces.
        ("ADMISSION", "on".to_string()),
        ("ADMISSION_TABLE_NAME", LOCAL_BUDGET_TABLE_NAME.to_string()),
        ("USAGE_TABLE_NAME", LOCAL_USAGE_TABLE_NAME.to_string()),
        ("BATCH_TABLE_NAME", LOCAL_BATCH_TABLE_NAME.to_string()),
        ("QUOTA_SOURCE", "service-quotas".to_string()),
        ("AWS_ENDPOINT_URL_SERVICE_QUOTAS", service_quotas_url.to_string()),
        // The metrics publisher's PutMetricData calls land in the emulator's CloudWatch.
        ("AWS_ENDPOINT_URL_CLOUDWATCH", cloudwatch_url.to_string()),
        // Records land within milliseconds locally, so a minute is taken as complete soon
        // after it ends (the deployed 90 s allow for slow writers), and a fresh stack has no
        // hour of history to catch up on.
        ("METRICS_SETTLE_SECONDS", METRICS_SETTLE_SECONDS.to_string()),
        ("METRICS_CATCH_UP_MINUTES", "15".to_string()),
        // The same reason as the cache budget below: moto is slow at moments.
        ("ADMISSION_STORE_TIMEOUT_MS", "500".to_string()),
        // Locally there is no authorizer to put a JWT subject in the event, so the tenant
        // comes from a header; deployed stacks never set this.
        ("TRUST_TENANT_HEADER", "true".to_string()),
        // moto is a Python server sharing two cores with the functions and the emulator; the
        // production cache budget (50 ms) would turn its slow moments into spurious misses.
        ("CACHE_TIMEOUT_MS", "500".to_string()),
        ("RUST_LOG", "info".to_string()),
    ]
}

/// Environment for test runners (nextest, pytest) that talk to the servers directly.
pub fn test_env(moto_url: &str, emulator_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_REGION", dynamo::REGION.to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_ENDPOINT_URL_DYNAMODB", moto_url.to_string()),
        ("BEDROCK_EMULATOR_URL", emulator_url.to_string()),
        ("MOTO_SERVER", tools::MOTO.bin("moto_server").display().to_string()),
    ]
}

/// Variables from the developer's shell that would point the servers or functions at a
/// real account or another endpoint.
const SCRUBBED_ENV: &[&str] = &[
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
    "AWS_ENDPOINT_URL_SERVICE_QUOTAS",
    "AWS_ENDPOINT_URL_CLOUDWATCH",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_EVENTBRIDGE",
    "AWS_ENDPOINT_URL_BEDROCK",
    "AWS_ENDPOINT_URL_SQS",
];

pub fn scrub_aws_env(command: &mut Command) -> &mut Command {
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    command
}

pub fn cargo() -> Command {
    // The cargo that runs xtask, so that the same toolchain builds the servers.
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

#[derive(Debug, Clone)]
pub struct StackOptions {
    pub emulator_config: Option<PathBuf>,
    /// Function instances `cargo lambda watch` may run side by side.
    pub lambda_concurrency: usize,
    /// Interactive use rebuilds on code changes and shows server output in the terminal;
    /// demo and test keep the code fixed and send output to log files.
    pub interactive: bool,
}

#[derive(Debug)]
pub struct Stack {
    options: StackOptions,
    supervisor: Supervisor,
    pub moto_url: Option<String>,
    pub emulator_url: Option<String>,
    /// The emulator's Service Quotas endpoint.
    pub service_quotas_url: Option<String>,
    /// The emulator's CloudWatch endpoint.
    pub cloudwatch_url: Option<String>,
    pub lambda_port: Option<u16>,
    /// The event-driven functions' queues, installed by [`Stack::create_batch_plumbing`].
    pub event_routes: Vec<events::Route>,
    pump: Option<Pump>,
}

impl Stack {
    pub fn new(options: StackOptions) -> Self {
        Self {
            options,
            supervisor: Supervisor::default(),
            moto_url: None,
            emulator_url: None,
            service_quotas_url: None,
            cloudwatch_url: None,
            lambda_port: None,
            event_routes: Vec::new(),
            pump: None,
        }
    }

    /// Everything `stack` and `demo` need, in dependency order.
    pub fn start(options: StackOptions) -> Result<Self> {
        let mut stack = Self::new(options);
        build_binaries()?;
        stack.start_moto()?;
        stack.create_cache_table()?;
        stack.create_budget_table()?;
        stack.create_batch_table()?;
        stack.create_usage_table()?;
        stack.create_batch_plumbing()?;
        stack.start_emulator()?;
        stack.start_lambda()?;
        stack.start_pump(None)?;
        Ok(stack)
    }

    fn output_for(&self, name: &str, always_log: bool) -> Output {
        if self.options.interactive && !always_log {
            Output::Inherit
        } else {
            Output::Log(paths::logs_dir().join(format!("{name}.log")))
        }
    }

    pub fn start_moto(&mut self) -> Result<String> {
        let port = http::free_port()?;
        let mut command = Command::new(tools::MOTO.bin("moto_server"));
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        scrub_aws_env(&mut command);
        // moto logs every request; that would drown the function's own logs.
        let output = self.output_for("moto", true);
        self.supervisor.spawn("moto", command, &output)?;
        let url = format!("http://127.0.0.1:{port}");
        // Any HTTP answer means Flask is serving; moto's dashboard route answers 200.
        http::wait_until_ready(
            &mut self.supervisor,
            "moto",
            &format!("{url}/moto-api/"),
            Duration::from_secs(90),
            |status| status == 200 || status == 404,
        )?;
        println!("stack: moto listening on {url}");
        self.moto_url = Some(url.clone());
        Ok(url)
    }

    pub fn create_cache_table(&self) -> Result<()> {
        let moto = self.moto_url.as_deref().ok_or("moto is not running")?;
        let template_path = paths::repo_root().join("template.yaml");
        let template = template::load_template(&template_path)?;
        let properties = template::cache_table_properties(&template)?;
        let create = template::create_table_request(properties, LOCAL_TABLE_NAME)?;
        let ttl = template::update_ttl_request(properties, LOCAL_TABLE_NAME)?;
        dynamo::create_table(moto, &create, ttl.as_ref())?;
        println!("stack: created table {LOCAL_TABLE_NAME} from template.yaml (CacheTable)");
        Ok(())
    }

    /// Admission's lease table, from the same template resource SAM deploys.
    pub fn create_budget_table(&self) -> Result<()> {
        let moto = self.moto_url.as_deref().ok_or("moto is not running")?;
        let template = template::load_template(&paths::repo_root().join("template.yaml"))?;
        let properties = template::table_properties(&template, template::BUDGET_TABLE_LOGICAL_ID)?;
        let create = template::create_table_request(properties, LOCAL_BUDGET_TABLE_NAME)?;
        let ttl = template::update_ttl_request(properties, LOCAL_BUDGET_TABLE_NAME)?;
        dynamo::create_table(moto, &create, ttl.as_ref())?;
        println!("stack: created table {LOCAL_BUDGET_TABLE_NAME} from template.yaml (BudgetTable)");
        Ok(())
    }

    /// The usage records and the metrics publisher's progress, from template.yaml.
    pub fn create_usage_table(&self) -> Result<()> {
        let moto = self.moto_url.as_deref().ok_or("moto is not running")?;
        let template = template::load_template(&paths::repo_root().join("template.yaml"))?;
        let properties = template::table_properties(&template, template::USAGE_TABLE_LOGICAL_ID)?;
        let create = template::create_table_request(properties, LOCAL_USAGE_TABLE_NAME)?;
        let ttl = template::update_ttl_request(properties, LOCAL_USAGE_TABLE_NAME)?;
        dynamo::create_table(moto, &create, ttl.as_ref())?;
        println!("stack: created table {LOCAL_USAGE_TABLE_NAME} from template.yaml (UsageTable)");
        Ok(())
    }

    /// The bucket, and the queues and EventBridge rules of every event-driven function, from
    /// template.yaml.
    pub fn create_batch_plumbing(&mut self) -> Result<()> {
        let moto = self.moto_url.clone().ok_or("moto is not running")?;
        let template = template::load_template(&paths::repo_root().join("template.yaml"))?;
        events::create_bucket(&moto, events::LOCAL_BATCH_BUCKET)?;
        let bindings = events::bindings(&template, &[("BatchBucket", events::LOCAL_BATCH_BUCKET)]);
        self.event_routes = events::install_rules(&moto, &template, &bindings, EVENT_FUNCTIONS)?;
        let rules: usize = self.event_routes.iter().map(|r| r.rules.len()).sum();
        println!(
            "stack: created bucket {}, {rules} EventBridge rules from template.yaml each targeting an SQS queue, \
             and {} schedules",
            events::LOCAL_BATCH_BUCKET,
            self.event_routes.iter().filter(|r| r.schedule.is_some()).count()
        );
        Ok(())
    }

    /// Starts handing queued events to the functions; `schedule_every` overrides the
    /// template's schedules (the demo's planner cannot wait a minute per round).
    pub fn start_pump(&mut self, schedule_every: Option<Duration>) -> Result<()> {
        if let Some(mut pump) = self.pump.take() {
            pump.stop();
        }
        let moto = self.moto_url.clone().ok_or("moto is not running")?;
        let port = self.lambda_port.ok_or("cargo lambda watch is not running")?;
        let log = paths::logs_dir().join("event-pump.log");
        fs::create_dir_all(paths::logs_dir())?;
        let pump = Pump::start(&moto, port, self.event_routes.clone(), schedule_every, events::open_log(&log)?);
        println!(
            "stack: delivering EventBridge events from SQS to {} (log {})",
            EVENT_FUNCTIONS.join(", "),
            log.display()
        );
        self.pump = Some(pump);
        Ok(())
    }

    pub fn pump_counts(&self) -> Option<&events::PumpCounts> {
        self.pump.as_ref().map(|p| p.counts.as_ref())
    }

    /// The batch pipeline's table, with its indexes, from the same template resource.
    pub fn create_batch_table(&self) -> Result<()> {
        let moto = self.moto_url.as_deref().ok_or("moto is not running")?;
        let template = template::load_template(&paths::repo_root().join("template.yaml"))?;
        let properties = template::table_properties(&template, template::BATCH_TABLE_LOGICAL_ID)?;
        let create = template::create_table_request(properties, LOCAL_BATCH_TABLE_NAME)?;
        let ttl = template::update_ttl_request(properties, LOCAL_BATCH_TABLE_NAME)?;
        dynamo::create_table(moto, &create, ttl.as_ref())?;
        println!("stack: created table {LOCAL_BATCH_TABLE_NAME} from template.yaml (BatchTable)");
        Ok(())
    }

    pub fn start_emulator(&mut self) -> Result<String> {
        let port = http::free_port()?;
        let quotas_port = http::free_port()?;
        let cloudwatch_port = http::free_port()?;
        let binary = paths::target_dir().join("debug").join(EMULATOR_BINARY);
        let mut command = Command::new(&binary);
        command.args(["--addr", &format!("127.0.0.1:{port}")]);
        command.args(["--service-quotas-addr", &format!("127.0.0.1:{quotas_port}")]);
        command.args(["--cloudwatch-addr", &format!("127.0.0.1:{cloudwatch_port}")]);
        if let Some(config) = &self.options.emulator_config {
            command.arg("--config").arg(config);
        }
        command.current_dir(paths::repo_root());
        scrub_aws_env(&mut command);
        // Batch jobs read their input from and write their output to S3, and announce their
        // states on EventBridge: locally both are moto's.
        if let Some(moto) = &self.moto_url {
            command.env("AWS_ENDPOINT_URL_S3", moto).env("AWS_ENDPOINT_URL_EVENTBRIDGE", moto);
        }
        let output = self.output_for("bedrock-emulator", false);
        self.supervisor.spawn("bedrock-emulator", command, &output)?;
        let url = format!("http://127.0.0.1:{port}");
        http::wait_until_ready(
            &mut self.supervisor,
            "bedrock-emulator",
            &format!("{url}/_emulator/health"),
            Duration::from_secs(30),
            |status| status == 200,
        )?;
        println!(
            "stack: bedrock-emulator listening on {url}, Service Quotas on port {quotas_port}, CloudWatch on port {cloudwatch_port}"
        );
        self.emulator_url = Some(url.clone());
        self.service_quotas_url = Some(format!("http://127.0.0.1:{quotas_port}"));
        self.cloudwatch_url = Some(format!("http://127.0.0.1:{cloudwatch_port}"));
        Ok(url)
    }

    pub fn start_lambda(&mut self) -> Result<u16> {
        let moto = self.moto_url.clone().ok_or("moto is not running")?;
        let emulator = self.emulator_url.clone().ok_or("the Bedrock emulator is not running")?;
        let quotas = self.service_quotas_url.clone().ok_or("the Bedrock emulator is not running")?;
        let cloudwatch = self.cloudwatch_url.clone().ok_or("the Bedrock emulator is not running")?;
        let env_file = write_env_file(&function_env(&moto, &emulator, &quotas, &cloudwatch))?;
        let port = http::free_port()?;
        let mut command = cargo();
        command
            .args(["lambda", "watch", "--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            .arg("--env-file")
            .arg(&env_file)
            .args(["--concurrency", &self.options.lambda_concurrency.max(1).to_string()]);
        if !self.options.interactive {
            command.arg("--ignore-changes");
        }
        command.current_dir(paths::repo_root()).env("PATH", tools::path_with(&[tools::CARGO_LAMBDA.bin_dir()]));
        scrub_aws_env(&mut command);
        let output = self.output_for("cargo-lambda-watch", false);
        self.supervisor.spawn("cargo-lambda-watch", command, &output)?;
        http::wait_for_port(&mut self.supervisor, "cargo lambda watch", port, Duration::from_secs(60))?;
        println!("stack: cargo lambda watch listening on 127.0.0.1:{port}");
        self.lambda_port = Some(port);
        Ok(port)
    }

    pub fn function_url(&self, function: &str, path: &str) -> Option<String> {
        self.lambda_port.map(|port| format!("http://127.0.0.1:{port}/lambda-url/{function}{path}"))
    }

    /// `POST /v1/route` of the router function.
    pub fn router_url(&self) -> Option<String> {
        self.function_url(ROUTER_FUNCTION_NAME, "/v1/route")
    }

    pub fn log_of(&self, name: &str) -> Option<PathBuf> {
        self.supervisor.log_of(name)
    }

    pub fn check_running(&mut self) -> Result<()> {
        self.supervisor.check_running()
    }

    pub fn print_endpoints(&self) {
        println!();
        println!("Local stack is up:");
        if let Some(moto) = &self.moto_url {
            println!("  DynamoDB (moto)     {moto}   table {LOCAL_TABLE_NAME}");
        }
        if let Some(emulator) = &self.emulator_url {
            println!("  Bedrock emulator    {emulator}");
            println!("  emulator stats      {emulator}/_emulator/stats");
        }
        if let Some(cloudwatch) = &self.cloudwatch_url {
            println!(
                "  CloudWatch          {cloudwatch}   (CLOUDWATCH_EMULATOR_URL={cloudwatch} cargo xtask dashboard)"
            );
        }
        if let Some(url) = self.function_url(FUNCTION_NAME, "/v1/converse") {
            println!("  {FUNCTION_NAME}   {url}");
            println!();
            println!("Try:");
            println!(
                "  curl -si {url} -H 'content-type: application/json' -H 'x-tenant-id: demo' \\\n    \
                 -d '{{\"modelId\":\"haiku\",\"messages\":[{{\"role\":\"user\",\"content\":[{{\"text\":\"Name three uses of a cache.\"}}]}}],\"inferenceConfig\":{{\"maxTokens\":300,\"temperature\":0}}}}'"
            );
            println!("  (run it twice: the second answer carries `x-cache: HIT`)");
        }
        if let Some(url) = self.function_url(STREAM_FUNCTION_NAME, "/v1/converse-stream") {
            let base = self.function_url(STREAM_FUNCTION_NAME, "/v1").unwrap_or_default();
            println!();
            println!("  {STREAM_FUNCTION_NAME}       {url}");
            println!(
                "  curl -sN {url} -H 'content-type: application/json' -H 'x-tenant-id: demo' \\\n    \
                 -d '{{\"modelId\":\"haiku\",\"messages\":[{{\"role\":\"user\",\"content\":[{{\"text\":\"Name three uses of a cache.\"}}]}}]}}'"
            );
            println!(
                "  OpenAI and Anthropic SDKs: base_url={base}  (chat.completions, messages, models; stream or not)"
            );
        }
        if let Some(url) = self.router_url() {
            println!();
            println!("  {ROUTER_FUNCTION_NAME}              {url}");
            println!(
                "  curl -si {url} -H 'content-type: application/json' -H 'x-route-max-tier: sonnet' \\\n    \
                 -d '{{\"modelId\":\"auto\",\"messages\":[{{\"role\":\"user\",\"content\":[{{\"text\":\"Name three uses of a cache.\"}}]}}]}}'"
            );
            println!(
                "  (the routing decision only: tier, model, adequacy and expected cost per tier; no model is called)"
            );
        }
        println!();
    }

    /// Blocks until Ctrl-C; a server that dies ends the wait with an error.
    pub fn wait_until_interrupted(&mut self) -> Result<()> {
        while !interrupted() {
            self.supervisor.check_running()?;
            // An interrupt arriving mid-sleep is the expected way out of this loop.
            if sleep_interruptibly(Duration::from_millis(300)).is_err() {
                break;
            }
        }
        println!("\nstack: stopping ...");
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut pump) = self.pump.take() {
            pump.stop();
        }
        self.supervisor.shutdown();
    }
}

/// `cargo build` of the emulator and every function binary, one cargo invocation so the
/// shared dependencies are built once.
pub fn build_binaries() -> Result<()> {
    let mut command = cargo();
    command.arg("build").current_dir(paths::repo_root());
    command.args(["--bin", EMULATOR_BINARY, "--bin", FUZZ_BINARY, "--bin", crate::bench_quota::QUOTA_LOAD_BINARY]);
    for function in FUNCTION_BINARIES {
        command.args(["--bin", function]);
    }
    run_checked(&mut command)
}

/// `cargo lambda watch --env-var` splits values on commas, so a file is the robust way to
/// pass the environment.
fn write_env_file(env: &[(&str, String)]) -> Result<PathBuf> {
    let dir = paths::logs_dir();
    fs::create_dir_all(&dir)?;
    let path = dir.join("functions.env");
    fs::write(&path, env_file_contents(env))?;
    Ok(path)
}

pub fn env_file_contents(env: &[(&str, String)]) -> String {
    // The env-file parser refuses an `=` in an unquoted value (`CALIBRATION_TENANTS=a=1`);
    // single quotes take the value as it is.
    env.iter()
        .map(|(key, value)| if value.contains('=') { format!("{key}='{value}'\n") } else { format!("{key}={value}\n") })
        .collect()
}

/// `tests/emulator-test.toml`, when the emulator's fast test profile exists.
pub fn emulator_test_config() -> Option<PathBuf> {
    let path = paths::repo_root().join(EMULATOR_TEST_CONFIG);
    path.is_file().then_some(path)
}

pub fn run_until_interrupted(emulator_config: Option<PathBuf>) -> Result<()> {
    tools::ensure(&[tools::MOTO, tools::CARGO_LAMBDA])?;
    let emulator_config = emulator_config.map(|p| absolute(&p));
    let mut stack = Stack::start(StackOptions { emulator_config, lambda_concurrency: 4, interactive: true })?;
    stack.print_endpoints();
    println!("Press Ctrl-C to stop.");
    stack.wait_until_interrupted()?;
    stack.stop();
    Ok(())
}

pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|dir| dir.join(path)).unwrap_or_else(|_| path.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_are_pointed_at_the_local_servers() {
        let env = function_env("http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3", "http://127.0.0.1:4");
        let get = |key: &str| env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str());
        assert_eq!(get("AWS_ENDPOINT_URL_DYNAMODB"), Some("http://127.0.0.1:1"));
        assert_eq!(get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME"), Some("http://127.0.0.1:2"));
        assert_eq!(get("AWS_ENDPOINT_URL_SERVICE_QUOTAS"), Some("http://127.0.0.1:3"));
        assert_eq!(get("AWS_ENDPOINT_URL_CLOUDWATCH"), Some("http://127.0.0.1:4"));
        assert_eq!((get("ADMISSION"), get("QUOTA_SOURCE")), (Some("on"), Some("service-quotas")));
        assert_eq!(get("CACHE_TABLE_NAME"), Some(LOCAL_TABLE_NAME));
        assert_eq!(get("BATCH_TABLE_NAME"), Some(LOCAL_BATCH_TABLE_NAME));
        assert_eq!(get("TRUST_TENANT_HEADER"), Some("true"));
        assert!(env_file_contents(&env).contains("AWS_REGION=us-east-1\n"));
        assert!(env_file_contents(&env).contains(&format!("CALIBRATION_TENANTS='{LOCAL_CALIBRATION_TENANT}=1'\n")));
    }
}
