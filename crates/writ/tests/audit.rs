//! End-to-end: `writ keys init`, `writ audit verify|export`, `writ admin rebuild` as an operator
//! and an auditor run them, on SQLite and PostgreSQL. The ledger is filled through the engine
//! library; everything checked is done by the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Site, text, writ};
use writ_testkit::{TestBackend, TestDb};

use serde_json::json;
use writ_core::approval::{Approval, Verdict};
use writ_core::case::CaseState;
use writ_core::event::{ApprovalGranted, EventBody};
use writ_core::example;
use writ_core::ids::{ApprovalId, ChangeId};
use writ_engine::{Draft, Engine};
use writ_store::Expectation;

/// Appends `cases` cases of three events each to `site`'s ledger, one batch per append.
async fn fill(site: &Site, cases: u128) {
    fill_at(&site.url, &site.path("ledger.key"), cases).await;
}

/// writ's own sequencer on the ledger at `url`, signing with `key`, publishing each
/// checkpoint to the `published` directory beside the key.
async fn sequencer_at(url: &str, key: &std::path::Path) -> writ_engine::Sequencer {
    let store = writ_store::open(url).await.unwrap();
    let signer = writ_engine::keys::load_signer(key).unwrap();
    let published = key.parent().unwrap().join("published");
    Engine::builder(store, signer)
        .sequencer_config(writ_engine::SequencerConfig {
            publish: vec![std::sync::Arc::new(writ_engine::publish::DirSink::new(
                published,
            ))],
            ..writ_engine::SequencerConfig::default()
        })
        .start()
        .await
        .unwrap()
        .sequencer
}

async fn fill_at(url: &str, key: &std::path::Path, cases: u128) {
    let sequencer = sequencer_at(url, key).await;
    // Each case: a finding opens it, policy decides it needs an approval, alice approves;
    // three entries and three checkpoints, each step expecting the case as it was left.
    for n in 0..cases {
        let n = n + 1;
        let id = example::case_id(n);
        let key = format!("case-{n}-0");
        // The finding's raw bytes are stored as evidence beside the ledger.
        let opened = sequencer
            .append(Draft {
                evidence: vec![writ_engine::EvidenceBlob {
                    media_type: "application/json".into(),
                    bytes: format!("{{\"finding\": {n}}}").into_bytes(),
                }],
                ..Draft::new(
                    Some(id),
                    "engine",
                    key.clone(),
                    example::opened(n, &key, b"raw"),
                )
            })
            .await
            .unwrap();
        let decided = sequencer
            .append(Draft {
                expect: vec![Expectation::Case {
                    id,
                    state: CaseState::NeedsReview,
                    updated_seq: opened.seq,
                }],
                ..Draft::new(
                    Some(id),
                    "engine",
                    format!("case-{n}-1"),
                    example::decided(n, example::one_owner_approval()),
                )
            })
            .await
            .unwrap();
        sequencer
            .append(Draft {
                expect: vec![Expectation::Case {
                    id,
                    state: CaseState::AwaitingApproval,
                    updated_seq: decided.seq,
                }],
                ..Draft::new(
                    Some(id),
                    "user:alice",
                    format!("case-{n}-2"),
                    EventBody::ApprovalGranted(ApprovalGranted {
                        approval: Approval {
                            id: ApprovalId(uuid::Uuid::from_u128(n)),
                            change_id: ChangeId(id.as_uuid()),
                            approver: "alice".into(),
                            verdict: Verdict::Approve,
                            rationale: "owner confirms unused".into(),
                            at: example::time(),
                            binding: None,
                        },
                        rationale: "owner confirms unused".into(),
                    }),
                )
            })
            .await
            .unwrap();
    }
}

/// Changes `site`'s database behind writ's back.
async fn tamper(site: &Site, sql: &str) {
    writ_testkit::exec_sql(&site.url, sql).await.unwrap();
}

