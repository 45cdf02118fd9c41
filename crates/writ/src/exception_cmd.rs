//! `writ exception`: ask for an exception (a risk accepted for a while) and list exceptions,
//! through the API.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::client::{Client, ServerArgs};

/// `writ exception ...`
#[derive(Debug, clap::Subcommand)]
pub enum ExceptionCommand {
    /// Ask to accept a case's risk until a time; policy decides (approvals as for a change,
    /// and you never count among them).
    Request {
        /// The case id.
        case: writ_core::ids::CaseId,
        /// Why the risk is accepted.
        #[arg(long)]
        justification: String,
        /// When it ends: an RFC 3339 time, or a span from now (`30d`, `12h`).
        #[arg(long)]
        expires: String,
        /// A control that makes up for the risk meanwhile (give at least one; repeat for more).
        #[arg(long = "control", required = true)]
        controls: Vec<String>,
        /// What will be done about it (a ticket, a task).
        #[arg(long)]
        follow_up: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List exceptions, soonest expiry first.
    List {
        /// Only those expiring within this span from now (`7d`, `36h`).
        #[arg(long)]
        expiring: Option<String>,
        /// Only those in this state (active, expired, superseded, ended).
        #[arg(long)]
        state: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn run(command: ExceptionCommand) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(async {
        match command {
            ExceptionCommand::Request {
                case,
                justification,
                expires,
                controls,
                follow_up,
                server,
            } => {
                let expires_at =
                    parse_when(&expires, writ_core::Clock::now(&writ_core::SystemClock))?;
                let client = Client::from_env(&server)?;
                let answer: serde_json::Value = client
                    .post(
                        &format!("/v1/cases/{case}/exception"),
                        &serde_json::json!({
                            "justification": justification,
                            "expires_at": expires_at.to_string(),
                            "compensating_controls": controls,
                            "follow_up": follow_up,
                        }),
                    )
                    .await?;
                let exception = &answer["exception"];
                match exception["state"].as_str() {
                    Some("active") => println!(
                        "exception {} is in force on case {case} until {}",
                        exception["id"].as_str().unwrap_or("?"),
                        exception["expires_at"].as_str().unwrap_or("?")
                    ),
                    _ => println!(
                        "exception {} on case {case} waits for \"{}\" ({} more approver(s)): {}",
                        exception["id"].as_str().unwrap_or("?"),
                        answer["rule"].as_str().unwrap_or("?"),
                        answer["missing"].as_u64().unwrap_or(0),
                        answer["reason"].as_str().unwrap_or("")
                    ),
                }
                Ok(ExitCode::SUCCESS)
            }
            ExceptionCommand::List {
                expiring,
                state,
                json,
                server,
            } => {
                let mut query = vec!["limit=1000".to_owned()];
                if let Some(span) = expiring {
                    let hours = span_hours(&span)?;
                    // The API counts whole days; round up so nothing within the span is missed.
                    query.push(format!("expiring_within_days={}", hours.div_ceil(24)));
                }
                if let Some(state) = state {
                    query.push(format!(
                        "state={}",
                        crate::inventory_cmd::path_segment(&state)
                    ));
                }
                let client = Client::from_env(&server)?;
                let exceptions: Vec<serde_json::Value> = client
                    .get(&format!("/v1/exceptions?{}", query.join("&")))
                    .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&exceptions)?);
                } else if exceptions.is_empty() {
                    println!("no exceptions");
                } else {
                    println!(
                        "{:<36}  {:<36}  {:<10}  {:<20}  follow-up",
                        "exception", "case", "state", "expires"
                    );
                    for e in &exceptions {
                        let expires = e["expires_at"].as_str().unwrap_or("-");
                        println!(
                            "{:<36}  {:<36}  {:<10}  {:<20}  {}",
                            e["id"].as_str().unwrap_or("-"),
                            e["case_id"].as_str().unwrap_or("-"),
                            e["state"].as_str().unwrap_or("-"),
                            expires.get(..19).unwrap_or(expires).replace('T', " "),
                            e["follow_up"].as_str().unwrap_or("-")
                        );
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// An RFC 3339 time, or a span from `now` (`30d`, `12h`, `45m`).
pub(crate) fn parse_when(text: &str, now: jiff::Timestamp) -> anyhow::Result<jiff::Timestamp> {
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Ok(at);
    }
    let seconds = span_seconds(text)?;
    Ok(now + jiff::SignedDuration::from_secs(i64::try_from(seconds)?))
}

/// Whole hours in a span (`7d`, `36h`), rounded up.
fn span_hours(text: &str) -> anyhow::Result<u64> {
    Ok(span_seconds(text)?.div_ceil(3600))
}

/// A span of days, hours or minutes (`7d`, `36h`, `45m`) in minutes. Hand-written: three
/// units, and days of 24 hours, are all writ takes.
/// A span such as `30d`, `12h`, `45m` or `90s`, in seconds.
pub(crate) fn span_seconds(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let per_unit = match unit {
        "d" => 24 * 3600,
        "h" => 3600,
        "m" => 60,
        "s" => 1,
        _ => {
            anyhow::bail!(
                "{text:?} is neither an RFC 3339 time nor a span such as 30d, 12h, 45m or 90s"
            )
        }
    };
    let count: u64 = number
        .parse()
        .with_context(|| format!("{text:?}: {number:?} is not a whole number"))?;
    anyhow::ensure!(count > 0, "{text:?}: the span must be positive");
    count
        .checked_mul(per_unit)
        .with_context(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_times_are_read() {
        let now = writ_core::example::time();
        assert_eq!(
            parse_when("30d", now).unwrap(),
            now + jiff::SignedDuration::from_hours(720)
        );
        assert_eq!(
            parse_when("2026-12-31T00:00:00Z", now).unwrap().to_string(),
            "2026-12-31T00:00:00Z"
        );
        assert_eq!(span_hours("7d").unwrap(), 168);
        assert_eq!(span_hours("90m").unwrap(), 2);
        assert_eq!(span_seconds("90s").unwrap(), 90);
        assert!(span_seconds("7w").is_err());
        assert!(span_seconds("-3d").is_err());
        assert!(span_seconds("d").is_err());
    }
}
