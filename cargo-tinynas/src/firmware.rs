//! The bench firmware: rendered from the minijinja templates in `templates/bench/`, built with
//! cargo for the board's target, and described by its ELF.
//!
//! Builds go to a cache folder (`$TINYNAS_CACHE_DIR`, else `$XDG_CACHE_HOME/cargo-tinynas`, else
//! `~/.cache/cargo-tinynas`): one project folder per firmware (named by a hash of everything that
//! goes into it) and one shared cargo target folder, so dependencies are built once per target.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use minijinja::{context, Environment, UndefinedBehavior};
use tinynas_model::{InputType, Model};

use crate::chip::MemoryLayout;
use crate::report::Timer;

const CARGO_TOML: &str = include_str!("../../templates/bench/Cargo.toml.j2");
const CARGO_LOCK: &str = include_str!("../../templates/bench/Cargo.lock.j2");
const MEMORY_X: &str = include_str!("../../templates/bench/memory.x.j2");
const CONFIG_TOML: &str = include_str!("../../templates/bench/config.toml.j2");
const BUILD_RS: &str = include_str!("../../templates/bench/build.rs.j2");
const MAIN_RS: &str = include_str!("../../templates/bench/main.rs.j2");
const LINK_X: &str = include_str!("../../templates/bench/link.x.j2");

/// What goes into a bench firmware.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// The `.tnas` file's bytes and the model they hold.
    pub model_bytes: &'a [u8],
    pub model: &'a Model,
    /// Raw input bytes, `INPUT_LEN` each (read as `i8` by `i8` models).
    pub inputs: &'a [Vec<u8>],
    pub target: &'static str,
    /// `-C target-cpu`, if the board names its core.
    pub target_cpu: Option<&'a str>,
    pub memory: MemoryLayout,
    pub timer: Timer,
    pub unlock_dwt: bool,
    /// Time every kernel call.
    pub per_layer: bool,
    /// Report a CRC-32 of every kernel call's output, per input (not with `per_layer`).
    pub trace: bool,
    /// A buffer of this many bytes on the stack around the model call (0: none): for testing the
    /// stack measurement.
    pub extra_stack_bytes: usize,
    pub profile: Profile,
}

/// The `opt-level` of the bench firmware's release profile: your firmware's, since it trades code
/// size against speed (person_detect on qemu-m4: `3` 28.5 KB of code, `s` 18.1 KB for 10 % more
/// instructions). `search`, `verify` and `generate --measure` read the project's
/// (`Project::profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OptLevel {
    #[value(name = "0")]
    O0,
    #[value(name = "1")]
    O1,
    #[value(name = "2")]
    O2,
    #[default]
    #[value(name = "3")]
    O3,
    #[value(name = "s")]
    S,
    #[value(name = "z")]
    Z,
}

impl OptLevel {
    /// As written in a Cargo profile (`3`, `"s"`).
    pub fn toml(self) -> &'static str {
        match self {
            OptLevel::O0 => "0",
            OptLevel::O1 => "1",
            OptLevel::O2 => "2",
            OptLevel::O3 => "3",
            OptLevel::S => "\"s\"",
            OptLevel::Z => "\"z\"",
        }
    }

    /// As `cargo tinynas bench --opt-level` takes it (`3`, `s`).
    pub fn name(self) -> &'static str {
        self.toml().trim_matches('"')
    }

    /// A Cargo `opt-level` as written in a profile (`3`, `"s"`) or in `-C opt-level=` and
    /// `CARGO_PROFILE_RELEASE_OPT_LEVEL` (`3`, `s`); `None` for anything else.
    pub fn parse(v: &str) -> Option<OptLevel> {
        Some(match v.trim().trim_matches(|c| c == '"' || c == '\'') {
            "0" => OptLevel::O0,
            "1" => OptLevel::O1,
            "2" => OptLevel::O2,
            "3" => OptLevel::O3,
            "s" => OptLevel::S,
            "z" => OptLevel::Z,
            _ => return None,
        })
    }
}

