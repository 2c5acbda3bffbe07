//! Boards: where a bench firmware runs. One narrow trait ([`Board`]) with a real implementation
//! through probe-rs ([`probe::ProbeBoard`]), an emulated one under QEMU ([`qemu::QemuBoard`]), and
//! a fake for unit tests of callers ([`fake::FakeBoard`], a stand-in named as such).

pub mod fake;
pub mod probe;
pub mod qemu;

use crate::elf::Sizes;
use crate::firmware::Firmware;
use crate::report::{Report, ReportError};

pub use crate::chip::{LatencyUnit, MemoryLayout};

/// What one run of a bench firmware measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Board name (`qemu-m4`, or the probe-rs chip name).
    pub board: String,
    /// Core (`Cortex-M4F`, ...).
    pub core: String,
    pub unit: LatencyUnit,
    /// Latency of each inference, one per input, in `unit`.
    pub latency: Vec<u64>,
    /// Latency of each kernel call of the last inference, in `unit` (empty unless asked for).
    pub per_step: Vec<u64>,
    /// Deepest stack use seen (stack painting), bytes.
    pub stack_peak_bytes: u64,
    /// Stack region size, bytes.
    pub stack_size_bytes: u64,
    /// Section sizes of the firmware.
    pub sizes: Sizes,
    /// The model's arena (part of `.bss`).
    pub arena_bytes: u64,
    /// Output values of each inference.
    pub outputs: Vec<Vec<i8>>,
    /// Per input, the CRC-32 of each kernel call's output (empty unless the firmware traces).
    pub traces: Vec<Vec<u32>>,
}

impl Measurement {
    /// Peak SRAM: static RAM (`.data` + `.bss`, the arena included) plus the stack peak, without
    /// the bench firmware's own result buffers (`.uninit`), which a firmware using the model has not.
    pub fn peak_sram_bytes(&self) -> u64 {
        (self.sizes.static_ram() + self.stack_peak_bytes).saturating_sub(self.sizes.bench_buffers)
    }

    /// Builds a measurement from a decoded report; `scale` turns timer units into `unit`
    /// (numerator, denominator).
    pub(crate) fn from_report(
        board: &str,
        core: &str,
        unit: LatencyUnit,
        scale: (u64, u64),
        fw: &Firmware,
        r: Report,
    ) -> Self {
        let conv =
            |t: u64| (u128::from(t) * u128::from(scale.0) / u128::from(scale.1.max(1))) as u64;
        let mut per_step = Vec::with_capacity(r.steps.len());
        let mut prev = 0;
        for &t in &r.steps {
            per_step.push(conv(t.saturating_sub(prev)));
            prev = t;
        }
        Measurement {
            board: board.to_string(),
            core: core.to_string(),
            unit,
            latency: r.runs.iter().map(|(t, _)| conv(*t)).collect(),
            per_step,
            stack_peak_bytes: u64::from(r.stack_peak_bytes),
            stack_size_bytes: u64::from(r.stack_size_bytes),
            sizes: fw.sizes,
            arena_bytes: fw.arena_bytes as u64,
            outputs: r.runs.into_iter().map(|(_, o)| o).collect(),
            traces: r.traces,
        }
    }
}

/// Why a board could not measure.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error("qemu-system-arm was not found: install it (Debian/Ubuntu: `sudo apt-get install -y qemu-system-arm`; or `bash .ci/setup` in a cargo-tinynas checkout) or measure on a real board with --chip")]
    QemuMissing,
    #[error("the emulated board did not finish within {seconds} s: the firmware hung (an infinite loop, or semihosting not enabled); console: {console:?}")]
    Timeout { seconds: u64, console: String },
    #[error("the emulated board exited with {status} without a report; console: {console:?}; stderr: {stderr:?}")]
    Crashed {
        status: String,
        console: String,
        stderr: String,
    },
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("the firmware reports format version {firmware}, this cargo-tinynas reads version {host}: rebuild the bench firmware with this cargo-tinynas")]
    VersionMismatch { firmware: u32, host: u32 },
    #[error(
        "the report has {got} inputs x {classes} outputs, the firmware was built for {want} inputs"
    )]
    WrongShape {
        got: usize,
        want: usize,
        classes: usize,
    },
    #[error(transparent)]
    Probe(#[from] probe::ProbeError),
    #[error(transparent)]
    Setup(#[from] crate::setup::SetupError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("unknown board {name:?}: choose one of {known} for the emulator, or --chip NAME for a real chip")]
    UnknownBoard { name: String, known: String },
}

/// Where to measure: an emulated board (optionally linked with a real chip's flash and RAM
/// sizes), or a real chip behind a debug probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoardChoice {
    /// A QEMU board by name (`qemu-m4`, ...) and the chip whose memory sizes it is linked with.
    Emulated { board: String, chip: Option<String> },
    /// A chip by its probe-rs name.
    Chip(String),
}

impl BoardChoice {
    /// The default emulated board.
    pub fn default_emulated() -> Self {
        BoardChoice::Emulated {
            board: qemu::DEFAULT.to_string(),
            chip: None,
        }
    }

    /// From `--board` and `--chip`: a board name wins (with a chip too, the emulator takes the
    /// chip's sizes); `None` for neither.
    pub fn from_flags(board: Option<&str>, chip: Option<&str>) -> Option<Self> {
        match (board, chip) {
            (Some(b), c) => Some(BoardChoice::Emulated {
                board: b.to_string(),
                chip: c.map(str::to_string),
            }),
            (None, Some(c)) => Some(BoardChoice::Chip(c.to_string())),
            (None, None) => None,
        }
    }
}

