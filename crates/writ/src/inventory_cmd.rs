//! `writ sync` and `writ inventory`: fill the inventory that findings resolve against, as API
//! calls to `writ serve` (which alone writes the ledger); and connecting to configured targets.

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

use crate::client::{Client, ServerArgs};
use crate::config::{Config, TargetConfig, TargetKind};

/// Options of `writ sync`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The `[[targets]]` name to discover (as configured on the server).
    target: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// Options of `writ systems`.
#[derive(Debug, clap::Args)]
pub struct SystemsArgs {
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// `writ systems`: each target system's freshness and last sync, through the API.
pub fn systems(args: SystemsArgs) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(async {
        let client = Client::from_env(&args.server)?;
        let systems: Vec<serde_json::Value> = client.get("/v1/systems").await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&systems)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!("SYSTEM  TARGET  LAST RESULT  LAST SUCCESS  AGE  IDENTITIES  OWNED");
        for system in systems {
            let text = |key: &str| system[key].as_str().unwrap_or("-").to_owned();
            let number = |key: &str| {
                system[key]
                    .as_u64()
                    .map_or("-".to_owned(), |n| n.to_string())
            };
            let mut result = match system["error"].as_str() {
                Some(error) => format!("failed ({error})"),
                None => text("result"),
            };
            if let Some(reason) = system["paused_reason"].as_str() {
                result.push_str(&format!(", AUTOMATION PAUSED ({reason})"));
            }
            let age = system["age_seconds"]
                .as_i64()
                .map_or("-".to_owned(), |s| format!("{s}s"));
            println!(
                "{}  {}  {}  {}  {}  {}  {}",
                text("system"),
                text("target"),
                result,
                text("last_success_at"),
                age,
                number("identities"),
                number("owned"),
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `writ inventory ...`
#[derive(Debug, clap::Subcommand)]
pub enum InventoryCommand {
    /// Import ownership and criticality rules (CSV `pattern,owner_team,criticality[,privileged]`
    /// or a JSON array), record them in the ledger, and apply them to known identities.
    Import {
        /// The rules file (`.csv` or `.json`).
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the identities writ knows.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
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
        TargetKind::Oauth => {
            let issuer = target.issuer.clone().with_context(|| {
                format!("target {}: an oauth target needs `issuer`", target.name)
            })?;
            let file = target.registrations_file.as_ref().with_context(|| {
                format!(
                    "target {}: an oauth target needs `registrations_file`",
                    target.name
                )
            })?;
            let registrations = writ_connector_oauth::OauthClientsConfig::read_registrations(file)
                .with_context(|| format!("target {}", target.name))?;
            let connector = writ_connector_oauth::OauthClients::new(
                writ_connector_oauth::OauthClientsConfig {
                    system: target.system.clone().unwrap_or_else(|| target.name.clone()),
                    issuer,
                    registrations,
                    agents: target.agents.iter().cloned().collect(),
                },
            )?;
            Ok(Arc::new(connector))
        }
        TargetKind::AwsIam => {
            let mut iam = AwsIam::connect(aws_config(target)?).await?;
            if let Some(name) = &target.rotation_sink {
                let store = secrets_target(config, target, name)?;
                let template = target
                    .rotation_secret_name
                    .as_deref()
                    .unwrap_or(DEFAULT_SECRET_NAME);
                iam = iam.with_rotation(aws_config(store)?, template)?;
            }
            Ok(Arc::new(iam))
        }
        TargetKind::AwsSecrets => Ok(Arc::new(
            AwsSecretsManager::connect(aws_config(target)?).await?,
        )),
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

/// The `aws_secrets` target named `name`, which `target`'s rotated secrets go to.
fn secrets_target<'c>(
    config: &'c Config,
    target: &TargetConfig,
    name: &str,
) -> anyhow::Result<&'c TargetConfig> {
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
    Ok(store)
}

/// The sink `target`'s rotated passwords go to: the `aws_secrets` target named `name`.
fn secrets_sink(
    config: &Config,
    target: &TargetConfig,
    name: &str,
) -> anyhow::Result<Arc<dyn SecretSink>> {
    let store = secrets_target(config, target, name)?;
    let template = target
        .rotation_secret_name
        .as_deref()
        .unwrap_or(DEFAULT_SECRET_NAME);
    Ok(Arc::new(SecretsManagerSink::new(
        aws_config(store)?,
        template,
    )?))
}

/// `writ sync`: discovery through the API (`POST /v1/targets/{name}/sync`, admin), recorded as
/// the principal of `WRIT_TOKEN`.
pub fn sync(args: SyncArgs) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(async {
        let client = Client::from_env(&args.server)?;
        let report: serde_json::Value = client
            .post_empty(&format!("/v1/targets/{}/sync", path_segment(&args.target)))
            .await?;
        println!(
            "synced {}: {} objects discovered, {} identities recorded, {} matched an ownership rule; {} case(s) opened before their identity was known decided now",
            report["system"].as_str().unwrap_or(&args.target),
            report["discovered"],
            report["recorded"],
            report["owned"],
            report["decided"].as_u64().unwrap_or(0)
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// `writ inventory ...` through the API: importing rules needs an admin's token, listing a
/// reader's.
pub fn run(command: InventoryCommand) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(async {
        match command {
            InventoryCommand::Import { file, server } => {
                let display = file.display().to_string();
                let bytes =
                    std::fs::read(&file).with_context(|| format!("cannot read {display}"))?;
                let text = std::str::from_utf8(&bytes)
                    .with_context(|| format!("{display} is not UTF-8"))?;
                // Read here (CSV or JSON), so that a mistake is named with this file and
                // line; the server takes the rules as JSON.
                let rules = inventory::parse_rules(&display, text)?;
                let name = file.file_name().map_or_else(
                    || "rules.json".to_owned(),
                    |n| n.to_string_lossy().into_owned(),
                );
                let client = Client::from_env(&server)?;
                let report: serde_json::Value = client
                    .post(
                        &format!("/v1/inventory/rules?name={}", path_segment(&name)),
                        &rules,
                    )
                    .await?;
                println!(
                    "imported {display}: {} identities matched a rule, {} updated",
                    report["owned"], report["recorded"]
                );
            }
            InventoryCommand::List { server } => {
                let client = Client::from_env(&server)?;
                let identities: Vec<serde_json::Value> = client.get("/v1/identities").await?;
                for identity in identities {
                    let text = |key: &str| identity[key].as_str().unwrap_or("-").to_owned();
                    println!(
                        "{}/{}  {}  owner={}  {}  reconciled={}",
                        text("system"),
                        text("external_id"),
                        text("kind"),
                        text("owner_team"),
                        text("criticality"),
                        identity["reconciled_at"].as_str().unwrap_or("never")
                    );
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `text` made safe as one URL path segment or query value (percent-encoding every byte
/// outside the unreserved set). Hand-written: the client needs nothing else of a URL crate.
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
