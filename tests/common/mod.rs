//! Shared support for cluster tests: generate a network, run each node as a real
//! `consort` process, kill and restart them, and poll them over gRPC.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use consort::client::Client;
use consort::config::ConsensusConfig;
use consort::testnet::{NodeEntry, TestnetSpec, generate};

/// A network of node processes in a temporary directory.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<NodeEntry>,
    children: Vec<Option<Child>>,
    restarts: Vec<usize>,
    envs: Vec<Vec<(String, String)>>,
    args: Vec<Vec<String>>,
    /// How the test reaches a TLS network's API: the first organization's
    /// admin certificate (which may call everything).
    pub tls: Option<consort::pki::ClientTls>,
}

/// A base port unlikely to collide with other tests of the same run: each test
/// passes its own slot (0..35) and gets 100 ports (10 nodes). Every port stays
/// below Linux's ephemeral range (32768 and up): a port in it can be taken by
/// any outgoing connection of the machine between generating a network and
/// starting its nodes.
pub fn base_port(slot: u16) -> u16 {
    assert!(slot < 35, "slot {slot} out of range");
    let pid_part = (std::process::id() % 6) as u16;
    10000 + pid_part * 3500 + slot * 100
}

impl Cluster {
    /// Generates `validators` validator homes (plus `members`) with fast timeouts.
    pub fn generate(validators: usize, members: usize, slot: u16) -> Cluster {
        Cluster::generate_with(validators, members, slot, |_| {})
    }

    /// Like [`Cluster::generate`], with a hook to adjust the spec.
    pub fn generate_with(
        validators: usize,
        members: usize,
        slot: u16,
        adjust: impl FnOnce(&mut TestnetSpec),
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = TestnetSpec::local(validators, dir.path().to_path_buf());
        spec.members = members;
        spec.base_port = base_port(slot);
        spec.chain_id = "consort-test".into();
        spec.consensus = ConsensusConfig::fast();
        spec.consensus.commit_delay_ms = 20;
        adjust(&mut spec);
        let nodes = generate(&spec).expect("generate testnet");
        let n = nodes.len();
        let tls = spec.tls.then(|| {
            let org = dir.path().join("orgs").join(&nodes[0].name);
            consort::pki::ClientTls::load(
                &dir.path().join("ca.pem"),
                Some(&org.join("admin.pem")),
                Some(&org.join("admin.key")),
            )
            .expect("the admin certificate")
        });
        Cluster {
            dir,
            nodes,
            children: (0..n).map(|_| None).collect(),
            restarts: vec![0; n],
            envs: vec![Vec::new(); n],
            args: vec![Vec::new(); n],
            tls,
        }
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.{}.log", self.nodes[i].name, self.restarts[i]))
    }

    /// Sets an environment variable for node `i`'s next starts.
    pub fn set_env(&mut self, i: usize, key: &str, value: &str) {
        self.envs[i].push((key.to_string(), value.to_string()));
    }

    /// Extra command-line arguments for node `i`'s next starts.
    pub fn set_args(&mut self, i: usize, args: &[&str]) {
        self.args[i] = args.iter().map(|a| a.to_string()).collect();
    }

    /// Starts node `i` as a process.
    pub fn start(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "node {i} already running");
        self.restarts[i] += 1;
        let log = std::fs::File::create(self.log_path(i)).expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_consort"))
            .arg("start")
            .arg("--home")
            .arg(&self.nodes[i].home)
            .args(&self.args[i])
            .envs(self.envs[i].iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn consort");
        self.children[i] = Some(child);
    }

