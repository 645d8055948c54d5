//! `consort status` and `consort query ...`.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use consort::client::Client;
use consort::types::{Hash, PublicKey};

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
}

fn hex_or_empty(b: &[u8]) -> String {
    hex::encode(b)
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
    }
    Ok(())
}
