//! The peer-to-peer network: QUIC (quinn) with mutual TLS on ed25519 node keys.
//!
//! - Identity: a peer is the key in its self-signed certificate; only permitted
//!   keys complete a handshake, in either direction ([`tls`]).
//! - One QUIC connection per pair of nodes. When both dial at once, both keep
//!   the connection dialed by the lower key; a connection from a restarted peer
//!   (a new incarnation) or re-dialed by the same side replaces the old one,
//!   which the peer has evidently lost. The connection not kept is drained, not
//!   cut, so no message already sent on it is lost ([`peer`]).
//! - One long-lived unidirectional stream per channel and direction, each with
//!   its own frame limit, outbound queue and send priority, so that a burst on
//!   one channel never delays another ([`peer`], [`wire`]).
//! - Outbound: [`Network::send`] and [`Network::broadcast`] never block; they
//!   encode once and queue the shared frame on each peer's bounded channel
//!   queue, dropping (and counting) when it is full.
//! - Inbound: one bounded queue per channel towards the node ([`NetEvents`]);
//!   when the node is slow, the reader of that stream waits and QUIC flow
//!   control pushes back on that peer's stream only.
//! - Inbound handshakes are bounded in total and per source address, and under
//!   load an address must answer a QUIC Retry before it gets a slot, so that a
//!   stranger's handshake flood never keeps peers out ([`admit`]).
//! - Persistent peers are re-dialed with capped exponential backoff and jitter
//!   after any disconnect; their address is resolved again at each dial.
//! - A peer that sends an oversized or undecodable frame is logged, counted,
//!   disconnected and refused for a while; the node keeps running.
//! - Each peer may send so many messages per second on each channel
//!   ([`NetTuning::rate_limit`]); the excess is dropped before it reaches the
//!   node's queue, counted, and reported ([`PeerEvent::Flooding`]) so that the
//!   node scores the peer and cuts it off.
//!
//! Messages are decoded and validated here but signatures are not checked: the
//! node verifies them in batches.

mod admit;
mod config;
mod message;
mod peer;
#[doc(hidden)]
pub mod raw;
mod stats;
pub mod tls;
pub mod wire;

#[cfg(test)]
mod tests;

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use quinn::{Endpoint, IdleTimeout, TransportConfig, VarInt};
use rand_core::RngCore as _;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{Instrument as _, debug, info, info_span, warn};

pub use config::{ChannelLimits, NetConfig, NetTuning, PeerAddr};
pub use message::{Channel, NetMessage, RoundStatus};
pub use stats::{ChannelStats, NetStats};

use admit::{Admission, HandshakeSlots, Verdict};
use peer::{ConnCtl, Direction, Live, Rejected, close_code};
use tls::{Identity, PeerGate, TlsError};
use wire::WireError;

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A configuration value is unusable.
    #[error("invalid network configuration: {0}")]
    Config(String),
    /// TLS could not be set up with the node key.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A change in the set of connected peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// The peer has a connection now (it had none).
    Connected {
        /// The peer.
        peer: PublicKey,
        /// Its address.
        addr: SocketAddr,
    },
    /// The peer sent more messages than its channel's rate limit allows; the
    /// excess was dropped. Reported at most once per
    /// [`NetTuning::flood_report_interval`] per connection.
    Flooding {
        /// The peer.
        peer: PublicKey,
        /// The channel.
        channel: Channel,
        /// Messages dropped since the last report.
        dropped: u64,
    },
    /// The peer has no connection any more.
    Disconnected {
        /// The peer.
        peer: PublicKey,
        /// Why, for logs.
        reason: String,
    },
}

/// What the network hands to the node: peer events, and one bounded queue of
/// `(sender, message)` per channel, so that a mempool flood never delays votes.
#[derive(Debug)]
pub struct NetEvents {
    /// Connects and disconnects, in the order they happened.
    pub peers: mpsc::Receiver<PeerEvent>,
    /// [`Channel::Consensus`] messages: votes and round status.
    pub consensus: mpsc::Receiver<(PublicKey, NetMessage)>,
    /// [`Channel::Proposal`] messages.
    pub proposals: mpsc::Receiver<(PublicKey, NetMessage)>,
    /// [`Channel::Block`] messages: decided blocks and block requests.
    pub blocks: mpsc::Receiver<(PublicKey, NetMessage)>,
    /// [`Channel::Mempool`] messages.
    pub mempool: mpsc::Receiver<(PublicKey, NetMessage)>,
}

