//! Shared helpers for the integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests may unwrap (code standard).
#![allow(dead_code)]

use std::path::PathBuf;

/// Finds `shared/vectors/<name>` by walking up from the crate root, so the
/// tests work both in a standalone checkout and inside the writ workspace
/// (`crates/writ-ledger`).
pub fn vectors_dir(name: &str) -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let candidate = dir.join("shared").join("vectors").join(name);
        if candidate.is_dir() {
            return candidate;
        }
        if !dir.pop() {
            panic!(
                "could not find shared/vectors/{name} above {}",
                env!("CARGO_MANIFEST_DIR")
            );
        }
    }
}
