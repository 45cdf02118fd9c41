//! OWASP Non-Human Identities Top 10 (2025) tags for finding types.
//!
//! Each observation carries the controls its finding is evidence for, as `NHI-01` .. `NHI-10`.
//! Known finding types (Prowler check ids, `leaked_secret`) are looked up in a table; other types
//! are matched by keywords in their name. A native finding may add its own tags.

/// The OWASP NHI Top 10 (2025) risks, by tag.
pub const NHI_TOP_10: [(&str, &str); 10] = [
    ("NHI-01", "Improper Offboarding"),
    ("NHI-02", "Secret Leakage"),
    ("NHI-03", "Vulnerable Third-Party NHI"),
    ("NHI-04", "Insecure Authentication"),
    ("NHI-05", "Overprivileged NHI"),
    ("NHI-06", "Insecure Cloud Deployment Configurations"),
    ("NHI-07", "Long-Lived Secrets"),
    ("NHI-08", "Environment Isolation"),
    ("NHI-09", "NHI Reuse"),
    ("NHI-10", "Human Use of NHI"),
];

/// Whether `tag` is one of `NHI-01` .. `NHI-10`.
pub fn is_control(tag: &str) -> bool {
    NHI_TOP_10.iter().any(|(t, _)| *t == tag)
}

/// The name of the risk a tag stands for (`NHI-02` -> `Secret Leakage`).
pub fn control_name(tag: &str) -> Option<&'static str> {
    NHI_TOP_10
        .iter()
        .find(|(t, _)| *t == tag)
        .map(|(_, name)| *name)
}

/// Finding types with a known meaning.
const TABLE: &[(&str, &[&str])] = &[
    ("leaked_secret", &["NHI-02"]),
    ("iam_user_accesskey_unused", &["NHI-01", "NHI-07"]),
    ("iam_user_console_access_unused", &["NHI-01"]),
    ("iam_rotate_access_key_90_days", &["NHI-07"]),
    (
        "iam_user_no_setup_initial_access_key",
        &["NHI-07", "NHI-10"],
    ),
    ("iam_user_two_active_access_key", &["NHI-07", "NHI-09"]),
    ("iam_no_root_access_key", &["NHI-07", "NHI-10"]),
    ("iam_user_mfa_enabled_console_access", &["NHI-04"]),
    ("iam_user_hardware_mfa_enabled", &["NHI-04"]),
    ("iam_policy_allows_privilege_escalation", &["NHI-05"]),
    ("iam_user_administrator_access_policy", &["NHI-05"]),
    ("iam_role_administratoraccess_policy", &["NHI-05"]),
    ("iam_group_administrator_access_policy", &["NHI-05"]),
    (
        "iam_inline_policy_no_administrative_privileges",
        &["NHI-05"],
    ),
    (
        "iam_aws_attached_policy_no_administrative_privileges",
        &["NHI-05"],
    ),
    (
        "iam_customer_attached_policy_no_administrative_privileges",
        &["NHI-05"],
    ),
    ("iam_inline_policy_allows_privilege_escalation", &["NHI-05"]),
    (
        "iam_role_cross_service_confused_deputy_prevention",
        &["NHI-05", "NHI-08"],
    ),
    ("secretsmanager_automatic_rotation_enabled", &["NHI-07"]),
];

/// Keyword rules for finding types not in the table: `(any of these words, tags)`.
const KEYWORDS: &[(&[&str], &[&str])] = &[
    (
        &["unused", "inactive", "stale", "dormant", "orphan"],
        &["NHI-01", "NHI-07"],
    ),
    (
        &["leak", "hardcoded", "exposed_secret", "plaintext"],
        &["NHI-02"],
    ),
    (&["third_party", "vendor"], &["NHI-03"]),
    (&["mfa", "weak_auth", "password_policy"], &["NHI-04"]),
    (
        &[
            "admin",
            "privilege",
            "full_access",
            "wildcard",
            "overprivileged",
        ],
        &["NHI-05"],
    ),
    (&["public", "unencrypted"], &["NHI-06"]),
    (&["rotat", "expir", "long_lived", "key_age"], &["NHI-07"]),
    (&["cross_env", "isolation", "cross_account"], &["NHI-08"]),
    (&["reuse", "shared", "two_active"], &["NHI-09"]),
    (&["human_use", "interactive", "console"], &["NHI-10"]),
];

/// The OWASP NHI Top 10 tags for `finding_type`, sorted and without duplicates (may be empty).
pub fn controls_for(finding_type: &str) -> Vec<String> {
    let ty = finding_type.to_ascii_lowercase();
    let mut tags: Vec<String> = match TABLE.iter().find(|(t, _)| *t == ty) {
        Some((_, tags)) => tags.iter().map(|t| (*t).to_owned()).collect(),
        None => KEYWORDS
            .iter()
            .filter(|(words, _)| words.iter().any(|w| ty.contains(w)))
            .flat_map(|(_, tags)| tags.iter().map(|t| (*t).to_owned()))
            .collect(),
    };
    tags.sort();
    tags.dedup();
    tags
}

/// Merges extra tags into `tags`, keeping them sorted and unique.
pub fn merge(mut tags: Vec<String>, extra: impl IntoIterator<Item = String>) -> Vec<String> {
    tags.extend(extra);
    tags.sort();
    tags.dedup();
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_known_and_guessed_types() {
        assert_eq!(
            controls_for("iam_user_accesskey_unused"),
            ["NHI-01", "NHI-07"]
        );
        assert_eq!(controls_for("leaked_secret"), ["NHI-02"]);
        assert_eq!(controls_for("iam_rotate_access_key_90_days"), ["NHI-07"]);
        assert_eq!(controls_for("service_account_overprivileged"), ["NHI-05"]);
        assert_eq!(controls_for("token_needs_rotation"), ["NHI-07"]);
        assert!(controls_for("something_else").is_empty());
        for (tag, _) in NHI_TOP_10 {
            assert!(is_control(tag));
        }
        assert!(!is_control("NHI-11"));
        assert_eq!(control_name("NHI-02"), Some("Secret Leakage"));
        // every tag the tables hand out is a real one
        for (_, tags) in TABLE {
            assert!(tags.iter().all(|t| is_control(t)));
        }
        for (_, tags) in KEYWORDS {
            assert!(tags.iter().all(|t| is_control(t)));
        }
    }
}
