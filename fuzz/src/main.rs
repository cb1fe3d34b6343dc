//! `gateway-fuzz`: the seeded, time-bounded mutation fuzzer `cargo xtask fuzz` and
//! `cargo xtask test` run. In-process targets run under `catch_unwind`; the `http` target
//! drives the functions of a running `cargo lambda watch`.
//!
//! Every failure is saved under `<failures-dir>/<target>/<hash>` and printed with the
//! command that replays it.

mod corpus;
mod http;
mod json;
mod mutate;
mod targets;

use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use gateway_core::splitmix::SplitMix64;
use sha2::{Digest, Sha256};

use crate::corpus::Corpus;
use crate::http::HttpFuzz;
use crate::targets::{Harness, Target};

/// An in-process input taking this long is a hang: every target is linear in its input.
const HANG_BOUND: Duration = Duration::from_secs(10);
/// After this many failures a target stops: the first few say all there is to say.
const MAX_FAILURES_PER_TARGET: u64 = 5;
/// Grown from inputs that still parse, so mutations reach deeper than one step from a seed.
const POOL_LIMIT: usize = 1024;

#[derive(Debug, Parser)]
#[command(name = "gateway-fuzz", about = "Mutation fuzzing of the gateway's parsers, codecs and functions")]
struct Args {
    /// Time budget, shared equally by the targets of this run.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seed of the run (default: the clock). Each target derives its own stream from it.
    #[arg(long)]
    seed: Option<u64>,
    /// Targets to run: request, cache, routing, eventstream, http (default: the four
    /// in-process ones).
    #[arg(long = "target")]
    targets: Vec<String>,
    /// Directory of API Gateway events whose bodies join the seed corpus.
    #[arg(long)]
    events: Option<PathBuf>,
    /// Where failing inputs are saved.
    #[arg(long, default_value = "target/fuzz-failures")]
    failures_dir: PathBuf,
    /// Port of `cargo lambda watch`, for the http target.
    #[arg(long)]
    lambda_port: Option<u16>,
    /// Bound on one HTTP exchange: slower is a hang.
    #[arg(long, default_value_t = 20)]
    http_timeout_seconds: u64,
    /// Runs one saved input again (its target is the name of its directory).
    #[arg(long)]
    replay: Option<PathBuf>,
    /// How a saved input is replayed, printed with every failure.
    #[arg(long, default_value = "cargo xtask fuzz --replay")]
    replay_command: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    InProcess(Target),
    Http,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::InProcess(target) => target.name(),
            Kind::Http => "http",
        }
    }

    fn from_name(name: &str) -> Option<Kind> {
        if name == "http" { Some(Kind::Http) } else { Target::from_name(name).map(Kind::InProcess) }
    }
}

/// The message and stack of the last panic, kept by the hook for the failure report.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let report = format!("{info}\n{}", std::backtrace::Backtrace::force_capture());
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(report);
        }
    }));
}

fn take_panic() -> String {
    LAST_PANIC.lock().ok().and_then(|mut last| last.take()).unwrap_or_else(|| "a panic".into())
}

#[derive(Debug)]
struct Failures<'a> {
    dir: &'a Path,
    replay_command: &'a str,
}

impl Failures<'_> {
    fn save(&self, kind: Kind, input: &[u8], reason: &str) {
        let digest = Sha256::digest(input);
        let dir = self.dir.join(kind.name());
        let path = dir.join(hex::encode(&digest[..8]));
        let saved = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input));
        println!("fuzz: FAILURE in {}: {reason}", kind.name());
        match saved {
            Ok(()) => println!("fuzz: input saved; replay with `{} {}`", self.replay_command, path.display()),
            Err(e) => println!("fuzz: could not save the input to {}: {e}", path.display()),
        }
    }
}

/// What the watchdog sees of the loop: how many inputs are done and the one running now.
#[derive(Debug, Default)]
struct Progress {
    /// Only in-process inputs are timed here; an HTTP exchange has its own bound, and the
    /// warm-up of a function may take longer than any input.
    armed: AtomicBool,
    done: AtomicU64,
    current: Mutex<(String, Vec<u8>)>,
}

