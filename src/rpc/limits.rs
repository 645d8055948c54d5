//! What one client may hold of the gRPC server: connections, over all clients
//! and per client address, and streaming calls per client address. A client
//! that opens connections or subscriptions in a loop gets refused at its own
//! limit instead of taking the server's share of every other client.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use super::quota::{IdentityStream, Quotas};
use crate::config::RpcConfig;
use crate::pki::Identity;

/// The limits of one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Client connections open at once, over all clients.
    pub max_connections: usize,
    /// Client connections open at once from one IP address.
    pub max_connections_per_address: usize,
    /// Streaming calls (subscriptions, block ranges, submit streams) open at
    /// once from one IP address.
    pub max_streams_per_address: usize,
    /// Largest request accepted, in bytes.
    pub max_request_bytes: usize,
}

impl Limits {
    /// The limits a node's `[rpc]` section sets.
    pub fn from_config(c: &RpcConfig) -> Limits {
        Limits {
            max_connections: c.max_connections,
            max_connections_per_address: c.max_connections_per_address,
            max_streams_per_address: c.max_streams_per_address,
            max_request_bytes: c.max_request_bytes,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::from_config(&RpcConfig::default())
    }
}

/// The address a limit counts: IPv4 clients reaching an IPv6 socket count as
/// their IPv4 address.
fn client_ip(addr: &SocketAddr) -> IpAddr {
    addr.ip().to_canonical()
}

/// Counts of something held per client address, each at most `max`.
#[derive(Clone, Debug)]
pub struct PerAddress {
    max: usize,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One unit held by one address, given back on drop.
#[derive(Debug)]
pub struct AddressSlot {
    ip: IpAddr,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut held = self.held.lock();
        if let Some(n) = held.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

impl PerAddress {
    /// At most `max` per address.
    pub fn new(max: usize) -> PerAddress {
        PerAddress {
            max,
            held: Arc::default(),
        }
    }

    /// No limit at all (services built outside a server, as in tests).
    pub fn unlimited() -> PerAddress {
        PerAddress::new(usize::MAX)
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// One more for `ip`, unless it holds `max` already.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<AddressSlot> {
        let mut held = self.held.lock();
        let n = held.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            ip,
            held: self.held.clone(),
        })
    }

    /// What `ip` holds now.
    pub fn held_by(&self, ip: IpAddr) -> usize {
        let held = self.held.lock();
        held.get(&ip).copied().unwrap_or(0)
    }
}

/// The streaming calls of each client address and of each certificate, and
/// the certificates' quotas ([`Quotas`]). A call without a known address (not
/// over TCP) is not counted by address; one without a certificate (a
/// plaintext listener) not by identity.
#[derive(Clone, Debug)]
pub struct StreamSlots {
    per_address: PerAddress,
    quotas: Option<Quotas>,
}

impl Default for StreamSlots {
    fn default() -> StreamSlots {
        StreamSlots {
            per_address: PerAddress::unlimited(),
            quotas: None,
        }
    }
}

/// What a streaming call holds while it lasts: its address's slot, its
/// certificate's, and the end of the certificate's validity, where the stream
/// ends (a certificate is checked when a call opens, and a long stream must
/// not outlive it).
#[derive(Debug)]
pub struct StreamGuard {
    _address: Option<AddressSlot>,
    _identity: Option<IdentityStream>,
    expires: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    expired: bool,
}

impl StreamGuard {
    /// A guard holding nothing and never expiring (streams built outside a
    /// server, as in tests).
    pub fn none() -> StreamGuard {
        StreamGuard {
            _address: None,
            _identity: None,
            expires: None,
            expired: false,
        }
    }

    /// Ready once the certificate has expired: with the status that ends
    /// the stream the first time, then with `None` for ever (the end).
    pub fn poll_expired(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<tonic::Status>> {
        if self.expired {
            return std::task::Poll::Ready(None);
        }
        let fired = match self.expires.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx).is_ready(),
            None => false,
        };
        if !fired {
            return std::task::Poll::Pending;
        }
        self.expired = true;
        std::task::Poll::Ready(Some(tonic::Status::unauthenticated(
            "the client certificate expired during the stream; reconnect with a valid one",
        )))
    }
}

/// When a certificate valid until `not_after` (unix seconds) stops being
/// valid, on the runtime's clock.
fn deadline_of(not_after: u64) -> tokio::time::Instant {
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let left = Duration::from_secs(not_after.saturating_sub(now_unix));
    // Ten years at most: far enough, and no overflow of the instant.
    tokio::time::Instant::now() + left.min(Duration::from_secs(10 * 365 * 86_400))
}

