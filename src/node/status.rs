//! What the node publishes about itself, for the gRPC status call and the CLI.

use crate::types::{Hash, Height, PublicKey, Round, Timestamp};

/// How the node is keeping up with the chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncPhase {
    /// Following the chain through consensus.
    #[default]
    Consensus,
    /// Restoring a snapshot.
    StateSync,
    /// Fetching and applying blocks it is missing.
    BlockSync,
}

impl SyncPhase {
    /// Stable name.
    pub fn as_str(&self) -> &'static str {
        match self {
            SyncPhase::Consensus => "consensus",
            SyncPhase::StateSync => "state_sync",
            SyncPhase::BlockSync => "block_sync",
        }
    }

    /// Stable number for the metric.
    pub fn code(&self) -> i64 {
        match self {
            SyncPhase::Consensus => 0,
            SyncPhase::StateSync => 1,
            SyncPhase::BlockSync => 2,
        }
    }
}

/// A peer as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// Its node key.
    pub key: PublicKey,
    /// Its name (validator moniker) if known.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Connected now.
    pub connected: bool,
    /// The height it last reported.
    pub height: Height,
}

/// A snapshot of the node's state.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    /// Chain id.
    pub chain_id: String,
    /// Node name.
    pub moniker: String,
    /// Node key.
    pub node_key: PublicKey,
    /// Whether this node votes.
    pub is_validator: bool,
    /// Latest committed height.
    pub height: Height,
    /// Id of the latest committed block.
    pub latest_block_hash: Option<Hash>,
    /// Time of the latest committed block.
    pub latest_block_time: Timestamp,
    /// Consensus round at the height being decided.
    pub round: Round,
    /// Consensus step.
    pub step: &'static str,
    /// True while the node is behind its peers.
    pub catching_up: bool,
    /// Synchronisation phase.
    pub sync_phase: SyncPhase,
    /// Highest height peers reported.
    pub peer_max_height: Height,
    /// Lowest stored block.
    pub base_height: Height,
    /// Known peers.
    pub peers: Vec<PeerStatus>,
}

impl NodeStatus {
    /// The status of a node that has not started yet.
    pub fn new(
        chain_id: String,
        moniker: String,
        node_key: PublicKey,
        is_validator: bool,
    ) -> NodeStatus {
        NodeStatus {
            chain_id,
            moniker,
            node_key,
            is_validator,
            height: Height(0),
            latest_block_hash: None,
            latest_block_time: Timestamp(0),
            round: Round(0),
            step: "propose",
            catching_up: true,
            sync_phase: SyncPhase::Consensus,
            peer_max_height: Height(0),
            base_height: Height(0),
            peers: vec![],
        }
    }
}
