//! `cargo tinynas train`: one architecture trained, quantised and exported (and `--bench`).

use std::path::PathBuf;

use super::MessageFormat;
use anyhow::Context;
use cargo_tinynas::exit_codes;
use clap::Args;

#[derive(Args, Debug)]
pub(crate) struct TrainArgs {
    /// A folder with one sub-folder of images per class (or train/ val/ test/ folders of those), or
    /// a folder of MNIST-style IDX files (e.g. /usr/share/datasets/fashion-mnist).
    #[arg(long, required_unless_present = "bench")]
    pub(crate) data: Option<PathBuf>,
    /// The architecture, e.g. nanonas:k=4,c=2.
    #[arg(long)]
    pub(crate) arch: tinynas_train::net::Arch,
    /// Input height x width x channels (1 grey, 3 RGB); default 28x28x1 for IDX data, 32x32x3 for
    /// image folders.
    #[arg(long, value_parser = parse_shape)]
    pub(crate) input: Option<cargo_tinynas::data::ImageShape>,
    #[arg(long, default_value_t = 10, value_parser = super::at_least_one)]
    pub(crate) epochs: usize,
    #[arg(long, default_value_t = 32, value_parser = super::at_least_one)]
    pub(crate) batch: usize,
    /// Base learning rate.
    #[arg(long, default_value_t = 0.003, value_parser = super::positive)]
    pub(crate) lr: f32,
    /// adam, or sgd (with --momentum).
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam)]
    pub(crate) optimizer: OptimizerArg,
    /// Momentum of --optimizer sgd.
    #[arg(long, default_value_t = 0.9)]
    pub(crate) momentum: f32,
    /// Learning-rate schedule: constant, cosine (down to zero at the end) or step (x0.1 at half,
    /// x0.01 at three quarters).
    #[arg(long, default_value = "cosine")]
    pub(crate) schedule: tinynas_train::optim::Schedule,
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Fraction of each class for validation (unless a val/ folder exists).
    #[arg(long, default_value_t = 0.1, value_parser = super::fraction)]
    pub(crate) val: f64,
    /// Fraction of each class for test (unless split folders exist).
    #[arg(long, default_value_t = 0.1, value_parser = super::fraction)]
    pub(crate) test: f64,
    /// Random flips and shifts of the training images.
    #[arg(long)]
    pub(crate) augment: bool,
    /// Train exactly as `cargo tinynas search` retrains its winner (Adam, batch 32, lr 0.003,
    /// cosine, --augment, --label-smoothing 0.1), e.g. to compare a published architecture with
    /// a search's winner; set --epochs to the search's final-epochs (30 by default).
    #[arg(long, value_enum, conflicts_with_all = ["batch", "lr", "optimizer", "momentum", "schedule", "augment", "label_smoothing"])]
    pub(crate) recipe: Option<RecipeArg>,
    /// Label smoothing: the label's target is 1 - this, spread evenly over the classes (0: plain
    /// cross-entropy; 0.1 is usual).
    #[arg(long, default_value_t = 0.0, value_parser = super::smoothing)]
    pub(crate) label_smoothing: f32,
    /// Treat unreadable or non-image files in the dataset as an error.
    #[arg(long)]
    pub(crate) strict: bool,
    /// Where to write the int8 model.
    #[arg(long, default_value = "model.tnas")]
    pub(crate) out: PathBuf,
    /// Quantisation-aware fine-tune: auto (when post-training quantisation loses more than 1 point
    /// of validation accuracy), always or never.
    #[arg(long, value_enum, default_value_t = QatArg::Auto)]
    pub(crate) qat: QatArg,
    /// Epochs of the quantisation-aware fine-tune.
    #[arg(long, default_value_t = 2)]
    pub(crate) qat_epochs: usize,
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Measure training speed instead: images/s, effective GMAC/s (forward + backward = 3x the
    /// forward MACs) and peak RSS on random images of --input (default 50x50x3), no dataset read.
    #[arg(long)]
    pub(crate) bench: bool,
    /// Batch sizes to measure with --bench.
    #[arg(long, value_delimiter = ',', default_value = "16,32")]
    pub(crate) bench_batches: Vec<usize>,
    /// Timed steps per batch size with --bench (after 3 untimed warm-up steps).
    #[arg(long, default_value_t = 30)]
    pub(crate) bench_steps: usize,
    /// With --bench: each layer's forward and backward time per step.
    #[arg(long)]
    pub(crate) per_layer: bool,
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    pub(crate) message_format: MessageFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RecipeArg {
    /// The search's final recipe.
    Final,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum QatArg {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OptimizerArg {
    Adam,
    Sgd,
}

pub(crate) fn parse_shape(s: &str) -> Result<cargo_tinynas::data::ImageShape, String> {
    cargo_tinynas::project::parse_shape(s)
}

pub(crate) fn train_bench(a: &TrainArgs) -> anyhow::Result<i32> {
    let input = a
        .input
        .unwrap_or(cargo_tinynas::data::ImageShape { h: 50, w: 50, c: 3 });
    if a.bench_batches.contains(&0) || a.bench_steps == 0 {
        anyhow::bail!("--bench-batches and --bench-steps must be at least 1");
    }
    let rows =
        tinynas_train::throughput::run(a.arch, input, 10, &a.bench_batches, a.bench_steps, 3)?;
    let json = a.message_format == MessageFormat::Json;
    if !json {
        eprintln!(
            "training {} at {}x{}x{}, {} forward MACs per image, {} thread(s), random images",
            a.arch, input.h, input.w, input.c, rows[0].forward_macs, rows[0].threads
        );
        out!(
            "{:>6} {:>8} {:>12} {:>16} {:>14}",
            "batch",
            "steps",
            "images/s",
            "effective GMAC/s",
            "peak RSS MiB"
        );
    }
    for r in &rows {
        if json {
            out!(
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
            out!(
                "{:>6} {:>8} {:>12.0} {:>16.2} {:>14}",
                r.batch,
                r.steps,
                r.images_per_second,
                r.effective_gmac_per_second,
                rss
            );
            if a.per_layer {
                for (name, f, b) in &r.layers {
                    out!("       {name:<22} forward {f:>7.3} ms  backward {b:>7.3} ms");
                }
            }
        }
    }
    Ok(exit_codes::OK)
}

/// The progress bar of one training epoch of `total` batches (indicatif draws nothing when
/// stderr is not a terminal).
pub(crate) fn epoch_bar(total: usize, template: &str, prefix: String) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(total as u64);
    b.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_prefix(prefix);
    b
}

pub(crate) fn run(a: TrainArgs) -> anyhow::Result<i32> {
    // The whole run executes on the pool's threads: the engine's parallel loops then split work
    // among the workers without waking and parking the main thread at every layer.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads.unwrap_or(0))
        .build()
        .context("cannot start the worker threads")?;
    pool.install(|| train_on_pool(a))
}

pub(crate) fn train_on_pool(a: TrainArgs) -> anyhow::Result<i32> {
    use cargo_tinynas::train::{self as command, Event};
    use tinynas_train::fit::Progress;
    if a.bench {
        return train_bench(&a);
    }
    if a.val + a.test >= 1.0 {
        // A usage error, as clap reports its own (exit 2), before any work.
        clap::Error::raw(
            clap::error::ErrorKind::ValueValidation,
            format!(
                "--val {} and --test {} leave no images to train on: their sum must be below 1\n",
                a.val, a.test
            ),
        )
        .exit();
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
    let mut args = command::Args {
        data: data.clone(),
        arch: a.arch,
        input: a.input,
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        optimizer: match a.optimizer {
            OptimizerArg::Adam => tinynas_train::optim::OptimizerKind::Adam,
            OptimizerArg::Sgd => tinynas_train::optim::OptimizerKind::Sgd {
                momentum: a.momentum,
            },
        },
        schedule: a.schedule,
        seed: a.seed,
        val: a.val,
        test: a.test,
        augment: a.augment,
        label_smoothing: a.label_smoothing,
        strict: a.strict,
        out: a.out.clone(),
        qat: match a.qat {
            QatArg::Auto => command::QatPolicy::Auto,
            QatArg::Always => command::QatPolicy::Always,
            QatArg::Never => command::QatPolicy::Never,
        },
        qat_epochs: a.qat_epochs,
    };
    if a.recipe == Some(RecipeArg::Final) {
        let r = cargo_tinynas::search::final_recipe(a.epochs, a.seed);
        (args.batch, args.lr, args.optimizer, args.schedule) =
            (r.batch, r.lr, r.optimizer, r.schedule);
        (args.augment, args.label_smoothing) = (r.augment, r.label_smoothing);
    }
    let json = a.message_format == MessageFormat::Json;
    let epochs = a.epochs;
    // A bar per epoch on a terminal (indicatif draws nothing when stderr is not one).
    let mut bar: Option<indicatif::ProgressBar> = None;
    let report = command::run(&args, &stop, |e| match e {
        Event::Loaded { samples, classes, skipped, params } => {
            if json {
                out!("{}", serde_json::json!({"reason": "dataset", "train": samples.0, "val": samples.1, "test": samples.2, "classes": classes, "skipped": skipped.len()}));
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
                out!("{}", serde_json::json!({"reason": "qat-started", "float_val_accuracy": float_val, "ptq_val_accuracy": ptq_val, "epochs": n}));
            } else {
                eprintln!("post-training quantisation: validation {:.1} % (float {:.1} %); fine-tuning with quantisation-aware training for {n} epoch(s)", 100.0 * ptq_val, 100.0 * float_val);
            }
        }
        Event::Progress(Progress::Epoch(e)) => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            if json {
                out!("{}", serde_json::json!({"reason": "epoch", "epoch": e.epoch + 1, "loss": e.loss, "train_accuracy": e.train_accuracy, "val_accuracy": e.val_accuracy, "images_per_second": e.images_per_second}));
            } else {
                eprintln!("epoch {:>3}/{epochs}  loss {:.4}  train {:.1} %  validation {:.1} %  {:.0} images/s", e.epoch + 1, e.loss, 100.0 * e.train_accuracy, 100.0 * e.val_accuracy, e.images_per_second);
            }
        }
    })
    .with_context(|| format!("training on {}", data.display()))?;
    if json {
        out!(
            "{}",
            serde_json::json!({
                "reason": "train-report", "float_val_accuracy": report.float_val, "float_test_accuracy": report.float_test,
                "int8_val_accuracy": report.int8_val, "int8_test_accuracy": report.int8_test, "confusion": report.confusion,
                "params": report.params, "macs": report.macs, "arena_bytes": report.arena_bytes, "out": report.out, "stopped_early": report.stopped_early,
                "peak_rss_bytes": tinynas_train::throughput::peak_rss_bytes(),
                "qat": report.qat.map(|q| serde_json::json!({"ptq_val_accuracy": q.ptq_val, "qat_val_accuracy": q.qat_val, "epochs": q.epochs, "kept": q.kept})),
            })
        );
    } else {
        if let Some(rss) = tinynas_train::throughput::peak_rss_bytes() {
            eprintln!("peak RSS: {:.1} MiB", rss as f64 / 1048576.0);
        }
        eprint!("{}", command::render(&report));
    }
    // Stopped by Ctrl-C: the best epoch so far is written, and the exit code says it was cut short.
    Ok(if report.stopped_early {
        exit_codes::INTERRUPTED
    } else {
        exit_codes::OK
    })
}
