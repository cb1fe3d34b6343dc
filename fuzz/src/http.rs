//! HTTP-level fuzzing of the running functions behind `cargo lambda watch`: mutated bodies,
//! headers, methods and paths, over a plain socket so that nothing in a client library
//! tidies the request up. The oracle needs only the request: a body the core parser
//! rejects or a method other than POST is the caller's mistake and must get a 4xx.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gateway_core::request::ConverseRequest;
use gateway_core::splitmix::SplitMix64;

use crate::json::pick;
use crate::mutate;

/// API Gateway's payload limit is 10 MB; a few hundred KB already crosses every budget of
/// the functions and keeps the run fast.
const MAX_BODY_BYTES: usize = 256 * 1024;

// Each route takes a Converse body, which is what the verdict judges a body by.
const FUNCTIONS: &[(&str, &str)] =
    &[("invoke-with-cache", "/v1/converse"), ("router", "/v1/route"), ("invoke-stream", "/v1/converse-stream")];
const METHODS: &[&str] = &["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "FOO", "post"];
const TENANTS: &[&str] = &["", " ", "ténant", "tab\tin", "a\u{7f}b", "ok-tenant", "x|y", "\u{1F600}"];
const CACHE_MODES: &[&str] = &["on", "off", "refresh", "bypass", "read-only", "", "ON", "sometimes"];
const NUMBERS: &[&str] = &["60", "0", "-5", "1e999", "abc", "99999999999999999999", "3600", " 60"];
const BOOLEANS: &[&str] = &["true", "false", "maybe", "", "TRUE"];
const TIERS: &[&str] = &["haiku", "sonnet", "opus", "gpt", "", "Opus"];
const TOLERANCES: &[&str] = &["0", "10", "100", "-1", "101", "NaN", "inf", "x"];
const CONTENT_TYPES: &[&str] = &["application/json", "text/plain", "application/json; charset=utf-8", "", "*/*"];

#[derive(Debug, Clone)]
pub struct Exchange {
    pub status: u16,
    pub elapsed: Duration,
}

#[derive(Debug)]
pub struct HttpFuzz {
    pub address: SocketAddr,
    pub timeout: Duration,
}

impl HttpFuzz {
    /// One mutated request on the wire, for function `/lambda-url/<name>` of `cargo lambda
    /// watch` (the name is never mutated: an unknown one would make it try to build it).
    pub fn generate(&self, rng: &mut SplitMix64, seeds: &[Vec<u8>]) -> Vec<u8> {
        let (function, route) =
            FUNCTIONS.get(rng.below(FUNCTIONS.len() as u64) as usize).copied().unwrap_or(("router", "/v1/route"));
        let path = match rng.below(10) {
            0 => mutated_path(rng, route),
            _ => route.to_owned(),
        };
        let method = if rng.below(8) == 0 { pick(rng, METHODS) } else { "POST" };
        let seed = seeds.get(rng.below(seeds.len() as u64) as usize).cloned().unwrap_or_default();
        let donor = seeds.get(rng.below(seeds.len() as u64) as usize).cloned().unwrap_or_default();
        let body = if rng.below(6) == 0 { seed } else { mutate::mutate(&seed, &donor, rng) };
        // `cargo lambda watch` answers 500 itself, before the function runs, when a body is
        // not UTF-8 (README); the in-process targets cover invalid UTF-8 instead.
        let mut body = String::from_utf8_lossy(&body).into_owned();
        if body.len() > MAX_BODY_BYTES {
            let mut end = MAX_BODY_BYTES;
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body.truncate(end);
        }

        let mut headers: Vec<(String, String)> = Vec::new();
        let content_type = if rng.below(5) == 0 { pick(rng, CONTENT_TYPES) } else { "application/json" };
        if !content_type.is_empty() {
            headers.push(("content-type".into(), content_type.into()));
        }
        let tenant = match rng.below(4) {
            0 => pick(rng, TENANTS).to_owned(),
            1 => "t".repeat(100 + rng.below(60) as usize),
            _ => format!("fuzz-{}", rng.below(8)),
        };
        headers.push(("x-tenant-id".into(), tenant));
        if rng.below(12) == 0 {
            headers.push(("X-Tenant-Id".into(), format!("second-{}", rng.below(4))));
        }
        let optional: [(&str, &[&str]); 7] = [
            ("x-cache-mode", CACHE_MODES),
            ("x-cache-ttl", NUMBERS),
            ("x-cache-allow-sampling", BOOLEANS),
            ("x-route-min-tier", TIERS),
            ("x-route-max-tier", TIERS),
            ("x-route-quality-tolerance", TOLERANCES),
            ("authorization", &["Bearer x.y.z", "Basic Zm9vOmJhcg==", "", "Bearer "]),
        ];
        for (name, values) in optional {
            if rng.below(6) == 0 {
                headers.push((name.into(), pick(rng, values).into()));
            }
        }
        if rng.below(10) == 0 {
            headers.push((format!("x-unknown-{}", rng.below(100)), "1".into()));
        }

        let mut wire = format!("{method} /lambda-url/{function}{path} HTTP/1.1\r\nhost: {}\r\n", self.address);
        for (name, value) in &headers {
            wire.push_str(&format!("{name}: {value}\r\n"));
        }
        wire.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
        let mut bytes = wire.into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        bytes
    }

    /// Sends one request and reads the whole answer, within the bound.
    pub fn exchange(&self, request: &[u8]) -> Result<Exchange, String> {
        let started = Instant::now();
        let mut stream = TcpStream::connect_timeout(&self.address, Duration::from_secs(5))
            .map_err(|e| format!("cannot connect to {}: {e}", self.address))?;
        let _ = stream.set_nodelay(true);
        stream.set_write_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        // A server may answer and close before reading a body it refuses; the answer counts.
        let _ = stream.write_all(request);
        let mut response = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let remaining = self.timeout.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                return Err(format!("no complete answer within {:?} ({} bytes read)", self.timeout, response.len()));
            }
            stream.set_read_timeout(Some(remaining)).map_err(|e| e.to_string())?;
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => response.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return Err(format!(
                        "no complete answer within {:?} ({} bytes read)",
                        self.timeout,
                        response.len()
                    ));
                }
                Err(e) if response.is_empty() => return Err(format!("connection dropped without an answer: {e}")),
                Err(_) => break,
            }
        }
        let status = parse_status(&response).ok_or_else(|| {
            if response.is_empty() {
                "connection closed without an answer".to_owned()
            } else {
                format!("not an HTTP answer: {:?}", String::from_utf8_lossy(&response[..response.len().min(200)]))
            }
        })?;
        check_complete(&response)?;
        Ok(Exchange { status, elapsed: started.elapsed() })
    }
}