fn start_watchdog(progress: Arc<Progress>, failures_dir: PathBuf, replay_command: String) {
    std::thread::spawn(move || {
        let mut last = u64::MAX;
        let mut since = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(250));
            let done = progress.done.load(Ordering::SeqCst);
            if done != last || !progress.armed.load(Ordering::SeqCst) {
                (last, since) = (done, Instant::now());
                continue;
            }
            if since.elapsed() > HANG_BOUND {
                let (target, input) = progress.current.lock().map(|c| c.clone()).unwrap_or_default();
                let kind = Kind::from_name(&target).unwrap_or(Kind::Http);
                let failures = Failures { dir: &failures_dir, replay_command: &replay_command };
                failures.save(kind, &input, &format!("one input ran longer than {HANG_BOUND:?} (a hang)"));
                println!("fuzz-result target={target} inputs={done} failures=1");
                std::process::exit(1);
            }
        }
    });
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    inputs: u64,
    failures: u64,
    /// 502/503/504 from the model side for valid requests: allowed, but worth seeing.
    upstream_errors: u64,
    slowest: Duration,
}

fn run_in_process(
    harness: &Harness,
    target: Target,
    corpus: &Corpus,
    budget: Duration,
    seed: u64,
    progress: &Progress,
    failures: &Failures<'_>,
) -> Tally {
    let mut rng = SplitMix64::new(seed);
    let mut pool: Vec<Vec<u8>> = match target {
        Target::Cache => corpus.responses.iter().chain(&corpus.requests).cloned().collect(),
        _ => corpus.requests.clone(),
    };
    let seeds = pool.len();
    let mut tally = Tally::default();
    let started = Instant::now();
    // The seeds themselves first: a failure on an unmutated seed is the clearest report.
    let mut queue: Vec<Vec<u8>> = pool.clone();
    progress.armed.store(true, Ordering::SeqCst);
    while started.elapsed() < budget && tally.failures < MAX_FAILURES_PER_TARGET {
        let input = queue.pop().unwrap_or_else(|| {
            let seed = pool.get(rng.below(pool.len() as u64) as usize).cloned().unwrap_or_default();
            let donor = pool.get(rng.below(pool.len() as u64) as usize).cloned().unwrap_or_default();
            mutate::mutate(&seed, &donor, &mut rng)
        });
        if let Ok(mut current) = progress.current.lock() {
            current.0.clear();
            current.0.push_str(target.name());
            current.1.clone_from(&input);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| harness.check(target, &input)));
        tally.inputs += 1;
        progress.done.fetch_add(1, Ordering::SeqCst);
        match outcome {
            Ok(Ok(())) => {
                if input.len() < 64 * 1024 && serde_json::from_slice::<serde_json::Value>(&input).is_ok() {
                    if pool.len() < POOL_LIMIT {
                        pool.push(input);
                    } else if rng.below(8) == 0 {
                        let slot = seeds + rng.below((POOL_LIMIT - seeds) as u64) as usize;
                        if let Some(entry) = pool.get_mut(slot) {
                            *entry = input;
                        }
                    }
                }
            }
            Ok(Err(reason)) => {
                tally.failures += 1;
                failures.save(Kind::InProcess(target), &input, &reason);
            }
            Err(_) => {
                tally.failures += 1;
                failures.save(Kind::InProcess(target), &input, &format!("panic: {}", take_panic()));
            }
        }
    }
    progress.armed.store(false, Ordering::SeqCst);
    tally
}

fn run_http(
    fuzz: &HttpFuzz,
    corpus: &Corpus,
    budget: Duration,
    seed: u64,
    progress: &Progress,
    failures: &Failures<'_>,
) -> Tally {
    let mut rng = SplitMix64::new(seed);
    let mut tally = Tally::default();
    let started = Instant::now();
    while started.elapsed() < budget && tally.failures < MAX_FAILURES_PER_TARGET {
        let request = fuzz.generate(&mut rng, &corpus.requests);
        let verdict = fuzz.exchange(&request).and_then(|exchange| {
            tally.slowest = tally.slowest.max(exchange.elapsed);
            if matches!(exchange.status, 502..=504) {
                tally.upstream_errors += 1;
            }
            http::judge(&request, &exchange)
        });
        tally.inputs += 1;
        progress.done.fetch_add(1, Ordering::SeqCst);
        if let Err(reason) = verdict {
            tally.failures += 1;
            failures.save(Kind::Http, &request, &reason);
        }
    }
    tally
}

/// Sends the first request to each function with a generous bound: `cargo lambda watch`
/// starts a function's process on its first invocation.
fn warm_up(fuzz: &HttpFuzz) -> Result<(), String> {
    let warm = HttpFuzz { address: fuzz.address, timeout: Duration::from_secs(120) };
    for (function, path) in
        [("invoke-with-cache", "/v1/converse"), ("invoke-stream", "/v1/converse-stream"), ("router", "/v1/route")]
    {
        let body = r#"{"modelId":"haiku","messages":[{"role":"user","content":[{"text":"warm up"}]}]}"#;
        let request = format!(
            "POST /lambda-url/{function}{path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\nx-tenant-id: fuzz\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            fuzz.address,
            body.len()
        );
        let exchange = warm.exchange(request.as_bytes()).map_err(|e| format!("warm-up of {function}: {e}"))?;
        println!(
            "fuzz: {function} answered the warm-up with {} in {:.1} s",
            exchange.status,
            exchange.elapsed.as_secs_f64()
        );
    }
    Ok(())
}

