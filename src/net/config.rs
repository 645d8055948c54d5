//! Configuration of the network runtime.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use super::Channel;
use crate::types::{Keypair, PublicKey};

/// A persistent peer: dialed at start and re-dialed after every disconnect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    /// The key the peer must present; any other is refused during the handshake.
    pub key: PublicKey,
    /// `host:port`. Resolved again at each dial, so that container DNS names that
    /// move to a new address keep working.
    pub addr: String,
}

/// One bound per channel (frame sizes in bytes, or queue lengths in messages).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ChannelLimits {
    /// [`Channel::Consensus`].
    pub consensus: usize,
    /// [`Channel::Proposal`].
    pub proposal: usize,
    /// [`Channel::Block`].
    pub block: usize,
    /// [`Channel::Mempool`].
    pub mempool: usize,
}

impl ChannelLimits {
    /// The bound of one channel.
    pub fn get(&self, channel: Channel) -> usize {
        match channel {
            Channel::Consensus => self.consensus,
            Channel::Proposal => self.proposal,
            Channel::Block => self.block,
            Channel::Mempool => self.mempool,
        }
    }

    /// The same bound for every channel.
    pub fn uniform(n: usize) -> ChannelLimits {
        ChannelLimits {
            consensus: n,
            proposal: n,
            block: n,
            mempool: n,
        }
    }
}

impl Default for ChannelLimits {
    /// Default maximum frame sizes: a vote or status fits in far less than
    /// 64 KiB; a proposal and a decided block carry a whole block.
    fn default() -> ChannelLimits {
        ChannelLimits {
            consensus: 64 * 1024,
            proposal: 16 * 1024 * 1024,
            block: 16 * 1024 * 1024,
            mempool: 4 * 1024 * 1024,
        }
    }
}

/// What the network runtime needs to start.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// UDP address to listen on (also the source of outgoing connections).
    pub listen: SocketAddr,
    /// The node key; the TLS certificate is self-signed with it and peers know
    /// this node by its public half.
    pub key: Keypair,
    /// Keys allowed to connect in either direction: the validators' keys plus the
    /// configured member nodes. Everyone else is refused during the handshake.
    pub permitted: HashSet<PublicKey>,
    /// Persistent peers, dialed and re-dialed with exponential backoff.
    pub peers: Vec<PeerAddr>,
    /// Maximum frame size per channel, in bytes (both directions: a larger
    /// outbound message is not sent, a larger inbound frame closes the peer).
    pub max_frame: ChannelLimits,
    /// Bound of each per-peer per-channel outbound queue, in messages. A send to a
    /// full queue is dropped and counted.
    pub queue_len: usize,
}

/// Timing and buffer settings with sensible defaults for LAN and WAN; tests and
/// operators with unusual links may change them with
/// [`super::Network::start_with`].
#[derive(Clone, Debug)]
pub struct NetTuning {
    /// QUIC keep-alive interval: keeps NAT bindings and idle detection alive.
    pub keep_alive: Duration,
    /// A connection with no packet from the peer for this long is dead.
    pub idle_timeout: Duration,
    /// Limit for the TLS handshake, and again for the exchange of stream
    /// headers that follows it. An inbound handshake holds one of the
    /// [`NetTuning::max_pending_handshakes`] slots until it completes or this
    /// runs out, so this bounds how long a stranger who stalls can hold one.
    pub handshake_timeout: Duration,
    /// First re-dial delay after a failure or a disconnect.
    pub backoff_initial: Duration,
    /// Cap of the exponential re-dial delay.
    pub backoff_max: Duration,
    /// How long a peer whose frame was oversized or undecodable is refused.
    pub bad_frame_ban: Duration,
    /// When the peer retires or closes a connection as a duplicate, how long to
    /// wait for the surviving one before reporting a disconnect.
    pub duplicate_grace: Duration,
    /// A connection replaced by another one to the same peer is retired: it
    /// sends what was queued on it, finishes its streams, reads the peer's to
    /// their end, and is closed this long after both directions drained (time for
    /// the peer's node to take the last messages).
    pub retire_linger: Duration,
    /// A retired connection that has not drained after this long is closed.
    pub retire_timeout: Duration,
    /// QUIC flow-control window of one stream, in bytes. The connection window is
    /// four of these plus one, so a stalled stream never starves the others.
    pub stream_window: u32,
    /// Bound of each inbound queue towards the node, in messages. A full queue
    /// stops reading that channel's streams (backpressure to the peers).
    pub inbound_len: ChannelLimits,
    /// Bound of the peer event queue towards the node.
    pub events_len: usize,
    /// Maximum number of inbound handshakes in progress at once; more are refused.
    pub max_pending_handshakes: usize,
    /// Maximum number of inbound handshakes in progress from one IPv4 address or
    /// IPv6 /64 at once; more are refused, so that one source cannot take every
    /// slot. Peers behind one NAT share it, and a node re-dials after a refusal.
    pub max_handshakes_per_ip: usize,
    /// From this many inbound handshakes in progress, a connection attempt from
    /// an address that has not been validated is answered with a QUIC Retry, as
    /// is every such attempt from an address already holding a handshake: the
    /// client must show that it receives packets at its address before it gets
    /// a slot, so spoofed floods hold none. Costs an honest client one round
    /// trip. 0 validates every address.
    pub retry_threshold: usize,
    /// Messages per second one peer may send on each channel (0: no limit). A
    /// peer may send twice as many in a burst; beyond, its messages are dropped
    /// before they reach the node's queue, counted, and reported to the node
    /// ([`super::PeerEvent::Flooding`]), which scores the peer. The defaults are
    /// far above what an honest peer of a consortium sends.
    pub rate_limit: ChannelLimits,
    /// Least time between two [`super::PeerEvent::Flooding`] reports of one
    /// connection.
    pub flood_report_interval: Duration,
}

impl Default for NetTuning {
    fn default() -> NetTuning {
        NetTuning {
            keep_alive: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            // A handshake (with a Retry and the stream headers) takes a few
            // round trips: well under a second on a LAN, about a second across
            // continents, and it survives one lost flight (quinn's first probe
            // fires after about a second). A dial that times out is retried
            // with backoff, while a stranger who stalls holds a slot for no
            // longer than this.
            handshake_timeout: Duration::from_secs(3),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            bad_frame_ban: Duration::from_secs(10),
            duplicate_grace: Duration::from_secs(3),
            retire_linger: Duration::from_secs(2),
            retire_timeout: Duration::from_secs(30),
            stream_window: 4 * 1024 * 1024,
            inbound_len: ChannelLimits {
                consensus: 4096,
                proposal: 16,
                block: 64,
                mempool: 256,
            },
            events_len: 1024,
            max_pending_handshakes: 64,
            max_handshakes_per_ip: 8,
            retry_threshold: 4,
            rate_limit: ChannelLimits {
                consensus: 2000,
                proposal: 100,
                block: 1000,
                mempool: 500,
            },
            flood_report_interval: Duration::from_secs(1),
        }
    }
}
