//! Injected time and randomness.
//!
//! Nothing in writ reads the wall clock or the OS random source directly: it asks a [`Clock`]
//! or an [`IdSource`]. Production wires [`SystemClock`]; tests wire [`ManualClock`] and move
//! time forward to exercise expiries and deadlines.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

/// `time` truncated to whole microseconds: writ's time resolution everywhere (the store keeps
/// microseconds, so every time that enters an event is truncated first and the tables equal
/// what the ledger says).
pub fn to_micros(time: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(time.as_microsecond()).unwrap_or(time)
}

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    // The one production place that reads the wall clock: everything else asks a `Clock`.
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        to_micros(Timestamp::now())
    }
}

/// A clock that only moves when told to. For tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward (or backward, with a negative duration).
    pub fn advance(&self, by: SignedDuration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now = now.saturating_add(by).unwrap_or(*now);
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: Timestamp) {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A source of unique ids (UUIDv7: time-ordered, with random low bits).
pub trait IdSource: Send + Sync + std::fmt::Debug {
    /// A new id whose time prefix is `now`.
    fn next_id(&self, now: Timestamp) -> Uuid;
}

/// Ids from the operating system's random source.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn next_id(&self, now: Timestamp) -> Uuid {
        let seconds = u64::try_from(now.as_second()).unwrap_or(0);
        let nanos = u32::try_from(now.subsec_nanosecond()).unwrap_or(0);
        Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, seconds, nanos))
    }
}

/// Deterministic ids from a counter. For tests and replays.
#[derive(Debug, Default)]
pub struct SequentialIds {
    next: AtomicU64,
}

impl SequentialIds {
    /// A source whose first id uses `seed` as its counter.
    pub fn starting_at(seed: u64) -> Self {
        Self {
            next: AtomicU64::new(seed),
        }
    }
}

impl IdSource for SequentialIds {
    fn next_id(&self, now: Timestamp) -> Uuid {
        let counter = self.next.fetch_add(1, Ordering::Relaxed);
        let millis = u64::try_from(now.as_millisecond()).unwrap_or(0);
        let mut random = [0u8; 10];
        random[2..].copy_from_slice(&counter.to_be_bytes());
        uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
    }
}

/// A source of secret random bytes (API tokens). The edge gives the operating system's; tests
/// give [`CountingRandom`].
pub trait RandomSource: Send + Sync + std::fmt::Debug {
    /// Fills `buf` with random bytes.
    ///
    /// # Errors
    /// When the source cannot give randomness (the caller must not fall back to anything).
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomUnavailable>;
}

/// The random source failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no randomness available from the operating system")]
pub struct RandomUnavailable;

/// Predictable "random" bytes from a counter. For tests only: never for real tokens.
#[derive(Debug, Default)]
pub struct CountingRandom {
    next: AtomicU64,
}

impl RandomSource for CountingRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomUnavailable> {
        let counter = self.next.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        for (i, byte) in buf.iter_mut().enumerate() {
            *byte = counter[i % counter.len()] ^ u8::try_from(i % 251).unwrap_or(0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = Timestamp::from_second(1_700_000_000).unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(SignedDuration::from_hours(24));
        assert_eq!(clock.now(), Timestamp::from_second(1_700_086_400).unwrap());
    }

    #[test]
    fn ids_are_time_ordered_v7() {
        let ids = SequentialIds::starting_at(1);
        let t = Timestamp::from_second(1_700_000_000).unwrap();
        let a = ids.next_id(t);
        let b = ids.next_id(t);
        assert_eq!(a.get_version_num(), 7);
        assert!(a < b);
        let random = RandomIds.next_id(t);
        assert_eq!(random.get_version_num(), 7);
    }
}
