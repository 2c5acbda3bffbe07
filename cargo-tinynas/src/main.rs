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
    /// Add a commented default [package.metadata.tinynas] section to the firmware's Cargo.toml,
    /// and show the budgets it gives.
    Init(InitArgs),
    /// Write the model crate the firmware depends on (`<package>-model/`: Cargo.toml, src/lib.rs
    /// with `model!`, a README model card, the .tnas file) and add it to the firmware's
    /// dependencies. Files edited since they were generated are kept unless --force is given.
    Generate(GenerateArgs),
    /// Search the architecture that fits the chip: train candidates, measure each on the board
    /// (or QEMU), keep to the budgets; then retrain the winner and generate its crate.
    Search(SearchArgs),
    /// Check the generated model crate on the board (or QEMU): the device's outputs on test
    /// images equal the host's bit for bit, and the measured figures are within the budgets.
    /// Exit codes: 0 ok, 3 outputs differ, 4 over budget, 5 no board, 2 usage, 1 other errors.
    Verify(VerifyArgs),
}

/// The firmware project, and the board to measure on (default: the project's configuration).
#[derive(Args, Debug)]
struct ProjectBoardArgs {
    /// Path to the firmware's Cargo.toml (default: the current directory's package).
    #[arg(long)]
    manifest_path: Option<PathBuf>,
    /// The firmware package, in a workspace.
    #[arg(short = 'p', long)]
    package: Option<String>,
    /// An emulated board (qemu-m0/m3/m4/m7/m55) instead of the configured one.
    #[arg(long)]
    board: Option<String>,
    /// A chip through probe-rs instead of the configured one.
    #[arg(long)]
    chip: Option<String>,
    /// The debug probe, as VID:PID[:SERIAL].
    #[arg(long)]
    probe: Option<String>,
    /// Attach while holding the chip in reset.
    #[arg(long)]
    connect_under_reset: bool,
}

impl ProjectBoardArgs {
    fn project(&self) -> anyhow::Result<cargo_tinynas::project::Project> {
        Ok(cargo_tinynas::project::Project::load(
            self.manifest_path.as_deref(),
            self.package.as_deref(),
        )?)
    }

    /// `--board`/`--chip` win over the project's configuration. With `emulate_without_probe`, a
    /// chip with no debug probe connected is emulated: the QEMU board of its instruction set,
    /// linked with the chip's flash and RAM sizes (`search` on a laptop with nothing plugged in);
    /// `verify` keeps the chip and reports "no board" instead.
    fn open_board(
        &self,
        p: &cargo_tinynas::project::Project,
        timeout: u64,
        emulate_without_probe: bool,
    ) -> anyhow::Result<Box<dyn board::Board>> {
        let (board_name, chip) = match (&self.board, &self.chip) {
            (None, None) => match p.board(None) {
                b if b.starts_with("chip:") => {
                    (None, Some(b.trim_start_matches("chip:").to_string()))
                }
                b => (Some(b), None),
            },
            (b, c) => (b.clone(), c.clone()),
        };
        if let (None, Some(c)) = (&board_name, &chip) {
            if emulate_without_probe && self.probe.is_none() && !board::probe::any_probe_connected()
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
            self.probe.clone(),
            self.connect_under_reset,
            timeout,
            p.target_cpu(),
        )
    }
}

/// A `--target-cpu` value: a plain core name.
fn parse_target_cpu(s: &str) -> Result<String, String> {
    cargo_tinynas::project::config::target_cpu(&[format!("target-cpu={s}")], "")
        .ok_or_else(|| format!("{s:?} is not a core name such as cortex-m33"))
}

#[derive(Args, Debug)]
struct VerifyArgs {
    #[command(flatten)]
    target: ProjectBoardArgs,
    /// Test images to run (from the data set's test split; random images if it has none).
    #[arg(long, default_value_t = 8)]
    images: usize,
    /// Seconds a board run may take.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
}

#[derive(Args, Debug)]
struct SearchArgs {
    #[command(flatten)]
    target: ProjectBoardArgs,
    /// nanonas (the published climb, every candidate measured) or evolve (wider space, candidates
    /// predicted to fit are trained and measured).
    #[arg(long)]
    strategy: Option<String>,
    /// evolve: candidates per generation.
    #[arg(long, default_value_t = 6)]
    population: usize,
    /// evolve: generations after the first.
    #[arg(long, default_value_t = 3)]
    generations: usize,
    /// Epochs of each candidate's training (default: proxy-epochs of the config, else 3).
    #[arg(long)]
    proxy_epochs: Option<usize>,
    /// Epochs of the winner's retraining (default: final-epochs of the config, else 30).
    #[arg(long)]
    final_epochs: Option<usize>,
    /// Largest k tried.
    #[arg(long, default_value_t = 32)]
    max_k: usize,
    /// Do not write the model crate at the end.
    #[arg(long)]
    no_generate: bool,
    /// Overwrite generated files edited by hand.
    #[arg(long)]
    force: bool,
    /// Worker threads for training (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Seconds a board run may take.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
}

