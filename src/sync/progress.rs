//! Showing sync progress: a bar on a terminal, log lines otherwise, and the
//! metrics always.

use parking_lot::Mutex;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tracing::info;

use crate::metrics::NodeMetrics;
use crate::types::Height;

/// Interval between progress log lines when there is no terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

struct State {
    total: u64,
    done: u64,
    bytes: u64,
    started: Instant,
    last_log: Instant,
    height: Height,
}

/// Progress of a sync.
pub struct Progress {
    metrics: Arc<NodeMetrics>,
    bar: Mutex<Option<ProgressBar>>,
    interactive: bool,
    state: Mutex<State>,
}

impl Progress {
    /// Progress reporting into `metrics`; a bar if stderr is a terminal.
    pub fn new(metrics: Arc<NodeMetrics>) -> Progress {
        Progress {
            metrics,
            bar: Mutex::new(None),
            interactive: std::io::stderr().is_terminal(),
            state: Mutex::new(State {
                total: 0,
                done: 0,
                bytes: 0,
                started: Instant::now(),
                last_log: Instant::now(),
                height: Height(0),
            }),
        }
    }

    fn state(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }

    /// State sync of `height` begins.
    pub fn set_phase_state_sync(&self, height: Height) {
        self.metrics
            .sync_phase
            .set(crate::node::SyncPhase::StateSync.code());
        self.state().height = height;
    }

    /// Restoring `total` chunks, `done` of them already.
    pub fn start_chunks(&self, total: u64, done: u64) {
        {
            let mut s = self.state();
            s.total = total;
            s.done = done;
            s.started = Instant::now();
        }
        self.metrics.sync_chunks_total.set(total as i64);
        self.metrics.sync_chunks_done.set(done as i64);
        if self.interactive {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "state sync {bar:40} {pos}/{len} chunks  {bytes_per_sec}  eta {eta}  {msg}",
            ) {
                bar.set_style(style);
            }
            bar.set_position(done);
            *self.bar.lock() = Some(bar);
        }
    }

    /// One chunk restored.
    pub fn chunk_done(&self, bytes: u64, _took: Duration) {
        let (done, total, all_bytes, elapsed, log) = {
            let mut s = self.state();
            s.done += 1;
            s.bytes += bytes;
            let log = s.last_log.elapsed() >= LOG_EVERY || s.done == s.total;
            if log {
                s.last_log = Instant::now();
            }
            (s.done, s.total, s.bytes, s.started.elapsed(), log)
        };
        self.metrics.sync_chunks_done.set(done as i64);
        if let Some(bar) = self.bar.lock().as_ref() {
            bar.inc(1);
            bar.inc_length(0);
            bar.set_message(format!("{} MB", all_bytes / 1_000_000));
        } else if log {
            let secs = elapsed.as_secs_f64().max(0.001);
            let rate = done as f64 / secs;
            let left = if rate > 0.0 {
                (total.saturating_sub(done)) as f64 / rate
            } else {
                0.0
            };
            info!(
                chunks = done,
                total,
                mb = all_bytes / 1_000_000,
                chunks_per_s = format!("{rate:.1}"),
                mb_per_s = format!("{:.1}", all_bytes as f64 / 1e6 / secs),
                eta_s = format!("{left:.0}"),
                "state sync progress"
            );
        }
    }

    /// State sync is over.
    pub fn finish_state_sync(&self) {
        if let Some(bar) = self.bar.lock().take() {
            bar.finish_and_clear();
        }
        self.metrics
            .sync_phase
            .set(crate::node::SyncPhase::BlockSync.code());
    }
}
