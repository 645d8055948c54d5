//! Resource use of this process, read from /proc (Linux), in the names
//! Prometheus client libraries use.

use super::Renderer;

/// Resident and peak resident memory in bytes, and CPU seconds, if readable.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident set size.
    pub rss_bytes: u64,
    /// Peak resident set size.
    pub peak_rss_bytes: u64,
    /// User plus system CPU time.
    pub cpu_seconds: f64,
}

/// Reads the stats of process `pid` ("self" for this one).
pub fn read(pid: &str) -> Option<ProcessStats> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse(&status, &stat, clock_ticks_per_second())
}

/// The unit of the CPU times in /proc (`sysconf(_SC_CLK_TCK)`): 100 on most
/// Linux systems, but not all of them.
pub fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// The stats in the text of `/proc/<pid>/status` and `/proc/<pid>/stat`, whose
/// CPU times count `ticks_per_second` ticks a second.
pub fn parse(status: &str, stat: &str, ticks_per_second: u64) -> Option<ProcessStats> {
    let kb = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the full line: 11 and 12 here.
    let cpu_ticks = ticks(11) + ticks(12);
    Some(ProcessStats {
        rss_bytes: kb("VmRSS:"),
        peak_rss_bytes: kb("VmHWM:"),
        cpu_seconds: cpu_ticks as f64 / ticks_per_second.max(1) as f64,
    })
}

/// Renders this process's stats.
pub fn render_into(r: &mut Renderer) {
    if let Some(s) = read("self") {
        r.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            s.rss_bytes as f64,
        );
        r.gauge(
            "process_peak_resident_memory_bytes",
            "Peak resident memory size in bytes.",
            s.peak_rss_bytes as f64,
        );
        r.counter(
            "process_cpu_seconds_total",
            "User and system CPU time spent, in seconds.",
            s.cpu_seconds as u64,
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let s = super::read("self").expect("/proc is readable on Linux");
        assert!(s.rss_bytes > 0 && s.peak_rss_bytes >= s.rss_bytes);
        assert!(super::clock_ticks_per_second() > 0);
    }

    #[test]
    fn cpu_time_is_in_the_given_ticks() {
        let status = "Name:\tconsort\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        // A command name with spaces and a ')'; utime 300 and stime 200 ticks.
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 10 0 0 0 300 200 0 0 20 0 8 0";
        let at = |hz| super::parse(status, stat, hz).expect("parses");
        assert_eq!(at(100).cpu_seconds, 5.0);
        assert_eq!(at(250).cpu_seconds, 2.0);
        assert_eq!(at(1000).cpu_seconds, 0.5);
        assert_eq!(at(100).rss_bytes, 1024 * 1024);
        assert_eq!(at(100).peak_rss_bytes, 2048 * 1024);
    }
}