use crate::types::PublicKey;

/// Which peers have a connection, and which the node was told of.
#[derive(Default)]
struct PeerTable {
    conns: HashMap<PublicKey, Live>,
    /// Peers the node saw `Connected` for and not yet `Disconnected`.
    announced: HashSet<PublicKey>,
}

/// State shared by the handle and every task.
pub(crate) struct Inner {
    local: PublicKey,
    local_addr: SocketAddr,
    /// Drawn at start; tells a peer that this is a new process, whose old
    /// connections are dead.
    incarnation: u64,
    limits: ChannelLimits,
    queue_len: usize,
    tuning: NetTuning,
    gate: Arc<PeerGate>,
    counters: stats::Counters,
    /// Inbound handshakes in progress.
    handshakes: Arc<HandshakeSlots>,
    table: Mutex<PeerTable>,
    /// Bumped at every change of `table.conns`; dialers wait on it.
    changed: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
    events: mpsc::UnboundedSender<PeerEvent>,
    inbound: [mpsc::Sender<(PublicKey, NetMessage)>; 4],
    endpoint: Mutex<Option<Endpoint>>,
    tasks: Mutex<JoinSet<()>>,
    next_id: AtomicU64,
}

impl Inner {
    fn next_conn_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Spawns a task that [`Network::shutdown`] waits for.
    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut tasks = self.tasks.lock();
        while tasks.try_join_next().is_some() {}
        tasks.spawn(fut);
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn is_connected(&self, peer: &PublicKey) -> bool {
        self.table.lock().conns.contains_key(peer)
    }

    /// Makes `live` the connection of `peer`, unless the one it has is kept.
    fn register(&self, peer: PublicKey, live: Live) -> Result<(), Rejected> {
        let mut t = self.table.lock();
        if self.shutting_down() {
            return Err(Rejected::Refused("shutting down"));
        }
        self.gate
            .check(&peer)
            .map_err(|r| Rejected::Refused(r.as_str()))?;
        if let Some(old) = t.conns.get(&peer) {
            // A new incarnation: the peer restarted and the old connection is
            // dead. The same dialer: it dials only when it has no connection,
            // so it lost the old one. Otherwise both dialed at once: keep the
            // one dialed by the lower key, as the peer does.
            let keep_new = old.incarnation != live.incarnation
                || old.dialer == live.dialer
                || live.dialer == self.local.min(peer);
            if !keep_new {
                return Err(Rejected::Duplicate);
            }
            if let Some(old) = t.conns.remove(&peer) {
                // Dropping `old` drops its queues: its writers drain and finish.
                debug!(peer = %peer.short(), "replacing connection; draining the old one");
                old.ctl.retire();
            }
        }
        let addr = live.addr;
        t.conns.insert(peer, live);
        if t.announced.insert(peer) {
            self.counters.connect();
            let _ = self.events.send(PeerEvent::Connected { peer, addr });
        }
        drop(t);
        self.bump();
        Ok(())
    }

    /// Removes connection `id` of `peer` if it is still the registered one,
    /// and tells the node, at once or (after a duplicate close by the peer)
    /// after a grace period in which the surviving connection may register.
    fn deregister(self: &Arc<Self>, peer: PublicKey, id: u64, reason: String, grace: bool) {
        let mut t = self.table.lock();
        if t.conns.get(&peer).is_none_or(|l| l.ctl.id != id) {
            // Replaced or retired: another connection carries on.
            return;
        }
        t.conns.remove(&peer);
        if grace {
            drop(t);
            self.announce_after_grace(peer, reason);
        } else {
            self.announce_gone(&mut t, peer, reason);
            drop(t);
        }
        self.bump();
    }

