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

pub(crate) mod bench;
pub(crate) mod generate;
pub(crate) mod init;
pub(crate) mod inspect;
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
    /// An emulated board: qemu-m0, qemu-m3, qemu-m4 (the default), qemu-m7 or qemu-m55 (in a
    /// firmware project: instead of the configured one). With --chip, the emulator is linked
    /// with that chip's flash and RAM.
    #[arg(long)]
    pub(crate) board: Option<String>,
    /// A real chip behind a debug probe, by its probe-rs name (e.g. STM32F746NGHx).
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

    /// `--board`/`--chip` win over the project's configuration. With `emulate_without_probe`, a
    /// chip with no debug probe connected is emulated: the QEMU board of its instruction set,
    /// linked with the chip's flash and RAM sizes (`search` on a laptop with nothing plugged in);
    /// `verify` keeps the chip and reports "no board" instead.
    pub(crate) fn open_board(
        &self,
        p: &cargo_tinynas::project::Project,
        timeout: u64,
        emulate_without_probe: bool,
    ) -> anyhow::Result<Box<dyn board::Board>> {
        let choice = self.on.choice().unwrap_or_else(|| p.board());
        let opts = self.on.options(timeout, p.target_cpu());
        if let board::BoardChoice::Chip(c) = &choice {
            if emulate_without_probe
                && self.on.probe.is_none()
                && !board::probe::any_probe_connected()
            {
                let facts = board::probe::chip_facts(c)?;
                let emulated = board::probe::emulated_board_for(&facts);
                eprintln!(
                    "no debug probe connected: measuring on {emulated} with {}'s flash and RAM sizes (connect the board, or pass --board, to choose)",
                    facts.name
                );
                let choice = board::BoardChoice::Emulated {
                    board: emulated.to_string(),
                    chip: Some(c.clone()),
                };
                return Ok(board::open(&choice, &opts)?);
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
