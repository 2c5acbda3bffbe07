//! `[package.metadata.tinynas]` (or `[workspace.metadata.tinynas]`): what the user asks for.
//!
//! Read straight from the manifest text with `toml`, so that an unknown key or a wrong type is
//! reported with its line, column and the offending text.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The keys of the `tinynas` table. Every field is optional; [`super::Project`] fills defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Folder of class folders (or train/ val/ test/ of those), relative to the manifest.
    pub data: Option<PathBuf>,
    /// Model input, `HxWxC` (C = 1 grey or 3 RGB).
    pub input: Option<String>,
    /// An emulated board (`qemu-m4`, ...) to measure on instead of the chip.
    pub board: Option<String>,
    /// The chip, as probe-rs names it (default: from the runner line in `.cargo/config.toml`).
    pub chip: Option<String>,
    /// SRAM kept for the rest of the firmware, in bytes.
    pub ram_reserve: Option<u64>,
    /// Flash kept for the rest of the firmware, in bytes.
    pub flash_reserve: Option<u64>,
    /// An explicit SRAM budget for the model (overrides RAM minus the reserve), in bytes.
    pub max_ram: Option<u64>,
    /// An explicit flash budget for the model, in bytes.
    pub max_flash: Option<u64>,
    /// Latency budget per inference, in milliseconds at `clock-hz`.
    pub max_latency_ms: Option<f64>,
    /// The core clock the latency budget is converted with, in Hz.
    pub clock_hz: Option<u64>,
    /// `nanonas` or `evolve`.
    pub strategy: Option<String>,
    pub seed: Option<u64>,
    /// Epochs of each candidate's proxy training.
    pub proxy_epochs: Option<usize>,
    /// Epochs of the winner's final training.
    pub final_epochs: Option<usize>,
    /// Name of the generated crate (default: `<package>-model`).
    pub crate_name: Option<String>,
}

#[derive(Deserialize)]
struct Manifest {
    package: Option<Section>,
    workspace: Option<Section>,
}

#[derive(Deserialize)]
struct Section {
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    tinynas: Option<Config>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Where the configuration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Package,
    Workspace,
    /// No `tinynas` table: all defaults (`cargo tinynas init` writes one).
    Defaults,
}

/// The `tinynas` table of the package manifest, else of the workspace manifest.
pub fn read(package: &Path, workspace: Option<&Path>) -> Result<(Config, Origin), ConfigError> {
    let load = |path: &Path| -> Result<Manifest, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
    };
    let checked = |c: Config, path: &Path, origin: Origin| {
        c.check()
            .map(|()| (c, origin))
            .map_err(|message| ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            })
    };
    let m = load(package)?;
    if let Some(c) = m.package.and_then(|p| p.metadata).and_then(|m| m.tinynas) {
        return checked(c, package, Origin::Package);
    }
    if let Some(c) = m.workspace.and_then(|p| p.metadata).and_then(|m| m.tinynas) {
        return checked(c, package, Origin::Workspace);
    }
    if let Some(ws) = workspace.filter(|w| *w != package) {
        if let Some(c) = load(ws)?
            .workspace
            .and_then(|p| p.metadata)
            .and_then(|m| m.tinynas)
        {
            return checked(c, ws, Origin::Workspace);
        }
    }
    Ok((Config::default(), Origin::Defaults))
}

impl Config {
    /// Values that parse but mean nothing: a zero budget, clock or epoch count, a latency budget
    /// that is not a positive number. The message names the key and what to write.
    fn check(&self) -> Result<(), String> {
        let zero = |key: &str, v: Option<u64>, what: &str| {
            match v {
            Some(0) => Err(format!(
                "[package.metadata.tinynas] {key} = 0: give {what}, or remove the key for the default"
            )),
            _ => Ok(()),
        }
        };
        zero("max-ram", self.max_ram, "a budget of at least 1 byte")?;
        zero("max-flash", self.max_flash, "a budget of at least 1 byte")?;
        zero("clock-hz", self.clock_hz, "the core clock in Hz")?;
        zero(
            "proxy-epochs",
            self.proxy_epochs.map(|v| v as u64),
            "at least 1 epoch",
        )?;
        zero(
            "final-epochs",
            self.final_epochs.map(|v| v as u64),
            "at least 1 epoch",
        )?;
        match self.max_latency_ms {
            Some(ms) if !(ms.is_finite() && ms > 0.0) => Err(format!(
                "[package.metadata.tinynas] max-latency-ms = {ms}: give a positive number of milliseconds, or remove the key"
            )),
            _ => Ok(()),
        }
    }
}

