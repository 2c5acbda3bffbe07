//! The user's firmware project: its package (through `cargo metadata`), the `tinynas` table of its
//! manifest, the build target and probe-rs runner line of `.cargo/config.toml`, the RAM and FLASH
//! of its `memory.x`, and from those the budgets a search must keep to.

pub mod config;
pub mod memory_x;

use std::path::{Path, PathBuf};

pub use config::{CargoConfig, Config, Origin};

use crate::board::BoardChoice;
use crate::chip::MemoryLayout;
use crate::data::ImageShape;

/// Defaults for what the `tinynas` table leaves out.
pub const DEFAULT_RAM_RESERVE: u64 = 8 * 1024;
pub const DEFAULT_FLASH_RESERVE: u64 = 32 * 1024;
pub const DEFAULT_BOARD: &str = "qemu-m4";

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("cargo metadata failed: {0}")]
    Metadata(String),
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("{path}: {source}")]
    MemoryX {
        path: PathBuf,
        source: memory_x::MemoryXError,
    },
    #[error("[{table}] {key}: {message}")]
    Value {
        table: &'static str,
        key: &'static str,
        message: String,
    },
    #[error("{0}")]
    Package(String),
    #[error("{model} does not fit this project: {why}; to use this model, {fix}; to make one for the project, train it (`cargo tinynas search`, or `train` with this data and input)")]
    ModelMismatch {
        model: String,
        why: String,
        /// What to change in the project to use the model as it is.
        fix: String,
    },
}

/// Budgets for the model, with where each one comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Budgets {
    pub ram_bytes: u64,
    pub flash_bytes: u64,
    /// Latency per inference in core cycles (instructions on an emulated board), if set.
    pub latency_cycles: Option<u64>,
    /// The core clock (`clock-hz`), for latencies in milliseconds.
    pub clock_hz: Option<u64>,
    pub explain: Vec<String>,
}

impl Budgets {
    /// What a measurement exceeds, one phrase per budget (`peak SRAM 9000 > 8192 bytes`), empty
    /// when it fits; `unit` names the latency's unit ("cycles" or "instructions").
    pub fn check(
        &self,
        peak_sram_bytes: u64,
        flash_bytes: u64,
        latency: u64,
        unit: &str,
    ) -> Vec<String> {
        let mut over = Vec::new();
        if peak_sram_bytes > self.ram_bytes {
            over.push(format!(
                "peak SRAM {peak_sram_bytes} > {} bytes",
                self.ram_bytes
            ));
        }
        if flash_bytes > self.flash_bytes {
            over.push(format!("flash {flash_bytes} > {} bytes", self.flash_bytes));
        }
        if let Some(l) = self.latency_cycles.filter(|&l| latency > l) {
            match self.clock_hz {
                Some(hz) => over.push(format!(
                    "latency {latency} {unit} ({}) > {l} ({})",
                    ms_text(latency, hz),
                    ms_text(l, hz)
                )),
                None => over.push(format!("latency {latency} > {l} {unit}")),
            }
        }
        over
    }

    /// A latency in milliseconds at the project's clock, if `clock-hz` is set: cycles on a chip;
    /// on an emulated board, instructions counted as one cycle each.
    pub fn ms(&self, latency: u64) -> Option<f64> {
        self.clock_hz.map(|hz| latency as f64 * 1e3 / hz as f64)
    }
}

/// `latency` cycles at `hz` as milliseconds, for messages (`6.48 ms`).
pub fn ms_text(latency: u64, hz: u64) -> String {
    format!("{:.3} ms", latency as f64 * 1e3 / hz as f64)
}

/// A latency in ms at a clock, said as such: `6.651 ms at 64 MHz`, with `, one instruction per
/// cycle` when `unit` is instructions (an emulated board's count).
pub fn latency_at_clock(latency: u64, hz: u64, unit: &str) -> String {
    format!(
        "{} at {}{}",
        ms_text(latency, hz),
        clock_text(hz),
        if unit == "instructions" {
            ", one instruction per cycle"
        } else {
            ""
        }
    )
}

/// `hz` for people: `216 MHz`, `32.768 kHz`.
pub fn clock_text(hz: u64) -> String {
    if hz >= 1_000_000 {
        format!("{} MHz", hz as f64 / 1e6)
    } else if hz >= 1_000 {
        format!("{} kHz", hz as f64 / 1e3)
    } else {
        format!("{hz} Hz")
    }
}

/// A firmware project, resolved.
#[derive(Debug, Clone)]
pub struct Project {
    pub name: String,
    pub manifest_path: PathBuf,
    pub dir: PathBuf,
    pub workspace_manifest: PathBuf,
    pub config: Config,
    pub origin: Origin,
    pub cargo: CargoConfig,
    /// FLASH and RAM from the user's `memory.x`, when there is one next to the manifest.
    pub memory_x: Option<MemoryLayout>,
}

impl Project {
    /// Reads the package at `manifest_path` (default: the current directory's), or the workspace
    /// member named `package`.
    pub fn load(manifest_path: Option<&Path>, package: Option<&str>) -> Result<Self, ProjectError> {
        let mut cmd = cargo_metadata::MetadataCommand::new();
        cmd.no_deps();
        if let Some(p) = manifest_path {
            cmd.manifest_path(p);
        }
        let meta = match cmd.exec() {
            Ok(m) => m,
            // A generated model crate that was deleted (or not generated yet on this checkout)
            // breaks `cargo metadata`; the package's own manifest is enough to go on, and the
            // search or `generate` writes the crate again.
            Err(e) if package.is_none() => {
                return Self::from_manifest(manifest_path, &e.to_string());
            }
            Err(e) => return Err(ProjectError::Metadata(e.to_string())),
        };
        let pkg = match package {
            Some(name) => meta
                .workspace_packages()
                .into_iter()
                .find(|p| p.name.as_str() == name)
                .ok_or_else(|| {
                    let names: Vec<_> = meta
                        .workspace_packages()
                        .iter()
                        .map(|p| p.name.to_string())
                        .collect();
                    ProjectError::Package(format!(
                        "no package {name:?} in this workspace (members: {})",
                        names.join(", ")
                    ))
                })?,
            None => meta.root_package().ok_or_else(|| {
                ProjectError::Package(
                    "this is a virtual workspace: choose the firmware package with -p NAME".into(),
                )
            })?,
        };
        let manifest: PathBuf = pkg.manifest_path.clone().into();
        let dir = manifest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let workspace_manifest: PathBuf = meta.workspace_root.join("Cargo.toml").into();
        let (config, origin) = config::read(&manifest, Some(&workspace_manifest))?;
        let cargo = config::cargo_config(&dir)?;
        let memory_x = read_memory_x(&dir)?;
        Ok(Project {
            name: pkg.name.to_string(),
            manifest_path: manifest,
            dir,
            workspace_manifest,
            config,
            origin,
            cargo,
            memory_x,
        })
    }

