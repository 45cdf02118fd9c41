//! Helpers shared by the format parsers: options, field validators and timestamps.

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, de::Error as _};

/// The default largest finding kept: 1 MiB.
pub const DEFAULT_MAX_FINDING_BYTES: usize = 1 << 20;
/// The default largest whole document read at once (detect-secrets baselines): 64 MiB.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 64 << 20;
/// The default name of the repository secrets scanners looked at.
pub const DEFAULT_SECRETS_SYSTEM: &str = "workspace";

/// How findings are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseOptions {
    /// A finding larger than this (in bytes of input) is an error naming its line; the stream
    /// goes on with the next one. Default 1 MiB.
    pub max_finding_bytes: usize,
    /// Formats read as one document (detect-secrets) may be at most this large. Default 64 MiB.
    pub max_document_bytes: usize,
    /// The repository (or other system) that secrets scanners (detect-secrets, gitleaks) looked
    /// at; subjects are placed in system `git:<secrets_system>`. Default `workspace`.
    pub secrets_system: String,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            max_finding_bytes: DEFAULT_MAX_FINDING_BYTES,
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            secrets_system: DEFAULT_SECRETS_SYSTEM.to_owned(),
        }
    }
}

impl ParseOptions {
    /// The subject system for secrets found by a scanner: `git:<secrets_system>`.
    pub(crate) fn git_system(&self) -> String {
        let name = self.secrets_system.trim();
        if name.is_empty() {
            format!("git:{DEFAULT_SECRETS_SYSTEM}")
        } else {
            format!("git:{name}")
        }
    }
}

/// A string that must not be empty or blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NonEmpty(pub String);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().is_empty() {
            return Err(D::Error::custom("must not be empty"));
        }
        Ok(Self(s))
    }
}

/// A confidence between 0 and 1 with at most 4 decimals, as ten-thousandths.
pub(crate) fn confidence_bp<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let c = f64::deserialize(d)?;
    if !(0.0..=1.0).contains(&c) {
        return Err(D::Error::custom(format!(
            "confidence must be between 0 and 1, got {c}"
        )));
    }
    let scaled = c * 10_000.0;
    let bp = scaled.round();
    if (scaled - bp).abs() > 1e-6 {
        return Err(D::Error::custom(format!(
            "confidence {c} has more than 4 decimal places"
        )));
    }
    // 0.0 <= bp <= 10000.0, so the cast is exact.
    Ok(bp as u16)
}

/// Parses an RFC 3339 timestamp; one without an offset (as some Python tools write) is taken
/// as UTC.
pub(crate) fn parse_timestamp(text: &str) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(ts);
    }
    text.parse::<jiff::civil::DateTime>()
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC))
        .map(|z| z.timestamp())
        .map_err(|_| format!("`{text}` is not an RFC 3339 timestamp"))
}

/// An optional timestamp read leniently with [`parse_timestamp`]; `null` and `""` are absent.
pub(crate) fn lenient_timestamp<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Timestamp>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => parse_timestamp(&s).map(Some).map_err(D::Error::custom),
    }
}

/// An epoch time in milliseconds (OCSF `timestamp_t`); values below 10^11 are taken as seconds,
/// since some producers write seconds.
pub(crate) fn epoch_timestamp(value: i64) -> Option<Timestamp> {
    if value.abs() < 100_000_000_000 {
        Timestamp::from_second(value).ok()
    } else {
        Timestamp::from_millisecond(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_confidence_and_times() {
        let bp = |t: &str| -> Result<u16, String> {
            let mut de = serde_json::Deserializer::from_str(t);
            confidence_bp(&mut de).map_err(|e| e.to_string())
        };
        assert_eq!(bp("0.95"), Ok(9500));
        assert_eq!(bp("1"), Ok(10000));
        assert_eq!(bp("0.1234"), Ok(1234));
        assert!(bp("0.12345").is_err());
        assert!(bp("1.5").is_err());
        assert!(bp("-0.1").is_err());
        assert_eq!(
            parse_timestamp("2025-02-13T17:21:56.870385").unwrap(),
            "2025-02-13T17:21:56.870385Z".parse::<Timestamp>().unwrap()
        );
        assert!(parse_timestamp("yesterday").is_err());
        assert_eq!(
            epoch_timestamp(1_739_467_316),
            epoch_timestamp(1_739_467_316_000)
        );
    }
}
