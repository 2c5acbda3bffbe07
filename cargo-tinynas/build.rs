//! Fingerprints the sources that decide what a bench firmware measures: the kernels, the runtime,
//! the model crate (lowering and code generation) and the firmware templates. A search journal is
//! keyed by it (with its settings), so a search resumed after these change measures again instead
//! of replaying latencies of other code. Outside the repository (a packaged build, where the
//! sibling folders are absent) only the crate version keys it.
//!
//! It also embeds the runtime crates (`tinynas-kernels`, `tinynas-model`, `tinynas-macros`,
//! `tinynas-runtime`) as `cargo tinynas generate` vendors them into a generated crate: their
//! sources, and manifests with the workspace's inherited fields written out and the crates'
//! dependencies on each other as sibling paths with versions (`$OUT_DIR/vendored.rs`). Outside
//! the repository nothing is embedded and generated crates depend on the published versions.

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
    // The tool's own target, for the set-up check's test (a target whose library is installed).
    let host = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=TINYNAS_HOST_TARGET={host}");
    vendor(&root);
}

/// The runtime crates a generated crate vendors, by package name and folder.
const VENDORED: [(&str, &str); 4] = [
    ("tinynas-kernels", "kernels"),
    ("tinynas-model", "model"),
    ("tinynas-macros", "tinynas-macros"),
    ("tinynas-runtime", "runtime"),
];

fn vendor(root: &Path) {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let workspace = root.join("Cargo.toml");
    println!("cargo:rerun-if-changed={}", workspace.display());
    let mut entries = Vec::new();
    let ws = read_toml(&workspace);
    if ws.is_none() && workspace.exists() {
        println!(
            "cargo:warning=cannot read {}: generated crates will not vendor the runtime",
            workspace.display()
        );
    }
    if let Some(ws) = ws {
        for (name, dir) in VENDORED {
            let dir = root.join(dir);
            let manifest = dir.join("Cargo.toml");
            println!("cargo:rerun-if-changed={}", manifest.display());
            let Some(m) = read_toml(&manifest) else {
                println!(
                    "cargo:warning=cannot read {}: generated crates will not vendor the runtime",
                    manifest.display()
                );
                entries.clear();
                break;
            };
            // `[package]` first, the rest in key order.
            let mut rest = normalise(m, &ws);
            if name == "tinynas-macros" {
                without_tflite(&mut rest);
            }
            let mut package = toml::Table::new();
            if let Some(p) = rest.remove("package") {
                package.insert("package".into(), p);
            }
            let text = format!(
                "# Vendored by cargo-tinynas {} from its workspace; regenerated with the crate.\n{}\n{}",
                env!("CARGO_PKG_VERSION"),
                toml::to_string(&package).expect("a manifest serialises"),
                toml::to_string(&rest).expect("a manifest serialises")
            );
            let written = out.join("vendored").join(name).join("Cargo.toml");
            std::fs::create_dir_all(written.parent().unwrap()).expect("OUT_DIR is writable");
            std::fs::write(&written, text).expect("OUT_DIR is writable");
            entries.push((format!("{name}/Cargo.toml"), written));
            let mut all = Vec::new();
            for part in ["src", "build.rs", "README.md"] {
                let p = dir.join(part);
                println!("cargo:rerun-if-changed={}", p.display());
                if p.is_file() {
                    all.push(p);
                } else {
                    files(&p, &mut all);
                }
            }
            all.sort();
            for f in all {
                let rel = f
                    .strip_prefix(&dir)
                    .unwrap_or(&f)
                    .to_string_lossy()
                    .replace('\\', "/");
                entries.push((format!("{name}/{rel}"), f));
            }
        }
    }
    let mut code = String::from(
        "/// The vendored runtime crates' files: path below the vendor folder, bytes.\n\
         pub const FILES: &[(&str, &[u8])] = &[\n",
    );
    for (rel, path) in &entries {
        code.push_str(&format!(
            "    ({rel:?}, include_bytes!({:?})),\n",
            path.to_string_lossy()
        ));
    }
    code.push_str("];\n");
    std::fs::write(out.join("vendored.rs"), code).expect("OUT_DIR is writable");
}

/// The vendored macro reads only `.tnas` (a generated crate carries its model as one): no
/// TF Lite reader in the firmware's build. The feature stays declared, empty and off.
fn without_tflite(m: &mut toml::Table) {
    use toml::Value;
    if let Some(Value::Table(deps)) = m.get_mut("dependencies") {
        deps.remove("tinynas-tflite");
    }
    let mut features = toml::Table::new();
    features.insert("default".into(), Value::Array(Vec::new()));
    features.insert("tflite".into(), Value::Array(Vec::new()));
    m.insert("features".into(), Value::Table(features));
}

fn read_toml(path: &Path) -> Option<toml::Table> {
    std::fs::read_to_string(path).ok()?.parse().ok()
}

/// A member's manifest as it stands on its own: inherited package fields and dependencies
/// written out, the workspace's lints inlined, the other runtime crates as sibling folders
/// (with their versions, as crates.io wants them), no dev-dependencies (no tests are vendored).
fn normalise(mut m: toml::Table, ws: &toml::Table) -> toml::Table {
    use toml::Value;
    let w = ws.get("workspace").and_then(Value::as_table);
    let get = |k: &str| w.and_then(|w| w.get(k)).and_then(Value::as_table);
    let inherited = |v: &Value| {
        v.as_table()
            .and_then(|t| t.get("workspace"))
            .and_then(Value::as_bool)
            == Some(true)
    };
    if let (Some(Value::Table(pkg)), Some(wp)) = (m.get_mut("package"), get("package")) {
        for (k, v) in pkg.iter_mut() {
            if inherited(v) {
                if let Some(x) = wp.get(k) {
                    *v = x.clone();
                }
            }
        }
    }
    m.remove("dev-dependencies");
    if let Some(lints) = get("lints") {
        m.insert("lints".into(), Value::Table(lints.clone()));
    }
    if let (Some(Value::Table(deps)), Some(wd)) = (m.get_mut("dependencies"), get("dependencies")) {
        for (name, v) in deps.iter_mut() {
            if !inherited(v) {
                continue;
            }
            let mut dep = match wd.get(name) {
                Some(Value::String(version)) => {
                    let mut t = toml::Table::new();
                    t.insert("version".into(), Value::String(version.clone()));
                    t
                }
                Some(Value::Table(t)) => t.clone(),
                _ => continue,
            };
            if dep.contains_key("path") {
                dep.insert("path".into(), Value::String(format!("../{name}")));
            }
            // The member's own keys (features add to the workspace's).
            if let Some(own) = v.as_table() {
                for (k, x) in own {
                    match (k.as_str(), dep.get_mut(k), x) {
                        ("workspace", _, _) => {}
                        ("features", Some(Value::Array(f)), Value::Array(more)) => {
                            f.extend(more.iter().cloned())
                        }
                        _ => {
                            dep.insert(k.clone(), x.clone());
                        }
                    }
                }
            }
            *v = Value::Table(dep);
        }
    }
    m
}
