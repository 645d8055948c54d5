//! The load scenarios (`idle`, `light`, `saturate`) and the parts the sync
//! scenarios share: setting up the network, funding accounts, and driving a
//! load while watching blocks, memory and CPU.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::load::{LoadSpec, LoadState, NodeConns, offer};
use super::local::{LocalNet, spec, start_all};
use super::observe::{Observed, follow};
use super::pool::{PoolSpec, PreSigned, accounts_for, presign};
use super::report::{Interval, Refusal, Report, Rounds};
use super::resources::{Probe, Tracker};
use super::stats::{Percentiles, quantile};
use super::{BenchConfig, BenchError, Scenario, Target};
use crate::app::ledger::{Action, Tx};
use crate::client::Client;
use crate::codec::Wire;
use crate::config::{NodeConfig, read_key};
use crate::testnet::{TestnetSpec, extra_account_key};
use crate::types::{Hash, Keypair};

/// Rate of the `light` scenario.
pub const LIGHT_RATE: f64 = 4_000.0;
/// Transactions signed per second of window for `--rate max`.
pub const MAX_POOL_RATE: usize = 30_000;

/// The network a run drives, ready for load.
pub struct Driven {
    /// The local network, if the run started one.
    pub local: Option<LocalNet>,
    /// gRPC addresses of the nodes taking load (the validators).
    pub grpc: Vec<String>,
    /// Memory and CPU trackers of those nodes.
    pub trackers: Vec<Tracker>,
    /// The chain id.
    pub chain_id: String,
    /// Keys of the accounts the load signs with (each at nonce 0).
    pub keys: Vec<Keypair>,
    /// What timeouts the nodes use.
    pub timeouts: String,
}

impl Driven {
    /// Signs `count` transactions of `cfg.tx_bytes` from the funded accounts,
    /// off the runtime's threads, before any timed window.
    pub async fn sign_pool(
        &self,
        cfg: &BenchConfig,
        count: usize,
        accounts: usize,
        distinct_records: bool,
    ) -> Result<PreSigned, BenchError> {
        if cfg.progress {
            eprintln!(
                "signing {count} transactions of {} bytes from {accounts} accounts",
                cfg.tx_bytes
            );
        }
        let spec = PoolSpec {
            chain_id: self.chain_id.clone(),
            count,
            tx_bytes: cfg.tx_bytes,
            distinct_records,
        };
        let keys = self.keys.clone();
        tokio::task::spawn_blocking(move || presign(&spec, &keys, 0))
            .await
            .map_err(|e| BenchError::Setup(format!("signing failed: {e}")))
    }
}

