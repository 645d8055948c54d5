//! Catching up by whole heights: a node whose peers have committed heights it
//! lacks asks them for those blocks with their commits, a window at a time, and
//! applies them in order after checking each commit and the block itself.
//!
//! Only answers to our own requests are kept, from the peer asked: unsolicited
//! blocks are dropped, so what waits is bounded by the request window. A block
//! whose commit certifies it is applied whatever its transactions say
//! ([`crate::app::Application::execute_certified`]); if a certified block does
//! not apply here, the fault is this node's (its state or its rules differ from
//! the network's), not the sender's, and the node stops rather than blame
//! honest peers or go on with a state the validators did not sign.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info};

use super::PeerFault;
use super::actor::Actor;
use super::error::NodeError;
use crate::app::TxResult;
use crate::consensus::Input;
use crate::net::NetMessage;
use crate::types::{Block, BlockId, Commit, CommitError, Height, PublicKey, verify_commits};

/// Most heights requested ahead of the next one we need.
const WINDOW: u64 = 64;
/// Bytes of blocks to keep in flight and waiting, roughly: with large blocks the
/// window shrinks (to no fewer than [`MIN_WINDOW`] heights) so that a node
/// catching up does not buffer WINDOW blocks of the maximum size.
const BUFFER_BYTES: usize = 64 * 1024 * 1024;
/// Fewest heights requested ahead.
const MIN_WINDOW: u64 = 4;
/// A request not answered within this time goes to another peer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Blocks requested from peers and received ahead of their turn.
#[derive(Debug, Default)]
pub struct CatchUp {
    requested: BTreeMap<Height, (PublicKey, Instant)>,
    received: BTreeMap<Height, (Block, Commit, PublicKey)>,
    next_peer: usize,
    /// Transaction bytes of the last block applied, to size the window.
    last_block_bytes: usize,
    /// Blocks were appended without an fsync since the last one.
    pub(super) unsynced: bool,
    /// Blocks appended without an fsync, and their results: waiting clients
    /// and the mempool hear of them once the fsync is done.
    pub(super) unnotified: Vec<(Block, Vec<TxResult>)>,
    /// A state checkpoint runs aside: while it flushes, every block is appended
    /// durably, so that the flush cannot make state durable ahead of the log.
    pub(super) checkpointing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Actor {
    /// Asks peers for the blocks we lack and they have.
    pub(super) fn request_blocks(&mut self) {
        let next = self.store.latest_height().next();
        // A peer at consensus height H has committed every height below H.
        let mut holders: Vec<(PublicKey, Height)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.connected && p.height > next)
            .map(|(k, p)| (*k, p.height))
            .collect();
        if holders.is_empty() {
            return;
        }
        holders.sort();
        let now = Instant::now();
        let cu = &mut self.catchup;
        cu.requested.retain(|h, _| *h >= next);
        cu.received.retain(|h, _| *h >= next);
        let window = (BUFFER_BYTES / cu.last_block_bytes.max(1)) as u64;
        let window = window.clamp(MIN_WINDOW, WINDOW);
        for h in next.0..next.0 + window {
            let h = Height(h);
            if cu.received.contains_key(&h) {
                continue;
            }
            if let Some((_, at)) = cu.requested.get(&h) {
                if now - *at < REQUEST_TIMEOUT {
                    continue;
                }
            }
            let candidates: Vec<&(PublicKey, Height)> =
                holders.iter().filter(|(_, ph)| *ph > h).collect();
            if candidates.is_empty() {
                break;
            }
            let (peer, _) = candidates[cu.next_peer % candidates.len()];
            cu.next_peer = cu.next_peer.wrapping_add(1);
            cu.requested.insert(h, (*peer, now));
            self.net.send(peer, NetMessage::BlockRequest(h));
        }
    }

    /// Messages of the block channel: requests to serve, blocks to apply.
    pub(super) fn on_block_msg(
        &mut self,
        peer: PublicKey,
        msg: NetMessage,
    ) -> Result<(), NodeError> {
        match msg {
            NetMessage::BlockRequest(_) if self.withholds_blocks() => {}
            NetMessage::BlockRequest(h) => self.block_server.request(peer, h),
            NetMessage::Decided { block, commit } => {
                let h = block.height();
                let next = self.store.latest_height().next();
                if h < next || h.0 >= next.0 + WINDOW {
                    return Ok(());
                }
                // Only the answer to our request, from the peer we asked.
                if self.catchup.requested.get(&h).map(|(p, _)| p) != Some(&peer) {
                    debug!(peer = %peer.short(), height = %h, "unsolicited block dropped");
                    return Ok(());
                }
                // Applied by the caller once the queued messages are in, so that
                // the commits of a run of heights are verified in one batch.
                self.catchup
                    .received
                    .insert(h, ((*block).clone(), commit, peer));
            }
            _ => self.penalize(&peer, super::PeerFault::WrongChannel),
        }
        Ok(())
    }

