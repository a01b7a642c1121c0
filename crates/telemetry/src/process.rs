//! Process metrics (CPU, memory, file descriptors), read from `/proc` on each scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Collects the standard `process_*` metrics of the current process.
#[derive(Debug, Default)]
pub struct ProcessCollector {
    _private: (),
}

/// A snapshot of the process's resource use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time in seconds.
    pub cpu_seconds: f64,
    /// Resident set size in bytes.
    pub resident_bytes: i64,
    /// Virtual memory size in bytes.
    pub virtual_bytes: i64,
    /// Open file descriptors.
    pub open_fds: i64,
    /// The soft limit on open file descriptors.
    pub max_fds: i64,
    /// Start time in seconds since the epoch.
    pub start_time_seconds: f64,
    /// Number of OS threads.
    pub threads: i64,
}

impl ProcessCollector {
    /// A collector for this process.
    pub fn new() -> Self {
        ProcessCollector::default()
    }
}

fn sysconf(name: libc::c_int, fallback: i64) -> i64 {
    // SAFETY: sysconf only reads a configuration value.
    let v = unsafe { libc::sysconf(name) };
    if v > 0 { v as i64 } else { fallback }
}

/// Reads the current process's statistics; fields that cannot be read stay zero.
pub fn read_stats() -> ProcessStats {
    let mut s = ProcessStats::default();
    let ticks = sysconf(libc::_SC_CLK_TCK, 100) as f64;
    let page = sysconf(libc::_SC_PAGESIZE, 4096);
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name, which may itself contain spaces.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            // utime=14, stime=15, num_threads=20, starttime=22, vsize=23, rss=24 (1-based in proc(5)),
            // i.e. 11, 12, 17, 19, 20, 21 counting from the state field at index 0.
            s.cpu_seconds = (num(11) + num(12)) / ticks;
            s.threads = num(17) as i64;
            s.virtual_bytes = num(20) as i64;
            s.resident_bytes = num(21) as i64 * page;
            if let Some(boot) = boot_time() {
                s.start_time_seconds = boot + num(19) / ticks;
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        s.open_fds = dir.count() as i64;
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
        s.max_fds = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    s
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = read_stats();
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges: [(&str, &str, f64); 6] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                s.virtual_bytes as f64,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                s.open_fds as f64,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                s.max_fds as f64,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                s.start_time_seconds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                s.threads as f64,
            ),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_real_values_for_this_process() {
        let s = read_stats();
        assert!(s.resident_bytes > 0, "{s:?}");
        assert!(s.open_fds > 0 && s.max_fds >= s.open_fds, "{s:?}");
        assert!(s.threads >= 1, "{s:?}");
        assert!(s.start_time_seconds > 1.0e9, "{s:?}");
    }
}