#[derive(Args, Debug)]
struct GenerateArgs {
    /// The .tnas model file.
    #[arg(long)]
    model: PathBuf,
    /// Path to the firmware's Cargo.toml (default: the current directory's package).
    #[arg(long)]
    manifest_path: Option<PathBuf>,
    /// The firmware package, in a workspace.
    #[arg(short = 'p', long)]
    package: Option<String>,
    /// Architecture named on the model card.
    #[arg(long)]
    arch: Option<String>,
    /// Overwrite files edited since they were generated.
    #[arg(long)]
    force: bool,
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
}

#[derive(Args, Debug)]
struct InitArgs {
    /// Path to the firmware's Cargo.toml (default: the current directory's package).
    #[arg(long)]
    manifest_path: Option<PathBuf>,
    /// The firmware package, in a workspace.
    #[arg(short = 'p', long)]
    package: Option<String>,
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// A folder with one sub-folder of images per class (or train/ val/ test/ folders of those), or
    /// a folder of MNIST-style IDX files (e.g. /usr/share/datasets/fashion-mnist).
    #[arg(long, required_unless_present = "bench")]
    data: Option<PathBuf>,
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
    /// Base learning rate.
    #[arg(long, default_value_t = 0.003)]
    lr: f32,
    /// adam, or sgd (with --momentum).
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam)]
    optimizer: OptimizerArg,
    /// Momentum of --optimizer sgd.
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    /// Learning-rate schedule: constant, cosine (down to zero at the end) or step (x0.1 at half,
    /// x0.01 at three quarters).
    #[arg(long, default_value = "cosine")]
    schedule: cargo_tinynas::train::net::Schedule,
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
    /// Quantisation-aware fine-tune: auto (when post-training quantisation loses more than 1 point
    /// of validation accuracy), always or never.
    #[arg(long, value_enum, default_value_t = QatArg::Auto)]
    qat: QatArg,
    /// Epochs of the quantisation-aware fine-tune.
    #[arg(long, default_value_t = 2)]
    qat_epochs: usize,
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long)]
    threads: Option<usize>,
    /// Measure training speed instead: images/s, effective GMAC/s (forward + backward = 3x the
    /// forward MACs) and peak RSS on random images of --input (default 50x50x3), no dataset read.
    #[arg(long)]
    bench: bool,
    /// Batch sizes to measure with --bench.
    #[arg(long, value_delimiter = ',', default_value = "16,32")]
    bench_batches: Vec<usize>,
    /// Timed steps per batch size with --bench (after 3 untimed warm-up steps).
    #[arg(long, default_value_t = 30)]
    bench_steps: usize,
    /// With --bench: each layer's forward and backward time per step.
    #[arg(long)]
    per_layer: bool,
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum QatArg {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum OptimizerArg {
    Adam,
    Sgd,
}

fn parse_shape(s: &str) -> Result<cargo_tinynas::data::ImageShape, String> {
    cargo_tinynas::project::parse_shape(s)
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// The `.tnas` model file.
    #[arg(long, required_unless_present = "kernels")]
    model: Option<PathBuf>,
    /// The kernel benchmark instead: the six layers CMSIS-NN was measured on, through our
    /// generated code on each of --boards, in instructions per MAC beside CMSIS-NN's; then the
    /// committed fixture models.
    #[arg(long, conflicts_with_all = ["model", "chip", "board"])]
    kernels: bool,
    /// Boards of --kernels, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "qemu-m0-an385,qemu-m4,qemu-m7,qemu-m55"
    )]
    boards: Vec<String>,
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
    /// With --chip: the `-C target-cpu` your firmware is built with (e.g. cortex-m33), so the
    /// bench runs the kernels your firmware will (on thumbv8m.main the DSP and Helium paths
    /// depend on it). Default: none, as a firmware that names no core.
    #[arg(long, requires = "chip", value_parser = parse_target_cpu)]
    target_cpu: Option<String>,
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

