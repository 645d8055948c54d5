//! One connection to a peer: stream setup, registration, and the reader and
//! writer task of each channel.
//!
//! Stream layout: right after the TLS handshake each side opens one
//! unidirectional stream per channel and writes a 9-byte header on it (the
//! channel code, then the sender's incarnation as a big-endian `u64`); then it
//! accepts the peer's four streams. Only when all four have arrived is the
//! connection registered: the peer's streams prove that it accepted our
//! certificate too (in TLS 1.3 the client finishes its handshake before the
//! server has checked the client's certificate). The streams then live as long
//! as the connection and carry length-prefixed frames (see [`super::wire`]).
//!
//! Retirement: when two connections to one peer exist (both nodes dialed at
//! once, or a peer re-dialed), the one not kept is retired rather than closed,
//! so that nothing already sent on it is lost: it leaves the peer table (new
//! messages take the kept connection), its writers send what was queued and
//! finish their streams, its readers deliver everything up to the end of the
//! peer's streams, and it is closed once both directions have drained. A clean
//! end of a peer's stream means the peer retired the connection.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use quinn::{
    Connection, ConnectionError, ReadError, ReadExactError, RecvStream, SendStream, VarInt,
    WriteError,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument as _, debug, info, info_span, warn};

use super::wire::{self, LEN_PREFIX, WireError};
use super::{Channel, Inner, tls};
use crate::types::PublicKey;

/// Bytes of a stream header: channel code and incarnation.
pub(crate) const HEADER_LEN: usize = 9;

/// Frames written to a stream in one go when several are queued.
const WRITE_BATCH: usize = 64;

/// First allocation for a frame body that arrives in pieces; it grows with the
/// bytes actually received, never beyond the announced (and checked) length.
const FIRST_READ_ALLOC: usize = 64 * 1024;

/// Longest close reason sent to the peer (it must fit in one packet).
const MAX_CLOSE_REASON: usize = 200;

/// Application close codes.
pub(crate) mod close_code {
    use quinn::VarInt;

    /// The node is shutting down.
    pub(crate) const SHUTDOWN: VarInt = VarInt::from_u32(0);
    /// Another connection between the same two nodes is kept instead.
    pub(crate) const DUPLICATE: VarInt = VarInt::from_u32(1);
    /// The peer broke the wire protocol (bad frame, bad stream setup).
    pub(crate) const PROTOCOL: VarInt = VarInt::from_u32(2);
    /// The node disconnected the peer (misbehaviour, ban).
    pub(crate) const DISCONNECTED: VarInt = VarInt::from_u32(3);
    /// The peer may not connect (not permitted, banned).
    pub(crate) const REFUSED: VarInt = VarInt::from_u32(4);
}

/// Who opened a connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// The peer dialed us.
    Inbound,
    /// We dialed the peer.
    Outbound,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "in",
            Direction::Outbound => "out",
        }
    }
}

/// How far a connection's retirement has got.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Drain {
    /// No longer the peer's connection: send nothing new, finish, read to the end.
    retired: bool,
    /// Readers that reached the end of the peer's stream.
    readers_done: usize,
    /// Writers whose finished stream the peer acknowledged.
    writers_done: usize,
}

impl Drain {
    fn drained(&self) -> bool {
        self.readers_done == Channel::ALL.len() && self.writers_done == Channel::ALL.len()
    }
}

/// A connection, why we closed it if we did, and its retirement.
pub(crate) struct ConnCtl {
    pub(crate) id: u64,
    pub(crate) conn: Connection,
    reason: OnceLock<String>,
    drain: watch::Sender<Drain>,
}

impl ConnCtl {
    /// Marks the connection retired (see the module documentation).
    pub(crate) fn retire(&self) {
        self.drain.send_modify(|d| d.retired = true);
    }

    fn is_retired(&self) -> bool {
        self.drain.borrow().retired
    }

    /// Closes the connection; the first reason given is the one reported.
    pub(crate) fn close(&self, code: VarInt, reason: &str) {
        let _ = self.reason.set(reason.to_owned());
        let mut end = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.conn.close(code, &reason.as_bytes()[..end]);
    }
}

