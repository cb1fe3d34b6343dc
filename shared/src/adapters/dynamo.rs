//! [`CacheStore`] over `aws-sdk-dynamodb`.
//!
//! One item per key: `pk` (hex key), `answer` (deflated JSON), `modelId`, `costUsd`,
//! `createdAt` and `expiresAt` (epoch seconds; `expiresAt` is the table's TTL attribute).
//! DynamoDB deletes expired items only eventually (up to days later), so reads check
//! `expiresAt` themselves.
//!
//! Claims live in the same table under `pk` = `claim#<hex key>`, which no entry's key (64
//! hex digits) can equal: `claimToken`, `claimExpiresAtMs` (epoch milliseconds, what claims
//! are judged by) and `expiresAt` (so the table's TTL sweeps claims nobody released).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::cache::{self, CacheEntry, CacheKey};
use crate::ports::{CacheError, CacheStore, Claim, ClaimToken, PutOutcome};

/// DynamoDB's hard limit on one item, attribute names included.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

const PK: &str = "pk";
const ANSWER: &str = "answer";
const MODEL_ID: &str = "modelId";
const COST_USD: &str = "costUsd";
const CREATED_AT: &str = "createdAt";
/// Must match the TTL attribute in template.yaml.
pub const EXPIRES_AT: &str = "expiresAt";
const CLAIM_PREFIX: &str = "claim#";
const CLAIM_TOKEN: &str = "claimToken";
const CLAIM_EXPIRES_AT_MS: &str = "claimExpiresAtMs";

#[derive(Debug, Clone)]
pub struct DynamoCacheStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoCacheStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoCacheStore { client, table: table.into() }
    }
}

fn epoch_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn epoch_millis(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

fn claim_pk(key: &CacheKey) -> String {
    format!("{CLAIM_PREFIX}{}", key.to_hex())
}

fn condition_failed<E: ProvideErrorMetadata>(error: &SdkError<E>) -> bool {
    error.code() == Some("ConditionalCheckFailedException")
}

fn classify<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(error: SdkError<E>) -> CacheError {
    let timed_out = match &error {
        SdkError::TimeoutError(_) => true,
        SdkError::DispatchFailure(failure) => failure.is_timeout(),
        _ => false,
    };
    if timed_out {
        return CacheError::Timeout(format!("the DynamoDB client gave up: {error}"));
    }
    let throttled = matches!(
        error.code(),
        Some("ProvisionedThroughputExceededException" | "RequestLimitExceeded" | "ThrottlingException")
    );
    if throttled { CacheError::Throttled(Box::new(error)) } else { CacheError::Store(Box::new(error)) }
}

fn number<T: std::str::FromStr>(item: &HashMap<String, AttributeValue>, name: &str) -> Result<T, CacheError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| CacheError::Corrupt(format!("attribute `{name}` is missing or not a number")))
}

