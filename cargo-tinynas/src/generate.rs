//! `cargo tinynas generate`: the model crate the firmware depends on, rendered from
//! `templates/crate/` (Cargo.toml, src/lib.rs with the `model!` invocation, a README model card)
//! plus the `.tnas` file, and a path dependency on it in the firmware's Cargo.toml.
//!
//! Nothing is lost: the crate is rendered into a temporary folder next to its place and renamed
//! into it; a `.tinynas-generated` file records a CRC-32 of every file as generated, and a file
//! changed since (or a file added by the user) stops the regeneration unless `force` is set.

use std::path::{Path, PathBuf};

use minijinja::{context, Environment, UndefinedBehavior};
use tinynas_model::{InputType, Model};

const CARGO_TOML: &str = include_str!("../../templates/crate/Cargo.toml.j2");
const LIB_RS: &str = include_str!("../../templates/crate/lib.rs.j2");
const README_MD: &str = include_str!("../../templates/crate/README.md.j2");

/// The record of what was generated.
pub const RECORD: &str = ".tinynas-generated";

/// Figures measured on a board, for the model card.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measured {
    pub board: String,
    /// The core the board runs (`Cortex-M0 (Armv6-M code on an MPS2 AN385)`).
    pub core: String,
    pub date: String,
    /// The profile the bench firmware was built with: the firmware's. The card says it as
    /// `opt_level` (`3`, `s`), `debug` as a profile writes it (`true`, `"limited"`) and the
    /// per-package overrides of the model's code.
    #[serde(flatten, serialize_with = "profile_fields")]
    pub profile: crate::firmware::Profile,
    pub latency: u64,
    /// "cycles" or "instructions".
    pub unit: String,
    /// The latency in ms at the project's `clock-hz`, said as such (`6.651 ms at 64 MHz, one
    /// instruction per cycle`), when the clock is known.
    pub latency_ms: Option<String>,
    pub peak_sram: u64,
    pub flash: u64,
    pub outputs: String,
}

/// The card's `opt_level` (its name: `3`, `s`), `debug` (as a profile writes it: `true`,
/// `"limited"`, which the card quotes as a line of `[profile.release]`) and `package_overrides`
/// (`kernels opt-level 3`, empty where none).
fn profile_fields<S: serde::Serializer>(
    p: &crate::firmware::Profile,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut m = s.serialize_struct("Profile", 3)?;
    m.serialize_field("opt_level", p.opt_level.name())?;
    m.serialize_field("debug", p.debug.toml())?;
    m.serialize_field("package_overrides", &p.packages.describe())?;
    m.end()
}

/// What the model card says besides what the model file holds.
#[derive(Debug, Clone, Default)]
pub struct Card {
    pub arch: Option<String>,
    /// Best validation accuracy of the float network.
    pub float_val_accuracy: Option<f32>,
    /// Test accuracy of the int8 model through the runtime's kernels.
    pub int8_test_accuracy: Option<f32>,
    pub dataset: Option<String>,
    pub measured: Option<Measured>,
    /// What importing the model file did that the firmware's author must know (a TF Lite
    /// model's edge conversions left to the caller: `modelfile::Loaded::notes`).
    pub notes: Vec<String>,
}

