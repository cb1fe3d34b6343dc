//! A router retrained on the deployer's own graded traffic is a candidate, never the artifact
//! in use: `cargo xtask train-router --data data/routing --data <outcomes>` writes it to
//! `target/router-candidates/<version>/` with an evaluation beside the artifact in use, and
//! only `--promote` puts it where the functions read it (`ROUTER_MODEL_PATH`).
//!
//! The evaluation itself is [`gateway_core::routing::candidate::evaluation`].

use std::path::{Path, PathBuf};

use gateway_core::routing::RouterModel;
use gateway_core::routing::candidate::evaluation;
use gateway_core::routing::dataset::Example;
use gateway_core::routing::train::TrainParams;

use crate::{Result, paths};

const ARTIFACT: &str = "model.bin";
const EVALUATION: &str = "evaluation.md";

/// The artifact in use: the promoted one `ROUTER_MODEL_PATH` names, else the embedded one.
fn current() -> Result<(RouterModel, String)> {
    match std::env::var_os("ROUTER_MODEL_PATH") {
        Some(path) => {
            let path = PathBuf::from(path);
            let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let model = RouterModel::from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((model, format!("in use ({})", path.display())))
        }
        None => Ok((RouterModel::embedded().map_err(|e| e.to_string())?.clone(), "in use (embedded)".to_owned())),
    }
}

/// Writes the candidate and its evaluation; returns the directory.
pub fn publish(examples: &[Example], model: &RouterModel, params: &TrainParams, out: Option<&Path>) -> Result<PathBuf> {
    let dir = match out {
        Some(dir) => dir.to_owned(),
        None => paths::target_dir().join("router-candidates").join(model.version()),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (current, current_name) = current()?;
    let text = evaluation(examples, (&current, &current_name), model, params);
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(ARTIFACT, &model.to_bytes())?;
    write(EVALUATION, text.as_bytes())?;
    print!("{text}");
    println!("train-router: candidate {} and its evaluation in {}", model.version(), dir.display());
    Ok(dir)
}

/// Checks a candidate and copies it, with its evaluation, to `out`.
pub fn promote(candidate: &Path, out: &Path) -> Result<()> {
    let source = candidate.join(ARTIFACT);
    let bytes = std::fs::read(&source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    let model =
        RouterModel::from_bytes(&bytes).map_err(|e| format!("{} is not a usable artifact: {e}", source.display()))?;
    let evaluation = candidate.join(EVALUATION);
    let text = std::fs::read_to_string(&evaluation)
        .map_err(|e| format!("{} has no evaluation ({e}): retrain it with --data", candidate.display()))?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(out, &bytes).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let beside = out.with_extension("evaluation.md");
    std::fs::write(&beside, text).map_err(|e| format!("cannot write {}: {e}", beside.display()))?;
    println!(
        "train-router: promoted {} to {} (evaluation in {}); set ROUTER_MODEL_PATH={} on the functions",
        model.version(),
        out.display(),
        beside.display(),
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use gateway_core::routing::train;

    use super::*;

    /// Graded traffic retrains into a candidate beside the artifact in use, and promotion
    /// copies exactly that artifact and its evaluation; a directory without one is refused.
    #[test]
    fn graded_traffic_becomes_a_candidate_that_promotes_explicitly() {
        let dir = std::env::temp_dir().join(format!("router-candidate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut examples =
            gateway_core::routing::dataset::load_shipped(&gateway_core::routing::dataset::default_dir()).unwrap();
        let mut lines = Vec::new();
        for i in 0..300 {
            let hard = i % 3 == 0;
            let text = if hard {
                format!("Prove step by step that the sequence {i} converges, derive its limit and justify each bound.")
            } else {
                format!("Say thank you number {i} in Japanese.")
            };
            let cell = serde_json::json!([{"role": "user", "content": text}]).to_string();
            let score = |s: u8| serde_json::json!({"modelId": "m", "score": s, "outputTokens": 50});
            let (haiku, sonnet) = if hard { (3, 8) } else { (10, 10) };
            lines.push(
                serde_json::json!({
                    "schema": 1, "runId": "r", "promptId": gateway_core::calibration::record::prompt_id(&cell),
                    "tenant": "acme", "sampledAt": "2026-12-03T10:00:00Z", "prompt": cell, "grader": "opus",
                    "outcomes": {"haiku": score(haiku), "sonnet": score(sonnet), "opus": score(10)}
                })
                .to_string(),
            );
        }
        let data = dir.join("run.jsonl");
        std::fs::write(&data, lines.join("\n")).unwrap();
        examples.extend(gateway_core::routing::dataset::load_calibration(&data).unwrap());
        let params = TrainParams::default();
        let model = train::train(&examples, &params);
        assert_ne!(model.to_bytes(), RouterModel::embedded_bytes(), "the deployer's rows change the model");
        let candidate = publish(&examples, &model, &params, Some(&dir.join("candidate"))).unwrap();
        let text = std::fs::read_to_string(candidate.join(EVALUATION)).unwrap();
        assert!(text.contains("your traffic (test split, graded)") && text.contains("| candidate |"), "{text}");
        assert!(text.contains("mmlu_pro (test split, modelled)"), "{text}");

        let promoted = dir.join("deploy").join("model.bin");
        promote(&candidate, &promoted).unwrap();
        assert_eq!(std::fs::read(&promoted).unwrap(), model.to_bytes());
        assert!(promoted.with_extension("evaluation.md").exists());
        assert!(promote(&dir.join("deploy"), &dir.join("other.bin")).is_err(), "no candidate there");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