/// The target and the chip of `probe-rs run --chip X` from `.cargo/config.toml` (or
/// `.cargo/config`) in `dir` or a parent, as cargo looks for them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CargoConfig {
    pub target: Option<String>,
    pub runner_chip: Option<String>,
    pub path: Option<PathBuf>,
    /// The words of every `rustflags` that applies to the built target: `[build]`'s, the
    /// target's own table's and any `[target.'cfg(...)']`'s (cfg expressions are not evaluated).
    pub rustflags: Vec<String>,
    /// Its `[profile.release]` table (`opt-level`, `lto`, `codegen-units`, ...).
    pub release_profile: Option<toml::Value>,
}

pub fn cargo_config(dir: &Path) -> Result<CargoConfig, ConfigError> {
    for d in dir.ancestors() {
        for name in ["config.toml", "config"] {
            let path = d.join(".cargo").join(name);
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let v: toml::Value = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
                path: path.clone(),
                message: e.to_string().trim_end().to_string(),
            })?;
            let target = v
                .get("build")
                .and_then(|b| b.get("target"))
                .and_then(|t| t.as_str())
                .map(str::to_string);
            // The tables that apply: the built target's (written `[target.'a.b-c']`, or
            // `[target.a.b-c]`, which TOML nests at each dot), then `[target.'cfg(...)']` ones.
            let targets = v.get("target").and_then(|t| t.as_table());
            let own = target.as_deref().and_then(|t| {
                let targets = targets?;
                targets.get(t).or_else(|| {
                    let mut parts = t.split('.');
                    let first = targets.get(parts.next()?)?;
                    parts.try_fold(first, |table, part| table.get(part))
                })
            });
            let cfgs = targets
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.starts_with("cfg("))
                .map(|(_, t)| t);
            let applying: Vec<&toml::Value> = own.into_iter().chain(cfgs).collect();
            // The runner: the applying tables', else any target's.
            let any = targets.into_iter().flatten().map(|(_, t)| t);
            let runner_chip = applying
                .iter()
                .copied()
                .chain(any)
                .filter_map(|t| t.get("runner"))
                .find_map(chip_of_runner);
            let mut rustflags = words(v.get("build").and_then(|b| b.get("rustflags")));
            for t in &applying {
                rustflags.extend(words(t.get("rustflags")));
            }
            return Ok(CargoConfig {
                target,
                runner_chip,
                path: Some(path),
                rustflags,
                release_profile: release_profile(&v),
            });
        }
    }
    Ok(CargoConfig::default())
}

/// The `[profile.release]` table of a Cargo manifest or config.
pub fn release_profile(v: &toml::Value) -> Option<toml::Value> {
    v.get("profile")?.get("release").cloned()
}

/// The last `-C KEY=VALUE`'s value of `rustflags` then `env_flags` (the last one wins for rustc);
/// for `debuginfo`, `-g` too (rustc's `-C debuginfo=2`).
pub fn rustflags_codegen(rustflags: &[String], env_flags: &str, key: &str) -> Option<String> {
    codegen_options(rustflags, env_flags)
        .into_iter()
        .filter_map(|o| match o {
            "-g" if key == "debuginfo" => Some("2"),
            o => o.strip_prefix(key)?.strip_prefix('='),
        })
        .next_back()
        .map(str::to_string)
}

