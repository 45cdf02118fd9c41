//! Recent successful authentications, so that a busy client's requests do not each read the
//! principal and its token from the store.
//!
//! An entry is kept for at most its time to live, measured on the monotonic clock of this
//! process (not the injected [`writ_core::Clock`], which tests may hold still: a cache must
//! age even then). Each use still checks the token's own expiry against the injected clock.
//! Any principal or token change made through this process empties the cache at once; a
//! change made through another replica reaches this one within the time to live. A time to
//! live of zero turns the cache off: every request reads the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use writ_core::Sha256Digest;
use writ_core::principal::{Principal, TokenRecord};

/// Entries kept at most; past it, stale ones are dropped, then all.
const MAX_ENTRIES: usize = 4096;

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct AuthCache {
    ttl: Duration,
    entries: Mutex<HashMap<Sha256Digest, Entry>>,
    /// Counts [`AuthCache::clear`]s: a read of the store that started before one is not kept.
    generation: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    principal: Principal,
    token: TokenRecord,
    read_at: Instant,
}

impl AuthCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// Taken before reading the store, handed to [`AuthCache::put`] with what was read.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The principal `digest` authenticated as within the time to live, if its token is still
    /// live at `now`.
    pub(crate) fn get(&self, digest: &Sha256Digest, now: Timestamp) -> Option<Principal> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(digest)?;
        (entry.read_at.elapsed() < self.ttl && entry.token.is_live(now))
            .then(|| entry.principal.clone())
    }

    /// Remembers that `token` authenticated as `principal`, as read from the store since
    /// `generation` (unless the cache was cleared meanwhile: the read may predate a change).
    pub(crate) fn put(
        &self,
        generation: u64,
        digest: Sha256Digest,
        token: TokenRecord,
        principal: Principal,
    ) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, entry| entry.read_at.elapsed() < self.ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            digest,
            Entry {
                principal,
                token,
                read_at: Instant::now(),
            },
        );
    }

    /// Forgets every entry (a principal or token changed).
    pub(crate) fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use writ_core::ids::{PrincipalId, TokenId};
    use writ_core::principal::PrincipalKind;

    fn principal() -> Principal {
        Principal {
            id: PrincipalId(uuid::Uuid::nil()),
            name: "alice".to_owned(),
            kind: PrincipalKind::Person,
            teams: Default::default(),
            roles: Default::default(),
            trust: None,
            disabled: false,
        }
    }

    fn token(expires_at: Option<Timestamp>) -> TokenRecord {
        TokenRecord {
            id: TokenId(uuid::Uuid::nil()),
            principal: "alice".to_owned(),
            sha256: Sha256Digest([1; 32]),
            expires_at,
        }
    }

    #[test]
    fn an_entry_serves_until_its_token_expires_or_the_cache_is_cleared() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let later: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let digest = Sha256Digest([1; 32]);
        assert!(cache.get(&digest, now).is_none());
        cache.put(cache.generation(), digest, token(Some(later)), principal());
        assert_eq!(cache.get(&digest, now).unwrap().name, "alice");
        assert!(cache.get(&digest, later).is_none(), "an expired token");
        assert!(cache.get(&Sha256Digest([2; 32]), now).is_none());
        cache.clear();
        assert!(cache.get(&digest, now).is_none());
    }

    #[test]
    fn a_read_from_before_a_change_is_not_kept() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let digest = Sha256Digest([1; 32]);
        let before = cache.generation();
        cache.clear();
        cache.put(before, digest, token(None), principal());
        assert!(cache.get(&digest, Timestamp::UNIX_EPOCH).is_none());
    }

    #[test]
    fn a_zero_time_to_live_keeps_nothing() {
        let cache = AuthCache::new(Duration::ZERO);
        let digest = Sha256Digest([1; 32]);
        cache.put(0, digest, token(None), principal());
        assert!(cache.get(&digest, Timestamp::UNIX_EPOCH).is_none());
    }

    #[test]
    fn entries_age_out() {
        let cache = AuthCache::new(Duration::from_millis(1));
        let digest = Sha256Digest([1; 32]);
        cache.put(0, digest, token(None), principal());
        std::thread::sleep(Duration::from_millis(5));
        assert!(cache.get(&digest, Timestamp::UNIX_EPOCH).is_none());
    }
}
