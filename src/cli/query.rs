//! `consort status` and `consort query ...`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use consort::app::ledger::{Account, account_key, record_key};
use consort::client::Client;
use consort::client::verify::{TrustRoot, Verifier, VerifyError};
use consort::config::{Genesis, Home};
use consort::types::{Hash, Height, PublicKey};

/// What `--prove` checks an answer against: a trust root the user holds,
/// never what the node under check says.
#[derive(clap::Args, Clone, Debug)]
pub struct TrustArgs {
    /// With --prove: the genesis file whose chain id and validators to trust.
    #[arg(long, conflicts_with = "home")]
    genesis: Option<PathBuf>,
    /// With --prove: a node home whose genesis.json to trust.
    #[arg(long)]
    home: Option<PathBuf>,
    /// With --prove: a height whose header hash you trust (with --trust-hash);
    /// the node's validator set must hash to that header's validators_hash.
    #[arg(long, requires = "trust_hash", value_parser = clap::value_parser!(u64).range(1..))]
    trust_height: Option<u64>,
    /// With --prove: the trusted header's hash (hex), e.g. from
    /// `consort query block --height H --json` against a node you run.
    #[arg(long, requires = "trust_height")]
    trust_hash: Option<Hash>,
}

impl TrustArgs {
    /// The trust root given, or the plain error that there is none.
    fn root(&self) -> Result<TrustRoot> {
        let path = match (&self.genesis, &self.home) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(h)) => Some(Home::new(h).genesis()),
            (None, None) => None,
        };
        let genesis = path.map(|p| Genesis::load(&p)).transpose()?;
        let header = self
            .trust_height
            .zip(self.trust_hash)
            .map(|(h, x)| (Height(h), x));
        TrustRoot::from_options(genesis.as_ref(), header).map_err(|e| match e {
            VerifyError::NoTrustRoot => anyhow::anyhow!(
                "--prove has nothing to trust: give --genesis PATH (or --home DIR), or \
                 --trust-height H --trust-hash HEX; the node's own chain id and validators \
                 are not checked against themselves"
            ),
            e => e.into(),
        })
    }
}

