//! A peer that writes raw bytes on the channel streams of a real node, for
//! tests and tools that check how the node treats a broken or hostile peer.
//! Nothing in the node uses it.

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::{Endpoint, SendStream};

use super::peer::{close_code, stream_header};
use super::tls::{self, Identity, PeerGate};
use super::{Channel, NetError, NetTuning, transport};
use crate::types::{Keypair, PublicKey};

/// Why a raw peer could not connect or write.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    /// Setting up TLS or the endpoint failed.
    #[error("setup: {0}")]
    Setup(String),
    /// The handshake or a stream failed.
    #[error("connection: {0}")]
    Connection(String),
}

fn setup(e: impl std::fmt::Display) -> RawError {
    RawError::Setup(e.to_string())
}

fn conn_err(e: impl std::fmt::Display) -> RawError {
    RawError::Connection(e.to_string())
}

/// A connection to a node with one open stream per channel, whose bytes are
/// written as given: no framing, no checks.
pub struct RawPeer {
    _endpoint: Endpoint,
    conn: quinn::Connection,
    streams: Vec<SendStream>,
}

impl RawPeer {
    /// Connects as `key` to the node `target` at `addr` and opens every channel
    /// stream (with its header), in the order of [`Channel::ALL`]. The node
    /// must permit `key`.
    pub async fn connect(
        key: &Keypair,
        target: PublicKey,
        addr: SocketAddr,
    ) -> Result<RawPeer, RawError> {
        let codes = Channel::ALL.map(Channel::code);
        RawPeer::connect_with_codes(key, target, addr, &codes).await
    }

    /// Like [`RawPeer::connect`], with one stream per entry of `codes`, whose
    /// header names that channel code (which may name no channel).
    pub async fn connect_with_codes(
        key: &Keypair,
        target: PublicKey,
        addr: SocketAddr,
        codes: &[u8],
    ) -> Result<RawPeer, RawError> {
        let id = Identity::new(key).map_err(setup)?;
        let gate = Arc::new(PeerGate::new(key.public(), [target].into_iter().collect()));
        let mut cfg = quinn::ClientConfig::new(Arc::new(
            tls::client_config(&id, gate, Some(target)).map_err(setup)?,
        ));
        cfg.transport_config(Arc::new(
            transport(&NetTuning::default()).map_err(|e: NetError| setup(e))?,
        ));
        let endpoint = Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).map_err(setup)?;
        let conn = endpoint
            .connect_with(cfg, addr, tls::SERVER_NAME)
            .map_err(conn_err)?
            .await
            .map_err(conn_err)?;
        // A fresh incarnation each time, so the node replaces an older
        // connection of ours rather than refusing this one.
        let incarnation = rand_core::RngCore::next_u64(&mut rand_core::OsRng);
        let mut streams = Vec::new();
        for &code in codes {
            let mut s = conn.open_uni().await.map_err(conn_err)?;
            let mut header = stream_header(Channel::Consensus, incarnation);
            header[0] = code;
            s.write_all(&header).await.map_err(conn_err)?;
            streams.push(s);
        }
        Ok(RawPeer {
            _endpoint: endpoint,
            conn,
            streams,
        })
    }

    /// Writes `bytes` as they are on the stream of `channel` (of a peer made
    /// by [`RawPeer::connect`]).
    pub async fn write(&mut self, channel: Channel, bytes: &[u8]) -> Result<(), RawError> {
        self.write_stream(channel.index(), bytes).await
    }

    /// Writes `bytes` as they are on the `i`-th stream opened.
    pub async fn write_stream(&mut self, i: usize, bytes: &[u8]) -> Result<(), RawError> {
        let s = self
            .streams
            .get_mut(i)
            .ok_or_else(|| RawError::Connection(format!("no stream {i}")))?;
        s.write_all(bytes).await.map_err(conn_err)
    }

    /// Waits until the node closes the connection; returns whether it closed it
    /// for a protocol violation, and the reason it gave.
    pub async fn closed(&self) -> (bool, String) {
        match self.conn.closed().await {
            quinn::ConnectionError::ApplicationClosed(c) => (
                c.error_code == close_code::PROTOCOL,
                String::from_utf8_lossy(&c.reason).into_owned(),
            ),
            other => (false, other.to_string()),
        }
    }
}
