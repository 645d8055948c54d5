//! A handshake flood from a stranger's address: connection attempts that
//! answer just enough to get a handshake started and then fall silent, so that
//! the node waits for the rest until its handshake timeout.

use std::io::{self, IoSliceMut};
use std::net::UdpSocket as StdUdpSocket;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, EndpointConfig, Runtime as _, TokioRuntime, UdpPoller};
use rand_core::RngCore as _;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::*;

/// Where the flood comes from: a loopback address other than the nodes'.
const STRANGER: [u8; 4] = [127, 0, 0, 2];

/// A restarted validator must have its connections back within this, flood
/// or not. Reconnecting takes a second or two; the bound is generous so that
/// a loaded machine only makes the test slower.
const RECONNECT: Duration = Duration::from_secs(30);

/// Whether a QUIC v1 packet starting with `first` is a Retry (long header,
/// type 3; header protection leaves these bits in the clear).
fn is_retry(first: u8) -> bool {
    first & 0x80 != 0 && (first >> 4) & 0x3 == 0x3
}

/// The socket of one flood attempt. It lets the client's packets out until the
/// node answers, then drops them; with `answer_retry`, a Retry does not count
/// as an answer (the stranger owns its address and proves it). The node's
/// packets still reach the client, which so learns when the node gives up.
#[derive(Debug)]
struct StallSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    answer_retry: bool,
    mute: AtomicBool,
}

impl AsyncUdpSocket for StallSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        if self.mute.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(self.inner.poll_recv(cx, bufs, meta))?;
        for (buf, m) in bufs.iter().zip(meta.iter()).take(n) {
            for datagram in buf[..m.len].chunks(m.stride.max(1)) {
                let retry = datagram.first().is_some_and(|b| is_retry(*b));
                if !(retry && self.answer_retry) {
                    self.mute.store(true, Ordering::Relaxed);
                }
            }
        }
        Poll::Ready(Ok(n))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// A client endpoint on a port of [`STRANGER`] whose attempts stall.
fn stalling_endpoint(answer_retry: bool) -> io::Result<(Endpoint, Arc<StallSocket>)> {
    let sock = StdUdpSocket::bind(SocketAddr::from((STRANGER, 0)))?;
    sock.set_nonblocking(true)?;
    let socket = Arc::new(StallSocket {
        inner: TokioRuntime.wrap_udp_socket(sock)?,
        answer_retry,
        mute: AtomicBool::new(false),
    });
    let endpoint = Endpoint::new_with_abstract_socket(
        EndpointConfig::default(),
        None,
        socket.clone(),
        Arc::new(TokioRuntime),
    )?;
    Ok((endpoint, socket))
}

/// One attempt on `target`. Returns whether the node started a handshake for
/// it (and so held a slot until it gave up); `held` counts such attempts while
/// they last.
async fn stall_once(
    endpoint: &Endpoint,
    socket: &StallSocket,
    target: SocketAddr,
    client: &quinn::ClientConfig,
    held: &AtomicUsize,
) -> io::Result<bool> {
    socket.mute.store(false, Ordering::Relaxed);
    let connecting = endpoint
        .connect_with(client.clone(), target, SERVER_NAME)
        .map_err(io::Error::other)?;
    // The client completes its side once it has the node's first flight
    // (its own last flight is dropped): from then on the node waits for us.
    // No answer within a second (the node is down, or our answer to its Retry
    // was dropped): start over.
    let Ok(Ok(conn)) = timeout(Duration::from_secs(1), connecting).await else {
        return Ok(false);
    };
    // The node may also drop a handshake without a word (at its idle
    // timeout), which we would not notice: stop waiting after a while and
    // start anew. The node holds the abandoned one until its own timeout.
    held.fetch_add(1, Ordering::Relaxed);
    let _ = timeout(Duration::from_secs(5), conn.closed()).await;
    held.fetch_sub(1, Ordering::Relaxed);
    Ok(true)
}

/// Attempts from [`STRANGER`] that never complete, kept up against each
/// target, each from its own port: an attempt the node gives up on is
/// replaced at once, one the node refuses after a tenth of a second or so,
/// as an attacker would to keep the slots taken. Half of them answer Retries,
/// half do not (as from spoofed addresses).
struct Flood {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    held: Arc<Vec<AtomicUsize>>,
}

/// A random duration in `[from, from + spread)` milliseconds.
fn millis(from: u64, spread: u32) -> Duration {
    Duration::from_millis(from + u64::from(rand_core::OsRng.next_u32() % spread))
}

