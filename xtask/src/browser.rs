//! Headless Chromium driven over the Chrome DevTools Protocol: load a page, collect what
//! went wrong in it (console errors and warnings, uncaught exceptions, failed loads), read
//! its state with a script, and take a screenshot.
//!
//! One WebSocket to the browser carries everything: the page is attached with
//! `flatten: true`, so its commands and events travel on the same socket, tagged with the
//! session id.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

use crate::Result;
use crate::process::{Output, Supervisor, check_interrupted, sleep_interruptibly};
use crate::{paths, tools};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Socket reads give up this often, so deadlines and Ctrl-C are noticed while Chromium is quiet.
const READ_SLICE: Duration = Duration::from_millis(200);
const VIEWPORT_WIDTH: u64 = 1280;
const VIEWPORT_HEIGHT: u64 = 900;

/// What a loaded page showed.
#[derive(Debug)]
pub struct PageReport {
    /// The value of the state script, parsed from the JSON text it returns.
    pub state: Value,
    /// Console errors and warnings, uncaught exceptions, failed loads: each one a line.
    pub problems: Vec<String>,
}

/// How to look at a page.
#[derive(Debug)]
pub struct Inspection<'a> {
    pub url: &'a str,
    /// A JS expression that is true once the page has finished drawing.
    pub ready_expression: &'a str,
    /// A JS expression that returns the page's state as a JSON string.
    pub state_expression: &'a str,
    pub ready_timeout: Duration,
    pub screenshot: Option<&'a Path>,
}

pub fn inspect(inspection: &Inspection) -> Result<PageReport> {
    let mut browser = Browser::launch()?;
    let outcome = browser.inspect(inspection);
    browser.close();
    outcome
}

#[derive(Debug)]
struct Browser {
    supervisor: Supervisor,
    socket: Option<WebSocket<TcpStream>>,
    user_data_dir: PathBuf,
    next_id: u64,
    events: Vec<Value>,
}

