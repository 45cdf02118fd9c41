//! `writ case`: list cases and show one with its whole story (a reader's token: requester,
//! approver, admin, auditor or break_glass), and close, dismiss or unfreeze one (an approver's
//! or admin's token; unfreezing, an admin's), through the API.

use std::process::ExitCode;

use writ_core::decision::{Decision, Tier};
use writ_core::event::{EventBody, EventKind};

use crate::client::{Client, ServerArgs};

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
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a case and every ledger event about it, with its decisions explained.
    Show {
        /// The case id.
        id: writ_core::ids::CaseId,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Replay a case: every decision it records, re-evaluated from its recorded inputs under the
    /// bundle that made it (byte for byte), then under today's bundle. Exit 1 when one differs
    /// or cannot be replayed.
    Replay {
        /// The case id.
        id: writ_core::ids::CaseId,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Close a case's compliance side on your word (the rationale is its evidence).
    Close(StepArgs),
    /// Dismiss a case as a false positive.
    Dismiss(StepArgs),
    /// Let a frozen case go on where it stopped.
    Unfreeze(StepArgs),
    /// Apply a case's change at once in an emergency, without approvals (break_glass role;
    /// where policy allows it). The case then owes a review by someone else.
    BreakGlass {
        /// The case id.
        id: writ_core::ids::CaseId,
        /// Why it cannot wait.
        #[arg(long)]
        reason: String,
        /// The incident it answers (a ticket or incident id).
        #[arg(long)]
        incident: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Override a case's automated deny or case-only decision (admin): the change waits for the
    /// named risk owner's approval (`writ approve`), who accepts the residual risk.
    Override {
        /// The case id.
        id: writ_core::ids::CaseId,
        /// Why the automated decision is wrong here.
        #[arg(long)]
        rationale: String,
        /// The principal (role risk_owner) asked to accept the residual risk.
        #[arg(long)]
        risk_owner: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Review a case's break-glass change after the fact: upheld, or rejected (rolled back).
    Review {
        /// The case id.
        id: writ_core::ids::CaseId,
        /// upheld or rejected.
        #[arg(long)]
        verdict: String,
        /// Why.
        #[arg(long)]
        rationale: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// A case and the reason for a step on it.
#[derive(Debug, clap::Args)]
pub struct StepArgs {
    /// The case id.
    pub id: writ_core::ids::CaseId,
    /// Why (required).
    #[arg(long)]
    pub rationale: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(command: CaseCommand) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(async {
        match command {
            CaseCommand::List {
                state,
                limit,
                json,
                server,
            } => {
                let client = Client::from_env(&server)?;
                let mut path = format!("/v1/cases?limit={limit}");
                if let Some(state) = state {
                    path.push_str(&format!(
                        "&state={}",
                        crate::inventory_cmd::path_segment(&state)
                    ));
                }
                let cases: Vec<serde_json::Value> = client.get(&path).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&cases)?);
                } else {
                    print_table(&cases);
                }
                Ok(ExitCode::SUCCESS)
            }
            CaseCommand::Close(args) => step(args, "close", "closed").await,
            CaseCommand::Dismiss(args) => step(args, "dismiss", "dismissed").await,
            CaseCommand::Unfreeze(args) => step(args, "unfreeze", "unfrozen").await,
            CaseCommand::BreakGlass {
                id,
                reason,
                incident,
                server,
            } => {
                let client = Client::from_env(&server)?;
                let answer: serde_json::Value = client
                    .post(
                        &format!("/v1/cases/{id}/break-glass"),
                        &serde_json::json!({"reason": reason, "incident": incident}),
                    )
                    .await?;
                println!(
                    "case {id}: break-glass recorded; job {} ({}) is applied now; the case owes a review",
                    text(&answer["job_id"]),
                    text(&answer["action"])
                );
                Ok(ExitCode::SUCCESS)
            }
            CaseCommand::Override {
                id,
                rationale,
                risk_owner,
                server,
            } => {
                let client = Client::from_env(&server)?;
                let case: serde_json::Value = client
                    .post(
                        &format!("/v1/cases/{id}/override"),
                        &serde_json::json!({"rationale": rationale, "risk_owner": risk_owner}),
                    )
                    .await?;
                println!(
                    "case {id} overridden: now {}; {risk_owner} must approve to accept the residual risk",
                    text(&case["state"])
                );
                Ok(ExitCode::SUCCESS)
            }
            CaseCommand::Review {
                id,
                verdict,
                rationale,
                server,
            } => {
                let client = Client::from_env(&server)?;
                let answer: serde_json::Value = client
                    .post(
                        &format!("/v1/cases/{id}/review"),
                        &serde_json::json!({"verdict": verdict, "rationale": rationale}),
                    )
                    .await?;
                if let Some(job) = answer["rollback_job_id"].as_str() {
                    println!(
                        "case {id}: break-glass change rejected; job {job} is rolled back by the worker"
                    );
                } else if let Some(job) = answer["rotation_job_id"].as_str() {
                    println!(
                        "case {id}: break-glass rotation rejected; a rotation cannot be rolled back, so job {job} rotates the credential again"
                    );
                } else if answer["irreversible"] == true {
                    println!(
                        "case {id}: break-glass change rejected and recorded; it cannot be undone"
                    );
                } else {
                    println!("case {id}: break-glass change {}", text(&answer["verdict"]));
                }
                Ok(ExitCode::SUCCESS)
            }
            CaseCommand::Show { id, json, server } => {
                let client = Client::from_env(&server)?;
                let detail: serde_json::Value = client.get(&format!("/v1/cases/{id}")).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&detail)?);
                } else {
                    print_story(&detail);
                }
                Ok(ExitCode::SUCCESS)
            }
            CaseCommand::Replay { id, json, server } => {
                let client = Client::from_env(&server)?;
                let replay: serde_json::Value =
                    client.get(&format!("/v1/cases/{id}/replay")).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&replay)?);
                } else {
                    print_replay(&replay);
                }
                Ok(if replay["all_identical"] == true {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
        }
    })
}

