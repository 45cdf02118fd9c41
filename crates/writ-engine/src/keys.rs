//! The checkpoint signing key, kept in files (never in the database).
//!
//! The private key file holds the signed-note private key text
//! (`PRIVATE+KEY+<origin>+<hash>+<base64>`) and is created with mode 0600; the public key,
//! which auditors need, sits beside it with a `.pub` suffix. The key's name is the ledger's
//! origin line in every checkpoint.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use writ_ledger::{SignerKey, VerifierKey, WitnessKey, WitnessVerifier, generate_key};

/// Why a key could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file already exists; writ never overwrites one.
    #[error("{path} already exists; refusing to overwrite a signing key")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A key file does not hold a valid key.
    #[error("{path}: not a valid {what}: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which kind of key was expected.
        what: &'static str,
        /// Why it is invalid.
        detail: String,
    },
    /// The key name (origin) is not acceptable.
    #[error("invalid ledger origin {origin:?}: {detail}")]
    Origin {
        /// The origin asked for.
        origin: String,
        /// Why it was refused.
        detail: String,
    },
    /// The operating system's random source failed.
    #[error("no randomness available: {0}")]
    Random(String),
    /// The private key file can be read by other users: refused, since whoever reads it can
    /// sign checkpoints.
    #[error(
        "{path} is readable by group or others; chmod 600 it (refusing to sign with a key others can read)"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
    },
}

/// The public key file that belongs to a private key file.
pub fn public_key_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Generates a new key named `origin` and writes it to `private` (mode 0600) and
/// `private.pub`. Refuses to overwrite either file.
pub fn init(private: &Path, origin: &str) -> Result<VerifierKey, KeyError> {
    write_new_key(private, origin, |seed| {
        let (signer, verifier) = generate_key(origin, seed).map_err(|err| err.to_string())?;
        Ok((signer.to_text(), verifier.to_text().to_owned(), verifier))
    })
}

/// Generates a witness's co-signing key named `name` (C2SP `tlog-cosignature`) and writes it to
/// `private` (mode 0600) and `private.pub` (the vkey logs and auditors are given). Refuses to
/// overwrite either file.
pub fn init_witness(private: &Path, name: &str) -> Result<WitnessVerifier, KeyError> {
    write_new_key(private, name, |seed| {
        let key = WitnessKey::generate(name, seed).map_err(|err| err.to_string())?;
        let verifier = key.verifier();
        Ok((key.to_text(), verifier.to_text(), verifier))
    })
}

/// Makes a key named `name` from a fresh seed with `make` (private text, public text, the
/// public key) and writes `private` (0600) and `private.pub` (0644), refusing to overwrite
/// either. The seed is zeroed once used.
// Key generation: the seed must come from the OS random source.
#[allow(clippy::disallowed_methods)]
fn write_new_key<V>(
    private: &Path,
    name: &str,
    make: impl FnOnce([u8; 32]) -> Result<(String, String, V), String>,
) -> Result<V, KeyError> {
    let public = public_key_path(private);
    for path in [private, public.as_path()] {
        if path.exists() {
            return Err(KeyError::Exists {
                path: path.to_owned(),
            });
        }
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|err| KeyError::Random(err.to_string()))?;
    let made = make(seed);
    seed.fill(0);
    let (private_text, public_text, verifier) = made.map_err(|detail| KeyError::Origin {
        origin: name.to_owned(),
        detail,
    })?;
    write_file(private, &private_text, 0o600)?;
    write_file(&public, &public_text, 0o644)?;
    Ok(verifier)
}

/// Loads a witness's private co-signing key. Refuses a file readable by group or others.
pub fn load_witness_key(path: &Path) -> Result<WitnessKey, KeyError> {
    refuse_exposed(path)?;
    let text = read_key_text(path)?;
    WitnessKey::parse(&text).map_err(|err| KeyError::Invalid {
        path: path.to_owned(),
        what: "witness private key",
        detail: err.to_string(),
    })
}

/// Loads a witness's public key (its vkey), from a file or given as the text itself.
pub fn load_witness_verifier(path_or_text: &str) -> Result<WitnessVerifier, KeyError> {
    let path = Path::new(path_or_text);
    let text = if path.exists() {
        read_key_text(path)?
    } else {
        path_or_text.trim().to_owned()
    };
    WitnessVerifier::parse(&text).map_err(|err| KeyError::Invalid {
        path: path.to_owned(),
        what: "witness public key",
        detail: err.to_string(),
    })
}

fn refuse_exposed(path: &Path) -> Result<(), KeyError> {
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        return Err(KeyError::Exposed {
            path: path.to_owned(),
        });
    }
    Ok(())
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)
}

fn read_key_text(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })
}

/// Loads the private signing key. Refuses a file readable by group or others.
pub fn load_signer(path: &Path) -> Result<SignerKey, KeyError> {
    refuse_exposed(path)?;
    let text = read_key_text(path)?;
    SignerKey::parse(&text).map_err(|err| KeyError::Invalid {
        path: path.to_owned(),
        what: "signed-note private key",
        detail: err.to_string(),
    })
}

/// Loads a public (verifier) key from a file. A private key file is refused, so that an
/// auditor's command line never needs the secret.
pub fn load_verifier(path: &Path) -> Result<VerifierKey, KeyError> {
    let text = read_key_text(path)?;
    if text.starts_with("PRIVATE+KEY+") {
        return Err(KeyError::Invalid {
            path: path.to_owned(),
            what: "public key",
            detail: "this is a private key; give the .pub file".into(),
        });
    }
    VerifierKey::parse(&text).map_err(|err| KeyError::Invalid {
        path: path.to_owned(),
        what: "signed-note public key",
        detail: err.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_a_private_and_a_public_key_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("ledger.key");
        let verifier = init(&private, "writ.example/ledger").unwrap();
        let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let signer = load_signer(&private).unwrap();
        assert_eq!(signer.name(), "writ.example/ledger");
        let public = load_verifier(&public_key_path(&private)).unwrap();
        assert_eq!(public.to_text(), verifier.to_text());
        assert!(matches!(
            init(&private, "writ.example/ledger"),
            Err(KeyError::Exists { .. })
        ));
        assert!(matches!(
            load_verifier(&private),
            Err(KeyError::Invalid { .. })
        ));
        assert!(matches!(
            init(&dir.path().join("bad.key"), "has space"),
            Err(KeyError::Origin { .. })
        ));
        // A key others can read is refused, not merely warned about.
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            load_signer(&private),
            Err(KeyError::Exposed { .. })
        ));
    }
}
