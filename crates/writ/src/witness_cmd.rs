//! `writ witness`: run a witness (C2SP `tlog-witness`) for writ ledgers, a separate small
//! process with its own key, which co-signs a checkpoint only when a consistency proof shows
//! that it extends the last one it co-signed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use writ_engine::keys;
use writ_server::witness::Witness;

/// `writ witness ...`
#[derive(Debug, clap::Subcommand)]
pub enum WitnessCommand {
    /// Create the witness's co-signing key (private file mode 0600; its public vkey beside it
    /// as .pub, for the logs' `[[ledger.witnesses]]` and for auditors).
    Init {
        /// Where to write the private key.
        #[arg(long)]
        key: PathBuf,
        /// The witness's name (its key name, say `witness.example.com/w1`).
        #[arg(long)]
        name: String,
    },
    /// Serve `POST /add-checkpoint` until SIGINT or SIGTERM.
    Serve {
        /// The witness's private key file.
        #[arg(long)]
        key: PathBuf,
        /// A log's public key file (its checkpoints' origin is the key's name); repeat for
        /// several logs.
        #[arg(long = "log-key", required = true)]
        log_keys: Vec<PathBuf>,
        /// Where the witness remembers the last tree it co-signed for each log.
        #[arg(long)]
        state: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
    },
}

pub fn run(command: WitnessCommand) -> anyhow::Result<()> {
    match command {
        WitnessCommand::Init { key, name } => {
            let verifier = keys::init_witness(&key, &name)?;
            eprintln!("wrote private key {} (keep it secret)", key.display());
            eprintln!(
                "wrote public key  {}",
                keys::public_key_path(&key).display()
            );
            println!("{}", verifier.to_text());
            Ok(())
        }
        WitnessCommand::Serve {
            key,
            log_keys,
            state,
            listen,
        } => {
            let key = keys::load_witness_key(&key)?;
            let logs = log_keys
                .iter()
                .map(|path| keys::load_verifier(path))
                .collect::<Result<Vec<_>, _>>()?;
            let witness = Arc::new(Witness::open(
                key,
                logs,
                state,
                Arc::new(writ_core::SystemClock),
            )?);
            crate::runtime()?.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                tracing::info!(%listen, "witness listening");
                axum_serve(listener, witness).await
            })
        }
    }
}

async fn axum_serve(
    listener: tokio::net::TcpListener,
    witness: Arc<Witness>,
) -> anyhow::Result<()> {
    writ_server::witness::serve(listener, witness, crate::serve::shutdown_signal())
        .await
        .context("the witness stopped")
}