/// Posts one step with its rationale and says where the case now stands.
async fn step(args: StepArgs, name: &str, done: &str) -> anyhow::Result<ExitCode> {
    let client = Client::from_env(&args.server)?;
    let case: serde_json::Value = client
        .post(
            &format!("/v1/cases/{}/{name}", args.id),
            &serde_json::json!({"rationale": args.rationale}),
        )
        .await?;
    println!(
        "case {} {done}: now {} (compliance: {})",
        args.id,
        text(&case["state"]),
        compliance(&case)
    );
    Ok(ExitCode::SUCCESS)
}

fn text(value: &serde_json::Value) -> &str {
    value.as_str().unwrap_or("-")
}

fn compliance(case: &serde_json::Value) -> &'static str {
    if case["compliance_closed"].as_bool() == Some(true) {
        "closed"
    } else {
        "open"
    }
}

fn print_table(cases: &[serde_json::Value]) {
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
            text(&case["id"]),
            text(&case["state"]),
            text(&case["finding_type"]),
            text(&case["subject"]),
            compliance(case)
        );
    }
}

fn print_story(detail: &serde_json::Value) {
    let case = &detail["case"];
    println!("case      {}", text(&case["id"]));
    println!("subject   {}", text(&case["subject"]));
    println!("finding   {}", text(&case["finding_type"]));
    println!(
        "state     {} (compliance: {})",
        text(&case["state"]),
        compliance(case)
    );
    print_lifecycle(&detail["lifecycle"]);
    println!();
    let events = detail["events"].as_array().map_or(&[][..], Vec::as_slice);
    for event in events {
        let time = text(&event["time"]);
        println!(
            "#{:<6} {}  {:<20} by {}",
            event["seq"],
            time.get(..19).unwrap_or(time).replace('T', " "),
            text(&event["kind"]),
            text(&event["actor"])
        );
        // The body as the typed event, to explain it; an event this client does not know
        // (a newer server) is listed without details.
        let body = event["kind"]
            .as_str()
            .and_then(|kind| kind.parse::<EventKind>().ok())
            .and_then(|kind| EventBody::decode(kind, event["body"].clone()).ok());
        match body {
            Some(EventBody::DecisionRecorded(decided)) => {
                if let Some(routing) = &decided.routing {
                    println!("         routed to human review: {}", routing.reason);
                }
                println!("         {}", explain(&decided.decision));
            }
            Some(EventBody::RollbackRequested(requested)) => {
                println!("         {}", explain(&requested.decision));
                println!("         rationale: {}", requested.rationale);
            }
            Some(EventBody::ApprovalGranted(granted)) => {
                println!("         rationale: {}", granted.rationale);
            }
            Some(EventBody::ChangeRejected(rejected)) => {
                println!("         rationale: {}", rejected.rationale);
            }
            Some(EventBody::RollbackIntent(intent)) => {
                println!("         rationale: {}", intent.rationale);
            }
            Some(EventBody::RolledBack(rolled_back)) => {
                println!("         rationale: {}", rolled_back.rationale);
            }
            Some(EventBody::FindingReceived(received)) => {
                println!(
                    "         {} from {} ({} trust): {}",
                    if received.observation.status.is_fail() {
                        "finding"
                    } else {
                        "passing check"
                    },
                    received.source.name,
                    <&str>::from(received.source.trust),
                    received.observation.title
                );
                if let Some(closed) = received.reopens {
                    println!("         the same problem as closed case {closed}, found again");
                }
            }
            Some(EventBody::CaseClosed(closed)) => match &closed.evidence {
                writ_core::event::ClosureEvidence::Scan { source, title, .. } => {
                    println!(
                        "         compliance closed: {source} reports the check passes ({title})"
                    );
                }
                writ_core::event::ClosureEvidence::Reviewer {
                    reviewer,
                    rationale,
                } => println!("         compliance closed by {reviewer}: {rationale}"),
                writ_core::event::ClosureEvidence::RequestEnded { job, reason } => println!(
                    "         the request ran its course: job {job} ended what it granted ({reason})"
                ),
                writ_core::event::ClosureEvidence::Certification {
                    campaign,
                    answer,
                    answered_by,
                    rationale,
                } => println!(
                    "         {} by {} in campaign {campaign}: {rationale}",
                    match answer {
                        writ_core::campaign::Answer::Certify => "certified",
                        writ_core::campaign::Answer::Revoke => "revoked",
                    },
                    answered_by.join(", ")
                ),
            },
            Some(EventBody::CertificationOverdue(overdue)) => {
                println!(
                    "         nobody answered campaign {} by {}: decided again as overdue",
                    overdue.campaign, overdue.deadline
                );
            }
            Some(EventBody::CaseDismissed(dismissed)) => {
                println!(
                    "         dismissed as a false positive by {}: {}",
                    dismissed.reviewer, dismissed.rationale
                );
            }
            Some(EventBody::CaseFrozen(frozen)) => {
                println!(
                    "         frozen (was {}) by the decision of case {}: {}",
                    <&str>::from(frozen.was),
                    frozen.by_case,
                    frozen.reason
                );
            }
            Some(EventBody::ExceptionRequested(asked)) => {
                let e = &asked.exception;
                println!("         {}", explain(&asked.decision));
                println!(
                    "         exception {} asked by {} until {}: {}",
                    e.id, e.requester, e.expires_at, e.justification
                );
                println!(
                    "         compensating controls: {}; follow-up: {}",
                    e.compensating_controls.join("; "),
                    e.follow_up
                );
            }
            Some(EventBody::ExceptionGranted(granted)) => {
                let e = &granted.exception;
                println!(
                    "         exception {} in force until {}{}",
                    e.id,
                    e.expires_at,
                    e.renew_at
                        .map(|at| format!(" (re-approval asked for at {at})"))
                        .unwrap_or_default()
                );
            }
            Some(EventBody::ExceptionExpired(expired)) => {
                println!(
                    "         exception {} expired at {}: the case reopens and is decided again",
                    expired.exception, expired.expires_at
                );
            }
            Some(EventBody::ExceptionRenewalDue(due)) => {
                println!(
                    "         exception {} expires at {}: re-approval is asked for",
                    due.exception, due.expires_at
                );
            }
            Some(EventBody::OverrideRequested(asked)) => {
                println!(
                    "         OVERRIDE by {} of the automated decision ({}): {}",
                    asked.requester,
                    explain(&asked.overridden),
                    asked.rationale
                );
                println!(
                    "         {} is asked to accept the residual risk",
                    asked.risk_owner
                );
            }
            Some(EventBody::BreakGlassUsed(used)) => {
                println!(
                    "         BREAK-GLASS by {} (override, not an approval) for incident {}: {}",
                    used.by, used.incident, used.reason
                );
                println!("         {}", explain(&used.decision));
                println!("         review due by {}", used.review_due);
            }
            Some(EventBody::BypassReviewOverdue(overdue)) => {
                println!(
                    "         ESCALATED (level {}): the review of {}'s break-glass was due {}",
                    overdue.level, overdue.by, overdue.review_due
                );
            }
            Some(EventBody::BypassReviewed(reviewed)) => {
                println!(
                    "         break-glass by {} {} by {}: {}",
                    reviewed.by,
                    <&str>::from(reviewed.verdict),
                    reviewed.reviewer,
                    reviewed.rationale
                );
            }
            Some(EventBody::CaseUnfrozen(unfrozen)) => {
                println!(
                    "         unfrozen by {}: {}",
                    unfrozen.by, unfrozen.rationale
                );
            }
            Some(EventBody::RequestSubmitted(submitted)) => {
                let request = &submitted.request;
                println!(
                    "         {} requested by {} ({} on {}/{}){}",
                    request.spec.kind(),
                    request.requester,
                    request.change.name(),
                    request.spec.system(),
                    request.spec.external_id(),
                    request
                        .spec
                        .ticket()
                        .map(|t| format!(", ticket {t}"))
                        .unwrap_or_default()
                );
                println!("         {}", explain(&submitted.decision));
            }
            Some(EventBody::AccessExpired(expired)) => {
                println!(
                    "         job {} ends what job {} granted ({})",
                    expired.job.id, expired.ended, expired.reason
                );
            }
            Some(EventBody::RotationProgressed(progressed)) => {
                println!("         {}", progressed.note);
            }
            _ => {}
        }
    }
}

