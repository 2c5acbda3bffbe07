//! The command line, one file per command: each a clap `Args` struct and its `run`. The option
//! groups and helpers the commands share are here.

use std::path::PathBuf;

use cargo_tinynas::board;
use clap::{Args, ValueEnum};

/// `println!` for the commands' results and JSON messages, which never panics: on a closed stdout
/// (`--message-format json | head -1`) the line is dropped and the command carries on, so what it
/// writes to disk (a model, a journal, a crate) is still written.
/// (Defined before the command modules, which see it by textual scope.)
macro_rules! out {
    ($($t:tt)*) => {
        $crate::cli::emit(format_args!($($t)*))
    };
}

/// Writes one line to stdout, ignoring a closed pipe (see [`out!`]).
pub(crate) fn emit(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = o
        .write_fmt(args)
        .and_then(|()| o.write_all(b"\n"))
        .and_then(|()| o.flush());
}

/// A count that must be at least 1 (epochs, batch size, population, ...).
pub(crate) fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(e.to_string()),
    }
}

/// Names the model's classes (`--labels` of `import` and `generate`): one name per output value,
/// each non-empty and different, spaces around each name dropped (`--labels "a, b"`).
pub(crate) fn set_labels(
    model: &mut tinynas_model::Model,
    labels: &[String],
) -> anyhow::Result<()> {
    let labels: Vec<String> = labels.iter().map(|l| l.trim().to_string()).collect();
    if labels.len() != model.classes() {
        anyhow::bail!(
            "--labels gives {} names for the model's {} outputs: give one name per output, comma-separated",
            labels.len(),
            model.classes()
        );
    }
    if let Some(i) = labels.iter().position(String::is_empty) {
        anyhow::bail!("--labels: name {} is empty", i + 1);
    }
    for (i, l) in labels.iter().enumerate() {
        if labels[..i].contains(l) {
            anyhow::bail!("--labels names two classes {l:?}: give each class its own name");
        }
    }
    model.labels = labels;
    Ok(())
}

