//! SCRAM-SHA-256 password verifiers (RFC 5802, RFC 7677), as PostgreSQL stores them.
//!
//! A rotation never sends a plaintext password to the server: it computes the verifier
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` here and sends that, exactly as
//! `psql`'s `\password` does. PostgreSQL recognises a pre-hashed verifier and stores it as is.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
/// Passwords and verifiers in memory: `Debug` redacted, no `Display`, zeroed on drop.
pub use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The iteration count PostgreSQL uses by default (`scram_iterations`).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// The salt length PostgreSQL uses (bytes).
pub const SCRAM_SALT_LEN: usize = 16;

/// Random bytes in a generated password (encoded as 43 URL-safe base64 characters).
const PASSWORD_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// Why a verifier could not be computed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    /// The password is not printable ASCII. SASLprep (RFC 4013) is not implemented, and it is
    /// the identity only on printable ASCII, so other passwords are refused rather than hashed
    /// differently from PostgreSQL.
    #[error("password must be printable ASCII (SASLprep is not implemented)")]
    NotAscii,
    /// The salt is empty or the iteration count is zero.
    #[error("invalid SCRAM parameters")]
    InvalidParameters,
    /// The operating system's random source failed.
    #[error("random source failed")]
    Random,
}

/// Generates a new random password: 32 bytes from the OS random source, URL-safe base64.
// Password generation: a new password must come from the OS random source.
#[allow(clippy::disallowed_methods)]
pub fn generate_password() -> Result<SecretString, ScramError> {
    let mut bytes = [0u8; PASSWORD_BYTES];
    getrandom::fill(&mut bytes).map_err(|_| ScramError::Random)?;
    Ok(SecretString::from(URL_SAFE_NO_PAD.encode(bytes)))
}

/// Generates a new random salt of [`SCRAM_SALT_LEN`] bytes.
// SCRAM salt generation: a salt must be unpredictable, so it comes from the OS random source.
#[allow(clippy::disallowed_methods)]
pub fn generate_salt() -> Result<Vec<u8>, ScramError> {
    let mut salt = vec![0u8; SCRAM_SALT_LEN];
    getrandom::fill(&mut salt).map_err(|_| ScramError::Random)?;
    Ok(salt)
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Result<[u8; 32], ScramError> {
    let mut mac = HmacSha256::new_from_slice(key).map_err(|_| ScramError::InvalidParameters)?;
    for part in parts {
        mac.update(part);
    }
    Ok(mac.finalize().into_bytes().into())
}

/// `Hi(password, salt, i)` of RFC 5802: PBKDF2-HMAC-SHA-256 with one output block.
fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), salt, iterations)
}

/// The keys a SCRAM verifier is made of.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramKeys([redacted])")
    }
}

/// Computes StoredKey and ServerKey for a password (RFC 5802 section 3).
pub fn scram_keys(password: &str, salt: &[u8], iterations: u32) -> Result<ScramKeys, ScramError> {
    if !password.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(ScramError::NotAscii);
    }
    if salt.is_empty() || iterations == 0 {
        return Err(ScramError::InvalidParameters);
    }
    let salted = salted_password(password, salt, iterations);
    let client_key = hmac(&salted, &[b"Client Key"])?;
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let server_key = hmac(&salted, &[b"Server Key"])?;
    Ok(ScramKeys {
        stored_key,
        server_key,
    })
}

/// The verifier PostgreSQL stores in `pg_authid.rolpassword` for `password`:
/// `SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>`.
///
/// The result lets anyone holding it impersonate the server to a client and mount an offline
/// guessing attack, so it is treated as a secret too: it is wrapped in [`SecretString`].
pub fn scram_verifier(
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Result<SecretString, ScramError> {
    let keys = scram_keys(password, salt, iterations)?;
    Ok(SecretString::from(format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(keys.stored_key),
        STANDARD.encode(keys.server_key)
    )))
}

/// The salt (base64, as stored) and iteration count of a stored SCRAM verifier, or `None` for
/// anything else (MD5, no password, a malformed value). Neither is secret: the server sends both
/// to any client that starts a SCRAM exchange.
pub fn verifier_salt(verifier: &str) -> Option<(&str, u32)> {
    let rest = verifier.strip_prefix("SCRAM-SHA-256$")?;
    let (params, keys) = rest.split_once('$')?;
    let (iterations, salt) = params.split_once(':')?;
    keys.split_once(':')?;
    Some((salt, iterations.parse().ok()?))
}

/// SHA-256 (hex) of a verifier: what logs and outcomes may carry instead of the verifier.
pub fn verifier_digest(verifier: &str) -> String {
    hex::encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SCRAM-SHA-256 exchange of RFC 7677 section 3: user `user`, password `pencil`.
    const SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const CLIENT_FIRST_BARE: &str = "n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL_NO_PROOF: &str =
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const CLIENT_PROOF: &str = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_SIGNATURE: &str = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn auth_message() -> String {
        format!("{CLIENT_FIRST_BARE},{SERVER_FIRST},{CLIENT_FINAL_NO_PROOF}")
    }

    /// PBKDF2-HMAC-SHA256 known answers (the RFC 6070 inputs, SHA-256 outputs).
    #[test]
    fn salted_password_matches_pbkdf2_hmac_sha256_vectors() {
        assert_eq!(
            hex::encode(salted_password("password", b"salt", 1)),
            "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"
        );
        assert_eq!(
            hex::encode(salted_password("password", b"salt", 2)),
            "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"
        );
        assert_eq!(
            hex::encode(salted_password("password", b"salt", 4096)),
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"
        );
    }

    #[test]
    fn server_signature_matches_rfc7677() {
        let salt = STANDARD.decode(SALT_B64).unwrap();
        let keys = scram_keys("pencil", &salt, 4096).unwrap();
        let signature = hmac(&keys.server_key, &[auth_message().as_bytes()]).unwrap();
        assert_eq!(STANDARD.encode(signature), SERVER_SIGNATURE);
    }

    #[test]
    fn stored_key_matches_rfc7677_client_proof() {
        // ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage), and StoredKey = H(ClientKey).
        let salt = STANDARD.decode(SALT_B64).unwrap();
        let keys = scram_keys("pencil", &salt, 4096).unwrap();
        let client_signature = hmac(&keys.stored_key, &[auth_message().as_bytes()]).unwrap();
        let proof = STANDARD.decode(CLIENT_PROOF).unwrap();
        let client_key: Vec<u8> = proof
            .iter()
            .zip(client_signature.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        let stored: [u8; 32] = Sha256::digest(&client_key).into();
        assert_eq!(stored, keys.stored_key);
    }

    #[test]
    fn verifier_has_postgres_format_and_parses_back() {
        let salt = STANDARD.decode(SALT_B64).unwrap();
        let verifier = scram_verifier("pencil", &salt, 4096).unwrap();
        let v = verifier.expose_secret();
        assert!(v.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
        assert_eq!(verifier_salt(v), Some((SALT_B64, 4096)));
        assert_eq!(verifier_salt("md5abcdef"), None);
        assert_eq!(verifier_salt("SCRAM-SHA-256$x:y$z"), None);
        assert_eq!(verifier_digest(v).len(), 64);
    }

    #[test]
    fn refuses_what_it_cannot_hash_like_postgres() {
        assert_eq!(
            scram_keys("pässword", b"salt", 4096),
            Err(ScramError::NotAscii)
        );
        assert_eq!(
            scram_keys("p", b"", 4096),
            Err(ScramError::InvalidParameters)
        );
        assert_eq!(scram_keys("p", b"s", 0), Err(ScramError::InvalidParameters));
    }

    #[test]
    fn generated_passwords_are_random_ascii_and_redacted() {
        let a = generate_password().unwrap();
        let b = generate_password().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().len(), 43);
        assert!(scram_keys(a.expose_secret(), b"salt", 1).is_ok());
        assert!(!format!("{a:?}").contains(a.expose_secret()));
        assert!(format!("{a:?}").contains("REDACTED"));
        let verifier = scram_verifier(a.expose_secret(), b"salt", 1).unwrap();
        assert!(!format!("{verifier:?}").contains("SCRAM-SHA-256"));
        assert_eq!(generate_salt().unwrap().len(), SCRAM_SALT_LEN);
    }
}
