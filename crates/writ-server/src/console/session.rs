//! Console sessions: a signed cookie that names the principal, when the session began and was
//! last used, and its CSRF token. Checked on every request against the injected clock (idle and
//! absolute timeouts) and against the principal as the store has it now (a disabled principal's
//! session ends at once).
//!
//! Hand-written rather than a cookie-jar crate: the whole format is an HMAC-SHA256 over a small
//! JSON payload (about thirty lines), and the checks that matter (timeouts on the injected clock,
//! the principal's state) are writ's own either way. The MAC is compared in constant time
//! (`Mac::verify_slice`).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "writ_session";
/// The cookie carrying a sign-in in progress (the OIDC state, nonce and PKCE verifier, or the
/// login form's CSRF token) until the sign-in completes.
pub const SIGNIN_COOKIE: &str = "writ_signin";

/// The key sessions are signed with (32 bytes or more, shared by every replica).
#[derive(Clone)]
pub struct SessionKey(Vec<u8>);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(redacted)")
    }
}

impl SessionKey {
    /// A key from its bytes; `None` when shorter than 32 bytes.
    pub fn new(bytes: Vec<u8>) -> Option<Self> {
        (bytes.len() >= 32).then_some(Self(bytes))
    }

    fn mac(&self, purpose: &str) -> Hmac<Sha256> {
        // `new_from_slice` takes any length for HMAC; the key was checked when made.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable_mac());
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac
    }

    /// `payload` serialised and signed for `purpose` (each cookie has its own, so one cannot
    /// stand for another).
    pub fn seal<T: Serialize>(&self, purpose: &str, payload: &T) -> String {
        let body = serde_json::to_vec(payload).unwrap_or_default();
        let mut mac = self.mac(purpose);
        mac.update(&body);
        let tag = mac.finalize().into_bytes();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}", b64.encode(&body), b64.encode(tag))
    }

    /// The payload of a value [`SessionKey::seal`] made for `purpose`, if its signature holds.
    pub fn open<T: for<'de> Deserialize<'de>>(&self, purpose: &str, value: &str) -> Option<T> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (body, tag) = value.split_once('.')?;
        let body = b64.decode(body).ok()?;
        let tag = b64.decode(tag).ok()?;
        let mut mac = self.mac(purpose);
        mac.update(&body);
        mac.verify_slice(&tag).ok()?;
        serde_json::from_slice(&body).ok()
    }
}

#[expect(
    clippy::panic,
    reason = "HMAC accepts keys of any length: this cannot happen"
)]
fn unreachable_mac() -> Hmac<Sha256> {
    panic!("HMAC refused a key")
}

/// A session as its cookie carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The principal's canonical name.
    pub name: String,
    /// When it began (microseconds since the epoch).
    pub issued_us: i64,
    /// When it was last used.
    pub seen_us: i64,
    /// The CSRF token every form and htmx request must carry (hex).
    pub csrf: String,
    /// How the principal signed in (`token`, `oidc`).
    pub via: String,
}

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Unused for longer than this, a session ends.
    pub idle: jiff::SignedDuration,
    /// Whatever its use, a session ends this long after it began.
    pub absolute: jiff::SignedDuration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            idle: jiff::SignedDuration::from_mins(30),
            absolute: jiff::SignedDuration::from_hours(12),
        }
    }
}

impl Session {
    /// Whether the session is still alive at `now`.
    pub fn alive(&self, now: jiff::Timestamp, limits: SessionLimits) -> bool {
        let now = now.as_microsecond();
        let idle = limits.idle.as_micros();
        let absolute = limits.absolute.as_micros();
        i128::from(now - self.seen_us) <= idle
            && i128::from(now - self.issued_us) <= absolute
            && self.seen_us <= now + 60_000_000
    }
}

/// The `Set-Cookie` value for `name` = `value` (HttpOnly, SameSite=Lax, path `/`, `Secure` when
/// served over TLS); `max_age` zero clears it.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

/// Whether two CSRF tokens are equal, in constant time.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey::new(vec![7; 32]).unwrap()
    }

    fn session() -> Session {
        Session {
            name: "dana".into(),
            issued_us: 1_000_000_000,
            seen_us: 1_000_000_000,
            csrf: "ab".repeat(16),
            via: "token".into(),
        }
    }

    #[test]
    fn a_sealed_session_opens_only_with_its_key_and_purpose() {
        let sealed = key().seal("session", &session());
        assert_eq!(key().open::<Session>("session", &sealed), Some(session()));
        assert_eq!(key().open::<Session>("signin", &sealed), None);
        let other = SessionKey::new(vec![8; 32]).unwrap();
        assert_eq!(other.open::<Session>("session", &sealed), None);
        // Any change to the payload breaks the signature.
        let (body, tag) = sealed.split_once('.').unwrap();
        let mut forged = body.to_owned();
        forged.replace_range(0..1, if body.starts_with('e') { "f" } else { "e" });
        assert_eq!(
            key().open::<Session>("session", &format!("{forged}.{tag}")),
            None
        );
        assert!(SessionKey::new(vec![1; 31]).is_none());
    }

    #[test]
    fn sessions_end_when_idle_or_old() {
        let limits = SessionLimits::default();
        let start = jiff::Timestamp::from_microsecond(1_000_000_000).unwrap();
        let s = session();
        assert!(s.alive(start + jiff::SignedDuration::from_mins(29), limits));
        assert!(!s.alive(start + jiff::SignedDuration::from_mins(31), limits));
        let busy = Session {
            seen_us: (start + jiff::SignedDuration::from_hours(12)).as_microsecond(),
            ..s
        };
        assert!(!busy.alive(
            start + jiff::SignedDuration::from_hours(12) + jiff::SignedDuration::from_mins(1),
            limits
        ));
    }

    #[test]
    fn cookies_are_read_by_name_and_tokens_compared_whole() {
        assert_eq!(
            cookie("a=1; writ_session=x.y; b=2", SESSION_COOKIE),
            Some("x.y")
        );
        assert_eq!(cookie("writ_sessionx=1", SESSION_COOKIE), None);
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        let set = set_cookie(SESSION_COOKIE, "v", 60, true);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.ends_with("Secure")
        );
    }
}
