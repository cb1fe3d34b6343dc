use std::path::{Path, PathBuf};

/// The workspace root. xtask is always built from this checkout, so the compile-time
/// manifest directory is reliable and does not depend on the caller's working directory.
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
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
