//! `writ keys`: create the ledger's checkpoint signing key.

use std::path::PathBuf;

use writ_engine::keys;

use crate::config::Config;

/// `writ keys ...`
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a new Ed25519 signing key (private file mode 0600, public key beside it as .pub).
    Init {
        /// Where to write the private key (default: `ledger.signing_key` from the configuration).
        #[arg(long)]
        key: Option<PathBuf>,
        /// The ledger origin, which names the key (default: `ledger.origin`).
        #[arg(long)]
        origin: Option<String>,
    },
}

pub fn run(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Init { key, origin } => {
            let path = key.unwrap_or_else(|| config.ledger.signing_key.clone());
            let origin = origin.unwrap_or_else(|| config.ledger.origin.clone());
            let verifier = keys::init(&path, &origin)?;
            eprintln!(
                "wrote private key {} (keep it secret, back it up)",
                path.display()
            );
            eprintln!(
                "wrote public key  {}",
                keys::public_key_path(&path).display()
            );
            println!("{}", verifier.to_text());
            Ok(())
        }
    }
}
