//! `cargo tinynas train`: load a dataset, train one architecture, export int8, and report float and
//! int8 accuracy (the int8 figure from the runtime's kernels run on the host).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use crate::data::{split, Cache, DataError, ImageShape, Skipped};
use tinynas_train::export::{export, int8_predictions, ExportError};
use tinynas_train::fit::{evaluate, fit_until, Epoch, Options, Progress};
use tinynas_train::net::{Arch, Net};
use tinynas_train::ReadError;

/// What to train.
#[derive(Debug, Clone)]
pub struct Args {
    pub data: PathBuf,
    pub arch: Arch,
    /// Input shape; defaults to 28x28x1 for IDX data, 32x32x3 for image folders.
    pub input: Option<ImageShape>,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub optimizer: tinynas_train::optim::OptimizerKind,
    pub schedule: tinynas_train::optim::Schedule,
    pub seed: u64,
    pub val: f64,
    pub test: f64,
    pub augment: bool,
    /// Label smoothing of the loss (0: none).
    pub label_smoothing: f32,
    pub strict: bool,
    pub out: PathBuf,
    /// When to fine-tune with quantisation-aware training.
    pub qat: QatPolicy,
    /// Epochs of that fine-tune.
    pub qat_epochs: usize,
}

pub use tinynas_train::qat::{QatOutcome, QatPolicy, QAT_THRESHOLD};

