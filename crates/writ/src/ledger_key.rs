//! Finding the checkpoint signing key for commands that write to the ledger or check it.

use std::path::Path;

use anyhow::Context as _;
use writ_engine::keys;
use writ_ledger::{SignerKey, VerifierKey};

use crate::config::{Config, DEFAULT_SIGNING_KEY};

/// Loads the signing key. When the configured path is the default one, no key exists yet and
/// the ledger holds no checkpoint, creates it (first run of `writ serve` with no arguments);
/// any other missing key is an error. A ledger with checkpoints was signed by a key that must
/// be restored, never replaced: a new key would sign over whatever the database now holds.
pub fn signer_for_serving(config: &Config, ledger_is_signed: bool) -> anyhow::Result<SignerKey> {
    let path = &config.ledger.signing_key;
    if !path.exists() && ledger_is_signed {
        anyhow::bail!(
            "the ledger signing key {} is missing, and the ledger already holds checkpoints signed with it: restore the key from its backup (a new key is never made for a signed ledger)",
            path.display()
        );
    }
    if !path.exists() && path == Path::new(DEFAULT_SIGNING_KEY) {
        let verifier = keys::init(path, &config.ledger.origin)?;
        tracing::warn!(
            key = %path.display(),
            public_key = verifier.to_text(),
            "created a new ledger signing key; back it up, and give its .pub file to auditors"
        );
    }
    keys::load_signer(path).with_context(|| {
        format!(
            "cannot load the ledger signing key (create one with `writ keys init --key {}`)",
            path.display()
        )
    })
}

/// The public key to verify with: `--key FILE` when given, else the configured key's `.pub`
/// file, else derived from the configured private key.
pub fn verifier(config: &Config, explicit: Option<&Path>) -> anyhow::Result<VerifierKey> {
    if let Some(path) = explicit {
        return Ok(keys::load_verifier(path)?);
    }
    let public = keys::public_key_path(&config.ledger.signing_key);
    if public.exists() {
        return Ok(keys::load_verifier(&public)?);
    }
    let signer = keys::load_signer(&config.ledger.signing_key).with_context(
        || "no public key given (--key FILE) and no configured signing key to derive one from",
    )?;
    Ok(signer.verifier_key()?)
}
