//! No code: this crate exists for its `Cargo.toml` (see there), which unifies the features of
//! third-party crates across every build of the workspace.