/// The error and its causes, each cause once: many of our errors already quote their source in
/// their own message (`"...: {source}"`), which `{:#}` would print a second time.
fn error_text(e: &anyhow::Error) -> String {
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

fn main() -> ExitCode {
    let Cargo::Tinynas(args) = Cargo::parse();
    match run(args) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
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
            ExitCode::from(if no_board {
                exit_codes::NO_BOARD
            } else if stopped {
                exit_codes::INTERRUPTED
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
        Command::Init(a) => init(a),
        Command::Generate(a) => generate(a),
        Command::Verify(a) => verify(a),
        Command::Search(a) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(a.threads.unwrap_or(0))
                .build()
                .context("cannot start the worker threads")?;
            pool.install(|| search(a))
        }
    }
}

fn train_bench(a: &TrainArgs) -> anyhow::Result<i32> {
    let input = a
        .input
        .unwrap_or(cargo_tinynas::data::ImageShape { h: 50, w: 50, c: 3 });
    if a.bench_batches.contains(&0) || a.bench_steps == 0 {
        anyhow::bail!("--bench-batches and --bench-steps must be at least 1");
    }
    let rows =
        cargo_tinynas::train::bench::run(a.arch, input, 10, &a.bench_batches, a.bench_steps, 3)
            .map_err(anyhow::Error::msg)?;
    let json = a.message_format == MessageFormat::Json;
    if !json {
        eprintln!(
            "training {} at {}x{}x{}, {} forward MACs per image, {} thread(s), random images",
            a.arch, input.h, input.w, input.c, rows[0].forward_macs, rows[0].threads
        );
        println!(
            "{:>6} {:>8} {:>12} {:>16} {:>14}",
            "batch", "steps", "images/s", "effective GMAC/s", "peak RSS MiB"
        );
    }
    for r in &rows {
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "reason": "train-bench", "arch": r.arch, "input": r.input, "batch": r.batch, "threads": r.threads,
                    "steps": r.steps, "images_per_second": r.images_per_second, "forward_macs": r.forward_macs,
                    "effective_gmac_per_second": r.effective_gmac_per_second, "peak_rss_bytes": r.peak_rss_bytes,
                    "layers": r.layers.iter().map(|(n, f, b)| serde_json::json!({"layer": n, "forward_ms": f, "backward_ms": b})).collect::<Vec<_>>(),
                })
            );
        } else {
            let rss = r
                .peak_rss_bytes
                .map_or("-".to_string(), |b| format!("{:.1}", b as f64 / 1048576.0));
            println!(
                "{:>6} {:>8} {:>12.0} {:>16.2} {:>14}",
                r.batch, r.steps, r.images_per_second, r.effective_gmac_per_second, rss
            );
            if a.per_layer {
                for (name, f, b) in &r.layers {
                    println!("       {name:<22} forward {f:>7.3} ms  backward {b:>7.3} ms");
                }
            }
        }
    }
    Ok(exit_codes::OK)
}

/// The progress bar of one training epoch of `total` batches (indicatif draws nothing when
/// stderr is not a terminal).
fn epoch_bar(total: usize, template: &str, prefix: String) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(total as u64);
    b.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_prefix(prefix);
    b
}

