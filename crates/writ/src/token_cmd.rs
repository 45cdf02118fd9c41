//! `writ token`: make credentials for findings sources.

/// `writ token ...`
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Generate a random bearer token for a findings source. Prints the token once (give it
    /// to the source) and the `[[sources]]` entry to add to writ.toml, which holds only its hash.
    New {
        /// The source's name.
        #[arg(long)]
        source: String,
        /// How much the source is trusted: low, medium or high.
        #[arg(long, default_value = "medium")]
        trust: String,
    },
}

pub fn run(command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::New { source, trust } = command;
    anyhow::ensure!(
        matches!(trust.as_str(), "low" | "medium" | "high"),
        "--trust must be low, medium or high"
    );
    let (token, hash) = writ_engine::sources::new_token()
        .map_err(|err| anyhow::anyhow!("no randomness available: {err}"))?;
    eprintln!("token for {source} (shown once; writ keeps only its hash):");
    println!("{token}");
    eprintln!();
    eprintln!("add to writ.toml:");
    eprintln!("[[sources]]\nname = \"{source}\"\ntrust = \"{trust}\"\ntoken_sha256 = \"{hash}\"");
    Ok(())
}
