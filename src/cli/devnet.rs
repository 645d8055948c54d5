//! `consort devnet`: a local network in one command.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use consort::config::{ConsensusConfig, Home};
use consort::testnet::{TestnetSpec, generate};

/// Generates an N-validator network, starts every node in this process, prints
/// the endpoints and a line of heights every few seconds until Ctrl-C.
pub async fn run(
    validators: usize,
    dir: Option<PathBuf>,
    base_port: u16,
    fast: bool,
    tls: bool,
) -> Result<()> {
    anyhow::ensure!(validators >= 1, "--validators must be at least 1");
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("consort-devnet-{}", std::process::id())),
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let mut spec = TestnetSpec::local(validators, dir.clone());
    spec.base_port = base_port;
    spec.clients = 4;
    spec.tls = tls;
    if fast {
        spec.consensus = ConsensusConfig::fast();
    }
    let entries = generate(&spec)?;
    if std::env::var_os("RUST_LOG").is_some() {
        super::logging::init("info", "text")?;
    }
    let mut nodes = Vec::new();
    for e in &entries {
        let n = consort::node::start(&Home::new(&e.home))
            .await
            .with_context(|| format!("starting {}", e.name))?;
        nodes.push(n);
    }
    println!(
        "devnet: {validators} validators, homes in {}",
        dir.display()
    );
    for e in &entries {
        println!(
            "  {:<6} p2p {}  grpc {}  metrics http://{}/metrics",
            e.name, e.p2p, e.grpc, e.metrics
        );
    }
    println!("  client keys in {}", dir.join("clients").display());
    if tls {
        println!(
            "  TLS: --ca {} --cert {} --key {}",
            dir.join("ca.pem").display(),
            dir.join("clients/client0.pem").display(),
            dir.join("clients/client0.key").display()
        );
        println!(
            "       (CAs and admin certificates of every organization in {})",
            dir.join("orgs").display()
        );
    }
    println!("press Ctrl-C to stop");

    let started = Instant::now();
    let first = nodes.iter().map(|n| n.status().height.0).max().unwrap_or(0);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let stop = super::wait_for_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                let heights: Vec<u64> = nodes.iter().map(|n| n.status().height.0).collect();
                let max = heights.iter().copied().max().unwrap_or(0);
                let secs = started.elapsed().as_secs_f64().max(0.001);
                let line: Vec<String> = entries
                    .iter()
                    .zip(&heights)
                    .map(|(e, h)| format!("{}={h}", e.name))
                    .collect();
                println!(
                    "height {max:>6}  {}  {:.1} blocks/s",
                    line.join(" "),
                    (max - first.min(max)) as f64 / secs
                );
            }
        }
    }
    println!("stopping");
    for n in nodes {
        let _ = n.stop().await;
    }
    Ok(())
}