/// Starts (or connects to) the network of `cfg` with `accounts` funded
/// accounts; `members` extra local member homes are generated but not started,
/// and `adjust`/`edit` tune the local spec and node configs.
pub async fn setup(
    cfg: &BenchConfig,
    accounts: usize,
    members: usize,
    adjust: impl FnOnce(&mut TestnetSpec),
    edit: impl Fn(usize, &[crate::testnet::NodeEntry], &mut NodeConfig),
) -> Result<Driven, BenchError> {
    match &cfg.target {
        Target::Local {
            validators,
            exe,
            dir,
            base_port,
            keep,
            consensus,
            tls,
        } => {
            let mut s = spec(*validators, members, *base_port, dir.clone());
            s.consensus = consensus.clone();
            s.tls = *tls;
            s.extra_accounts = accounts as u64;
            adjust(&mut s);
            let d = crate::config::ConsensusConfig::default();
            let timeouts = if s.consensus.timeouts() == d.timeouts()
                && s.consensus.commit_delay_ms == d.commit_delay_ms
            {
                "default timeouts".to_string()
            } else {
                "minimal timeouts".to_string()
            } + &format!(", max_block_txs {}", s.consensus.max_block_txs)
                + if s.tls {
                    ", API over TLS"
                } else {
                    ", API in plaintext"
                };
            // Every client of a local network is on 127.0.0.1: the load's own
            // connections and streams, beside the observers', must fit the
            // per-address limits.
            let room = cfg.connections + 8;
            let edit = move |i: usize, nodes: &[crate::testnet::NodeEntry], c: &mut NodeConfig| {
                c.rpc.max_connections_per_address = c.rpc.max_connections_per_address.max(room);
                c.rpc.max_streams_per_address = c.rpc.max_streams_per_address.max(room);
                // The whole load uses one certificate: its quota is not what
                // is measured.
                let q = &mut c.rpc.quota.admin;
                q.requests_per_sec = q.requests_per_sec.max(1_000_000);
                q.streams = q.streams.max(room as u32);
                q.submit_bytes_per_sec = q.submit_bytes_per_sec.max(1 << 30);
                edit(i, nodes, c)
            };
            let mut net = LocalNet::generate(&s, exe.clone(), *keep, edit)?;
            if s.tls {
                let org = s.out.join("orgs").join(&net.nodes[0].name);
                let tls = crate::pki::ClientTls::load(
                    &s.out.join("ca.pem"),
                    Some(&org.join("admin.pem")),
                    Some(&org.join("admin.key")),
                )
                .map_err(|e| BenchError::Setup(format!("the admin certificate: {e}")))?;
                crate::client::set_default_tls(tls);
            }
            let idx: Vec<usize> = (0..*validators).collect();
            start_all(&mut net, idx.iter().copied())?;
            net.wait_height(&idx, 2, Duration::from_secs(120)).await?;
            let trackers = idx
                .iter()
                .map(|i| Tracker::new(net.nodes[*i].name.clone(), net.probe(*i)))
                .collect();
            let keys = sign_keys(accounts, |i| extra_account_key(i as u64));
            Ok(Driven {
                grpc: net.grpc(&idx),
                local: Some(net),
                trackers,
                chain_id: s.chain_id,
                keys,
                timeouts,
            })
        }
        Target::Remote {
            nodes,
            metrics,
            fund_key,
        } => {
            if nodes.is_empty() {
                return Err(BenchError::Usage("--nodes lists no address".into()));
            }
            let c = Client::connect(&nodes[0]).await?;
            let chain_id = c.status().await?.chain_id;
            let trackers = nodes
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let probe = metrics
                        .get(i)
                        .map_or(Probe::None, |m| Probe::Metrics(m.clone()));
                    Tracker::new(n.clone(), probe)
                })
                .collect();
            let keys = if accounts == 0 {
                Vec::new()
            } else {
                let Some(fund) = fund_key else {
                    return Err(BenchError::Usage(
                        "a load on a running network needs --fund-key FILE (a funded client key, \
                         e.g. a devnet's clients/client0.json) to pay the accounts it signs with"
                            .into(),
                    ));
                };
                let funder = read_key(fund).map_err(|e| BenchError::Usage(e.to_string()))?;
                // Fresh accounts for every run, so that their nonces start at 0.
                let salt = Keypair::generate().public();
                let keys = sign_keys(accounts, |i| {
                    let mut m = salt.as_bytes().to_vec();
                    m.extend_from_slice(&(i as u64).to_be_bytes());
                    let h = Hash::digest(&m);
                    Keypair::from_seed(*h.as_bytes())
                });
                fund_accounts(&c, &chain_id, &funder, &keys, cfg.progress).await?;
                keys
            };
            Ok(Driven {
                local: None,
                grpc: nodes.clone(),
                trackers,
                chain_id,
                keys,
                timeouts: "remote network".into(),
            })
        }
    }
}

fn sign_keys(n: usize, key: impl Fn(usize) -> Keypair + Sync) -> Vec<Keypair> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = n.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let key = &key;
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    ((t * per).min(n)..((t + 1) * per).min(n))
                        .map(key)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Pays 1 unit from `funder` to each of `keys` (creating the accounts), in