fn mutated_path(rng: &mut SplitMix64, route: &str) -> String {
    match rng.below(10) {
        0 => format!("/anything{route}"),
        1 => format!("{route}/"),
        2 => format!("{route}x"),
        3 => route.to_uppercase(),
        4 => format!("{route}?mode=1&x=%zz"),
        5 => format!("/{route}"),
        6 => route.replacen('c', "%63", 1).replacen('r', "%72", 1),
        7 => String::new(),
        8 => format!("{route}/{}", "a".repeat(rng.below(4000) as usize)),
        _ => "/v1/../v1/converse".to_owned(),
    }
}

fn parse_status(response: &[u8]) -> Option<u16> {
    let line_end = response.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(response.get(..line_end)?).ok()?;
    let mut parts = line.split(' ');
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

/// A `content-length` answer must arrive whole; a shorter one means the server dropped the
/// connection mid-answer.
fn check_complete(response: &[u8]) -> Result<(), String> {
    let Some(head_end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err("the answer's headers never ended".into());
    };
    let head = String::from_utf8_lossy(&response[..head_end]);
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok()).flatten()
    });
    let body = response.len() - head_end - 4;
    match length {
        Some(length) if body < length => Err(format!("answer cut short: {body} of {length} body bytes")),
        _ => Ok(()),
    }
}

