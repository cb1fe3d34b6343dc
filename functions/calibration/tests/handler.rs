//! The handler driven by the sample events in `events/calibration/` over in-memory S3 and
//! Bedrock control plane.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::sync::Arc;
use std::time::SystemTime;

use calibration::{Handler, RunError};
use event_support::HandlerError;
use gateway_core::batch::memory::{MemoryBatchJobs, MemoryFiles};
use gateway_core::cache::Tenant;
use gateway_core::calibration::{
    Calibration, CalibrationConfig, CalibrationPorts, CalibrationSettings, OptIns, Sampled, Sampler,
};
use gateway_core::catalog::Catalog;
use gateway_core::label::ErrorLabel;
use serde_json::{Value, json};

fn event(name: &str) -> Value {
    let path = format!("{}/../../events/calibration/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[derive(Debug, Default)]
struct Ports {
    files: Arc<MemoryFiles>,
    jobs: MemoryBatchJobs,
}

impl CalibrationPorts for Ports {
    type Files = MemoryFiles;
    type Jobs = MemoryBatchJobs;

    fn files(&self) -> &MemoryFiles {
        &self.files
    }

    fn jobs(&self) -> &MemoryBatchJobs {
        &self.jobs
    }
}

fn config() -> CalibrationConfig {
    CalibrationConfig {
        tenants: OptIns::new(vec![(Tenant::new("acme"), 1.0)]),
        bucket: "bucket".into(),
        prefix: "calibration/".into(),
        role_arn: Some("arn:aws:iam::123456789012:role/BedrockBatch".into()),
        min_prompts: 1,
        max_prompts: 10,
        catalog_path: None,
        tier_overrides: Default::default(),
    }
}

fn handler() -> Handler<Calibration<Ports>> {
    let catalog = Arc::new(Catalog::embedded().unwrap());
    Handler::new(Calibration::new(
        catalog,
        CalibrationSettings::from_config(&config(), &Catalog::embedded().unwrap()).unwrap(),
        Ports::default(),
    ))
}

#[tokio::test]
async fn the_schedule_advances_the_run_and_says_how_far_it_got() {
    let handler = handler();
    let idle = handler.handle_event(event("scheduled.json"), SystemTime::now()).await.unwrap();
    assert_eq!(idle, json!({"state": "idle", "newSamples": 0, "minPrompts": 1}));

    let handler = {
        let ports = Ports::default();
        let sampler = Sampler::new(&config(), ports.files.clone());
        let request = serde_json::from_value(json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}));
        let sampled = sampler.sample(&Tenant::new("acme"), &request.unwrap(), SystemTime::now()).await;
        assert_eq!(sampled, Sampled::Written);
        let catalog = Arc::new(Catalog::embedded().unwrap());
        Handler::new(Calibration::new(
            catalog,
            CalibrationSettings::from_config(&config(), &Catalog::embedded().unwrap()).unwrap(),
            ports,
        ))
    };
    let waiting = handler.handle_event(event("scheduled.json"), SystemTime::now()).await.unwrap();
    assert_eq!(waiting["state"], "waiting");
    assert_eq!(waiting["stage"], "answering");
    assert!(waiting["runId"].as_str().unwrap().starts_with("cal-"));
}

#[tokio::test]
async fn any_other_event_is_refused_for_good() {
    let error = handler().handle_event(event("not-scheduled.json"), SystemTime::now()).await.unwrap_err();
    assert!(matches!(error, RunError::Event(_)));
    assert_eq!(error.label(), ErrorLabel::InvalidRequest);
    assert!(!error.is_transient());
}
