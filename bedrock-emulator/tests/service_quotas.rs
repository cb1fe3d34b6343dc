//! The emulator's Service Quotas seen through the real `aws-sdk-servicequotas` client, and
//! the gateway's detection of the limits through it.

#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_servicequotas::Client;
use aws_sdk_servicequotas::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_servicequotas::error::ProvideErrorMetadata;
use bedrock_emulator::{EmulatorConfig, QuotaOverride, RunningEmulator};
use gateway_core::catalog::{Catalog, Quota, Scope};
use gateway_core::config::{QuotaConfig, QuotaSource};
use gateway_core::quota::{LimitSource, QuotaKey};

const SONNET: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";
const HAIKU3: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn sdk_config(url: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new("test", "test", None, None, "test")))
        .endpoint_url(url)
        .build()
}

async fn start(config: EmulatorConfig) -> (RunningEmulator, Client) {
    let emulator = bedrock_emulator::spawn(config).await.unwrap();
    let client = Client::new(&sdk_config(&emulator.service_quotas_url()));
    (emulator, client)
}

fn with_override(id: &str, tpm: Option<u64>, rpm: Option<u64>) -> EmulatorConfig {
    let mut config = EmulatorConfig::instant();
    config.quotas.insert(id.to_owned(), QuotaOverride { tpm, rpm });
    config
}

async fn all_quotas(client: &Client, page_size: i32) -> Vec<aws_sdk_servicequotas::types::ServiceQuota> {
    let mut quotas = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_service_quotas()
            .service_code("bedrock")
            .max_results(page_size)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        quotas.extend(page.quotas().iter().cloned());
        match page.next_token() {
            Some(next) => token = Some(next.to_owned()),
            None => return quotas,
        }
    }
}

#[tokio::test]
async fn the_sdk_lists_the_enforced_values_with_aws_names_codes_and_arns() {
    let (_emulator, client) = start(with_override(&format!("us.{SONNET}"), None, Some(7))).await;
    let quotas = all_quotas(&client, 100).await;
    let by_name: BTreeMap<&str, f64> = quotas.iter().map(|q| (q.quota_name().unwrap(), q.value().unwrap())).collect();
    assert_eq!(by_name["Cross-region model inference requests per minute for Anthropic Claude Sonnet 4.5 V1"], 7.0);
    assert_eq!(by_name["Cross-region model inference tokens per minute for Anthropic Claude Sonnet 4.5 V1"], 200_000.0);
    assert_eq!(
        by_name["Global cross-Region model inference requests per minute for Anthropic Claude Sonnet 4.5 V1"],
        200.0
    );
    assert_eq!(by_name["On-demand model inference tokens per minute for Anthropic Claude 3 Haiku"], 2_000_000.0);
    let codes: BTreeSet<&str> = quotas.iter().map(|q| q.quota_code().unwrap()).collect();
    assert_eq!(codes.len(), quotas.len(), "codes are unique");
    for q in &quotas {
        let code = q.quota_code().unwrap();
        assert!(code.starts_with("L-") && code.len() == 10, "{code}");
        assert_eq!(q.quota_arn().unwrap(), format!("arn:aws:servicequotas:us-east-1:123456789012:bedrock/{code}"));
        assert_eq!(q.service_code(), Some("bedrock"));
        assert_eq!(q.unit(), Some("None"));
        assert!(q.adjustable());
    }
}

#[tokio::test]
async fn pages_of_any_size_add_up_to_the_whole_list() {
    let (_emulator, client) = start(EmulatorConfig::instant()).await;
    let whole = all_quotas(&client, 100).await;
    assert!(whole.len() > 7);
    let paged = all_quotas(&client, 7).await;
    let names = |qs: &[aws_sdk_servicequotas::types::ServiceQuota]| {
        qs.iter().map(|q| q.quota_name().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(names(&paged), names(&whole));
    // The SDK's own paginator follows the same tokens.
    let pages: Vec<_> = client
        .list_service_quotas()
        .service_code("bedrock")
        .max_results(5)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(pages.len(), whole.len().div_ceil(5));
}

#[tokio::test]
async fn get_service_quota_returns_one_by_code_and_errors_are_typed() {
    let (_emulator, client) = start(EmulatorConfig::instant()).await;
    let first = all_quotas(&client, 1).await.remove(0);
    let code = first.quota_code().unwrap();
    let got = client.get_service_quota().service_code("bedrock").quota_code(code).send().await.unwrap();
    assert_eq!(got.quota().unwrap(), &first);

    let err = client.get_service_quota().service_code("bedrock").quota_code("L-00000000").send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_no_such_resource_exception(), "{err:?}");
    let err = client.list_service_quotas().service_code("ec2").send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_no_such_resource_exception(), "{err:?}");
    let err = client.list_service_quotas().service_code("bedrock").next_token("bm9wZQ==").send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_invalid_pagination_token_exception(), "{err:?}");
    let err = client.list_service_quotas().service_code("bedrock").max_results(500).send().await.unwrap_err();
    assert_eq!(err.as_service_error().unwrap().code(), Some("IllegalArgumentException"), "{err:?}");
}

#[tokio::test]
async fn the_gateway_detects_the_emulators_quota_through_the_sdk_and_overrides_still_win() {
    let (emulator, _client) = start(with_override(&format!("us.{SONNET}"), Some(123_000), Some(9))).await;
    let catalog = Catalog::embedded().unwrap();
    let sdk = sdk_config(&emulator.service_quotas_url());
    let config = QuotaConfig {
        source: QuotaSource::ServiceQuotas,
        overrides: gateway_core::quota::QuotaOverrides::parse(&format!("{HAIKU3}=rpm:11")).unwrap(),
        ..QuotaConfig::default()
    };
    let table = gateway_core::adapters::quota_table(&config, &catalog, &sdk).await.unwrap();
    for prefix in ["us", "eu", "jp"] {
        let key = QuotaKey::new(SONNET, Scope::Geo(prefix.into()));
        let limits = table.limits(&key).unwrap();
        assert_eq!(limits.quota, Quota { tpm: 123_000, rpm: 9 }, "{key}");
        assert_eq!((limits.tpm_from, limits.rpm_from), (LimitSource::ServiceQuotas, LimitSource::ServiceQuotas));
    }
    let haiku = table.limits(&QuotaKey::new(HAIKU3, Scope::InRegion)).unwrap();
    assert_eq!(haiku.quota, Quota { tpm: 2_000_000, rpm: 11 });
    assert_eq!((haiku.tpm_from, haiku.rpm_from), (LimitSource::ServiceQuotas, LimitSource::Override));
}

#[tokio::test]
async fn an_unreachable_service_quotas_falls_back_to_the_catalog_within_the_timeout() {
    let catalog = Catalog::embedded().unwrap();
    // Nothing listens on port 9 of 127.0.0.1.
    let sdk = sdk_config("http://127.0.0.1:9");
    let config = QuotaConfig {
        source: QuotaSource::ServiceQuotas,
        service_quotas_timeout: Duration::from_millis(500),
        ..QuotaConfig::default()
    };
    let started = std::time::Instant::now();
    let table = gateway_core::adapters::quota_table(&config, &catalog, &sdk).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(table, gateway_core::quota::QuotaTable::from_catalog(&catalog));
    // Bad overrides still fail, before any call.
    let bad = QuotaConfig { overrides: gateway_core::quota::QuotaOverrides::parse("gpt-4o=rpm:1").unwrap(), ..config };
    let err = gateway_core::adapters::quota_table(&bad, &catalog, &sdk).await.unwrap_err();
    assert!(err.to_string().contains("QUOTA_OVERRIDES"), "{err}");
}
