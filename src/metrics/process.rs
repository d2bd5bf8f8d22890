//! The standard `process_*` metrics, read from `/proc/self` (Linux): CPU time, resident and
//! virtual memory, open and maximum file descriptors, start time. Absent elsewhere.
//! (Encoded by [`super::own`].)

use std::sync::OnceLock;

/// Linux's `USER_HZ`, the unit of the CPU times in `/proc/<pid>/stat` (100 on every
/// architecture Linux supports today).
const USER_HZ: f64 = 100.0;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcessStats {
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) resident_bytes: Option<f64>,
    pub(crate) virtual_bytes: Option<f64>,
    pub(crate) open_fds: Option<f64>,
    pub(crate) max_fds: Option<f64>,
    pub(crate) start_time: Option<f64>,
}

impl ProcessStats {
    pub(crate) fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        // Fields after the parenthesised command name (which may hold spaces).
        let fields: Vec<&str> = stat
            .as_deref()
            .and_then(|s| s.rsplit_once(')'))
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // `rest` starts at field 3 (state): field n is fields[n - 3].
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let cpu_seconds = match (field(14), field(15)) {
            (Some(u), Some(s)) => Some((u + s) / USER_HZ),
            _ => None,
        };
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map(|v| v * 1024.0)
        };
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as f64);
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| {
                l.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3))
                    .and_then(|v| v.parse::<f64>().ok())
            });
        Self {
            cpu_seconds,
            resident_bytes: kb("VmRSS:"),
            virtual_bytes: kb("VmSize:"),
            open_fds,
            max_fds,
            start_time: start_time(field(22)),
        }
    }
}

fn start_time(start_ticks: Option<f64>) -> Option<f64> {
    static START: OnceLock<Option<f64>> = OnceLock::new();
    *START.get_or_init(|| {
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })?;
        Some(boot + start_ticks? / USER_HZ)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let p = ProcessStats::read();
        if cfg!(target_os = "linux") {
            assert!(p.resident_bytes.unwrap() > 1e6);
            assert!(p.virtual_bytes.unwrap() >= p.resident_bytes.unwrap());
            assert!(p.open_fds.unwrap() >= 3.0);
            assert!(p.max_fds.unwrap() >= p.open_fds.unwrap());
            let start = p.start_time.unwrap();
            let now = crate::sys::unix_now();
            assert!(start <= now + 1.0 && start > now - 86_400.0 * 365.0);
            assert!(p.cpu_seconds.unwrap() >= 0.0);
        }
    }
}
