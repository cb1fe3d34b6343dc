//! Service Quotas: the account's applied Bedrock limits, read once per cold start.
//!
//! `ListServiceQuotas` for service code `bedrock` lists every quota of the service by name;
//! the names are matched to catalog models and scopes by [`crate::quota::names`]. The read
//! is bounded by one timeout for all its pages, and a failure never fails the cold start:
//! the gateway then plans against the catalog and the overrides, and says so in the log.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::timeout::TimeoutConfig;

use crate::catalog::Catalog;
use crate::quota::DetectedLimit;
use crate::quota::names::parse_quota_name;

const SERVICE_CODE: &str = "bedrock";
/// Bedrock has a few hundred quotas at 100 a page; a server that keeps returning tokens past
/// this is misbehaving, and the read stops rather than loop.
const MAX_PAGES: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum ServiceQuotasError {
    #[error("ListServiceQuotas failed: {0}")]
    Call(String),
    #[error("ListServiceQuotas did not finish within {0:?}")]
    Timeout(Duration),
    #[error("ListServiceQuotas returned more than {MAX_PAGES} pages")]
    TooManyPages,
}

/// One quota as Service Quotas lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedQuota {
    pub code: String,
    pub name: String,
    pub value: f64,
}

/// The Service Quotas client, its own timeouts a backstop under the read's overall one.
pub fn service_quotas_client(sdk: &SdkConfig, timeout: Duration) -> aws_sdk_servicequotas::Client {
    let config = aws_sdk_servicequotas::config::Builder::from(sdk)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeout.min(Duration::from_secs(1)))
                .operation_attempt_timeout(timeout)
                .operation_timeout(timeout)
                .build(),
        )
        .build();
    aws_sdk_servicequotas::Client::from_conf(config)
}

/// Every quota of service `bedrock`, all pages, within `timeout`.
pub async fn list_bedrock_quotas(
    client: &aws_sdk_servicequotas::Client,
    timeout: Duration,
) -> Result<Vec<ListedQuota>, ServiceQuotasError> {
    tokio::time::timeout(timeout, list_pages(client)).await.map_err(|_| ServiceQuotasError::Timeout(timeout))?
}

async fn list_pages(client: &aws_sdk_servicequotas::Client) -> Result<Vec<ListedQuota>, ServiceQuotasError> {
    let mut listed = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = client
            .list_service_quotas()
            .service_code(SERVICE_CODE)
            .max_results(100)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| ServiceQuotasError::Call(aws_sdk_servicequotas::error::DisplayErrorContext(e).to_string()))?;
        for quota in page.quotas() {
            if let (Some(code), Some(name), Some(value)) = (quota.quota_code(), quota.quota_name(), quota.value()) {
                listed.push(ListedQuota { code: code.to_owned(), name: name.to_owned(), value });
            }
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => return Ok(listed),
        }
    }
    Err(ServiceQuotasError::TooManyPages)
}

/// The listed quotas that are per-minute limits of catalog models. A value below 1 (Service
/// Quotas reports 0 where a model is not available) is left out rather than block every
/// call; where two names mean the same limit (old and new generations), the lower wins.
pub fn detected_limits<'c>(catalog: &'c Catalog, listed: &[ListedQuota]) -> Vec<DetectedLimit<'c>> {
    let mut lowest: BTreeMap<(&str, _, _), DetectedLimit<'c>> = BTreeMap::new();
    for quota in listed {
        let Some(name) = parse_quota_name(catalog, &quota.name) else {
            continue;
        };
        if !quota.value.is_finite() || quota.value < 1.0 {
            tracing::warn!(quota = %quota.name, code = %quota.code, value = quota.value, "ignoring a quota below 1");
            continue;
        }
        // Float to integer saturates; quota values are whole numbers well inside u64.
        let value = quota.value.floor() as u64;
        let slot = lowest
            .entry((name.spec.model_id.as_str(), name.scope, name.metric))
            .or_insert(DetectedLimit { name, value });
        slot.value = slot.value.min(value);
    }
    lowest.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::{QuotaMetric, QuotaScope};

    fn listed(name: &str, value: f64) -> ListedQuota {
        ListedQuota { code: "L-00000000".into(), name: name.into(), value }
    }

    #[test]
    fn only_per_minute_limits_of_catalog_models_are_kept_and_the_lower_of_two_wins() {
        let catalog = Catalog::embedded().unwrap();
        let detected = detected_limits(
            &catalog,
            &[
                listed("On-demand InvokeModel tokens per minute for Anthropic Claude 3 Haiku", 500_000.0),
                listed("On-demand model inference tokens per minute for Anthropic Claude 3 Haiku", 400_000.0),
                listed("Model invocation max tokens per day for Anthropic Claude Sonnet 4 V1", 10_000_000.0),
                listed("Cross-region model inference requests per minute for Anthropic Claude Haiku 4.5", 0.0),
                listed("Cross-region model inference requests per minute for Anthropic Claude Opus 4.5", 12.7),
                listed("Batch inference job size (in GB)", 5.0),
            ],
        );
        let summary: Vec<_> =
            detected.iter().map(|d| (d.name.spec.key.as_str(), d.name.scope, d.name.metric, d.value)).collect();
        assert_eq!(
            summary,
            vec![
                ("claude-3-haiku", QuotaScope::OnDemand, QuotaMetric::TokensPerMinute, 400_000),
                ("claude-opus-4-5", QuotaScope::CrossRegion, QuotaMetric::RequestsPerMinute, 12),
            ]
        );
    }
}