fn search(a: SearchArgs) -> anyhow::Result<i32> {
    use cargo_tinynas::search::{self, journal::Status, Event};
    use cargo_tinynas::train::fit::Progress;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let json = a.message_format == MessageFormat::Json;
    let p = a.target.project()?;
    let strategy = a
        .strategy
        .clone()
        .or_else(|| p.config.strategy.clone())
        .unwrap_or_else(|| "nanonas".into());
    let strategy_kind = match strategy.as_str() {
        "nanonas" => search::Strategy::NanoNas,
        "evolve" => search::Strategy::Evolve { population: a.population.max(2), generations: a.generations },
        other => anyhow::bail!("unknown strategy {other:?}: use nanonas or evolve ([package.metadata.tinynas] strategy, or --strategy)"),
    };
    let mut board = a.target.open_board(&p, a.timeout, true)?;
    let budgets = p.budgets(&board.memory())?;
    let settings = search::Settings {
        strategy: strategy_kind,
        data: p.data_dir(),
        input: p.input()?,
        budgets: budgets.clone(),
        seed: p.config.seed.unwrap_or(1),
        proxy_epochs: a.proxy_epochs.or(p.config.proxy_epochs).unwrap_or(3),
        final_epochs: a.final_epochs.or(p.config.final_epochs).unwrap_or(30),
        max_k: a.max_k,
        val: 0.1,
        test: 0.1,
        qat: cargo_tinynas::train::command::QatPolicy::Auto,
        state_dir: p.dir.join(".tinynas").join("search"),
        firmware_cache: cargo_tinynas::firmware::cache_dir(),
    };
    if !json {
        let how = match strategy_kind {
            search::Strategy::NanoNas => "strategy nanonas".to_string(),
            search::Strategy::Evolve {
                population,
                generations,
            } => format!(
                "strategy evolve: population {population}, {generations} generation(s) after the first"
            ),
        };
        eprintln!("searching for {} on {} ({how})", p.name, board.name());
        for line in &budgets.explain {
            eprintln!("  budget: {line}");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(exit_codes::INTERRUPTED);
        }
        eprintln!("\nstopping after this batch; run the same command again to resume");
    });
    let mut bar: Option<indicatif::ProgressBar> = None;
    // The candidate's name comes last: names of the evolve space are long and vary in length.
    let header = format!(
        "{:>7} {:>7} {:>12} {:>11} {:>9} {:>8}  {:<6}  candidate",
        "float", "int8", "latency", "peak SRAM", "flash", "seconds", "status"
    );
    let outcome = search::run(&settings, board.as_mut(), &stop, |e| match e {
        Event::Started {
            journal,
            resumed,
            samples,
            classes,
        } => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"reason": "search-started", "journal": journal, "resumed": resumed, "train": samples.0, "val": samples.1, "test": samples.2, "classes": classes})
                );
            } else {
                eprintln!(
                    "data: {classes} classes; {} train, {} validation, {} test images",
                    samples.0, samples.1, samples.2
                );
                eprintln!(
                    "journal: {}{}",
                    journal.display(),
                    if resumed > 0 {
                        format!(" (resuming: {resumed} candidate(s) already evaluated)")
                    } else {
                        String::new()
                    }
                );
                eprintln!("{header}");
            }
        }
        Event::Training { .. } | Event::Measuring { .. } => {}
        Event::Progress(Progress::Batch {
            epoch, done, total, ..
        }) => {
            if json {
                return;
            }
            let b = bar.get_or_insert_with(|| {
                epoch_bar(
                    total,
                    "  training epoch {prefix} [{bar:30}] {pos}/{len}",
                    format!("{}", epoch + 1),
                )
            });
            b.set_position(done as u64);
        }
        Event::Progress(Progress::Epoch(_)) => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
        }
        Event::Evaluated { entry, resumed } => {
            if json {
                let mut v = serde_json::to_value(entry).unwrap_or_default();
                v["reason"] = "candidate".into();
                v["resumed"] = resumed.into();
                println!("{v}");
                return;
            }
            let pct = |v: Option<f32>| v.map_or("-".to_string(), |a| format!("{:.1}%", 100.0 * a));
            let (lat, sram, flash) =
                entry
                    .measured
                    .as_ref()
                    .map_or(("-".into(), "-".into(), "-".into()), |m| {
                        (
                            format!(
                                "{} {}",
                                m.latency,
                                if m.unit == "cycles" { "cyc" } else { "ins" }
                            ),
                            m.peak_sram_bytes.to_string(),
                            m.flash_bytes.to_string(),
                        )
                    });
            let (status, why) = match &entry.status {
                Status::Fits => ("fits", None),
                Status::OverBudgetAnalytic(w) => {
                    ("over", Some(format!("over budget (analytic): {w}")))
                }
                Status::OverBudgetMeasured(w) => {
                    ("over", Some(format!("over budget (measured): {w}")))
                }
                Status::Invalid(w) => ("invalid", Some(format!("invalid: {w}"))),
            };
            let name = if entry.kind == "final" {
                format!("{} (final)", entry.arch)
            } else {
                entry.arch.clone()
            };
            eprintln!(
                "{:>7} {:>7} {lat:>12} {sram:>11} {flash:>9} {:>8.1}  {status:<6}  {name}{}",
                pct(entry.float_val),
                pct(entry.int8_val),
                entry.seconds,
                if resumed { " (from journal)" } else { "" }
            );
            if let (Some(p), Some(m)) = (entry.predicted_latency, &entry.measured) {
                let err = 100.0 * (p as f64 - m.latency as f64) / (m.latency as f64).max(1.0);
                eprintln!("{:>28}  predicted {p} ({err:+.1} %)", "");
            }
            if let Some(why) = why {
                eprintln!("{:>28}  {why}", "");
            }
        }
    })?;
    let dir = outcome
        .journal
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let svg = dir.join("pareto.svg");
    cargo_tinynas::fsutil::write_atomic(
        &svg,
        search::svg(&outcome.candidates, &outcome.pareto).as_bytes(),
    )
    .with_context(|| format!("cannot write {}", svg.display()))?;
    let f = &outcome.final_entry;
    let generated = if a.no_generate {
        None
    } else {
        let name = p
            .config
            .crate_name
            .clone()
            .unwrap_or_else(|| format!("{}-model", p.name));
        let card = cargo_tinynas::generate::Card {
            arch: Some(f.arch.clone()),
            float_val_accuracy: f.float_val,
            int8_test_accuracy: f.int8_test,
            dataset: Some(format!(
                "{} ({} classes: {}; fingerprint {:016x})",
                // As the project names it (not this machine's absolute path).
                p.config
                    .data
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("data"))
                    .display(),
                outcome.classes.len(),
                outcome.classes.join(", "),
                outcome.data_fingerprint
            )),
            measured: f
                .measured
                .as_ref()
                .map(|m| cargo_tinynas::generate::Measured {
                    board: m.board.clone(),
                    date: cargo_tinynas::generate::today(),
                    latency: m.latency,
                    unit: m.unit.clone(),
                    peak_sram: m.peak_sram_bytes,
                    flash: m.flash_bytes,
                    outputs: "device == host, bit for bit".into(),
                }),
        };
        Some(cargo_tinynas::generate::generate(
            &p.dir.join(&name),
            &name,
            &outcome.model_bytes,
            &card,
            Some(&p.manifest_path),
            a.force,
        )?)
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "reason": "search-finished", "winner": outcome.winner.arch, "final": f, "candidates": outcome.candidates.len(),
                "resumed": outcome.resumed, "pareto": outcome.pareto.iter().map(|e| e.arch.clone()).collect::<Vec<_>>(),
                "pareto_svg": svg, "generated": generated.as_ref().map(|g| g.dir.clone()), "journal": outcome.journal,
                "hint": generated.as_ref().and_then(|_| p.kernel_hint()),
                "peak_rss_bytes": cargo_tinynas::train::bench::peak_rss_bytes(),
                "predictor": outcome.predictor_error().map(|(mean, max)| serde_json::json!({
                    "mean_relative_error": mean, "max_relative_error": max,
                    "candidates": outcome.predictions.len(),
                })),
            })
        );
    } else {
        if let Some((mean, max)) = outcome.predictor_error() {
            eprintln!(
                "\nlatency predictor against the board, {} candidates: mean error {:.1} %, largest {:.1} %",
                outcome.predictions.len(),
                100.0 * mean,
                100.0 * max
            );
        }
        eprintln!(
            "\nPareto front (accuracy vs latency vs peak SRAM), plotted in {}:",
            svg.display()
        );
        eprintln!(
            "  {:>7} {:>12} {:>11}  candidate",
            "float", "latency", "peak SRAM"
        );
        for e in &outcome.pareto {
            let m = e.measured.as_ref();
            eprintln!(
                "  {:>6.1}% {:>12} {:>11}  {}",
                100.0 * e.float_val.unwrap_or(0.0),
                m.map_or(0, |m| m.latency),
                m.map_or(0, |m| m.peak_sram_bytes),
                e.arch,
            );
        }
        eprintln!("winner: {} (best proxy validation accuracy {:.1} % among {} candidates), retrained for {} epochs:", outcome.winner.arch, 100.0 * outcome.winner.float_val.unwrap_or(0.0), outcome.candidates.len(), f.epochs);
        eprintln!(
            "  float validation {:.1} %, int8 validation {:.1} %, int8 test {:.1} %",
            100.0 * f.float_val.unwrap_or(0.0),
            100.0 * f.int8_val.unwrap_or(0.0),
            100.0 * f.int8_test.unwrap_or(0.0)
        );
        if let Some(m) = &f.measured {
            eprintln!(
                "  measured on {}: {} {} per inference, peak SRAM {} bytes, flash {} bytes",
                m.board, m.latency, m.unit, m.peak_sram_bytes, m.flash_bytes
            );
        }
        if let Some(g) = &generated {
            eprintln!("wrote {}", g.dir.display());
            if let Some(h) = p.kernel_hint() {
                eprintln!("note: {h}");
            }
        }
    }
    Ok(if matches!(f.status, Status::Fits) {
        exit_codes::OK
    } else {
        exit_codes::OVER_BUDGET
    })
}