impl Card {
    /// The model card of a search's final model: its architecture and accuracies, the data set
    /// (`data` as the project names it, its classes and fingerprint) and the figures measured on
    /// the board today, built with `profile`.
    pub fn of_search(
        o: &crate::search::Outcome,
        data: &Path,
        core: &str,
        clock_hz: Option<u64>,
        profile: crate::firmware::Profile,
    ) -> Self {
        let f = &o.final_entry;
        Card {
            arch: Some(f.arch.clone()),
            float_val_accuracy: f.float_val,
            int8_test_accuracy: f.int8_test,
            dataset: Some(format!(
                "{} ({} classes: {}; fingerprint {:016x})",
                data.display(),
                o.classes.len(),
                o.classes.join(", "),
                o.data_fingerprint
            )),
            measured: f.measured.as_ref().map(|m| Measured {
                board: m.board.clone(),
                core: core.to_string(),
                date: today(),
                profile,
                latency: m.latency,
                unit: m.unit.clone(),
                latency_ms: clock_hz
                    .map(|hz| crate::project::latency_at_clock(m.latency, hz, &m.unit)),
                peak_sram: m.peak_sram_bytes,
                flash: m.flash_bytes,
                outputs: "device == host, bit for bit".into(),
            }),
            notes: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a valid crate name (letters, digits, - and _, starting with a letter)")]
    Name(String),
    #[error("the model: {0}")]
    Model(#[from] tinynas_model::Error),
    #[error("template {name}: {source}")]
    Template {
        name: &'static str,
        source: minijinja::Error,
    },
    #[error("{dir} has changes made after it was generated:\n{files}\nMove them away, or pass --force to overwrite them")]
    Edited { dir: PathBuf, files: String },
    #[error("{0} exists and was not generated by cargo-tinynas (no {RECORD} file): pass --force to replace it")]
    Foreign(PathBuf),
    #[error("{0} is a file, not a folder: move it away (the crate is written there)")]
    NotAFolder(PathBuf),
    #[error("{path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error(transparent)]
    Firmware(#[from] crate::firmware::FirmwareError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GenerateError + '_ {
    move |source| GenerateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `to` relative to `from` (both absolute), when they share a root.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return to.to_path_buf();
    }
    let mut p = PathBuf::new();
    for _ in common..f.len() {
        p.push("..");
    }
    for c in &t[common..] {
        p.push(c);
    }
    p
}

/// Renders the crate's files for `model` (the `.tnas` bytes).
pub fn render(
    crate_name: &str,
    model_bytes: &[u8],
    card: &Card,
    date: &str,
) -> Result<Vec<(String, Vec<u8>)>, GenerateError> {
    if !crate_name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        || !crate_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(GenerateError::Name(crate_name.to_string()));
    }
    let model: Model = tinynas_model::format::read(model_bytes)?;
    let model_file = "model.tnas";
    let s = model.input_shape;
    let description = format!(
        "A {}-class int8 image classifier ({}x{}x{}) generated by cargo-tinynas",
        model.classes(),
        s.h,
        s.w,
        s.c
    );
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    let pct = |v: Option<f32>| v.map(|a| format!("{:.1}", 100.0 * a));
    let ctx = context! {
        tool_version => env!("CARGO_PKG_VERSION"),
        crate_name => crate_name,
        crate_mod => crate_name.replace('-', "_"),
        description => description,
        model_file => model_file,
        runtime_dependency => crate::vendor::runtime_dependency(),
        vendored => !crate::vendor::FILES.is_empty(),
        date => date,
        input_h => s.h, input_w => s.w, input_c => s.c,
        input_type => match model.input_type { InputType::U8 => "u8", InputType::I8 => "i8" },
        labels => model.labels.clone(),
        classes => model.classes(),
        notes => card.notes.clone(),
        params => model.params(),
        param_bytes => model.param_bytes(),
        // Weights of taps that read only padding, which the lowering does not store.
        cut_weights => model.nodes.iter().map(|n| n.param_bytes()).sum::<usize>() - model.param_bytes(),
        macs => model.macs(),
        arena_bytes => tinynas_model::plan::plan(&model).arena_bytes,
        arch => card.arch.clone().unwrap_or_else(|| format!("{} layers", model.nodes.len())),
        float_val_accuracy => pct(card.float_val_accuracy),
        int8_test_accuracy => pct(card.int8_test_accuracy),
        dataset => card.dataset.clone(),
        measured => card.measured.clone(),
    };
    let mut files = Vec::new();
    for (path, name, src) in [
        ("Cargo.toml", "Cargo.toml.j2", CARGO_TOML),
        ("src/lib.rs", "lib.rs.j2", LIB_RS),
        ("README.md", "README.md.j2", README_MD),
    ] {
        let text = env
            .render_str(src, ctx.clone())
            .map_err(|source| GenerateError::Template { name, source })?;
        files.push((path.to_string(), text.into_bytes()));
    }
    files.push((format!("src/{model_file}"), model_bytes.to_vec()));
    for (path, bytes) in crate::vendor::FILES {
        files.push((format!("{}/{path}", crate::vendor::FOLDER), bytes.to_vec()));
    }
    Ok(files)
}

fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            walk(&p, base, out)?;
        } else if let Ok(rel) = p.strip_prefix(base) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// Files of an existing generated crate that differ from what was generated, or were added.
fn changes(dir: &Path) -> Result<Option<Vec<String>>, GenerateError> {
    let record = dir.join(RECORD);
    let Ok(text) = std::fs::read_to_string(&record) else {
        return Ok(None);
    };
    let mut known = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((sum, path)) = line.split_once(' ') {
            known.insert(path.to_string(), sum.to_string());
        }
    }
    let mut present = Vec::new();
    walk(dir, dir, &mut present).map_err(io(dir))?;
    present.sort();
    let mut changed = Vec::new();
    for p in present {
        if p == RECORD || p == "Cargo.lock" {
            continue;
        }
        match known.get(&p) {
            None => changed.push(format!("{p} (added)")),
            Some(sum) => {
                let bytes = std::fs::read(dir.join(&p)).map_err(io(&dir.join(&p)))?;
                if format!("{:08x}", crc(&bytes)) != *sum {
                    changed.push(format!("{p} (edited)"));
                }
            }
        }
    }
    Ok(Some(changed))
}

