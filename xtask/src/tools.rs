//! Python-based tools, each in its own virtualenv under `.tools/` because their
//! boto/botocore pins conflict with one another.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::Result;
use crate::paths;
use crate::process::run_checked;

#[derive(Debug, Clone, Copy)]
pub struct Venv {
    pub name: &'static str,
    /// pip requirement specifiers. Top-level packages are pinned so that CI and every
    /// developer get the versions the project was verified with.
    pub requirements: &'static [&'static str],
    /// An executable whose presence shows that the install finished.
    pub probe: &'static str,
}

pub const MOTO: Venv = Venv {
    name: "venv-moto",
    requirements: &["moto[server]==5.2.5", "boto3==1.44.5", "pytest==9.2.0"],
    probe: "moto_server",
};

pub const CARGO_LAMBDA: Venv = Venv {
    name: "venv-cargo-lambda",
    // ziglang lives here, not in a separate venv: cargo-lambda finds zig through the
    // `python3` first on PATH, which is this venv's once its bin/ is prepended.
    requirements: &["cargo-lambda==1.9.2", "ziglang==0.17.1"],
    probe: "cargo-lambda",
};

pub const LINT: Venv = Venv {
    name: "venv-lint",
    // aws-sam-translator runs the real SAM transform offline: cfn-lint 1.x only checks SAM
    // resources against schemas.
    requirements: &["cfn-lint==1.58.0", "aws-sam-translator==1.115.0"],
    probe: "cfn-lint",
};

/// The official OpenAI and Anthropic clients, the test of the compatible APIs: code nobody
/// here wrote, pointed at the local stack with `base_url`.
pub const CLIENTS: Venv = Venv {
    name: "venv-clients",
    requirements: &["openai==3.60.0", "anthropic==2.16.0", "pytest==9.2.0"],
    probe: "pytest",
};

pub const ALL: [Venv; 4] = [MOTO, CARGO_LAMBDA, LINT, CLIENTS];

const MARKER_FILE: &str = ".xtask-requirements";

impl Venv {
    pub fn dir(&self) -> PathBuf {
        paths::tools_dir().join(self.name)
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.dir().join("bin")
    }

    pub fn bin(&self, executable: &str) -> PathBuf {
        self.bin_dir().join(executable)
    }

    fn marker_contents(&self) -> String {
        marker_contents(self.requirements)
    }

    fn is_current(&self) -> bool {
        let marker = fs::read_to_string(self.dir().join(MARKER_FILE)).unwrap_or_default();
        marker == self.marker_contents() && self.bin(self.probe).is_file()
    }
}

/// One requirement per line; the marker is compared byte for byte, so any edit to the
/// list (a new package, a new pin) triggers a clean reinstall.
pub fn marker_contents(requirements: &[&str]) -> String {
    let mut contents = requirements.join("\n");
    contents.push('\n');
    contents
}

pub fn ensure(venvs: &[Venv]) -> Result<()> {
    for venv in venvs {
        ensure_one(venv)?;
    }
    Ok(())
}

fn ensure_one(venv: &Venv) -> Result<()> {
    if venv.is_current() {
        println!("tools: {} is up to date", venv.name);
        return Ok(());
    }
    let started = Instant::now();
    println!("tools: installing {} into {} ...", venv.requirements.join(" "), display_relative(&venv.dir()));
    let dir = venv.dir();
    if dir.exists() {
        // A stale or half-finished venv may hold packages the new list no longer wants.
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(paths::tools_dir())?;
    run_checked(Command::new("python3").args(["-m", "venv"]).arg(&dir))
        .map_err(|e| format!("creating {} with `python3 -m venv` failed: {e}", venv.name))?;
    let mut pip = Command::new(venv.bin("python"));
    pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(venv.requirements);
    run_checked(&mut pip).map_err(|e| format!("pip install into {} failed: {e}", venv.name))?;
    // Written last, so an interrupted install is retried from scratch next time.
    fs::write(dir.join(MARKER_FILE), venv.marker_contents())?;
    println!("tools: {} ready in {:.1} s", venv.name, started.elapsed().as_secs_f64());
    Ok(())
}

/// PATH with the given directories in front, so that child processes find the venv tools
/// (and cargo-lambda finds the venv's python3 with ziglang) before anything system-wide.
pub fn path_with(dirs: &[PathBuf]) -> std::ffi::OsString {
    let current = std::env::var_os("PATH").unwrap_or_default();
    let mut all: Vec<PathBuf> = dirs.to_vec();
    all.extend(std::env::split_paths(&current));
    std::env::join_paths(all).unwrap_or(current)
}

/// Debian's Chromium, which the dashboard's browser check drives headless.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Installs Debian's `chromium` package when it is missing. The package lists are refreshed
/// only if the install fails, since a fresh machine may have none and an update is slow.
pub fn ensure_chromium() -> Result<()> {
    if Path::new(CHROMIUM).is_file() {
        return Ok(());
    }
    println!("tools: {CHROMIUM} is missing; installing Debian's chromium package ...");
    let install = || {
        let mut command = Command::new("apt-get");
        command.args(["install", "-y", "chromium"]).env("DEBIAN_FRONTEND", "noninteractive");
        run_checked(&mut command)
    };
    if install().is_err() {
        run_checked(Command::new("apt-get").arg("update"))?;
        install().map_err(|e| format!("could not install chromium (the browser check needs {CHROMIUM}): {e}"))?;
    }
    if !Path::new(CHROMIUM).is_file() {
        return Err(format!("the chromium package installed no {CHROMIUM}").into());
    }
    Ok(())
}

fn display_relative(path: &Path) -> String {
    let root = paths::repo_root();
    path.strip_prefix(&root).unwrap_or(path).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_changes_when_requirements_change() {
        let before = marker_contents(&["moto[server]==5.2.5", "boto3"]);
        let after = marker_contents(&["moto[server]==5.2.5", "boto3", "pytest"]);
        assert_ne!(before, after);
        assert_eq!(before, "moto[server]==5.2.5\nboto3\n");
    }

    #[test]
    fn venv_tools_come_first_on_path() {
        let dir = PathBuf::from("/opt/venv/bin");
        let joined = path_with(std::slice::from_ref(&dir));
        let first = std::env::split_paths(&joined).next();
        assert_eq!(first, Some(dir));
    }
}
