//! The calibration pipeline end to end through the real SDKs: samples written by the request
//! path's `Sampler` to a moto S3 of the test's own, answered and graded by the emulator's
//! batch control plane (which reads the inputs from and writes the outputs to that moto), and
//! the dataset read back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bedrock_emulator::testing::{MotoServer, fast_batch_config};
use gateway_core::adapters::batch_remote::{BedrockBatchJobs, S3BatchFiles, bedrock_control_client, s3_client};
use gateway_core::adapters::calibration::AwsCalibrationPorts;
use gateway_core::batch::BatchFiles;
use gateway_core::cache::Tenant;
use gateway_core::calibration::{
    Advance, Calibration, CalibrationConfig, CalibrationOutcome, CalibrationSettings, OptIns, Sampled, Sampler, Stage,
};
use gateway_core::catalog::{Catalog, Tier};
use gateway_core::request::ConverseRequest;
use gateway_core::routing::train::{self, TrainParams};
use gateway_core::routing::{self, RouterModel, dataset};
use integration_tests::sdk_defaults;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

const BUCKET: &str = "gateway-calibration";
const ROLE: &str = "arn:aws:iam::123456789012:role/BedrockBatch";

fn config() -> CalibrationConfig {
    CalibrationConfig {
        tenants: OptIns::new(vec![(Tenant::new("acme"), 1.0), (Tenant::new("beta"), 1.0)]),
        bucket: BUCKET.to_owned(),
        prefix: "calibration/".to_owned(),
        role_arn: Some(ROLE.to_owned()),
        // The emulator's fast configuration refuses jobs under three records, as Bedrock
        // refuses them under its minimum.
        min_prompts: 3,
        max_prompts: 100,
        catalog_path: None,
        tier_overrides: Default::default(),
    }
}

fn request(text: &str) -> ConverseRequest {
    serde_json::from_value(json!({
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "system": [{"text": "Answer briefly."}]
    }))
    .unwrap()
}