    /// The peer finished its streams on `ctl`: it keeps another connection to
    /// us, which should register shortly. Retire ours.
    fn peer_retired(self: &Arc<Self>, peer: PublicKey, ctl: &ConnCtl) {
        ctl.retire();
        let mut t = self.table.lock();
        if t.conns.get(&peer).is_some_and(|l| l.ctl.id == ctl.id) {
            t.conns.remove(&peer);
            drop(t);
            self.bump();
            self.announce_after_grace(peer, "peer retired the connection".into());
        }
    }

    /// Reports `peer` gone after the duplicate grace, unless a connection
    /// registered meanwhile.
    fn announce_after_grace(self: &Arc<Self>, peer: PublicKey, reason: String) {
        let inner = self.clone();
        let wait = self.tuning.duplicate_grace;
        let mut shutdown = self.shutdown.subscribe();
        self.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let mut t = inner.table.lock();
            inner.announce_gone(&mut t, peer, reason);
        });
    }

    fn announce_gone(&self, t: &mut PeerTable, peer: PublicKey, reason: String) {
        if !t.conns.contains_key(&peer) && t.announced.remove(&peer) {
            self.counters.disconnect();
            let _ = self.events.send(PeerEvent::Disconnected { peer, reason });
        }
    }

    /// A peer sent an oversized or undecodable frame: log, count, refuse it for
    /// a while, close it.
    fn bad_frame(&self, ctl: &ConnCtl, peer: &PublicKey, e: &WireError) {
        self.counters.bad_frame();
        warn!(peer = %peer.short(), error = %e, "bad frame; disconnecting peer");
        if !self.tuning.bad_frame_ban.is_zero() {
            self.gate.ban(*peer, self.tuning.bad_frame_ban);
        }
        ctl.close(close_code::PROTOCOL, &format!("bad frame: {e}"));
    }

    /// Encodes a message once, or counts it as oversized.
    fn encode(&self, msg: &NetMessage) -> Option<Bytes> {
        let ch = msg.channel();
        match wire::encode_frame(msg) {
            Ok(frame) if wire::body_len(&frame) <= self.limits.get(ch) => Some(frame),
            Ok(frame) => {
                self.counters.oversized(ch);
                warn!(
                    channel = %ch,
                    kind = msg.kind(),
                    len = wire::body_len(&frame),
                    max = self.limits.get(ch),
                    "not sending a message larger than the channel's frame limit"
                );
                None
            }
            Err(e) => {
                self.counters.oversized(ch);
                warn!(channel = %ch, kind = msg.kind(), error = %e, "cannot encode message");
                None
            }
        }
    }

    fn enqueue(&self, live: &Live, ch: Channel, frame: Bytes) {
        match live.queues[ch.index()].try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.counters.dropped(ch),
            Err(mpsc::error::TrySendError::Closed(_)) => self.counters.unroutable(ch),
        }
    }
}

/// Handle of the network runtime. Cheap to clone; every clone drives the same
/// endpoint. Call [`Network::shutdown`] to stop it.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("local", &self.inner.local)
            .field("addr", &self.inner.local_addr)
            .finish()
    }
}

fn transport(t: &NetTuning) -> Result<TransportConfig, NetError> {
    let mut tc = TransportConfig::default();
    tc.keep_alive_interval(Some(t.keep_alive));
    tc.max_idle_timeout(Some(
        IdleTimeout::try_from(t.idle_timeout)
            .map_err(|_| NetError::Config("idle timeout too large".into()))?,
    ));
    // Exactly our four channel streams; a peer opening more breaks QUIC's stream
    // limit and is closed by quinn.
    tc.max_concurrent_uni_streams(VarInt::from_u32(Channel::ALL.len() as u32));
    tc.max_concurrent_bidi_streams(VarInt::from_u32(0));
    tc.datagram_receive_buffer_size(None);
    tc.stream_receive_window(VarInt::from_u32(t.stream_window));
    // Room for every stream's window, so a stream the node does not drain (its
    // window full) never starves the others of connection-level credit.
    let conn_window = u64::from(t.stream_window) * (Channel::ALL.len() as u64 + 1);
    tc.receive_window(
        VarInt::from_u64(conn_window)
            .map_err(|_| NetError::Config("stream window too large".into()))?,
    );
    tc.send_window(conn_window);
    Ok(tc)
}

