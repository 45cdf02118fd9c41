//! Where the policy bundle comes from: the configured directory, or the demo bundle built into
//! the binary (so that `writ serve` with no arguments has a policy).

use std::path::Path;

use anyhow::Context as _;
use writ_policy::PolicyBundle;

use crate::config::Config;

/// The demo bundle's files (`policies/demo` in the repository), embedded at build time.
pub const DEMO_BUNDLE: &[(&str, &str)] = &[
    (
        "agents.cedar",
        include_str!("../../../policies/demo/agents.cedar"),
    ),
    (
        "certification.cedar",
        include_str!("../../../policies/demo/certification.cedar"),
    ),
    (
        "credentials.cedar",
        include_str!("../../../policies/demo/credentials.cedar"),
    ),
    (
        "exceptions.cedar",
        include_str!("../../../policies/demo/exceptions.cedar"),
    ),
    (
        "guardrails.cedar",
        include_str!("../../../policies/demo/guardrails.cedar"),
    ),
    (
        "remediations.toml",
        include_str!("../../../policies/demo/remediations.toml"),
    ),
    (
        "requests.cedar",
        include_str!("../../../policies/demo/requests.cedar"),
    ),
    (
        "rollbacks.cedar",
        include_str!("../../../policies/demo/rollbacks.cedar"),
    ),
    (
        "tokens.cedar",
        include_str!("../../../policies/demo/tokens.cedar"),
    ),
    (
        "writ.cedarschema",
        include_str!("../../../policies/demo/writ.cedarschema"),
    ),
];

/// Loads the configured bundle, or the built-in demo bundle when none is configured.
pub fn load(config: &Config) -> anyhow::Result<PolicyBundle> {
    match &config.policy.bundle {
        Some(dir) => load_dir(dir),
        None => {
            let bundle = demo()?;
            tracing::warn!(
                bundle = %bundle.hash(),
                "no [policy] bundle configured: using the built-in demo bundle (policies/demo)"
            );
            Ok(bundle)
        }
    }
}

/// The built-in demo bundle.
pub fn demo() -> anyhow::Result<PolicyBundle> {
    let dir = tempfile::tempdir().context("cannot materialise the demo policy bundle")?;
    for (name, text) in DEMO_BUNDLE {
        std::fs::write(dir.path().join(name), text)?;
    }
    load_dir(dir.path())
}

/// Loads a bundle directory, with every problem named on failure.
pub fn load_dir(dir: &Path) -> anyhow::Result<PolicyBundle> {
    PolicyBundle::load_dir(dir)
        .map_err(|err| anyhow::anyhow!("policy bundle {} refused:\n{err}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded list must be the demo directory, file for file.
    #[test]
    fn embedded_demo_bundle_matches_the_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/demo");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = DEMO_BUNDLE.iter().map(|(name, _)| *name).collect();
        assert_eq!(on_disk, embedded);
        let from_disk = PolicyBundle::load_dir(&dir).unwrap();
        let config = Config::default();
        assert_eq!(load(&config).unwrap().hash(), from_disk.hash());
    }
}