async fn read(files: &S3BatchFiles, uri: &str) -> String {
    let mut text = String::new();
    files.open(uri).await.unwrap().unwrap().read_to_string(&mut text).await.unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_prompts_are_answered_graded_and_published_through_the_batch_plane() {
    let moto = MotoServer::start().unwrap();
    let mut emulator_config = fast_batch_config(&moto);
    emulator_config.batch.publish_events = false;
    let emulator = bedrock_emulator::spawn(emulator_config).await.unwrap();
    let bedrock = bedrock_control_client(&sdk_defaults().endpoint_url(emulator.url()).load().await);
    let s3 = s3_client(&sdk_defaults().endpoint_url(moto.url()).load().await);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let files = S3BatchFiles::new(s3);

    // The request path's stage, over the same S3 adapter the gateway uses.
    let sampler = Sampler::new(&config(), Arc::new(files.clone()));
    let prompts = [
        ("acme", "What is the capital of France?"),
        ("acme", "Write a haiku about autumn."),
        ("beta", "Explain how TCP slow start works."),
        ("beta", "Prove that the square root of two is irrational."),
    ];
    for (tenant, text) in prompts {
        assert_eq!(sampler.sample(&Tenant::new(tenant), &request(text), SystemTime::now()).await, Sampled::Written);
    }
    assert_eq!(
        sampler.sample(&Tenant::new("gamma"), &request("not opted in"), SystemTime::now()).await,
        Sampled::NotOptedIn
    );

    let catalog = Catalog::embedded().unwrap();
    let pipeline = || {
        let ports = AwsCalibrationPorts { files: files.clone(), jobs: BedrockBatchJobs::new(bedrock.clone()) };
        Calibration::new(
            Arc::new(catalog.clone()),
            CalibrationSettings::from_config(&config(), &Catalog::embedded().unwrap()).unwrap(),
            ports,
        )
    };
    // Each invocation is a fresh process: only S3 and Bedrock carry the run.
    let started = Instant::now();
    let mut stages = Vec::new();
    let (run_id, dataset_uri, cost) = loop {
        match pipeline().advance(SystemTime::now()).await.unwrap() {
            Advance::Finished { run_id, dataset_uri, cost } => break (run_id, dataset_uri, cost),
            Advance::Waiting { stage, .. } => {
                if stages.last() != Some(&stage) {
                    stages.push(stage);
                }
            }
            idle @ Advance::Idle { .. } => panic!("{idle:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the run did not finish: {stages:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stages, [Stage::Answering, Stage::Grading]);
    println!(
        "calibration run {run_id}: {} prompts, answers ${:.6}, grading ${:.6}, total ${:.6}, ${:.4} per 1,000 prompts",
        cost.prompts, cost.answers_usd, cost.grading_usd, cost.total_usd, cost.per_1000_prompts_usd
    );

    let text = read(&files, &dataset_uri).await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), prompts.len());
    for line in &lines {
        // The exact schema the trainer's loader reads.
        let raw: Value = serde_json::from_str(line).unwrap();
        let mut keys: Vec<&str> = raw.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["grader", "outcomes", "prompt", "promptId", "runId", "sampledAt", "schema", "tenant"]);
        let outcome: CalibrationOutcome = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!((outcome.schema, outcome.run_id.as_str()), (1, run_id.as_str()));
        assert_eq!(outcome.grader, catalog.tier_default(Tier::Opus));
        assert_ne!(outcome.tenant, Tenant::new("gamma").as_str());
        assert_eq!(outcome.outcomes.len(), 3);
        for tier in Tier::ALL {
            let tier_outcome = &outcome.outcomes[&tier];
            assert_eq!(tier_outcome.model_id, catalog.tier_default(tier));
            assert!(tier_outcome.output_tokens.is_some_and(|t| t > 0), "{line}");
            assert!(tier_outcome.score.is_none_or(|s| (1..=10).contains(&s)), "{line}");
            assert!(raw["outcomes"][tier.as_str()].get("score").is_some(), "{line}");
        }
        assert_eq!(outcome.outcomes[&Tier::Opus].score, Some(10));
        // The emulator fails no record here, and its forced tool call fits the schema.
        assert!(outcome.outcomes[&Tier::Haiku].score.is_some() && outcome.outcomes[&Tier::Sonnet].score.is_some());
    }

    assert!(cost.answers_usd > 0.0 && cost.grading_usd > 0.0);
    assert_eq!(cost.prompts, prompts.len() as u64);
    assert!((cost.total_usd - cost.answers_usd - cost.grading_usd).abs() < 1e-12);
    assert!((cost.per_1000_prompts_usd - cost.total_usd * 1000.0 / prompts.len() as f64).abs() < 1e-9);

    // The manifest holds the same figures, and a later invocation has nothing to do.
    let manifest: Value =
        serde_json::from_str(&read(&files, &format!("s3://{BUCKET}/calibration/runs/{run_id}/manifest.json")).await)
            .unwrap();
    assert_eq!(manifest["stage"], "done");
    assert_eq!(manifest["cost"]["per1000PromptsUsd"], json!(cost.per_1000_prompts_usd));
    assert_eq!(pipeline().advance(SystemTime::now()).await.unwrap(), Advance::Idle { new_samples: 0, min_prompts: 3 });
    let jobs = bedrock.list_model_invocation_jobs().send().await.unwrap();
    let names: Vec<&str> = jobs.invocation_job_summaries().iter().map(|j| j.job_name()).collect();
    assert_eq!(names.len(), 4, "three answer jobs and one grading job: {names:?}");
    assert!(names.iter().all(|n| n.starts_with(&run_id)), "{names:?}");

    // The end of the loop: the published dataset retrains the router into a candidate,
    // evaluated beside the artifact in use on the same rows.
    let local = std::env::temp_dir().join(format!("calibration-dataset-{}-{run_id}.jsonl", std::process::id()));
    std::fs::write(&local, &text).unwrap();
    let graded = dataset::load_calibration(&local).unwrap();
    std::fs::remove_file(&local).unwrap();
    assert_eq!(graded.len(), prompts.len(), "every prompt has graded cheaper tiers");
    assert!(graded.iter().all(|e| e.dataset == dataset::DEPLOYER.name && e.ladder.is_some()));
    let mut examples = dataset::load_shipped(&dataset::default_dir()).unwrap();
    examples.extend(graded);
    let params = TrainParams::default();
    let candidate = train::train(&examples, &params);
    let current = RouterModel::embedded().unwrap();
    let evaluation = routing::candidate::evaluation(&examples, (current, "in use"), &candidate, &params);
    println!("{evaluation}");
    assert!(evaluation.contains(candidate.version()) && evaluation.contains(current.version()), "{evaluation}");
    assert!(evaluation.contains("your traffic"), "{evaluation}");
    for shipped in dataset::SHIPPED {
        assert!(evaluation.contains(&format!("| {} (test split, modelled) |", shipped.name)), "{evaluation}");
    }
}