fn replay(args: &Args, file: &Path, harness: &Harness, http: Option<&HttpFuzz>) -> Result<bool, String> {
    let input = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let name = file.parent().and_then(Path::file_name).and_then(|n| n.to_str()).unwrap_or_default();
    let kind = Kind::from_name(name).ok_or_else(|| {
        format!("{} is not under a target's directory (request, cache, routing, eventstream, http)", file.display())
    })?;
    let verdict = match kind {
        Kind::InProcess(target) => match catch_unwind(AssertUnwindSafe(|| harness.check(target, &input))) {
            Ok(verdict) => verdict,
            Err(_) => Err(format!("panic: {}", take_panic())),
        },
        Kind::Http => {
            let fuzz = http.ok_or("replaying an http input needs --lambda-port")?;
            fuzz.exchange(&input).and_then(|exchange| {
                println!("fuzz: answered {} in {:.2} s", exchange.status, exchange.elapsed.as_secs_f64());
                http::judge(&input, &exchange)
            })
        }
    };
    let _ = args;
    match verdict {
        Ok(()) => {
            println!("fuzz: {} ({}): passes", file.display(), kind.name());
            Ok(true)
        }
        Err(reason) => {
            println!("fuzz: {} ({}): FAILS: {reason}", file.display(), kind.name());
            Ok(false)
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    install_panic_hook();
    let harness = Harness::new()?;
    let http = args.lambda_port.map(|port| HttpFuzz {
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        timeout: Duration::from_secs(args.http_timeout_seconds.max(1)),
    });
    if let Some(file) = &args.replay {
        return replay(args, file, &harness, http.as_ref());
    }
    let kinds: Vec<Kind> = if args.targets.is_empty() {
        Target::ALL.into_iter().map(Kind::InProcess).collect()
    } else {
        args.targets
            .iter()
            .map(|name| {
                Kind::from_name(name)
                    .ok_or_else(|| format!("unknown target `{name}` (request, cache, routing, eventstream, http)"))
            })
            .collect::<Result<_, _>>()?
    };
    let seed = args
        .seed
        .unwrap_or_else(|| SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    let corpus = Corpus::load(args.events.as_deref())?;
    let budget = Duration::from_secs(args.seconds) / kinds.len().max(1) as u32;
    println!(
        "fuzz: seed {seed}, {} s per target, {} seed requests, {} seed answers",
        budget.as_secs_f64(),
        corpus.requests.len(),
        corpus.responses.len()
    );
    let progress = Arc::new(Progress::default());
    start_watchdog(progress.clone(), args.failures_dir.clone(), args.replay_command.clone());
    let failures = Failures { dir: &args.failures_dir, replay_command: &args.replay_command };
    let mut all_passed = true;
    for kind in kinds {
        // Each target draws its own stream, so adding a target never changes another's inputs.
        let target_seed = seed ^ u64::from_le_bytes(Sha256::digest(kind.name())[..8].try_into().unwrap_or_default());
        let started = Instant::now();
        let tally = match kind {
            Kind::InProcess(target) => {
                run_in_process(&harness, target, &corpus, budget, target_seed, &progress, &failures)
            }
            Kind::Http => {
                let fuzz = http.as_ref().ok_or("the http target needs --lambda-port")?;
                warm_up(fuzz)?;
                run_http(fuzz, &corpus, budget, target_seed, &progress, &failures)
            }
        };
        let extra = match kind {
            Kind::Http => {
                format!(", {} upstream 5xx, slowest {:.2} s", tally.upstream_errors, tally.slowest.as_secs_f64())
            }
            Kind::InProcess(_) => String::new(),
        };
        println!(
            "fuzz: {:<11} {:>8} inputs in {:.1} s, {} failures{extra}",
            kind.name(),
            tally.inputs,
            started.elapsed().as_secs_f64(),
            tally.failures
        );
        // For xtask's summary.
        println!("fuzz-result target={} inputs={} failures={}", kind.name(), tally.inputs, tally.failures);
        all_passed &= tally.failures == 0;
    }
    println!("fuzz: seed {seed}; rerun the same inputs with --seed {seed}");
    Ok(all_passed)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("fuzz: error: {error}");
            ExitCode::from(2)
        }
    }
}
