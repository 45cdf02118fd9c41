//! `writ case`: list cases and show one with its whole story from the ledger.

use std::process::ExitCode;

use anyhow::Context as _;
use writ_core::case::{Case, CaseState};
use writ_core::decision::{Decision, Tier};
use writ_core::ids::CaseId;
use writ_store::{CaseFilter, LedgerRow};

use crate::config::Config;

/// `writ case ...`
#[derive(Debug, clap::Subcommand)]
pub enum CaseCommand {
    /// List cases, most recently changed first.
    List {
        /// Only cases in this state (needs_review, awaiting_approval, frozen, remediating, ...).
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a case and every ledger event about it, with its decisions explained.
    Show {
        /// The case id.
        id: CaseId,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config: &Config, command: CaseCommand) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(async {
        let store = crate::open_store(config).await?;
        match command {
            CaseCommand::List { state, limit, json } => {
                let state = state
                    .map(|text| {
                        serde_json::from_value::<CaseState>(serde_json::Value::String(text.clone()))
                            .with_context(|| format!("unknown case state {text:?}"))
                    })
                    .transpose()?;
                let cases = store
                    .cases(&CaseFilter {
                        state,
                        limit: Some(limit),
                    })
                    .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&cases)?);
                } else {
                    print_table(&cases);
                }
                Ok(ExitCode::SUCCESS)
            }
            CaseCommand::Show { id, json } => {
                let Some(case) = store.case(id).await? else {
                    eprintln!("writ: no case {id}");
                    return Ok(ExitCode::from(2));
                };
                let entries = store.case_entries(id).await?;
                if json {
                    let events: Vec<serde_json::Value> = entries
                        .iter()
                        .map(|row| writ_ledger::decode_leaf(&row.leaf).map_err(anyhow::Error::from))
                        .collect::<anyhow::Result<_>>()?;
                    println!(
                        "{}",
                        serde_json::to_string_pretty(
                            &serde_json::json!({"case": case, "events": events})
                        )?
                    );
                } else {
                    print_story(&case, &entries)?;
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

fn state_name(state: CaseState) -> String {
    match serde_json::to_value(state) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{state:?}"),
    }
}

fn print_table(cases: &[Case]) {
    if cases.is_empty() {
        println!("no cases");
        return;
    }
    println!(
        "{:<36}  {:<18}  {:<34}  {:<40}  compliance",
        "case", "state", "finding type", "subject"
    );
    for case in cases {
        println!(
            "{:<36}  {:<18}  {:<34}  {:<40}  {}",
            case.id,
            state_name(case.state),
            case.finding_type,
            case.subject,
            if case.compliance_closed {
                "closed"
            } else {
                "open"
            }
        );
    }
}

fn print_story(case: &Case, entries: &[LedgerRow]) -> anyhow::Result<()> {
    println!("case      {}", case.id);
    println!("subject   {}", case.subject);
    println!("finding   {}", case.finding_type);
    println!(
        "state     {} (compliance: {})",
        state_name(case.state),
        if case.compliance_closed {
            "closed"
        } else {
            "open"
        }
    );
    println!();
    for row in entries {
        let event = writ_ledger::decode_leaf(&row.leaf)?;
        println!(
            "#{:<6} {}  {:<20} by {}",
            row.seq,
            row.time.strftime("%Y-%m-%d %H:%M:%S"),
            row.kind,
            row.actor
        );
        let body = &event["body"];
        if let Some(reason) = body["routing"]["reason"].as_str() {
            println!("         routed to human review: {reason}");
        }
        if !body["decision"].is_null() {
            let decision: Decision = serde_json::from_value(body["decision"].clone())
                .context("a decision event holds a malformed decision")?;
            println!("         {}", explain(&decision));
        }
        if let Some(rationale) = body["rationale"].as_str() {
            println!("         rationale: {rationale}");
        }
    }
    Ok(())
}

/// One line saying what policy decided and why.
pub fn explain(decision: &Decision) -> String {
    let outcome = match &decision.tier {
        Tier::Auto => format!("{} may be applied automatically", decision.action),
        Tier::Approval {
            count,
            approver_group,
        } => format!(
            "{} needs {count} approval(s) from {approver_group}",
            decision.action
        ),
        Tier::CaseOnly { freeze: true } => {
            "case only; pending approvals on this identity are frozen".to_owned()
        }
        Tier::CaseOnly { freeze: false } => {
            "case only; no change may be made automatically".to_owned()
        }
        Tier::Deny => format!("{} is denied", decision.action),
    };
    let by = if decision.determining_policies.is_empty() {
        "no policy matched".to_owned()
    } else {
        format!("policies {}", decision.determining_policies.join(", "))
    };
    format!(
        "decision: {outcome} ({by}; {}; bundle {})",
        decision.reason, decision.bundle_hash
    )
}