fn validate(cfg: &NetConfig, t: &NetTuning) -> Result<(), NetError> {
    let err = |s: &str| Err(NetError::Config(s.to_string()));
    if cfg.queue_len == 0 {
        return err("queue_len must be at least 1");
    }
    for ch in Channel::ALL {
        let max = cfg.max_frame.get(ch);
        if max == 0 || max > u32::MAX as usize {
            return Err(NetError::Config(format!(
                "max_frame.{ch} must be between 1 and {} bytes",
                u32::MAX
            )));
        }
        if t.inbound_len.get(ch) == 0 {
            return Err(NetError::Config(format!(
                "inbound_len.{ch} must be at least 1"
            )));
        }
    }
    if t.events_len == 0 || t.max_pending_handshakes == 0 || t.max_handshakes_per_ip == 0 {
        return err(
            "events_len, max_pending_handshakes and max_handshakes_per_ip must be at least 1",
        );
    }
    if t.handshake_timeout.is_zero() {
        return err("handshake_timeout must be positive");
    }
    if t.stream_window < 64 * 1024 {
        return err("stream_window must be at least 64 KiB");
    }
    if t.backoff_initial.is_zero() || t.backoff_max < t.backoff_initial {
        return err("backoff_initial must be positive and at most backoff_max");
    }
    Ok(())
}

impl Network {
    /// Binds the endpoint, starts accepting permitted peers and dialing the
    /// persistent ones, with the default [`NetTuning`].
    pub async fn start(cfg: NetConfig) -> Result<(Network, NetEvents), NetError> {
        Network::start_with(cfg, NetTuning::default()).await
    }

