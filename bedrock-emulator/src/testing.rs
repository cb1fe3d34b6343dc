//! What tests of the emulator's batch jobs need around it (feature `test-support`): a moto
//! server of their own for S3 and EventBridge, and a configuration whose jobs walk their
//! statuses in a fraction of a second.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::EmulatorConfig;

/// How long a starting moto may take to listen before the start is a failure.
const MOTO_START: Duration = Duration::from_secs(30);

/// A `moto_server` child process on a free port of 127.0.0.1, killed on drop. Its binary is
/// `$MOTO_SERVER`, else the repository's `.tools/venv-moto/bin/moto_server`.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    url: String,
}

impl MotoServer {
    pub fn start() -> io::Result<MotoServer> {
        MotoServer::start_with_env(&[])
    }

    /// Started with moto's own settings in its environment, e.g. `S3_UPLOAD_PART_MIN_SIZE`.
    pub fn start_with_env(vars: &[(&str, &str)]) -> io::Result<MotoServer> {
        let bin = std::env::var_os("MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv-moto/bin/moto_server"));
        // Bound and released at once: a race with another process for the port is possible
        // but only costs this start.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("start {}: {e} (set MOTO_SERVER)", bin.display())))?;
        // From here on, dropping `moto` kills the child, whatever happens next.
        let mut moto = MotoServer { child, url: format!("http://127.0.0.1:{port}") };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = moto.child.try_wait()? {
                return Err(io::Error::other(format!("moto_server exited before listening: {status}")));
            }
            if started.elapsed() > MOTO_START {
                return Err(io::Error::new(io::ErrorKind::TimedOut, format!("moto did not listen on {port}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(moto)
    }

    /// The child's process ID, for a test that pauses moto (`kill -STOP`) to stall a call.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`-STOP`, `-CONT`, ...) to moto: how a test stalls every call to it.
    pub fn signal(&self, signal: &str) -> io::Result<()> {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status()?;
        if status.success() { Ok(()) } else { Err(io::Error::other(format!("kill {signal} {}: {status}", self.pid()))) }
    }

    /// The endpoint for every service moto serves, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An instant emulator whose batch jobs use `moto` and move on every 50 ms, answer records
/// without delay and accept jobs of 3 records or more.
pub fn fast_batch_config(moto: &MotoServer) -> EmulatorConfig {
    let mut config = EmulatorConfig::instant();
    config.batch.s3_endpoint_url = Some(moto.url.clone());
    config.batch.eventbridge_endpoint_url = Some(moto.url.clone());
    config.batch.submitted_seconds = 0.05;
    config.batch.validating_seconds = 0.05;
    config.batch.scheduled_seconds = 0.05;
    config.batch.record_seconds = 0.0;
    config.batch.min_records_per_job = 3;
    config
}
