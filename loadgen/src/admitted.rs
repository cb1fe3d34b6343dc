//! The `admission` strategy: every call goes through the gateway's shared admission first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_config::retry::RetryConfig;
use gateway_core::adapters::budget::DynamoBudgetStore;
use gateway_core::admission::{Admission, AdmissionSettings, Ask, Limit};
use gateway_core::catalog::{ModelSpec, Quota, Scope};
use gateway_core::deadline::Deadline;
use gateway_core::quota::QuotaKey;

use crate::sdk::{CallError, converse};
use crate::summary::{Outcome, Record};
use crate::{Job, unix_ms};

/// After Bedrock throttles a call made under a permit (a settlement ran over its estimate),
/// the caller backs off this long before asking admission again.
const THROTTLED_BACKOFF: Duration = Duration::from_millis(200);
/// The tenant every request of the load belongs to.
const TENANT: &str = "loadgen";

/// What `quota-load` was told about the budget.
#[derive(Debug, Clone)]
pub struct BudgetArgs {
    pub dynamodb_url: String,
    pub table: String,
    pub limits: Quota,
    pub settings: AdmissionSettings,
}

#[derive(Debug)]
pub struct AdmittedCaller {
    admission: Admission<DynamoBudgetStore>,
    client: aws_sdk_bedrockruntime::Client,
    key: QuotaKey,
    model: String,
    spec: Arc<ModelSpec>,
    /// A call may hold its reservation no longer than admission's settings allow.
    max_call: Duration,
}

impl AdmittedCaller {
    pub async fn new(
        budget: BudgetArgs,
        bedrock_url: &str,
        model: String,
        spec: Arc<ModelSpec>,
        scope: Scope,
        instance: String,
        max_call: Duration,
    ) -> AdmittedCaller {
        let key = QuotaKey::new(&spec.model_id, scope);
        let sdk = crate::sdk::sdk_loader(&budget.dynamodb_url).load().await;
        let dynamodb_config = aws_sdk_dynamodb::config::Builder::from(&sdk)
            // Admission bounds every store call itself and degrades when one fails.
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .build();
        let store = DynamoBudgetStore::new(aws_sdk_dynamodb::Client::from_conf(dynamodb_config), budget.table);
        let limits = BTreeMap::from([(key.clone(), budget.limits)]);
        let admission = Admission::new(store, budget.settings, limits, instance);
        // Admission decided the call may go; a retry inside the SDK would be a second call it
        // did not admit.
        let client = crate::sdk::bedrock(bedrock_url, RetryConfig::standard().with_max_attempts(1), max_call).await;
        AdmittedCaller { admission, client, key, model, spec, max_call }
    }

    /// Budget-store operations and the writes among them.
    pub fn store_ops(&self) -> (u64, u64) {
        (self.admission.store_ops(), self.admission.store_writes())
    }

    /// Asks, waits out refusals and throttles, and calls, until answered or out of patience.
    pub async fn send(&self, job: &Job, mut record: Record) -> Record {
        let give_up = job.scheduled + job.patience;
        // Bedrock may settle up to `input + burndown × maxTokens`; the ask covers that.
        let tokens = job.input_tokens + job.prompt.max_tokens * u64::from(self.spec.output_burndown);
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                record.outcome = Outcome::LostTimeout;
                record.error.get_or_insert_with(|| "patience".to_owned());
                return record;
            }
            let ask = Ask { key: &self.key, tenant: TENANT, tokens, deadline: Deadline::after(left) };
            let permit = match self.admission.admit(ask).await {
                Ok(permit) => permit,
                Err(refusal) => {
                    record.refusals += 1;
                    record.error = Some(format!("refused_{}", refusal.limit.as_str()));
                    if refusal.limit == Limit::TooLarge {
                        record.outcome = Outcome::LostError;
                        return record;
                    }
                    let pause = refusal.retry_after.max(Duration::from_millis(1));
                    tokio::time::sleep(pause.min(give_up.saturating_duration_since(Instant::now()))).await;
                    continue;
                }
            };
            let admitted_unix_ms = unix_ms(SystemTime::now());
            record.calls += 1;
            let left = give_up.saturating_duration_since(Instant::now()).min(self.max_call);
            let called = tokio::time::timeout(left, converse(&self.client, &self.model, job)).await;
            match called {
                Ok(Ok(usage)) => {
                    let report = permit.settle(self.spec.quota_tokens(&usage));
                    record.outcome = Outcome::Answered;
                    record.settled_tokens = report.settled_tokens.unwrap_or(0);
                    record.mode = Some(report.mode.as_str().to_owned());
                    record.admitted_unix_ms = Some(admitted_unix_ms);
                    record.error = None;
                    return record;
                }
                Ok(Err(error)) => {
                    // Dropping the permit unsettled returns the reservation: the call consumed nothing.
                    drop(permit);
                    record.error = Some(error.label().to_owned());
                    if error == CallError::Throttled {
                        record.throttled_calls += 1;
                    }
                    tokio::time::sleep(THROTTLED_BACKOFF.min(give_up.saturating_duration_since(Instant::now()))).await;
                }
                Err(_) => {
                    drop(permit);
                    record.outcome = Outcome::LostTimeout;
                    record.error = Some(CallError::Timeout.label().to_owned());
                    return record;
                }
            }
        }
    }
}