/// The `debug` of the bench firmware's release profile: your firmware's. The debug info stays on
/// the host, but LLVM emits slightly other code with it (the example's model at `s`: 0.56 % fewer
/// instructions and 8 bytes more flash with `debug = true`), and rustc needs more memory for it
/// (a bench firmware of a 78,797-byte model: 203.8 MiB with `true`, 146.2 MiB without).
/// `search`, `verify` and `generate --measure` read the project's (`Project::profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DebugInfo {
    None,
    LineDirectivesOnly,
    LineTablesOnly,
    Limited,
    #[default]
    Full,
}

impl DebugInfo {
    /// As written in a Cargo profile (`true`, `"limited"`).
    pub fn toml(self) -> &'static str {
        match self {
            DebugInfo::None => "false",
            DebugInfo::LineDirectivesOnly => "\"line-directives-only\"",
            DebugInfo::LineTablesOnly => "\"line-tables-only\"",
            DebugInfo::Limited => "\"limited\"",
            DebugInfo::Full => "true",
        }
    }

    /// As `cargo tinynas bench --debug` takes it and the JSON reports say it (`true`, `limited`).
    pub fn name(self) -> &'static str {
        self.toml().trim_matches('"')
    }

    /// Every value [`DebugInfo::parse`] takes, as cargo takes them, bare (`limited`).
    pub const ACCEPTED: [&'static str; 10] = [
        "true",
        "false",
        "0",
        "1",
        "2",
        "none",
        "line-directives-only",
        "line-tables-only",
        "limited",
        "full",
    ];

    /// [`DebugInfo::ACCEPTED`] as a list for an error message: bare as `--debug` takes them, or
    /// as a profile writes them (`toml`: the names quoted, `"limited"`).
    pub fn accepted(toml: bool) -> String {
        let quote = |v: &str| {
            if toml && v.parse::<u8>().is_err() && v != "true" && v != "false" {
                format!("\"{v}\"")
            } else {
                v.to_string()
            }
        };
        DebugInfo::ACCEPTED.map(quote).join(", ")
    }

    /// A Cargo `debug` as written in a profile (`true`, `2`, `"full"`, `"limited"`, ...) or in
    /// `CARGO_PROFILE_RELEASE_DEBUG`; `None` for anything else (what it takes:
    /// [`DebugInfo::ACCEPTED`]).
    pub fn parse(v: &str) -> Option<DebugInfo> {
        Some(match v.trim().trim_matches(|c| c == '"' || c == '\'') {
            "false" | "0" | "none" => DebugInfo::None,
            "line-directives-only" => DebugInfo::LineDirectivesOnly,
            "line-tables-only" => DebugInfo::LineTablesOnly,
            "1" | "limited" => DebugInfo::Limited,
            "true" | "2" | "full" => DebugInfo::Full,
            _ => return None,
        })
    }
}

/// The settings of the firmware's release profile that change the code the bench measures, so
/// that the bench firmware is built with the firmware's own (`Project::profile`). Each takes other
/// times and other code: the latency tables and search journals are kept per profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Profile {
    pub opt_level: OptLevel,
    pub debug: DebugInfo,
    /// Where the firmware builds the model's code with other settings than these
    /// (`[profile.release.package.NAME]`): the bench firmware does the same.
    pub packages: Packages,
}

/// A per-package override of the release profile (`[profile.release.package.NAME]`): what it
/// sets that differs from the profile's own (`None`: as the profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PackageProfile {
    pub opt_level: Option<OptLevel>,
    pub debug: Option<DebugInfo>,
}

impl PackageProfile {
    pub fn is_empty(self) -> bool {
        self.opt_level.is_none() && self.debug.is_none()
    }
}

/// The per-package overrides that reach the model's code in the firmware, for the three places
/// it lives in: the generated crate (in the bench firmware, its own package, which holds the
/// model's expansion), `tinynas-runtime` and `tinynas-kernels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Packages {
    pub model: PackageProfile,
    pub runtime: PackageProfile,
    pub kernels: PackageProfile,
}

