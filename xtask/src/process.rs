//! Process supervision shared by `stack`, `demo` and `test`.
//!
//! Every server runs in its own process group, so that a Ctrl-C in the terminal reaches
//! only xtask, which then stops the servers in order instead of racing them. Shutdown
//! signals whole groups and also every descendant found in /proc, because `cargo lambda
//! watch` starts the function under a process group of its own.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::Result;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How long servers get to exit after SIGTERM before they are killed.
const TERM_GRACE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(100);

/// Ctrl-C, SIGTERM and SIGHUP only raise a flag; the command polls it and unwinds, so the
/// supervisor's Drop always runs.
pub fn install_interrupt_handler() -> Result<()> {
    ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst))?;
    Ok(())
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        return Err("interrupted".into());
    }
    Ok(())
}

/// Sleeps in short slices so that an interrupt is noticed promptly.
pub fn sleep_interruptibly(duration: Duration) -> Result<()> {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        check_interrupted()?;
        thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
    Ok(())
}

pub fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

pub fn run_status(command: &mut Command) -> Result<ExitStatus> {
    println!("$ {}", describe(command));
    command.stdin(Stdio::null()).status().map_err(|e| format!("could not run `{}`: {e}", describe(command)).into())
}

pub fn run_checked(command: &mut Command) -> Result<()> {
    let status = run_status(command)?;
    if !status.success() {
        return Err(format!("`{}` exited with {status}", describe(command)).into());
    }
    Ok(())
}

/// Runs a command, echoing its output as it arrives and keeping it for parsing
/// (test summaries, JSON printed by `cargo lambda invoke`).
pub fn run_captured(command: &mut Command, echo: bool) -> Result<(ExitStatus, Vec<String>)> {
    println!("$ {}", describe(command));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run `{}`: {e}", describe(command)))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (status, mut lines, err_lines) = thread::scope(|scope| {
        let out = scope.spawn(move || forward_lines(stdout, echo, false));
        let err = scope.spawn(move || forward_lines(stderr, echo, true));
        let status = child.wait();
        (status, out.join().unwrap_or_default(), err.join().unwrap_or_default())
    });
    lines.extend(err_lines);
    Ok((status?, lines))
}

fn forward_lines<R: Read>(source: Option<R>, echo: bool, to_stderr: bool) -> Vec<String> {
    let Some(source) = source else {
        return Vec::new();
    };
    let mut reader = BufReader::new(source);
    let mut lines = Vec::new();
    let mut buffer = Vec::new();
    // Lossy decoding: a tool printing invalid UTF-8 must not cut the capture short.
    while reader.read_until(b'\n', &mut buffer).unwrap_or(0) > 0 {
        let line = String::from_utf8_lossy(&buffer).trim_end().to_string();
        if echo {
            if to_stderr {
                let _ = writeln!(std::io::stderr(), "{line}");
            } else {
                let _ = writeln!(std::io::stdout(), "{line}");
            }
        }
        lines.push(line);
        buffer.clear();
    }
    lines
}

/// Where a supervised server's output goes.
#[derive(Debug, Clone)]
pub enum Output {
    Inherit,
    Log(PathBuf),
}

#[derive(Debug)]
struct Supervised {
    name: String,
    child: Child,
    log: Option<PathBuf>,
}

/// Owns the long-running servers; dropping it stops them all, including on error paths.
#[derive(Debug, Default)]
pub struct Supervisor {
    children: Vec<Supervised>,
}

