//! Shared helpers for the integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests may unwrap (code standard).
#![allow(dead_code)]

use std::path::PathBuf;

/// The directory `tests/vectors/<name>` inside this crate. Vectors are
/// checked into the repository (see each directory's README.md for source
/// and license); nothing is read from outside the repository.
pub fn vectors_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("vectors")
        .join(name);
    assert!(
        dir.is_dir(),
        "test vectors missing: {} (they are part of the repository)",
        dir.display()
    );
    dir
}