fn verify(a: VerifyArgs) -> anyhow::Result<i32> {
    let json = a.message_format == MessageFormat::Json;
    if a.images == 0 {
        anyhow::bail!("--images must be at least 1");
    }
    let p = a.target.project()?;
    let name = p
        .config
        .crate_name
        .clone()
        .unwrap_or_else(|| format!("{}-model", p.name));
    let model_path = p.dir.join(&name).join("src").join("model.tnas");
    let bytes = std::fs::read(&model_path).with_context(|| {
        format!(
            "cannot read {}: run `cargo tinynas search` or `cargo tinynas generate` first",
            model_path.display()
        )
    })?;
    let model =
        tinynas_model::format::read(&bytes).with_context(|| format!("{}", model_path.display()))?;
    let mut board = a.target.open_board(&p, a.timeout, false)?;
    let budgets = p.budgets(&board.memory())?;
    // Test images from the project's data set, at the model's input size.
    let s = model.input_shape;
    let shape = cargo_tinynas::data::ImageShape {
        h: s.h,
        w: s.w,
        c: s.c,
    };
    let mut source = "random images".to_string();
    let mut inputs = cargo_tinynas::bench::random_inputs(&model, a.images, 1);
    if p.data_dir().is_dir() && model.input_type == tinynas_model::InputType::U8 {
        let (mut data, _) = cargo_tinynas::train::command::load(&p.data_dir(), Some(shape), false)?;
        let sp = cargo_tinynas::data::split::stratified(
            &data.labels,
            &data.assigned,
            0.1,
            0.1,
            p.config.seed.unwrap_or(1),
        );
        let pick: Vec<usize> = sp.test.iter().copied().take(a.images).collect();
        if !pick.is_empty() {
            let mut buf = Vec::new();
            data.read_batch(&pick, &mut buf)?;
            inputs = buf.chunks(shape.len()).map(<[u8]>::to_vec).collect();
            source = format!("{} test images of {}", pick.len(), p.data_dir().display());
        }
    }
    let opts = cargo_tinynas::bench::Options {
        inputs: inputs.len(),
        seed: 1,
        per_layer: false,
        extra_stack_bytes: 0,
    };
    let input_bytes: u64 = inputs.iter().map(|i| i.len() as u64).sum();
    let outcome = match cargo_tinynas::bench::run_with_inputs(
        &bytes,
        inputs,
        board.as_mut(),
        &opts,
        &cargo_tinynas::firmware::cache_dir(),
        |m| {
            if !json {
                eprintln!("  {m}")
            }
        },
    ) {
        Ok(o) => o,
        Err(cargo_tinynas::bench::BenchError::Board(
            e @ (board::BoardError::QemuMissing
            | board::BoardError::Probe(board::probe::ProbeError::NoProbe)),
        )) => {
            eprintln!("error: {e}");
            return Ok(exit_codes::NO_BOARD);
        }
        Err(e) => return Err(e).context(format!("verifying {}", model_path.display())),
    };
    let m = &outcome.measurement;
    let latency = m.latency.iter().copied().max().unwrap_or(0);
    let flash = m.sizes.flash().saturating_sub(input_bytes);
    let mut over = Vec::new();
    if m.peak_sram_bytes() > budgets.ram_bytes {
        over.push(format!(
            "peak SRAM {} > {} bytes",
            m.peak_sram_bytes(),
            budgets.ram_bytes
        ));
    }
    if flash > budgets.flash_bytes {
        over.push(format!("flash {flash} > {} bytes", budgets.flash_bytes));
    }
    if let Some(l) = budgets.latency_cycles {
        if latency > l {
            over.push(format!("latency {latency} > {l} {}", m.unit.name()));
        }
    }
    let code = if !outcome.outputs_match() {
        exit_codes::MISMATCH
    } else if !over.is_empty() {
        exit_codes::OVER_BUDGET
    } else {
        exit_codes::OK
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "reason": "verify", "crate": name, "board": m.board, "inputs": source,
                "outputs_match_host": outcome.outputs_match(), "mismatches": outcome.mismatches.len(),
                "latency": latency, "unit": m.unit.name(), "peak_sram_bytes": m.peak_sram_bytes(), "flash_bytes": flash,
                "budgets": {"ram_bytes": budgets.ram_bytes, "flash_bytes": budgets.flash_bytes, "latency": budgets.latency_cycles},
                "over_budget": over, "exit_code": code,
            })
        );
    } else {
        eprintln!("{name} on {}: {source}", m.board);
        eprintln!(
            "  outputs: {}",
            if outcome.outputs_match() {
                "device == host, bit for bit".to_string()
            } else {
                format!("{} values differ from the host", outcome.mismatches.len())
            }
        );
        eprintln!("  latency {latency} {} (budget {}), peak SRAM {} bytes (budget {}), flash {flash} bytes (budget {})",
            m.unit.name(), budgets.latency_cycles.map_or("none".into(), |l| l.to_string()), m.peak_sram_bytes(), budgets.ram_bytes, budgets.flash_bytes);
        for o in &over {
            eprintln!("  over budget: {o}");
        }
        eprintln!(
            "{}",
            match code {
                0 => "verify: ok",
                3 => "verify: FAILED (outputs differ)",
                _ => "verify: FAILED (over budget)",
            }
        );
    }
    Ok(code)
}

