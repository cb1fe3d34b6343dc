//! "One feature set per dependency": every package built on its own (each function under
//! `cargo lambda watch` or `sam build`, the emulator, xtask itself) must resolve each
//! third-party crate to a feature set the whole workspace's build also has. Otherwise that
//! crate, and everything above it in the graph, is compiled once more: the AWS SDK, when the
//! crate is tokio or libc. `workspace-hack/Cargo.toml` is where the missing features go.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use crate::Result;
use crate::process::run_captured;
use crate::stack::{self, cargo};

/// `name version` → the distinct feature lists it is built with (a crate used both as a normal
/// and as a build dependency can have two).
type Resolution = BTreeMap<String, BTreeSet<String>>;

/// The package sets built by a command of their own besides the workspace-wide test build:
/// xtask (`cargo xtask` compiles itself first), each function (`cargo lambda watch`, `sam
/// build`), and the servers and functions `cargo xtask test` builds in one command.
fn separately_built() -> Vec<Vec<&'static str>> {
    let mut groups = vec![vec!["xtask"]];
    let mut packages: Vec<&'static str> = stack::FUNCTION_BINARIES.iter().map(|b| stack::package_of(b)).collect();
    packages.dedup();
    groups.extend(packages.iter().map(|package| vec![*package]));
    let mut servers = vec![stack::EMULATOR_BINARY, stack::FUZZ_BINARY, stack::LOADGEN_PACKAGE];
    servers.extend(packages);
    groups.push(servers);
    groups
}

/// A crate whose feature set in `package` is not one the workspace build makes.
#[derive(Debug, PartialEq, Eq)]
pub struct Divergence {
    pub package: String,
    pub krate: String,
    pub features: String,
    pub workspace: Vec<String>,
}

pub fn check() -> Result<Vec<Divergence>> {
    let workspace = resolve(&["--workspace", "-e", "normal,build,dev"])?;
    let mut divergences = Vec::new();
    for group in separately_built() {
        let mut args: Vec<&str> = group.iter().flat_map(|package| ["-p", *package]).collect();
        args.extend(["-e", "normal,build"]);
        let own = resolve(&args)?;
        divergences.extend(compare(&group.join(" + "), &own, &workspace));
    }
    Ok(divergences)
}

fn compare(package: &str, own: &Resolution, workspace: &Resolution) -> Vec<Divergence> {
    let mut divergences = Vec::new();
    for (krate, lists) in own {
        let known = workspace.get(krate);
        for features in lists {
            if !known.is_some_and(|k| k.contains(features)) {
                divergences.push(Divergence {
                    package: package.to_string(),
                    krate: krate.clone(),
                    features: features.clone(),
                    workspace: known.map(|k| k.iter().cloned().collect()).unwrap_or_default(),
                });
            }
        }
    }
    divergences
}

fn resolve(args: &[&str]) -> Result<Resolution> {
    let mut command: Command = cargo();
    command.args(["tree", "--prefix", "none", "--format", "{p} {f}"]).args(args).current_dir(crate::paths::repo_root());
    let (status, lines) = run_captured(&mut command, false)?;
    if !status.success() {
        return Err(format!("cargo tree {} failed: {}", args.join(" "), lines.join("\n")).into());
    }
    Ok(parse(&lines))
}

/// Lines of `cargo tree --prefix none --format "{p} {f}"`: `tokio v1.54.1 fs,net (*)`,
/// `serde_derive v1.0.229 (proc-macro) default`; workspace members (a path in parentheses)
/// are left out, since they are compiled per command anyway.
fn parse(lines: &[String]) -> Resolution {
    let mut resolution = Resolution::new();
    for line in lines {
        let mut words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 2 || words.iter().any(|w| w.starts_with("(/")) {
            continue;
        }
        if words.last() == Some(&"(*)") {
            words.pop();
        }
        let krate = format!("{} {}", words[0], words[1]);
        let features = words[2..].iter().filter(|w| !w.starts_with('(')).copied().collect::<Vec<_>>().join(",");
        resolution.entry(krate).or_default().insert(features);
    }
    resolution
}

pub fn render(divergences: &[Divergence]) -> String {
    let mut text = String::new();
    for d in divergences {
        text.push_str(&format!(
            "  {} builds {} with [{}]; the workspace with {}\n",
            d.package,
            d.krate,
            d.features,
            d.workspace.iter().map(|w| format!("[{w}]")).collect::<Vec<_>>().join(" or ")
        ));
    }
    if !text.is_empty() {
        text.push_str("  add the workspace's features of these crates to workspace-hack/Cargo.toml\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn members_and_markers_are_left_out() {
        let parsed = parse(&lines(
            "gateway-core v0.1.0 (/w/shared) aws,default\ntokio v1.54.1 fs,net\ntokio v1.54.1 fs,net (*)\n\
             serde_derive v1.0.229 (proc-macro) default\nlibc v0.2.191 default,std\nlibc v0.2.191 default,extra_traits,std",
        ));
        assert!(!parsed.keys().any(|k| k.starts_with("gateway-core")));
        assert_eq!(parsed["tokio v1.54.1"].len(), 1);
        assert!(parsed["serde_derive v1.0.229"].contains("default"));
        assert_eq!(parsed["libc v0.2.191"].len(), 2);
    }

    #[test]
    fn a_feature_set_the_workspace_lacks_is_a_divergence() {
        let workspace = parse(&lines("tokio v1.54.1 fs,net,test-util\nlibc v0.2.191 default,std"));
        let alone = parse(&lines("tokio v1.54.1 fs,net\nlibc v0.2.191 default,std"));
        let found = compare("invoke-with-cache", &alone, &workspace);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].krate, "tokio v1.54.1");
        assert!(render(&found).contains("workspace-hack/Cargo.toml"));
        assert!(compare("router", &workspace, &workspace).is_empty());
    }
}