impl Flood {
    fn start(stranger: &Keypair, targets: &[(PublicKey, SocketAddr)], per_target: usize) -> Flood {
        let stop = watch::Sender::new(false);
        let held: Arc<Vec<AtomicUsize>> =
            Arc::new(targets.iter().map(|_| AtomicUsize::new(0)).collect());
        let id = Identity::new(stranger).unwrap();
        let mut tasks = JoinSet::new();
        for (t, (target_key, addr)) in targets.iter().copied().enumerate() {
            let gate = Arc::new(PeerGate::new(
                stranger.public(),
                [target_key].into_iter().collect(),
            ));
            let mut client = quinn::ClientConfig::new(Arc::new(
                tls::client_config(&id, gate, Some(target_key)).unwrap(),
            ));
            client.transport_config(Arc::new(transport(&NetTuning::default()).unwrap()));
            for w in 0..per_target {
                let (client, held, mut stop) = (client.clone(), held.clone(), stop.subscribe());
                let (endpoint, socket) = stalling_endpoint(w % 2 == 0).unwrap();
                tasks.spawn(async move {
                    // Started at different times, the node's handshakes time
                    // out one by one, not all at once.
                    let mut pause = millis(0, 2000);
                    loop {
                        tokio::select! {
                            _ = sleep(pause) => {}
                            _ = stop.wait_for(|s| *s) => break,
                        }
                        let attempt = stall_once(&endpoint, &socket, addr, &client, &held[t]);
                        let held_slot = tokio::select! {
                            r = attempt => r.unwrap_or(false),
                            _ = stop.wait_for(|s| *s) => break,
                        };
                        pause = if held_slot {
                            Duration::ZERO
                        } else {
                            millis(50, 100)
                        };
                    }
                    endpoint.close(VarInt::from_u32(0), b"");
                });
            }
        }
        Flood { stop, tasks, held }
    }

    /// Attempts holding a handshake slot of target `t` now.
    fn held(&self, t: usize) -> usize {
        self.held[t].load(Ordering::Relaxed)
    }

    async fn stop(mut self) {
        self.stop.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Three validators on 127.0.0.1; a stranger on 127.0.0.2 keeps 24 stalled
/// handshakes going against each (16 handshake slots per node, so that the
/// flood can stay small). One validator restarts: it must get its connections
/// back, which it cannot while the stranger holds every slot of every node.
/// The nodes re-dial with the default backoff, as in production.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_flood_does_not_keep_a_restarted_validator_out() {
    init_tracing();
    let keys: Vec<Keypair> = (61..=63).map(key).collect();
    let permitted: Vec<PublicKey> = keys.iter().map(Keypair::public).collect();
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let tun = NetTuning {
        max_pending_handshakes: 16,
        ..NetTuning::default()
    };
    let mut nodes = Vec::new();
    for i in 0..3 {
        let cfg = config(&keys[i], addrs[i], &permitted, others(&keys, &addrs, i));
        nodes.push(start(cfg, tun.clone()).await);
    }
    wait_mesh(&nodes).await;

    let targets: Vec<(PublicKey, SocketAddr)> = permitted
        .iter()
        .copied()
        .zip(addrs.iter().copied())
        .collect();
    let flood = Flood::start(&key(69), &targets, 24);
    wait_until("the flood to hold handshakes at every node", || {
        (0..3).all(|t| flood.held(t) >= 4)
    })
    .await;

    let (net, ev) = nodes.pop().unwrap();
    net.shutdown().await;
    drop((net, ev));
    let cfg = config(&keys[2], addrs[2], &permitted, others(&keys, &addrs, 2));
    nodes.push(start(cfg, tun.clone()).await);
    assert!(
        timeout(RECONNECT, wait_mesh(&nodes)).await.is_ok(),
        "the restarted validator did not get its connections back within {RECONNECT:?}: \
         peers {:?}",
        nodes
            .iter()
            .map(|(net, _)| net.connected_peers().len())
            .collect::<Vec<_>>()
    );

    // Messages flow both ways with the restarted node.
    let back = vote(&keys[2], 1);
    nodes[2].0.broadcast(back.clone());
    for (_, ev) in nodes.iter_mut().take(2) {
        assert_eq!(
            recv(&mut ev.consensus, "from the restarted node").await,
            (keys[2].public(), back.clone())
        );
    }
    let to_new = vote(&keys[0], 2);
    nodes[0].0.broadcast(to_new.clone());
    assert_eq!(
        recv(&mut nodes[2].1.consensus, "to the restarted node").await,
        (keys[0].public(), to_new)
    );

    // The stranger had to prove its address, and then was held to its share.
    let flooded: Vec<Network> = nodes.iter().map(|(net, _)| net.clone()).collect();
    wait_until("retries and refusals per address at every node", || {
        flooded.iter().all(|net| {
            let s = net.stats();
            s.handshake_retries > 0 && s.handshakes_refused_per_ip > 0
        })
    })
    .await;

    flood.stop().await;
    for (net, _) in &nodes {
        net.shutdown().await;
    }
}