/// What `generate` did.
#[derive(Debug)]
pub struct Generated {
    pub dir: PathBuf,
    pub files: Vec<String>,
    /// Whether the firmware's Cargo.toml gained the dependency (false: it was there).
    pub dependency_added: bool,
    /// What `--force` overwrote or removed: files edited or added since the crate was
    /// generated (or every file of a folder cargo-tinynas did not write), as `path (edited)`.
    pub discarded: Vec<String>,
}

/// Writes the crate `crate_name` into `dir` and adds it to `firmware_manifest` as a path
/// dependency (when given).
pub fn generate(
    dir: &Path,
    crate_name: &str,
    model_bytes: &[u8],
    card: &Card,
    firmware_manifest: Option<&Path>,
    force: bool,
) -> Result<Generated, GenerateError> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let parent = parent.canonicalize().map_err(io(parent))?;
    let leaf = dir
        .file_name()
        .ok_or_else(|| GenerateError::Name(dir.display().to_string()))?;
    let dir = parent.join(leaf);
    if dir.exists() && !dir.is_dir() {
        return Err(GenerateError::NotAFolder(dir));
    }
    let mut discarded = Vec::new();
    if dir.exists() {
        let changed = match changes(&dir)? {
            Some(c) => c,
            None if force => {
                let mut all = Vec::new();
                walk(&dir, &dir, &mut all).map_err(io(&dir))?;
                all.sort();
                all.into_iter()
                    .map(|p| format!("{p} (not generated)"))
                    .collect()
            }
            None => return Err(GenerateError::Foreign(dir)),
        };
        if !changed.is_empty() && !force {
            let files: Vec<String> = changed.iter().map(|c| format!("  {c}")).collect();
            return Err(GenerateError::Edited {
                dir,
                files: files.join("\n"),
            });
        }
        discarded = changed;
    }
    let date = today();
    let mut files = render(crate_name, model_bytes, card, &date)?;
    // A file that differs only in its dates (the model card's "generated on", "measured on")
    // keeps its old text: regenerating the same model leaves a committed crate unchanged.
    if dir.is_dir() {
        for (path, bytes) in &mut files {
            if let Ok(old) = std::fs::read(dir.join(path.as_str())) {
                if old != *bytes && without_dates(&old) == without_dates(bytes) {
                    *bytes = old;
                }
            }
        }
    }
    // Render into a temporary sibling folder, then swap it in.
    let tag = format!("{}-{}", std::process::id(), crate::fsutil::unique());
    let tmp = parent.join(format!(".{}.tmp-{tag}", leaf.to_string_lossy()));
    let old = parent.join(format!(".{}.old-{tag}", leaf.to_string_lossy()));
    let result = (|| -> Result<(), GenerateError> {
        let mut record = format!(
            "# Written by cargo-tinynas {}: CRC-32 and path of each generated file.\n",
            env!("CARGO_PKG_VERSION")
        );
        for (path, bytes) in &files {
            let p = tmp.join(path);
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).map_err(io(d))?;
            }
            std::fs::write(&p, bytes).map_err(io(&p))?;
            record.push_str(&format!("{:08x} {path}\n", crc(bytes)));
        }
        std::fs::write(tmp.join(RECORD), record).map_err(io(&tmp))?;
        if dir.exists() {
            std::fs::rename(&dir, &old).map_err(io(&dir))?;
        }
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            // Put the old crate back.
            let _ = std::fs::rename(&old, &dir);
            return Err(io(&dir)(e));
        }
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result?;
    let dependency_added = match firmware_manifest {
        Some(m) => add_dependency(m, crate_name, &dir)?,
        None => false,
    };
    Ok(Generated {
        discarded,
        dir,
        files: files.into_iter().map(|(p, _)| p).collect(),
        dependency_added,
    })
}

