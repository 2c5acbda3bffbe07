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
    /// Train one architecture on a dataset, export it as an int8 model, and report its accuracy.
    Train(TrainArgs),
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// A folder with one sub-folder of images per class (or train/ val/ test/ folders of those), or
    /// a folder of MNIST-style IDX files (e.g. /usr/share/datasets/fashion-mnist).
    #[arg(long)]
    data: PathBuf,
    /// The architecture, e.g. nanonas:k=4,c=2.
    #[arg(long)]
    arch: cargo_tinynas::train::net::Arch,
    /// Input height x width x channels (1 grey, 3 RGB); default 28x28x1 for IDX data, 32x32x3 for
    /// image folders.
    #[arg(long, value_parser = parse_shape)]
    input: Option<cargo_tinynas::data::ImageShape>,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 0.003)]
    lr: f32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fraction of each class for validation (unless a val/ folder exists).
    #[arg(long, default_value_t = 0.1)]
    val: f64,
    /// Fraction of each class for test (unless split folders exist).
    #[arg(long, default_value_t = 0.1)]
    test: f64,
    /// Random flips and shifts of the training images.
    #[arg(long)]
    augment: bool,
    /// Treat unreadable or non-image files in the dataset as an error.
    #[arg(long)]
    strict: bool,
    /// Where to write the int8 model.
    #[arg(long, default_value = "model.tnas")]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
}

fn parse_shape(s: &str) -> Result<cargo_tinynas::data::ImageShape, String> {
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
            Ok(cargo_tinynas::data::ImageShape { h, w, c })
        }
        _ => Err(format!(
            "{s:?} is not HxWxC with C 1 (grey) or 3 (RGB), e.g. 32x32x3"
        )),
    }
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
        Command::Train(a) => train(a),
    }
}

fn train(a: TrainArgs) -> anyhow::Result<i32> {
    use cargo_tinynas::train::command::{self, Event};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // Ctrl-C stops after the current batch and keeps the best epoch so far; a second one quits.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this batch (Ctrl-C again to quit without saving)");
    });
    let args = command::Args {
        data: a.data.clone(),
        arch: a.arch,
        input: a.input,
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        seed: a.seed,
        val: a.val,
        test: a.test,
        augment: a.augment,
        strict: a.strict,
        out: a.out.clone(),
    };
    let json = a.message_format == MessageFormat::Json;
    let epochs = a.epochs;
    let report = command::run(&args, &stop, |e| match e {
        Event::Loaded { samples, classes, skipped, params } => {
            if json {
                println!("{}", serde_json::json!({"reason": "dataset", "train": samples.0, "val": samples.1, "test": samples.2, "classes": classes, "skipped": skipped.len()}));
            } else {
                eprintln!("data: {} classes; {} train, {} validation, {} test images", classes.len(), samples.0, samples.1, samples.2);
                if !skipped.is_empty() {
                    eprintln!("skipped {} file(s) (use --strict to make this an error):\n{}", skipped.len(), cargo_tinynas::data::folder::describe(skipped));
                }
                eprintln!("model: {} with {params} parameters", a.arch);
            }
        }
        Event::Epoch(e) => {
            if json {
                println!("{}", serde_json::json!({"reason": "epoch", "epoch": e.epoch + 1, "loss": e.loss, "train_accuracy": e.train_accuracy, "val_accuracy": e.val_accuracy, "images_per_second": e.images_per_second}));
            } else {
                eprintln!("epoch {:>3}/{epochs}  loss {:.4}  train {:.1} %  validation {:.1} %  {:.0} images/s", e.epoch + 1, e.loss, 100.0 * e.train_accuracy, 100.0 * e.val_accuracy, e.images_per_second);
            }
        }
    })
    .with_context(|| format!("training on {}", a.data.display()))?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "reason": "train-report", "float_val_accuracy": report.float_val, "float_test_accuracy": report.float_test,
                "int8_val_accuracy": report.int8_val, "int8_test_accuracy": report.int8_test, "confusion": report.confusion,
                "params": report.params, "macs": report.macs, "arena_bytes": report.arena_bytes, "out": report.out, "stopped_early": report.stopped_early,
            })
        );
    } else {
        eprint!("{}", command::render(&report));
    }
    Ok(exit_codes::OK)
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
