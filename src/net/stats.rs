//! Counters of the network runtime.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Channel;

/// Traffic of one channel, summed over all peers since start.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Messages received, decoded and handed to the node.
    pub msgs_in: u64,
    /// Bytes received on the channel's streams (frames with their prefixes).
    pub bytes_in: u64,
    /// Messages written to peers' streams.
    pub msgs_out: u64,
    /// Bytes written to peers' streams (frames with their prefixes).
    pub bytes_out: u64,
    /// Sends dropped because the peer's queue of this channel was full.
    pub dropped: u64,
    /// Sends to a peer that is not connected.
    pub unroutable: u64,
    /// Messages not sent because their frame exceeds the channel's limit.
    pub oversized: u64,
    /// Inbound messages dropped because their peer exceeded the channel's rate.
    pub rate_limited: u64,
}

/// A snapshot of the network's counters.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// [`Channel::Consensus`] traffic.
    pub consensus: ChannelStats,
    /// [`Channel::Proposal`] traffic.
    pub proposal: ChannelStats,
    /// [`Channel::Block`] traffic.
    pub block: ChannelStats,
    /// [`Channel::Mempool`] traffic.
    pub mempool: ChannelStats,
    /// Inbound frames that were oversized or undecodable (each closed its peer).
    pub bad_frames: u64,
    /// TLS handshakes refused by our verifier (unknown, banned or invalid keys).
    pub refused_handshakes: u64,
    /// Inbound connection attempts answered with a QUIC Retry (address
    /// validation; see [`super::NetTuning::retry_threshold`]).
    pub handshake_retries: u64,
    /// Inbound connection attempts refused because their source held
    /// [`super::NetTuning::max_handshakes_per_ip`] handshakes already.
    pub handshakes_refused_per_ip: u64,
    /// Inbound connection attempts refused because
    /// [`super::NetTuning::max_pending_handshakes`] were in progress.
    pub handshakes_refused_busy: u64,
    /// Inbound handshakes in progress now.
    pub pending_handshakes: usize,
    /// Times a peer became connected.
    pub connects: u64,
    /// Times a peer became disconnected.
    pub disconnects: u64,
    /// Peers connected now.
    pub peers: usize,
}

impl NetStats {
    /// The traffic of one channel.
    pub fn channel(&self, channel: Channel) -> &ChannelStats {
        match channel {
            Channel::Consensus => &self.consensus,
            Channel::Proposal => &self.proposal,
            Channel::Block => &self.block,
            Channel::Mempool => &self.mempool,
        }
    }

    /// Sends dropped on full queues, over all channels.
    pub fn dropped(&self) -> u64 {
        Channel::ALL.iter().map(|c| self.channel(*c).dropped).sum()
    }
}

#[derive(Default)]
pub(crate) struct ChannelCounters {
    msgs_in: AtomicU64,
    bytes_in: AtomicU64,
    msgs_out: AtomicU64,
    bytes_out: AtomicU64,
    dropped: AtomicU64,
    unroutable: AtomicU64,
    oversized: AtomicU64,
    rate_limited: AtomicU64,
}

impl ChannelCounters {
    fn snapshot(&self) -> ChannelStats {
        ChannelStats {
            msgs_in: self.msgs_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            msgs_out: self.msgs_out.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            unroutable: self.unroutable.load(Ordering::Relaxed),
            oversized: self.oversized.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
        }
    }
}

/// The live counters; [`NetStats`] is a snapshot of them.
#[derive(Default)]
pub(crate) struct Counters {
    channels: [ChannelCounters; 4],
    bad_frames: AtomicU64,
    handshake_retries: AtomicU64,
    handshakes_refused_per_ip: AtomicU64,
    handshakes_refused_busy: AtomicU64,
    connects: AtomicU64,
    disconnects: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    fn ch(&self, channel: Channel) -> &ChannelCounters {
        &self.channels[channel.index()]
    }

    pub(crate) fn bytes_in(&self, channel: Channel, bytes: usize) {
        add(&self.ch(channel).bytes_in, bytes as u64);
    }

    pub(crate) fn msg_in(&self, channel: Channel) {
        add(&self.ch(channel).msgs_in, 1);
    }

    pub(crate) fn out(&self, channel: Channel, msgs: usize, bytes: usize) {
        add(&self.ch(channel).msgs_out, msgs as u64);
        add(&self.ch(channel).bytes_out, bytes as u64);
    }

    pub(crate) fn dropped(&self, channel: Channel) {
        add(&self.ch(channel).dropped, 1);
    }

    pub(crate) fn unroutable(&self, channel: Channel) {
        add(&self.ch(channel).unroutable, 1);
    }

    pub(crate) fn oversized(&self, channel: Channel) {
        add(&self.ch(channel).oversized, 1);
    }

    pub(crate) fn rate_limited(&self, channel: Channel) {
        add(&self.ch(channel).rate_limited, 1);
    }

    pub(crate) fn bad_frame(&self) {
        add(&self.bad_frames, 1);
    }

    pub(crate) fn handshake_retry(&self) {
        add(&self.handshake_retries, 1);
    }

    pub(crate) fn handshake_refused_per_ip(&self) {
        add(&self.handshakes_refused_per_ip, 1);
    }

    pub(crate) fn handshake_refused_busy(&self) {
        add(&self.handshakes_refused_busy, 1);
    }

    pub(crate) fn connect(&self) {
        add(&self.connects, 1);
    }

    pub(crate) fn disconnect(&self) {
        add(&self.disconnects, 1);
    }

    pub(crate) fn snapshot(
        &self,
        refused_handshakes: u64,
        pending_handshakes: usize,
        peers: usize,
    ) -> NetStats {
        NetStats {
            consensus: self.ch(Channel::Consensus).snapshot(),
            proposal: self.ch(Channel::Proposal).snapshot(),
            block: self.ch(Channel::Block).snapshot(),
            mempool: self.ch(Channel::Mempool).snapshot(),
            bad_frames: self.bad_frames.load(Ordering::Relaxed),
            refused_handshakes,
            handshake_retries: self.handshake_retries.load(Ordering::Relaxed),
            handshakes_refused_per_ip: self.handshakes_refused_per_ip.load(Ordering::Relaxed),
            handshakes_refused_busy: self.handshakes_refused_busy.load(Ordering::Relaxed),
            pending_handshakes,
            connects: self.connects.load(Ordering::Relaxed),
            disconnects: self.disconnects.load(Ordering::Relaxed),
            peers,
        }
    }
}
