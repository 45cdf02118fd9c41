//! `writ case`: list cases and show one with its whole story from the ledger.

use std::process::ExitCode;

use writ_core::case::{Case, CaseState};
use writ_core::decision::{Decision, Tier};
use writ_core::event::EventBody;
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
                        text.parse::<CaseState>()
                            .map_err(|_| anyhow::anyhow!("unknown case state {text:?}"))
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
                    let events: Vec<writ_core::event::Event> = entries
                        .iter()
                        .map(|row| writ_engine::entries::decode(row).map_err(anyhow::Error::from))
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

fn state_name(state: CaseState) -> &'static str {
    state.into()
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
        let event = writ_engine::entries::decode(row)?;
        println!(
            "#{:<6} {}  {:<20} by {}",
            event.seq,
            event.time.strftime("%Y-%m-%d %H:%M:%S"),
            event.kind,
            event.actor
        );
        match &event.body {
            EventBody::DecisionRecorded(decided) => {
                if let Some(routing) = &decided.routing {
                    println!("         routed to human review: {}", routing.reason);
                }
                println!("         {}", explain(&decided.decision));
            }
            EventBody::ApprovalGranted(granted) => {
                println!("         rationale: {}", granted.rationale);
            }
            EventBody::RollbackIntent(intent) => {
                println!("         rationale: {}", intent.rationale);
            }
            EventBody::RolledBack(rolled_back) => {
                println!("         rationale: {}", rolled_back.rationale);
            }
            _ => {}
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