    /// Starts every node.
    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    /// kill -9 node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM node `i` and wait for it to exit.
    pub fn terminate(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The process id of node `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(Child::id)
    }

    /// Whether node `i` still runs.
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.children[i].as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// A gRPC client of node `i`.
    pub async fn client(&self, i: usize) -> Option<Client> {
        Client::connect_with(&self.nodes[i].grpc, self.tls.as_ref())
            .await
            .ok()
    }

    /// Node `i`'s committed height, or None if it does not answer.
    pub async fn height(&self, i: usize) -> Option<u64> {
        let c = self.client(i).await?;
        c.status().await.ok().map(|s| s.height)
    }

    /// Waits until every node in `which` has committed at least `h`.
    pub async fn wait_height(&self, which: &[usize], h: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let mut all = true;
            for &i in which {
                if self.height(i).await.unwrap_or(0) < h {
                    all = false;
                    break;
                }
            }
            if all {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every node's logs, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        entries.sort();
        for p in entries {
            if p.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                out.push_str(&format!("==== {} (last 60 lines)\n", p.display()));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Everything node `i` logged, over all its runs.
    pub fn log_of(&self, i: usize) -> String {
        (1..=self.restarts[i])
            .map(|run| {
                let p = self
                    .dir
                    .path()
                    .join(format!("{}.{}.log", self.nodes[i].name, run));
                std::fs::read_to_string(p).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Edits node `i`'s config file.
    pub fn edit_config(&self, i: usize, edit: impl FnOnce(&mut consort::config::NodeConfig)) {
        let path = self.nodes[i].home.join("config.toml");
        let mut cfg = consort::config::NodeConfig::load(&path).expect("config");
        edit(&mut cfg);
        std::fs::write(&path, cfg.to_commented_toml()).expect("write config");
    }

    /// The home of node `i`.
    pub fn home(&self, i: usize) -> &Path {
        &self.nodes[i].home
    }

    /// Fetches a metric value from node `i`'s /metrics.
    pub async fn metric(&self, i: usize, name: &str) -> Option<f64> {
        let text = http_get(&self.nodes[i].metrics, "/metrics").await?;
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Asserts that every node in `which` stores the same block at each height
    /// of `from..=to`, whose id is its header's hash, with a commit that
    /// verifies against the validator set; panics on a fork.
    pub async fn assert_same_chain(&self, which: &[usize], from: u64, to: u64) {
        let first = self.client(which[0]).await.expect("client");
        let set = consort::types::ValidatorSet::new(first.validators().await.expect("validators"))
            .expect("validator set");
        for h in from..=to {
            let mut ids = std::collections::HashSet::new();
            for &i in which {
                let cl = self.client(i).await.expect("client");
                let (block, id) = cl.block(h).await.expect("block");
                assert_eq!(block.header.height, consort::types::Height(h));
                assert_eq!(
                    block.id(),
                    id,
                    "node {i} reports a block id that is not its header's hash"
                );
                let commit = cl.commit(h).await.expect("commit");
                commit
                    .verify("consort-test", &set, consort::types::Height(h), &id)
                    .unwrap_or_else(|e| panic!("node {i} commit {h}: {e}"));
                ids.insert(id);
            }
            assert_eq!(ids.len(), 1, "fork at height {h}: {ids:?}");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// A minimal HTTP GET over TCP.
pub async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// Every vote the validator at `home` holds: its commits from 1 to `to`, its WAL
/// of the last heights, and its signing state (the node must be stopped).
pub fn stored_votes(home: &consort::config::Home, to: u64) -> Vec<consort::types::Vote> {
    use consort::consensus::SignedMessage;
    use consort::storage::{BlockStore, SigningStateFile, SledStore, WalEntry, WalStore};
    use consort::types::Height;

    let mut votes = Vec::new();
    let store = SledStore::open(&home.data().join("db")).expect("open the node's store");
    for h in 1..=to {
        if let Some(c) = store.commit(Height(h)).expect("commit") {
            votes.extend(c.votes());
        }
    }
    for h in to.saturating_sub(3)..=to + 2 {
        for e in store.wal_entries(Height(h)).expect("wal") {
            if let WalEntry::Vote(v) = e {
                votes.push(v);
            }
        }
    }
    if let Some(s) = SigningStateFile::new(home.signing_state())
        .load()
        .expect("signing state")
    {
        votes.extend(s.votes);
        if let Some(SignedMessage::Vote(v)) = s.last_signed {
            votes.push(v);
        }
    }
    votes
}
