//! `writ bench writeback`: time from a finding to a verified change in a real target, beside the
//! time of the same target call made directly, in the same run.
//!
//! For each target (AWS IAM on moto, PostgreSQL roles on a throwaway cluster) and each of
//! `--changes` identities: ingest a finding, approve it (the demo policy asks for one owner
//! approval), work the job (plan with pre-image, intent, apply, read back, record), and stop the
//! clock when the case is remediated. The baseline deactivates another identity of the same
//! target directly (the same API call, plus the same read-back) with no writ in between.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use sqlx::{Connection as _, Executor as _};
use writ_connector_aws::{AwsClient, AwsConfig, AwsIam, Service};
use writ_connector_postgres::{PostgresRoles, PostgresRolesConfig};
use writ_connectors::Connector;
use writ_core::finding::{Observation, Severity, SourceFormat, SubjectRef, Trust};
use writ_engine::Engine;
use writ_engine::ingest::{Ingestor, Submission};
use writ_engine::inventory;
use writ_engine::sources::Source;
use writ_engine::writeback::{WriteBack, WriteBackSettings};
use writ_ledger::generate_key;
use writ_testkit::{MotoServer, PgCluster};

/// Options of `writ bench writeback`.
#[derive(Debug, clap::Args)]
pub struct WriteBackArgs {
    /// Changes per target.
    #[arg(long, default_value_t = 50)]
    changes: usize,
}

pub async fn run(args: WriteBackArgs) -> anyhow::Result<()> {
    println!(
        "writ bench writeback: {} changes per target, SQLite store, demo policy (one owner approval)",
        args.changes
    );
    let moto = tokio::task::spawn_blocking(MotoServer::start)
        .await?
        .context("cannot start moto (run scripts/test once to create .venv)")?;
    aws(&moto, args.changes).await?;
    let cluster = PgCluster::start().context("cannot start a throwaway PostgreSQL")?;
    postgres(&cluster, args.changes).await?;
    Ok(())
}

struct Rig {
    approver: writ_core::principal::Principal,
    ingestor: Ingestor,
    writeback: WriteBack,
    _dir: tempfile::TempDir,
}

async fn rig(connector: Arc<dyn Connector>, rules: &str) -> anyhow::Result<Rig> {
    let dir = tempfile::tempdir()?;
    let store = writ_store::open(&format!(
        "sqlite://{}",
        dir.path().join("writ.db").display()
    ))
    .await?;
    let (signer, _) = generate_key("writ.bench/ledger", [6; 32])?;
    let engine = Engine::builder(store.clone(), signer)
        .policy(Arc::new(crate::policy_source::demo()?))
        .connectors(vec![connector.clone()])
        .writeback_settings(WriteBackSettings {
            max_changes_per_window: u32::MAX,
            ..WriteBackSettings::default()
        })
        .start()
        .await?;
    let (sequencer, clock) = (&engine.sequencer, &engine.clock);
    inventory::sync(
        &*store,
        sequencer,
        &*connector,
        &**clock,
        &*engine.ids,
        "operator",
    )
    .await?;
    let parsed = inventory::parse_rules("bench.csv", rules)?;
    // The approver: in every owner team the rules name, and in security.
    let mut teams: Vec<String> = parsed.iter().filter_map(|r| r.owner_team.clone()).collect();
    teams.push("security".into());
    inventory::import_rules(
        &*store,
        sequencer,
        "bench.csv",
        rules.as_bytes(),
        parsed,
        &**clock,
        "operator",
    )
    .await?;
    let (approver, _) = engine
        .principals
        .bootstrap(writ_engine::principals::NewPrincipal {
            name: "bench-approver".into(),
            kind: writ_core::principal::PrincipalKind::Person,
            teams,
            roles: vec![
                writ_core::principal::Role::Admin,
                writ_core::principal::Role::Approver,
            ],
            trust: None,
            token_ttl: None,
        })
        .await?;
    Ok(Rig {
        approver,
        ingestor: engine.ingestor()?.clone(),
        writeback: engine.writeback,
        _dir: dir,
    })
}

