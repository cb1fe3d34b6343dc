use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static ROOT: OnceLock<PathBuf> = OnceLock::new();

/// The workspace root of the checkout xtask runs in, found at run time. The compile-time
/// manifest directory would name the tree the binary was first built in, so a copied or
/// moved checkout (with its `target/`) would start the other tree's binaries, venvs and logs.
pub fn repo_root() -> PathBuf {
    ROOT.get_or_init(|| discover().unwrap_or_else(|| std::env::current_dir().unwrap_or_default())).clone()
}

/// The root as `main` resolves it before any command runs, so that a run outside a checkout
/// fails with a clear message instead of writing logs into some unrelated directory.
pub fn resolve_root() -> crate::Result<PathBuf> {
    let root = discover().ok_or(
        "cannot find the workspace: run `cargo xtask` inside a checkout (a directory whose Cargo.toml \
         has a [workspace] listing xtask, or below it)",
    )?;
    Ok(ROOT.get_or_init(|| root).clone())
}

fn discover() -> Option<PathBuf> {
    // `cargo run` sets CARGO_MANIFEST_DIR for the process to the manifest of the package it
    // resolved from the caller's directory: the checkout being worked on, even from a subdirectory.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let current_dir = std::env::current_dir().ok();
    find_workspace_root([manifest_dir, current_dir].into_iter().flatten())
}

/// The first directory, from each start in turn and up through its ancestors, whose
/// `Cargo.toml` declares a workspace with xtask among its members. Package manifests
/// (`shared/Cargo.toml`) and unrelated workspaces on the way are skipped.
pub fn find_workspace_root(starts: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    starts.into_iter().find_map(|start| start.ancestors().find(|dir| is_xtask_workspace(dir)).map(Path::to_path_buf))
}

fn is_xtask_workspace(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
        return false;
    };
    let Ok(manifest) = toml::from_str::<toml::Table>(&text) else {
        return false;
    };
    manifest
        .get("workspace")
        .and_then(|workspace| workspace.get("members"))
        .and_then(toml::Value::as_array)
        .is_some_and(|members| {
            members
                .iter()
                .filter_map(toml::Value::as_str)
                .any(|m| m.trim_start_matches("./").trim_end_matches('/') == "xtask")
        })
}

pub fn tools_dir() -> PathBuf {
    repo_root().join(".tools")
}

/// Honours `CARGO_TARGET_DIR` so that the binaries we start are the ones `cargo build` wrote.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => repo_root().join(dir),
        _ => repo_root().join("target"),
    }
}

/// Server logs live under target/ so they are ignored by git and removed by `cargo clean`.
pub fn logs_dir() -> PathBuf {
    target_dir().join("xtask-logs")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway directory tree under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("xtask-paths-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn write(&self, relative: &str, text: &str) -> PathBuf {
            let path = self.0.join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Finding 8 of issue 8: a copy of the checkout must resolve to itself, not to the tree
    /// this test binary was compiled in.
    #[test]
    fn a_copied_checkout_resolves_to_itself_from_any_subdirectory() {
        let scratch = Scratch::new("copy");
        let real_manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
        scratch.write("copy/Cargo.toml", &real_manifest);
        scratch.write("copy/xtask/Cargo.toml", "[package]\nname = \"xtask\"\n");
        scratch.write("copy/shared/Cargo.toml", "[package]\nname = \"gateway-core\"\n");
        let deep = scratch.0.join("copy/shared/src/routing");
        std::fs::create_dir_all(&deep).unwrap();
        let copy = scratch.0.join("copy");

        assert_eq!(find_workspace_root([copy.join("xtask")]), Some(copy.clone()));
        assert_eq!(find_workspace_root([deep]), Some(copy));
    }

    #[test]
    fn workspaces_without_xtask_and_missing_starts_are_skipped() {
        let scratch = Scratch::new("skip");
        scratch.write("outer/Cargo.toml", "[workspace]\nmembers = [\"./xtask/\", \"inner\"]\n");
        scratch.write("outer/inner/Cargo.toml", "[workspace]\nmembers = [\"lib\"]\n");
        scratch.write("outer/inner/lib/Cargo.toml", "not = [valid toml");
        let outer = scratch.0.join("outer");
        assert_eq!(find_workspace_root([outer.join("inner/lib")]), Some(outer.clone()));
        // A start that finds nothing (outside any checkout) gives way to the next one.
        assert_eq!(find_workspace_root([scratch.0.join("elsewhere"), outer.join("inner")]), Some(outer));
        assert_eq!(find_workspace_root([scratch.0.clone()]), None);
    }

    #[test]
    fn this_checkout_is_found_from_the_environment_cargo_gives_tests() {
        let root = resolve_root().unwrap();
        assert!(root.join("xtask").join("Cargo.toml").is_file());
        assert_eq!(root, repo_root());
    }
}