impl Packages {
    /// Each part with a name as the figures' file names and the JSON reports give it.
    pub fn parts(self) -> [(&'static str, PackageProfile); 3] {
        [
            ("model", self.model),
            ("runtime", self.runtime),
            ("kernels", self.kernels),
        ]
    }

    pub fn is_empty(self) -> bool {
        self.parts().iter().all(|(_, p)| p.is_empty())
    }

    /// For the JSON reports: `{"kernels": {"opt_level": "3"}}`, the parts with an override.
    pub fn json(self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (name, p) in self.parts() {
            if !p.is_empty() {
                map.insert(
                    name.into(),
                    serde_json::json!({
                        "opt_level": p.opt_level.map(OptLevel::name),
                        "debug": p.debug.map(DebugInfo::name),
                    }),
                );
            }
        }
        serde_json::Value::Object(map)
    }

    /// As the reports say it: `kernels opt-level 3, model debug = false` (empty where none).
    pub fn describe(self) -> String {
        let mut out = Vec::new();
        for (name, p) in self.parts() {
            if let Some(o) = p.opt_level {
                out.push(format!("{name} opt-level {}", o.name()));
            }
            if let Some(d) = p.debug {
                out.push(format!("{name} debug = {}", d.toml()));
            }
        }
        out.join(", ")
    }
}

impl Profile {
    /// As the human reports say it: `opt-level s, debug true`, and the per-package overrides
    /// in brackets (`opt-level s, debug true (kernels opt-level 3)`).
    pub fn describe(self) -> String {
        let mut s = format!(
            "opt-level {}, debug {}",
            self.opt_level.name(),
            self.debug.name()
        );
        if !self.packages.is_empty() {
            s.push_str(&format!(" ({})", self.packages.describe()));
        }
        s
    }

    /// What this profile adds to a name that holds figures (a latency table's file name): nothing
    /// at opt-level 3 with full debug info, whose names predate the profile, else `-opt<level>`
    /// and `-debug-<debug>` for what differs from those.
    pub fn suffix(self) -> String {
        let mut s = String::new();
        if self.opt_level != OptLevel::O3 {
            s.push_str(&format!("-opt{}", self.opt_level.name()));
        }
        if self.debug != DebugInfo::Full {
            s.push_str(&format!("-debug-{}", self.debug.name()));
        }
        for (name, p) in self.packages.parts() {
            if let Some(o) = p.opt_level {
                s.push_str(&format!("-{name}-opt{}", o.name()));
            }
            if let Some(d) = p.debug {
                s.push_str(&format!("-{name}-debug-{}", d.name()));
            }
        }
        s
    }

    /// The same for a search's journal fingerprint text: `|opt-level <level>` and
    /// `|debug <as in toml>` for what differs from opt-level 3 with full debug info.
    pub fn fingerprint(self) -> String {
        let mut s = String::new();
        if self.opt_level != OptLevel::O3 {
            s.push_str(&format!("|opt-level {}", self.opt_level.name()));
        }
        if self.debug != DebugInfo::Full {
            s.push_str(&format!("|debug {}", self.debug.toml()));
        }
        for (name, p) in self.packages.parts() {
            if let Some(o) = p.opt_level {
                s.push_str(&format!("|{name} opt-level {}", o.name()));
            }
            if let Some(d) = p.debug {
                s.push_str(&format!("|{name} debug {}", d.toml()));
            }
        }
        s
    }
}

/// A built bench firmware.
#[derive(Debug, Clone)]
pub struct Firmware {
    pub elf: PathBuf,
    pub sizes: crate::elf::Sizes,
    pub report_version: u32,
    pub inputs: usize,
    pub classes: usize,
    pub steps: usize,
    /// Kernel calls traced per input (0: no trace).
    pub traced: usize,
    pub arena_bytes: usize,
    pub target: &'static str,
    /// What it was built with.
    pub profile: Profile,
}

#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error("template {name}: {source}")]
    Template {
        name: &'static str,
        source: minijinja::Error,
    },
    #[error("input {index} has {got} bytes, the model takes {want}")]
    InputLength {
        index: usize,
        got: usize,
        want: usize,
    },
    #[error("the bench needs at least one input")]
    NoInputs,
    #[error("cannot find tinynas-runtime's sources at {0}: set TINYNAS_RUNTIME_PATH to the runtime/ folder of a cargo-tinynas checkout")]
    Runtime(PathBuf),
    #[error("building the bench firmware for {target} failed ({status}){hint}\n{log}")]
    Build {
        target: String,
        status: String,
        hint: String,
        log: String,
        /// The linker's words when the firmware does not fit the board's memory (`section
        /// '.bss' will not fit in region 'RAM': overflowed by 1234 bytes`): the model is too
        /// big for this board, not a fault of the tool.
        overflow: Option<String>,
    },
    #[error(
        "cargo built no firmware binary (is the {0} target installed? `rustup target add {0}`)"
    )]
    NoArtifact(String),
    #[error("{0}")]
    Elf(#[from] crate::elf::ElfError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> FirmwareError {
    let context = context.into();
    move |source| FirmwareError::Io { context, source }
}

