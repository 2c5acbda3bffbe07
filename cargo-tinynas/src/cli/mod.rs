//! The command line, one file per command: each a clap `Args` struct and its `run`. The option
//! groups and helpers the commands share are here.

use std::path::PathBuf;

use anyhow::Context;
use cargo_tinynas::board;
use clap::{Args, ValueEnum};

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
        let (board_name, chip) = match (&self.on.board, &self.on.chip) {
            (None, None) => match p.board(None) {
                b if b.starts_with("chip:") => {
                    (None, Some(b.trim_start_matches("chip:").to_string()))
                }
                b => (Some(b), None),
            },
            (b, c) => (b.clone(), c.clone()),
        };
        if let (None, Some(c)) = (&board_name, &chip) {
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
                return open_board(
                    Some(emulated),
                    Some(c),
                    None,
                    false,
                    timeout,
                    p.target_cpu(),
                );
            }
        }
        open_board(
            board_name.as_deref(),
            chip.as_deref(),
            self.on.probe.clone(),
            self.on.connect_under_reset,
            timeout,
            p.target_cpu(),
        )
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
/// probe), interrupted (Ctrl-C during a search), else a plain error. Commands return the other
/// codes (mismatch, over budget) as results.
pub(crate) fn exit_code(e: &anyhow::Error) -> u8 {
    use cargo_tinynas::exit_codes;
    let no_board = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<board::BoardError>(),
            Some(
                board::BoardError::QemuMissing
                    | board::BoardError::Probe(board::probe::ProbeError::NoProbe)
            )
        )
    });
    let stopped = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<cargo_tinynas::search::SearchError>(),
            Some(cargo_tinynas::search::SearchError::Stopped)
        )
    });
    let code = if no_board {
        exit_codes::NO_BOARD
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

/// An emulated board (`qemu-*`, optionally with a chip's memory sizes), or a chip through probe-rs.
/// With a chip, the bench firmware is built with `firmware_cpu` (the firmware's own `-C
/// target-cpu`, if it names one) instead of the emulated machine's core.
pub(crate) fn open_board(
    board_name: Option<&str>,
    chip: Option<&str>,
    probe: Option<String>,
    connect_under_reset: bool,
    timeout: u64,
    firmware_cpu: Option<String>,
) -> anyhow::Result<Box<dyn board::Board>> {
    Ok(match (board_name, chip) {
        (Some(b), chip) if b.starts_with("qemu-") => {
            let m = board::qemu::machine(b).with_context(|| {
                let names: Vec<_> = board::qemu::MACHINES.iter().map(|m| m.board).collect();
                format!("unknown board {b:?}: choose one of {}", names.join(", "))
            })?;
            let mut q = board::qemu::QemuBoard::new(m);
            q.timeout = std::time::Duration::from_secs(timeout);
            if let Some(c) = chip {
                let f = board::probe::chip_facts(c)?;
                q = q.with_chip_sizes(&f.name, f.memory.flash_length, f.memory.ram_length);
                q.firmware_cpu = Some(firmware_cpu);
            }
            Box::new(q)
        }
        (Some(b), _) => anyhow::bail!("unknown board {b:?}: use --board qemu-m4 (or qemu-m0/m3/m7/m55) for the emulator, or --chip NAME for a real chip"),
        (None, Some(c)) => {
            let mut p = board::probe::ProbeBoard::new(c)?;
            p.probe = probe;
            p.connect_under_reset = connect_under_reset;
            p.timeout = std::time::Duration::from_secs(timeout);
            p.target_cpu = firmware_cpu;
            Box::new(p)
        }
        (None, None) => {
            let mut q = board::qemu::QemuBoard::new(board::qemu::machine(board::qemu::DEFAULT).expect("default board"));
            q.timeout = std::time::Duration::from_secs(timeout);
            Box::new(q)
        }
    })
}