impl Browser {
    fn launch() -> Result<Self> {
        // A fresh profile each run: no cached page, no stored state from another run.
        let user_data_dir = std::env::temp_dir().join(format!("xtask-chromium-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&user_data_dir)?;
        let log = paths::logs_dir().join("chromium.log");
        let mut command = Command::new(tools::CHROMIUM);
        command
            .args([
                "--headless",
                // The test runs as root, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--mute-audio",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", user_data_dir.display()))
            .arg(format!("--window-size={VIEWPORT_WIDTH},{VIEWPORT_HEIGHT}"))
            .arg("about:blank");
        let mut supervisor = Supervisor::default();
        supervisor.spawn("chromium", command, &Output::Log(log.clone()))?;
        let mut browser = Self { supervisor, socket: None, user_data_dir, next_id: 0, events: Vec::new() };
        let endpoint = browser.wait_for_endpoint(&log)?;
        browser.socket = Some(connect(&endpoint)?);
        Ok(browser)
    }

    /// Chromium prints `DevTools listening on ws://...` once the port it picked is open.
    fn wait_for_endpoint(&mut self, log: &Path) -> Result<String> {
        let started = Instant::now();
        loop {
            check_interrupted()?;
            self.supervisor.check_running()?;
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(endpoint) = devtools_endpoint(&text) {
                return Ok(endpoint);
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                return Err(format!(
                    "Chromium printed no DevTools endpoint within {STARTUP_TIMEOUT:?}; see {}",
                    log.display()
                )
                .into());
            }
            sleep_interruptibly(Duration::from_millis(100))?;
        }
    }

    fn inspect(&mut self, inspection: &Inspection) -> Result<PageReport> {
        let target = self.call("Target.createTarget", json!({"url": "about:blank"}), None)?;
        let target_id = target.get("targetId").and_then(Value::as_str).ok_or("Target.createTarget gave no targetId")?;
        let attached = self.call("Target.attachToTarget", json!({"targetId": target_id, "flatten": true}), None)?;
        let session = attached
            .get("sessionId")
            .and_then(Value::as_str)
            .ok_or("Target.attachToTarget gave no sessionId")?
            .to_string();
        let session = Some(session.as_str());
        for domain in ["Runtime", "Log", "Page", "Network"] {
            self.call(&format!("{domain}.enable"), json!({}), session)?;
        }
        self.set_viewport(VIEWPORT_HEIGHT, session)?;
        // Events from about:blank say nothing about the page under test.
        self.events.clear();

        let navigation = self.call("Page.navigate", json!({"url": inspection.url}), session)?;
        let mut problems = Vec::new();
        if let Some(error) = navigation.get("errorText").and_then(Value::as_str).filter(|e| !e.is_empty()) {
            problems.push(format!("navigation to {} failed: {error}", inspection.url));
        } else {
            self.wait_for_event("Page.loadEventFired", session, CALL_TIMEOUT)?;
            if !self.wait_until_true(inspection.ready_expression, inspection.ready_timeout, session)? {
                problems.push(format!(
                    "the page did not become ready ({}) within {:?}",
                    inspection.ready_expression, inspection.ready_timeout
                ));
            }
        }
        let state_text = self.evaluate(inspection.state_expression, session)?;
        let state = match state_text.as_str() {
            Some(text) => serde_json::from_str(text).map_err(|e| format!("the page's state is not JSON: {e}"))?,
            None => Value::Null,
        };
        if let Some(path) = inspection.screenshot {
            self.screenshot(path, session)?;
        }
        // Give late console messages (a failing timer, an image) a moment to arrive.
        self.drain(Duration::from_millis(300))?;
        problems.extend(self.events.iter().filter_map(describe_problem));
        Ok(PageReport { state, problems })
    }

    fn set_viewport(&mut self, height: u64, session: Option<&str>) -> Result<()> {
        let metrics = json!({"width": VIEWPORT_WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": false});
        self.call("Emulation.setDeviceMetricsOverride", metrics, session).map(|_| ())
    }

    /// The whole page, not just the viewport: the viewport grows to the content's height.
    fn screenshot(&mut self, path: &Path, session: Option<&str>) -> Result<()> {
        let layout = self.call("Page.getLayoutMetrics", json!({}), session)?;
        let height = layout
            .pointer("/cssContentSize/height")
            .and_then(Value::as_f64)
            .map(|h| h.ceil() as u64)
            .unwrap_or(VIEWPORT_HEIGHT)
            .clamp(VIEWPORT_HEIGHT, 8000);
        self.set_viewport(height, session)?;
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}), session)?;
        let data = shot.get("data").and_then(Value::as_str).ok_or("Page.captureScreenshot returned no data")?;
        let png = base64::engine::general_purpose::STANDARD.decode(data)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, png).map_err(|e| format!("could not write {}: {e}", path.display()).into())
    }

    fn evaluate(&mut self, expression: &str, session: Option<&str>) -> Result<Value> {
        let answer =
            self.call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true}), session)?;
        if let Some(details) = answer.get("exceptionDetails") {
            return Err(format!("evaluating {expression:?} threw: {}", exception_text(details)).into());
        }
        Ok(answer.pointer("/result/value").cloned().unwrap_or(Value::Null))
    }

    fn wait_until_true(&mut self, expression: &str, timeout: Duration, session: Option<&str>) -> Result<bool> {
        let started = Instant::now();
        loop {
            if self.evaluate(expression, session)? == Value::Bool(true) {
                return Ok(true);
            }
            if started.elapsed() > timeout {
                return Ok(false);
            }
            self.drain(Duration::from_millis(100))?;
        }
    }

    /// Sends a command and reads until its answer, keeping the events that arrive meanwhile.
    fn call(&mut self, method: &str, params: Value, session: Option<&str>) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket()?.send(Message::text(message.to_string())).map_err(|e| format!("sending {method}: {e}"))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let Some(received) = self.receive(deadline)? else {
                return Err(format!("Chromium did not answer {method} within {CALL_TIMEOUT:?}").into());
            };
            if received.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(error) = received.get("error") {
                    return Err(format!("{method} failed: {error}").into());
                }
                return Ok(received.get("result").cloned().unwrap_or(Value::Null));
            }
            self.keep_event(received);
        }
    }

    fn wait_for_event(&mut self, method: &str, session: Option<&str>, timeout: Duration) -> Result<Value> {
        let matches = |event: &Value| {
            event.get("method").and_then(Value::as_str) == Some(method)
                && event.get("sessionId").and_then(Value::as_str) == session
        };
        if let Some(event) = self.events.iter().find(|e| matches(e)) {
            return Ok(event.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let Some(received) = self.receive(deadline)? else {
                return Err(format!("no {method} within {timeout:?}").into());
            };
            let found = matches(&received);
            self.keep_event(received.clone());
            if found {
                return Ok(received);
            }
        }
    }

    /// Reads events for `duration`, for messages that arrive after the last command.
    fn drain(&mut self, duration: Duration) -> Result<()> {
        let deadline = Instant::now() + duration;
        while let Some(received) = self.receive(deadline)? {
            self.keep_event(received);
        }
        Ok(())
    }

    fn keep_event(&mut self, message: Value) {
        if message.get("method").is_some() {
            self.events.push(message);
        }
    }

    /// The next JSON message, or None once `deadline` passes without one.
    fn receive(&mut self, deadline: Instant) -> Result<Option<Value>> {
        loop {
            check_interrupted()?;
            if Instant::now() >= deadline {
                return Ok(None);
            }
            match self.socket()?.read() {
                Ok(Message::Text(text)) => return Ok(Some(serde_json::from_str(text.as_str())?)),
                Ok(Message::Close(_)) => return Err("Chromium closed the DevTools connection".into()),
                Ok(_) => {}
                Err(tungstenite::Error::Io(error))
                    if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(error) => return Err(format!("reading from Chromium: {error}").into()),
            }
        }
    }

    fn socket(&mut self) -> Result<&mut WebSocket<TcpStream>> {
        self.socket.as_mut().ok_or_else(|| "not connected to Chromium".into())
    }

    /// Asks the browser to quit, then stops whatever of it is left; the profile goes too.
    fn close(&mut self) {
        if self.socket.is_some() {
            self.next_id += 1;
            let message = json!({"id": self.next_id, "method": "Browser.close", "params": {}});
            if let Ok(socket) = self.socket() {
                let _ = socket.send(Message::text(message.to_string()));
            }
            let _ = sleep_interruptibly(Duration::from_millis(300));
        }
        self.socket = None;
        self.supervisor.shutdown();
        let _ = std::fs::remove_dir_all(&self.user_data_dir);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.close();
    }
}

