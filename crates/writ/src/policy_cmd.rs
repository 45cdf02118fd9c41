//! `writ policy`: validate a bundle and run its test cases.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::policy_source;

/// `writ policy ...`
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Load a bundle and validate every policy strictly against its schema. Names every
    /// problem with its file and line; exit 1 when the bundle is refused.
    Validate {
        /// The bundle directory (*.cedar, one *.cedarschema, remediations.toml).
        dir: PathBuf,
    },
    /// Run a folder of test cases (one TOML file per case with the expected decision) against a
    /// bundle, like `opa test`. Exit 1 when any case fails.
    Test {
        /// The bundle directory.
        dir: PathBuf,
        /// The folder of cases.
        cases: PathBuf,
    },
}

pub fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Validate { dir } => match writ_policy::PolicyBundle::load_dir(&dir) {
            Ok(bundle) => {
                println!(
                    "policy bundle {} is valid: {} policies, {} remediations, hash {}",
                    dir.display(),
                    bundle.policy_ids().count(),
                    bundle.remediations().len(),
                    bundle.hash()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => {
                eprintln!("policy bundle {} refused:\n{err}", dir.display());
                Ok(ExitCode::FAILURE)
            }
        },
        PolicyCommand::Test { dir, cases } => {
            let bundle = policy_source::load_dir(&dir)?;
            let report = writ_policy::run_tests(&bundle, &cases)?;
            print!("{report}");
            Ok(if report.all_passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