    /// The project read from its manifest alone, when `cargo metadata` fails because a path
    /// dependency (the generated crate) is missing; any other failure is reported as it was.
    fn from_manifest(
        manifest_path: Option<&Path>,
        metadata_error: &str,
    ) -> Result<Self, ProjectError> {
        let manifest = manifest_path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("Cargo.toml"));
        let fail = || ProjectError::Metadata(metadata_error.to_string());
        if !metadata_error.contains("failed to load manifest for dependency") {
            return Err(fail());
        }
        let manifest = manifest.canonicalize().map_err(|_| fail())?;
        let text = std::fs::read_to_string(&manifest).map_err(|_| fail())?;
        let v: toml::Value = toml::from_str(&text).map_err(|_| fail())?;
        let name = v
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .ok_or_else(fail)?
            .to_string();
        let dir = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
        let (config, origin) = config::read(&manifest, None)?;
        let cargo = config::cargo_config(&dir)?;
        let memory_x = read_memory_x(&dir)?;
        Ok(Project {
            name,
            workspace_manifest: manifest.clone(),
            manifest_path: manifest,
            dir,
            config,
            origin,
            cargo,
            memory_x,
        })
    }

    /// The data folder, relative to the manifest.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join(
            self.config
                .data
                .clone()
                .unwrap_or_else(|| PathBuf::from("data")),
        )
    }

    /// The model input shape (default 32x32x3).
    pub fn input(&self) -> Result<ImageShape, ProjectError> {
        match &self.config.input {
            None => Ok(ImageShape { h: 32, w: 32, c: 3 }),
            Some(s) => parse_shape(s).map_err(|message| ProjectError::Value {
                table: "package.metadata.tinynas",
                key: "input",
                message,
            }),
        }
    }

    /// Where this project's settings are written: the `tinynas` table and its manifest.
    fn config_table(&self) -> String {
        match self.origin {
            config::Origin::Workspace => format!(
                "[workspace.metadata.tinynas] of {}",
                self.workspace_manifest.display()
            ),
            config::Origin::Package | config::Origin::Defaults => format!(
                "[package.metadata.tinynas] of {}",
                self.manifest_path.display()
            ),
        }
    }

    /// Checks that `model` (from the file `name`) is one for this project: it takes the
    /// project's `input` and, where the data folder has class folders, it has the data's classes
    /// in the data's order (a model for other images would pass `verify` on random inputs).
    pub fn check_model(
        &self,
        model: &tinynas_model::Model,
        name: &str,
    ) -> Result<(), ProjectError> {
        let mismatch = |why: String, fix: String| ProjectError::ModelMismatch {
            model: name.to_string(),
            why,
            fix,
        };
        let want = self.input()?;
        let s = model.input_shape;
        if (s.h, s.w, s.c) != (want.h, want.w, want.c) {
            return Err(mismatch(
                format!(
                    "it takes {}x{}x{} images, the project's input is {}x{}x{}",
                    s.h, s.w, s.c, want.h, want.w, want.c
                ),
                format!(
                    "set `input = \"{}x{}x{}\"` in {}",
                    s.h,
                    s.w,
                    s.c,
                    self.config_table()
                ),
            ));
        }
        let data = self.data_dir();
        if let Ok(classes) = crate::data::folder::class_names(&data) {
            if classes.len() >= 2 {
                let labels = &model.labels;
                if model.classes() != classes.len() || (!labels.is_empty() && *labels != classes) {
                    return Err(mismatch(
                        format!(
                            "its {} classes ({}) are not the {} classes of {} ({})",
                            model.classes(),
                            if labels.is_empty() {
                                "unnamed".to_string()
                            } else {
                                labels.join(", ")
                            },
                            classes.len(),
                            data.display(),
                            classes.join(", ")
                        ),
                        format!(
                            "point `data` in {} at a folder with a folder per class of the model, in its order",
                            self.config_table()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// What to tell this firmware about the kernels' instruction sets (see
    /// [`config::kernel_hint`]), from its target, its `.cargo/config.toml` rustflags and the
    /// `RUSTFLAGS` / `CARGO_TARGET_<TRIPLE>_RUSTFLAGS` environment.
    pub fn kernel_hint(&self) -> Option<String> {
        let target = self.cargo.target.as_deref()?;
        config::kernel_hint(Some(target), &self.cargo.rustflags, &self.env_rustflags())
    }

    /// The `-C target-cpu` this firmware is built with: the last one in its `.cargo/config.toml`
    /// rustflags or the `RUSTFLAGS` / `CARGO_TARGET_<TRIPLE>_RUSTFLAGS` environment (a value that
    /// is not a plain core name is ignored).
    pub fn target_cpu(&self) -> Option<String> {
        let env = self.env_rustflags();
        config::target_cpu(&self.cargo.rustflags, &env)
    }

    /// The release profile this firmware is built with, as far as it changes the code the bench
    /// measures ([`crate::firmware::Profile`]): the bench firmware of `search`, `verify` and
    /// `generate --measure` is built with it, so their figures are the firmware's. With a line
    /// saying where each setting comes from.
    pub fn profile(&self) -> Result<(crate::firmware::Profile, String), ProjectError> {
        let (opt_level, opt_from) = self.opt_level()?;
        let (debug, debug_from) = self.debug_info()?;
        let rustflags = "the rustflags";
        let (packages, packages_from) = self.packages(
            (!opt_from.starts_with(rustflags)).then_some(opt_level),
            (!debug_from.starts_with(rustflags)).then_some(debug),
        )?;
        let mut from = format!(
            "opt-level {} ({opt_from}), debug = {} ({debug_from})",
            opt_level.name(),
            debug.toml()
        );
        if !packages.is_empty() {
            from.push_str(&format!("; {}", packages_from.join("; ")));
        }
        Ok((
            crate::firmware::Profile {
                opt_level,
                debug,
                packages,
            },
            from,
        ))
    }

    /// The per-package overrides (`[profile.release.package.NAME]`, in `.cargo/config.toml` and
    /// the root manifest, cargo's order) of `opt-level` and `debug` that reach the model's code:
    /// the generated crate's, `tinynas-runtime`'s and `tinynas-kernels`'s by name, and `"*"`'s
    /// where those are not members of the firmware's workspace (cargo applies `"*"` to the
    /// packages outside it; [`Self::model_crate_is_member`]). Each value given only where it
    /// differs from the profile's own: `opt_level` / `debug`, `None` where the rustflags set it
    /// for every crate (no override reaches it then). With a line per value saying where it is.
    fn packages(
        &self,
        opt_level: Option<crate::firmware::OptLevel>,
        debug: Option<crate::firmware::DebugInfo>,
    ) -> Result<(crate::firmware::Packages, Vec<String>), ProjectError> {
        use crate::firmware::{DebugInfo, OptLevel, PackageProfile, Packages};
        let tables = self.override_tables();
        let member = self.model_crate_is_member();
        let mut from = Vec::new();
        let crate_name = self.crate_name();
        let mut part = |package: &str| -> Result<PackageProfile, ProjectError> {
            // A named table's key, else "*"'s (outside the workspace): config's before the
            // manifest's in each.
            let find = |key: &str| {
                let mut names = vec![package];
                if !member {
                    names.push("*");
                }
                names.into_iter().find_map(|name| {
                    tables.iter().find_map(|(t, where_)| {
                        let v = t.get(name)?.get(key)?;
                        Some((
                            v.to_string(),
                            format!("[profile.release.package.{}] in {where_}", quoted(name)),
                        ))
                    })
                })
            };
            let mut p = PackageProfile::default();
            if let (Some(global), Some((v, at))) = (opt_level, find("opt-level")) {
                let o = OptLevel::parse(&v).ok_or_else(|| {
                    ProjectError::Package(format!(
                        "opt-level {v} in {at} is not one of 0, 1, 2, 3, \"s\", \"z\": fix it there (cargo would refuse it too)"
                    ))
                })?;
                if o != global {
                    from.push(format!("{package} opt-level {} ({at})", o.name()));
                    p.opt_level = Some(o);
                }
            }
            if let (Some(global), Some((v, at))) = (debug, find("debug")) {
                let d = DebugInfo::parse(&v).ok_or_else(|| {
                    ProjectError::Package(format!(
                        "debug {v} in {at} is not one of {}: fix it there (cargo would refuse it too)",
                        DebugInfo::accepted(true)
                    ))
                })?;
                if d != global {
                    from.push(format!("{package} debug = {} ({at})", d.toml()));
                    p.debug = Some(d);
                }
            }
            Ok(p)
        };
        let packages = Packages {
            model: part(&crate_name)?,
            runtime: part("tinynas-runtime")?,
            kernels: part("tinynas-kernels")?,
        };
        Ok((packages, from))
    }

    /// The `[profile.release.package]` tables of `.cargo/config.toml` and the root manifest, in
    /// the order cargo takes their keys (config's first), with where each is.
    fn override_tables(&self) -> Vec<(toml::Value, String)> {
        let mut out = Vec::new();
        let package =
            |release: Option<&toml::Value>| release.and_then(|r| r.get("package")).cloned();
        if let (Some(t), Some(path)) = (
            package(self.cargo.release_profile.as_ref()),
            &self.cargo.path,
        ) {
            out.push((t, path.display().to_string()));
        }
        if let Some(t) = package(self.manifest_release_profile().as_ref()) {
            out.push((t, self.workspace_manifest.display().to_string()));
        }
        out
    }

    /// Whether the generated crate (and the runtime and kernels it vendors, in its folder) is a
    /// member of the firmware's workspace, as cargo decides it for a path dependency: the root
    /// manifest has a `[workspace]` table and the crate's folder is inside the workspace's and
    /// not under one of its `exclude` paths. `[profile.release.package."*"]` reaches it only
    /// where it is not.
    pub fn model_crate_is_member(&self) -> bool {
        let Some(root) = self.workspace_manifest.parent() else {
            return false;
        };
        let Some(workspace) = self
            .root_manifest()
            .and_then(|v| v.get("workspace").cloned())
        else {
            return false;
        };
        let dir = self.dir.join(self.crate_name());
        let excluded = workspace
            .get("exclude")
            .and_then(|e| e.as_array())
            .is_some_and(|paths| {
                paths
                    .iter()
                    .filter_map(|p| p.as_str())
                    .any(|p| dir.starts_with(root.join(p)))
            });
        dir.starts_with(root) && !excluded
    }

    /// The `opt-level` this firmware's release build uses, and where that comes from, as cargo
    /// decides it: `-C opt-level=` in the rustflags, else `CARGO_PROFILE_RELEASE_OPT_LEVEL`, else
    /// `[profile.release]` of `.cargo/config.toml`, else of the root manifest, else 3. At `s` the
    /// example's model on qemu-m4 runs 550,040 instructions, at 3 395,360.
    pub fn opt_level(&self) -> Result<(crate::firmware::OptLevel, String), ProjectError> {
        self.codegen_setting(
            "opt-level",
            "opt-level",
            crate::firmware::OptLevel::parse,
            "0, 1, 2, 3, \"s\", \"z\"",
            crate::firmware::OptLevel::O3,
        )
    }

    /// The `debug` this firmware's release build uses, and where that comes from, as cargo
    /// decides it: `-C debuginfo=` or `-g` in the rustflags, else `CARGO_PROFILE_RELEASE_DEBUG`,
    /// else `[profile.release]` of `.cargo/config.toml`, else of the root manifest, else none.
    /// LLVM emits slightly other code with debug info, and rustc needs more memory for it
    /// ([`crate::firmware::DebugInfo`]).
    pub fn debug_info(&self) -> Result<(crate::firmware::DebugInfo, String), ProjectError> {
        self.codegen_setting(
            "debug",
            "debuginfo",
            crate::firmware::DebugInfo::parse,
            &crate::firmware::DebugInfo::accepted(true),
            crate::firmware::DebugInfo::None,
        )
    }

    /// A release profile setting `key` as cargo decides it, and where it comes from: its rustc
    /// codegen option `-C <flag>=` in the rustflags (`.cargo/config.toml`, `RUSTFLAGS`), else
    /// `CARGO_PROFILE_RELEASE_<KEY>`, else `[profile.release]` of `.cargo/config.toml`, else of
    /// the workspace's root manifest, else `default` (cargo's). A value `parse` refuses is an
    /// error naming where it is and the values cargo takes (`allowed`). Per-package overrides
    /// (`[profile.release.package.NAME]`): [`Self::profile`].
    fn codegen_setting<T>(
        &self,
        key: &str,
        flag: &str,
        parse: fn(&str) -> Option<T>,
        allowed: &str,
        default: T,
    ) -> Result<(T, String), ProjectError> {
        let found =
            match config::rustflags_codegen(&self.cargo.rustflags, &self.env_rustflags(), flag) {
                Some(v) => Some((v, format!("the rustflags (-C {flag})"))),
                None => self.release_setting(key),
            };
        let Some((value, from)) = found else {
            return Ok((default, "cargo's default for release builds".into()));
        };
        match parse(&value) {
            Some(v) => Ok((v, from)),
            None => Err(ProjectError::Package(format!(
                "{key} {value} in {from} is not one of {allowed}: fix it there (cargo would refuse it too)"
            ))),
        }
    }

    /// `[profile.release] KEY` as cargo decides it (below any rustflags): the environment's
    /// `CARGO_PROFILE_RELEASE_<KEY>`, else `.cargo/config.toml`'s `[profile.release]`, else the
    /// workspace's root manifest's. The value as written (`3`, `"s"`, `true`) and where it is.
    fn release_setting(&self, key: &str) -> Option<(String, String)> {
        let env = format!(
            "CARGO_PROFILE_RELEASE_{}",
            key.to_ascii_uppercase().replace('-', "_")
        );
        if let Ok(v) = std::env::var(&env) {
            return Some((v, env));
        }
        let in_config = self.cargo.release_profile.as_ref().and_then(|t| t.get(key));
        if let (Some(v), Some(path)) = (in_config, &self.cargo.path) {
            return Some((
                v.to_string(),
                format!("{} [profile.release]", path.display()),
            ));
        }
        let v = self.manifest_release_profile()?.get(key)?.to_string();
        Some((
            v,
            format!("{} [profile.release]", self.workspace_manifest.display()),
        ))
    }

    /// The workspace's root manifest's `[profile.release]`, read each time it is asked for (a few
    /// times a command); none where the manifest does not parse.
    fn manifest_release_profile(&self) -> Option<toml::Value> {
        config::release_profile(&self.root_manifest()?)
    }

    /// The workspace's root manifest, parsed, read each time it is asked for; none where it
    /// does not parse.
    fn root_manifest(&self) -> Option<toml::Value> {
        let text = std::fs::read_to_string(&self.workspace_manifest).ok()?;
        toml::from_str(&text).ok()
    }

    /// Where this firmware's release build compiles the model differently from the bench
    /// firmware that measured it: the bench is built with `lto = true` and `codegen-units = 1`
    /// (the code size it measures assumes them; cargo's release default is `lto = false` with 16
    /// codegen units); its `opt-level` and `debug` are the firmware's own ([`Self::profile`]). A
    /// line saying what to add, or `None` where the firmware sets both as the bench does; it
    /// also names the settings of per-package overrides (`[profile.release.package.X]`) of the
    /// model's, runtime's or kernels' code that the bench does not reproduce (all but
    /// `opt-level` and `debug`). Read
    /// where cargo reads them: `CARGO_PROFILE_RELEASE_LTO` / `_CODEGEN_UNITS`,
    /// `.cargo/config.toml`'s `[profile.release]`, the workspace's root manifest's.
    pub fn link_note(&self) -> Option<String> {
        let read = |key: &str| {
            self.release_setting(key)
                .map(|(v, _)| v.trim().trim_matches('"').to_ascii_lowercase())
        };
        let (lto, units) = (read("lto"), read("codegen-units"));
        let has = |v: &Option<String>, default: &str| {
            v.clone()
                .map_or(format!("{default} (cargo's default)"), |v| v)
        };
        // (the bench's setting, this firmware's, whether they agree)
        let settings = [
            (
                "lto = true",
                format!("lto = {}", has(&lto, "false")),
                matches!(lto.as_deref(), Some("true" | "fat")),
            ),
            (
                "codegen-units = 1",
                format!("codegen-units = {}", has(&units, "16")),
                units.as_deref() == Some("1"),
            ),
        ];
        let overrides = self.package_overrides();
        let overrides_note = (!overrides.is_empty()).then(|| {
            format!(
                "{}: the bench firmware takes a per-package override's opt-level and debug only, so it measures other code than this firmware runs (remove the setting for the figures to hold)",
                overrides.join("; ")
            )
        });
        if settings.iter().all(|s| s.2) {
            return overrides_note;
        }
        let list = |items: Vec<String>| match items.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => items.concat(),
        };
        let bench = list(settings.iter().map(|s| s.0.to_string()).collect());
        let firmware = list(settings.iter().map(|s| s.1.clone()).collect());
        let set = list(
            settings
                .iter()
                .filter(|s| !s.2)
                .map(|s| s.0.to_string())
                .collect(),
        );
        let note = format!(
            "the bench firmware that measures the model is built with {bench}; this firmware's [profile.release] has {firmware}: set {set} there for the same code (otherwise the model takes other flash and time than measured)"
        );
        Some(match overrides_note {
            Some(o) => format!("{note}; also, {o}"),
            None => note,
        })
    }

    /// The per-package overrides of the release profile (`[profile.release.package.<name>]`)
    /// that change the code of the packages holding the model's code (the generated crate, the
    /// runtime, the kernels, or `"*"` where these are outside the workspace,
    /// [`Self::model_crate_is_member`]) in ways the bench firmware does not reproduce (it does
    /// `opt-level` and `debug`, [`Self::profile`]), each as `[profile.release.package.NAME] KEY =
    /// VALUE (where)`, read in `.cargo/config.toml` and the workspace's root manifest.
    fn package_overrides(&self) -> Vec<String> {
        const NOT_REPRODUCED: [&str; 3] = ["codegen-units", "overflow-checks", "debug-assertions"];
        let crate_name = self.crate_name();
        let mut packages = vec![crate_name.as_str(), "tinynas-runtime", "tinynas-kernels"];
        if !self.model_crate_is_member() {
            packages.push("*");
        }
        let mut out = Vec::new();
        for (table, from) in self.override_tables() {
            let Some(table) = table.as_table() else {
                continue;
            };
            for (name, settings) in table {
                if !packages.contains(&name.as_str()) {
                    continue;
                }
                for key in NOT_REPRODUCED {
                    if let Some(v) = settings.get(key) {
                        out.push(format!(
                            "[profile.release.package.{}] {key} = {v} ({from})",
                            quoted(name)
                        ));
                    }
                }
            }
        }
        out
    }

    fn env_rustflags(&self) -> String {
        let Some(target) = self.cargo.target.as_deref() else {
            return std::env::var("RUSTFLAGS").unwrap_or_default();
        };
        let key = format!(
            "CARGO_TARGET_{}_RUSTFLAGS",
            target.to_uppercase().replace(['-', '.'], "_")
        );
        [std::env::var("RUSTFLAGS"), std::env::var(key)]
            .into_iter()
            .filter_map(Result::ok)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The generated crate's name: `crate-name` in the table, else `<package>-model`.
    pub fn crate_name(&self) -> String {
        self.config
            .crate_name
            .clone()
            .unwrap_or_else(|| format!("{}-model", self.name))
    }

    /// The chip: `chip` in the table, else the runner line's `--chip`.
    pub fn chip(&self) -> Option<String> {
        self.config
            .chip
            .clone()
            .or_else(|| self.cargo.runner_chip.clone())
    }

    /// The board candidates are measured on (unless `--board` or `--chip` says otherwise):
    /// `board` in the table (linked with the chip's sizes when a chip is named), else the chip
    /// when one is named, else the default emulated board.
    pub fn board(&self) -> BoardChoice {
        match (&self.config.board, self.chip()) {
            (Some(b), chip) => BoardChoice::Emulated {
                board: b.clone(),
                chip,
            },
            (None, Some(c)) => BoardChoice::Chip(c),
            (None, None) => BoardChoice::Emulated {
                board: DEFAULT_BOARD.to_string(),
                chip: None,
            },
        }
    }

    /// Budgets from the memory the model may use: `memory` is the chip's or the emulated
    /// board's; the project's `memory.x` overrides it.
    pub fn budgets(&self, memory: &MemoryLayout) -> Result<Budgets, ProjectError> {
        let c = &self.config;
        let mem = self.memory_x.as_ref().unwrap_or(memory);
        let mut explain = Vec::new();
        let reserve = |v: Option<u64>, d: u64| v.unwrap_or(d);
        let (rr, fr) = (
            reserve(c.ram_reserve, DEFAULT_RAM_RESERVE),
            reserve(c.flash_reserve, DEFAULT_FLASH_RESERVE),
        );
        let ram_bytes = match c.max_ram {
            Some(v) => {
                explain.push(format!("SRAM {v} bytes (max-ram)"));
                v
            }
            None => {
                let v = mem.ram_length.checked_sub(rr).filter(|&v| v > 0).ok_or(
                    ProjectError::Value {
                        table: "package.metadata.tinynas",
                        key: "ram-reserve",
                        message: format!(
                            "{rr} bytes is all of the {} bytes of RAM in {}: lower it",
                            mem.ram_length, mem.source
                        ),
                    },
                )?;
                explain.push(format!(
                    "SRAM {v} bytes = {} in {} - ram-reserve {rr}",
                    mem.ram_length, mem.source
                ));
                v
            }
        };
        let flash_bytes = match c.max_flash {
            Some(v) => {
                explain.push(format!("flash {v} bytes (max-flash)"));
                v
            }
            None => {
                let v = mem.flash_length.checked_sub(fr).filter(|&v| v > 0).ok_or(
                    ProjectError::Value {
                        table: "package.metadata.tinynas",
                        key: "flash-reserve",
                        message: format!(
                            "{fr} bytes is all of the {} bytes of flash in {}: lower it",
                            mem.flash_length, mem.source
                        ),
                    },
                )?;
                explain.push(format!(
                    "flash {v} bytes = {} in {} - flash-reserve {fr}",
                    mem.flash_length, mem.source
                ));
                v
            }
        };
        let latency_cycles = match (c.max_latency_ms, c.clock_hz) {
            (None, _) => None,
            (Some(ms), _) if !(ms > 0.0 && ms.is_finite()) => {
                return Err(ProjectError::Value {
                    table: "package.metadata.tinynas",
                    key: "max-latency-ms",
                    message: format!("{ms} is not a positive number of milliseconds"),
                })
            }
            (Some(_), None) => {
                return Err(ProjectError::Value {
                    table: "package.metadata.tinynas",
                    key: "max-latency-ms",
                    message: "needs clock-hz, the core clock the firmware runs at (probe-rs's target database does not know it)".into(),
                })
            }
            (Some(ms), Some(hz)) => {
                let cycles = (ms * 1e-3 * hz as f64).round() as u64;
                explain.push(format!(
                    "latency {ms} ms = {cycles} cycles at {} (max-latency-ms, clock-hz); on an emulated board the instructions executed are compared, one cycle each",
                    clock_text(hz)
                ));
                Some(cycles)
            }
        };
        Ok(Budgets {
            ram_bytes,
            flash_bytes,
            latency_cycles,
            clock_hz: c.clock_hz,
            explain,
        })
    }
}

/// FLASH and RAM of `dir/memory.x`, if there is one.
/// A package name as a `[profile.release.package.NAME]` header writes it (`"*"` quoted).
fn quoted(name: &str) -> String {
    if name == "*" {
        "\"*\"".to_string()
    } else {
        name.to_string()
    }
}

fn read_memory_x(dir: &Path) -> Result<Option<MemoryLayout>, ProjectError> {
    let mx = dir.join("memory.x");
    if !mx.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&mx)
        .map_err(|e| ProjectError::Package(format!("cannot read {}: {e}", mx.display())))?;
    let (flash, ram) = memory_x::flash_and_ram(&text).map_err(|source| ProjectError::MemoryX {
        path: mx.clone(),
        source,
    })?;
    Ok(Some(MemoryLayout {
        flash_origin: flash.origin,
        flash_length: flash.length,
        ram_origin: ram.origin,
        ram_length: ram.length,
        source: mx.display().to_string(),
    }))
}

/// `HxWxC` with C 1 or 3.
pub fn parse_shape(s: &str) -> Result<ImageShape, String> {
    let v: Vec<usize> = s
        .split('x')
        .map(|p| {
            p.trim()
                .parse()
                .map_err(|_| format!("{s:?} is not HxWxC, e.g. 32x32x3"))
        })
        .collect::<Result<_, _>>()?;
    match v[..] {
        [h, w, c] if h > 0 && w > 0 && (c == 1 || c == 3) && h * w <= 1 << 20 => {
            Ok(ImageShape { h, w, c })
        }
        _ => Err(format!(
            "{s:?} is not HxWxC with C 1 (grey) or 3 (RGB), e.g. 32x32x3"
        )),
    }
}

/// `cargo tinynas init`: appends the commented default `[package.metadata.tinynas]` section to
/// the manifest, keeping everything else byte for byte. Refuses when the table exists.
pub fn init(manifest: &Path, package: &str, chip: Option<&str>) -> Result<String, ProjectError> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| ProjectError::Package(format!("cannot read {}: {e}", manifest.display())))?;
    let doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        ProjectError::Package(format!("{}: {e}", manifest.display()))
    })?;
    if doc
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("tinynas"))
        .is_some()
    {
        return Err(ProjectError::Package(format!(
            "{} already has [package.metadata.tinynas]: edit it there",
            manifest.display()
        )));
    }
    let facts = chip.and_then(|c| crate::board::probe::chip_facts(c).ok());
    let emulated = facts.as_ref().map(|f| {
        let board = crate::board::probe::emulated_board_for(f);
        (board, format!("the emulator of its {}", f.core))
    });
    let section = config::default_section(
        package,
        chip,
        emulated.as_ref().map(|(b, c)| (*b, c.as_str())),
    );
    let mut out = text.clone();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&section);
    // What we write must parse, and the rest must be unchanged.
    out.parse::<toml_edit::DocumentMut>().map_err(|e| {
        ProjectError::Package(format!(
            "internal error: the default section does not parse: {e}"
        ))
    })?;
    crate::fsutil::write_atomic(manifest, out.as_bytes())
        .map_err(|e| ProjectError::Package(format!("cannot write {}: {e}", manifest.display())))?;
    Ok(section)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project_dir(name: &str, manifest_extra: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tinynas-project-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::create_dir_all(dir.join(".cargo")).unwrap();
        std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            format!("[package]\nname = \"fw\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n{manifest_extra}"),
        )
        .unwrap();
        std::fs::write(
            dir.join(".cargo/config.toml"),
            "[build]\ntarget = \"thumbv7em-none-eabihf\"\n\n[target.thumbv7em-none-eabihf]\nrunner = \"probe-rs run --chip STM32F746NGHx\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("memory.x"),
            "MEMORY\n{\n  FLASH : ORIGIN = 0x08000000, LENGTH = 1024K\n  RAM : ORIGIN = 0x20010000, LENGTH = 256K\n}\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn reads_a_firmware_project_and_init_keeps_the_manifest() {
        let dir = project_dir("init", "# keep this comment\n");
        let before = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let p = Project::load(Some(&dir.join("Cargo.toml")), None).unwrap();
        assert_eq!(p.name, "fw");
        assert_eq!(p.origin, Origin::Defaults);
        assert_eq!(p.cargo.target.as_deref(), Some("thumbv7em-none-eabihf"));
        assert_eq!(p.chip().as_deref(), Some("STM32F746NGHx"));
        assert_eq!(p.board(), BoardChoice::Chip("STM32F746NGHx".into()));
        let mx = p.memory_x.clone().unwrap();
        assert_eq!((mx.ram_origin, mx.ram_length), (0x2001_0000, 256 * 1024));
        init(&p.manifest_path, &p.name, p.chip().as_deref()).unwrap();
        let after = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(
            after.starts_with(&before),
            "the manifest is only appended to"
        );
        assert!(after.contains("# chip = \"STM32F746NGHx\""));
        let again = init(&p.manifest_path, &p.name, None).unwrap_err();
        assert!(again.to_string().contains("already has"), "{again}");
        let p = Project::load(Some(&dir.join("Cargo.toml")), None).unwrap();
        assert_eq!(p.origin, Origin::Package);
        // The runner line's chip, with no board written: the chip (emulated on its core
        // without a probe).
        assert_eq!(p.board(), BoardChoice::Chip("STM32F746NGHx".into()));
        assert_eq!(p.input().unwrap(), ImageShape { h: 32, w: 32, c: 3 });
        // Budgets from memory.x (which wins over the board's memory) minus the reserves.
        let board_mem = MemoryLayout {
            flash_origin: 0,
            flash_length: 4 << 20,
            ram_origin: 0x2000_0000,
            ram_length: 4 << 20,
            source: "qemu-m4".into(),
        };
        let b = p.budgets(&board_mem).unwrap();
        assert_eq!(b.ram_bytes, 256 * 1024 - 8192);
        assert_eq!(b.flash_bytes, 1024 * 1024 - 32768);
        assert_eq!(b.latency_cycles, None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Whether one of these variables is set (a test of what the files say then cannot run).
    fn any_set(vars: &[&str]) -> bool {
        vars.iter().any(|v| std::env::var_os(v).is_some())
    }

    #[test]
    fn the_release_opt_level_is_read_where_cargo_reads_it() {
        use crate::firmware::OptLevel;
        // (Set in the environment, either would decide instead of the files.)
        if any_set(&["CARGO_PROFILE_RELEASE_OPT_LEVEL", "RUSTFLAGS"]) {
            return;
        }
        let dir = project_dir("opt", "");
        let load = || Project::load(Some(&dir.join("Cargo.toml")), None).unwrap();
        let (o, from) = load().opt_level().unwrap();
        assert_eq!(o, OptLevel::O3, "cargo's default");
        assert!(from.contains("default"), "{from}");
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            format!("{manifest}\n[profile.release]\nopt-level = \"s\"\nlto = true\n"),
        )
        .unwrap();
        let (o, from) = load().opt_level().unwrap();
        assert_eq!(o, OptLevel::S);
        assert!(from.ends_with("Cargo.toml [profile.release]"), "{from}");
        // `.cargo/config.toml`'s profile wins over the manifest's, rustflags over both.
        let config = std::fs::read_to_string(dir.join(".cargo/config.toml")).unwrap();
        std::fs::write(
            dir.join(".cargo/config.toml"),
            format!("{config}\n[profile.release]\nopt-level = 2\n"),
        )
        .unwrap();
        let (o, from) = load().opt_level().unwrap();
        assert_eq!(o, OptLevel::O2);
        assert!(from.contains("config.toml"), "{from}");
        std::fs::write(
            dir.join(".cargo/config.toml"),
            format!("{config}rustflags = [\"-C\", \"opt-level=z\"]\n\n[profile.release]\nopt-level = 2\n"),
        )
        .unwrap();
        assert_eq!(load().opt_level().unwrap().0, OptLevel::Z);
        std::fs::write(
            dir.join(".cargo/config.toml"),
            format!("{config}\n[profile.release]\nopt-level = \"fast\"\n"),
        )
        .unwrap();
        let e = load().opt_level().unwrap_err().to_string();
        assert!(e.contains("\"fast\"") && e.contains("config.toml"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_link_settings_are_read_where_cargo_reads_them() {
        if any_set(&[
            "CARGO_PROFILE_RELEASE_LTO",
            "CARGO_PROFILE_RELEASE_CODEGEN_UNITS",
            "CARGO_PROFILE_RELEASE_DEBUG",
            "RUSTFLAGS",
        ]) {
            return;
        }
        let dir = project_dir("link", "");
        let base = std::fs::read_to_string(dir.join(".cargo/config.toml")).unwrap();
        let load = || Project::load(Some(&dir.join("Cargo.toml")), None).unwrap();
        let says = |want: &str| {
            let note = load().link_note().unwrap();
            assert!(note.contains(want), "{note}");
        };
        let append = |file: &str, text: &str| {
            let path = dir.join(file);
            let old = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, format!("{old}\n{text}")).unwrap();
        };
        // The bench takes the firmware's own `debug`: cargo's default, none, until it says.
        use crate::firmware::DebugInfo;
        let debug = || load().debug_info().unwrap().0;
        assert_eq!(debug(), DebugInfo::None);
        says("built with lto = true and codegen-units = 1; this firmware's [profile.release] has lto = false (cargo's default) and codegen-units = 16 (cargo's default): set lto = true and codegen-units = 1 there");
        append(
            "Cargo.toml",
            "[profile.release]\nlto = \"thin\"\ncodegen-units = 1\ndebug = 2\n",
        );
        says("has lto = thin and codegen-units = 1: set lto = true there");
        assert_eq!(debug(), DebugInfo::Full);
        // `.cargo/config.toml`'s profile wins over the manifest's.
        append(
            ".cargo/config.toml",
            "[profile.release]\nlto = \"fat\"\ndebug = \"limited\"\n",
        );
        assert_eq!(load().link_note(), None);
        assert_eq!(debug(), DebugInfo::Limited);
        // Per-package overrides of the model's code: their opt-level and debug go into the
        // bench's profile, anything else is said; another package's are neither.
        use crate::firmware::{OptLevel, PackageProfile};
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        append(
            "Cargo.toml",
            "[profile.release.package.tinynas-kernels]\nopt-level = \"s\"\ncodegen-units = 4\n[profile.release.package.tinynas-runtime]\nopt-level = 3\n[profile.release.package.serde]\nopt-level = 1\ncodegen-units = 2\n",
        );
        append(
            ".cargo/config.toml",
            "[profile.release.package.\"*\"]\ndebug = false\ncodegen-units = 8\n",
        );
        // The generated crate (fw-model, in the firmware's folder) is a member of this
        // workspace: "*" does not reach it, nor the runtime and kernels it vendors.
        assert!(load().model_crate_is_member());
        let (profile, from) = load().profile().unwrap();
        let kernels_s = PackageProfile {
            opt_level: Some(OptLevel::S),
            debug: None,
        };
        // The runtime's opt-level 3 is the profile's own: nothing to do.
        assert_eq!(
            profile.packages,
            crate::firmware::Packages {
                kernels: kernels_s,
                ..Default::default()
            }
        );
        assert!(
            from.contains(
                "tinynas-kernels opt-level s ([profile.release.package.tinynas-kernels] in "
            ) && from.ends_with("Cargo.toml)"),
            "{from}"
        );
        let note = load().link_note().unwrap();
        assert!(
            note.starts_with("[profile.release.package.tinynas-kernels] codegen-units = 4 ("),
            "{note}"
        );
        assert!(
            note.contains("measures other code than this firmware runs"),
            "{note}"
        );
        for not in ["serde", "\"*\"", "opt-level = "] {
            assert!(!note.contains(not), "{not}: {note}");
        }
        // Outside a workspace "*" reaches them all (config's, with the manifest's named
        // kernels setting before it), and is said where the bench does not follow it.
        std::fs::write(
            dir.join("Cargo.toml"),
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .unwrap()
                .replace("[workspace]\n", ""),
        )
        .unwrap();
        assert!(!load().model_crate_is_member());
        let debug_none = PackageProfile {
            opt_level: None,
            debug: Some(DebugInfo::None),
        };
        assert_eq!(
            load().profile().unwrap().0.packages,
            crate::firmware::Packages {
                model: debug_none,
                runtime: debug_none,
                kernels: PackageProfile {
                    opt_level: Some(OptLevel::S),
                    debug: Some(DebugInfo::None),
                },
            }
        );
        let note = load().link_note().unwrap();
        // `.cargo/config.toml`'s first, then the manifest's.
        assert!(
            note.starts_with("[profile.release.package.\"*\"] codegen-units = 8 ("),
            "{note}"
        );
        assert!(note.contains("[profile.release.package.tinynas-kernels] codegen-units = 4 ("));
        // The rustflags' -C opt-level is every crate's: no override reaches the model then.
        let config = std::fs::read_to_string(dir.join(".cargo/config.toml")).unwrap();
        std::fs::write(
            dir.join(".cargo/config.toml"),
            config.replace(
                "[build]\n",
                "[build]\nrustflags = [\"-C\", \"opt-level=2\"]\n",
            ),
        )
        .unwrap();
        let packages = load().profile().unwrap().0.packages;
        assert_eq!(
            packages.kernels,
            PackageProfile {
                opt_level: None,
                debug: Some(DebugInfo::None)
            }
        );
        std::fs::write(dir.join(".cargo/config.toml"), config).unwrap();
        // A value cargo would refuse is an error that says where it is.
        append(
            "Cargo.toml",
            "[profile.release.package.fw-model]\nopt-level = 4\n",
        );
        let e = load().profile().unwrap_err().to_string();
        assert!(
            e.contains("opt-level 4 in [profile.release.package.fw-model] in ")
                && e.contains("fix it there"),
            "{e}"
        );
        std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
        let config = std::fs::read_to_string(dir.join(".cargo/config.toml")).unwrap();
        let config = config.replace(
            "[profile.release.package.\"*\"]\ndebug = false\ncodegen-units = 8\n",
            "",
        );
        std::fs::write(dir.join(".cargo/config.toml"), config).unwrap();
        assert_eq!(load().link_note(), None);
        let path = dir.join(".cargo/config.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"limited\"", "\"lots\"")).unwrap();
        let e = load().debug_info().unwrap_err().to_string();
        assert!(
            e.contains("debug \"lots\"") && e.contains("config.toml"),
            "{e}"
        );
        std::fs::write(&path, text.replace("\"limited\"", "false")).unwrap();
        let (profile, from) = load().profile().unwrap();
        assert_eq!(profile.debug, DebugInfo::None);
        assert!(
            from.contains("debug = false (") && from.contains("config.toml"),
            "{from}"
        );
        // `-g` in the rustflags is rustc's `-C debuginfo=2`, and wins over the profile.
        std::fs::write(
            &path,
            format!("{base}rustflags = [\"-g\"]\n\n[profile.release]\ndebug = false\n"),
        )
        .unwrap();
        let (d, from) = load().debug_info().unwrap();
        assert_eq!(
            (d, from.as_str()),
            (DebugInfo::Full, "the rustflags (-C debuginfo)")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_values_name_the_key() {
        let dir = project_dir(
            "bad",
            "\n[package.metadata.tinynas]\ninput = \"32x32x4\"\nmax-latency-ms = 5.0\nram-reserve = 999999999\n",
        );
        let p = Project::load(Some(&dir.join("Cargo.toml")), None).unwrap();
        let e = p.input().unwrap_err().to_string();
        assert!(e.starts_with("[package.metadata.tinynas] input:"), "{e}");
        let mem = p.memory_x.clone().unwrap();
        let e = p.budgets(&mem).unwrap_err().to_string();
        assert!(e.contains("ram-reserve") && e.contains("lower it"), "{e}");
        std::fs::write(
            dir.join("memory.x"),
            "MEMORY { FLASH : ORIGIN = 0, LENGTH = 64K }",
        )
        .unwrap();
        let e = Project::load(Some(&dir.join("Cargo.toml")), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory.x") && e.contains("no RAM region"), "{e}");
        let e = Project::load(Some(&dir.join("Cargo.toml")), Some("other"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no package \"other\"") && e.contains("fw"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
