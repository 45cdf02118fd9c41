//! `writ campaign`: certification campaigns through the API, as the principal of `WRIT_TOKEN`.
//! `start` puts every identity of a system to its owner team (role `admin`), `list` and
//! `status` show where campaigns stand, and `answer` certifies or revokes one identity (a vote
//! under the case's approval rule).

use std::process::ExitCode;

use crate::client::{Client, ServerArgs};
use crate::exception_cmd::parse_when;

/// `writ campaign ...`
#[derive(Debug, clap::Subcommand)]
pub enum CampaignCommand {
    /// Ask each owner team to certify or revoke each identity of a system by a deadline.
    Start {
        /// The system (as the inventory names it).
        #[arg(long)]
        system: String,
        /// When answers are due: an RFC 3339 time, or a span from now (`14d`, `12h`).
        #[arg(long, default_value = "14d")]
        deadline: String,
        /// Only identities of this kind (repeat; `service_account`, `api_key`, ...).
        #[arg(long = "kind")]
        kinds: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The campaigns started, newest first.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// A campaign and where each identity stands.
    Status {
        /// The campaign id.
        id: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Answer for one identity: certify (keep it) or revoke (take it away).
    Answer {
        /// The identity's certification case.
        case: writ_core::ids::CaseId,
        /// `certify` or `revoke`.
        #[arg(value_parser = ["certify", "revoke"])]
        answer: String,
        /// Why (required).
        #[arg(long)]
        rationale: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn run(command: CampaignCommand) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(async {
        match command {
            CampaignCommand::Start {
                system,
                deadline,
                kinds,
                server,
            } => {
                let deadline =
                    parse_when(&deadline, writ_core::Clock::now(&writ_core::SystemClock))?;
                let client = Client::from_env(&server)?;
                let body = serde_json::json!({
                    "system": system, "deadline": deadline.to_string(), "kinds": kinds,
                });
                let answer: serde_json::Value = client.post("/v1/campaigns", &body).await?;
                let campaign = &answer["campaign"];
                println!(
                    "campaign {}: {} identities of {} to certify by {} ({} cases opened, {} joined)",
                    campaign["id"].as_str().unwrap_or("?"),
                    campaign["items"],
                    campaign["system"].as_str().unwrap_or("?"),
                    campaign["deadline"].as_str().unwrap_or("?"),
                    answer["opened"],
                    answer["joined"],
                );
            }
            CampaignCommand::List { json, server } => {
                let client = Client::from_env(&server)?;
                let list: serde_json::Value = client.get("/v1/campaigns").await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else {
                    println!(
                        "{:<36}  {:<20}  {:>6}  {:<27}  STARTED BY",
                        "CAMPAIGN", "SYSTEM", "ITEMS", "DEADLINE"
                    );
                    for c in list.as_array().into_iter().flatten() {
                        println!(
                            "{:<36}  {:<20}  {:>6}  {:<27}  {}",
                            c["id"].as_str().unwrap_or("?"),
                            c["system"].as_str().unwrap_or("?"),
                            c["items"],
                            c["deadline"].as_str().unwrap_or("?"),
                            c["started_by"].as_str().unwrap_or("?"),
                        );
                    }
                }
            }
            CampaignCommand::Status { id, json, server } => {
                let client = Client::from_env(&server)?;
                let report: serde_json::Value =
                    client.get(&format!("/v1/campaigns/{id}")).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    let campaign = &report["campaign"];
                    println!(
                        "campaign {} over {}: due {}, started by {}",
                        campaign["id"].as_str().unwrap_or("?"),
                        campaign["system"].as_str().unwrap_or("?"),
                        campaign["deadline"].as_str().unwrap_or("?"),
                        campaign["started_by"].as_str().unwrap_or("?"),
                    );
                    let counts: Vec<String> = report["counts"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(status, n)| format!("{status} {n}"))
                        .collect();
                    println!("{}", counts.join(", "));
                    println!("{:<40}  {:<20}  {:<10}  CASE", "IDENTITY", "OWNER", "STATUS");
                    for item in report["items"].as_array().into_iter().flatten() {
                        println!(
                            "{:<40}  {:<20}  {:<10}  {}",
                            item["external_id"].as_str().unwrap_or("?"),
                            item["owner_team"].as_str().unwrap_or("-"),
                            item["status"].as_str().unwrap_or("?"),
                            item["case_id"].as_str().unwrap_or("-"),
                        );
                    }
                }
            }
            CampaignCommand::Answer {
                case,
                answer,
                rationale,
                server,
            } => {
                let client = Client::from_env(&server)?;
                let body = serde_json::json!({"answer": answer, "rationale": rationale});
                let outcome: serde_json::Value = client
                    .post(&format!("/v1/cases/{case}/certification"), &body)
                    .await?;
                if outcome["closed"] == true {
                    println!("case {case}: certified; the case is closed");
                } else if let Some(job) = outcome["job_id"].as_str() {
                    println!("case {case}: revoked; the change is queued (job {job})");
                } else {
                    println!(
                        "case {case}: {answer} recorded; {} more approval(s) needed under \"{}\"",
                        outcome["missing"],
                        outcome["rule"].as_str().unwrap_or("?")
                    );
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
