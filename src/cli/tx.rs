//! `consort tx ...`: sign and send ledger transactions.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use serde_json::json;

use consort::app::ledger::{Action, Tx};
use consort::client::Client;
use consort::codec::{Wire, decode_tx};
use consort::config::read_key;
use consort::types::{Hash, PublicKey};

#[derive(Args)]
pub struct SignArgs {
    /// The signing account's key file (`--key` is the TLS key).
    #[arg(long, value_name = "KEY_FILE")]
    signer: PathBuf,
    /// gRPC address of a node.
    #[arg(long, default_value = "127.0.0.1:26657")]
    node: String,
    /// Wait until the transaction is committed.
    #[arg(long)]
    wait: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Print the signed transaction (hex) instead of sending it.
    #[arg(long)]
    sign_only: bool,
    /// Chain id (default: asked from the node).
    #[arg(long)]
    chain_id: Option<String>,
    /// Nonce (default: the account's next nonce, asked from the node).
    #[arg(long)]
    nonce: Option<u64>,
}

#[derive(Subcommand)]
pub enum TxCommand {
    /// Move funds to another account.
    Transfer {
        /// Recipient public key (hex).
        #[arg(long)]
        to: PublicKey,
        /// Amount.
        #[arg(long)]
        amount: u64,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Set a record in your namespace.
    Put {
        /// Record name.
        #[arg(long)]
        name: String,
        /// Record value (UTF-8).
        #[arg(long)]
        value: String,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Remove a record from your namespace.
    Delete {
        /// Record name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Send a transaction signed earlier (the hex printed by --sign-only).
    Broadcast {
        /// File holding the hex of the signed transaction.
        #[arg(long)]
        file: PathBuf,
        /// gRPC address of a node.
        #[arg(long, default_value = "127.0.0.1:26657")]
        node: String,
        /// Wait until the transaction is committed.
        #[arg(long)]
        wait: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a tx command.
pub async fn run(cmd: TxCommand) -> Result<()> {
    match cmd {
        TxCommand::Transfer { to, amount, sign } => {
            sign_and_send(Action::Transfer { to, amount }, sign).await
        }
        TxCommand::Put { name, value, sign } => {
            sign_and_send(
                Action::Put {
                    name,
                    value: Bytes::from(value.into_bytes()),
                },
                sign,
            )
            .await
        }
        TxCommand::Delete { name, sign } => sign_and_send(Action::Delete { name }, sign).await,
        TxCommand::Broadcast {
            file,
            node,
            wait,
            json,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let bytes =
                hex::decode(text.trim()).with_context(|| format!("{}: not hex", file.display()))?;
            decode_tx(&bytes).with_context(|| format!("{}: not a transaction", file.display()))?;
            let client = Client::connect(&node).await?;
            send(&client, Bytes::from(bytes), wait, json).await
        }
    }
}

async fn sign_and_send(action: Action, a: SignArgs) -> Result<()> {
    let key = read_key(&a.signer)?;
    action.check()?;
    let needs_node = a.chain_id.is_none() || a.nonce.is_none() || !a.sign_only;
    let client = if needs_node {
        Some(Client::connect(&a.node).await?)
    } else {
        None
    };
    let chain_id = match (&a.chain_id, &client) {
        (Some(c), _) => c.clone(),
        (None, Some(c)) => c.status().await?.chain_id,
        (None, None) => bail!("give --chain-id or --node"),
    };
    let nonce = match (a.nonce, &client) {
        (Some(n), _) => n,
        (None, Some(c)) => c.account(&key.public()).await?.nonce,
        (None, None) => bail!("give --nonce or --node"),
    };
    let tx = Tx::new_signed(&key, &chain_id, nonce, action);
    let bytes = Bytes::from(tx.encode());
    if a.sign_only {
        println!("{}", hex::encode(&bytes));
        return Ok(());
    }
    let client = client.context("no node to send to")?;
    send(&client, bytes, a.wait, a.json).await
}

async fn send(client: &Client, bytes: Bytes, wait: bool, as_json: bool) -> Result<()> {
    let hash = Hash::digest(&bytes);
    let r = client.submit(bytes, wait).await?;
    if as_json {
        let mut v = json!({ "hash": hash.to_hex(), "committed": wait });
        if wait {
            v["height"] = json!(r.height);
            v["index"] = json!(r.index);
            if let Some(res) = &r.result {
                v["code"] = json!(res.code);
                v["log"] = json!(res.log);
            }
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if wait {
        let log = r.result.map(|x| x.log).unwrap_or_default();
        println!(
            "committed {hash} at height {} index {}: {log}",
            r.height, r.index
        );
    } else {
        println!("accepted {hash}");
    }
    Ok(())
}