impl std::fmt::Display for BoardChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BoardChoice::Emulated { board, chip: None } => f.write_str(board),
            BoardChoice::Emulated {
                board,
                chip: Some(c),
            } => write!(f, "{board} with {c}'s memory"),
            BoardChoice::Chip(c) => write!(f, "chip {c}"),
        }
    }
}

/// How [`open`] opens a board.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// The debug probe (`VID:PID[:SERIAL]`) when several are connected.
    pub probe: Option<String>,
    pub connect_under_reset: bool,
    /// How long a run may take before it counts as hung.
    pub timeout: std::time::Duration,
    /// The firmware's own `-C target-cpu`, if it names one: a chip's bench firmware is built with
    /// it instead of the emulated machine's core.
    pub firmware_cpu: Option<String>,
}

/// Opens the chosen board: an emulated one (with a chip, linked with its flash and RAM sizes and
/// built for the firmware's core) or a chip through probe-rs. What the machine lacks is found
/// here, before any training or firmware build: QEMU or the debug probe (errors that exit with
/// "no board"), and the Rust target of the board's core (installed with rustup if missing).
pub fn open(choice: &BoardChoice, o: &OpenOptions) -> Result<Box<dyn Board>, BoardError> {
    let board = open_unchecked(choice, o)?;
    match choice {
        BoardChoice::Emulated { .. } if !crate::setup::qemu_installed() => {
            return Err(BoardError::QemuMissing)
        }
        BoardChoice::Emulated { .. } => {}
        BoardChoice::Chip(_) => {
            probe::choose_probe(&probe::Lister::new().list_all(), o.probe.as_deref())?;
        }
    }
    crate::setup::ensure_target(board.target())?;
    Ok(board)
}

fn open_unchecked(choice: &BoardChoice, o: &OpenOptions) -> Result<Box<dyn Board>, BoardError> {
    Ok(match choice {
        BoardChoice::Emulated { board, chip } => {
            let m = qemu::machine(board).ok_or_else(|| BoardError::UnknownBoard {
                name: board.clone(),
                known: qemu::MACHINES
                    .iter()
                    .map(|m| m.board)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            let mut q = qemu::QemuBoard::new(m);
            q.timeout = o.timeout;
            if let Some(c) = chip {
                let f = probe::chip_facts(c)?;
                q = q.with_chip_sizes(&f.name, f.memory.flash_length, f.memory.ram_length);
                q.firmware_cpu = Some(o.firmware_cpu.clone());
            }
            Box::new(q)
        }
        BoardChoice::Chip(c) => {
            let mut p = probe::ProbeBoard::new(c)?;
            p.probe = o.probe.clone();
            p.connect_under_reset = o.connect_under_reset;
            p.timeout = o.timeout;
            p.target_cpu = o.firmware_cpu.clone();
            Box::new(p)
        }
    })
}

/// Somewhere a bench firmware runs and gets measured.
pub trait Board {
    /// A short name for reports (`qemu-m4`, `STM32F746NGHx`).
    fn name(&self) -> String;
    /// The core, for reports.
    fn core(&self) -> String;
    /// The Rust target the firmware must be built for.
    fn target(&self) -> &'static str;
    /// Flash and RAM to link the firmware for.
    fn memory(&self) -> MemoryLayout;
    /// Flash and RAM to link a bench firmware for that carries `input_bytes` of test inputs in
    /// flash: [`Board::memory`] on a real chip (the inputs must fit beside the model).
    fn bench_memory(&self, input_bytes: u64) -> MemoryLayout {
        let _ = input_bytes;
        self.memory()
    }
    /// The timer the firmware should use.
    fn timer(&self) -> crate::report::Timer;
    /// The `-C target-cpu` the firmware is built with, where the Rust target alone does not say
    /// which core it is (the kernels' instruction-set paths follow it: Cortex-M55's DSP and MVE
    /// are only enabled with `cortex-m55` on `thumbv8m.main`).
    fn target_cpu(&self) -> Option<&str> {
        None
    }
    /// What its latency counts: core cycles on a chip, instructions on an emulator.
    fn latency_unit(&self) -> LatencyUnit {
        LatencyUnit::Cycles
    }
    /// True on cores whose DWT must be unlocked first (Cortex-M7).
    fn unlock_dwt(&self) -> bool {
        false
    }
    /// Flashes (or loads) and runs the firmware, and returns what it measured.
    fn run(&mut self, firmware: &Firmware) -> Result<Measurement, BoardError>;
}

/// Checks the firmware's report version symbol before it is run.
pub(crate) fn check_version(fw: &Firmware) -> Result<(), BoardError> {
    if fw.report_version != crate::report::VERSION {
        return Err(BoardError::VersionMismatch {
            firmware: fw.report_version,
            host: crate::report::VERSION,
        });
    }
    Ok(())
}

/// Checks a decoded report against what the firmware was built to produce.
pub(crate) fn check_shape(fw: &Firmware, r: &Report) -> Result<(), BoardError> {
    if r.runs.len() != fw.inputs || r.runs.iter().any(|(_, o)| o.len() != fw.classes) {
        return Err(BoardError::WrongShape {
            got: r.runs.len(),
            want: fw.inputs,
            classes: fw.classes,
        });
    }
    Ok(())
}