/// The cache folder for bench builds.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TINYNAS_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("cargo-tinynas");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache").join("cargo-tinynas");
    }
    std::env::temp_dir().join("cargo-tinynas")
}

pub(crate) fn runtime_path() -> Result<PathBuf, FirmwareError> {
    let p = std::env::var_os("TINYNAS_RUNTIME_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("runtime")
        });
    let p = p
        .canonicalize()
        .map_err(|_| FirmwareError::Runtime(p.clone()))?;
    if p.join("Cargo.toml").is_file() {
        Ok(p)
    } else {
        Err(FirmwareError::Runtime(p))
    }
}

fn hex_addr(v: u64) -> String {
    format!("{v:#010X}").replacen("0X", "0x", 1)
}

/// The bench firmware's `[profile.release.package.NAME]` tables for `packages`, as (name, [(key,
/// value as TOML)]): the model's code is the bench's own package `package`.
fn package_overrides(
    packages: Packages,
    package: &str,
) -> Vec<(String, Vec<(&'static str, &'static str)>)> {
    let names = [package, "tinynas-runtime", "tinynas-kernels"];
    names
        .iter()
        .zip(packages.parts())
        .filter(|(_, (_, p))| !p.is_empty())
        .map(|(name, (_, p))| {
            let mut keys = Vec::new();
            if let Some(o) = p.opt_level {
                keys.push(("opt-level", o.toml()));
            }
            if let Some(d) = p.debug {
                keys.push(("debug", d.toml()));
            }
            (name.to_string(), keys)
        })
        .collect()
}

/// The files rendered from `templates/bench/` (the only ones that name the package).
fn render_templates(
    spec: &Spec<'_>,
    package: &str,
    runtime: &Path,
) -> Result<Vec<(&'static str, String)>, FirmwareError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    let m = &spec.memory;
    let ctx = context! {
        tool_version => env!("CARGO_PKG_VERSION"),
        package => package,
        runtime_path => runtime.display().to_string(),
        opt_level => spec.profile.opt_level.toml(),
        debug => spec.profile.debug.toml(),
        package_overrides => package_overrides(spec.profile.packages, package),
        memory_comment => format!("Memory of {}", m.source),
        flash_origin => hex_addr(m.flash_origin),
        flash_length => m.flash_length,
        ram_origin => hex_addr(m.ram_origin),
        ram_length => m.ram_length,
        target => spec.target,
        target_cpu => spec.target_cpu.unwrap_or(""),
        // Hard-float targets: Reset enables the FPU before any Rust code runs.
        fpu => spec.target.ends_with("eabihf"),
        report_version => crate::report::VERSION,
        per_layer => spec.per_layer,
        trace => spec.trace,
        timer => match spec.timer { Timer::SysTick => "systick", Timer::Dwt => "dwt" },
        timer_kind => match spec.timer { Timer::SysTick => 0, Timer::Dwt => 1 },
        timer_doc => match spec.timer { Timer::SysTick => "SysTick ticks", Timer::Dwt => "DWT CYCCNT cycles" },
        unlock_dwt => spec.unlock_dwt,
        input_type => match spec.model.input_type { InputType::U8 => "u8", InputType::I8 => "i8" },
        extra_stack_bytes => spec.extra_stack_bytes,
    };
    let mut files = Vec::new();
    for (path, name, src) in [
        ("Cargo.toml", "Cargo.toml.j2", CARGO_TOML),
        ("Cargo.lock", "Cargo.lock.j2", CARGO_LOCK),
        ("memory.x", "memory.x.j2", MEMORY_X),
        ("link.x", "link.x.j2", LINK_X),
        (".cargo/config.toml", "config.toml.j2", CONFIG_TOML),
        ("build.rs", "build.rs.j2", BUILD_RS),
        ("src/main.rs", "main.rs.j2", MAIN_RS),
    ] {
        let text = env
            .render_str(src, ctx.clone())
            .map_err(|source| FirmwareError::Template { name, source })?;
        files.push((path, text));
    }
    Ok(files)
}