/// Finding -> decision -> approval -> job -> verified; returns the elapsed time.
async fn one_change(
    rig: &Rig,
    system: &str,
    external_id: &str,
    finding_type: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let outcome = rig
        .ingestor
        .ingest(
            &Source {
                name: "bench".into(),
                trust: Trust::High,
            },
            Submission {
                observation: Observation {
                    status: writ_core::finding::FindingStatus::Fail,
                    format: SourceFormat::Native,
                    finding_type: finding_type.into(),
                    severity: Severity::Medium,
                    confidence_bp: 10_000,
                    subject: SubjectRef {
                        system: system.into(),
                        external_id: external_id.into(),
                        kind_hint: None,
                    },
                    observed_at: None,
                    title: "bench".into(),
                    source_key: None,
                    controls: vec![],
                    details: serde_json::Value::Null,
                },
                evidence: serde_json::to_vec(&json!({ "bench": external_id }))?,
                redacted_from: None,
                idempotency_key: None,
            },
        )
        .await?;
    rig.writeback
        .vote(
            outcome.case_id,
            &rig.approver,
            writ_core::approval::Verdict::Approve,
            "benchmark",
            false,
        )
        .await?
        .job
        .context("approval did not queue a job")?;
    let report = rig.writeback.run_once().await?;
    anyhow::ensure!(report.verified == 1, "write-back not verified: {report:?}");
    Ok(started.elapsed())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn print(target: &str, through: Vec<Duration>, direct: Vec<Duration>) {
    let (through, direct) = (median(through), median(direct));
    println!(
        "{target:>14}: finding -> verified change median {:>7.1} ms | direct call + read-back median {:>6.1} ms | overhead {:>6.1} ms",
        through.as_secs_f64() * 1e3,
        direct.as_secs_f64() * 1e3,
        (through.saturating_sub(direct)).as_secs_f64() * 1e3
    );
}

async fn aws(moto: &MotoServer, n: usize) -> anyhow::Result<()> {
    let config = AwsConfig::new("testing", "testing", "us-east-1").with_endpoint(&moto.url())?;
    let client = AwsClient::new(config.clone())?;
    let mut direct_keys = Vec::new();
    for i in 0..n {
        for prefix in ["bench", "direct"] {
            let user = format!("{prefix}-{i}");
            client
                .query(Service::Iam, "CreateUser", &[("UserName", &user)])
                .await?;
            let body = client
                .query(Service::Iam, "CreateAccessKey", &[("UserName", &user)])
                .await?;
            if prefix == "direct" {
                let key = body
                    .split("<AccessKeyId>")
                    .nth(1)
                    .and_then(|rest| rest.split("</AccessKeyId>").next())
                    .context("no key id")?
                    .to_owned();
                direct_keys.push((user, key));
            }
        }
    }
    let connector: Arc<dyn Connector> = Arc::new(AwsIam::connect(config).await?);
    let system = connector.system().to_owned();
    let rig = rig(connector, &format!("{system}/*,bench,medium\n")).await?;
    let mut through = Vec::new();
    for i in 0..n {
        through.push(
            one_change(
                &rig,
                &system,
                &format!("bench-{i}/AccessKey1"),
                "iam_user_accesskey_unused",
            )
            .await?,
        );
    }
    let mut direct = Vec::new();
    for (user, key) in &direct_keys {
        let started = Instant::now();
        client
            .query(
                Service::Iam,
                "UpdateAccessKey",
                &[
                    ("UserName", user),
                    ("AccessKeyId", key),
                    ("Status", "Inactive"),
                ],
            )
            .await?;
        client
            .query(Service::Iam, "ListAccessKeys", &[("UserName", user)])
            .await?;
        direct.push(started.elapsed());
    }
    print("aws iam (moto)", through, direct);
    Ok(())
}

async fn postgres(cluster: &PgCluster, n: usize) -> anyhow::Result<()> {
    let url = cluster.create_database("target")?;
    let mut admin = sqlx::PgConnection::connect(&url).await?;
    for i in 0..n {
        for prefix in ["bench", "direct"] {
            admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "CREATE ROLE {prefix}_{i} LOGIN"
                )))
                .await?;
        }
    }
    let connector: Arc<dyn Connector> = Arc::new(
        PostgresRoles::connect(PostgresRolesConfig {
            system: "postgres:bench".into(),
            url: url.clone(),
            rotation_secret_sink: None,
        })
        .await?,
    );
    let rig = rig(connector, "postgres:bench/*,bench,medium\n").await?;
    let mut through = Vec::new();
    for i in 0..n {
        through.push(
            one_change(
                &rig,
                "postgres:bench",
                &format!("bench_{i}"),
                "inactive_service_account",
            )
            .await?,
        );
    }
    let mut direct = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "ALTER ROLE direct_{i} NOLOGIN"
            )))
            .await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'direct_{i}'"
            )))
            .await?;
        direct.push(started.elapsed());
    }
    print("postgres roles", through, direct);
    Ok(())
}
