//! The request path's sampling stage. For a tenant who opted in, a deterministic share of its
//! distinct prompts is written under the samples prefix; nobody else is ever sampled.
//!
//! The choice is a hash of the tenant and the prompt, not a coin: the same prompt is always
//! sampled or never, so a popular prompt is one sample (one object, written again in place),
//! and the run's share of the tenant's *distinct* prompts is the configured rate. A failed or
//! slow write is logged and counted, never the request's failure; it adds at most
//! [`SAMPLE_WRITE_BUDGET`] to a sampled request and nothing to the others.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::record::{SCHEMA, SampledPrompt, rfc3339};
use super::{CalibrationConfig, Layout, OptIns};
use crate::batch::{BatchError, BatchFiles};
use crate::cache::Tenant;
use crate::request::ConverseRequest;

/// The most a sample write adds to a request.
pub const SAMPLE_WRITE_BUDGET: Duration = Duration::from_millis(250);

/// The one capability sampling needs (an object put), as a shareable object so the gateway
/// holds it without a type parameter.
pub trait SampleWriter: Send + Sync + fmt::Debug {
    fn put<'a>(
        &'a self,
        uri: &'a str,
        body: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<(), BatchError>> + Send + 'a>>;
}

impl<F: BatchFiles + fmt::Debug> SampleWriter for F {
    fn put<'a>(
        &'a self,
        uri: &'a str,
        body: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<(), BatchError>> + Send + 'a>> {
        Box::pin(BatchFiles::write(self, uri, body))
    }
}

/// What the stage did with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampled {
    /// The tenant did not opt in.
    NotOptedIn,
    /// Not text only (tools, images, documents): nothing a run could replay as it was.
    NotEligible,
    /// The hash left it out.
    NotPicked,
    Written,
    /// The write failed or ran out of its budget; logged and counted.
    Failed,
}

#[derive(Debug)]
pub struct Sampler {
    tenants: OptIns,
    layout: Layout,
    writer: Arc<dyn SampleWriter>,
    /// URIs this instance wrote: a popular prompt is written once per instance, not per request.
    recent: Mutex<HashSet<String>>,
    written: AtomicU64,
    failed: AtomicU64,
}

/// How many written URIs an instance remembers before it forgets them all.
const RECENT_LIMIT: usize = 4096;

impl Sampler {
    pub fn new(config: &CalibrationConfig, writer: Arc<dyn SampleWriter>) -> Self {
        Sampler {
            tenants: config.tenants.clone(),
            layout: Layout::new(&config.bucket, &config.prefix),
            writer,
            recent: Mutex::new(HashSet::new()),
            written: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Cheap enough to ask on every request: whether the request could be sampled at all.
    pub fn opted_in(&self, tenant: &Tenant) -> bool {
        self.tenants.rate(tenant).is_some()
    }

    /// The sample object of the request when it is picked: its URI and body.
    pub fn pick(
        &self,
        tenant: &Tenant,
        request: &ConverseRequest,
        now: SystemTime,
    ) -> Result<(String, Vec<u8>), Sampled> {
        let rate = self.tenants.rate(tenant).ok_or(Sampled::NotOptedIn)?;
        if !SampledPrompt::is_text_only(&request.messages, &request.system) {
            return Err(Sampled::NotEligible);
        }
        let sample = SampledPrompt {
            schema: SCHEMA,
            tenant: tenant.as_str().to_owned(),
            sampled_at: rfc3339(now),
            messages: request.messages.clone(),
            system: request.system.clone(),
        };
        let mut hash = Sha256::new();
        for part in [tenant.as_str(), &sample.prompt_cell(), &sample.system_text()] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        let digest = hash.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let draw = (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64;
        if draw >= rate {
            return Err(Sampled::NotPicked);
        }
        let body = serde_json::to_vec(&sample).map_err(|_| Sampled::NotEligible)?;
        Ok((self.layout.sample_uri(tenant, &hex::encode(&digest[..16])), body))
    }

    /// The stage: picks, and writes within [`SAMPLE_WRITE_BUDGET`].
    pub async fn sample(&self, tenant: &Tenant, request: &ConverseRequest, now: SystemTime) -> Sampled {
        match self.pick(tenant, request, now) {
            Ok((uri, body)) => self.write(uri, body).await,
            Err(skipped) => skipped,
        }
    }

    /// Writes a picked sample within [`SAMPLE_WRITE_BUDGET`], unless this instance already did.
    pub async fn write(&self, uri: String, body: Vec<u8>) -> Sampled {
        if self.remembered(&uri) {
            return Sampled::Written;
        }
        let outcome = match tokio::time::timeout(SAMPLE_WRITE_BUDGET, self.writer.put(&uri, body)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err((e.label(), e.to_string())),
            Err(_) => Err((crate::label::ErrorLabel::Timeout, "no answer within the sample budget".to_owned())),
        };
        match outcome {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::Relaxed);
                self.remember(uri);
                Sampled::Written
            }
            Err((label, error)) => {
                let failed = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(kind = label.as_str(), error, failed, "calibration sample not written");
                Sampled::Failed
            }
        }
    }

    fn remembered(&self, uri: &str) -> bool {
        self.recent.lock().map(|recent| recent.contains(uri)).unwrap_or(false)
    }

    fn remember(&self, uri: String) {
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() >= RECENT_LIMIT {
                recent.clear();
            }
            recent.insert(uri);
        }
    }

    /// Samples written by this instance (a prompt already written counts once).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}
