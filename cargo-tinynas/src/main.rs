//! `cargo tinynas`: see `cargo tinynas --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cargo_tinynas::{board, exit_codes, inspect};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "cargo", bin_name = "cargo", styles = clap::builder::Styles::plain())]
enum Cargo {
    /// Design a tiny neural network for one microcontroller and generate its inference crate.
    #[command(version)]
    Tinynas(Tinynas),
}

#[derive(Args, Debug)]
struct Tinynas {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show a model's layers, MACs, parameters and planned activation memory.
    Inspect(InspectArgs),
    /// Measure a model on a board: latency, peak SRAM and flash, with the device's outputs checked
    /// against the host bit for bit.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// The `.tnas` model file.
    #[arg(long)]
    model: PathBuf,
    /// An emulated board: qemu-m0, qemu-m3, qemu-m4 (default), qemu-m7 or qemu-m55. With --chip,
    /// the emulator is linked with that chip's flash and RAM.
    #[arg(long)]
    board: Option<String>,
    /// A real chip behind a debug probe, by its probe-rs name (e.g. STM32F746NGHx).
    #[arg(long)]
    chip: Option<String>,
    /// The debug probe, as VID:PID[:SERIAL], when several are connected.
    #[arg(long)]
    probe: Option<String>,
    /// Attach while holding the chip in reset.
    #[arg(long)]
    connect_under_reset: bool,
    /// Time every layer.
    #[arg(long)]
    per_layer: bool,
    /// Number of random inputs to run.
    #[arg(long, default_value_t = 4)]
    inputs: usize,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds a run may take before it counts as hung.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
}

#[derive(Args, Debug)]
struct InspectArgs {
    /// The `.tnas` model file.
    model: PathBuf,
    /// `human` (a table on stderr) or `json` (one JSON object per line on stdout).
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum MessageFormat {
    Human,
    Json,
}

fn main() -> ExitCode {
    let Cargo::Tinynas(args) = Cargo::parse();
    match run(args) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            let no_board = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<board::BoardError>(),
                    Some(
                        board::BoardError::QemuMissing
                            | board::BoardError::Probe(board::probe::ProbeError::NoProbe)
                    )
                )
            });
            ExitCode::from(if no_board {
                exit_codes::NO_BOARD
            } else {
                exit_codes::ERROR
            } as u8)
        }
    }
}

fn run(args: Tinynas) -> anyhow::Result<i32> {
    match args.command {
        Command::Inspect(a) => {
            let bytes = std::fs::read(&a.model)
                .with_context(|| format!("cannot read {}", a.model.display()))?;
            let model = tinynas_model::format::read(&bytes)
                .with_context(|| format!("{} is not a usable model", a.model.display()))?;
            let report = inspect::report(&model);
            match a.message_format {
                MessageFormat::Json => println!("{report}"),
                MessageFormat::Human => eprint!("{}", inspect::render(&model, &report)),
            }
            Ok(exit_codes::OK)
        }
        Command::Bench(a) => bench(a),
    }
}

fn bench(a: BenchArgs) -> anyhow::Result<i32> {
    let bytes =
        std::fs::read(&a.model).with_context(|| format!("cannot read {}", a.model.display()))?;
    let mut board: Box<dyn board::Board> = match (&a.board, &a.chip) {
        (Some(b), chip) if b.starts_with("qemu-") => {
            let m = board::qemu::machine(b).with_context(|| {
                let names: Vec<_> = board::qemu::MACHINES.iter().map(|m| m.board).collect();
                format!("unknown board {b:?}: choose one of {}", names.join(", "))
            })?;
            let mut q = board::qemu::QemuBoard::new(m);
            q.timeout = std::time::Duration::from_secs(a.timeout);
            if let Some(c) = chip {
                let f = board::probe::chip_facts(c)?;
                q = q.with_chip_sizes(&f.name, f.memory.flash_length, f.memory.ram_length);
            }
            Box::new(q)
        }
        (Some(b), _) => anyhow::bail!("unknown board {b:?}: use --board qemu-m4 (or qemu-m0/m3/m7/m55) for the emulator, or --chip NAME for a real chip"),
        (None, Some(c)) => {
            let mut p = board::probe::ProbeBoard::new(c)?;
            p.probe = a.probe.clone();
            p.connect_under_reset = a.connect_under_reset;
            p.timeout = std::time::Duration::from_secs(a.timeout);
            Box::new(p)
        }
        (None, None) => {
            let mut q = board::qemu::QemuBoard::new(board::qemu::machine(board::qemu::DEFAULT).expect("default board"));
            q.timeout = std::time::Duration::from_secs(a.timeout);
            Box::new(q)
        }
    };
    let opts = cargo_tinynas::bench::Options {
        inputs: a.inputs,
        seed: a.seed,
        per_layer: a.per_layer,
        extra_stack_bytes: 0,
    };
    let human = a.message_format == MessageFormat::Human;
    let outcome = cargo_tinynas::bench::run(
        &bytes,
        board.as_mut(),
        &opts,
        &cargo_tinynas::firmware::cache_dir(),
        |msg| {
            if human {
                eprintln!("  {msg}");
            }
        },
    )
    .with_context(|| format!("benching {}", a.model.display()))?;
    match a.message_format {
        MessageFormat::Json => println!("{}", cargo_tinynas::bench::json(&outcome)),
        MessageFormat::Human => eprint!("{}", cargo_tinynas::bench::table(&outcome)),
    }
    Ok(if outcome.outputs_match() {
        exit_codes::OK
    } else {
        exit_codes::MISMATCH
    })
}