/// The files written from the model and the inputs: the inputs in flash, and the model's code
/// as `model!` would expand it (the firmware builds no proc macro).
fn generated_files(spec: &Spec<'_>) -> Result<Vec<(&'static str, String)>, FirmwareError> {
    let model =
        tinynas_model::codegen::source(spec.model, "Model").map_err(|e| FirmwareError::Io {
            context: "cannot generate the model's code".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
    Ok(vec![
        ("src/inputs.rs", inputs_rs(spec)?),
        ("src/model.rs", model),
    ])
}

fn inputs_rs(spec: &Spec<'_>) -> Result<String, FirmwareError> {
    let n = spec.model.input_shape.elements();
    if spec.inputs.is_empty() {
        return Err(FirmwareError::NoInputs);
    }
    let signed = spec.model.input_type == InputType::I8;
    let ty = if signed { "i8" } else { "u8" };
    // Each input one byte-string literal (a list of values costs rustc far more memory, see
    // `tinynas_model::codegen`), converted to `i8` at compile time for an `i8` model.
    let mut s = format!(
        "/// The inputs, in flash.\nconst INPUT_COUNT: usize = {};\nstatic INPUTS: [[{ty}; Model::INPUT_LEN]; INPUT_COUNT] = [\n",
        spec.inputs.len()
    );
    for (index, x) in spec.inputs.iter().enumerate() {
        if x.len() != n {
            return Err(FirmwareError::InputLength {
                index,
                got: x.len(),
                want: n,
            });
        }
        if signed {
            let _ = writeln!(s, "    {},", tinynas_model::codegen::i8s_source(x));
        } else {
            let _ = writeln!(s, "    *{},", tinynas_model::codegen::byte_string(x));
        }
    }
    s.push_str("];\n");
    Ok(s)
}

/// Renders, writes and builds a bench firmware; returns the ELF and what it says about itself.
pub fn build(spec: &Spec<'_>, cache: &Path) -> Result<Firmware, FirmwareError> {
    let runtime = runtime_path()?;
    // The project is named by a hash of everything in it, so identical requests share a build
    // and different ones never overwrite each other's binary in the shared target folder.
    // The model's code and the inputs do not depend on the name: generated once.
    let generated = generated_files(spec)?;
    let probe = render_templates(spec, "tinynas-bench", &runtime)?;
    let mut h = crc32fast::Hasher::new();
    h.update(spec.model_bytes);
    for (p, t) in probe.iter().chain(&generated) {
        h.update(p.as_bytes());
        h.update(t.as_bytes());
    }
    let package = format!("tinynas-bench-{:08x}", h.finalize());
    let mut files = render_templates(spec, &package, &runtime)?;
    files.extend(generated);
    let dir = cache.join("projects").join(&package);
    for (p, text) in &files {
        let path = dir.join(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("cannot create {}", parent.display())))?;
        }
        write_if_changed(&path, text.as_bytes())?;
    }
    write_if_changed(&dir.join("model.tnas"), spec.model_bytes)?;

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // One target folder per `-C target-cpu`: builds for two cores of one Rust target (Cortex-M4
    // and M7) would otherwise rebuild each other's dependencies every time.
    let target_dir = match spec.target_cpu {
        Some(cpu) => cache.join(format!("target-{cpu}")),
        None => cache.join("target"),
    };
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&dir).args([
        "build",
        "--release",
        "--message-format",
        "json-render-diagnostics",
        "--target",
        spec.target,
        // The dependencies' versions are the template's (templates/bench/Cargo.lock.j2), not
        // whatever crates.io holds on the day: the figures depend on the commit alone.
        "--locked",
    ]);
    // Two rustc processes at once need more than a 256 MiB container or a 512 MB gateway has.
    if crate::host_memory::build_one_job_at_a_time() {
        cmd.args(["--jobs", "1"]);
    }
    let out = cmd
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .map_err(io("cannot run cargo"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let log: String = stderr
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        let hint = if log.contains("may not be installed")
            || log.contains("can't find crate for `core`")
        {
            format!(
                ": the {} target is not installed; run `rustup target add {}`",
                spec.target, spec.target
            )
        } else if log.contains("--locked") {
            format!(
                ": the bench firmware's dependencies are not those its lock file pins (templates/bench/Cargo.lock.j2 of cargo-tinynas {}): the runtime at {} is another version than the tool's (unset TINYNAS_RUNTIME_PATH or point it at this version's runtime/), or its dependencies changed (then update the template)",
                env!("CARGO_PKG_VERSION"),
                runtime.display()
            )
        } else if log.contains("will not fit in region") || log.contains("overflowed by") {
            let input_bytes: usize = spec.inputs.iter().map(Vec::len).sum();
            // rust-lld: "section '.bss' will not fit in region 'RAM': overflowed by N bytes".
            let region = if log.contains("region 'FLASH'") || log.contains("region `FLASH'") {
                "flash"
            } else if log.contains("region 'RAM'") || log.contains("region `RAM'") {
                "RAM"
            } else {
                "memory"
            };
            format!(
                ": the bench firmware does not fit the {region} ({} bytes flash, {} bytes RAM from {}); it holds the model and its {} test input(s), {input_bytes} bytes of flash: use fewer inputs (--inputs, verify's --images) if they are what does not fit, else the model is too big for this memory",
                spec.memory.flash_length,
                spec.memory.ram_length,
                spec.memory.source,
                spec.inputs.len()
            )
        } else {
            String::new()
        };
        let overflow = log
            .lines()
            .find(|l| l.contains("will not fit in region") || l.contains("overflowed by"))
            .map(|l| {
                // From the linker's own words on.
                let at = l.find("section").unwrap_or(0);
                l[at..].trim().to_string()
            });
        return Err(FirmwareError::Build {
            target: spec.target.into(),
            status: out.status.to_string(),
            hint,
            log,
            overflow,
        });
    }
    let elf = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == package.as_str())
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| FirmwareError::NoArtifact(spec.target.into()))?;
    let bytes = std::fs::read(&elf).map_err(io(format!("cannot read {}", elf.display())))?;
    let program = tinynas_model::lower::lower(spec.model).map_err(|e| FirmwareError::Io {
        context: "cannot lower the model".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(Firmware {
        sizes: crate::elf::sizes(&bytes)?,
        report_version: crate::elf::report_version(&bytes)?,
        elf,
        inputs: spec.inputs.len(),
        classes: spec.model.classes(),
        steps: if spec.per_layer {
            program.steps.len()
        } else {
            0
        },
        traced: if spec.trace { program.steps.len() } else { 0 },
        arena_bytes: program.plan.arena_bytes,
        target: spec.target,
        profile: spec.profile,
    })
}

/// Writes a file unless it already holds these bytes (so cargo's fingerprints stay fresh).
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), FirmwareError> {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return Ok(());
    }
    // Two benches (or parallel tests) may write the same project at once: each renames a
    // complete file of its own into place, and the contents are the same.
    crate::fsutil::write_atomic(path, bytes).map_err(io(format!("cannot write {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_debug_value_said_accepted_is_taken() {
        for v in DebugInfo::ACCEPTED {
            assert!(DebugInfo::parse(v).is_some(), "{v}");
        }
        // As a profile writes them: the names quoted (parse takes those too), numbers and
        // booleans bare.
        let toml = DebugInfo::accepted(true);
        assert!(toml.starts_with("true, false, 0, 1, 2, \"none\""), "{toml}");
        for v in toml.split(", ") {
            assert!(DebugInfo::parse(v).is_some(), "{v}");
        }
        assert!(DebugInfo::accepted(false).contains(", limited,"));
        assert!(DebugInfo::parse("yes").is_none());
    }

    /// The firmware's per-package overrides of the model's code become the bench's own: the
    /// generated crate's on the bench package (which holds the model's code), the runtime's and
    /// kernels' by name; none at all leave the manifest as before them.
    #[test]
    fn package_overrides_go_into_the_bench_manifest() {
        let bytes = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/nanonas-k8-c3.tnas"),
        )
        .unwrap();
        let model = tinynas_model::format::read(&bytes).unwrap();
        let inputs = vec![vec![0u8; model.input_shape.elements()]];
        let mut spec = Spec {
            model_bytes: &bytes,
            model: &model,
            inputs: &inputs,
            target: "thumbv7em-none-eabihf",
            target_cpu: None,
            memory: MemoryLayout {
                flash_origin: 0,
                flash_length: 1 << 20,
                ram_origin: 0x2000_0000,
                ram_length: 1 << 16,
                source: "a test".into(),
            },
            timer: Timer::SysTick,
            unlock_dwt: false,
            per_layer: false,
            trace: false,
            extra_stack_bytes: 0,
            profile: Profile {
                opt_level: OptLevel::S,
                debug: DebugInfo::None,
                packages: Packages::default(),
            },
        };
        let manifest = |spec: &Spec<'_>| {
            let files = render_templates(spec, "tinynas-bench-x", Path::new("/rt")).unwrap();
            let text = files.into_iter().find(|f| f.0 == "Cargo.toml").unwrap().1;
            (toml::from_str::<toml::Value>(&text).unwrap(), text)
        };
        let (plain, text) = manifest(&spec);
        assert!(!text.contains("profile.release.package"), "{text}");
        assert_eq!(plain["profile"]["release"]["opt-level"].as_str(), Some("s"));
        spec.profile.packages = Packages {
            model: PackageProfile {
                opt_level: Some(OptLevel::O2),
                debug: None,
            },
            runtime: PackageProfile::default(),
            kernels: PackageProfile {
                opt_level: Some(OptLevel::O3),
                debug: Some(DebugInfo::Limited),
            },
        };
        let (v, text) = manifest(&spec);
        let packages = v["profile"]["release"]["package"].as_table().unwrap();
        assert_eq!(packages.len(), 2, "{text}");
        assert_eq!(
            packages["tinynas-bench-x"]["opt-level"].as_integer(),
            Some(2)
        );
        assert!(packages["tinynas-bench-x"].get("debug").is_none());
        assert_eq!(
            packages["tinynas-kernels"]["opt-level"].as_integer(),
            Some(3)
        );
        assert_eq!(
            packages["tinynas-kernels"]["debug"].as_str(),
            Some("limited")
        );
        // Everything else as without them.
        assert_eq!(
            v["profile"]["release"]["lto"],
            plain["profile"]["release"]["lto"]
        );
        assert_eq!(v["dependencies"], plain["dependencies"]);
        // And the figures they make are kept apart.
        assert_eq!(
            spec.profile.suffix(),
            "-opts-debug-false-model-opt2-kernels-opt3-kernels-debug-limited"
        );
        assert!(spec
            .profile
            .fingerprint()
            .ends_with("|model opt-level 2|kernels opt-level 3|kernels debug \"limited\""));
    }
}