/// What a request on the wire asks for, read back from its bytes (so a saved request
/// replays with the same verdict).
struct Asked<'a> {
    method: &'a str,
    body: &'a [u8],
}

fn asked(request: &[u8]) -> Option<Asked<'_>> {
    let head_end = request.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(request.get(..head_end)?).ok()?;
    let method = head.split(' ').next()?;
    Some(Asked { method, body: request.get(head_end + 4..)? })
}

/// The verdict on one exchange: `Err` fails the run.
pub fn judge(request: &[u8], exchange: &Exchange) -> Result<(), String> {
    let asked = asked(request).ok_or("the saved request is not an HTTP request")?;
    let body_rejected = ConverseRequest::from_json(asked.body).is_err();
    let wrong_method = asked.method != "POST";
    let status = exchange.status;
    if status == 500 {
        return Err("500: an internal error".into());
    }
    // `cargo lambda watch` answers CORS preflights itself, before any function runs.
    if asked.method == "OPTIONS" {
        return Ok(());
    }
    if body_rejected || wrong_method {
        let mistake = if wrong_method { "a method other than POST" } else { "a body the core parser rejects" };
        if !(400..500).contains(&status) {
            return Err(format!("{status} for {mistake}; a caller's mistake must be a 4xx"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(status: u16) -> Exchange {
        Exchange { status, elapsed: Duration::ZERO }
    }

    const VALID: &[u8] = b"POST /lambda-url/router/v1/route HTTP/1.1\r\nhost: x\r\n\r\n{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"hi\"}]}]}";

    #[test]
    fn caller_mistakes_must_be_4xx_and_500_is_never_right() {
        assert!(judge(VALID, &exchange(200)).is_ok());
        assert!(judge(VALID, &exchange(503)).is_ok());
        assert!(judge(VALID, &exchange(500)).is_err());
        let bad_body = b"POST /lambda-url/router/v1/route HTTP/1.1\r\n\r\n{\"messages\":";
        assert!(judge(bad_body, &exchange(400)).is_ok());
        assert!(judge(bad_body, &exchange(502)).is_err());
        assert!(judge(bad_body, &exchange(200)).is_err());
        let get = b"GET /lambda-url/router/v1/route HTTP/1.1\r\n\r\n";
        assert!(judge(get, &exchange(405)).is_ok());
        assert!(judge(get, &exchange(200)).is_err());
    }

    #[test]
    fn answers_are_read_whole_or_reported() {
        assert_eq!(parse_status(b"HTTP/1.1 404 Not Found\r\n\r\n"), Some(404));
        assert_eq!(parse_status(b"garbage"), None);
        assert!(check_complete(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nabcde").is_ok());
        assert!(check_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").is_err());
        assert!(check_complete(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn generated_requests_are_well_framed_and_varied() {
        let fuzz = HttpFuzz { address: SocketAddr::from(([127, 0, 0, 1], 9)), timeout: Duration::from_secs(1) };
        let seeds = vec![VALID[VALID.len() - 57..].to_vec()];
        let mut rng = SplitMix64::new(5);
        let requests: Vec<Vec<u8>> = (0..300).map(|_| fuzz.generate(&mut rng, &seeds)).collect();
        for request in &requests {
            let asked = asked(request).unwrap();
            let head = String::from_utf8_lossy(&request[..request.len() - asked.body.len()]).into_owned();
            assert!(head.contains(&format!("content-length: {}\r\n", asked.body.len())));
            assert!(
                ["invoke-with-cache", "router", "invoke-stream"]
                    .iter()
                    .any(|f| head.contains(&format!(" /lambda-url/{f}")))
            );
        }
        assert!(requests.iter().any(|r| asked(r).unwrap().method != "POST"));
        assert!(requests.iter().any(|r| ConverseRequest::from_json(asked(r).unwrap().body).is_ok()));
        assert!(requests.iter().any(|r| ConverseRequest::from_json(asked(r).unwrap().body).is_err()));
    }
}
