//! Writing files so that nothing is ever half-written: write a temporary file, then rename.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A number unique within this process.
pub fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A temporary path next to `path`, unique to this process and call, so that concurrent writers
/// of the same file (parallel benches, two trainings loading one dataset) never share one.
pub fn temp_path(path: &Path) -> PathBuf {
    let n = unique();
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{file}.{}.{n}.tmp", std::process::id()))
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Removes the temporary files [`temp_path`] made in `dir` for processes that are no longer
/// running (a run killed mid-write), leaving those of live processes alone. Only where the
/// process table can be read (`/proc`); elsewhere it does nothing.
pub fn remove_stale_temps(dir: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = temp_owner(&name) {
            if !Path::new("/proc").join(pid.to_string()).exists() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The process id in a [`temp_path`] file name (`.FILE.PID.N.tmp`).
fn temp_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = rest.rsplitn(3, '.');
    let n = parts.next()?;
    let pid = parts.next()?;
    parts.next()?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temporary_files_of_dead_processes_are_removed() {
        let dir = std::env::temp_dir().join(format!("tinynas-fsutil-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mine = temp_path(&dir.join("cache.tnds"));
        std::fs::write(&mine, b"live").unwrap();
        // No process has an id this large (Linux's limit is 2^22).
        let dead = dir.join(".cache.tnds.4294967.0.tmp");
        std::fs::write(&dead, b"stale").unwrap();
        let other = dir.join("notes.4294967.0.tmp");
        std::fs::write(&other, b"not ours").unwrap();
        assert_eq!(temp_owner(".cache.tnds.4294967.0.tmp"), Some(4294967));
        assert_eq!(temp_owner(".cache.tnds.tmp"), None);
        remove_stale_temps(&dir);
        assert!(mine.exists() && other.exists());
        assert_eq!(dead.exists(), !Path::new("/proc/self").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