fn generate(a: GenerateArgs) -> anyhow::Result<i32> {
    use cargo_tinynas::generate::{self, Card};
    use cargo_tinynas::project::Project;
    let p = Project::load(a.manifest_path.as_deref(), a.package.as_deref())?;
    let bytes =
        std::fs::read(&a.model).with_context(|| format!("cannot read {}", a.model.display()))?;
    let name = p
        .config
        .crate_name
        .clone()
        .unwrap_or_else(|| format!("{}-model", p.name));
    let card = Card {
        arch: a.arch.clone(),
        ..Card::default()
    };
    let g = generate::generate(
        &p.dir.join(&name),
        &name,
        &bytes,
        &card,
        Some(&p.manifest_path),
        a.force,
    )?;
    let hint = p.kernel_hint();
    if a.message_format == MessageFormat::Json {
        println!(
            "{}",
            serde_json::json!({"reason": "generated", "crate": name, "dir": g.dir, "files": g.files, "dependency_added": g.dependency_added, "hint": hint})
        );
    } else {
        if let Some(h) = &hint {
            eprintln!("note: {h}");
        }
        eprintln!("wrote {} ({})", g.dir.display(), g.files.join(", "));
        if g.dependency_added {
            eprintln!(
                "added {name} to [dependencies] of {}",
                p.manifest_path.display()
            );
        }
    }
    Ok(exit_codes::OK)
}