impl Supervisor {
    pub fn spawn(&mut self, name: &str, mut command: Command, output: &Output) -> Result<()> {
        command.stdin(Stdio::null()).process_group(0);
        let log = match output {
            Output::Inherit => None,
            Output::Log(path) => {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)?;
                }
                let file = File::create(path)?;
                command.stdout(file.try_clone()?).stderr(file);
                Some(path.clone())
            }
        };
        let child = command.spawn().map_err(|e| format!("could not start {name} (`{}`): {e}", describe(&command)))?;
        self.children.push(Supervised { name: name.to_string(), child, log });
        Ok(())
    }

    /// A server that died must be reported as such, not waited on until a timeout.
    pub fn check_running(&mut self) -> Result<()> {
        for supervised in &mut self.children {
            if let Some(status) = supervised.child.try_wait()? {
                let hint = supervised.log.as_ref().map(|log| format!("; see {}", log.display())).unwrap_or_default();
                return Err(format!("{} exited unexpectedly ({status}){hint}", supervised.name).into());
            }
        }
        Ok(())
    }

    pub fn log_of(&self, name: &str) -> Option<PathBuf> {
        self.children.iter().find(|s| s.name == name).and_then(|s| s.log.clone())
    }

    pub fn shutdown(&mut self) {
        if self.children.is_empty() {
            return;
        }
        // The tree is recorded before anything is signalled: once a server exits, its
        // children are re-parented and could no longer be found.
        let table = process_table();
        let own_group = own_process_group(&table);
        let mut pids = BTreeSet::new();
        let mut server_groups = BTreeSet::new();
        let mut all_groups = BTreeSet::new();
        for supervised in &self.children {
            let root = supervised.child.id();
            pids.insert(root);
            // process_group(0) made each server the leader of a group named after it.
            server_groups.insert(root);
            all_groups.insert(root);
            for info in descendants(&table, root) {
                pids.insert(info.pid);
                all_groups.insert(info.pgid);
            }
        }
        if let Some(own) = own_group {
            all_groups.remove(&own);
        }
        // Only the servers' own groups get SIGTERM, so a server that manages children
        // (cargo lambda watch) can stop them itself; whatever it leaves is killed below.
        send_signal("TERM", &server_groups, &BTreeSet::new());
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline && self.any_alive(&pids) {
            thread::sleep(POLL);
        }
        if self.any_alive(&pids) {
            let survivors: BTreeSet<u32> = pids.iter().copied().filter(|p| is_alive(*p)).collect();
            send_signal("KILL", &all_groups, &survivors);
        }
        for supervised in &mut self.children {
            let _ = supervised.child.kill();
            let _ = supervised.child.wait();
        }
        let names: Vec<&str> = self.children.iter().map(|s| s.name.as_str()).collect();
        println!("stack: stopped {}", names.join(", "));
        self.children.clear();
    }

    fn any_alive(&mut self, pids: &BTreeSet<u32>) -> bool {
        // Reaping our own children first, or they would linger as zombies and look alive.
        for supervised in &mut self.children {
            let _ = supervised.child.try_wait();
        }
        pids.iter().any(|pid| is_alive(*pid))
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn send_signal(signal: &str, groups: &BTreeSet<u32>, pids: &BTreeSet<u32>) {
    let mut targets: Vec<String> = groups.iter().map(|g| format!("-{g}")).collect();
    targets.extend(pids.iter().map(u32::to_string));
    if targets.is_empty() {
        return;
    }
    // /bin/kill instead of libc: the workspace forbids unsafe code, and processes that are
    // already gone only make it print to the discarded stderr.
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .args(&targets)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub state: char,
}

/// Parses `/proc/<pid>/stat`. The command name is in parentheses and may itself contain
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<ProcInfo> {
    let (head, tail) = line.rsplit_once(')')?;
    let pid = head.split_whitespace().next()?.parse().ok()?;
    let mut fields = tail.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some(ProcInfo { pid, ppid, pgid, state })
}

fn process_table() -> Vec<ProcInfo> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|entry| fs::read_to_string(entry.path().join("stat")).ok())
        .filter_map(|line| parse_stat(&line))
        .collect()
}

fn own_process_group(table: &[ProcInfo]) -> Option<u32> {
    let own = std::process::id();
    table.iter().find(|p| p.pid == own).map(|p| p.pgid)
}

/// All transitive children of `root` in a process-table snapshot.
pub fn descendants(table: &[ProcInfo], root: u32) -> Vec<ProcInfo> {
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for info in table.iter().filter(|p| p.ppid == parent) {
            if !found.iter().any(|f: &ProcInfo| f.pid == info.pid) {
                found.push(*info);
                frontier.push(info.pid);
            }
        }
    }
    found
}

fn is_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(line) => parse_stat(&line).is_some_and(|info| info.state != 'Z' && info.state != 'X'),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let info = parse_stat("4242 (cargo (lambda) x) S 4000 4242 4000 0 -1 4194560 0").unwrap();
        assert_eq!(info, ProcInfo { pid: 4242, ppid: 4000, pgid: 4242, state: 'S' });
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn finds_grandchildren_in_other_groups() {
        let p = |pid, ppid, pgid| ProcInfo { pid, ppid, pgid, state: 'S' };
        let table = vec![p(1, 0, 1), p(10, 1, 10), p(11, 10, 10), p(12, 11, 12), p(20, 1, 20)];
        let mut pids: Vec<u32> = descendants(&table, 10).iter().map(|i| i.pid).collect();
        pids.sort_unstable();
        assert_eq!(pids, vec![11, 12]);
    }

    #[test]
    fn supervisor_drop_stops_the_whole_group() {
        let mut supervisor = Supervisor::default();
        let mut command = Command::new("sh");
        // A background grandchild in the same group: it must not outlive the supervisor.
        command.args(["-c", "sleep 30 & exec sleep 30"]);
        supervisor.spawn("sleeper", command, &Output::Inherit).unwrap();
        thread::sleep(Duration::from_millis(200));
        let root = supervisor.children[0].child.id();
        let tree: Vec<u32> = descendants(&process_table(), root).iter().map(|i| i.pid).collect();
        assert!(!tree.is_empty());
        drop(supervisor);
        assert!(tree.iter().all(|pid| !is_alive(*pid)));
        assert!(!is_alive(root));
    }
}
