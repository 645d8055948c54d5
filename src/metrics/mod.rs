//! Prometheus metrics of a node, and the HTTP endpoint that serves them.

pub mod process;
mod registry;
mod server;

pub use registry::{Counter, FloatGauge, Gauge, Histogram, Renderer};
pub use server::serve;

/// Every metric the node exports. Shared (`Arc`) between the runtime, which
/// updates it, and the HTTP endpoint, which renders it.
#[derive(Debug)]
pub struct NodeMetrics {
    /// Latest committed height.
    pub height: Gauge,
    /// Current consensus round.
    pub round: Gauge,
    /// Current step (0 propose, 1 prevote, 2 precommit, 3 commit).
    pub step: Gauge,
    /// Seconds between consecutive block times.
    pub block_interval: Histogram,
    /// Rounds needed per height (1 = decided in round 0).
    pub rounds_per_height: Histogram,
    /// Connected peers.
    pub peers: Gauge,
    /// Equivocations seen (detected here or received from a peer, verified).
    pub evidence: Counter,
    /// Pieces of evidence committed in blocks.
    pub evidence_committed: Counter,
    /// Peers disconnected and banned for misbehaviour.
    pub peers_banned: Counter,
    /// Seconds to fsync the signing state.
    pub signing_fsync: Histogram,
    /// Seconds to write a decided block durably.
    pub block_write: Histogram,
    /// Transactions committed.
    pub committed_txs: Counter,
    /// Transactions waiting in the mempool.
    pub mempool_size: Gauge,
    /// Bytes waiting in the mempool.
    pub mempool_bytes: Gauge,
    /// Synchronisation phase (0 consensus, 1 state sync, 2 block sync).
    pub sync_phase: Gauge,
    /// Snapshot chunks restored.
    pub sync_chunks_done: Gauge,
    /// Snapshot chunks to restore.
    pub sync_chunks_total: Gauge,
    /// Heights between us and the highest peer.
    pub blocks_behind: Gauge,
    /// Seconds between now and the latest block time.
    pub lag_seconds: FloatGauge,
    /// Peer messages rejected (bad signature, invalid content).
    pub bad_messages: Counter,
    /// Transactions removed from the mempool after a re-check.
    pub mempool_evicted: Counter,
    /// Admitted transactions not gossiped because the gossip queue was full.
    pub gossip_dropped: Counter,
    /// API calls refused for their caller's certificate or role, by reason.
    api_refusals: parking_lot::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// End of validity (unix seconds) of the certificates the node depends
    /// on, by name ("node", "org_ca").
    cert_expiry: parking_lot::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Default for NodeMetrics {
    fn default() -> NodeMetrics {
        NodeMetrics {
            height: Gauge::default(),
            round: Gauge::default(),
            step: Gauge::default(),
            block_interval: Histogram::seconds(),
            rounds_per_height: Histogram::new(&[1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 16.0]),
            peers: Gauge::default(),
            evidence: Counter::default(),
            evidence_committed: Counter::default(),
            peers_banned: Counter::default(),
            signing_fsync: Histogram::seconds(),
            block_write: Histogram::seconds(),
            committed_txs: Counter::default(),
            mempool_size: Gauge::default(),
            mempool_bytes: Gauge::default(),
            sync_phase: Gauge::default(),
            sync_chunks_done: Gauge::default(),
            sync_chunks_total: Gauge::default(),
            blocks_behind: Gauge::default(),
            lag_seconds: FloatGauge::default(),
            bad_messages: Counter::default(),
            mempool_evicted: Counter::default(),
            gossip_dropped: Counter::default(),
            api_refusals: Default::default(),
            cert_expiry: Default::default(),
        }
    }
}

impl NodeMetrics {
    /// Counts an API call refused for `reason`.
    pub fn api_refused(&self, reason: &'static str) {
        *self.api_refusals.lock().entry(reason).or_default() += 1;
    }

    /// Records when the certificate `which` stops being valid.
    pub fn set_cert_expiry(&self, which: &'static str, not_after_unix: u64) {
        self.cert_expiry.lock().insert(which, not_after_unix);
    }

