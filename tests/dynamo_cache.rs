//! The DynamoDB cache adapter against moto through the real SDK.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::types::AttributeValue;
use gateway_core::adapters::DynamoCacheStore;
use gateway_core::adapters::dynamo::MAX_ITEM_BYTES;
use gateway_core::cache::{CacheEntry, CacheKey, Tenant};
use gateway_core::ports::{CacheError, CacheStore, Claim, ClaimToken, PutOutcome};
use gateway_core::request::{ConverseRequest, ConverseResponse};
use integration_tests::{cache_table, dynamodb};

fn request(text: &str) -> ConverseRequest {
    ConverseRequest::from_json(
        format!(r#"{{"messages":[{{"role":"user","content":[{{"text":"{text}"}}]}}]}}"#).as_bytes(),
    )
    .unwrap()
}

fn response(text: &str) -> ConverseResponse {
    serde_json::from_value(serde_json::json!({
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 10, "outputTokens": 20, "totalTokens": 30},
        "metrics": {"latencyMs": 5}
    }))
    .unwrap()
}

fn entry(tenant: &str, prompt: &str, answer: &str, ttl: Duration) -> CacheEntry {
    let now = SystemTime::now();
    CacheEntry {
        key: CacheKey::compute(&Tenant::new(tenant), "us.anthropic.claude-haiku-4-5-20251001-v1:0", &request(prompt)),
        response: response(answer),
        model_id: "us.anthropic.claude-haiku-4-5-20251001-v1:0".into(),
        cost_usd: 0.000_123,
        created_at: now,
        expires_at: now + ttl,
    }
}

#[tokio::test]
async fn stored_answers_come_back_whole() {
    let client = dynamodb().await;
    let store = DynamoCacheStore::new(client.clone(), cache_table(&client).await);
    let e = entry("a", "hello", "hi there", Duration::from_secs(3600));
    assert!(matches!(store.put(&e).await.unwrap(), PutOutcome::Stored { .. }));
    let got = store.get(&e.key, SystemTime::now()).await.unwrap().unwrap();
    assert_eq!(got.response, e.response);
    assert_eq!(got.model_id, e.model_id);
    assert_eq!(got.cost_usd, e.cost_usd);
    assert!(got.expires_at > SystemTime::now());
}

#[tokio::test]
async fn an_expired_item_dynamodb_has_not_deleted_is_a_miss() {
    let client = dynamodb().await;
    let table = cache_table(&client).await;
    let store = DynamoCacheStore::new(client.clone(), table.clone());
    let mut e = entry("a", "hello", "stale", Duration::from_secs(60));
    e.expires_at = SystemTime::now() - Duration::from_secs(60);
    store.put(&e).await.unwrap();
    // The item is still there, as it would be in DynamoDB until TTL deletion catches up...
    let raw = client.get_item().table_name(&table).key("pk", AttributeValue::S(e.key.to_hex())).send().await.unwrap();
    assert!(raw.item.is_some());
    // ...but the store treats it as gone.
    assert!(store.get(&e.key, SystemTime::now()).await.unwrap().is_none());
}

#[tokio::test]
async fn another_tenants_key_misses() {
    let client = dynamodb().await;
    let store = DynamoCacheStore::new(client.clone(), cache_table(&client).await);
    let mine = entry("tenant-a", "hello", "a's answer", Duration::from_secs(3600));
    store.put(&mine).await.unwrap();
    let theirs = entry("tenant-b", "hello", "unused", Duration::from_secs(3600));
    assert_ne!(mine.key, theirs.key);
    assert!(store.get(&theirs.key, SystemTime::now()).await.unwrap().is_none());
}

#[tokio::test]
async fn an_answer_too_large_for_one_item_is_not_stored() {
    let client = dynamodb().await;
    let store = DynamoCacheStore::new(client.clone(), cache_table(&client).await);
    // Pseudo-random text does not compress below the 400 KB item limit.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: String = (0..600_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'!' + (state % 90) as u8)
        })
        .collect();
    let e = entry("a", "huge", &noise, Duration::from_secs(3600));
    match store.put(&e).await.unwrap() {
        PutOutcome::TooLarge { bytes, limit } => assert!(bytes > limit && limit == MAX_ITEM_BYTES),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(store.get(&e.key, SystemTime::now()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_corrupt_item_is_reported_not_served() {
    let client = dynamodb().await;
    let table = cache_table(&client).await;
    let store = DynamoCacheStore::new(client.clone(), table.clone());
    let e = entry("a", "hello", "x", Duration::from_secs(3600));
    client
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S(e.key.to_hex()))
        .item("expiresAt", AttributeValue::N("99999999999".into()))
        .item("answer", AttributeValue::S("not binary".into()))
        .send()
        .await
        .unwrap();
    assert!(matches!(store.get(&e.key, SystemTime::now()).await, Err(CacheError::Corrupt(_))));
}

#[tokio::test]
async fn a_missing_table_is_a_store_error() {
    let store = DynamoCacheStore::new(dynamodb().await, "no-such-table");
    let e = entry("a", "hello", "x", Duration::from_secs(3600));
    assert!(matches!(store.get(&e.key, SystemTime::now()).await, Err(CacheError::Store(_))));
}

#[tokio::test]
async fn claims_are_exclusive_until_released_or_expired_and_never_read_as_entries() {
    let client = dynamodb().await;
    let table = cache_table(&client).await;
    let (first, second) =
        (DynamoCacheStore::new(client.clone(), &table), DynamoCacheStore::new(dynamodb().await, &table));
    let key = entry("t", "claimed", "a", Duration::from_secs(60)).key;
    let now = SystemTime::now();
    let ttl = Duration::from_secs(30);

    let Claim::Acquired(token) = first.claim(&key, now, ttl).await.unwrap() else { panic!("a free key is claimed") };
    assert_eq!(second.claim(&key, now, ttl).await.unwrap(), Claim::HeldElsewhere);
    assert!(first.get(&key, now).await.unwrap().is_none(), "a claim is not an entry");

    // Only the holder's token releases it.
    second.release(&key, &ClaimToken::unique()).await.unwrap();
    assert_eq!(second.claim(&key, now, ttl).await.unwrap(), Claim::HeldElsewhere);
    first.release(&key, &token).await.unwrap();
    let Claim::Acquired(taken) = second.claim(&key, now, ttl).await.unwrap() else { panic!("a released key is free") };

    // Past its expiry, a claim is taken over, and its old holder's release leaves the new one.
    let later = now + ttl + Duration::from_millis(1);
    let Claim::Acquired(_) = first.claim(&key, later, ttl).await.unwrap() else { panic!("an expired claim is free") };
    second.release(&key, &taken).await.unwrap();
    assert_eq!(second.claim(&key, later, ttl).await.unwrap(), Claim::HeldElsewhere);
}
