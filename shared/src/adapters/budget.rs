//! [`BudgetStore`] over `aws-sdk-dynamodb`.
//!
//! One item per quota: `pk` = `quota#<canonical ID>` (the ID Bedrock is called with),
//! `version` (number, the optimistic-concurrency check), `leases` (a map from instance ID to
//! a map of `tokens`, `requests`, `expiresAtMs`, `demandTokens`, `demandRequests`). Items are
//! never deleted: expired leases are dropped by the next write, so the table needs no TTL.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use crate::admission::{BudgetError, BudgetStore, Lease, LeaseBook, Saved};
use crate::quota::QuotaKey;

const PK: &str = "pk";
const VERSION: &str = "version";
const LEASES: &str = "leases";
const PREFIX: &str = "quota#";

#[derive(Debug, Clone)]
pub struct DynamoBudgetStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoBudgetStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table_name: String) -> Self {
        DynamoBudgetStore { client, table: table_name }
    }
}

fn pk(key: &QuotaKey) -> AttributeValue {
    AttributeValue::S(format!("{PREFIX}{key}"))
}

fn classify<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(error: SdkError<E>) -> BudgetError {
    let timed_out = match &error {
        SdkError::TimeoutError(_) => true,
        SdkError::DispatchFailure(failure) => failure.is_timeout(),
        _ => false,
    };
    let detail = match error.code() {
        Some(code) => format!("{code}: {}", error.message().unwrap_or("")),
        None => error.to_string(),
    };
    if timed_out {
        return BudgetError::Store(format!("the DynamoDB client gave up: {detail}"));
    }
    match error.code() {
        Some("ProvisionedThroughputExceededException" | "RequestLimitExceeded" | "ThrottlingException") => {
            BudgetError::Throttled(detail)
        }
        _ => BudgetError::Store(detail),
    }
}

fn number(map: &HashMap<String, AttributeValue>, name: &str) -> Result<u64, BudgetError> {
    map.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| BudgetError::Corrupt(format!("attribute `{name}` is missing or not a whole number")))
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn decode(item: &HashMap<String, AttributeValue>) -> Result<LeaseBook, BudgetError> {
    let version = number(item, VERSION)?;
    let leases = item
        .get(LEASES)
        .and_then(|v| v.as_m().ok())
        .ok_or_else(|| BudgetError::Corrupt(format!("attribute `{LEASES}` is missing or not a map")))?;
    let leases = leases
        .iter()
        .map(|(instance, lease)| {
            let lease =
                lease.as_m().map_err(|_| BudgetError::Corrupt(format!("the lease of `{instance}` is not a map")))?;
            Ok((
                instance.clone(),
                Lease {
                    tokens: number(lease, "tokens")?,
                    requests: number(lease, "requests")?,
                    expires_at_ms: number(lease, "expiresAtMs")?,
                    demand_tokens: number(lease, "demandTokens")?,
                    demand_requests: number(lease, "demandRequests")?,
                },
            ))
        })
        .collect::<Result<BTreeMap<_, _>, BudgetError>>()?;
    Ok(LeaseBook { version, leases })
}

fn encode(lease: &Lease) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("tokens".to_owned(), n(lease.tokens)),
        ("requests".to_owned(), n(lease.requests)),
        ("expiresAtMs".to_owned(), n(lease.expires_at_ms)),
        ("demandTokens".to_owned(), n(lease.demand_tokens)),
        ("demandRequests".to_owned(), n(lease.demand_requests)),
    ]))
}

impl BudgetStore for DynamoBudgetStore {
    async fn load(&self, key: &QuotaKey) -> Result<LeaseBook, BudgetError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, pk(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        output.item.as_ref().map_or(Ok(LeaseBook::default()), decode)
    }

    async fn save(&self, key: &QuotaKey, book: &LeaseBook) -> Result<Saved, BudgetError> {
        let leases = book.leases.iter().map(|(instance, lease)| (instance.clone(), encode(lease))).collect();
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, pk(key))
            .item(VERSION, n(book.version))
            .item(LEASES, AttributeValue::M(leases));
        let request = match book.version.checked_sub(1) {
            // DynamoDB refuses names the expression does not use, so each branch names its own.
            None | Some(0) => {
                request.condition_expression("attribute_not_exists(#pk)").expression_attribute_names("#pk", PK)
            }
            Some(expected) => request
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_values(":expected", n(expected)),
        };
        match request.send().await {
            Ok(_) => Ok(Saved::Written),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(Saved::Conflict),
            Err(e) => Err(classify(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_book_survives_the_item_codec() {
        let book = LeaseBook {
            version: 7,
            leases: BTreeMap::from([(
                "i-1".to_owned(),
                Lease {
                    tokens: 10,
                    requests: 2,
                    expires_at_ms: 1_700_000_000_000,
                    demand_tokens: 5,
                    demand_requests: 1,
                },
            )]),
        };
        let item = HashMap::from([
            (VERSION.to_owned(), n(book.version)),
            (LEASES.to_owned(), AttributeValue::M(book.leases.iter().map(|(i, l)| (i.clone(), encode(l))).collect())),
        ]);
        assert_eq!(decode(&item).unwrap(), book);
        let broken = HashMap::from([(VERSION.to_owned(), AttributeValue::S("x".into()))]);
        assert!(matches!(decode(&broken), Err(BudgetError::Corrupt(m)) if m.contains("version")));
    }
}