impl StreamSlots {
    /// At most `max` streaming calls per address.
    pub fn new(max: usize) -> StreamSlots {
        StreamSlots {
            per_address: PerAddress::new(max),
            quotas: None,
        }
    }

    /// The same, and each certificate held to `quotas`.
    pub fn with_quotas(self, quotas: Quotas) -> StreamSlots {
        StreamSlots {
            quotas: Some(quotas),
            ..self
        }
    }

    /// `n` bytes of transactions submitted by `caller`: RESOURCE_EXHAUSTED
    /// beyond its quota.
    pub fn submit_bytes(&self, caller: Option<&Identity>, n: usize) -> Result<(), tonic::Status> {
        match (&self.quotas, caller) {
            (Some(q), Some(id)) => q.submit_bytes(id, n, Instant::now()),
            _ => Ok(()),
        }
    }

    /// What a streaming call from `remote` by `caller` holds until the
    /// returned value is dropped (with the response stream);
    /// RESOURCE_EXHAUSTED if the address or the certificate holds its limit.
    pub fn acquire(
        &self,
        remote: Option<SocketAddr>,
        caller: Option<&Identity>,
    ) -> Result<StreamGuard, tonic::Status> {
        let address = match remote {
            None => None,
            Some(addr) => {
                let ip = client_ip(&addr);
                match self.per_address.try_acquire(ip) {
                    Some(slot) => Some(slot),
                    None => {
                        tracing::debug!(client = %ip, max = self.per_address.max(), "too many gRPC streams from one address");
                        return Err(tonic::Status::resource_exhausted(format!(
                            "{ip} has {} streaming calls open, the most one address may; close one first",
                            self.per_address.max()
                        )));
                    }
                }
            }
        };
        let identity = match (&self.quotas, caller) {
            (Some(q), Some(id)) => Some(q.stream(id, Instant::now())?),
            _ => None,
        };
        Ok(StreamGuard {
            _address: address,
            _identity: identity,
            expires: caller.map(|id| Box::pin(tokio::time::sleep_until(deadline_of(id.not_after)))),
            expired: false,
        })
    }
}

/// How often a refusal of one address is logged at most, so that a client
/// opening connections in a loop cannot flood the log.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Addresses whose last warning is remembered; beyond, the memory is cleared.
const WARNED_ADDRESSES: usize = 4096;

/// Logs refusals, one line per address every [`WARN_EVERY`] at most, with
/// the number refused since the last line.
#[derive(Default)]
struct Warnings {
    last: HashMap<IpAddr, (Instant, u64)>,
}

impl Warnings {
    fn refused(&mut self, ip: IpAddr, why: &'static str, max: usize) {
        let now = Instant::now();
        if self.last.len() >= WARNED_ADDRESSES && !self.last.contains_key(&ip) {
            self.last.clear();
        }
        let entry = self.last.entry(ip).or_insert((now - WARN_EVERY, 0));
        entry.1 += 1;
        if now.duration_since(entry.0) >= WARN_EVERY {
            tracing::warn!(client = %ip, refused = entry.1, max, "{why}; closing the connection");
            *entry = (now, 0);
        }
    }
}

/// A client connection holding its slots until it closes.
pub struct Limited {
    io: tokio::net::TcpStream,
    _slot: tokio::sync::OwnedSemaphorePermit,
    _address: AddressSlot,
}

impl Limited {
    /// The client's address, for logs.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.io.peer_addr().ok()
    }
}