impl CacheStore for DynamoCacheStore {
    async fn get(&self, key: &CacheKey, now: SystemTime) -> Result<Option<CacheEntry>, CacheError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(key.to_hex()))
            .send()
            .await
            .map_err(classify)?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let expires_at = UNIX_EPOCH + Duration::from_secs(number(&item, EXPIRES_AT)?);
        if expires_at <= now {
            return Ok(None);
        }
        let answer = item
            .get(ANSWER)
            .and_then(|v| v.as_b().ok())
            .ok_or_else(|| CacheError::Corrupt(format!("attribute `{ANSWER}` is missing or not binary")))?;
        let response = cache::decode_response(answer.as_ref()).map_err(|e| CacheError::Corrupt(e.to_string()))?;
        let model_id = item
            .get(MODEL_ID)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| CacheError::Corrupt(format!("attribute `{MODEL_ID}` is missing")))?;
        Ok(Some(CacheEntry {
            key: *key,
            response,
            model_id,
            cost_usd: number(&item, COST_USD)?,
            created_at: UNIX_EPOCH + Duration::from_secs(number(&item, CREATED_AT)?),
            expires_at,
        }))
    }

    async fn put(&self, entry: &CacheEntry) -> Result<PutOutcome, CacheError> {
        let answer = cache::encode_response(&entry.response).map_err(|e| CacheError::Corrupt(e.to_string()))?;
        let item: HashMap<String, AttributeValue> = [
            (PK, AttributeValue::S(entry.key.to_hex())),
            (MODEL_ID, AttributeValue::S(entry.model_id.clone())),
            (COST_USD, AttributeValue::N(format!("{}", entry.cost_usd))),
            (CREATED_AT, AttributeValue::N(epoch_seconds(entry.created_at).to_string())),
            (EXPIRES_AT, AttributeValue::N(epoch_seconds(entry.expires_at).to_string())),
            (ANSWER, AttributeValue::B(Blob::new(answer))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let bytes = item_size(&item);
        if bytes > MAX_ITEM_BYTES {
            return Ok(PutOutcome::TooLarge { bytes, limit: MAX_ITEM_BYTES });
        }
        let result = self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await;
        match result {
            Ok(_) => Ok(PutOutcome::Stored { bytes }),
            // Our size estimate is DynamoDB's documented rule, but the service is the judge.
            Err(e)
                if e.code() == Some("ValidationException") && e.message().is_some_and(|m| m.contains("Item size")) =>
            {
                Ok(PutOutcome::TooLarge { bytes, limit: MAX_ITEM_BYTES })
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn claim(&self, key: &CacheKey, now: SystemTime, ttl: Duration) -> Result<Claim, CacheError> {
        let token = ClaimToken::unique();
        let expires_at = now + ttl;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, AttributeValue::S(claim_pk(key)))
            .item(CLAIM_TOKEN, AttributeValue::S(token.as_str().to_owned()))
            .item(CLAIM_EXPIRES_AT_MS, AttributeValue::N(epoch_millis(expires_at).to_string()))
            // Rounded up so that the table's sweep never removes a live claim.
            .item(EXPIRES_AT, AttributeValue::N((epoch_seconds(expires_at) + 1).to_string()))
            .condition_expression("attribute_not_exists(#pk) OR #expires < :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#expires", CLAIM_EXPIRES_AT_MS)
            .expression_attribute_values(":now", AttributeValue::N(epoch_millis(now).to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Acquired(token)),
            Err(e) if condition_failed(&e) => Ok(Claim::HeldElsewhere),
            Err(e) => Err(classify(e)),
        }
    }

    async fn release(&self, key: &CacheKey, token: &ClaimToken) -> Result<(), CacheError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(claim_pk(key)))
            .condition_expression("#token = :token")
            .expression_attribute_names("#token", CLAIM_TOKEN)
            .expression_attribute_values(":token", AttributeValue::S(token.as_str().to_owned()))
            .send()
            .await;
        match result {
            // Someone took the claim over after it expired: it is theirs now.
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(classify(e)),
            Ok(_) => Ok(()),
        }
    }
}

/// Item size as DynamoDB counts it: UTF-8 attribute names plus value bytes (numbers count
/// about one byte per two digits plus one).
fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::N(n) => n.len().div_ceil(2) + 1,
                    AttributeValue::B(b) => b.as_ref().len(),
                    _ => 0,
                }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_size_counts_names_and_values() {
        let item: HashMap<String, AttributeValue> = [
            ("pk".to_owned(), AttributeValue::S("abcd".into())),
            ("answer".to_owned(), AttributeValue::B(Blob::new(vec![0u8; 100]))),
            ("n".to_owned(), AttributeValue::N("1234".into())),
        ]
        .into_iter()
        .collect();
        assert_eq!(item_size(&item), 2 + 4 + 6 + 100 + 1 + 3);
    }

    #[test]
    fn a_claim_key_can_never_be_an_entry_key() {
        let key = CacheKey::compute(
            &crate::cache::Tenant::new("t"),
            "m",
            &crate::request::ConverseRequest::from_json(br#"{"messages":[{"role":"user","content":[{"text":"x"}]}]}"#)
                .unwrap(),
        );
        let pk = claim_pk(&key);
        assert_ne!(pk, key.to_hex());
        assert!(!pk.chars().all(|c| c.is_ascii_hexdigit()), "entry keys are hex only");
    }
}