/// A registered connection: the one that carries traffic to its peer.
pub(crate) struct Live {
    pub(crate) ctl: Arc<ConnCtl>,
    pub(crate) addr: SocketAddr,
    /// The node that dialed it (used to pick one of two simultaneous connections).
    pub(crate) dialer: PublicKey,
    /// The peer's incarnation (a random number drawn at each start).
    pub(crate) incarnation: u64,
    /// Outbound queue of each channel, by [`Channel::index`].
    pub(crate) queues: Vec<mpsc::Sender<Bytes>>,
}

/// Why a connection is not registered.
#[derive(Debug)]
pub(crate) enum Rejected {
    /// The other connection to the same peer is kept.
    Duplicate,
    /// The peer may not connect now.
    Refused(&'static str),
}

/// The header of a stream of `channel`.
pub(crate) fn stream_header(channel: Channel, incarnation: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = channel.code();
    h[1..].copy_from_slice(&incarnation.to_be_bytes());
    h
}

#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("stream write: {0}")]
    Write(#[from] WriteError),
    #[error("stream read: {0}")]
    Read(#[from] ReadExactError),
    #[error("stream closed during setup")]
    Closed(#[from] quinn::ClosedStream),
    #[error("{0}")]
    Protocol(String),
}

async fn open_streams(conn: &Connection, incarnation: u64) -> Result<Vec<SendStream>, SetupError> {
    let mut out = Vec::with_capacity(Channel::ALL.len());
    for ch in Channel::ALL {
        let mut s = conn.open_uni().await?;
        s.set_priority(ch.priority())?;
        s.write_all(&stream_header(ch, incarnation)).await?;
        out.push(s);
    }
    Ok(out)
}

/// Accepts the peer's four streams; returns them in channel order, with the
/// peer's incarnation.
async fn accept_streams(conn: &Connection) -> Result<(Vec<RecvStream>, u64), SetupError> {
    let mut slots: [Option<RecvStream>; 4] = Default::default();
    let mut incarnation = None;
    for _ in Channel::ALL {
        let mut r = conn.accept_uni().await?;
        let mut h = [0u8; HEADER_LEN];
        r.read_exact(&mut h).await?;
        let ch = Channel::from_code(h[0])
            .ok_or_else(|| SetupError::Protocol(format!("unknown channel code {}", h[0])))?;
        let mut inc = [0u8; 8];
        inc.copy_from_slice(&h[1..]);
        let inc = u64::from_be_bytes(inc);
        if *incarnation.get_or_insert(inc) != inc {
            return Err(SetupError::Protocol(
                "stream headers name different incarnations".into(),
            ));
        }
        let slot = &mut slots[ch.index()];
        if slot.is_some() {
            return Err(SetupError::Protocol(format!("second {ch} stream")));
        }
        *slot = Some(r);
    }
    let incarnation =
        incarnation.ok_or_else(|| SetupError::Protocol("no stream arrived".into()))?;
    Ok((slots.into_iter().flatten().collect(), incarnation))
}

/// Runs a connection from the end of its TLS handshake to its close. If
/// given, `registered` receives `true` as soon as the connection is the
/// peer's; it is dropped unsent if the connection is not kept.
pub(crate) async fn run(
    inner: Arc<Inner>,
    conn: Connection,
    dir: Direction,
    registered: Option<oneshot::Sender<bool>>,
) {
    let remote = conn.remote_address();
    let peer = match tls::peer_of(&conn) {
        Ok(p) => p,
        Err(e) => {
            warn!(%remote, error = %e, "closing connection without a usable identity");
            conn.close(close_code::REFUSED, b"no usable identity");
            return;
        }
    };
    let span = info_span!("peer", peer = %peer.short(), %remote, dir = dir.as_str());
    run_peer(inner, conn, dir, peer, remote, registered)
        .instrument(span)
        .await
}

async fn run_peer(
    inner: Arc<Inner>,
    conn: Connection,
    dir: Direction,
    peer: PublicKey,
    remote: SocketAddr,
    registered: Option<oneshot::Sender<bool>>,
) {
    let ctl = Arc::new(ConnCtl {
        id: inner.next_conn_id(),
        conn,
        reason: OnceLock::new(),
        drain: watch::Sender::new(Drain::default()),
    });
    // The verifier checked the key; a ban may have begun since.
    if let Err(r) = inner.gate.check(&peer) {
        debug!(reason = r.as_str(), "refusing connection");
        ctl.close(close_code::REFUSED, r.as_str());
        return;
    }

    let setup = async {
        tokio::try_join!(
            open_streams(&ctl.conn, inner.incarnation),
            accept_streams(&ctl.conn)
        )
    };
    let (sends, (recvs, incarnation)) =
        match tokio::time::timeout(inner.tuning.handshake_timeout, setup).await {
            Ok(Ok(streams)) => streams,
            Ok(Err(SetupError::Connection(ConnectionError::ApplicationClosed(c))))
                if c.error_code == close_code::DUPLICATE =>
            {
                debug!("peer keeps another connection to us");
                return;
            }
            Ok(Err(e)) => {
                info!(error = %e, "connection setup failed");
                ctl.close(close_code::PROTOCOL, &format!("stream setup failed: {e}"));
                return;
            }
            Err(_) => {
                info!("connection setup timed out");
                ctl.close(close_code::PROTOCOL, "stream setup timed out");
                return;
            }
        };

    let mut queues = Vec::with_capacity(Channel::ALL.len());
    let mut rxs = Vec::with_capacity(Channel::ALL.len());
    for _ in Channel::ALL {
        let (tx, rx) = mpsc::channel(inner.queue_len);
        queues.push(tx);
        rxs.push(rx);
    }
    let live = Live {
        ctl: ctl.clone(),
        addr: remote,
        dialer: match dir {
            Direction::Outbound => inner.local,
            Direction::Inbound => peer,
        },
        incarnation,
        queues,
    };
    // A rejected duplicate is drained like a replaced one: the peer may have
    // registered it and sent on it already. Its queues were dropped with `live`,
    // so its writers just finish their streams.
    match inner.register(peer, live) {
        Ok(()) => {
            info!("connected");
            if let Some(tx) = registered {
                let _ = tx.send(true);
            }
        }
        Err(Rejected::Duplicate) => {
            debug!("keeping the other connection to this peer; draining this one");
            ctl.retire();
        }
        Err(Rejected::Refused(why)) => {
            debug!(reason = why, "refusing connection");
            ctl.close(close_code::REFUSED, why);
            return;
        }
    }

    for ((ch, send), rx) in Channel::ALL.into_iter().zip(sends).zip(rxs) {
        let task = write_loop(inner.clone(), ctl.clone(), ch, send, rx);
        inner.spawn(task.instrument(info_span!("out", channel = %ch)));
    }
    for (ch, recv) in Channel::ALL.into_iter().zip(recvs) {
        let task = read_loop(inner.clone(), ctl.clone(), peer, ch, recv);
        inner.spawn(task.instrument(info_span!("in", channel = %ch)));
    }

    let mut drain = ctl.drain.subscribe();
    let retired = tokio::select! {
        _ = ctl.conn.closed() => false,
        r = drain.wait_for(|d| d.retired) => r.is_ok(),
    };
    if retired {
        debug!("connection retired; draining it");
        let tuning = &inner.tuning;
        let drained = async {
            let _ = drain.wait_for(Drain::drained).await;
            tokio::time::sleep(tuning.retire_linger).await;
        };
        tokio::select! {
            _ = drained => ctl.close(close_code::DUPLICATE, "duplicate connection drained"),
            _ = tokio::time::sleep(tuning.retire_timeout) => {
                ctl.close(close_code::DUPLICATE, "duplicate connection did not drain in time")
            }
            _ = ctl.conn.closed() => {}
        }
    }
    let err = ctl.conn.closed().await;
    let (reason, grace) = match ctl.reason.get() {
        Some(r) => (r.clone(), false),
        None => describe(&err),
    };
    if retired {
        debug!(%reason, "retired connection closed");
    } else {
        info!(%reason, "connection closed");
    }
    // A no-op for a retired connection: it left the table when retired.
    inner.deregister(peer, ctl.id, reason, grace);
}

/// A human reason for a close we did not initiate, and whether the peer closed
/// it as a duplicate (then it keeps another connection to us, which should
/// register shortly).
fn describe(err: &ConnectionError) -> (String, bool) {
    match err {
        ConnectionError::ApplicationClosed(c) if c.error_code == close_code::DUPLICATE => {
            ("peer kept another connection".into(), true)
        }
        ConnectionError::ApplicationClosed(c) => (
            format!(
                "closed by peer (code {}): {}",
                c.error_code,
                String::from_utf8_lossy(&c.reason)
            ),
            false,
        ),
        ConnectionError::TimedOut => ("idle timeout".into(), false),
        other => (other.to_string(), false),
    }
}

/// Writes queued frames of one channel to the peer until the connection ends,
/// or the queue is dropped (the connection was retired), then finishes the
/// stream.
async fn write_loop(
    inner: Arc<Inner>,
    ctl: Arc<ConnCtl>,
    ch: Channel,
    mut send: SendStream,
    mut rx: mpsc::Receiver<Bytes>,
) {
    let mut batch: Vec<Bytes> = Vec::with_capacity(WRITE_BATCH);
    loop {
        batch.clear();
        let n = tokio::select! {
            n = rx.recv_many(&mut batch, WRITE_BATCH) => n,
            _ = ctl.conn.closed() => return,
        };
        if n == 0 {
            // The queue was dropped: the connection is retired (or shutting
            // down). Everything queued is written; finish the stream and wait
            // until the peer has it all.
            if send.finish().is_err() {
                return;
            }
            let acked = tokio::select! {
                r = send.stopped() => r.is_ok(),
                _ = ctl.conn.closed() => false,
            };
            if acked {
                ctl.drain.send_modify(|d| d.writers_done += 1);
            }
            return;
        }
        let bytes: usize = batch.iter().map(Bytes::len).sum();
        match send.write_all_chunks(&mut batch).await {
            Ok(()) => inner.counters.out(ch, n, bytes),
            Err(WriteError::ConnectionLost(_)) => return,
            Err(e) => {
                warn!(error = %e, "stream write failed");
                ctl.close(
                    close_code::PROTOCOL,
                    &format!("{ch} stream write failed: {e}"),
                );
                return;
            }
        }
    }
}

enum FrameError {
    /// The stream or connection failed (not a malformed frame).
    Stream(ReadError),
    /// The peer sent a bad frame.
    Wire(WireError),
}

/// Reads one frame body. `Ok(None)`: the peer finished the stream between
/// frames.
async fn read_frame(
    recv: &mut RecvStream,
    ch: Channel,
    limits: &super::ChannelLimits,
) -> Result<Option<Bytes>, FrameError> {
    let mut prefix = [0u8; LEN_PREFIX];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(ReadExactError::FinishedEarly(got)) => {
            return Err(FrameError::Wire(WireError::Truncated {
                channel: ch,
                expected: LEN_PREFIX,
                got,
            }));
        }
        Err(ReadExactError::ReadError(e)) => return Err(FrameError::Stream(e)),
    }
    let len = wire::check_len(ch, u32::from_be_bytes(prefix), limits).map_err(FrameError::Wire)?;
    let mut buf: Vec<u8> = Vec::new();
    while buf.len() < len {
        let chunk = match recv.read_chunk(len - buf.len(), true).await {
            Ok(Some(c)) => c.bytes,
            Ok(None) => {
                return Err(FrameError::Wire(WireError::Truncated {
                    channel: ch,
                    expected: len,
                    got: buf.len(),
                }));
            }
            Err(e) => return Err(FrameError::Stream(e)),
        };
        if buf.is_empty() && chunk.len() == len {
            // The whole body in one piece: no copy.
            return Ok(Some(chunk));
        }
        let needed = buf.len() + chunk.len();
        if needed > buf.capacity() {
            let target = needed
                .max(buf.capacity().saturating_mul(2))
                .max(FIRST_READ_ALLOC)
                .min(len);
            buf.reserve_exact(target - buf.len());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(Bytes::from(buf)))
}

/// A token bucket: `rate` messages per second, bursts of twice that.
pub(crate) struct RateLimit {
    rate: f64,
    tokens: f64,
    last: std::time::Instant,
}

impl RateLimit {
    /// A full bucket; `rate` 0 means no limit.
    pub(crate) fn new(rate: usize, now: std::time::Instant) -> RateLimit {
        RateLimit {
            rate: rate as f64,
            tokens: 2.0 * rate as f64,
            last: now,
        }
    }

    /// Takes a token if there is one.
    pub(crate) fn allow(&mut self, now: std::time::Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(2.0 * self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Reads frames of one channel, decodes them and hands them to the node, until
/// the peer finishes the stream or the connection ends. When the node's queue
/// of this channel is full, waits: the stream stops being read and QUIC flow
/// control pushes back on this peer's stream only.
async fn read_loop(
    inner: Arc<Inner>,
    ctl: Arc<ConnCtl>,
    peer: PublicKey,
    ch: Channel,
    mut recv: RecvStream,
) {
    let tx = inner.inbound[ch.index()].clone();
    let mut limit = RateLimit::new(inner.tuning.rate_limit.get(ch), std::time::Instant::now());
    let mut dropped: u64 = 0;
    let mut reported_at: Option<std::time::Instant> = None;
    loop {
        let body = match read_frame(&mut recv, ch, &inner.limits).await {
            Ok(Some(body)) => body,
            Ok(None) => {
                // Everything the peer sent on this stream is delivered.
                ctl.drain.send_modify(|d| d.readers_done += 1);
                if !ctl.is_retired() {
                    debug!("peer finished its stream: it retired this connection");
                    inner.peer_retired(peer, &ctl);
                }
                return;
            }
            Err(FrameError::Stream(ReadError::ConnectionLost(_))) => return,
            Err(FrameError::Stream(e)) => {
                warn!(error = %e, "stream read failed");
                ctl.close(
                    close_code::PROTOCOL,
                    &format!("{ch} stream read failed: {e}"),
                );
                return;
            }
            Err(FrameError::Wire(e)) => {
                inner.bad_frame(&ctl, &peer, &e);
                return;
            }
        };
        inner.counters.bytes_in(ch, body.len() + LEN_PREFIX);
        let msg = match wire::decode_body(ch, body) {
            Ok(msg) => msg,
            Err(e) => {
                inner.bad_frame(&ctl, &peer, &e);
                return;
            }
        };
        inner.counters.msg_in(ch);
        let now = std::time::Instant::now();
        if !limit.allow(now) {
            // Dropped before the node's queue: a flooding peer costs a decode,
            // never memory, and never delays the other peers' messages.
            inner.counters.rate_limited(ch);
            dropped += 1;
            let due = reported_at
                .is_none_or(|at| now.duration_since(at) >= inner.tuning.flood_report_interval);
            if due {
                debug!(dropped, "peer exceeds the channel's message rate");
                let _ = inner.events.send(super::PeerEvent::Flooding {
                    peer,
                    channel: ch,
                    dropped,
                });
                reported_at = Some(now);
                dropped = 0;
            }
            continue;
        }
        tokio::select! {
            sent = tx.send((peer, msg)) => {
                // A node that dropped this receiver does not want the channel;
                // keep reading so the peer is not held back.
                let _ = sent;
            }
            _ = ctl.conn.closed() => return,
        }
    }
}

#[cfg(test)]
mod rate_tests {
    use std::time::{Duration, Instant};

    use super::RateLimit;

    #[test]
    fn bursts_twice_the_rate_then_refills() {
        let t0 = Instant::now();
        let mut l = RateLimit::new(10, t0);
        let allowed = (0..100).filter(|_| l.allow(t0)).count();
        assert_eq!(allowed, 20);
        // Half a second brings five more.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| l.allow(t1)).count(), 5);
        // Never more than the burst, however long the pause.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| l.allow(t2)).count(), 20);
        let mut none = RateLimit::new(0, t0);
        assert!((0..10_000).all(|_| none.allow(t0)));
    }
}