impl tonic::transport::server::Connected for Limited {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl tokio::io::AsyncRead for Limited {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Limited {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Accepted connections, at most `limits.max_connections` open at once and
/// `limits.max_connections_per_address` from one IP address: a connection
/// beyond either is closed at once (and logged with its address), so that a
/// client opening connections in a loop can neither make the node hold
/// unboundedly many nor take the slots of every other client.
pub fn limited_incoming(
    listener: TcpListener,
    limits: Limits,
) -> impl futures::Stream<Item = std::io::Result<Limited>> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let per_address = PerAddress::new(limits.max_connections_per_address);
    let warnings = Warnings::default();
    futures::stream::unfold(
        (listener, slots, per_address, warnings),
        move |(listener, slots, per_address, mut warnings)| async move {
            loop {
                let (io, addr) = match listener.accept().await {
                    Ok(c) => c,
                    // A failed accept (out of descriptors, a reset connection) is
                    // not the end of the server.
                    Err(e) => {
                        tracing::warn!(error = %e, "gRPC accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let ip = client_ip(&addr);
                let Some(address) = per_address.try_acquire(ip) else {
                    warnings.refused(
                        ip,
                        "too many gRPC connections from this address",
                        per_address.max(),
                    );
                    drop(io);
                    continue;
                };
                match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let _ = io.set_nodelay(true);
                        let conn = Limited {
                            io,
                            _slot: slot,
                            _address: address,
                        };
                        return Some((Ok(conn), (listener, slots, per_address, warnings)));
                    }
                    Err(_) => {
                        warnings.refused(ip, "too many gRPC connections", limits.max_connections);
                        drop(io);
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;
    use tokio::io::AsyncReadExt as _;

    fn limits(total: usize, per_address: usize) -> Limits {
        Limits {
            max_connections: total,
            max_connections_per_address: per_address,
            ..Limits::default()
        }
    }

    /// Connects to `to` from the loopback address `from`.
    async fn connect_from(from: [u8; 4], to: SocketAddr) -> tokio::net::TcpStream {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::from((from, 0))).unwrap();
        s.connect(to).await.unwrap()
    }

    /// Whether the server closed `s` (within two seconds).
    async fn closed(s: &mut tokio::net::TcpStream) -> bool {
        let mut buf = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) | Err(_) => false,
        }
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = Box::pin(limited_incoming(listener, limits(1, 1)));
        let _first = tokio::net::TcpStream::connect(addr).await.unwrap();
        let held = incoming.next().await.unwrap().unwrap();
        // The second is accepted and closed while the first holds the slot.
        let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accept_more = tokio::spawn(async move {
            let next = incoming.next().await;
            (next.map(|r| r.is_ok()), incoming)
        });
        assert!(
            closed(&mut second).await,
            "the second connection was not closed"
        );
        // Once the first closes, a new connection is served.
        drop(held);
        let _third = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (got, _incoming) = accept_more.await.unwrap();
        assert_eq!(got, Some(true));
    }

    #[tokio::test]
    async fn one_address_cannot_take_every_slot() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = limited_incoming(listener, limits(10, 3));
        let (tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut incoming = Box::pin(incoming);
            while let Some(c) = incoming.next().await {
                let _ = tx.send(c.unwrap());
            }
        });
        let mut from_a = Vec::new();
        for _ in 0..5 {
            from_a.push(connect_from([127, 0, 0, 2], addr).await);
        }
        let verdicts = futures::future::join_all(from_a.iter_mut().map(closed)).await;
        let refused = verdicts.iter().filter(|c| **c).count();
        assert_eq!(refused, 2, "two of five from one address are closed");
        // Another address is served meanwhile.
        let mut from_b = connect_from([127, 0, 0, 3], addr).await;
        assert!(!closed(&mut from_b).await);
        let mut held = Vec::new();
        while let Ok(c) = accepted.try_recv() {
            held.push(c);
        }
        assert_eq!(held.len(), 4);
        // A connection of the first address closes: it may open one more.
        let first_a = held
            .iter()
            .position(|c| c.io.peer_addr().unwrap().ip() == IpAddr::from([127, 0, 0, 2]))
            .unwrap();
        held.remove(first_a);
        let mut again = connect_from([127, 0, 0, 2], addr).await;
        assert!(!closed(&mut again).await);
    }

    #[test]
    fn stream_slots_count_per_address_and_come_back() {
        let slots = StreamSlots::new(2);
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let a2: SocketAddr = "10.0.0.1:5001".parse().unwrap();
        let b: SocketAddr = "[::ffff:10.0.0.2]:5000".parse().unwrap();
        let s1 = slots.acquire(Some(a), None).unwrap();
        let _s2 = slots.acquire(Some(a2), None).unwrap();
        let e = slots.acquire(Some(a), None).unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(e.message().contains("10.0.0.1"), "{}", e.message());
        // Another address, and a call with no address, are not limited.
        let _s3 = slots.acquire(Some(b), None).unwrap();
        assert_eq!(slots.per_address.held_by("10.0.0.2".parse().unwrap()), 1);
        assert!(slots.acquire(None, None).unwrap()._address.is_none());
        drop(s1);
        assert!(slots.acquire(Some(a), None).is_ok());
    }
}
