//! Memory and CPU of each node: from /proc for local child processes, or from
//! the node's metrics endpoint (`process_*` series) for a remote one.

use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::metrics::process::{ProcessStats, read};

/// Where a node's resource use is read.
#[derive(Clone, Debug)]
pub enum Probe {
    /// A local process.
    Pid(u32),
    /// A metrics endpoint (`host:port`).
    Metrics(String),
    /// Not measurable.
    None,
}

/// One reading.
pub async fn sample(p: &Probe) -> Option<ProcessStats> {
    match p {
        Probe::Pid(pid) => read(&pid.to_string()),
        Probe::Metrics(addr) => scrape(addr).await,
        Probe::None => None,
    }
}

/// Reads the `process_*` series from `http://addr/metrics`.
async fn scrape(addr: &str) -> Option<ProcessStats> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut body = Vec::new();
        // A metrics page is small; refuse to hold more than 4 MiB of it.
        s.take(4 << 20).read_to_end(&mut body).await.ok()?;
        Some(String::from_utf8_lossy(&body).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(2), fetch)
        .await
        .ok()??;
    Some(parse_process_metrics(&text))
}

/// Extracts the process series from a Prometheus text page.
pub fn parse_process_metrics(text: &str) -> ProcessStats {
    let value = |name: &str| -> f64 {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == name).then(|| v.trim().parse::<f64>().ok()).flatten()
            })
            .unwrap_or(0.0)
    };
    ProcessStats {
        rss_bytes: value("process_resident_memory_bytes") as u64,
        peak_rss_bytes: value("process_peak_resident_memory_bytes") as u64,
        cpu_seconds: value("process_cpu_seconds_total"),
    }
}

/// Resource use of one node over a window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeUsage {
    /// Node name.
    pub name: String,
    /// Largest resident memory seen (the process's peak where it reports one).
    pub rss_mb_max: f64,
    /// Resident memory at the end.
    pub rss_mb_end: f64,
    /// CPU used over the window, in percent of one core.
    pub cpu_percent: f64,
}

/// Tracks one node's readings.
#[derive(Clone, Debug)]
pub struct Tracker {
    /// Node name.
    pub name: String,
    /// Where to read.
    pub probe: Probe,
    first: Option<(std::time::Instant, f64)>,
    last: Option<(std::time::Instant, ProcessStats)>,
    max_rss: u64,
}

impl Tracker {
    /// A tracker with no readings.
    pub fn new(name: String, probe: Probe) -> Tracker {
        Tracker {
            name,
            probe,
            first: None,
            last: None,
            max_rss: 0,
        }
    }

    /// Takes a reading.
    pub async fn poll(&mut self) {
        if let Some(s) = sample(&self.probe).await {
            let now = std::time::Instant::now();
            if self.first.is_none() {
                self.first = Some((now, s.cpu_seconds));
            }
            self.max_rss = self.max_rss.max(s.rss_bytes).max(s.peak_rss_bytes);
            self.last = Some((now, s));
        }
    }

    /// Restarts the CPU window at the last reading.
    pub fn reset_window(&mut self) {
        self.first = self.last.map(|(t, s)| (t, s.cpu_seconds));
    }

    /// The summary so far.
    pub fn usage(&self) -> NodeUsage {
        let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
        let cpu = match (self.first, self.last) {
            (Some((t0, c0)), Some((t1, s))) => {
                let secs = t1.duration_since(t0).as_secs_f64();
                if secs > 0.0 {
                    100.0 * (s.cpu_seconds - c0) / secs
                } else {
                    0.0
                }
            }
            _ => 0.0,
        };
        NodeUsage {
            name: self.name.clone(),
            rss_mb_max: mb(self.max_rss),
            rss_mb_end: self.last.map_or(0.0, |(_, s)| mb(s.rss_bytes)),
            cpu_percent: cpu,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_process_series() {
        let page = "# HELP process_resident_memory_bytes x\n\
                    process_resident_memory_bytes 1048576\n\
                    process_peak_resident_memory_bytes 2097152\n\
                    process_cpu_seconds_total 1.5\n\
                    consort_height 3\n";
        let s = parse_process_metrics(page);
        assert_eq!(s.rss_bytes, 1 << 20);
        assert_eq!(s.peak_rss_bytes, 2 << 20);
        assert_eq!(s.cpu_seconds, 1.5);
        assert!(read("self").is_some());
    }
}