/// The lifecycle at a glance: both closures, decisions, exceptions, break-glass changes.
fn print_lifecycle(life: &serde_json::Value) {
    if life.is_null() {
        return;
    }
    let operational = &life["operational"];
    println!(
        "risk      {}",
        if operational["remediated"].as_bool() == Some(true) {
            format!(
                "closed: a verified change is in effect (#{})",
                operational["verified_seq"]
            )
        } else if let Some(seq) = operational["rolled_back_seq"].as_u64() {
            format!("open: the change was rolled back (#{seq})")
        } else {
            "open: no verified change".to_owned()
        }
    );
    let compliance = &life["compliance"];
    println!(
        "finding   {}",
        if compliance["closed"].as_bool() == Some(true) {
            format!(
                "closed by {} ({}: {}) at #{}",
                text(&compliance["by"]),
                text(&compliance["who"]),
                text(&compliance["evidence"]),
                compliance["seq"]
            )
        } else {
            "open".to_owned()
        }
    );
    if let Some(closed) = life["reopens"].as_str() {
        println!("continues closed case {closed} (the same problem, found again)");
    }
    for entry in life["decisions"].as_array().map_or(&[][..], Vec::as_slice) {
        let mark = if entry["in_force"].as_bool() == Some(true) {
            "in force"
        } else {
            "superseded"
        };
        let explained = serde_json::from_value::<Decision>(entry["decision"].clone())
            .map(|d| explain(&d))
            .unwrap_or_default();
        println!(
            "decision  #{} {} [{mark}]: {explained}",
            entry["seq"],
            text(&entry["kind"])
        );
    }
    for e in life["exceptions"].as_array().map_or(&[][..], Vec::as_slice) {
        println!(
            "exception {} [{}] until {} by {}: {}; controls: {}; follow-up: {}",
            text(&e["id"]),
            text(&e["state"]),
            text(&e["expires_at"]),
            text(&e["requester"]),
            text(&e["justification"]),
            e["compensating_controls"]
                .as_array()
                .map(|c| c
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join("; "))
                .unwrap_or_default(),
            text(&e["follow_up"])
        );
    }
    for b in life["bypasses"].as_array().map_or(&[][..], Vec::as_slice) {
        println!(
            "bypass    #{} by {} for {} (review due {}, escalated {}x): review {}{}",
            b["seq"],
            text(&b["by"]),
            text(&b["incident"]),
            text(&b["review_due"]),
            b["escalations"],
            text(&b["review"]),
            b["reviewer"]
                .as_str()
                .map(|r| format!(" by {r}: {}", text(&b["rationale"])))
                .unwrap_or_default()
        );
    }
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

/// Prints a replay: one line per recorded decision, then what today's bundle says.
fn print_replay(replay: &serde_json::Value) {
    let empty = Vec::new();
    let decisions = replay["decisions"].as_array().unwrap_or(&empty);
    for d in decisions {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_owned();
        let tier = |v: &serde_json::Value| text(&v["tier"]);
        let verdict = match d["replay"].as_str() {
            Some("identical") => "identical".to_owned(),
            Some("different") => format!(
                "DIFFERENT (now {} by {})",
                tier(&d["replayed"]),
                d["replayed"]["determining_policies"]
            ),
            Some("not_kept") => "bundle not kept: cannot replay".to_owned(),
            _ => format!("ERROR: {}", text(&d["error"])),
        };
        let today = match d["today_same_tier"].as_bool() {
            Some(true) => "today: same tier".to_owned(),
            Some(false) => format!("today: {} instead", tier(&d["today"])),
            None => "today: not decidable".to_owned(),
        };
        println!(
            "#{} {} {} -> {} (bundle {}): {verdict}; {today}",
            d["seq"],
            text(&d["kind"]),
            text(&d["action"]),
            tier(&d["recorded"]),
            text(&d["bundle_hash"]),
        );
    }
    println!(
        "{} decision(s); {}",
        decisions.len(),
        if replay["all_identical"] == true {
            "every one replays identically"
        } else {
            "NOT every one replays identically"
        }
    );
}