fn connect(endpoint: &str) -> Result<WebSocket<TcpStream>> {
    let address = endpoint
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("unexpected DevTools endpoint {endpoint}"))?;
    let stream = TcpStream::connect(address).map_err(|e| format!("cannot connect to Chromium at {address}: {e}"))?;
    stream.set_read_timeout(Some(READ_SLICE))?;
    stream.set_nodelay(true)?;
    let (socket, _) = tungstenite::client::client(endpoint, stream)
        .map_err(|e| format!("WebSocket handshake with {endpoint} failed: {e}"))?;
    Ok(socket)
}

/// The browser endpoint in Chromium's log.
pub fn devtools_endpoint(log: &str) -> Option<String> {
    log.lines().find_map(|line| {
        let at = line.find("DevTools listening on ")?;
        let url = line[at + "DevTools listening on ".len()..].trim();
        url.starts_with("ws://").then(|| url.to_string())
    })
}

/// A line for each event that shows the page misbehaving; None for the rest.
pub fn describe_problem(event: &Value) -> Option<String> {
    let params = event.get("params").cloned().unwrap_or(Value::Null);
    let text = |value: &Value, pointer: &str| value.pointer(pointer).and_then(Value::as_str).unwrap_or("").to_string();
    match event.get("method").and_then(Value::as_str)? {
        "Runtime.consoleAPICalled" => {
            let kind = text(&params, "/type");
            if !matches!(kind.as_str(), "error" | "warning" | "assert") {
                return None;
            }
            let arguments: Vec<String> = params
                .get("args")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|arg| match arg.get("value") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => text(arg, "/description"),
                })
                .collect();
            Some(format!("console.{kind}: {}", arguments.join(" ")))
        }
        "Runtime.exceptionThrown" => {
            Some(format!("uncaught exception: {}", exception_text(params.get("exceptionDetails")?)))
        }
        "Log.entryAdded" => {
            let entry = params.get("entry")?;
            (text(entry, "/level") == "error").then(|| {
                let url = text(entry, "/url");
                let place = if url.is_empty() { String::new() } else { format!(" ({url})") };
                format!("{} error: {}{place}", text(entry, "/source"), text(entry, "/text"))
            })
        }
        "Network.loadingFailed" => {
            let canceled = params.get("canceled").and_then(Value::as_bool) == Some(true);
            (!canceled).then(|| format!("failed load ({}): {}", text(&params, "/type"), text(&params, "/errorText")))
        }
        "Network.responseReceived" => {
            let status = params.pointer("/response/status").and_then(Value::as_f64).unwrap_or(0.0);
            (status >= 400.0).then(|| format!("failed load: {} answered {status}", text(&params, "/response/url")))
        }
        _ => None,
    }
}