    /// Makes the blocks appended without an fsync durable, then tells waiting
    /// clients and the mempool about them.
    pub(super) fn sync_blocks(&mut self) -> Result<(), NodeError> {
        if self.catchup.unsynced {
            #[cfg(feature = "faults")]
            if self
                .catchup
                .unnotified
                .iter()
                .any(|(b, _)| !b.txs.is_empty())
            {
                crate::faults::crash_point("block-sync-before-fsync");
            }
            self.store.sync_blocks()?;
            self.catchup.unsynced = false;
        }
        for (block, results) in std::mem::take(&mut self.catchup.unnotified) {
            self.after_commit(&block, &results);
        }
        Ok(())
    }

    /// Applies received blocks in height order while the next one is at hand. They
    /// are appended without an fsync: the caller syncs once per batch of messages,
    /// and [`Actor::drain`] syncs before the core sees any input, so no height is
    /// started (and nothing signed) on top of blocks that are not durable.
    pub(super) fn apply_received(&mut self) -> Result<(), NodeError> {
        loop {
            let next = self.store.latest_height().next();
            // The run of heights at hand from the next one on: their commits are
            // verified in one batch.
            let run: Vec<Height> = (next.0..next.0 + WINDOW)
                .map(Height)
                .take_while(|h| self.catchup.received.contains_key(h))
                .collect();
            if run.is_empty() {
                return Ok(());
            }
            let set = self.rules.validators().clone();
            let verdicts = {
                let items: Vec<(&Commit, Height, BlockId)> = run
                    .iter()
                    .filter_map(|h| {
                        self.catchup
                            .received
                            .get(h)
                            .map(|(b, c, _)| (c, *h, b.id()))
                    })
                    .collect();
                verify_commits(self.rules.chain_id(), &set, &items)
            };
            for (h, verdict) in run.into_iter().zip(verdicts) {
                if !self.apply_one(h, verdict)? {
                    // Refused: the heights after it wait for a good copy of it.
                    break;
                }
            }
        }
    }

    /// Applies the received block of `next` (the next height) whose commit got
    /// `verdict`; false if it was refused.
    fn apply_one(
        &mut self,
        next: Height,
        verdict: Result<(), CommitError>,
    ) -> Result<bool, NodeError> {
        let Some((block, commit, peer)) = self.catchup.received.remove(&next) else {
            return Ok(false);
        };
        self.catchup.requested.remove(&next);
        if let Err(e) = verdict {
            self.penalize(
                &peer,
                PeerFault::UncertifiedBlock {
                    height: next,
                    reason: e.to_string(),
                },
            );
            return Ok(false);
        }
        // The commit certifies the header; the body must be the one the header
        // commits to.
        if let Err(e) = block.check_body() {
            self.penalize(
                &peer,
                PeerFault::AlteredBlock {
                    height: next,
                    reason: e.to_string(),
                },
            );
            return Ok(false);
        }
        let exec =
            self.rules
                .validate_certified(next, &block)
                .map_err(|e| NodeError::Diverged {
                    height: next,
                    reason: e.reason,
                })?;
        debug!(height = %next, peer = %peer.short(), "applying fetched block");
        #[cfg(feature = "faults")]
        if self.faults.sync_throttle_ms > 0 {
            // Test misbehaviour: a slow catch-up, to look at a node behind.
            std::thread::sleep(Duration::from_millis(self.faults.sync_throttle_ms));
        }
        self.catchup.last_block_bytes = block.tx_bytes();
        self.commit_block(&block, &commit, &exec, false)?;
        if self.store.latest_height().0 % 1000 == 0 {
            info!(height = %next, "catching up");
        }
        // Leave the height we were deciding: the network decided it already.
        self.pending.push_back(Input::StartHeight {
            height: next.next(),
            last_block_time: block.header.time,
        });
        Ok(true)
    }
}