/// A learning rate: a positive, finite number.
pub(crate) fn positive(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err("must be a positive number (e.g. 0.003)".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A share of the data set: at least 0, below 1.
pub(crate) fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        Ok(_) => {
            Err("must be a share of the images from 0 up to (not including) 1, e.g. 0.1".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A label smoothing: from 0 up to (not including) 1.
pub(crate) fn smoothing(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        Ok(_) => Err("must be from 0 up to (not including) 1, e.g. 0.1".into()),
        Err(e) => Err(e.to_string()),
    }
}

pub(crate) mod bench;
pub(crate) mod generate;
pub(crate) mod import;
pub(crate) mod init;
pub(crate) mod inspect;
pub(crate) mod predict;
pub(crate) mod search;
pub(crate) mod train;
pub(crate) mod verify;

/// The firmware project.
#[derive(Args, Debug)]
pub(crate) struct ProjectArgs {
    /// Path to the firmware's Cargo.toml (default: the current directory's package).
    #[arg(long)]
    pub(crate) manifest_path: Option<PathBuf>,
    /// The firmware package, in a workspace.
    #[arg(short = 'p', long)]
    pub(crate) package: Option<String>,
}

impl ProjectArgs {
    pub(crate) fn project(&self) -> anyhow::Result<cargo_tinynas::project::Project> {
        Ok(cargo_tinynas::project::Project::load(
            self.manifest_path.as_deref(),
            self.package.as_deref(),
        )?)
    }
}

/// The firmware project, and the board to measure on (default: the project's configuration).
#[derive(Args, Debug)]
pub(crate) struct ProjectBoardArgs {
    #[command(flatten)]
    pub(crate) project: ProjectArgs,
    #[command(flatten)]
    pub(crate) on: BoardArgs,
}

/// The board to measure on.
#[derive(Args, Debug)]
pub(crate) struct BoardArgs {
    /// An emulated board under QEMU: qemu-m0 (Cortex-M0, micro:bit, 16 KiB RAM), qemu-m0-an385
    /// (Armv6-M code on an MPS2 AN385, 4 MiB), qemu-m3 (Cortex-M3, LM3S6965, 64 KiB),
    /// qemu-m3-an385 (Cortex-M3, MPS2 AN385, 4 MiB), qemu-m4 (Cortex-M4F, MPS2 AN386; the
    /// default outside a project), qemu-m7 (Cortex-M7, MPS2 AN500) or qemu-m55 (Cortex-M55,
    /// MPS3 AN547). Latency is counted in instructions. In a firmware project it replaces the
    /// configured board, and the firmware is linked with the flash and RAM sizes of the
    /// project's chip (or of the chip --chip names).
    #[arg(long)]
    pub(crate) board: Option<String>,
    /// A real chip behind a debug probe, by its probe-rs name (e.g. STM32F746NGHx); latency in
    /// core cycles. Without a probe connected this exits 5 ("no board"). A chip named only by the
    /// project (its `chip` key or probe-rs runner line) is emulated on its core's board instead
    /// when no probe is connected, said in one line.
    #[arg(long)]
    pub(crate) chip: Option<String>,
    /// The debug probe, as VID:PID[:SERIAL], when several are connected.
    #[arg(long)]
    pub(crate) probe: Option<String>,
    /// Attach while holding the chip in reset.
    #[arg(long)]
    pub(crate) connect_under_reset: bool,
}

impl ProjectBoardArgs {
    pub(crate) fn project(&self) -> anyhow::Result<cargo_tinynas::project::Project> {
        self.project.project()
    }

    /// `--board`/`--chip` win over the project's configuration. A chip the project names (its
    /// `chip` key or runner line) with no debug probe connected is emulated: the QEMU board of
    /// its core with room for its memory, linked with the chip's flash and RAM sizes, said in one
    /// line (`search` and `verify` on a laptop with nothing plugged in). `--chip` on the command
    /// line asks for the chip itself: without a probe that is "no board" (exit 5).
    pub(crate) fn open_board(
        &self,
        p: &cargo_tinynas::project::Project,
        timeout: u64,
    ) -> anyhow::Result<Box<dyn board::Board>> {
        // `--board` alone, in a project that names its chip: that board linked with the chip's
        // sizes and built as the firmware is, as `search` measured it, so the figures agree.
        let from_flags = self.on.choice().map(|c| match c {
            board::BoardChoice::Emulated { board, chip: None } => board::BoardChoice::Emulated {
                board,
                chip: p.chip(),
            },
            other => other,
        });
        let asked = from_flags.is_some();
        let mut choice = from_flags.unwrap_or_else(|| p.board());
        let opts = self.on.options(timeout, p.target_cpu());
        if let board::BoardChoice::Chip(c) = &choice {
            if !asked && self.on.probe.is_none() && !board::probe::any_probe_connected() {
                let facts = board::probe::chip_facts(c)?;
                let emulated = board::probe::emulated_board_for(&facts);
                eprintln!(
                    "no debug probe connected: measuring {} ({}) on {emulated}{}, linked for its {} KiB of RAM and {} KiB of flash (connect the board to measure the chip itself)",
                    facts.name,
                    facts.core,
                    machine_note(emulated),
                    facts.memory.ram_length / 1024,
                    facts.memory.flash_length / 1024,
                );
                choice = board::BoardChoice::Emulated {
                    board: emulated.to_string(),
                    chip: Some(c.clone()),
                };
            }
        } else if let board::BoardChoice::Emulated {
            board: b,
            chip: Some(c),
        } = &choice
        {
            // A board named for a chip: say where it differs from the chip's own.
            if let (Some(m), Ok(facts)) = (board::qemu::machine(b), board::probe::chip_facts(c)) {
                let own = board::probe::emulated_board_for(&facts);
                let own_cpu = board::qemu::machine(own).map(|o| o.cpu);
                if own_cpu != Some(m.cpu) {
                    eprintln!(
                        "note: {b} ({}) is not {}'s core ({}): measuring on {b} as configured; {own} emulates the chip's core",
                        m.core, facts.name, facts.core
                    );
                } else if m.ram.1 < facts.memory.ram_length || m.flash.1 < facts.memory.flash_length
                {
                    eprintln!(
                        "note: {b} has {} KiB of RAM and {} KiB of flash, less than {}'s {} and {} KiB: models are linked for {b}'s; {own} runs the same code with room",
                        m.ram.1 / 1024,
                        m.flash.1 / 1024,
                        facts.name,
                        facts.memory.ram_length / 1024,
                        facts.memory.flash_length / 1024
                    );
                }
            }
        }
        Ok(board::open(&choice, &opts)?)
    }
}

impl BoardArgs {
    /// The board `--board`/`--chip` name, if any.
    pub(crate) fn choice(&self) -> Option<board::BoardChoice> {
        board::BoardChoice::from_flags(self.board.as_deref(), self.chip.as_deref())
    }

    /// How to open it: the probe options, `timeout` seconds, and the firmware's core.
    pub(crate) fn options(&self, timeout: u64, firmware_cpu: Option<String>) -> board::OpenOptions {
        board::OpenOptions {
            probe: self.probe.clone(),
            connect_under_reset: self.connect_under_reset,
            timeout: std::time::Duration::from_secs(timeout),
            firmware_cpu,
        }
    }
}

/// How an emulated board runs a core not its own (` (Armv6-M code on an MPS2 AN385)`), or
/// nothing.
fn machine_note(board: &str) -> String {
    match board::qemu::machine(board) {
        Some(m) if m.core.contains('(') => format!(
            " ({})",
            m.core
                .split_once('(')
                .map_or("", |x| x.1)
                .trim_end_matches(')')
        ),
        Some(m) => format!(" ({} on QEMU {})", m.core, m.machine),
        None => String::new(),
    }
}

/// A `--target-cpu` value: a plain core name.
pub(crate) fn parse_target_cpu(s: &str) -> Result<String, String> {
    cargo_tinynas::project::config::target_cpu(&[format!("target-cpu={s}")], "")
        .ok_or_else(|| format!("{s:?} is not a core name such as cortex-m33"))
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MessageFormat {
    Human,
    Json,
}

/// The exit code of a command that failed (`exit_codes.rs`): no board (QEMU missing, no debug
/// probe), a usage error (an unknown `--board`), interrupted (Ctrl-C during a search or before
/// training's first epoch ended), else a plain error. Commands return the other
/// codes (mismatch, over budget) as results.
pub(crate) fn exit_code(e: &anyhow::Error) -> u8 {
    use board::probe::ProbeError;
    use cargo_tinynas::exit_codes;
    let no_board = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<board::BoardError>(),
            Some(
                board::BoardError::QemuMissing
                    | board::BoardError::Probe(
                        ProbeError::NoProbe | ProbeError::ProbeNotFound { .. }
                    )
            )
        )
    });
    let stopped = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<cargo_tinynas::search::SearchError>(),
            Some(cargo_tinynas::search::SearchError::Stopped)
        ) || matches!(
            c.downcast_ref::<cargo_tinynas::train::TrainError>(),
            Some(cargo_tinynas::train::TrainError::StoppedEarly)
        )
    });
    let unknown_board = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<board::BoardError>(),
            Some(
                board::BoardError::UnknownBoard { .. }
                    | board::BoardError::Probe(
                        ProbeError::SeveralProbes(_) | ProbeError::BadSelector(_)
                    )
            )
        )
    });
    let code = if no_board {
        exit_codes::NO_BOARD
    } else if unknown_board {
        exit_codes::USAGE
    } else if stopped {
        exit_codes::INTERRUPTED
    } else {
        exit_codes::ERROR
    };
    u8::try_from(code).unwrap_or(1)
}

/// The error and its causes, each cause once: many of our errors already quote their source in
/// their own message (`"...: {source}"`), which `{:#}` would print a second time.
pub(crate) fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}