fn exception_text(details: &Value) -> String {
    details
        .pointer("/exception/description")
        .and_then(Value::as_str)
        .or_else(|| details.get("text").and_then(Value::as_str))
        .unwrap_or("(no description)")
        .to_string()
}

fn unique() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_read_from_chromiums_log() {
        let log = "[0101/000000.1:WARNING:x.cc(1)] noise\n\nDevTools listening on ws://127.0.0.1:41235/devtools/browser/ab-cd\n";
        assert_eq!(devtools_endpoint(log).as_deref(), Some("ws://127.0.0.1:41235/devtools/browser/ab-cd"));
        assert_eq!(devtools_endpoint("starting\n"), None);
    }

    #[test]
    fn errors_warnings_exceptions_and_failed_loads_are_problems_and_the_rest_is_not() {
        let problems: Vec<Option<String>> = [
            json!({"method": "Runtime.consoleAPICalled", "params": {"type": "error", "args": [{"type": "string", "value": "boom"}, {"type": "number", "value": 3}]}}),
            json!({"method": "Runtime.consoleAPICalled", "params": {"type": "log", "args": [{"value": "fine"}]}}),
            json!({"method": "Runtime.exceptionThrown", "params": {"exceptionDetails": {"text": "Uncaught", "exception": {"description": "TypeError: x is undefined"}}}}),
            json!({"method": "Log.entryAdded", "params": {"entry": {"level": "error", "source": "network", "text": "Failed to load resource", "url": "file:///x.png"}}}),
            json!({"method": "Log.entryAdded", "params": {"entry": {"level": "verbose", "source": "other", "text": "x"}}}),
            json!({"method": "Network.loadingFailed", "params": {"type": "Image", "errorText": "net::ERR_FILE_NOT_FOUND"}}),
            json!({"method": "Network.loadingFailed", "params": {"type": "Other", "errorText": "net::ERR_ABORTED", "canceled": true}}),
            json!({"method": "Network.responseReceived", "params": {"response": {"url": "http://127.0.0.1/x", "status": 404}}}),
            json!({"method": "Page.loadEventFired", "params": {}}),
        ]
        .iter()
        .map(describe_problem)
        .collect();
        assert_eq!(
            problems,
            [
                Some("console.error: boom 3".to_string()),
                None,
                Some("uncaught exception: TypeError: x is undefined".to_string()),
                Some("network error: Failed to load resource (file:///x.png)".to_string()),
                None,
                Some("failed load (Image): net::ERR_FILE_NOT_FOUND".to_string()),
                None,
                Some("failed load: http://127.0.0.1/x answered 404".to_string()),
                None,
            ]
        );
    }
}