#[derive(Subcommand)]
pub enum QueryCommand {
    /// The state snapshots a node serves to joining nodes (a `member`,
    /// `node` or `admin` certificate).
    Snapshots {
        /// gRPC address of the node.
        #[arg(long, default_value = "127.0.0.1:26657")]
        node: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
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
        /// Check the proof locally against a header signed by the validators
        /// of the trust root (--genesis, --home, or --trust-height and
        /// --trust-hash).
        #[arg(long)]
        prove: bool,
        #[command(flatten)]
        trust: TrustArgs,
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
        /// Check the proof locally against a header signed by the validators
        /// of the trust root (--genesis, --home, or --trust-height and
        /// --trust-hash).
        #[arg(long)]
        prove: bool,
        #[command(flatten)]
        trust: TrustArgs,
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
        /// Check the inclusion proof locally against a header signed by the
        /// validators of the trust root (--genesis, --home, or --trust-height
        /// and --trust-hash).
        #[arg(long)]
        prove: bool,
        #[command(flatten)]
        trust: TrustArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Connects to `node` and, with `prove`, sets up the verifier first: without a
/// trust root the query fails before anything is asked.
async fn connect(node: &str, prove: bool, trust: &TrustArgs) -> Result<(Client, Option<Verifier>)> {
    let root = prove.then(|| trust.root()).transpose()?;
    let c = Client::connect(node).await?;
    let verifier = match root {
        Some(root) => Some(Verifier::new(root, &c).await?),
        None => None,
    };
    Ok((c, verifier))
}

/// The error of an answer that does not verify, after its output.
fn refused(verified: Option<Result<(), VerifyError>>) -> Result<()> {
    match verified {
        Some(Err(e)) => Err(anyhow::Error::new(e).context("the proof does not verify")),
        _ => Ok(()),
    }
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

/// A peer, as `status --json` and `node-info --json` print it.
fn peer_json(p: &consort::pb::PeerInfo) -> serde_json::Value {
    json!({
        "public_key": hex_or_empty(&p.public_key),
        "name": p.name,
        "address": p.address,
        "connected": p.connected,
        "height": p.height,
    })
}

/// Prints a node's status.
pub async fn status(node: &str, as_json: bool) -> Result<()> {
    let c = Client::connect(node).await?;
    let s = c.status().await?;
    let peers: Vec<serde_json::Value> = s.peers.iter().map(peer_json).collect();
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

/// Prints the operator's view of a node.
pub async fn node_info(node: &str, as_json: bool) -> Result<()> {
    let c = Client::connect(node).await?;
    let i = c.node_info().await?;
    let certs: Vec<serde_json::Value> = i
        .certificates
        .iter()
        .map(|c| {
            json!({
                "which": c.which,
                "name": c.name,
                "organization": c.organization,
                "role": c.role,
                "not_after": c.not_after,
                "days_left": c.days_left,
            })
        })
        .collect();
    let peers: Vec<serde_json::Value> = i.peers.iter().map(peer_json).collect();
    if as_json {
        let v = json!({
            "version": i.version,
            "organization": i.organization,
            "moniker": i.moniker,
            "node_key": hex_or_empty(&i.node_key),
            "is_validator": i.is_validator,
            "started_at_ms": i.started_at_ms,
            "height": i.height,
            "sync_phase": i.sync_phase,
            "data_dir": i.data_dir,
            "data_bytes": i.data_bytes,
            "certificates": certs,
            "peers": peers,
            "config_toml": i.config_toml,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("version        {}", i.version);
    println!("organization   {}", i.organization);
    println!(
        "node           {} ({}), validator: {}",
        i.moniker,
        hex_or_empty(&i.node_key),
        i.is_validator
    );
    println!("started        {} ms since epoch", i.started_at_ms);
    println!("height         {} ({})", i.height, i.sync_phase);
    println!(
        "data           {} ({:.1} MiB)",
        i.data_dir,
        i.data_bytes as f64 / (1024.0 * 1024.0)
    );
    for c in &i.certificates {
        println!(
            "certificate    {:<7} {} ({}, {}): {} days left",
            c.which, c.name, c.organization, c.role, c.days_left
        );
    }
    for p in &i.peers {
        println!(
            "peer           {:<10} {:<22} {:<9} height {}",
            p.name,
            p.address,
            if p.connected { "connected" } else { "down" },
            p.height
        );
    }
    println!("\n# configuration\n{}", i.config_toml);
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
        QueryCommand::Snapshots {
            node,
            json: as_json,
        } => {
            let c = Client::connect(&node).await?;
            let list = consort::pb::sync_service_client::SyncServiceClient::new(c.channel())
                .list_snapshots(consort::pb::ListSnapshotsRequest {})
                .await
                .map_err(consort::client::ClientError::from)?
                .into_inner()
                .snapshots;
            if as_json {
                let v: Vec<serde_json::Value> = list
                    .iter()
                    .map(|s| {
                        json!({
                            "height": s.height,
                            "format": s.format,
                            "chunks": s.chunks,
                            "entries": s.entries,
                            "bytes": s.bytes,
                            "state_root": hex_or_empty(&s.state_root),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for s in &list {
                    println!(
                        "height {:<10} {:>6} chunks {:>10} entries {:>12} bytes  root {}",
                        s.height,
                        s.chunks,
                        s.entries,
                        s.bytes,
                        hex_or_empty(&s.state_root)
                    );
                }
                if list.is_empty() {
                    println!("no snapshot");
                }
            }
        }
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
            trust,
            json: as_json,
        } => {
            let (c, verifier) = connect(&node, prove, &trust).await?;
            let r = c.account(&address).await?;
            let verified = verifier.map(|v| {
                let value = r.found.then(|| {
                    Account {
                        balance: r.balance,
                        nonce: r.nonce,
                    }
                    .encode()
                });
                let proof = r.proof.clone().unwrap_or_default();
                v.verify_signed_header(r.header.as_ref())
                    .and_then(|h| h.verify_state(&account_key(&address), value.as_deref(), &proof))
            });
            let height = r
                .header
                .as_ref()
                .and_then(|h| h.header.as_ref())
                .map_or(0, |h| h.height);
            if as_json {
                let mut v = json!({"address": address.to_hex(), "found": r.found, "balance": r.balance, "nonce": r.nonce, "height": height});
                if let Some(r) = &verified {
                    v["verified"] = json!(r.is_ok());
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
                if let Some(r) = &verified {
                    println!("verified  {}", r.is_ok());
                }
            }
            refused(verified)?;
        }
        QueryCommand::Record {
            owner,
            name,
            node,
            prove,
            trust,
            json: as_json,
        } => {
            let (c, verifier) = connect(&node, prove, &trust).await?;
            let r = c.record(&owner, &name).await?;
            let verified = verifier.map(|v| {
                let value = r.found.then(|| r.value.to_vec());
                let proof = r.proof.clone().unwrap_or_default();
                v.verify_signed_header(r.header.as_ref()).and_then(|h| {
                    h.verify_state(&record_key(&owner, &name), value.as_deref(), &proof)
                })
            });
            let height = r
                .header
                .as_ref()
                .and_then(|h| h.header.as_ref())
                .map_or(0, |h| h.height);
            let value = String::from_utf8_lossy(&r.value).into_owned();
            if as_json {
                let mut v = json!({"owner": owner.to_hex(), "name": name, "found": r.found, "value": value, "value_hex": hex::encode(&r.value), "height": height});
                if let Some(r) = &verified {
                    v["verified"] = json!(r.is_ok());
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                if r.found {
                    println!("{value}");
                } else {
                    println!("(no such record)");
                }
                if let Some(r) = &verified {
                    println!("verified: {} (height {height})", r.is_ok());
                }
            }
            refused(verified)?;
        }
        QueryCommand::Tx {
            hash,
            node,
            prove,
            trust,
            json: as_json,
        } => {
            let (c, verifier) = connect(&node, prove, &trust).await?;
            let r = c.get_tx(&hash).await?;
            let verified = verifier.map(|v| {
                let proof = r.proof.clone().unwrap_or_default();
                v.verify_signed_header(r.header.as_ref())
                    .and_then(|h| h.verify_tx(&hash, &r.tx, &proof))
            });
            let (code, log) = r
                .result
                .as_ref()
                .map_or((0, String::new()), |x| (x.code, x.log.clone()));
            if as_json {
                let mut v = json!({"hash": hash.to_hex(), "height": r.height, "index": r.index, "code": code, "log": log, "tx": hex::encode(&r.tx)});
                if let Some(r) = &verified {
                    v["verified"] = json!(r.is_ok());
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("hash      {hash}");
                println!("height    {} index {}", r.height, r.index);
                println!("result    code {code}: {log}");
                if let Some(r) = &verified {
                    println!("verified  {}", r.is_ok());
                }
            }
            refused(verified)?;
        }
    }
    Ok(())
}