/// What training produced.
#[derive(Debug)]
pub struct Report {
    pub classes: Vec<String>,
    pub skipped: Vec<Skipped>,
    pub samples: (usize, usize, usize),
    pub history: Vec<Epoch>,
    pub stopped_early: bool,
    pub float_val: f32,
    pub float_test: f32,
    pub int8_val: f32,
    pub int8_test: f32,
    /// `confusion[true][predicted]` on the test split, int8.
    pub confusion: Vec<Vec<usize>>,
    pub params: usize,
    pub macs: u64,
    pub arena_bytes: usize,
    pub out: PathBuf,
    pub qat: Option<QatOutcome>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Export(#[from] ExportError),
    /// An `--arch` spec (or a journal's) that does not parse.
    #[error("{0}")]
    ArchSpec(String),
    #[error(transparent)]
    Arch(#[from] tinynas_train::net::ArchError),
    #[error("training was stopped before the first epoch ended: nothing to save")]
    StoppedEarly,
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Events for the caller to display.
#[derive(Debug)]
pub enum Event<'a> {
    Loaded {
        samples: (usize, usize, usize),
        classes: &'a [String],
        skipped: &'a [Skipped],
        params: usize,
    },
    Progress(Progress<'a>),
    /// The quantisation-aware fine-tune starts (its epochs follow as `Progress`).
    QatStarted {
        float_val: f32,
        ptq_val: f32,
        epochs: usize,
    },
}

/// Trains, exports and evaluates; writes the model file (temporary file, then rename).
pub fn run(
    args: &Args,
    stop: &AtomicBool,
    mut on: impl FnMut(Event<'_>),
) -> Result<Report, TrainError> {
    let (mut data, skipped) = crate::data::load(&args.data, args.input, args.strict)?;
    let s = split::stratified(&data.labels, &data.assigned, args.val, args.test, args.seed);
    let classes = data.classes.clone();
    let mut net = Net::new(args.arch, data.shape, classes.len(), args.seed)?;
    let samples = (s.train.len(), s.val.len(), s.test.len());
    on(Event::Loaded {
        samples,
        classes: &classes,
        skipped: &skipped,
        params: net.param_count(),
    });
    let opts = Options {
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        optimizer: args.optimizer,
        schedule: args.schedule,
        seed: args.seed,
        augment: args.augment,
        label_smoothing: args.label_smoothing,
    };
    let (history, best) = fit_until(
        &mut net,
        &mut data,
        &s.train,
        &s.val,
        &opts,
        |p| on(Event::Progress(p)),
        stop,
    )?;
    let stopped_early = history.len() < args.epochs;
    let mut best = best.ok_or(TrainError::StoppedEarly)?;
    let calib: Vec<usize> = s.train.iter().copied().take(512).collect();
    let model = export(&mut best, &mut data, &calib, classes.clone())?;
    let float_val = evaluate(&mut best, &mut data, &s.val, 64)?;
    let float_test = evaluate(&mut best, &mut data, &s.test, 64)?;
    let qopts = Options {
        epochs: args.qat_epochs,
        lr: args.lr * 0.1,
        optimizer: tinynas_train::optim::OptimizerKind::Adam,
        schedule: tinynas_train::optim::Schedule::Cosine,
        ..opts
    };
    let q = tinynas_train::qat::quantise(
        &mut best,
        &mut data,
        (&s.train, &s.val),
        &calib,
        model,
        float_val,
        args.qat,
        &qopts,
        stop,
        |e| match e {
            tinynas_train::qat::Quantising::Started { ptq_val } => on(Event::QatStarted {
                float_val,
                ptq_val,
                epochs: args.qat_epochs,
            }),
            tinynas_train::qat::Quantising::Progress(p) => on(Event::Progress(p)),
        },
    )?;
    let (model, int8_val, qat) = (q.model, q.int8_val, q.qat);
    let (int8_test, confusion) = confusion(&model, &mut data, &s.test, classes.len())?;
    let bytes = tinynas_model::format::to_bytes(&model);
    crate::fsutil::write_atomic(&args.out, &bytes).map_err(|source| TrainError::Write {
        path: args.out.clone(),
        source,
    })?;
    Ok(Report {
        classes,
        skipped,
        samples,
        history,
        stopped_early,
        float_val,
        float_test,
        int8_val,
        int8_test,
        confusion,
        params: model.params(),
        macs: model.macs(),
        arena_bytes: tinynas_model::plan::plan(&model).arena_bytes,
        out: args.out.clone(),
        qat,
    })
}

fn confusion(
    model: &tinynas_model::Model,
    data: &mut Cache,
    indices: &[usize],
    k: usize,
) -> Result<(f32, Vec<Vec<usize>>), TrainError> {
    let mut m = vec![vec![0usize; k]; k];
    let predicted = int8_predictions(model, data, indices)?;
    for (&i, &p) in indices.iter().zip(&predicted) {
        m[data.labels[i] as usize][p] += 1;
    }
    let correct: usize = (0..k).map(|i| m[i][i]).sum();
    Ok((correct as f32 / indices.len().max(1) as f32, m))
}

/// The human summary; its last line is `int8 test accuracy: NN.N %`.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if r.stopped_early {
        let _ = writeln!(
            s,
            "stopped after {} epoch(s); kept the best epoch so far",
            r.history.len()
        );
    }
    let _ = writeln!(
        s,
        "float accuracy: validation {:.1} %, test {:.1} %",
        100.0 * r.float_val,
        100.0 * r.float_test
    );
    if let Some(q) = &r.qat {
        let _ = writeln!(
            s,
            "quantisation-aware fine-tune ({} epoch(s)): int8 validation {:.1} % -> {:.1} %{}",
            q.epochs,
            100.0 * q.ptq_val,
            100.0 * q.qat_val,
            if q.kept {
                ""
            } else {
                " (not better: kept the post-training quantisation)"
            }
        );
    }
    let _ = writeln!(
        s,
        "int8 accuracy:  validation {:.1} %, test {:.1} % (the runtime's kernels, run on the host)",
        100.0 * r.int8_val,
        100.0 * r.int8_test
    );
    let _ = writeln!(
        s,
        "confusion matrix (int8, test split; rows: true class, columns: predicted):"
    );
    let w = r.classes.iter().map(String::len).max().unwrap_or(5).min(12);
    for (i, row) in r.confusion.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:>5}")).collect();
        let _ = writeln!(
            s,
            "  {:>w$} {}",
            r.classes[i].chars().take(12).collect::<String>(),
            cells.join("")
        );
    }
    let _ = writeln!(
        s,
        "parameters {}, MACs {}, planned arena {} bytes",
        r.params, r.macs, r.arena_bytes
    );
    let _ = writeln!(s, "wrote {}", r.out.display());
    let _ = writeln!(s, "int8 test accuracy: {:.1} %", 100.0 * r.int8_test);
    s
}
