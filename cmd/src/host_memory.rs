//! The memory this process may use: the smallest of the host's `MemTotal` and the cgroup's limit
//! (v2 `memory.max`, v1 `memory.limit_in_bytes`), read from `/proc` and `/sys/fs/cgroup`.
//!
//! Used only to derive defaults (the request budget); a value that cannot be read is left out,
//! and when none can be read the caller falls back to a fixed default. Must never fail startup.

use std::path::Path;

/// Bytes of memory this process may use, when any source can be read.
pub fn memory_limit_bytes() -> Option<u64> {
    let root = Path::new("/");
    limit_under(root)
}

/// [`memory_limit_bytes`] with `/proc` and `/sys` under `root` (tests use a fake tree).
fn limit_under(root: &Path) -> Option<u64> {
    let read = |relative: &str| std::fs::read_to_string(root.join(relative)).ok();
    let total = read("proc/meminfo").and_then(|text| mem_total(&text));
    let v2 = read("sys/fs/cgroup/memory.max").and_then(|text| cgroup_limit(&text));
    let v1 =
        read("sys/fs/cgroup/memory/memory.limit_in_bytes").and_then(|text| cgroup_limit(&text));
    [total, v2, v1].into_iter().flatten().min()
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// A cgroup memory limit: `max` (v2) or a value of 2^62 and more (v1's "unlimited") is none.
fn cgroup_limit(text: &str) -> Option<u64> {
    let value: u64 = text.trim().parse().ok()?;
    (value < 1 << 62).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_readable_limit_wins() {
        let root = tempfile::tempdir().unwrap();
        let write = |relative: &str, text: &str| {
            let path = root.path().join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        assert_eq!(limit_under(root.path()), None);
        write(
            "proc/meminfo",
            "MemFree: 5 kB\nMemTotal:       25165824 kB\n",
        );
        assert_eq!(limit_under(root.path()), Some(24 << 30));
        write("sys/fs/cgroup/memory.max", "max\n");
        assert_eq!(limit_under(root.path()), Some(24 << 30));
        write("sys/fs/cgroup/memory.max", "4294967296\n");
        assert_eq!(limit_under(root.path()), Some(4 << 30));
        write(
            "sys/fs/cgroup/memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        assert_eq!(limit_under(root.path()), Some(4 << 30));
        write("sys/fs/cgroup/memory/memory.limit_in_bytes", "1073741824\n");
        assert_eq!(limit_under(root.path()), Some(1 << 30));
    }
}