fn init(a: InitArgs) -> anyhow::Result<i32> {
    use cargo_tinynas::project::{self, Project};
    let p = Project::load(a.manifest_path.as_deref(), a.package.as_deref())?;
    let section = project::init(&p.manifest_path, &p.name, p.chip().as_deref())?;
    eprintln!("added to {}:{section}", p.manifest_path.display());
    if let Some(chip) = p.chip() {
        eprintln!(
            "chip {chip} (from {})",
            p.cargo
                .path
                .as_ref()
                .map_or("the manifest".into(), |x| x.display().to_string())
        );
    }
    if let Some(m) = &p.memory_x {
        eprintln!(
            "memory.x: RAM {} bytes at {:#x}, flash {} bytes at {:#x}",
            m.ram_length, m.ram_origin, m.flash_length, m.flash_origin
        );
    }
    if let Some(h) = p.kernel_hint() {
        eprintln!("note: {h}");
    }
    eprintln!(
        "next: put a folder per class under {}, then run `cargo tinynas search`",
        p.data_dir().display()
    );
    Ok(exit_codes::OK)
}

fn train(a: TrainArgs) -> anyhow::Result<i32> {
    // The whole run executes on the pool's threads: the engine's parallel loops then split work
    // among the workers without waking and parking the main thread at every layer.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads.unwrap_or(0))
        .build()
        .context("cannot start the worker threads")?;
    pool.install(|| train_on_pool(a))
}

fn train_on_pool(a: TrainArgs) -> anyhow::Result<i32> {
    use cargo_tinynas::train::command::{self, Event};
    use cargo_tinynas::train::fit::Progress;
    if a.bench {
        return train_bench(&a);
    }
    let data = a.data.clone().context("--data is required")?;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // Ctrl-C stops after the current batch and keeps the best epoch so far; a second one quits.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(exit_codes::INTERRUPTED);
        }
        eprintln!("\nstopping after this batch (Ctrl-C again to quit without saving)");
    });
    let args = command::Args {
        data: data.clone(),
        arch: a.arch,
        input: a.input,
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        optimizer: match a.optimizer {
            OptimizerArg::Adam => cargo_tinynas::train::net::OptimizerKind::Adam,
            OptimizerArg::Sgd => cargo_tinynas::train::net::OptimizerKind::Sgd {
                momentum: a.momentum,
            },
        },
        schedule: a.schedule,
        seed: a.seed,
        val: a.val,
        test: a.test,
        augment: a.augment,
        strict: a.strict,
        out: a.out.clone(),
        qat: match a.qat {
            QatArg::Auto => command::QatPolicy::Auto,
            QatArg::Always => command::QatPolicy::Always,
            QatArg::Never => command::QatPolicy::Never,
        },
        qat_epochs: a.qat_epochs,
    };
    let json = a.message_format == MessageFormat::Json;
    let epochs = a.epochs;
    // A bar per epoch on a terminal (indicatif draws nothing when stderr is not one).
    let mut bar: Option<indicatif::ProgressBar> = None;
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
        Event::Progress(Progress::Batch { epoch, done, total, loss, accuracy, images_per_second }) => {
            if json {
                return;
            }
            let bar = bar.get_or_insert_with(|| {
                epoch_bar(
                    total,
                    "epoch {prefix} [{bar:30}] {pos}/{len} batches  {msg}  ETA {eta}",
                    format!("{:>3}/{epochs}", epoch + 1),
                )
            });
            bar.set_position(done as u64);
            bar.set_message(format!("loss {loss:.4}  train {:.1} %  {images_per_second:.0} images/s", 100.0 * accuracy));
        }
        Event::QatStarted { float_val, ptq_val, epochs: n } => {
            if json {
                println!("{}", serde_json::json!({"reason": "qat-started", "float_val_accuracy": float_val, "ptq_val_accuracy": ptq_val, "epochs": n}));
            } else {
                eprintln!("post-training quantisation: validation {:.1} % (float {:.1} %); fine-tuning with quantisation-aware training for {n} epoch(s)", 100.0 * ptq_val, 100.0 * float_val);
            }
        }
        Event::Progress(Progress::Epoch(e)) => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            if json {
                println!("{}", serde_json::json!({"reason": "epoch", "epoch": e.epoch + 1, "loss": e.loss, "train_accuracy": e.train_accuracy, "val_accuracy": e.val_accuracy, "images_per_second": e.images_per_second}));
            } else {
                eprintln!("epoch {:>3}/{epochs}  loss {:.4}  train {:.1} %  validation {:.1} %  {:.0} images/s", e.epoch + 1, e.loss, 100.0 * e.train_accuracy, 100.0 * e.val_accuracy, e.images_per_second);
            }
        }
    })
    .with_context(|| format!("training on {}", data.display()))?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "reason": "train-report", "float_val_accuracy": report.float_val, "float_test_accuracy": report.float_test,
                "int8_val_accuracy": report.int8_val, "int8_test_accuracy": report.int8_test, "confusion": report.confusion,
                "params": report.params, "macs": report.macs, "arena_bytes": report.arena_bytes, "out": report.out, "stopped_early": report.stopped_early,
                "peak_rss_bytes": cargo_tinynas::train::bench::peak_rss_bytes(),
                "qat": report.qat.map(|q| serde_json::json!({"ptq_val_accuracy": q.ptq_val, "qat_val_accuracy": q.qat_val, "epochs": q.epochs, "kept": q.kept})),
            })
        );
    } else {
        if let Some(rss) = cargo_tinynas::train::bench::peak_rss_bytes() {
            eprintln!("peak RSS: {:.1} MiB", rss as f64 / 1048576.0);
        }
        eprint!("{}", command::render(&report));
    }
    Ok(exit_codes::OK)
}

