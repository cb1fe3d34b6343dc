//! The binary as the test stack runs it: readiness line, the shared test config, signals.

#![cfg(test)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bedrock-emulator"))
}

fn test_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/emulator-test.toml")
}

#[cfg(unix)]
#[test]
fn announces_its_address_serves_and_stops_on_sigterm() {
    let mut child = binary()
        .args(["--addr", "127.0.0.1:0", "--config"])
        .arg(test_config())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("bedrock-emulator listening on ").unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");

    let health = ureq::get(format!("{url}/_emulator/health")).call().unwrap().body_mut().read_to_string().unwrap();
    assert_eq!(health, r#"{"status":"ok"}"#);

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success(), "a graceful stop exits 0");
}

#[test]
fn a_bad_config_fails_before_listening_with_the_reason() {
    let dir = std::env::temp_dir().join(format!("bedrock-emulator-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bad.toml");
    std::fs::write(&config, "latency_scal = 0\n").unwrap();
    let output = binary().args(["--addr", "127.0.0.1:0", "--config"]).arg(&config).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "no readiness line for a server that never started");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown field `latency_scal`"), "{stderr}");
}