    /// [`Network::start`] with explicit timing and buffer settings.
    pub async fn start_with(
        cfg: NetConfig,
        tuning: NetTuning,
    ) -> Result<(Network, NetEvents), NetError> {
        validate(&cfg, &tuning)?;
        let local = cfg.key.public();
        let identity = Identity::new(&cfg.key)?;
        let gate = Arc::new(PeerGate::new(local, cfg.permitted.clone()));
        let transport = Arc::new(transport(&tuning)?);

        let mut server = quinn::ServerConfig::with_crypto(Arc::new(tls::server_config(
            &identity,
            gate.clone(),
        )?));
        server.transport_config(transport.clone());
        let endpoint = Endpoint::server(server, cfg.listen).map_err(|source| NetError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let local_addr = endpoint.local_addr().map_err(|source| NetError::Bind {
            addr: cfg.listen,
            source,
        })?;

        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (peers_tx, peers_rx) = mpsc::channel(tuning.events_len);
        let (c_tx, c_rx) = mpsc::channel(tuning.inbound_len.consensus);
        let (p_tx, p_rx) = mpsc::channel(tuning.inbound_len.proposal);
        let (b_tx, b_rx) = mpsc::channel(tuning.inbound_len.block);
        let (m_tx, m_rx) = mpsc::channel(tuning.inbound_len.mempool);

        let handshakes = Arc::new(HandshakeSlots::new(admit::Limits {
            max_total: tuning.max_pending_handshakes,
            max_per_source: tuning.max_handshakes_per_ip,
            retry_threshold: tuning.retry_threshold,
        }));
        let inner = Arc::new(Inner {
            local,
            local_addr,
            incarnation: rand_core::OsRng.next_u64(),
            limits: cfg.max_frame,
            queue_len: cfg.queue_len,
            tuning,
            gate,
            counters: stats::Counters::default(),
            handshakes,
            table: Mutex::new(PeerTable::default()),
            changed: watch::Sender::new(0),
            shutdown: watch::Sender::new(false),
            events: events_tx,
            inbound: [c_tx, p_tx, b_tx, m_tx],
            endpoint: Mutex::new(Some(endpoint.clone())),
            tasks: Mutex::new(JoinSet::new()),
            next_id: AtomicU64::new(0),
        });
        let span = info_span!("net", node = %local.short());
        info!(parent: &span, addr = %local_addr, peers = cfg.peers.len(), permitted = cfg.permitted.len(), "network started");

        inner.spawn(
            forward_events(events_rx, peers_tx, inner.shutdown.subscribe())
                .instrument(span.clone()),
        );
        inner.spawn(accept_loop(inner.clone(), endpoint.clone()).instrument(span.clone()));
        let mut seen = HashSet::new();
        for p in cfg.peers {
            if p.key == local {
                debug!(parent: &span, addr = %p.addr, "not dialing our own key");
                continue;
            }
            if !inner.gate.is_permitted(&p.key) {
                warn!(parent: &span, peer = %p.key.short(), addr = %p.addr, "persistent peer is not permitted; not dialing it");
                continue;
            }
            if !seen.insert(p.key) {
                continue;
            }
            let client = quinn::ClientConfig::new(Arc::new(tls::client_config(
                &identity,
                inner.gate.clone(),
                Some(p.key),
            )?));
            let mut client = client;
            client.transport_config(transport.clone());
            let dspan = info_span!(parent: &span, "dial", peer = %p.key.short(), addr = %p.addr);
            inner.spawn(dial_loop(inner.clone(), endpoint.clone(), client, p).instrument(dspan));
        }

        let events = NetEvents {
            peers: peers_rx,
            consensus: c_rx,
            proposals: p_rx,
            blocks: b_rx,
            mempool: m_rx,
        };
        Ok((Network { inner }, events))
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// This node's key.
    pub fn local_key(&self) -> PublicKey {
        self.inner.local
    }

    /// Queues `msg` for `peer` without waiting. Dropped (and counted) if the
    /// peer's queue of that channel is full, the peer is not connected, or the
    /// frame exceeds the channel's limit.
    pub fn send(&self, peer: &PublicKey, msg: NetMessage) {
        let ch = msg.channel();
        let Some(frame) = self.inner.encode(&msg) else {
            return;
        };
        let t = self.inner.table.lock();
        match t.conns.get(peer) {
            Some(live) => self.inner.enqueue(live, ch, frame),
            None => self.inner.counters.unroutable(ch),
        }
    }

    /// Queues `body` as a frame of `channel` for `peer`, without encoding or
    /// checking anything. Exists for the misbehaviour tests
    /// ([`crate::faults`]), which send valid-looking garbage on purpose.
    pub fn send_raw_frame(&self, peer: &PublicKey, channel: Channel, body: &[u8]) {
        let Ok(len) = u32::try_from(body.len()) else {
            return;
        };
        let mut frame = Vec::with_capacity(wire::LEN_PREFIX + body.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(body);
        let t = self.inner.table.lock();
        if let Some(live) = t.conns.get(peer) {
            self.inner.enqueue(live, channel, Bytes::from(frame));
        }
    }

    /// Queues `msg` for every connected peer. The frame is encoded once and
    /// shared.
    pub fn broadcast(&self, msg: NetMessage) {
        let ch = msg.channel();
        let Some(frame) = self.inner.encode(&msg) else {
            return;
        };
        let t = self.inner.table.lock();
        for live in t.conns.values() {
            self.inner.enqueue(live, ch, frame.clone());
        }
    }

    /// Closes the connection to a misbehaving peer and refuses it (in both
    /// directions, during the handshake) for `ban`.
    pub fn disconnect(&self, peer: &PublicKey, reason: &str, ban: Duration) {
        warn!(peer = %peer.short(), reason, ban_secs = ban.as_secs_f64(), "disconnecting peer");
        if !ban.is_zero() {
            self.inner.gate.ban(*peer, ban);
        }
        let t = self.inner.table.lock();
        if let Some(live) = t.conns.get(peer) {
            live.ctl
                .close(close_code::DISCONNECTED, &format!("disconnected: {reason}"));
        }
    }

    /// Peers with a connection now, with their addresses.
    pub fn connected_peers(&self) -> Vec<(PublicKey, SocketAddr)> {
        let t = self.inner.table.lock();
        let mut v: Vec<_> = t.conns.iter().map(|(k, l)| (*k, l.addr)).collect();
        v.sort();
        v
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> NetStats {
        let peers = self.inner.table.lock().conns.len();
        self.inner.counters.snapshot(
            self.inner.gate.refused(),
            self.inner.handshakes.pending(),
            peers,
        )
    }

    /// Closes every connection, stops accepting and dialing, and waits (a few
    /// seconds at most) for the tasks to end. The UDP port is released when the
    /// last connection has drained, at most a few seconds after this returns.
    /// Idempotent.
    pub async fn shutdown(&self) {
        if self.inner.shutdown.send_replace(true) {
            return;
        }
        info!(node = %self.inner.local.short(), "network shutting down");
        let conns: Vec<Live> = {
            let mut t = self.inner.table.lock();
            t.conns.drain().map(|(_, l)| l).collect()
        };
        for live in &conns {
            live.ctl.close(close_code::SHUTDOWN, "shutting down");
        }
        drop(conns);
        let endpoint = self.inner.endpoint.lock().take();
        if let Some(ep) = endpoint {
            ep.close(close_code::SHUTDOWN, b"shutting down");
            // quinn's endpoint driver keeps running until every connection has
            // drained, so the close frames go out without waiting; wait a little
            // so that they leave before a process exit. A connection still in its
            // handshake drains for three probe timeouts of the initial RTT
            // estimate (about 3 s), which is not worth waiting for.
            let _ = tokio::time::timeout(Duration::from_secs(1), ep.wait_idle()).await;
        }
        let mut tasks = std::mem::take(&mut *self.inner.tasks.lock());
        let joined = tokio::time::timeout(Duration::from_secs(5), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if joined.is_err() {
            warn!("network tasks still running after shutdown; aborting them");
            tasks.shutdown().await;
        }
    }
}

/// Forwards peer events, in order, to the node's bounded queue. Connection tasks
/// post to an unbounded queue so that they never wait on the node; its growth is
/// bounded by the rate of handshakes and by one flood report per connection and
/// channel per [`NetTuning::flood_report_interval`].
async fn forward_events(
    mut rx: mpsc::UnboundedReceiver<PeerEvent>,
    tx: mpsc::Sender<PeerEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let Some(ev) = ev else { return };
        tokio::select! {
            sent = tx.send(ev) => if sent.is_err() { return },
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Least time between two log lines about refused connection attempts: under
/// a flood, a line per attempt would be the flood again, in the log.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Accepts inbound connections within the handshake limits ([`admit`]); the
/// TLS verifier refuses unpermitted keys.
async fn accept_loop(inner: Arc<Inner>, endpoint: Endpoint) {
    let mut refused_since_log: u64 = 0;
    let mut last_log: Option<std::time::Instant> = None;
    while let Some(incoming) = endpoint.accept().await {
        let remote = incoming.remote_address();
        let validated = incoming.remote_address_validated();
        let slot = match inner.handshakes.admit(remote.ip(), validated) {
            Admission::Accept(slot) => slot,
            Admission::Deny(Verdict::Retry) => {
                // Stateless: the attempt holds nothing until the client comes
                // back with the token, which proves its address. quinn may
                // always retry an unvalidated attempt; refuse if it may not.
                match incoming.retry() {
                    Ok(()) => inner.counters.handshake_retry(),
                    Err(e) => e.into_incoming().refuse(),
                }
                continue;
            }
            Admission::Deny(verdict) => {
                let why = if verdict == Verdict::RefuseSource {
                    inner.counters.handshake_refused_per_ip();
                    "too many handshakes in progress from this address"
                } else {
                    inner.counters.handshake_refused_busy();
                    "too many handshakes in progress"
                };
                refused_since_log += 1;
                if last_log.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_INTERVAL) {
                    warn!(
                        %remote,
                        refused_since_last_report = refused_since_log,
                        "{why}; refusing connections"
                    );
                    refused_since_log = 0;
                    last_log = Some(std::time::Instant::now());
                } else {
                    debug!(%remote, "{why}; refusing connection");
                }
                incoming.refuse();
                continue;
            }
        };
        let task_inner = inner.clone();
        let handshake_timeout = inner.tuning.handshake_timeout;
        inner.spawn(async move {
            let connecting = match incoming.accept() {
                Ok(c) => c,
                Err(e) => {
                    debug!(%remote, error = %e, "inbound connection failed");
                    return;
                }
            };
            let conn = match tokio::time::timeout(handshake_timeout, connecting).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    debug!(%remote, error = %e, "inbound handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%remote, "inbound handshake timed out");
                    return;
                }
            };
            drop(slot);
            peer::run(task_inner, conn, Direction::Inbound, None).await;
        });
    }
}

/// Picks an address of `host:port` our socket can reach.
async fn resolve(addr: &str, local: SocketAddr) -> std::io::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr).await?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4() == local.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))
}

/// `d` scaled by a random factor in [1/2, 1), so that nodes restarted together
/// do not dial in lockstep.
fn jitter(d: Duration) -> Duration {
    let f = 0.5 + f64::from(rand_core::OsRng.next_u32() % 1000) / 2000.0;
    d.mul_f64(f)
}

/// Keeps a persistent peer connected: dials whenever it has no connection (in
/// either direction) and is not banned, with capped exponential backoff. The
/// backoff starts over after a connection that lasted at least its cap.
async fn dial_loop(
    inner: Arc<Inner>,
    endpoint: Endpoint,
    client: quinn::ClientConfig,
    peer: PeerAddr,
) {
    let mut shutdown = inner.shutdown.subscribe();
    let mut changed = inner.changed.subscribe();
    let mut backoff = inner.tuning.backoff_initial;
    let mut failures: u32 = 0;
    // When our last dial registered a connection.
    let mut registered_at: Option<std::time::Instant> = None;
    loop {
        // Wait until the peer has no connection and no ban.
        loop {
            if *shutdown.borrow() {
                return;
            }
            changed.borrow_and_update();
            if !inner.is_connected(&peer.key) {
                match inner.gate.banned_until(&peer.key) {
                    None => break,
                    Some(until) => {
                        tokio::select! {
                            _ = tokio::time::sleep_until(until.into()) => continue,
                            _ = shutdown.wait_for(|s| *s) => return,
                        }
                    }
                }
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }

        // The connection was lost: re-dial after the backoff, which grows while
        // connections keep dying young.
        if let Some(at) = registered_at.take() {
            if at.elapsed() >= inner.tuning.backoff_max {
                backoff = inner.tuning.backoff_initial;
            }
        } else {
            match dial_once(&inner, &endpoint, &client, &peer).await {
                Ok(true) => {
                    failures = 0;
                    registered_at = Some(std::time::Instant::now());
                    continue;
                }
                Ok(false) => {}
                Err(e) => {
                    failures = failures.saturating_add(1);
                    // The first failure is worth a line; a peer that stays down
                    // is not worth one every few seconds.
                    if failures == 1 {
                        info!(error = %e, "dial failed; retrying with backoff");
                    } else {
                        debug!(error = %e, failures, "dial failed");
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(jitter(backoff)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        backoff = backoff.saturating_mul(2).min(inner.tuning.backoff_max);
    }
}

#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("cannot resolve: {0}")]
    Resolve(std::io::Error),
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("handshake failed: {0}")]
    Handshake(#[from] quinn::ConnectionError),
    #[error("handshake timed out")]
    Timeout,
}

/// One dial. On a completed handshake the connection runs in its own task;
/// returns whether it was registered as the peer's connection.
async fn dial_once(
    inner: &Arc<Inner>,
    endpoint: &Endpoint,
    client: &quinn::ClientConfig,
    peer: &PeerAddr,
) -> Result<bool, DialError> {
    let addr = resolve(&peer.addr, inner.local_addr)
        .await
        .map_err(DialError::Resolve)?;
    let connecting = endpoint.connect_with(client.clone(), addr, tls::SERVER_NAME)?;
    let conn = tokio::time::timeout(inner.tuning.handshake_timeout, connecting)
        .await
        .map_err(|_| DialError::Timeout)??;
    let (tx, rx) = oneshot::channel();
    inner.spawn(peer::run(inner.clone(), conn, Direction::Outbound, Some(tx)).in_current_span());
    Ok(rx.await.unwrap_or(false))
}