/// An emulated board (`qemu-*`, optionally with a chip's memory sizes), or a chip through probe-rs.
/// With a chip, the bench firmware is built with `firmware_cpu` (the firmware's own `-C
/// target-cpu`, if it names one) instead of the emulated machine's core.
fn open_board(
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

fn kernel_bench(a: &BenchArgs) -> anyhow::Result<i32> {
    use cargo_tinynas::kernel_bench as kb;
    let human = a.message_format == MessageFormat::Human;
    let cache = cargo_tinynas::firmware::cache_dir();
    let layers = kb::layers()?;
    let (mut rows, mut models) = (Vec::new(), Vec::new());
    let mut all_match = true;
    for name in &a.boards {
        let mut board = open_board(Some(name), None, None, false, a.timeout, None)?;
        for l in &layers {
            if human {
                eprintln!("  {name}: layer {}) {}", l.id, l.what);
            }
            let r = kb::bench_layer(l, board.as_mut(), &cache)
                .with_context(|| format!("layer {} on {name}", l.id))?;
            all_match &= r.outputs_match;
            if !human {
                println!("{}", r.json("layer"));
            }
            rows.push(r);
        }
        for f in kb::FIXTURES {
            let path = kb::fixtures_dir().join(f);
            let bytes = std::fs::read(&path).with_context(|| {
                format!(
                    "cannot read {}: --kernels runs in a cargo-tinynas checkout",
                    path.display()
                )
            })?;
            if human {
                eprintln!("  {name}: {f}");
            }
            let r = kb::bench_model(f, &bytes, board.as_mut(), &cache)
                .with_context(|| format!("{f} on {name}"))?;
            all_match &= r.outputs_match;
            if !human {
                println!("{}", r.json("model"));
            }
            models.push(r);
        }
    }
    if human {
        eprint!("{}", kb::table(&layers, &rows, &models, &a.boards));
    }
    Ok(if all_match {
        exit_codes::OK
    } else {
        exit_codes::MISMATCH
    })
}

fn bench(a: BenchArgs) -> anyhow::Result<i32> {
    if a.kernels {
        return kernel_bench(&a);
    }
    let model = a.model.clone().unwrap_or_default();
    let bytes =
        std::fs::read(&model).with_context(|| format!("cannot read {}", model.display()))?;
    let mut board = open_board(
        a.board.as_deref(),
        a.chip.as_deref(),
        a.probe.clone(),
        a.connect_under_reset,
        a.timeout,
        a.target_cpu.clone(),
    )?;
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
    .with_context(|| format!("benching {}", model.display()))?;
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
