//! `writ principal`: who may act on writ. Adding the first admin of an empty database
//! (`--bootstrap`) is the operator's local command; everything else is an admin's API call.
//! A new token is printed once, alone on the last line of stdout.

use std::process::ExitCode;

use writ_core::finding::Trust;
use writ_core::principal::{PrincipalKind, Role};
use writ_engine::principals::NewPrincipal;

use crate::client::{Client, ServerArgs};
use crate::config::Config;

/// `writ principal ...`
#[derive(Debug, clap::Subcommand)]
pub enum PrincipalCommand {
    /// Add a principal and print its first token (once, alone on the last line).
    Add(AddArgs),
    /// List principals.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Disable a principal: its tokens are revoked and its votes stop counting.
    Disable {
        /// The principal.
        name: String,
        /// Why (recorded in the ledger).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Change a principal's teams, roles or trust (an admin; never one's own).
    Change {
        /// The principal.
        name: String,
        /// Its teams from now on (repeat for several).
        #[arg(long = "team")]
        teams: Vec<String>,
        /// Remove it from every team.
        #[arg(long, conflicts_with = "teams")]
        no_teams: bool,
        /// Its roles from now on (repeat for several).
        #[arg(long = "role")]
        roles: Vec<Role>,
        /// Its trust level (sources).
        #[arg(long)]
        trust: Option<Trust>,
        /// Why (recorded in the ledger).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List a principal's tokens (ids, expiry, revoked; never secrets).
    Tokens {
        /// The principal.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke one of a principal's tokens (an admin, or the principal itself).
    Revoke {
        /// The principal.
        name: String,
        /// The token's id (from `writ principal tokens`).
        token: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Who the token in WRIT_TOKEN belongs to.
    Whoami {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Issue a new token to a principal (printed once, alone on the last line).
    Token {
        /// The principal.
        name: String,
        /// Days until it expires (0: never).
        #[arg(long, default_value_t = 90)]
        days: u32,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Options of `writ principal add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// Its name (canonicalised: NFKC, case-folded, trimmed).
    name: String,
    /// A team (repeat for several).
    #[arg(long = "team")]
    teams: Vec<String>,
    /// A role: source, requester, approver, admin, auditor, break_glass (repeat for several).
    #[arg(long = "role", required = true)]
    roles: Vec<Role>,
    /// Trust level of a source: low, medium or high.
    #[arg(long)]
    trust: Option<Trust>,
    /// A service (machine) rather than a person.
    #[arg(long)]
    service: bool,
    /// Days until its token expires (0: never).
    #[arg(long, default_value_t = 90)]
    token_days: u32,
    /// Make the first admin of an empty database, locally (needs the database and the
    /// ledger key; refused once any principal exists).
    #[arg(long)]
    bootstrap: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(config: &Config, command: PrincipalCommand) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(async {
        match command {
            PrincipalCommand::Add(args) if args.bootstrap => {
                let engine = crate::serve::build(config, false).await?;
                let (principal, token) = engine
                    .principals
                    .bootstrap(NewPrincipal {
                        name: args.name,
                        kind: if args.service {
                            PrincipalKind::Service
                        } else {
                            PrincipalKind::Person
                        },
                        teams: args.teams,
                        roles: args.roles,
                        trust: args.trust,
                        token_ttl: ttl(args.token_days),
                    })
                    .await?;
                eprintln!(
                    "added {} (the first admin); its token follows, shown once:",
                    principal.name
                );
                println!("{}", token.secret);
            }
            PrincipalCommand::Add(args) => {
                let client = Client::from_env(&args.server)?;
                let roles: Vec<&str> = args.roles.iter().map(|r| <&str>::from(*r)).collect();
                let answer: serde_json::Value = client
                    .post(
                        "/v1/principals",
                        &serde_json::json!({
                            "name": args.name,
                            "kind": if args.service { "service" } else { "person" },
                            "teams": args.teams,
                            "roles": roles,
                            "trust": args.trust.map(<&str>::from),
                            "token_days": args.token_days,
                        }),
                    )
                    .await?;
                eprintln!(
                    "added {}; its token follows, shown once:",
                    answer["principal"]["name"].as_str().unwrap_or("?")
                );
                println!("{}", answer["token"].as_str().unwrap_or_default());
            }
            PrincipalCommand::List { server } => {
                let client = Client::from_env(&server)?;
                let all: Vec<serde_json::Value> = client.get("/v1/principals").await?;
                for p in all {
                    let list = |v: &serde_json::Value| {
                        v.as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| x.as_str())
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                            .unwrap_or_default()
                    };
                    println!(
                        "{:<24} {:<8} teams={:<20} roles={:<24} trust={:<6} {}",
                        p["name"].as_str().unwrap_or("?"),
                        p["kind"].as_str().unwrap_or("?"),
                        list(&p["teams"]),
                        list(&p["roles"]),
                        p["trust"].as_str().unwrap_or("-"),
                        if p["disabled"].as_bool() == Some(true) {
                            "DISABLED"
                        } else {
                            ""
                        }
                    );
                }
            }
            PrincipalCommand::Disable {
                name,
                reason,
                server,
            } => {
                let client = Client::from_env(&server)?;
                let answer: serde_json::Value = client
                    .post(
                        &format!("/v1/principals/{}/disable", segment(&name)),
                        &serde_json::json!({"reason": reason}),
                    )
                    .await?;
                println!(
                    "{} is disabled; its tokens are revoked",
                    answer["name"].as_str().unwrap_or(&name)
                );
            }
            PrincipalCommand::Change {
                name,
                teams,
                no_teams,
                roles,
                trust,
                reason,
                server,
            } => {
                let client = Client::from_env(&server)?;
                let mut change = serde_json::json!({"reason": reason});
                if no_teams || !teams.is_empty() {
                    change["teams"] = serde_json::json!(teams);
                }
                if !roles.is_empty() {
                    let roles: Vec<&str> = roles.iter().map(|r| <&str>::from(*r)).collect();
                    change["roles"] = serde_json::json!(roles);
                }
                if let Some(trust) = trust {
                    change["trust"] = serde_json::json!(<&str>::from(trust));
                }
                let answer: serde_json::Value = client
                    .patch(&format!("/v1/principals/{}", segment(&name)), &change)
                    .await?;
                println!(
                    "{} changed: teams={} roles={} trust={}",
                    answer["name"].as_str().unwrap_or(&name),
                    answer["teams"],
                    answer["roles"],
                    answer["trust"]
                );
            }
            PrincipalCommand::Tokens { name, server } => {
                let client = Client::from_env(&server)?;
                let tokens: Vec<serde_json::Value> = client
                    .get(&format!("/v1/principals/{}/tokens", segment(&name)))
                    .await?;
                for t in tokens {
                    println!(
                        "{}  expires={}  {}",
                        t["id"].as_str().unwrap_or("?"),
                        t["expires_at"].as_str().unwrap_or("never"),
                        if t["revoked"].as_bool() == Some(true) {
                            "REVOKED"
                        } else {
                            "live"
                        }
                    );
                }
            }
            PrincipalCommand::Revoke {
                name,
                token,
                server,
            } => {
                let client = Client::from_env(&server)?;
                let _: serde_json::Value = client
                    .delete(&format!(
                        "/v1/principals/{}/tokens/{}",
                        segment(&name),
                        segment(&token)
                    ))
                    .await?;
                println!("token {token} of {name} is revoked");
            }
            PrincipalCommand::Whoami { server } => {
                let client = Client::from_env(&server)?;
                let me: serde_json::Value = client.get("/v1/whoami").await?;
                println!("{}", serde_json::to_string_pretty(&me)?);
            }
            PrincipalCommand::Token { name, days, server } => {
                let client = Client::from_env(&server)?;
                let answer: serde_json::Value = client
                    .post(
                        &format!("/v1/principals/{}/tokens", segment(&name)),
                        &serde_json::json!({"days": days}),
                    )
                    .await?;
                eprintln!(
                    "new token {} for {}, shown once:",
                    answer["token_id"].as_str().unwrap_or("?"),
                    answer["principal"]["name"].as_str().unwrap_or("?")
                );
                println!("{}", answer["token"].as_str().unwrap_or_default());
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn segment(text: &str) -> String {
    crate::inventory_cmd::path_segment(text)
}

fn ttl(days: u32) -> Option<jiff::SignedDuration> {
    (days > 0).then(|| jiff::SignedDuration::from_hours(i64::from(days) * 24))
}
