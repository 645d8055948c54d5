//! `consort status` and `consort query ...`.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use consort::app::ledger::{Account, account_key, record_key};
use consort::client::Client;
use consort::client::verify::{verify_signed_header, verify_state, verify_tx_inclusion};
use consort::types::{Hash, PublicKey, ValidatorSet};

#[derive(Subcommand)]
pub enum QueryCommand {
    /// A block and its header.
    Block {
        /// Height (0 = latest).
        #[arg(long, default_value_t = 0)]
        height: u64,
        /// gRPC address of the node.
        #[arg(long, default_value = "127.0.0.1:26657")]
        node: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// An account's balance and nonce.
    Account {
        /// Account public key (hex).
        #[arg(long)]
        address: PublicKey,
        /// gRPC address of the node.
        #[arg(long, default_value = "127.0.0.1:26657")]
        node: String,
        /// Check the proof locally against the signed header.
        #[arg(long)]
        prove: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A record of an account's namespace.
    Record {
        /// Owner public key (hex).
        #[arg(long)]
        owner: PublicKey,
        /// Record name.
        #[arg(long)]
        name: String,
        /// gRPC address of the node.
        #[arg(long, default_value = "127.0.0.1:26657")]
        node: String,
        /// Check the proof locally against the signed header.
        #[arg(long)]
        prove: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A committed transaction.
    Tx {
        /// Transaction hash (hex).
        #[arg(long)]
        hash: Hash,
        /// gRPC address of the node.
        #[arg(long, default_value = "127.0.0.1:26657")]
        node: String,
        /// Check the inclusion proof locally against the signed header.
        #[arg(long)]
        prove: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Checks a signed header against the validator set and chain the node reports.
/// A client that must not trust the node passes its own genesis instead; the
/// node's answer is still checked for consistency: signatures by more than 2/3
/// of the set.
async fn header_root(
    c: &Client,
    signed: Option<&consort::pb::SignedHeader>,
) -> Result<consort::types::Header> {
    let chain_id = c.status().await?.chain_id;
    let set = ValidatorSet::new(c.validators().await?)?;
    let signed = signed.ok_or_else(|| anyhow::anyhow!("the node sent no signed header"))?;
    Ok(verify_signed_header(&chain_id, &set, signed)?)
}

fn hex_or_empty(b: &[u8]) -> String {
    hex::encode(b)
}

/// Asks the gRPC health service; an error unless SERVING.
pub async fn health(node: &str) -> Result<()> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let c = Client::connect(node).await?;
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        HealthClient::new(c.channel()).check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .map_err(|_| anyhow::anyhow!("health check timed out"))??
    .into_inner();
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    if r.status != serving {
        anyhow::bail!("not serving (status {})", r.status);
    }
    println!("serving");
    Ok(())
}

/// Prints a node's status.
pub async fn status(node: &str, as_json: bool) -> Result<()> {
    let c = Client::connect(node).await?;
    let s = c.status().await?;
    let peers: Vec<serde_json::Value> = s
        .peers
        .iter()
        .map(|p| {
            json!({
                "public_key": hex_or_empty(&p.public_key),
                "name": p.name,
                "address": p.address,
                "connected": p.connected,
            })
        })
        .collect();
    let connected = s.peers.iter().filter(|p| p.connected).count();
    if as_json {
        let v = json!({
            "chain_id": s.chain_id,
            "moniker": s.moniker,
            "node_key": hex_or_empty(&s.node_key),
            "is_validator": s.is_validator,
            "height": s.height,
            "latest_block_hash": hex_or_empty(&s.latest_block_hash),
            "latest_block_time_ms": s.latest_block_time_ms,
            "round": s.round,
            "step": s.step,
            "catching_up": s.catching_up,
            "sync_phase": s.sync_phase,
            "peer_max_height": s.peer_max_height,
            "lag_seconds": s.lag_seconds,
            "base_height": s.base_height,
            "peers": connected,
            "peer_list": peers,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("chain          {}", s.chain_id);
        println!(
            "node           {} ({})",
            s.moniker,
            hex_or_empty(&s.node_key)
        );
        println!("validator      {}", s.is_validator);
        println!("height         {}", s.height);
        println!("latest block   {}", hex_or_empty(&s.latest_block_hash));
        println!(
            "block time     {} ms since epoch (lag {:.1} s)",
            s.latest_block_time_ms, s.lag_seconds
        );
        println!("round/step     {}/{}", s.round, s.step);
        println!(
            "sync           {} (catching up: {}, peers' height {})",
            s.sync_phase, s.catching_up, s.peer_max_height
        );
        println!("peers          {connected} connected of {}", s.peers.len());
        for p in &s.peers {
            println!(
                "  {} {:<10} {:<22} {}",
                &hex_or_empty(&p.public_key)[..8.min(p.public_key.len() * 2)],
                p.name,
                p.address,
                if p.connected { "connected" } else { "down" }
            );
        }
    }
    Ok(())
}

fn short(h: &Hash) -> String {
    h.to_hex()
}

fn key(k: &PublicKey) -> String {
    k.to_hex()
}

/// Runs a query.
pub async fn run(q: QueryCommand) -> Result<()> {
    match q {
        QueryCommand::Block {
            height,
            node,
            json: as_json,
        } => {
            let c = Client::connect(&node).await?;
            let (b, id) = c.block(height).await?;
            let h = &b.header;
            if as_json {
                let v = json!({
                    "height": h.height.0,
                    "hash": short(&id),
                    "chain_id": h.chain_id,
                    "time_ms": h.time.0,
                    "last_block_id": h.last_block_id.map(|x| short(&x)).unwrap_or_default(),
                    "last_commit_hash": short(&h.last_commit_hash),
                    "data_hash": short(&h.data_hash),
                    "app_hash": short(&h.app_hash),
                    "validators_hash": short(&h.validators_hash),
                    "evidence_hash": short(&h.evidence_hash),
                    "proposer": key(&h.proposer),
                    "num_txs": b.txs.len(),
                    "num_evidence": b.evidence.len(),
                    "last_commit_signatures": b.last_commit.as_ref().map_or(0, |c| c.signatures.len()),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("height           {}", h.height);
                println!("hash             {}", short(&id));
                println!("time             {} ms since epoch", h.time.0);
                println!("proposer         {}", key(&h.proposer));
                println!(
                    "last block       {}",
                    h.last_block_id.map(|x| short(&x)).unwrap_or_default()
                );
                println!("app hash         {}", short(&h.app_hash));
                println!("data hash        {}", short(&h.data_hash));
                println!("transactions     {}", b.txs.len());
                println!("evidence         {}", b.evidence.len());
            }
        }
        QueryCommand::Account {
            address,
            node,
            prove,
            json: as_json,
        } => {
            let c = Client::connect(&node).await?;
            let r = c.account(&address).await?;
            let verified = if prove {
                let header = header_root(&c, r.header.as_ref()).await?;
                let value = r.found.then(|| {
                    Account {
                        balance: r.balance,
                        nonce: r.nonce,
                    }
                    .encode()
                });
                let proof = r.proof.clone().unwrap_or_default();
                Some(
                    verify_state(
                        &header.app_hash,
                        &account_key(&address),
                        value.as_deref(),
                        &proof,
                    )
                    .is_ok(),
                )
            } else {
                None
            };
            let height = r
                .header
                .as_ref()
                .and_then(|h| h.header.as_ref())
                .map_or(0, |h| h.height);
            if as_json {
                let mut v = json!({"address": address.to_hex(), "found": r.found, "balance": r.balance, "nonce": r.nonce, "height": height});
                if let Some(ok) = verified {
                    v["verified"] = json!(ok);
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("address   {address}");
                println!(
                    "balance   {}{}",
                    r.balance,
                    if r.found { "" } else { " (no such account)" }
                );
                println!("nonce     {}", r.nonce);
                println!("height    {height}");
                if let Some(ok) = verified {
                    println!("verified  {ok}");
                }
            }
            if verified == Some(false) {
                anyhow::bail!("the proof does not verify");
            }
        }
        QueryCommand::Record {
            owner,
            name,
            node,
            prove,
            json: as_json,
        } => {
            let c = Client::connect(&node).await?;
            let r = c.record(&owner, &name).await?;
            let verified = if prove {
                let header = header_root(&c, r.header.as_ref()).await?;
                let value = r.found.then(|| r.value.to_vec());
                let proof = r.proof.clone().unwrap_or_default();
                Some(
                    verify_state(
                        &header.app_hash,
                        &record_key(&owner, &name),
                        value.as_deref(),
                        &proof,
                    )
                    .is_ok(),
                )
            } else {
                None
            };
            let height = r
                .header
                .as_ref()
                .and_then(|h| h.header.as_ref())
                .map_or(0, |h| h.height);
            let value = String::from_utf8_lossy(&r.value).into_owned();
            if as_json {
                let mut v = json!({"owner": owner.to_hex(), "name": name, "found": r.found, "value": value, "value_hex": hex::encode(&r.value), "height": height});
                if let Some(ok) = verified {
                    v["verified"] = json!(ok);
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                if r.found {
                    println!("{value}");
                } else {
                    println!("(no such record)");
                }
                if let Some(ok) = verified {
                    println!("verified: {ok} (height {height})");
                }
            }
            if verified == Some(false) {
                anyhow::bail!("the proof does not verify");
            }
        }
        QueryCommand::Tx {
            hash,
            node,
            prove,
            json: as_json,
        } => {
            let c = Client::connect(&node).await?;
            let r = c.get_tx(&hash).await?;
            let verified = if prove {
                let header = header_root(&c, r.header.as_ref()).await?;
                let proof = r.proof.clone().unwrap_or_default();
                Some(
                    Hash::digest(&r.tx) == hash
                        && verify_tx_inclusion(&header.data_hash, &r.tx, &proof).is_ok(),
                )
            } else {
                None
            };
            let (code, log) = r
                .result
                .as_ref()
                .map_or((0, String::new()), |x| (x.code, x.log.clone()));
            if as_json {
                let mut v = json!({"hash": hash.to_hex(), "height": r.height, "index": r.index, "code": code, "log": log, "tx": hex::encode(&r.tx)});
                if let Some(ok) = verified {
                    v["verified"] = json!(ok);
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("hash      {hash}");
                println!("height    {} index {}", r.height, r.index);
                println!("result    code {code}: {log}");
                if let Some(ok) = verified {
                    println!("verified  {ok}");
                }
            }
            if verified == Some(false) {
                anyhow::bail!("the proof does not verify");
            }
        }
    }
    Ok(())
}
