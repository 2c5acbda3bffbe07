//! How much memory this process and its children may use: the smaller of its cgroup's memory
//! limit (v1 `memory.limit_in_bytes` or v2 `memory.max`) and the machine's `MemAvailable`. A
//! gateway with 512 MB, or a container limited to 256 MiB, builds the bench firmware with one
//! job instead of one per core (two rustc processes at once are what ran out of memory there).

use std::path::Path;

/// Below this, firmware builds run one job at a time.
pub const LOW_MEMORY_BYTES: u64 = 1 << 30;

/// Bytes this process tree may use, if the system says (Linux); `None` elsewhere.
pub fn available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_available(&t));
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| cgroup_limit(&t, Path::new("/sys/fs/cgroup")));
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether firmware builds should run one job at a time (`CARGO_BUILD_JOBS`, if set, is the
/// user's choice and wins).
pub fn build_one_job_at_a_time() -> bool {
    std::env::var_os("CARGO_BUILD_JOBS").is_none()
        && available().is_some_and(|b| b < LOW_MEMORY_BYTES)
}

/// Hands the memory the allocator keeps after frees back to the system, so that a child process
/// started next (a firmware build: rustc needs about 140 MB for some crates) finds it free.
/// glibc keeps freed blocks of a training's buffers in its heaps; `malloc_trim` returns their
/// pages. Elsewhere a no-op.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only gives free pages of the allocator's heaps back to the kernel (it
    // takes each arena's lock); no live allocation is touched, and it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The memory limit of the cgroup that `/proc/self/cgroup` (`cgroup`) names, read below `root`
/// (`/sys/fs/cgroup`): v1's `memory/<path>/memory.limit_in_bytes`, else v2's
/// `<path>/memory.max` (also under `unified/` where v1 and v2 are both mounted). No limit
/// ("max", or v1's huge number) is `None`.
fn cgroup_limit(cgroup: &str, root: &Path) -> Option<u64> {
    let read = |p: &Path| -> Option<u64> {
        let t = std::fs::read_to_string(p).ok()?;
        let v: u64 = t.trim().parse().ok()?;
        // v1 writes "no limit" as the largest page-aligned i64.
        (v < 1 << 62).then_some(v)
    };
    let rel = |path: &str| path.trim_start_matches('/').to_string();
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            if let Some(v) = read(
                &root
                    .join("memory")
                    .join(rel(path))
                    .join("memory.limit_in_bytes"),
            ) {
                return Some(v);
            }
        }
        if controllers.is_empty() {
            for base in [root.to_path_buf(), root.join("unified")] {
                if let Some(v) = read(&base.join(rel(path)).join("memory.max")) {
                    return Some(v);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_available() {
        let t = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   262144 kB\n";
        assert_eq!(mem_available(t), Some(256 << 20));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn reads_v1_and_v2_limits_and_ignores_no_limit() {
        let root = std::env::temp_dir().join(format!("tinynas-cgroup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let v1 = root.join("memory/box/a");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "268435456\n").unwrap();
        assert_eq!(
            cgroup_limit("4:memory:/box/a\n0::/\n", &root),
            Some(256 << 20)
        );
        std::fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        assert_eq!(cgroup_limit("4:memory:/box/a\n", &root), None);
        let v2 = root.join("unified/svc");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("memory.max"), "536870912\n").unwrap();
        assert_eq!(cgroup_limit("0::/svc\n", &root), Some(512 << 20));
        std::fs::write(v2.join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_limit("0::/svc\n", &root), None);
        assert_eq!(cgroup_limit("garbage", &root), None);
        let _ = std::fs::remove_dir_all(&root);
    }
}
