//! The process's memory as the kernel sees it (/proc/self/status): high-water mark and the
//! anonymous and file-backed parts of the resident set (mapped weights count as file pages).

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemorySample {
    pub vm_hwm_bytes: u64,
    pub rss_anon_bytes: u64,
    pub rss_file_bytes: u64,
}

impl MemorySample {
    /// Reads the current figures; zeros where /proc is unavailable.
    pub fn now() -> Self {
        let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .map_or(0, |kib| kib * 1024)
        };
        Self {
            vm_hwm_bytes: field("VmHWM:"),
            rss_anon_bytes: field("RssAnon:"),
            rss_file_bytes: field("RssFile:"),
        }
    }

    /// The larger of each figure.
    pub fn max(self, other: Self) -> Self {
        Self {
            vm_hwm_bytes: self.vm_hwm_bytes.max(other.vm_hwm_bytes),
            rss_anon_bytes: self.rss_anon_bytes.max(other.rss_anon_bytes),
            rss_file_bytes: self.rss_file_bytes.max(other.rss_file_bytes),
        }
    }
}
