//! Database URLs made safe to print: [`redact_url`] removes every password a URL can carry.

/// What a redacted secret is replaced with.
const MASK: &str = "***";

/// Shown instead of a string that does not parse as a URL but may hold a secret.
const UNPARSEABLE: &str = "[unparseable database URL]";

/// Query parameter names (compared case-insensitively) whose values are secrets.
const SECRET_PARAMS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "secret",
    "token",
    "sslpassword",
];

/// `url` with every password replaced by `***`, for messages and logs.
///
/// - The password of the userinfo (`postgres://user:PASSWORD@host/db`) becomes `***`, however
///   it is written (percent-encoded, or with raw `@` characters in it).
/// - The value of every query parameter named like a secret (`password`, `passwd`, `pass`,
///   `pwd`, `secret`, `token`, `sslpassword`, in any case) becomes `***`.
/// - A URL with nothing to redact is returned exactly as given.
/// - A string that does not parse as a URL is returned as given only when it holds neither
///   `@` nor a secret-looking word; otherwise only its scheme is kept (`postgres://***`), or
///   nothing at all when it has no scheme either.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => redact_parsed(url, parsed),
        Err(_) if may_hold_secret(url) => opaque(url),
        Err(_) => url.to_owned(),
    }
}

fn redact_parsed(raw: &str, mut parsed: url::Url) -> String {
    // Without an authority, an `@` is not userinfo the parser understood: trust nothing.
    if !parsed.has_host() && raw.contains('@') {
        return opaque(raw);
    }
    let mut changed = false;
    if parsed.password().is_some() {
        if parsed.set_password(Some(MASK)).is_err() {
            return opaque(raw);
        }
        changed = true;
    }
    if let Some(query) = parsed.query()
        && let Some(redacted) = redact_query(query)
    {
        parsed.set_query(Some(&redacted));
        changed = true;
    }
    if changed {
        parsed.to_string()
    } else {
        raw.to_owned()
    }
}

/// The query with every secret parameter's value masked, or `None` when it has none. Other
/// parameters are kept byte for byte.
fn redact_query(query: &str) -> Option<String> {
    let mut changed = false;
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            if is_secret_param(name) {
                changed = true;
                format!("{name}={MASK}")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    changed.then(|| pairs.join("&"))
}

/// Whether a (still encoded) query parameter name names a secret.
fn is_secret_param(encoded_name: &str) -> bool {
    url::form_urlencoded::parse(encoded_name.as_bytes())
        .next()
        .is_some_and(|(name, _)| {
            SECRET_PARAMS
                .iter()
                .any(|secret| name.eq_ignore_ascii_case(secret))
        })
}

/// Whether an unparseable string might carry a secret.
fn may_hold_secret(raw: &str) -> bool {
    let lower = raw.to_ascii_lowercase();
    raw.contains('@') || SECRET_PARAMS.iter().any(|word| lower.contains(word))
}

/// `scheme://***` when `raw` starts with a plain scheme, otherwise a fixed placeholder.
fn opaque(raw: &str) -> String {
    match raw.split_once("://") {
        Some((scheme, _))
            if scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            format!("{scheme}://{MASK}")
        }
        _ => UNPARSEABLE.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redacts `url` and checks that `secret` is not in the result.
    fn shown(url: &str, secret: &str) -> String {
        let shown = redact_url(url);
        assert!(!shown.contains(secret), "{url} leaked {secret:?}: {shown}");
        shown
    }

    #[test]
    fn userinfo_password_is_masked() {
        assert_eq!(
            shown("postgres://writ:hunter2@db:5432/writ", "hunter2"),
            "postgres://writ:***@db:5432/writ"
        );
    }

    #[test]
    fn raw_at_in_password_does_not_leak() {
        assert_eq!(
            shown("postgres://u:p@ss@h/db", "ss"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            shown("postgresql://u:a@b@c@h:5433/db", "a@b"),
            "postgresql://u:***@h:5433/db"
        );
    }

    #[test]
    fn percent_encoded_password_is_masked() {
        assert_eq!(
            shown("postgres://u:p%40ss%3Aw@h/db", "p%40ss"),
            "postgres://u:***@h/db"
        );
    }

    #[test]
    fn password_query_parameter_is_masked() {
        assert_eq!(
            shown("postgres://u@h/db?password=x", "=x"),
            "postgres://u@h/db?password=***"
        );
        assert_eq!(
            shown("postgres://h/db?sslmode=require&password=x", "=x"),
            "postgres://h/db?sslmode=require&password=***"
        );
    }

    #[test]
    fn every_secret_parameter_name_in_any_case_is_masked() {
        let url = "postgres://h/db?PassWord=a1&passwd=a2&PASS=a3&pwd=a4&Secret=a5&token=a6\
                   &sslpassword=a7&pass%77ord=a8&application_name=writ";
        let shown = redact_url(url);
        for n in 1..=8 {
            assert!(!shown.contains(&format!("a{n}")), "a{n} leaked: {shown}");
        }
        assert!(shown.ends_with("&application_name=writ"), "{shown}");
    }

    #[test]
    fn userinfo_and_query_are_both_masked() {
        assert_eq!(
            shown("postgres://u:one@h/db?password=two", "one"),
            "postgres://u:***@h/db?password=***"
        );
        assert!(!redact_url("postgres://u:one@h/db?password=two").contains("two"));
    }

    #[test]
    fn sqlite_urls_are_unchanged() {
        for url in [
            "sqlite://writ.db",
            "sqlite::memory:",
            "sqlite:///var/lib/writ/writ.db",
            "sqlite://./data/writ.db?mode=rwc",
            "sqlite://my dir/writ.db",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn urls_without_a_password_are_unchanged() {
        for url in [
            "postgres://writ@db:5432/writ",
            "postgres://db/writ?sslmode=require",
            "postgres:///writ?host=/run/postgresql",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn unparseable_strings_that_may_hold_a_secret_are_hidden() {
        assert_eq!(
            shown("postgres://u:p@ss@h:notaport/db", "p@ss"),
            "postgres://***"
        );
        assert_eq!(
            shown("host=db user=writ password=hunter2", "hunter2"),
            UNPARSEABLE
        );
        assert_eq!(shown("postgres:u:hunter2@h/db", "hunter2"), UNPARSEABLE);
        assert_eq!(shown("u:hunter2@h", "hunter2"), UNPARSEABLE);
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
