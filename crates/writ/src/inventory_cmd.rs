//! `writ sync` and `writ inventory`: fill the inventory that findings resolve against.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use writ_connector_aws::{
    AwsConfig, AwsIam, AwsSecretsManager, DEFAULT_SECRET_NAME, SecretsManagerSink,
};
use writ_connector_postgres::{PostgresRoles, PostgresRolesConfig};
use writ_connectors::{Connector, SecretSink};
use writ_engine::inventory;

use crate::config::{Config, TargetConfig, TargetKind};

/// Options of `writ sync`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The `[[targets]]` name to discover.
    target: String,
}

/// `writ inventory ...`
#[derive(Debug, clap::Subcommand)]
pub enum InventoryCommand {
    /// Import ownership and criticality rules (CSV `pattern,owner_team,criticality[,privileged]`
    /// or a JSON array), record them in the ledger, and apply them to known identities.
    Import {
        /// The rules file (`.csv` or `.json`).
        file: PathBuf,
    },
    /// List the identities writ knows.
    List,
}

/// Connects to a configured target (`config` supplies the other targets it refers to).
pub async fn connect(config: &Config, target: &TargetConfig) -> anyhow::Result<Arc<dyn Connector>> {
    match target.kind {
        TargetKind::Postgres => {
            let url = match (&target.url_env, &target.url) {
                (Some(var), _) => std::env::var(var).with_context(|| {
                    format!(
                        "target {}: environment variable {var} is not set",
                        target.name
                    )
                })?,
                (None, Some(url)) => url.clone(),
                (None, None) => anyhow::bail!("target {}: give url_env (or url)", target.name),
            };
            let system = target.system.clone().with_context(|| {
                format!("target {}: a postgres target needs `system`", target.name)
            })?;
            let rotation_secret_sink = match &target.rotation_sink {
                Some(name) => Some(secrets_sink(config, target, name)?),
                None => None,
            };
            let connector = PostgresRoles::connect(PostgresRolesConfig {
                system,
                url,
                rotation_secret_sink,
            })
            .await
            .with_context(|| format!("target {}: cannot connect", target.name))?;
            Ok(Arc::new(connector))
        }
        TargetKind::AwsIam | TargetKind::AwsSecrets => {
            let config = aws_config(target)?;
            Ok(if target.kind == TargetKind::AwsIam {
                Arc::new(AwsIam::connect(config).await?)
            } else {
                Arc::new(AwsSecretsManager::connect(config).await?)
            })
        }
    }
}

/// The AWS settings of a target: credentials from the standard environment, region and
/// endpoint from the target.
fn aws_config(target: &TargetConfig) -> anyhow::Result<AwsConfig> {
    let mut config = AwsConfig::from_env().with_context(|| {
        format!(
            "target {}: AWS credentials (AWS_ACCESS_KEY_ID, ...)",
            target.name
        )
    })?;
    if let Some(region) = &target.region {
        config.region = region.clone();
    }
    if let Some(endpoint) = &target.endpoint {
        config = config
            .with_endpoint(endpoint)
            .with_context(|| format!("target {}: bad endpoint", target.name))?;
    }
    Ok(config)
}

/// The sink `target`'s rotated passwords go to: the `aws_secrets` target named `name`.
fn secrets_sink(
    config: &Config,
    target: &TargetConfig,
    name: &str,
) -> anyhow::Result<Arc<dyn SecretSink>> {
    let store = config
        .targets
        .iter()
        .find(|t| t.name == name)
        .with_context(|| {
            format!(
                "target {}: rotation_sink names {name:?}, which is not a [[targets]] entry",
                target.name
            )
        })?;
    anyhow::ensure!(
        store.kind == TargetKind::AwsSecrets,
        "target {}: rotation_sink {name:?} must be an aws_secrets target",
        target.name
    );
    let template = target
        .rotation_secret_name
        .as_deref()
        .unwrap_or(DEFAULT_SECRET_NAME);
    Ok(Arc::new(SecretsManagerSink::new(
        aws_config(store)?,
        template,
    )?))
}

pub fn sync(config: &Config, args: SyncArgs) -> anyhow::Result<ExitCode> {
    let target = config
        .targets
        .iter()
        .find(|t| t.name == args.target)
        .with_context(|| format!("no [[targets]] entry named {:?}", args.target))?;
    crate::runtime()?.block_on(async {
        let connector = connect(config, target).await?;
        let parts = crate::serve::build(config, false).await?;
        let report = inventory::sync(
            &*parts.store,
            &parts.sequencer,
            &*connector,
            &*parts.clock,
            &*parts.ids,
            "operator",
        )
        .await?;
        println!(
            "synced {}: {} objects discovered, {} identities recorded, {} matched an ownership rule",
            connector.system(),
            report.discovered,
            report.recorded,
            report.owned
        );
        Ok(ExitCode::SUCCESS)
    })
}

pub fn run(config: &Config, command: InventoryCommand) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(async {
        match command {
            InventoryCommand::Import { file } => {
                let display = file.display().to_string();
                let bytes =
                    std::fs::read(&file).with_context(|| format!("cannot read {display}"))?;
                let text = String::from_utf8(bytes.clone())
                    .with_context(|| format!("{display} is not UTF-8"))?;
                let rules = inventory::parse_rules(&display, &text)?;
                let parts = crate::serve::build(config, false).await?;
                let report = inventory::import_rules(
                    &*parts.store,
                    &parts.sequencer,
                    &display,
                    &bytes,
                    rules,
                    &*parts.clock,
                    "operator",
                )
                .await?;
                println!(
                    "imported {display}: {} identities matched a rule, {} updated",
                    report.owned, report.recorded
                );
            }
            InventoryCommand::List => {
                let store = crate::open_store(config).await?;
                for identity in store.identities().await? {
                    println!(
                        "{}/{}  {:?}  owner={}  {:?}  reconciled={}",
                        identity.system,
                        identity.external_id,
                        identity.kind,
                        identity.owner_team.as_deref().unwrap_or("-"),
                        identity.criticality,
                        identity
                            .reconciled_at
                            .map(|t| t.to_string())
                            .unwrap_or_else(|| "never".into())
                    );
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
