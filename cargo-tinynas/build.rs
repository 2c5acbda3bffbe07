//! Fingerprints the sources that decide what a bench firmware measures: the kernels, the runtime,
//! the model crate (lowering and code generation) and the firmware templates. A search journal is
//! keyed by it (with its settings), so a search resumed after these change measures again instead
//! of replaying latencies of other code. Outside the repository (a packaged build, where the
//! sibling folders are absent) only the crate version keys it.

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dirs = [
        "kernels/src",
        "kernels/build.rs",
        "runtime/src",
        "model/src",
        "templates",
    ];
    let mut all = Vec::new();
    for d in dirs {
        let p = root.join(d);
        println!("cargo:rerun-if-changed={}", p.display());
        if p.is_file() {
            all.push(p);
        } else {
            files(&p, &mut all);
        }
    }
    // The host interpreter lives in the model crate but never runs on the board.
    all.retain(|p| !p.ends_with("model/src/host.rs"));
    all.sort();
    // CRC-32 over each file's path (relative to the root) and bytes.
    let mut h = crc32fast::Hasher::new();
    for f in &all {
        let rel = f.strip_prefix(&root).unwrap_or(f);
        h.update(rel.to_string_lossy().as_bytes());
        h.update(&std::fs::read(f).unwrap_or_default());
    }
    let h = h.finalize();
    let id = if all.is_empty() {
        "packaged".to_string()
    } else {
        format!("{h:08x}")
    };
    println!("cargo:rustc-env=TINYNAS_FIRMWARE_SOURCES={id}");
}
