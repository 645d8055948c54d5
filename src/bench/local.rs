//! A local network for a run: generated homes, each node a child process of the
//! `consort` binary (so that each node's memory and CPU can be read alone).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BenchError;
use super::resources::Probe;
use crate::client::Client;
use crate::config::{Home, NodeConfig};
use crate::testnet::{NodeEntry, TestnetSpec, generate};

/// The nodes of a local network and their processes.
pub struct LocalNet {
    /// Directory holding the homes and the logs.
    pub dir: PathBuf,
    /// The generated nodes (validators first, then members).
    pub nodes: Vec<NodeEntry>,
    exe: PathBuf,
    children: Vec<Option<Child>>,
    keep: bool,
}

impl LocalNet {
    /// Generates the homes of `spec` (its `out` is cleared first) and lets
    /// `edit` adjust each node's config (by index, knowing every node).
    pub fn generate(
        spec: &TestnetSpec,
        exe: PathBuf,
        keep: bool,
        edit: impl Fn(usize, &[NodeEntry], &mut NodeConfig),
    ) -> Result<LocalNet, BenchError> {
        if spec.out.exists() {
            std::fs::remove_dir_all(&spec.out)
                .map_err(|e| BenchError::Setup(format!("clearing {}: {e}", spec.out.display())))?;
        }
        let nodes = generate(spec).map_err(|e| BenchError::Setup(e.to_string()))?;
        for (i, n) in nodes.iter().enumerate() {
            let path = Home::new(&n.home).config();
            let mut cfg = NodeConfig::load(&path).map_err(|e| BenchError::Setup(e.to_string()))?;
            // A benchmark's logs go to files; warnings are enough.
            cfg.log.level = "warn".into();
            edit(i, &nodes, &mut cfg);
            std::fs::write(&path, cfg.to_commented_toml())
                .map_err(|e| BenchError::Setup(format!("writing {}: {e}", path.display())))?;
        }
        let count = nodes.len();
        Ok(LocalNet {
            dir: spec.out.clone(),
            nodes,
            exe,
            children: (0..count).map(|_| None).collect(),
            keep,
        })
    }

    /// Edits node `i`'s config file (read at its next start).
    pub fn edit_config(
        &self,
        i: usize,
        edit: impl FnOnce(&mut NodeConfig),
    ) -> Result<(), BenchError> {
        let path = Home::new(&self.nodes[i].home).config();
        let mut cfg = NodeConfig::load(&path).map_err(|e| BenchError::Setup(e.to_string()))?;
        edit(&mut cfg);
        std::fs::write(&path, cfg.to_commented_toml())
            .map_err(|e| BenchError::Setup(format!("writing {}: {e}", path.display())))
    }

    /// Node `i`'s log file.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.log", self.nodes[i].name))
    }

    /// Starts node `i` as a child process.
    pub fn start(&mut self, i: usize) -> Result<(), BenchError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .map_err(|e| BenchError::Setup(format!("log of {}: {e}", self.nodes[i].name)))?;
        let err = log
            .try_clone()
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let child = Command::new(&self.exe)
            .arg("start")
            .arg("--home")
            .arg(&self.nodes[i].home)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| BenchError::Setup(format!("starting {}: {e}", self.exe.display())))?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// Stops node `i` (killed: a benchmark does not need a clean shutdown).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Where node `i`'s resource use is read.
    pub fn probe(&self, i: usize) -> Probe {
        match &self.children[i] {
            Some(c) => Probe::Pid(c.id()),
            None => Probe::None,
        }
    }

    /// gRPC addresses of nodes `range`.
    pub fn grpc(&self, idx: &[usize]) -> Vec<String> {
        idx.iter().map(|i| self.nodes[*i].grpc.clone()).collect()
    }

    /// Whether node `i` exited (and how), for error messages.
    pub fn exited(&mut self, i: usize) -> Option<String> {
        let c = self.children[i].as_mut()?;
        match c.try_wait() {
            Ok(Some(status)) => Some(format!(
                "{} exited ({status}); see {}",
                self.nodes[i].name,
                self.log_path(i).display()
            )),
            _ => None,
        }
    }

    /// Waits until nodes `idx` answer and have decided `height`.
    pub async fn wait_height(
        &mut self,
        idx: &[usize],
        height: u64,
        timeout: Duration,
    ) -> Result<(), BenchError> {
        let deadline = Instant::now() + timeout;
        for &i in idx {
            loop {
                if let Some(why) = self.exited(i) {
                    return Err(BenchError::Node(why));
                }
                if let Ok(c) = Client::connect(&self.nodes[i].grpc).await {
                    if let Ok(s) = c.status().await {
                        if s.height >= height {
                            break;
                        }
                    }
                }
                if Instant::now() > deadline {
                    return Err(BenchError::Node(format!(
                        "{} did not reach height {height} within {}s; see {}",
                        self.nodes[i].name,
                        timeout.as_secs(),
                        self.log_path(i).display()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// The directory, if kept.
    pub fn kept_dir(&self) -> Option<&Path> {
        self.keep.then_some(self.dir.as_path())
    }
}

impl Drop for LocalNet {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.stop(i);
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A fresh directory for a local network.
pub fn default_dir() -> PathBuf {
    std::env::temp_dir().join(format!("consort-bench-{}", std::process::id()))
}

/// Starts every node of `idx`.
pub fn start_all(
    net: &mut LocalNet,
    idx: impl IntoIterator<Item = usize>,
) -> Result<(), BenchError> {
    for i in idx {
        net.start(i)?;
    }
    Ok(())
}

/// A spec for `validators` local validators on ports from `base_port`.
pub fn spec(validators: usize, members: usize, base_port: u16, dir: PathBuf) -> TestnetSpec {
    let mut s = TestnetSpec::local(validators, dir);
    s.members = members;
    s.base_port = base_port;
    s.chain_id = "consort-bench".into();
    s
}