/// nonce order on one node, and waits until the last payment is committed.
async fn fund_accounts(
    c: &Client,
    chain_id: &str,
    funder: &Keypair,
    keys: &[Keypair],
    progress: bool,
) -> Result<(), BenchError> {
    let start = c.account(&funder.public()).await?;
    if !start.found {
        return Err(BenchError::Usage(format!(
            "the funding key's account {} does not exist on this chain",
            funder.public()
        )));
    }
    if start.balance < keys.len() as u64 {
        return Err(BenchError::Usage(format!(
            "the funding account holds {}; {} accounts need 1 each",
            start.balance,
            keys.len()
        )));
    }
    if progress {
        eprintln!("funding {} accounts from {}", keys.len(), funder.public());
    }
    for (i, k) in keys.iter().enumerate() {
        let tx = Tx::new_signed(
            funder,
            chain_id,
            start.nonce + i as u64,
            Action::Transfer {
                to: k.public(),
                amount: 1,
            },
        );
        let last = i + 1 == keys.len();
        // Each payment is accepted before the next is sent: the pool takes a
        // sender's nonces only in order.
        let mut tries = 0;
        loop {
            match c.submit(bytes::Bytes::from(tx.encode()), last).await {
                Ok(_) => break,
                Err(crate::client::ClientError::Status(s))
                    if s.code() == tonic::Code::ResourceExhausted && tries < 100 =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Connects `per_node` channels to every address.
pub async fn connect_all(grpc: &[String], per_node: usize) -> Result<Vec<NodeConns>, BenchError> {
    let mut out = Vec::new();
    for a in grpc {
        let mut chans = Vec::new();
        for _ in 0..per_node.max(1) {
            chans.push(Client::connect(a).await?.channel());
        }
        out.push(NodeConns::new(chans));
    }
    Ok(out)
}

/// What a driven window measured.
pub struct Window {
    /// Blocks and latencies.
    pub observed: Observed,
    /// Load counters (empty pool for no load).
    pub load: Arc<LoadState>,
    /// Length of the window actually run.
    pub elapsed: Duration,
    /// CPU of this process over the window, percent of one core.
    pub bench_cpu: f64,
}

/// Offers `pool` (if any) to `d`'s nodes at `rate` for `duration`, waits up to
/// `drain` for accepted transactions to commit, and watches blocks, memory and
/// CPU throughout.
pub async fn drive(
    d: &mut Driven,
    pool: Option<Arc<PreSigned>>,
    spec: LoadSpec,
    drain: Duration,
    connections: usize,
    progress: bool,
) -> Result<Window, BenchError> {
    let conns = Arc::new(connect_all(&d.grpc, connections).await?);
    let observer_client = Client::connect(&d.grpc[0]).await?;
    let from = observer_client.status().await?.height + 1;
    let n = pool.as_ref().map_or(0, |p| p.txs.len());
    for t in d.trackers.iter_mut() {
        t.poll().await;
    }
    let self_cpu0 = crate::metrics::process::read("self").map_or(0.0, |s| s.cpu_seconds);
    let load = Arc::new(LoadState::new(n));
    let observed = Arc::new(Mutex::new(Observed::default()));
    let follower = tokio::spawn(follow(
        observer_client,
        from,
        pool.clone(),
        Some(load.clone()),
        load.t0,
        observed.clone(),
    ));
    let offering = pool.clone().map(|p| {
        let spec = spec.clone();
        let conns = conns.clone();
        let st = load.clone();
        tokio::spawn(async move { offer(p, conns, &spec, st).await })
    });
    // Sampling and progress until the window ends and the drain is over.
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last_print = Instant::now();
    let (mut last_sent, mut last_committed) = (0u64, 0u64);
    loop {
        tick.tick().await;
        for t in d.trackers.iter_mut() {
            t.poll().await;
        }
        let elapsed = load.t0.elapsed();
        let (height, committed, err) = {
            let o = observed
                .lock()
                .map_err(|_| BenchError::Node("observer failed".into()))?;
            (o.height(), o.committed_pool, o.error.clone())
        };
        if let Some(e) = err {
            follower.abort();
            return Err(BenchError::Node(e));
        }
        if let Some(net) = d.local.as_mut() {
            for i in 0..d.grpc.len() {
                if let Some(why) = net.exited(i) {
                    follower.abort();
                    return Err(BenchError::Node(why));
                }
            }
        }
        let sent = load.sent.load(Ordering::Relaxed);
        let accepted = load.accepted.load(Ordering::Relaxed);
        if progress && last_print.elapsed() >= Duration::from_secs(1) {
            let secs = last_print.elapsed().as_secs_f64();
            eprintln!(
                "[{:>5.1}s] height {height:>6}  sent {sent:>8} ({:>6.0}/s)  accepted {accepted:>8}  committed {committed:>8} ({:>6.0}/s)  refused {}",
                elapsed.as_secs_f64(),
                (sent - last_sent) as f64 / secs,
                (committed - last_committed) as f64 / secs,
                load.refused_total(),
            );
            last_print = Instant::now();
            last_sent = sent;
            last_committed = committed;
        }
        // The window ends at `duration`, or earlier once the whole pool is sent.
        if elapsed < spec.duration && (n == 0 || (sent as usize) < n) {
            continue;
        }
        let offered_done = offering.as_ref().is_none_or(|h| h.is_finished());
        let inflight_done = sent == accepted + load.refused_total();
        if offered_done && inflight_done && committed >= accepted {
            break;
        }
        if elapsed >= spec.duration + drain {
            break;
        }
    }
    let elapsed = load.t0.elapsed();
    follower.abort();
    let self_cpu1 = crate::metrics::process::read("self").map_or(0.0, |s| s.cpu_seconds);
    let observed = std::mem::take(
        &mut *observed
            .lock()
            .map_err(|_| BenchError::Node("observer failed".into()))?,
    );
    Ok(Window {
        observed,
        load,
        elapsed,
        bench_cpu: 100.0 * (self_cpu1 - self_cpu0) / elapsed.as_secs_f64().max(1e-9),
    })
}

/// Fills the load, latency, block and resource fields of `r` from a window of
/// `duration`.
pub fn summarize(r: &mut Report, w: &Window, duration: Duration, trackers: &[Tracker]) {
    let window_ms = duration.as_secs_f64() * 1e3;
    let secs = duration.as_secs_f64().max(1e-9);
    let load = &w.load;
    r.duration_s = duration.as_secs_f64();
    r.sent = load.sent.load(Ordering::Relaxed);
    r.accepted = load.accepted.load(Ordering::Relaxed);
    let sent_in_window = (0..load.sent_at.len())
        .filter(|i| load.sent_ms(*i).is_some_and(|t| t <= window_ms))
        .count();
    r.offered_tps = sent_in_window as f64 / secs;
    r.refused = load
        .refused
        .lock()
        .iter()
        .map(|(k, (n, msg))| {
            (
                k.clone(),
                Refusal {
                    count: *n,
                    example: msg.clone(),
                },
            )
        })
        .collect();
    let o = &w.observed;
    r.committed = o.committed_pool;
    r.uncommitted = r.accepted.saturating_sub(o.committed_pool);
    let in_window = o
        .latencies
        .iter()
        .filter(|(at, _)| *at <= window_ms)
        .count();
    r.committed_tps = in_window as f64 / secs;
    let mut lat: Vec<f64> = o.latencies.iter().map(|(_, l)| *l).collect();
    r.latency_ms = Percentiles::of(&mut lat);
    let blocks: Vec<_> = o
        .blocks
        .iter()
        .filter(|b| b.arrived_ms <= window_ms)
        .collect();
    r.blocks = blocks.len();
    r.blocks_per_s = blocks.len() as f64 / secs;
    let mut intervals: Vec<f64> = blocks
        .windows(2)
        .filter(|p| p[1].height == p[0].height + 1)
        .map(|p| p[1].time_ms.saturating_sub(p[0].time_ms) as f64)
        .collect();
    intervals.sort_by(|a, b| a.total_cmp(b));
    r.block_interval_ms = Interval {
        p50: quantile(&intervals, 0.5),
        p99: quantile(&intervals, 0.99),
        mean: if intervals.is_empty() {
            0.0
        } else {
            intervals.iter().sum::<f64>() / intervals.len() as f64
        },
        max: intervals.last().copied().unwrap_or(0.0),
    };
    if !blocks.is_empty() {
        r.rounds_per_height = Rounds {
            mean: blocks.iter().map(|b| f64::from(b.round + 1)).sum::<f64>() / blocks.len() as f64,
            max: blocks.iter().map(|b| b.round + 1).max().unwrap_or(1),
        };
    }
    r.node_usage = trackers.iter().map(Tracker::usage).collect();
    r.rss_mb_max = r
        .node_usage
        .iter()
        .map(|u| u.rss_mb_max)
        .fold(0.0, f64::max);
    r.bench_cpu_percent = w.bench_cpu;
    if r.uncommitted > 0 {
        r.notes.push(format!(
            "{} accepted transactions were not seen committed within the drain",
            r.uncommitted
        ));
    }
    if let Some(t) = r.rate_target {
        if r.offered_tps < 0.95 * t {
            r.notes.push(format!(
                "the client offered {:.0} tx/s of the {t:.0} asked (in-flight window full)",
                r.offered_tps
            ));
        }
    }
}

/// A report with the fields every scenario has.
pub fn base_report(cfg: &BenchConfig, nodes: usize, timeouts: &str) -> Report {
    Report {
        scenario: cfg.scenario.name().into(),
        nodes,
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        timeouts: timeouts.into(),
        tx_bytes: cfg.tx_bytes,
        submit: if cfg.unary { "unary" } else { "stream" }.into(),
        ..Report::default()
    }
}

/// The rate of a load scenario: `--rate`, else the scenario's.
pub fn rate_of(cfg: &BenchConfig) -> Option<f64> {
    match cfg.rate {
        Some(r) => r,
        None => match cfg.scenario {
            Scenario::Light => Some(LIGHT_RATE),
            _ => None,
        },
    }
}

/// Runs `idle`, `light` or `saturate`.
pub async fn run(cfg: &BenchConfig) -> Result<Report, BenchError> {
    let idle = cfg.scenario == Scenario::Idle;
    let rate = if idle { None } else { rate_of(cfg) };
    let secs = cfg.duration.as_secs_f64();
    let count = if idle {
        0
    } else {
        match rate {
            Some(r) => (r * secs).ceil() as usize + 1,
            None => cfg.pool.unwrap_or((MAX_POOL_RATE as f64 * secs) as usize),
        }
    };
    let accounts = if idle { 0 } else { accounts_for(count) };
    let mut d = setup(cfg, accounts, 0, |_| {}, |_, _, _| {}).await?;
    let pool = if idle {
        None
    } else {
        Some(Arc::new(d.sign_pool(cfg, count, accounts, false).await?))
    };
    if cfg.progress {
        eprintln!(
            "{} on {} nodes for {:.0}s{}",
            cfg.scenario.name(),
            d.grpc.len(),
            secs,
            match (idle, rate) {
                (true, _) => String::new(),
                (false, Some(r)) => format!(" at {r:.0} tx/s"),
                (false, None) => " at the highest rate".into(),
            }
        );
    }
    let w = drive(
        &mut d,
        pool,
        LoadSpec {
            rate,
            duration: cfg.duration,
            retry: false,
            unary: cfg.unary,
        },
        if idle { Duration::ZERO } else { cfg.drain },
        cfg.connections,
        cfg.progress,
    )
    .await?;
    let mut r = base_report(cfg, d.grpc.len(), &d.timeouts);
    r.rate_target = rate;
    summarize(&mut r, &w, cfg.duration, &d.trackers);
    if rate.is_none() && !idle && w.load.sent.load(Ordering::Relaxed) as usize >= count {
        r.notes.push(format!(
            "all {count} signed transactions were offered before the window ended; raise --pool"
        ));
    }
    Ok(r)
}