/// Adds `name = { path = "..." }` to `[dependencies]` of `manifest`, keeping its formatting;
/// returns false when a dependency of that name is already there.
pub fn add_dependency(manifest: &Path, name: &str, dir: &Path) -> Result<bool, GenerateError> {
    let text = std::fs::read_to_string(manifest).map_err(io(manifest))?;
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| GenerateError::Manifest {
                path: manifest.to_path_buf(),
                message: e.to_string(),
            })?;
    let base = manifest
        .parent()
        .and_then(|p| p.canonicalize().ok())
        .unwrap_or_default();
    let rel = relative(&base, dir).to_string_lossy().replace('\\', "/");
    let deps = doc
        .entry("dependencies")
        .or_insert_with(toml_edit::table)
        .as_table_like_mut()
        .ok_or_else(|| GenerateError::Manifest {
            path: manifest.to_path_buf(),
            message: "[dependencies] is not a table".into(),
        })?;
    if deps.contains_key(name) {
        return Ok(false);
    }
    let mut t = toml_edit::InlineTable::new();
    t.insert("path", rel.into());
    deps.insert(name, toml_edit::value(t));
    crate::fsutil::write_atomic(manifest, doc.to_string().as_bytes()).map_err(io(manifest))?;
    Ok(true)
}

/// `text` with every date (ten bytes `dddd-dd-dd`, digits `d`) replaced by the placeholder
/// `YYYY-MM-DD`.
fn without_dates(text: &[u8]) -> Vec<u8> {
    const PATTERN: &[u8; 10] = b"dddd-dd-dd";
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let is_date = text.len() - i >= PATTERN.len()
            && PATTERN.iter().zip(&text[i..]).all(|(p, c)| match p {
                b'd' => c.is_ascii_digit(),
                _ => c == p,
            });
        if is_date {
            out.extend_from_slice(b"YYYY-MM-DD");
            i += PATTERN.len();
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

/// Today's date (UTC) as YYYY-MM-DD.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let t = today();
        assert_eq!(t.len(), 10);
        assert!(t.starts_with("20"), "{t}");
    }

    #[test]
    fn the_card_names_unnamed_classes_and_the_import_notes() {
        let model = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/nanonas-k8-c3.tnas"),
        )
        .unwrap();
        let readme = |card: &Card| {
            let files = render("fw-model", &model, card, "2026-01-01").unwrap();
            let (_, text) = files.into_iter().find(|(p, _)| p == "README.md").unwrap();
            String::from_utf8(text).unwrap()
        };
        let plain = readme(&Card::default());
        assert!(!plain.contains("From the model file"), "{plain}");
        let note = "the final QUANTIZE to uint8 (operator 6) is left to the caller";
        let imported = readme(&Card {
            notes: vec![note.into(), "another note".into()],
            ..Card::default()
        });
        assert!(
            imported.contains(&format!(
                "## From the model file\n\n- {note}\n- another note\n"
            )),
            "{imported}"
        );
        let mut m = tinynas_model::format::read(&model).unwrap();
        m.labels.clear();
        let files = render(
            "fw-model",
            &tinynas_model::format::to_bytes(&m),
            &Card::default(),
            "2026-01-01",
        )
        .unwrap();
        let file = |name: &str| {
            let (_, text) = files.iter().find(|(p, _)| p == name).unwrap();
            String::from_utf8(text.clone()).unwrap()
        };
        let unnamed = file("README.md");
        assert!(
            unnamed.contains(&format!("| classes | {}, unnamed", m.classes())),
            "{unnamed}"
        );
        // No `LABELS` where the model names no classes: the docs would not compile as shown.
        assert!(!unnamed.contains("LABELS"), "{unnamed}");
        assert!(
            !file("src/lib.rs").contains("LABELS"),
            "{}",
            file("src/lib.rs")
        );
        assert!(plain.contains("Model::LABELS"), "{plain}");
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/a/b/c"), Path::new("/a/x/y")),
            PathBuf::from("../../x/y")
        );
        assert_eq!(
            relative(Path::new("/a/b"), Path::new("/a/b/m")),
            PathBuf::from("m")
        );
    }

    #[test]
    fn generates_keeps_edits_and_adds_the_dependency() {
        let root = std::env::temp_dir().join(format!("tinynas-generate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("fw")).unwrap();
        let manifest = root.join("fw/Cargo.toml");
        let original = "[package]\nname = \"fw\"   # the firmware\nversion = \"0.1.0\"\n\n[dependencies]\ncortex-m = \"0.7\" # keep\n";
        std::fs::write(&manifest, original).unwrap();
        let model = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/nanonas-k8-c3.tnas"),
        )
        .unwrap();
        let card = Card {
            arch: Some("nanonas:k=8,c=3".into()),
            int8_test_accuracy: Some(0.5),
            ..Card::default()
        };
        let dir = root.join("fw/fw-model");
        let g = generate(&dir, "fw-model", &model, &card, Some(&manifest), false).unwrap();
        assert!(g.dependency_added);
        let m = std::fs::read_to_string(&manifest).unwrap();
        assert!(m.starts_with(original), "formatting kept:\n{m}");
        assert!(m.contains("fw-model = { path = \"fw-model\" }"), "{m}");
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        assert!(
            readme.contains("| architecture | nanonas:k=8,c=3 |"),
            "{readme}"
        );
        assert!(readme.contains("| int8 test accuracy | 50.0 %"), "{readme}");
        assert!(readme.contains("Not measured on a board yet"), "{readme}");
        assert_eq!(std::fs::read(dir.join("src/model.tnas")).unwrap(), model);
        // Regenerating an untouched crate is fine; the dependency is not added twice.
        let g = generate(&dir, "fw-model", &model, &card, Some(&manifest), false).unwrap();
        assert!(!g.dependency_added);
        // An edit (or an added file) stops it, and nothing changes.
        std::fs::write(dir.join("src/lib.rs"), "// mine\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "mine\n").unwrap();
        let e = generate(&dir, "fw-model", &model, &card, None, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("src/lib.rs (edited)") && e.contains("notes.txt (added)"),
            "{e}"
        );
        assert!(e.contains("--force"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.join("src/lib.rs")).unwrap(),
            "// mine\n"
        );
        // --force replaces it, and says what it overwrote and removed.
        let g = generate(&dir, "fw-model", &model, &card, None, true).unwrap();
        assert!(std::fs::read_to_string(dir.join("src/lib.rs"))
            .unwrap()
            .contains("model!"));
        assert!(!dir.join("notes.txt").exists());
        assert_eq!(g.discarded, ["notes.txt (added)", "src/lib.rs (edited)"]);
        // A card that differs only in its dates leaves the crate as it was (a committed crate
        // stays clean when the same model is generated another day); other figures rewrite it.
        let measured = |date: &str, latency| Measured {
            board: "qemu-m4".into(),
            core: "Cortex-M4F".into(),
            date: date.into(),
            profile: crate::firmware::Profile::default(),
            latency,
            unit: "instructions".into(),
            latency_ms: Some("0.010 ms at 100 MHz, one instruction per cycle".into()),
            peak_sram: 4000,
            flash: 20000,
            outputs: "device == host, bit for bit".into(),
        };
        // The card reads the profile as `opt_level` and `debug` (as a profile writes it).
        let built = Measured {
            profile: crate::firmware::Profile {
                opt_level: crate::firmware::OptLevel::S,
                debug: crate::firmware::DebugInfo::Limited,
                packages: Default::default(),
            },
            ..measured("2026-01-01", 1)
        };
        let v = serde_json::to_value(&built).unwrap();
        assert_eq!(
            (&v["opt_level"], &v["debug"]),
            (&"s".into(), &"\"limited\"".into())
        );
        assert!(v.get("profile").is_none(), "{v}");
        let dated = |date: &str, latency| Card {
            measured: Some(measured(date, latency)),
            ..card.clone()
        };
        generate(
            &dir,
            "fw-model",
            &model,
            &dated("2020-01-01", 1000),
            None,
            false,
        )
        .unwrap();
        let first = std::fs::read_to_string(dir.join("README.md")).unwrap();
        assert!(
            first.contains("## Measured on qemu-m4 (Cortex-M4F, built at opt-level 3, 2020-01-01)"),
            "{first}"
        );
        generate(
            &dir,
            "fw-model",
            &model,
            &dated("2020-01-02", 1000),
            None,
            false,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("README.md")).unwrap(),
            first
        );
        generate(
            &dir,
            "fw-model",
            &model,
            &dated("2020-01-02", 1001),
            None,
            false,
        )
        .unwrap();
        let second = std::fs::read_to_string(dir.join("README.md")).unwrap();
        assert!(
            second.contains(", 2020-01-02)") && second.contains("1001"),
            "{second}"
        );
        // A plain file where the crate goes is never replaced, even with --force, and nothing
        // is left behind.
        std::fs::write(root.join("fw/plain"), "mine\n").unwrap();
        for force in [false, true] {
            let e = generate(&root.join("fw/plain"), "plain", &model, &card, None, force);
            assert!(e
                .unwrap_err()
                .to_string()
                .contains("is a file, not a folder"));
        }
        assert_eq!(
            std::fs::read_to_string(root.join("fw/plain")).unwrap(),
            "mine\n"
        );
        // A folder that cargo-tinynas did not write is never replaced without --force.
        std::fs::create_dir_all(root.join("fw/other")).unwrap();
        let e = generate(&root.join("fw/other"), "other", &model, &card, None, false).unwrap_err();
        assert!(
            e.to_string().contains("not generated by cargo-tinynas"),
            "{e}"
        );
        // Bad names and bad models are errors, and leave no temporary folders behind.
        assert!(generate(&root.join("fw/x"), "9x", &model, &card, None, false).is_err());
        assert!(generate(&root.join("fw/y"), "y", b"TNAS", &card, None, false).is_err());
        let leftovers: Vec<_> = std::fs::read_dir(root.join("fw"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
