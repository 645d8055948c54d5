//! Node configuration, the genesis file, key files, and the layout of a node's
//! home directory.

mod error;
mod genesis;
mod keys;
mod node;

use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use genesis::{
    Genesis, GenesisAccount, GenesisOrganization, GenesisValidator, MAX_CHAIN_ID_LEN,
};
pub use keys::{read_key, write_key, write_pem};
pub use node::{
    ConsensusConfig, LogConfig, MempoolConfig, MetricsConfig, NodeConfig, P2pConfig, PeerSpec,
    QuotaConfig, RoleQuota, RpcConfig, StorageConfig, SyncConfig,
};

/// The files of a node's home directory.
#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The home at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.toml`.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// `genesis.json`.
    pub fn genesis(&self) -> PathBuf {
        self.root.join("genesis.json")
    }

    /// `node_key.json`: the node's network identity and consensus key.
    pub fn node_key(&self) -> PathBuf {
        self.root.join("node_key.json")
    }

    /// `data/`: the node's database.
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// `data/signing_state.pb`: the consensus signing state, fsynced on its own.
    pub fn signing_state(&self) -> PathBuf {
        self.data().join("signing_state.pb")
    }
}
