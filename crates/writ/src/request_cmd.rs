//! `writ request`: ask for a change no finding called for (a new service account, an OAuth
//! client's scopes, an agent's time-boxed tool access), through the API as the principal of
//! `WRIT_TOKEN` (role `requester`, never an approver of its own request).

use std::process::ExitCode;

use crate::client::{Client, ServerArgs};
use crate::exception_cmd::{parse_when, span_seconds};

/// `writ request ...`
#[derive(Debug, clap::Subcommand)]
pub enum RequestCommand {
    /// A new service account: created only after policy review and approvals, with its owner
    /// recorded in the inventory, and disabled at its expiry.
    NewServiceAccount {
        /// The target (a `[[targets]]` system).
        #[arg(long)]
        system: String,
        /// The account's name.
        #[arg(long)]
        name: String,
        /// The team that will own it.
        #[arg(long)]
        owner_team: String,
        /// What it is for.
        #[arg(long)]
        purpose: String,
        /// When it is disabled: an RFC 3339 time, or a span from now (`90d`, `12h`).
        #[arg(long)]
        expires: String,
        /// The change ticket.
        #[arg(long)]
        ticket: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Set an OAuth client's scopes (every scope it should have afterwards); policy sees
    /// which are added and which removed.
    ScopeChange {
        /// The target (a `[[targets]]` system of kind `oauth`).
        #[arg(long)]
        system: String,
        /// The client id.
        #[arg(long)]
        client: String,
        /// A scope it should have (repeat; none at all removes every scope).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Why.
        #[arg(long)]
        justification: String,
        /// The change ticket.
        #[arg(long)]
        ticket: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Give an AI agent tools (scopes) for a while; they are taken away by themselves.
    AgentAccess {
        /// The target.
        #[arg(long)]
        system: String,
        /// The agent's client id.
        #[arg(long)]
        agent: String,
        /// A scope to add (repeat).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// For how long from when it is granted (`2h`, `30m`, `1d`, `90s`).
        #[arg(long)]
        duration: String,
        /// A finding type that ends the access at once when raised about the agent (repeat).
        #[arg(long = "revoke-on")]
        revoke_on: Vec<String>,
        /// Why.
        #[arg(long)]
        justification: String,
        /// The change ticket.
        #[arg(long)]
        ticket: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Take an agent or service principal away (deleted where the target can, else
    /// disabled), with its change ticket; its dependants must have cut over.
    Offboard {
        /// The target.
        #[arg(long)]
        system: String,
        /// The principal (or its credential) there.
        #[arg(long)]
        principal: String,
        /// The change ticket.
        #[arg(long)]
        ticket: String,
        /// Why.
        #[arg(long)]
        justification: String,
        /// The rotation case whose consumer check showed its dependants cut over.
        #[arg(long)]
        cutover_case: Option<writ_core::ids::CaseId>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn run(command: RequestCommand) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(async {
        let (server, body) = match command {
            RequestCommand::NewServiceAccount {
                system,
                name,
                owner_team,
                purpose,
                expires,
                ticket,
                server,
            } => {
                let expires_at =
                    parse_when(&expires, writ_core::Clock::now(&writ_core::SystemClock))?;
                let mut body = serde_json::json!({
                    "kind": "new_service_account", "system": system, "name": name,
                    "owner_team": owner_team, "purpose": purpose,
                    "expires_at": expires_at.to_string(),
                });
                if let Some(ticket) = ticket {
                    body["ticket"] = ticket.into();
                }
                (server, body)
            }
            RequestCommand::ScopeChange {
                system,
                client,
                scopes,
                justification,
                ticket,
                server,
            } => {
                let mut body = serde_json::json!({
                    "kind": "oauth_scope_change", "system": system, "client_id": client,
                    "scopes": scopes, "justification": justification,
                });
                if let Some(ticket) = ticket {
                    body["ticket"] = ticket.into();
                }
                (server, body)
            }
            RequestCommand::AgentAccess {
                system,
                agent,
                scopes,
                duration,
                revoke_on,
                justification,
                ticket,
                server,
            } => {
                let mut body = serde_json::json!({
                    "kind": "agent_tool_access", "system": system, "agent": agent,
                    "scopes": scopes, "duration_seconds": span_seconds(&duration)?,
                    "revoke_on": revoke_on, "justification": justification,
                });
                if let Some(ticket) = ticket {
                    body["ticket"] = ticket.into();
                }
                (server, body)
            }
            RequestCommand::Offboard {
                system,
                principal,
                ticket,
                justification,
                cutover_case,
                server,
            } => {
                let mut body = serde_json::json!({
                    "kind": "offboard", "system": system, "principal": principal,
                    "ticket": ticket, "justification": justification,
                });
                if let Some(case) = cutover_case {
                    body["cutover_case"] = case.to_string().into();
                }
                (server, body)
            }
        };
        let client = Client::from_env(&server)?;
        let answer: serde_json::Value = client.post("/v1/requests", &body).await?;
        let case = answer["case_id"].as_str().unwrap_or("?");
        let action = answer["action"].as_str().unwrap_or("?");
        match answer["state"].as_str() {
            Some("awaiting_approval") => println!(
                "case {case}: {action} waits for \"{}\": {}",
                answer["rule"].as_str().unwrap_or("?"),
                answer["reason"].as_str().unwrap_or("")
            ),
            Some("remediating") => println!(
                "case {case}: {action} is queued (job {}): {}",
                answer["job_id"].as_str().unwrap_or("?"),
                answer["reason"].as_str().unwrap_or("")
            ),
            Some(state) => println!(
                "case {case}: {action} is {state}: {}",
                answer["reason"].as_str().unwrap_or("")
            ),
            None => println!("case {case}"),
        }
        Ok(ExitCode::SUCCESS)
    })
}
