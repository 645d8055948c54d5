//! How long an fsync takes on the disk under a directory: the floor of every
//! durable write (a block append, a signing-state save). The node measures it at
//! start and exports it as a metric.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::StorageError;

/// Name of the scratch file written in the measured directory.
const PROBE_FILE: &str = ".fsync-probe";

/// Bytes written before each fsync (one page).
const PROBE_BYTES: usize = 4096;

/// Latencies of `write + fsync` of one page, sorted, at least one sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsyncLatency {
    samples: Vec<Duration>,
}

impl FsyncLatency {
    /// Every sample, fastest first.
    pub fn samples(&self) -> &[Duration] {
        &self.samples
    }

    /// The fastest sample.
    pub fn min(&self) -> Duration {
        self.quantile(0.0)
    }

    /// The median sample.
    pub fn median(&self) -> Duration {
        self.quantile(0.5)
    }

    /// The slowest sample.
    pub fn max(&self) -> Duration {
        self.quantile(1.0)
    }

    /// The sample at quantile `q` (0.0 fastest, 1.0 slowest; clamped).
    pub fn quantile(&self, q: f64) -> Duration {
        let last = self.samples.len().saturating_sub(1);
        let i = (q.clamp(0.0, 1.0) * last as f64).round() as usize;
        self.samples.get(i.min(last)).copied().unwrap_or_default()
    }
}

/// Writes and fsyncs one page `rounds` times (at least once) in a scratch file in
/// `dir`, which must exist, and returns the latencies. The file is removed after.
pub fn measure_fsync_latency(dir: &Path, rounds: usize) -> Result<FsyncLatency, StorageError> {
    let path = dir.join(PROBE_FILE);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| StorageError::io("create", &path, e))?;
    let page = [0x5au8; PROBE_BYTES];
    let mut samples = Vec::with_capacity(rounds.max(1));
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&page))
            .map_err(|e| StorageError::io("write", &path, e))?;
        file.sync_data()
            .map_err(|e| StorageError::io("fsync", &path, e))?;
        samples.push(start.elapsed());
    }
    drop(file);
    fs::remove_file(&path).map_err(|e| StorageError::io("remove", &path, e))?;
    samples.sort();
    Ok(FsyncLatency { samples })
}
