//! Plain-HTTP helpers over ureq. Everything xtask talks to is on 127.0.0.1, so there is
//! no TLS and no proxy handling.

use std::time::{Duration, Instant};

use crate::Result;
use crate::process::{Supervisor, check_interrupted, sleep_interruptibly};

pub fn agent(timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        // Callers classify statuses themselves (a 404 can mean "up", a 400 can be expected).
        .http_status_as_error(false)
        .build();
    ureq::Agent::new_with_config(config)
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

pub fn get(agent: &ureq::Agent, url: &str) -> Result<Reply> {
    let mut response = agent.get(url).call()?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string()?;
    Ok(Reply { status, body })
}

pub fn post(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)], body: &str) -> Result<Reply> {
    let mut request = agent.post(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.send(body)?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string()?;
    Ok(Reply { status, body })
}

/// Polls `url` until `ready` accepts the status, failing early if a supervised server dies.
pub fn wait_until_ready(
    supervisor: &mut Supervisor,
    what: &str,
    url: &str,
    timeout: Duration,
    ready: impl Fn(u16) -> bool,
) -> Result<()> {
    let agent = agent(Duration::from_secs(2));
    let started = Instant::now();
    loop {
        check_interrupted()?;
        supervisor.check_running()?;
        if let Ok(reply) = get(&agent, url)
            && ready(reply.status)
        {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(format!("{what} did not become ready at {url} within {timeout:?}").into());
        }
        sleep_interruptibly(Duration::from_millis(200))?;
    }
}

/// Waits until something accepts TCP connections on the port.
pub fn wait_for_port(supervisor: &mut Supervisor, what: &str, port: u16, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        check_interrupted()?;
        supervisor.check_running()?;
        if std::net::TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok() {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(format!("{what} did not listen on {address} within {timeout:?}").into());
        }
        sleep_interruptibly(Duration::from_millis(200))?;
    }
}

/// A free loopback port. The listener is dropped before the server binds it; the window
/// for another process to take the port in between is negligible on a dev machine or CI.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// What one streamed answer took, from the moment the request was sent.
#[derive(Debug, Clone)]
pub struct StreamTiming {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The first byte of the body.
    pub first_byte: Option<Duration>,
    /// The first piece of content (`marker` seen in the body).
    pub first_token: Option<Duration>,
    pub total: Duration,
    pub body: Vec<u8>,
}

impl StreamTiming {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The time to first token the function itself measured: `timeToFirstTokenMs` of the
    /// closing `gateway` event of a `/v1/converse-stream` answer.
    pub fn reported_ttft(&self) -> Option<Duration> {
        let text = String::from_utf8_lossy(&self.body);
        let line = text.split("event: gateway\ndata: ").nth(1)?.lines().next()?;
        let summary: serde_json::Value = serde_json::from_str(line).ok()?;
        summary["timeToFirstTokenMs"].as_u64().map(Duration::from_millis)
    }
}

/// Whether `marker` occurs followed by something other than a closing quote: a content event's
/// name, or a `"content":"` that opens a non-empty string (a role chunk's `"content":""` is
/// not content yet).
fn has_content(bytes: &[u8], marker: &[u8]) -> bool {
    bytes.windows(marker.len() + 1).any(|w| w.starts_with(marker) && w[marker.len()] != b'"')
}

/// POSTs and reads the answer as it arrives, noting when its first byte and the first
/// occurrence of `marker` (the first content event's name) come in.
pub fn post_streamed(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
    marker: &[u8],
) -> Result<StreamTiming> {
    use std::io::Read;
    let started = Instant::now();
    let mut request = agent.post(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.send(body)?;
    let status = response.status().as_u16();
    let response_headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let mut reader = response.body_mut().with_config().limit(64 * 1024 * 1024).reader();
    let (mut first_byte, mut first_token) = (None, None);
    let mut received = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        first_byte.get_or_insert_with(|| started.elapsed());
        // The marker may straddle two reads: search from just before the new bytes.
        let from = received.len().saturating_sub(marker.len() + 1);
        received.extend_from_slice(&chunk[..n]);
        if first_token.is_none() && has_content(&received[from..], marker) {
            first_token = Some(started.elapsed());
        }
    }
    Ok(StreamTiming {
        status,
        headers: response_headers,
        first_byte,
        first_token,
        total: started.elapsed(),
        body: received,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_a_marker_not_followed_by_an_empty_string() {
        let marker = br#""content":""#;
        assert!(!has_content(br#"data: {"delta":{"content":"","role":"assistant"}}"#, marker));
        assert!(has_content(br#"data: {"delta":{"content":"Hi"}}"#, marker));
        assert!(has_content(b"event: contentBlockDelta\ndata: {}", b"event: contentBlockDelta"));
        assert!(!has_content(b"event: contentBlock", b"event: contentBlockDelta"));
    }

    #[test]
    fn free_ports_are_bindable() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
