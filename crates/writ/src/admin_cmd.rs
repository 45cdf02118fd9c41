//! `writ admin`: maintenance that operators run by hand.

use std::process::ExitCode;

use writ_engine::rebuild;

use crate::config::Config;

/// `writ admin ...`
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Re-derive the identity, case and finding tables from the ledger, in one transaction.
    Rebuild {
        /// Only compare the tables with what the ledger implies; change nothing. Exits 1 when
        /// they differ.
        #[arg(long)]
        check: bool,
    },
}

pub fn run(config: &Config, command: AdminCommand) -> anyhow::Result<ExitCode> {
    let AdminCommand::Rebuild { check } = command;
    crate::runtime()?.block_on(async {
        let store = crate::open_store(config).await?;
        if check {
            let differences = rebuild::check(&*store).await?;
            if differences.is_empty() {
                println!("projections match the ledger");
                return Ok(ExitCode::SUCCESS);
            }
            for line in &differences {
                println!("{line}");
            }
            eprintln!(
                "{} difference(s) between the tables and the ledger; `writ admin rebuild` repairs them",
                differences.len()
            );
            return Ok(ExitCode::FAILURE);
        }
        let report = rebuild::rebuild(&*store).await?;
        println!(
            "rebuilt projections from {} ledger entries ({} rows)",
            report.entries, report.rows
        );
        Ok(ExitCode::SUCCESS)
    })
}