async fn operator_and_auditor_story(db: TestDb) {
    let site = Site::new(db, "");
    fill(&site, 4).await;

    let output = site.run(&["audit", "verify"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("ledger verified: 12 entries, 12 checkpoints"),
        "{}",
        text(&output)
    );

    // Export one case and verify it offline, with nothing but the bundle and the public key.
    let output = site.run(&[
        "audit",
        "export",
        "--case",
        "00000000-0000-0000-0000-000000000002",
        "-o",
        "case.json",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let offline = tempfile::tempdir().unwrap();
    std::fs::copy(site.path("case.json"), offline.path().join("case.json")).unwrap();
    std::fs::copy(
        site.path("ledger.key.pub"),
        offline.path().join("ledger.pub"),
    )
    .unwrap();
    let output = writ(offline.path())
        .args([
            "audit",
            "verify",
            "--bundle",
            "case.json",
            "--key",
            "ledger.pub",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("3 entries (3-5)"),
        "{}",
        text(&output)
    );

    // A changed byte in the bundle is caught.
    let mut bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(offline.path().join("case.json")).unwrap()).unwrap();
    let leaf = bundle["entries"][1]["leaf"].as_str().unwrap().to_owned();
    let flipped = if leaf.starts_with('d') {
        leaf.replacen('d', "e", 1)
    } else {
        format!("d{}", &leaf[1..])
    };
    bundle["entries"][1]["leaf"] = json!(flipped);
    std::fs::write(offline.path().join("forged.json"), bundle.to_string()).unwrap();
    let output = writ(offline.path())
        .args([
            "audit",
            "verify",
            "--bundle",
            "forged.json",
            "--key",
            "ledger.pub",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("VERIFICATION FAILED"),
        "{}",
        text(&output)
    );

    // The whole ledger, too.
    let output = site.run(&["audit", "export", "--all", "-o", "all.json"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = site.run(&[
        "audit",
        "verify",
        "--bundle",
        "all.json",
        "--key",
        "ledger.key.pub",
    ]);
    assert!(
        text(&output).contains("12 entries (0-11)"),
        "{}",
        text(&output)
    );

    // A bundle is never verified with its own key.
    let output = site.run(&["audit", "verify", "--bundle", "all.json"]);
    assert_eq!(output.status.code(), Some(2));

    // Projections: check, drift, repair.
    let output = site.run(&["admin", "rebuild", "--check"]);
    assert!(output.status.success(), "{}", text(&output));
    tamper(&site, "UPDATE cases SET state = 'closed'").await;
    let output = site.run(&["admin", "rebuild", "--check"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let output = site.run(&["admin", "rebuild"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(site.run(&["admin", "rebuild", "--check"]).status.success());
}

/// One attack of the campaign (`tests/tamper/campaign.toml`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Attack {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    column: Option<String>,
    sql: String,
    #[serde(default)]
    each: Option<String>,
    #[serde(default)]
    resign: bool,
    #[serde(default)]
    check: Option<String>,
    #[serde(default)]
    expect: Option<String>,
}

#[derive(serde::Deserialize)]
struct Campaign {
    attack: Vec<Attack>,
}

/// The ledger's tables, whose every column the campaign must edit.
const LEDGER_TABLES: [&str; 4] = ["ledger_entries", "checkpoints", "evidence", "ledger_head"];

/// The tamper campaign: every attack of `tests/tamper/campaign.toml` on a fresh ledger, each
/// detected and named by `writ audit verify` (with `--trusted` on the publish directory for a
/// consistent rewrite) or `writ admin rebuild --check` (projections), or refused by the
/// database itself. Prints how many were tried and detected.
async fn tamper_campaign(backend: TestBackend) {
    let sqlite = matches!(backend, TestBackend::Sqlite);
    let campaign: Campaign =
        toml::from_str(include_str!("tamper/campaign.toml")).expect("campaign.toml");
    let (zero32, blob_7b7d) = if sqlite {
        ("zeroblob(32)", "X'7B7D'")
    } else {
        ("decode(repeat('00', 32), 'hex')", "'\\x7b7d'::bytea")
    };
    // Every column of the ledger tables has an attack.
    let edited: Vec<&str> = campaign
        .attack
        .iter()
        .filter_map(|a| a.column.as_deref())
        .collect();
    if sqlite {
        let site = Site::new(TestDb::new(backend).unwrap(), "");
        fill(&site, 1).await;
        let store = writ_store::open(&site.url).await.unwrap();
        drop(store);
        let pool = sqlx::SqlitePool::connect(&site.url).await.unwrap();
        for table in LEDGER_TABLES {
            let columns: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT name FROM pragma_table_info('{table}')"
            )))
            .fetch_all(&pool)
            .await
            .unwrap();
            assert!(!columns.is_empty(), "{table}");
            for column in columns {
                let name = format!("{table}.{column}");
                assert!(edited.contains(&name.as_str()), "no attack edits {name}");
            }
        }
    }
    // PostgreSQL: one cluster; the filled database is kept as a template and each attack gets
    // a copy (a cluster per attack costs seconds). SQLite: a fresh file per attack.
    let pg_site = if sqlite {
        None
    } else {
        let site = Site::new(TestDb::new(backend).unwrap(), "");
        fill(&site, 4).await;
        copy_dir(&site.path("published"), &site.path("published.pristine"));
        let admin = site.url.rsplit_once('/').unwrap().0.to_owned() + "/postgres";
        let mut copied = Err(sqlx::Error::PoolClosed);
        for _ in 0..100 {
            copied = writ_testkit::exec_sql(&admin, "CREATE DATABASE pristine TEMPLATE writ").await;
            if copied.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        copied.unwrap();
        Some((site, admin))
    };
    let mut tried = 0;
    let mut detected = 0;
    for attack in &campaign.attack {
        let values: Vec<u64> = match attack.each.as_deref() {
            None => vec![0],
            Some("entry") => (0..12).collect(),
            Some("checkpoint") => (1..=12).collect(),
            Some(other) => panic!("unknown each = {other:?}"),
        };
        for n in values {
            let fill_in = |text: &str| {
                text.replace("{zero32}", zero32)
                    .replace("{blob_7b7d}", blob_7b7d)
                    .replace("{n}", &n.to_string())
            };
            let sql = fill_in(&attack.sql);
            let label = attack
                .name
                .clone()
                .or_else(|| attack.column.clone())
                .unwrap_or_else(|| sql.clone());
            tried += 1;
            let fresh;
            let site = match &pg_site {
                Some((site, admin)) => {
                    writ_testkit::exec_sql(admin, "DROP DATABASE IF EXISTS writ WITH (FORCE)")
                        .await
                        .unwrap();
                    writ_testkit::exec_sql(admin, "CREATE DATABASE writ TEMPLATE pristine")
                        .await
                        .unwrap();
                    let _ = std::fs::remove_dir_all(site.path("published"));
                    copy_dir(&site.path("published.pristine"), &site.path("published"));
                    site
                }
                None => {
                    fresh = Site::new(TestDb::new(backend).unwrap(), "");
                    fill(&fresh, 4).await;
                    &fresh
                }
            };
            assert!(
                site.run(&["audit", "verify"]).status.success(),
                "{label}: clean"
            );
            let applied = writ_testkit::exec_sql(&site.url, &sql).await;
            let check = attack.check.as_deref().unwrap_or("verify");
            if check == "schema" {
                assert!(applied.is_err(), "{label}: the database took {sql}");
                detected += 1;
                continue;
            }
            applied.unwrap_or_else(|err| panic!("{label}: {sql}: {err}"));
            if attack.resign {
                append_one(site).await;
            }
            let output = match check {
                "verify" => site.run(&["audit", "verify"]),
                "trusted" => site.run(&["audit", "verify", "--trusted", "published"]),
                "rebuild" => site.run(&["admin", "rebuild", "--check"]),
                other => panic!("unknown check = {other:?}"),
            };
            let expected = fill_in(attack.expect.as_deref().unwrap_or(""));
            let said = text(&output);
            if output.status.code() == Some(1) && said.contains(&expected) {
                detected += 1;
            } else {
                eprintln!("NOT DETECTED: {label}: expected {expected:?} in {said}");
            }
        }
    }
    println!(
        "tamper campaign ({}): {tried} attacks tried, {detected} detected",
        if sqlite { "SQLite" } else { "PostgreSQL" }
    );
    assert_eq!(detected, tried, "every attack is detected");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Appends one more event through writ's own sequencer (with the publish directory), as a
/// writ started after a rewrite would.
async fn append_one(site: &Site) {
    sequencer_at(&site.url, &site.path("ledger.key"))
        .await
        .append(Draft::new(
            None,
            "operator",
            "after-the-rewrite",
            EventBody::OwnershipImported(writ_core::event::OwnershipImported {
                file: "owners.csv".into(),
                rules: vec![],
            }),
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_operator_and_auditor_story() {
    operator_and_auditor_story(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_operator_and_auditor_story() {
    operator_and_auditor_story(TestDb::postgres().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tamper_campaign() {
    tamper_campaign(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tamper_campaign() {
    tamper_campaign(TestBackend::Postgres).await;
}

/// The attack of issue 13: someone with write access to the database deletes the last entry
/// and its checkpoint and sets the head back; writ's next append signs over the shortened
/// history, so the database is consistent with itself and `audit verify` alone passes. The
/// checkpoint an auditor kept (`writ audit checkpoint`) catches it: today's tree no longer
/// extends it.
async fn a_truncated_and_resigned_history_fails_against_a_kept_checkpoint(db: TestDb) {
    let site = Site::new(db, "");
    fill(&site, 4).await;
    let kept = site.run(&["audit", "checkpoint"]);
    assert!(kept.status.success(), "{}", text(&kept));
    std::fs::write(site.path("kept.note"), &kept.stdout).unwrap();
    let extended = site.run(&["audit", "verify", "--trusted", "kept.note"]);
    assert!(extended.status.success(), "{}", text(&extended));
    assert!(
        text(&extended).contains("extends the trusted checkpoint at size 12"),
        "{}",
        text(&extended)
    );
    tamper(
        &site,
        "DELETE FROM ledger_entries WHERE seq = 11; DELETE FROM checkpoints WHERE size = 12; UPDATE ledger_head SET size = 11",
    )
    .await;
    // The next append signs over the shortened history.
    append_one(&site).await;
    let alone = site.run(&["audit", "verify"]);
    assert!(alone.status.success(), "{}", text(&alone));
    let against = site.run(&["audit", "verify", "--trusted", "kept.note"]);
    assert_eq!(against.status.code(), Some(1), "{}", text(&against));
    assert!(
        text(&against).contains("root at size 12 does not match the checkpoint"),
        "{}",
        text(&against)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_truncated_history_fails_against_a_kept_checkpoint() {
    a_truncated_and_resigned_history_fails_against_a_kept_checkpoint(TestDb::sqlite().unwrap())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_truncated_history_fails_against_a_kept_checkpoint() {
    a_truncated_and_resigned_history_fails_against_a_kept_checkpoint(TestDb::postgres().unwrap())
        .await;
}

/// A signed ledger whose key went missing is never given a new key: `writ serve` at the
/// default key path refuses to start until the key is restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_is_never_replaced_on_a_signed_ledger() {
    let db = TestDb::sqlite().unwrap();
    let dir = db.dir.path();
    // Only the database: the signing key is the default one, created by the first start.
    std::fs::write(
        dir.join("writ.toml"),
        format!("[database]\nurl = \"{}\"\n", db.url),
    )
    .unwrap();
    let port = writ_testkit::free_port().unwrap();
    let mut first = common::Server::spawn(
        {
            let mut command = writ(dir);
            command.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
            command
        },
        port,
    );
    first.wait_ready().await;
    let output = writ(dir)
        .args(["principal", "add", "root", "--role", "admin", "--bootstrap"])
        .output()
        .unwrap();
    first.stop();
    assert!(output.status.success(), "{}", text(&output));
    std::fs::remove_file(dir.join("writ-ledger.key")).unwrap();
    let again = writ(dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(
        text(&again).contains("restore the key from its backup"),
        "{}",
        text(&again)
    );
    assert!(!dir.join("writ-ledger.key").exists(), "no new key was made");
}

#[test]
fn keys_init_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let first = writ(dir.path())
        .args(["keys", "init", "--key", "k", "--origin", "a.example/log"])
        .output()
        .unwrap();
    assert!(first.status.success(), "{}", text(&first));
    let second = writ(dir.path())
        .args(["keys", "init", "--key", "k", "--origin", "a.example/log"])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    assert!(
        text(&second).contains("refusing to overwrite"),
        "{}",
        text(&second)
    );
    let bad = writ(dir.path())
        .args(["keys", "init", "--key", "k2", "--origin", "has space"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad).contains("invalid ledger origin"),
        "{}",
        text(&bad)
    );
}