/// The words of a cargo string-or-array setting.
fn words(v: Option<&toml::Value>) -> Vec<String> {
    match v {
        Some(toml::Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(toml::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The flags of `rustflags` then `env_flags` as `-C` values (`-C x`, `-Cx`).
fn codegen_options<'a>(rustflags: &'a [String], env_flags: &'a str) -> Vec<&'a str> {
    let flags: Vec<&str> = rustflags
        .iter()
        .map(String::as_str)
        .chain(env_flags.split_whitespace())
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(f) = flags.get(i) {
        match f.strip_prefix("-C") {
            Some("") => {
                out.extend(flags.get(i + 1).copied());
                i += 2;
            }
            Some(v) => {
                out.push(v);
                i += 1;
            }
            None => {
                out.push(f);
                i += 1;
            }
        }
    }
    out
}

/// The last `target-cpu=X` of the flags, if `X` is a plain core name (letters, digits, `-`,
/// `_`, `.`, `+`: what goes into a bench firmware's config and a folder name).
pub fn target_cpu(rustflags: &[String], env_flags: &str) -> Option<String> {
    let cpu = codegen_options(rustflags, env_flags)
        .into_iter()
        .filter_map(|f| f.strip_prefix("target-cpu="))
        .next_back()?;
    let plain = !cpu.is_empty()
        && cpu.len() <= 64
        && cpu
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c));
    plain.then(|| cpu.to_string())
}

/// What a firmware built for `target` with `rustflags` (and the `RUSTFLAGS`-style `env_flags`)
/// should be told about the kernels' instruction sets: on `thumbv8m.main` (Cortex-M33, M35P,
/// M55, M85) the DSP and Helium (MVE) paths are compiled only for a named core, which the Rust
/// target alone does not give, so without `-C target-cpu` (or `+dsp` / `+mve`) the generated
/// crate runs the portable path (correct, slower). `None` when there is nothing to say.
pub fn kernel_hint(target: Option<&str>, rustflags: &[String], env_flags: &str) -> Option<String> {
    let target = target?;
    if !target.starts_with("thumbv8m.main") {
        return None;
    }
    let names_core = codegen_options(rustflags, env_flags).iter().any(|f| {
        f.starts_with("target-cpu=")
            || (f.starts_with("target-feature=") && (f.contains("+dsp") || f.contains("+mve")))
    });
    if names_core {
        return None;
    }
    Some(format!(
        "this firmware builds {target} without naming its core, so the generated crate runs the \
         kernels' portable path (correct, but on the NanoNAS sample twice the instructions of \
         the DSP path and five times those of the Helium one). \
         Name the core in .cargo/config.toml:\n\n  [target.{target}]\n  rustflags = [\"-C\", \
         \"target-cpu=cortex-m33\"]   # or cortex-m35p; cortex-m55 or cortex-m85 for Helium (MVE)\n\n\
         (keep the flags already there, such as \"-C\", \"link-arg=-Tlink.x\")"
    ))
}

/// `--chip X` or `--chip=X` of a runner given as a string or an array of words.
pub fn chip_of_runner(runner: &toml::Value) -> Option<String> {
    let words: Vec<String> = match runner {
        toml::Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        toml::Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => return None,
    };
    if !words.iter().any(|w| w.ends_with("probe-rs")) {
        return None;
    }
    let mut it = words.iter();
    while let Some(w) = it.next() {
        if w == "--chip" {
            return it.next().cloned();
        }
        if let Some(c) = w.strip_prefix("--chip=") {
            return Some(c.to_string());
        }
    }
    None
}

/// The commented default section `cargo tinynas init` writes, with the chip filled in when the
/// runner line names one.
/// `emulated`: the QEMU board of the chip's core and a description of it, when the chip is known.
pub fn default_section(
    package: &str,
    chip: Option<&str>,
    emulated: Option<(&str, &str)>,
) -> String {
    let chip_line = match chip {
        Some(c) => format!("# chip = \"{c}\"          # taken from the probe-rs runner line"),
        None => {
            "# chip = \"STM32F746NGHx\" # as probe-rs names it; default: the runner line".into()
        }
    };
    let board_lines = match emulated {
        Some((board, core)) => format!(
            "# Where candidates are measured: the chip through probe-rs when a debug probe is\n\
             # connected, else {board} ({core}) under QEMU, linked for the chip's RAM and flash.\n\
             # Name a board to always measure there (qemu-m0, qemu-m0-an385, qemu-m3,\n\
             # qemu-m3-an385, qemu-m4, qemu-m7, qemu-m55):\n\
             # board = \"{board}\""
        ),
        None => "# Where candidates are measured: a QEMU board (qemu-m0, qemu-m0-an385, qemu-m3,\n\
                 # qemu-m3-an385, qemu-m4, qemu-m7, qemu-m55), or leave it out to use the chip\n\
                 # through probe-rs (emulating its core when no probe is connected).\n\
                 board = \"qemu-m4\""
            .to_string(),
    };
    format!(
        r#"
[package.metadata.tinynas]
# The labelled images: a folder per class (or train/ val/ test/ folders of those).
data = "data"
# Model input: height x width x channels (1 = grey, 3 = RGB). Images are resized to it.
input = "32x32x3"
{board_lines}
{chip_line}
# Budgets. SRAM and flash default to the chip's (or memory.x's) minus what the firmware keeps.
ram-reserve = 8192        # bytes of SRAM kept for the rest of the firmware
flash-reserve = 32768     # bytes of flash kept for the rest of the firmware
# max-ram = 20480         # or an explicit budget for the model, in bytes
# max-flash = 65536
# max-latency-ms = 100.0  # per inference, at clock-hz
# clock-hz = 64000000     # the core clock your firmware sets, in Hz (needed with max-latency-ms)
# The search: nanonas (the published climb) or evolve (wider space, predicted latency).
strategy = "nanonas"
seed = 1
proxy-epochs = 3          # training epochs of each candidate
final-epochs = 30         # training epochs of the winner
# crate-name = "{package}-model"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_mean_nothing_are_refused_with_their_key() {
        let dir =
            std::env::temp_dir().join(format!("tinynas-config-values-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = dir.join("Cargo.toml");
        for (line, key) in [
            ("max-ram = 0", "max-ram = 0"),
            ("max-flash = 0", "max-flash = 0"),
            ("clock-hz = 0", "clock-hz = 0"),
            ("proxy-epochs = 0", "proxy-epochs = 0"),
            ("final-epochs = 0", "final-epochs = 0"),
            ("max-latency-ms = -1.0", "max-latency-ms = -1"),
            ("max-latency-ms = nan", "max-latency-ms = NaN"),
        ] {
            std::fs::write(
                &manifest,
                format!("[package]\nname = \"x\"\n[package.metadata.tinynas]\n{line}\n"),
            )
            .unwrap();
            let e = read(&manifest, None).unwrap_err().to_string();
            assert!(
                e.contains(key) && e.contains("remove the key"),
                "{line}: {e}"
            );
        }
        std::fs::write(
            &manifest,
            "[package]\nname = \"x\"\n[package.metadata.tinynas]\nmax-ram = 1\nclock-hz = 1\nmax-latency-ms = 0.5\n",
        )
        .unwrap();
        assert!(read(&manifest, None).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn armv8m_mainline_without_a_core_is_told_to_name_it() {
        let w = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let t = Some("thumbv8m.main-none-eabihf");
        let hint = kernel_hint(t, &w("-C link-arg=-Tlink.x"), "").expect("a hint");
        assert!(hint.contains("target-cpu=cortex-m33"), "{hint}");
        assert!(
            hint.contains("[target.thumbv8m.main-none-eabihf]"),
            "{hint}"
        );
        for named in [
            "-C target-cpu=cortex-m55",
            "-Ctarget-cpu=cortex-m33",
            "-C target-feature=+mve",
        ] {
            assert_eq!(kernel_hint(t, &w(named), ""), None, "{named}");
        }
        assert_eq!(kernel_hint(t, &[], "-C target-cpu=cortex-m85"), None);
        // Targets whose kernels need no flag, and no target at all.
        assert_eq!(kernel_hint(Some("thumbv7em-none-eabihf"), &[], ""), None);
        assert_eq!(kernel_hint(Some("thumbv6m-none-eabi"), &[], ""), None);
        assert_eq!(kernel_hint(None, &[], ""), None);
        // The core a bench firmware is then built for: the last one named, plain names only.
        assert_eq!(
            target_cpu(&w("-C target-cpu=cortex-m33"), "-Ctarget-cpu=cortex-m55").as_deref(),
            Some("cortex-m55")
        );
        assert_eq!(target_cpu(&w("-C link-arg=-Tlink.x"), ""), None);
        assert_eq!(target_cpu(&w("-C target-cpu=../../x\""), ""), None);
    }

    #[test]
    fn rustflags_of_the_built_target_are_read() {
        let dir = std::env::temp_dir().join(format!("tinynas-rustflags-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".cargo")).unwrap();
        std::fs::write(
            dir.join(".cargo/config.toml"),
            "[build]\ntarget = \"thumbv8m.main-none-eabihf\"\nrustflags = \"-C opt-level=s\"\n\n\
             [target.thumbv8m.main-none-eabihf]\nrustflags = [\"-C\", \"target-cpu=cortex-m55\"]\n\n\
             [target.thumbv7em-none-eabihf]\nrustflags = [\"-C\", \"not-this\"]\n",
        )
        .unwrap();
        let c = cargo_config(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            c.rustflags,
            ["-C", "opt-level=s", "-C", "target-cpu=cortex-m55"]
        );
        assert_eq!(kernel_hint(c.target.as_deref(), &c.rustflags, ""), None);
    }

    #[test]
    fn unknown_keys_and_wrong_types_point_at_the_key() {
        let dir = std::env::temp_dir().join(format!("tinynas-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("Cargo.toml");
        std::fs::write(
            &p,
            "[package]\nname = \"fw\"\n\n[package.metadata.tinynas]\ndata = \"imgs\"\nbudget = 3\n",
        )
        .unwrap();
        let e = read(&p, None).unwrap_err().to_string();
        assert!(e.contains("line 6"), "{e}");
        assert!(e.contains("unknown field `budget`"), "{e}");
        assert!(e.contains("max-ram"), "lists the known keys: {e}");
        std::fs::write(
            &p,
            "[package]\nname = \"fw\"\n[package.metadata.tinynas]\nseed = \"one\"\n",
        )
        .unwrap();
        let e = read(&p, None).unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("seed"), "{e}");
        // The default section parses and holds what it says: without a chip, the default
        // board; with one, no board (the chip, emulated on its core without a probe).
        for (chip, emulated, board) in [
            (None, None, Some("qemu-m4")),
            (
                Some("STM32G0B1RETx"),
                Some(("qemu-m0-an385", "Cortex-M0+")),
                None,
            ),
        ] {
            let section = default_section("fw", chip, emulated);
            std::fs::write(&p, format!("[package]\nname = \"fw\"\n{section}")).unwrap();
            let (c, origin) = read(&p, None).unwrap();
            assert_eq!(origin, Origin::Package);
            assert_eq!(c.board.as_deref(), board, "{section}");
            assert_eq!(c.ram_reserve, Some(8192));
            assert_eq!(c.proxy_epochs, Some(3));
            if let Some((b, _)) = emulated {
                assert!(section.contains(&format!("# board = \"{b}\"")), "{section}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn runner_lines() {
        let s = |t: &str| chip_of_runner(&toml::Value::String(t.into()));
        assert_eq!(
            s("probe-rs run --chip STM32F746NGHx --connect-under-reset"),
            Some("STM32F746NGHx".into())
        );
        assert_eq!(
            s("probe-rs run --chip=nRF52840_xxAA"),
            Some("nRF52840_xxAA".into())
        );
        assert_eq!(s("qemu-system-arm -machine mps2-an386"), None);
        let arr = toml::Value::Array(vec![
            "probe-rs".into(),
            "run".into(),
            "--chip".into(),
            "RP2040".into(),
        ]);
        assert_eq!(chip_of_runner(&arr), Some("RP2040".into()));
    }
}