    /// API refusals so far, by reason.
    pub fn api_refused_counts(&self) -> Vec<(&'static str, u64)> {
        self.api_refusals
            .lock()
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    /// Renders the node's own metrics into `r`.
    pub fn render_into(&self, r: &mut Renderer) {
        r.gauge(
            "consort_height",
            "Latest committed height.",
            self.height.get() as f64,
        );
        r.gauge(
            "consort_round",
            "Current consensus round.",
            self.round.get() as f64,
        );
        r.gauge(
            "consort_step",
            "Current consensus step (0 propose, 1 prevote, 2 precommit, 3 commit).",
            self.step.get() as f64,
        );
        r.histogram(
            "consort_block_interval_seconds",
            "Time between consecutive blocks.",
            &self.block_interval,
        );
        r.histogram(
            "consort_rounds_per_height",
            "Rounds needed to decide a height.",
            &self.rounds_per_height,
        );
        r.gauge("consort_peers", "Connected peers.", self.peers.get() as f64);
        r.counter(
            "consort_evidence_total",
            "Equivocations (conflicting votes) seen: detected here or received from a peer and verified.",
            self.evidence.get(),
        );
        r.counter(
            "consort_evidence_committed_total",
            "Pieces of evidence committed in blocks.",
            self.evidence_committed.get(),
        );
        r.counter(
            "consort_peers_banned_total",
            "Peers disconnected and refused for a while for misbehaviour (score past the threshold).",
            self.peers_banned.get(),
        );
        r.histogram(
            "consort_signing_state_fsync_seconds",
            "Time to make the signing state durable before a signature leaves the node.",
            &self.signing_fsync,
        );
        r.histogram(
            "consort_block_write_seconds",
            "Time to write a decided block, its commit and state changes durably.",
            &self.block_write,
        );
        r.counter(
            "consort_committed_txs_total",
            "Transactions committed.",
            self.committed_txs.get(),
        );
        r.gauge(
            "consort_mempool_size",
            "Transactions in the mempool.",
            self.mempool_size.get() as f64,
        );
        r.gauge(
            "consort_mempool_bytes",
            "Bytes in the mempool.",
            self.mempool_bytes.get() as f64,
        );
        r.gauge(
            "consort_sync_phase",
            "Synchronisation phase (0 consensus, 1 state sync, 2 block sync).",
            self.sync_phase.get() as f64,
        );
        r.gauge(
            "consort_sync_chunks_done",
            "Snapshot chunks restored.",
            self.sync_chunks_done.get() as f64,
        );
        r.gauge(
            "consort_sync_chunks_total",
            "Snapshot chunks of the snapshot being restored.",
            self.sync_chunks_total.get() as f64,
        );
        r.gauge(
            "consort_blocks_behind",
            "Heights between this node and the highest peer.",
            self.blocks_behind.get() as f64,
        );
        r.gauge(
            "consort_lag_seconds",
            "Seconds between now and the latest block time.",
            self.lag_seconds.get(),
        );
        r.counter(
            "consort_bad_peer_messages_total",
            "Peer messages rejected for a bad signature or invalid content.",
            self.bad_messages.get(),
        );
        r.counter(
            "consort_mempool_evicted_total",
            "Transactions removed from the mempool because they no longer pass after a block.",
            self.mempool_evicted.get(),
        );
        r.counter_vec(
            "consort_api_refused_total",
            "API calls refused: no or untrusted certificate, expired, or a role that may not call the method.",
            "reason",
            &self.api_refused_counts(),
        );
        let expiry: Vec<(&str, u64)> = self
            .cert_expiry
            .lock()
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        if !expiry.is_empty() {
            r.gauge_vec(
                "consort_tls_certificate_expiry_timestamp_seconds",
                "When a certificate the API depends on stops being valid (unix seconds): the node's own (node) and its organization's CA (org_ca).",
                "certificate",
                &expiry
                    .iter()
                    .map(|(k, v)| (*k, *v as f64))
                    .collect::<Vec<_>>(),
            );
        }
        r.counter(
            "consort_mempool_gossip_dropped_total",
            "Admitted transactions not gossiped because the gossip queue was full.",
            self.gossip_dropped.get(),
        );
    }
}
