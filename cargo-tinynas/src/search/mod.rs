//! `cargo tinynas search`: the hardware-aware architecture search.
//!
//! Strategy `nanonas` is the published climb (DESIGN.md section 5) over the space A(k, c):
//! k = 1, 2, ...; for each k, c = 0, 1, ... while the validation accuracy strictly improves (a
//! candidate over budget ends the c loop); stop growing k when the best accuracy per k stops
//! improving. Each candidate trains `proxy_epochs` (Adam, lr 1e-3, batch 16) and is quantised;
//! one that passes the analytic checks (planned arena against the SRAM budget, parameter bytes
//! against the flash budget) is then **measured on the board**, and the budgets are checked on the
//! measured peak SRAM, flash and latency. The winner (`evolve`: each finalist) is retrained from scratch with
//! [`final_recipe`] (`final_epochs`, keeping the best epoch), quantised (with the
//! quantisation-aware fine-tune when post-training quantisation loses more than a point) and
//! measured again.
//!
//! Strategy `evolve` (beyond the paper) searches a wider space, [`Blocks`]: 3x3 or 5x5 convolutions,
//! stride-2 downsampling instead of pooling, a width per block, 2 to 8 blocks, at the data's own
//! (square) resolution, so the firmware needs no resize that no figure would count. A seeded
//! evolutionary search in three rungs (successive halving): each generation screens three times
//! the population for one epoch, trains the best for the proxy epochs and measures them, and the
//! best few are finally trained three times as long; each rung keeps a place for plain and for
//! depthwise-separable networks ([`Family`]), and the best of each family is retrained with the
//! final recipe, the better int8 validation score winning. Only networks
//! **predicted** to fit are trained: arena and parameter bytes exactly from the model, plus the
//! stack and the code that firmware measured on the board took besides them, latency from
//! [`predict`]'s per-board table of measured layer latencies; most new networks are grown
//! (every width scaled up) to what the budgets are predicted to allow. Every candidate past the
//! screen is measured on the board (and its layers added to the table); the predictor's error
//! against those measurements is reported. `--time-budget` stops either strategy early with the
//! best candidate so far.
//!
//! Every evaluation goes to the [`journal`]; a search killed and started again resumes from it.

mod evaluate;
mod evolve;
pub mod journal;
mod nanonas;
mod pareto;
pub mod predict;

pub use evolve::{
    breed, family, finalists, keep_each_family, mobilenet_blocks, mutate, nanonas_blocks, probes,
    random_blocks, scale_widths, Family, GROW_CHANCE, MAX_CHANGES,
};
pub use pareto::{pareto, svg};

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use evaluate::OnBoard;
use journal::{Entry, EntryKind, Journal, Measured, Status};

use crate::board::Board;
use crate::data::load;
use crate::data::{split, ImageShape};
use crate::project::Budgets;
use crate::train::{QatPolicy, TrainError};
use tinynas_model::random::{Source, SplitMix};
use tinynas_train::export::{export, int8_accuracy};
use tinynas_train::fit::{fit_until, Options, Progress};
use tinynas_train::net::{Arch, Block, Blocks, Net, MAX_BLOCKS};
use tinynas_train::optim::{OptimizerKind, Schedule};

/// Which search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    NanoNas,
    Evolve {
        /// Candidates per generation.
        population: usize,
        /// Generations after the first ([`UNTIL_OUT_OF_TIME`]: as many as the time budget holds).
        generations: usize,
    },
}

/// `evolve`'s generations when `--time-budget` alone says when to stop.
pub const UNTIL_OUT_OF_TIME: usize = usize::MAX;

/// Parts of `evolve` switched off (`--evolve-without`), to measure what each one contributes:
/// growth towards the budgets, the one-epoch screening rung (each generation then trains
/// `population` networks straight away), the promotion rung (the best proxy score wins), pooled
/// blocks in the space, the fresh third of each later generation (all of it bred), the probes
/// that teach the latency table every kind of layer before the first generation, the
/// NanoNAS-shaped (and MobileNet-shaped) networks among the first generation, the families
/// (`evolve::Family`: plain and depthwise-separable networks each keep a place in every rung,
/// and the best of each is retrained with the final recipe; without them the best proxy score
/// alone decides, and there is no MobileNet-shaped seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Without {
    pub growth: bool,
    pub screening: bool,
    pub promotion: bool,
    pub pooling: bool,
    pub fresh: bool,
    pub calibration: bool,
    pub seeds: bool,
    pub families: bool,
}

/// What to search, and where.
#[derive(Debug, Clone)]
pub struct Settings {
    pub strategy: Strategy,
    pub data: PathBuf,
    pub input: ImageShape,
    pub budgets: Budgets,
    pub seed: u64,
    pub proxy_epochs: usize,
    pub final_epochs: usize,
    /// Largest k tried (a safety bound; the climb normally stops long before).
    pub max_k: usize,
    pub val: f64,
    pub test: f64,
    pub qat: QatPolicy,
    /// Where journals and winners are kept (one sub-folder per fingerprint).
    pub state_dir: PathBuf,
    /// Bench firmware cache.
    pub firmware_cache: PathBuf,
    /// `--time-budget`: no new candidate once the journaled seconds and the winner's estimated
    /// retraining would pass it; the best candidate so far wins. Not part of the fingerprint, so a
    /// search stopped by it resumes with a larger one.
    pub time_budget: Option<std::time::Duration>,
    /// `evolve` without some of its parts (an ablation; part of the fingerprint when set).
    pub evolve_without: Without,
    /// The firmware's `opt-level` and `debug` ([`crate::project::Project::profile`]): every
    /// bench firmware is built with them (part of the fingerprint where they are not 3 and full).
    pub profile: crate::firmware::Profile,
}

/// How each candidate is trained for its proxy epochs: Adam at 1e-3, batch 16, constant rate, no
/// augmentation (short runs rank best with small batches and no regularisation).
pub fn proxy_recipe(epochs: usize, seed: u64) -> Options {
    Options {
        epochs,
        batch: 16,
        lr: 1e-3,
        optimizer: OptimizerKind::Adam,
        schedule: Schedule::Constant,
        seed,
        augment: false,
        label_smoothing: 0.0,
    }
}

/// Batch size of the final recipe.
pub const FINAL_BATCH: usize = 32;
/// Base learning rate of the final recipe.
pub const FINAL_LR: f32 = 3e-3;
/// The rate a final training that never beat guessing is done again at (the earlier recipe's).
pub const FINAL_RETRY_LR: f32 = 0.01;
/// Label smoothing of the final recipe.
pub const FINAL_LABEL_SMOOTHING: f32 = 0.1;

/// How the winner is retrained, and what `cargo tinynas train --recipe final` uses, so that a
/// published architecture is trained exactly like a winner: Adam at [`FINAL_LR`], batch
/// [`FINAL_BATCH`], a cosine schedule down to zero, flips and shifts of up to 2 pixels, label
/// smoothing [`FINAL_LABEL_SMOOTHING`]; the quantisation-aware fine-tune (when needed) at a tenth
/// of the rate.
pub fn final_recipe(epochs: usize, seed: u64) -> Options {
    Options {
        epochs,
        batch: FINAL_BATCH,
        lr: FINAL_LR,
        optimizer: OptimizerKind::Adam,
        schedule: Schedule::Cosine,
        seed,
        augment: true,
        label_smoothing: FINAL_LABEL_SMOOTHING,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Export(#[from] tinynas_train::export::ExportError),
    #[error(transparent)]
    Model(#[from] tinynas_model::Error),
    #[error("measuring {arch} on the board: {source}")]
    Bench {
        arch: String,
        source: Box<crate::bench::BenchError>,
    },
    #[error("{arch}: the board's outputs differ from the host's; this is a bug, please report it")]
    Mismatch { arch: String },
    #[error("journal {path}: {source}")]
    Journal {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the search was stopped before it ended; run the same command again to resume (every \
         evaluated candidate is in the journal)"
    )]
    Stopped,
    #[error("no candidate fits the budget ({0}); raise the budget or lower the input size")]
    NothingFits(String),
    #[error("{0}")]
    BudgetBeyondBoard(String),
    #[error("strategy evolve searches square inputs at the data's resolution, and the input is {h}x{w}: set `input` in [package.metadata.tinynas] to a square size (e.g. {m}x{m}x{c}), or use --strategy nanonas", m = .h.min(.w))]
    NonSquareInput { h: usize, w: usize, c: usize },
}

/// The budgets a board can measure: a model may use at most the memory its firmware is linked
/// with, so a larger budget would let candidates through that no measurement can take. Says
/// what to change.
pub fn check_board_holds_budgets(b: &Budgets, board: &dyn Board) -> Result<(), SearchError> {
    let mem = board.memory();
    let mut over = Vec::new();
    if b.ram_bytes > mem.ram_length {
        over.push(format!(
            "the SRAM budget ({} bytes) is more than the {} bytes of RAM",
            b.ram_bytes, mem.ram_length
        ));
    }
    if b.flash_bytes > mem.flash_length {
        over.push(format!(
            "the flash budget ({} bytes) is more than the {} bytes of flash",
            b.flash_bytes, mem.flash_length
        ));
    }
    if over.is_empty() {
        return Ok(());
    }
    Err(SearchError::BudgetBeyondBoard(format!(
        "{} that board {} measures with ({}): lower max-ram / max-flash in [package.metadata.tinynas] to the chip's real sizes, or measure on a board with more memory (--board: qemu-m0-an385, qemu-m3-an385, qemu-m4 and qemu-m7 have 4 MiB, qemu-m55 512 KiB)",
        over.join(", and "),
        board.name(),
        mem.source
    )))
}

/// What the caller is told as the search goes.
#[derive(Debug)]
pub enum Event<'a> {
    Started {
        journal: &'a std::path::Path,
        resumed: usize,
        samples: (usize, usize, usize),
        classes: usize,
    },
    /// A candidate is being trained (`final`: the winner's retraining).
    Training {
        arch: &'a str,
        final_run: bool,
    },
    Progress(Progress<'a>),
    Measuring {
        arch: &'a str,
    },
    /// `evolve`: an untrained probe network is measured on the board (`index` of `of`), so that
    /// the latency table knows every kind of layer before the first generation.
    Calibrating {
        arch: &'a str,
        index: usize,
        of: usize,
    },
    /// A candidate is done (`resumed`: read from the journal).
    Evaluated {
        entry: &'a Entry,
        resumed: bool,
    },
}

/// The result.
#[derive(Debug)]
pub struct Outcome {
    pub candidates: Vec<Entry>,
    pub winner: Entry,
    /// The retrained winner.
    pub final_entry: Entry,
    /// The other finalists' final trainings (`evolve`'s families: the other family's best):
    /// beaten on int8 validation by the winner, or over a budget.
    pub other_finals: Vec<Entry>,
    pub model_bytes: Vec<u8>,
    pub journal: PathBuf,
    pub resumed: usize,
    /// Accuracy against latency and peak SRAM: the candidates that fit and are not beaten on all
    /// three.
    pub pareto: Vec<Entry>,
    pub classes: Vec<String>,
    /// Fingerprint of the data set's contents ([`crate::data::Cache::content_fingerprint`]).
    pub data_fingerprint: u64,
    /// `evolve`: (candidate, predicted, measured latency) of every measured candidate that had a
    /// prediction.
    pub predictions: Vec<(String, u64, u64)>,
    /// Why the search stopped looking (the climb's rule, the generations, the candidate limit).
    pub stopped_because: String,
}

/// Mean and largest relative error of predictions, `(predicted, measured)`.
fn errors(pairs: impl Iterator<Item = (u64, u64)>) -> Option<(f64, f64)> {
    let e: Vec<f64> = pairs
        .map(|(p, m)| (p as f64 - m as f64).abs() / (m as f64).max(1.0))
        .collect();
    (!e.is_empty()).then(|| {
        (
            e.iter().sum::<f64>() / e.len() as f64,
            e.iter().copied().fold(0.0, f64::max),
        )
    })
}

/// How far the peak SRAM and flash predictions were from the measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeErrors {
    /// Candidates measured with a prediction.
    pub candidates: usize,
    /// Mean and largest relative error of each.
    pub sram: (f64, f64),
    pub flash: (f64, f64),
}

impl Outcome {
    /// `evolve`: the peak SRAM and flash predictions against the measurements, over the
    /// candidates measured with a prediction.
    pub fn size_predictor_error(&self) -> Option<SizeErrors> {
        let pairs: Vec<(u64, u64, u64, u64)> = self
            .candidates
            .iter()
            .filter_map(|e| {
                let m = e.measured.as_ref()?;
                Some((
                    e.predicted_sram_bytes?,
                    m.peak_sram_bytes,
                    e.predicted_flash_bytes?,
                    m.flash_bytes,
                ))
            })
            .collect();
        let sram = errors(pairs.iter().map(|p| (p.0, p.1)))?;
        let flash = errors(pairs.iter().map(|p| (p.2, p.3)))?;
        Some(SizeErrors {
            candidates: pairs.len(),
            sram,
            flash,
        })
    }

    /// Mean and largest relative error of the latency predictor, if it predicted anything.
    pub fn predictor_error(&self) -> Option<(f64, f64)> {
        errors(self.predictions.iter().map(|(_, p, m)| (*p, *m)))
    }
}

/// The fingerprint of a search: the data and every setting that changes its result. `board`
/// names the board and the core its bench firmware is built for; the sources of that firmware
/// (kernels, runtime, code generation, templates: `build.rs`) are part of it too, so a search
/// resumed after they change measures again.
pub fn fingerprint(s: &Settings, data_fingerprint: u64, board: &str) -> u64 {
    // The prefix names the search's own version: bump it whenever the same settings would
    // evaluate other candidates (v2: depthwise-separable blocks in the evolve space; v3: evolve at
    // the data's resolution only; v4: evolve's rungs, growth and stride-2 stems, the final
    // recipe; v5: pooled blocks and a fresh third in evolve; v6: evolve's latency probes and
    // NanoNAS-shaped seeds; v7: a 16-channel 3x3 convolution in the probes, two-row fits; v8:
    // evolve's families, up to 8 blocks, a MobileNet-shaped seed), so
    // that an older journal is not resumed into a different search.
    let text = format!(
        "v8|{:?}|{data_fingerprint}|{:?}|{board}|{}|{}|{:?}|{}|{}|{}|{}|{}|{:?}|{}|{}",
        s.strategy,
        s.input,
        s.budgets.ram_bytes,
        s.budgets.flash_bytes,
        s.budgets.latency_cycles,
        s.seed,
        s.proxy_epochs,
        s.final_epochs,
        s.val,
        s.test,
        s.qat,
        env!("CARGO_PKG_VERSION"),
        env!("TINYNAS_FIRMWARE_SOURCES"),
    );
    // Only an ablation, an opt-level other than 3 and debug info other than full add to it: the
    // journals of full searches at opt-level 3 with full debug info keep their fingerprints.
    let text = if s.evolve_without == Without::default() {
        text
    } else {
        format!("{text}|without {:?}", s.evolve_without)
    };
    let text = format!("{text}{}", s.profile.fingerprint());
    crate::hash::fnv1a(text.as_bytes())
}

/// The state of one search.
struct Searcher<'a> {
    s: &'a Settings,
    board: &'a mut dyn Board,
    stop: &'a AtomicBool,
    journal: Journal,
    jpath: PathBuf,
    dir: PathBuf,
    classes: Vec<String>,
    split: split::Split,
    calib: Vec<usize>,
    /// The data set at each input size a candidate asked for.
    data: std::collections::BTreeMap<(usize, usize, usize), crate::data::Cache>,
    base: ImageShape,
    /// `evolve`: the latency table of this board.
    table: Option<predict::Table>,
    predictions: Vec<(String, u64, u64)>,
    /// Why the strategy stopped looking, for people (set by the strategy).
    stopped_because: String,
    /// When this run started, and the seconds of the entries journaled by earlier runs: the
    /// search's time so far ([`Searcher::seconds_used`]).
    started: Instant,
    earlier_seconds: f64,
}

/// The order of final trainings, best first: by int8 validation score (what the firmware runs),
/// then float validation score, then the cheaper (measured latency, peak SRAM, flash).
fn final_rank(a: &Entry, b: &Entry) -> std::cmp::Ordering {
    let int8 = |e: &Entry| e.int8_val.unwrap_or(0.0);
    int8(b).total_cmp(&int8(a)).then_with(|| evolve::rank(a, b))
}

/// The file a final training's model is kept in next to the journal (one per architecture, so
/// that a resumed search finds each finalist's).
fn final_file(arch: &str) -> String {
    format!("final-{:08x}.tnas", crc32fast::hash(arch.as_bytes()))
}

/// What the time budget keeps room for once no more candidates run: the winner's retraining for
/// the final epochs (`nanonas`, and `evolve`'s promotion rung).
const THE_RETRAINING: &str = "the winner's retraining";

impl Searcher<'_> {
    /// The search's time so far, what `--time-budget` counts: this run's wall time (loading the
    /// data, building and running bench firmware, everything) plus the journaled seconds of the
    /// entries earlier runs left (so a resumed search goes on where the budget left it).
    fn seconds_used(&self) -> f64 {
        self.earlier_seconds + self.started.elapsed().as_secs_f64()
    }

    /// Notes that the time budget ended the search: it would not hold another candidate and
    /// `ahead` (what still has to run, e.g. [`THE_RETRAINING`]).
    fn out_of_time(&mut self, ahead: &str) {
        if let Some(t) = self.s.time_budget {
            self.stopped_because = format!(
                "the time budget ({}) would not hold another candidate and {ahead} (--time-budget); the best candidate so far wins",
                humantime::format_duration(t)
            );
        }
    }

    fn jerr(&self) -> impl FnOnce(std::io::Error) -> SearchError {
        let path = self.jpath.clone();
        move |source| SearchError::Journal { path, source }
    }

    fn cache(&mut self, shape: ImageShape) -> Result<(), SearchError> {
        let key = (shape.h, shape.w, shape.c);
        if !self.data.contains_key(&key) {
            let (c, _) = load(&self.s.data, Some(shape), false)?;
            self.data.insert(key, c);
        }
        Ok(())
    }

    /// The model of an untrained architecture: exact shapes, MACs, parameter bytes and arena.
    fn shape_model(&self, arch: Arch) -> Option<tinynas_model::Model> {
        let input = Net::input_of(arch, self.base);
        let net = Net::new(arch, input, self.classes.len(), self.s.seed).ok()?;
        tinynas_train::export::shape_model(&net, self.classes.clone()).ok()
    }
}

/// Runs the search.
pub fn run(
    s: &Settings,
    board: &mut dyn Board,
    stop: &AtomicBool,
    mut on: impl FnMut(Event<'_>),
) -> Result<Outcome, SearchError> {
    // What `--time-budget` counts from: the data's loading is part of the search's time.
    let started = Instant::now();
    check_board_holds_budgets(&s.budgets, board)?;
    if matches!(s.strategy, Strategy::Evolve { .. }) && s.input.h != s.input.w {
        return Err(SearchError::NonSquareInput {
            h: s.input.h,
            w: s.input.w,
            c: s.input.c,
        });
    }
    let (mut data, _skipped) = load(&s.data, Some(s.input), false)?;
    let sp = split::stratified(&data.labels, &data.assigned, s.val, s.test, s.seed);
    let classes = data.classes.clone();
    // Of the images themselves, so a fresh clone of the same images resumes the same journal
    // and writes the same model card.
    let data_fingerprint = data.content_fingerprint()?;
    let board_id = format!("{} {}", board.name(), board.target_cpu().unwrap_or("-"));
    let fp = fingerprint(s, data_fingerprint, &board_id);
    let dir = s.state_dir.join(format!("{fp:016x}"));
    let jpath = dir.join("journal.jsonl");
    let journal = Journal::open(&jpath).map_err(|source| SearchError::Journal {
        path: jpath.clone(),
        source,
    })?;
    let resumed = journal.done.len();
    let earlier_seconds = journal.seconds();
    on(Event::Started {
        journal: &jpath,
        resumed,
        samples: (sp.train.len(), sp.val.len(), sp.test.len()),
        classes: classes.len(),
    });
    let calib: Vec<usize> = sp.train.iter().copied().take(512).collect();
    // evolve: the table as it was when this search started (kept next to the journal, so that a
    // resumed search predicts exactly as the first run did), grown by the journal's rows.
    // A new search first measures the probes the table lacks; the snapshot is written after
    // them, so a search stopped while probing probes again when resumed.
    let snap = dir.join("table-start.json");
    let (table, probe) = match s.strategy {
        Strategy::NanoNas => (None, false),
        Strategy::Evolve { .. } => match predict::Table::read(&snap) {
            Some(t) => (Some(t), false),
            None => (
                Some(predict::Table::load(
                    &s.firmware_cache,
                    &board.name(),
                    s.profile,
                )),
                true,
            ),
        },
    };
    let board_shape = s.input;
    let mut caches = std::collections::BTreeMap::new();
    caches.insert((board_shape.h, board_shape.w, board_shape.c), data);
    let mut se = Searcher {
        s,
        board,
        stop,
        journal,
        jpath: jpath.clone(),
        dir,
        classes: classes.clone(),
        split: sp,
        calib,
        data: caches,
        base: board_shape,
        table,
        predictions: Vec::new(),
        stopped_because: String::new(),
        started,
        earlier_seconds,
    };
    if probe {
        if !s.evolve_without.calibration {
            se.calibrate(&mut on)?;
        }
        if !stop.load(Ordering::Relaxed) {
            if let Some(t) = &se.table {
                t.write(&snap).map_err(|source| SearchError::Journal {
                    path: snap.clone(),
                    source,
                })?;
            }
        }
    }
    let mut candidates = Vec::new();
    let finalists = match s.strategy {
        Strategy::NanoNas => se.nanonas(&mut candidates, &mut on)?.into_iter().collect(),
        Strategy::Evolve {
            population,
            generations,
        } => se.evolve(population, generations, &mut candidates, &mut on)?,
    };
    if finalists.is_empty() {
        if stop.load(Ordering::Relaxed) {
            return Err(SearchError::Stopped);
        }
        return Err(SearchError::NothingFits(s.budgets.explain.join("; ")));
    }
    // Each finalist retrained with the final recipe (`evolve`'s families: up to two); the best
    // int8 validation score of those that fit wins (the first where none does).
    let mut finals = Vec::new();
    for winner in finalists {
        let arch: Arch = winner.arch.parse().map_err(TrainError::ArchSpec)?;
        let Some((entry, bytes)) = se.evaluate(arch, EntryKind::Final, s.final_epochs, &mut on)?
        else {
            return Err(SearchError::Stopped);
        };
        finals.push((winner, entry, bytes));
    }
    let best = (0..finals.len())
        .filter(|&i| finals[i].1.status == Status::Fits)
        .min_by(|&a, &b| final_rank(&finals[a].1, &finals[b].1))
        .unwrap_or(0);
    let (winner, final_entry, model_bytes) = finals.remove(best);
    let other_finals = finals.into_iter().map(|(_, e, _)| e).collect();
    crate::fsutil::write_atomic(&se.dir.join("winner.tnas"), &model_bytes).map_err(se.jerr())?;
    let pareto = pareto(&candidates);
    Ok(Outcome {
        candidates,
        winner,
        final_entry,
        other_finals,
        model_bytes,
        journal: jpath,
        resumed,
        pareto,
        data_fingerprint,
        classes,
        predictions: se.predictions,
        stopped_because: se.stopped_because,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Budgets larger than the memory the board links with are refused before any work, saying
    /// what to change; budgets within it pass.
    #[test]
    fn budgets_beyond_the_board_are_refused_up_front() {
        let model = tinynas_model::random::network(&mut SplitMix(1), &Default::default());
        let board = crate::board::fake::FakeBoard {
            model,
            inputs: Vec::new(),
            runs: 0,
        };
        let budgets = |ram_bytes, flash_bytes| Budgets {
            ram_bytes,
            flash_bytes,
            latency_cycles: None,
            clock_hz: None,
            explain: Vec::new(),
        };
        // The fake board links with 256 KiB of RAM and 1 MiB of flash.
        assert!(check_board_holds_budgets(&budgets(256 << 10, 1 << 20), &board).is_ok());
        let e = check_board_holds_budgets(&budgets(300_000, 2 << 20), &board)
            .unwrap_err()
            .to_string();
        for says in [
            "SRAM budget (300000 bytes) is more than the 262144 bytes of RAM",
            "flash budget (2097152 bytes)",
            "lower max-ram / max-flash",
            "--board",
        ] {
            assert!(e.contains(says), "{says}: {e}");
        }
    }

    /// In the repository, the journal key covers the bench firmware's sources (`build.rs` found
    /// them), so a search resumed after the kernels change measures again.
    #[test]
    fn the_journal_key_covers_the_firmware_sources() {
        let id = env!("TINYNAS_FIRMWARE_SOURCES");
        assert_eq!(id.len(), 8, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }

    /// A search whose bench firmware is built at another opt-level or debug info measures other
    /// figures: it gets a journal of its own; at 3 with full debug info the key is what it was
    /// before either was read.
    #[test]
    fn the_journal_key_covers_the_opt_level() {
        use crate::firmware::{DebugInfo, OptLevel, Profile};
        let at = |(opt_level, debug)| Settings {
            strategy: Strategy::NanoNas,
            data: PathBuf::from("data"),
            input: ImageShape { h: 28, w: 28, c: 1 },
            budgets: Budgets {
                ram_bytes: 20480,
                flash_bytes: 65536,
                latency_cycles: None,
                clock_hz: None,
                explain: Vec::new(),
            },
            seed: 1,
            proxy_epochs: 3,
            final_epochs: 30,
            max_k: 8,
            val: 0.1,
            test: 0.1,
            qat: QatPolicy::Auto,
            state_dir: PathBuf::from("state"),
            firmware_cache: PathBuf::from("cache"),
            time_budget: None,
            evolve_without: Without::default(),
            profile: Profile {
                opt_level,
                debug,
                packages: Default::default(),
            },
        };
        let key = |o| fingerprint(&at(o), 7, "qemu-m4 cortex-m4");
        let full = DebugInfo::Full;
        let keys = [
            (OptLevel::O3, full),
            (OptLevel::S, full),
            (OptLevel::Z, full),
            (OptLevel::O2, full),
            (OptLevel::O3, DebugInfo::None),
            (OptLevel::O3, DebugInfo::Limited),
        ]
        .map(key);
        for (i, k) in keys.iter().enumerate() {
            assert!(!keys[..i].contains(k), "{keys:?}");
        }
        assert_eq!(key((OptLevel::O3, full)), key((OptLevel::O3, full)));
        // The texts the journals of earlier versions were keyed with, kept.
        let text = |opt_level, debug| {
            Profile {
                opt_level,
                debug,
                packages: Default::default(),
            }
            .fingerprint()
        };
        assert_eq!(text(OptLevel::O3, full), "");
        assert_eq!(text(OptLevel::S, full), "|opt-level s");
        assert_eq!(text(OptLevel::O3, DebugInfo::None), "|debug false");
        assert_eq!(
            text(OptLevel::Z, DebugInfo::Limited),
            "|opt-level z|debug \"limited\""
        );
    }

    /// The evolve space: every random or mutated network names itself in a form that parses back,
    /// builds, and both resolutions, kernel sizes, strides and block kinds occur; the stem is
    /// never depthwise.
    #[test]
    fn random_and_mutated_networks_are_valid_and_varied() {
        let mut rng = SplitMix(9);
        let res = [28, 20];
        let (mut seen_res, mut seen_k5, mut seen_s2, mut seen_sep, mut seen_plain) = (
            std::collections::BTreeSet::new(),
            false,
            false,
            false,
            false,
        );
        let (mut seen_stem_s2, mut seen_pool, mut seen_stem_pool) = (false, false, false);
        let mut a = random_blocks(&mut rng, &res, true);
        for i in 0..300 {
            a = if i % 3 == 0 {
                random_blocks(&mut rng, &res, true)
            } else {
                mutate(&mut rng, a, &res, true)
            };
            let text = a.to_string();
            assert_eq!(text.parse::<Arch>(), Ok(a), "{text}");
            let Arch::Blocks(b) = a else { panic!() };
            assert!((1..=MAX_BLOCKS).contains(&usize::from(b.n)), "{text}");
            seen_res.insert(b.res);
            seen_k5 |= b.blocks().iter().any(|x| x.k == 5);
            seen_s2 |= b.blocks().iter().any(|x| x.stride == 2);
            seen_sep |= b.blocks().iter().any(|x| x.sep);
            seen_plain |= b.blocks()[1..].iter().any(|x| !x.sep);
            seen_stem_s2 |= b.blocks[0].stride == 2;
            seen_pool |= b.blocks()[1..].iter().any(|x| x.pool);
            seen_stem_pool |= b.blocks[0].pool;
            assert!(!b.blocks[0].sep, "{text}");
            let input = ImageShape { h: 28, w: 28, c: 1 };
            // Valid unless it downsamples past 2x2; then Net::new says so.
            if let Err(e) = Net::new(a, Net::input_of(a, input), 10, 1) {
                let downsamples = matches!(e, tinynas_train::net::ArchError::Downsamples { .. });
                assert!(downsamples, "{text}: {e}");
            }
        }
        assert_eq!(seen_res.len(), 2);
        assert!(seen_k5 && seen_s2 && seen_sep && seen_plain && seen_stem_s2);
        assert!(seen_pool && seen_stem_pool);
        // Without pooling (`--evolve-without pooling`) no block pools, drawn or mutated.
        let mut a = random_blocks(&mut rng, &res, false);
        for i in 0..300 {
            a = if i % 3 == 0 {
                random_blocks(&mut rng, &res, false)
            } else {
                mutate(&mut rng, a, &res, false)
            };
            let Arch::Blocks(b) = a else { panic!() };
            assert!(b.blocks().iter().all(|x| !x.pool), "{a}");
        }
    }

    /// Families: a network is separable when most blocks after its stem are; each rung's first
    /// `n` hold the best of each family there is (the others keep their order); the finalists
    /// are the best and the other family's best; the MobileNet-shaped seed is separable, builds
    /// at 32x32, and widens with k up to 128 channels.
    #[test]
    fn each_family_keeps_a_place_and_has_a_finalist() {
        let a = |t: &str| -> Arch { format!("blocks:r=32,{t}").parse().unwrap() };
        let plain = [
            "3s1x8p,3s1x16p,3s1x32",
            "3s2x8,3s1x16,d3s1x16",
            "3s1x8,3s1x8,3s1x8",
        ];
        let sep = ["3s2x8,d3s1x16,d3s2x32", "3s1x8,d3s1x16,3s1x16,d5s1x16"];
        for t in plain {
            assert_eq!(family(&a(t)), Family::Plain, "{t}");
        }
        for t in sep {
            assert_eq!(family(&a(t)), Family::Separable, "{t}");
        }
        assert_eq!(family(&Arch::NanoNas { k: 8, c: 4 }), Family::Plain);
        // Best first: three plain ones, then two separable ones.
        let ranked = vec![a(plain[0]), a(plain[1]), a(plain[2]), a(sep[0]), a(sep[1])];
        let mut r = ranked.clone();
        keep_each_family(&mut r, 2, |x| *x);
        assert_eq!(r, [ranked[0], ranked[3], ranked[1], ranked[2], ranked[4]]);
        // Already there, too few places, or the whole list within them: unchanged.
        for n in [1, 4, 5, 9] {
            let mut r = ranked.clone();
            keep_each_family(&mut r, n, |x| *x);
            assert_eq!(r, ranked, "n = {n}");
        }
        let mut r = vec![a(sep[0]), a(sep[1]), a(plain[0])];
        keep_each_family(&mut r, 2, |x| *x);
        assert_eq!(r, [a(sep[0]), a(plain[0]), a(sep[1])]);
        // The finalists.
        let entry = |t: &str| journal::tests::entry(&a(t).to_string(), Status::Fits);
        let es = [entry(plain[0]), entry(plain[1]), entry(sep[1])];
        let names = |v: Vec<Entry>| v.into_iter().map(|e| e.arch).collect::<Vec<_>>();
        assert_eq!(
            names(finalists(&es, true)),
            [es[0].arch.clone(), es[2].arch.clone()]
        );
        assert_eq!(names(finalists(&es, false)), [es[0].arch.clone()]);
        assert_eq!(names(finalists(&es[..2], true)), [es[0].arch.clone()]);
        assert!(finalists(&[], true).is_empty());
        // The MobileNet-shaped seed.
        let input = ImageShape { h: 32, w: 32, c: 3 };
        for k in [4, 16, 24, 64] {
            let m = mobilenet_blocks(32, k).unwrap();
            assert_eq!(family(&m), Family::Separable, "{m}");
            let Arch::Blocks(b) = m else { panic!() };
            assert_eq!(usize::from(b.n), 7, "{m}");
            assert_eq!(usize::from(b.blocks[0].out), k);
            assert_eq!(usize::from(b.blocks[6].out), (8 * k).min(128));
            assert!(Net::new(m, input, 10, 1).is_ok(), "{m}");
        }
        assert_eq!(mobilenet_blocks(32, 65), None);
        assert_eq!(mobilenet_blocks(4, 8), None);
    }

    /// Once every one-change child of a parent has been drawn (what happens after some
    /// generations of the same parents), breeding still gives new networks, a few changes away,
    /// that parse back; while one-change children are new, they are what it gives.
    #[test]
    fn breeding_goes_past_a_drawn_out_neighbourhood() {
        let parent: Arch = "blocks:r=32,3s1x12p,3s1x36p,3s1x36p,3s1x45"
            .parse()
            .unwrap();
        let mut rng = SplitMix(3);
        let mut seen = std::collections::BTreeSet::new();
        let first = breed(&mut rng, parent, &[32], true, &seen, |a| a);
        assert_eq!(first, mutate(&mut SplitMix(3), parent, &[32], true));
        seen.insert(parent.to_string());
        for _ in 0..20_000 {
            seen.insert(mutate(&mut rng, parent, &[32], true).to_string());
        }
        let neighbours = seen.len();
        let mut new = std::collections::BTreeSet::new();
        for _ in 0..100 {
            let child = breed(&mut rng, parent, &[32], true, &seen, |a| a);
            assert_eq!(child.to_string().parse::<Arch>(), Ok(child));
            if !seen.contains(&child.to_string()) {
                new.insert(child.to_string());
            }
        }
        assert!(
            new.len() >= 50,
            "{} new of 100 ({neighbours} one-change children)",
            new.len()
        );
    }

    /// The probes hold every kind of kernel call the evolve space draws at 32x32 and 8x8 (so
    /// that the first generation has latency predictions), and the NanoNAS-shaped seeds are
    /// NanoNAS's own networks: same layers, same MACs.
    #[test]
    fn probes_cover_the_space_and_seeds_are_nanonas_networks() {
        type Calls = Vec<(String, u64, u64)>;
        let calls = |a: Arch, res: usize| -> Option<Calls> {
            let input = ImageShape {
                h: res,
                w: res,
                c: 3,
            };
            let net = Net::new(a, Net::input_of(a, input), 10, 1).ok()?;
            let model = tinynas_train::export::shape_model(&net, Vec::new()).ok()?;
            predict::calls(&model).ok()
        };
        let kinds = |a: Arch, res: usize| -> Option<std::collections::BTreeSet<String>> {
            Some(calls(a, res)?.into_iter().map(|(k, ..)| k).collect())
        };
        for res in [32, 8] {
            let probes = probes(res);
            assert_eq!(probes.len(), 3, "every probe builds at {res}x{res}");
            let known: std::collections::BTreeSet<String> = probes
                .iter()
                .flat_map(|&p| kinds(p, res).expect("a probe builds"))
                .collect();
            let mut rng = SplitMix(5);
            let mut a = random_blocks(&mut rng, &[res], true);
            let mut drawn = std::collections::BTreeSet::new();
            for i in 0..3000 {
                a = if i % 3 == 0 {
                    random_blocks(&mut rng, &[res], true)
                } else {
                    mutate(&mut rng, a, &[res], true)
                };
                drawn.extend(kinds(scale_widths(a, 2.0), res).unwrap_or_default());
            }
            let missing: Vec<&String> = drawn.difference(&known).collect();
            assert!(
                missing.is_empty(),
                "at {res}x{res} no probe has {missing:?}"
            );
            assert!(drawn.len() >= 10, "{drawn:?}");
            // The commonest kind is probed in two shapes (the stem and a 16-channel layer), so
            // that its fit does not take the stem's cost per MAC for every layer's.
            let shapes: std::collections::BTreeSet<u64> = probes
                .iter()
                .flat_map(|&p| calls(p, res).expect("a probe builds"))
                .filter(|(k, m, _)| k == "conv3x3s1" && *m > 0)
                .map(|(_, macs, outputs)| macs / outputs)
                .collect();
            assert!(shapes.len() >= 2, "at {res}x{res}: {shapes:?}");
        }
        let seed = nanonas_blocks(32, 14, 4, true).unwrap();
        assert_eq!(
            seed.to_string(),
            "blocks:r=32,3s1x14p,3s1x28p,3s1x42p,3s1x53p,3s1x60"
        );
        let input = ImageShape { h: 32, w: 32, c: 3 };
        let shape = |a: Arch| {
            let net = Net::new(a, input, 10, 1).unwrap();
            let m = tinynas_train::export::shape_model(&net, Vec::new()).unwrap();
            (m.macs(), m.params(), predict::calls(&m).unwrap())
        };
        assert_eq!(shape(seed), shape(Arch::NanoNas { k: 14, c: 4 }));
        // Without pooled blocks in the space (`--evolve-without pooling`), each cell downsamples
        // by its convolution's stride instead: the seeds pool no more than the rest.
        assert_eq!(
            nanonas_blocks(32, 14, 4, false).unwrap().to_string(),
            "blocks:r=32,3s2x14,3s2x28,3s2x42,3s2x53,3s1x60"
        );
        assert_eq!(
            nanonas_blocks(32, 4, 8, true),
            None,
            "9 blocks: more than the space holds"
        );
    }

    /// Growing scales every width, rounded and kept within 4 to 128 channels; nothing else moves.
    #[test]
    fn scaling_widths_keeps_the_structure() {
        let a: Arch = "blocks:r=32,3s2x8,d5s1x12,3s2x100".parse().unwrap();
        assert_eq!(
            scale_widths(a, 1.5).to_string(),
            "blocks:r=32,3s2x12,d5s1x18,3s2x128"
        );
        assert_eq!(
            scale_widths(a, 0.1).to_string(),
            "blocks:r=32,3s2x4,d5s1x4,3s2x10"
        );
        let n: Arch = "nanonas:k=4,c=2".parse().unwrap();
        assert_eq!(scale_widths(n, 2.0), n);
    }

    #[test]
    fn pareto_front_keeps_only_undominated_fitting_candidates() {
        let e = |arch: &str, acc: f32, lat: u64, sram: u64, status: Status| Entry {
            kind: EntryKind::Candidate,
            arch: arch.into(),
            seed: 1,
            epochs: 1,
            float_val: Some(acc),
            int8_val: None,
            int8_test: None,
            params: None,
            macs: None,
            arena_bytes: None,
            measured: Some(Measured {
                board: "qemu-m4".into(),
                latency: lat,
                unit: "instructions".into(),
                peak_sram_bytes: sram,
                flash_bytes: 0,
                outputs_match_host: true,
            }),
            predicted_latency: None,
            predicted_sram_bytes: None,
            predicted_flash_bytes: None,
            layers: None,
            status,
            seconds: 0.0,
            model_crc: None,
        };
        let all = vec![
            e("a", 0.8, 100, 1000, Status::Fits),
            e("b", 0.9, 200, 1000, Status::Fits),
            e("c", 0.7, 300, 2000, Status::Fits), // dominated by a
            e("d", 0.95, 50, 500, Status::OverBudgetMeasured("x".into())),
            e("f", 0.6, 90, 1500, Status::Fits), // faster than a, more SRAM: kept
        ];
        let front: Vec<String> = pareto(&all).into_iter().map(|e| e.arch).collect();
        assert_eq!(front, vec!["f", "a", "b"]);
        // The candidates' order, best first: by score; of equal scores the cheaper (latency,
        // then SRAM), which is the one on the front; the order of measuring does not decide.
        let mut tied = [
            e("slow", 0.9, 300, 900, Status::Fits),
            e("small", 0.9, 200, 800, Status::Fits),
            e("best", 0.95, 900, 900, Status::Fits),
            e("fast", 0.9, 200, 1000, Status::Fits),
        ];
        tied.sort_by(evolve::rank);
        let order: Vec<&str> = tied.iter().map(|e| e.arch.as_str()).collect();
        assert_eq!(order, ["best", "small", "fast", "slow"]);
        assert_eq!(
            pareto(&tied[1..]).len(),
            1,
            "of the tied, only the cheapest is on the front"
        );
        let svg = svg(&all, &pareto(&all), Some("b"), "instructions");
        assert!(svg.starts_with("<svg") && svg.contains("tomato"));
        assert!(
            svg.contains("latency per inference (instructions)"),
            "{svg}"
        );
        assert!(
            svg.contains(">winner b<") && svg.contains("Legend"),
            "{svg}"
        );
        assert!(
            !svg.contains("<polyline"),
            "no line through a three-axis front"
        );
    }

    /// The kernel families that decide a firmware's code: the depthwise layers by kernel and
    /// stride, every convolution as one, and a grey image's 3x3 first layer apart.
    #[test]
    fn kernel_families_follow_the_code_that_is_linked() {
        let families = |arch: &str, c: usize| {
            let arch: Arch = arch.parse().unwrap();
            let base = ImageShape { h: 32, w: 32, c };
            let net = Net::new(arch, Net::input_of(arch, base), 10, 1).unwrap();
            let model = tinynas_train::export::shape_model(&net, vec![String::new(); 10]).unwrap();
            predict::families(&model).unwrap()
        };
        let rgb = families("blocks:r=32,3s2x8,d3s2x16,d5s1x16,5s2x24", 3);
        assert_eq!(
            rgb,
            [
                "FullyConnected",
                "GlobalAveragePool",
                "conv",
                "dw3x3s2",
                "dw5x5s1"
            ]
        );
        let grey = families("blocks:r=32,3s2x8,d3s2x16,d5s1x16,5s2x24", 1);
        assert_eq!(grey.len(), rgb.len() + 1);
        assert!(
            grey.contains(&"conv3x3-one-channel".to_string()),
            "{grey:?}"
        );
        // A 5x5 stem over one channel runs in the shared copy.
        assert_eq!(
            families("blocks:r=32,5s2x8,3s2x16", 1),
            families("blocks:r=32,5s2x8,3s2x16", 3)
        );
    }

    /// Replays a search's journal through [`predict::Table::overhead`]: each measured candidate's
    /// flash and peak SRAM predicted from the firmware measured before it (the search's
    /// `table-start.json`, then the journal), against what it measured. A tool for the
    /// prediction, not a check (CIFAR-10's 32x32x3, 10 classes):
    /// `TINYNAS_REPLAY=<project>/.tinynas/search/<id> cargo test -p cargo-tinynas --lib replay_sizes -- --ignored --nocapture`
    #[test]
    #[ignore = "needs a search's folder in TINYNAS_REPLAY"]
    fn replay_sizes() {
        let dir = PathBuf::from(std::env::var("TINYNAS_REPLAY").unwrap());
        let mut table = predict::Table::read(&dir.join("table-start.json")).unwrap();
        let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
        let base = ImageShape { h: 32, w: 32, c: 3 };
        let (mut flash, mut sram) = (Vec::new(), Vec::new());
        for line in journal.lines() {
            let e: Entry = serde_json::from_str(line).unwrap();
            if e.kind == EntryKind::Screen {
                continue;
            }
            let arch: Arch = e.arch.parse().unwrap();
            let net = Net::new(arch, Net::input_of(arch, base), 10, 1).unwrap();
            let model = tinynas_train::export::shape_model(&net, vec![String::new(); 10]).unwrap();
            let families = predict::families(&model).unwrap();
            let params = model.param_bytes() as u64;
            let arena = tinynas_model::plan::plan(&model).arena_bytes as u64;
            let over = table.overhead(&families);
            let Some(m) = &e.measured else {
                // Not measured: the board could not hold it (say, it did not link).
                println!(
                    "{:<60} not measured ({:?}): flash predicted {:>7}, parameters {params}",
                    e.arch,
                    e.status,
                    params + over.flash_bytes
                );
                continue;
            };
            let err = |p: u64, m: u64| p as f64 / m as f64 - 1.0;
            flash.push(err(params + over.flash_bytes, m.flash_bytes));
            sram.push(err(arena + over.sram_bytes, m.peak_sram_bytes));
            println!(
                "{:<60} {:?} over {:>6} flash {:>7} predicted {:>7} ({:+.1} %), SRAM {:>6} predicted {:>6}",
                e.arch,
                families,
                m.flash_bytes - params,
                m.flash_bytes,
                params + over.flash_bytes,
                100.0 * flash.last().unwrap(),
                m.peak_sram_bytes,
                arena + over.sram_bytes
            );
            table.add_sizes(predict::Sizes {
                families,
                param_bytes: params,
                arena_bytes: arena,
                flash_bytes: m.flash_bytes,
                peak_sram_bytes: m.peak_sram_bytes,
            });
        }
        // Past the first candidate (before it nothing was measured).
        let show = |e: &[f64]| {
            let e = e.get(1..).unwrap_or(&[]);
            let mut a: Vec<f64> = e.iter().map(|x| x.abs()).collect();
            a.sort_by(f64::total_cmp);
            let within = |p: f64| a.iter().filter(|&&x| x <= p).count();
            let lo = e.iter().copied().fold(0.0, f64::min);
            let hi = e.iter().copied().fold(0.0, f64::max);
            format!(
                "{} predicted, within 1 %: {}, within 5 %: {}, median error {:.1} %, from {:+.1} % to {:+.1} %",
                e.len(),
                within(0.01),
                within(0.05),
                100.0 * a.get(a.len() / 2).copied().unwrap_or(0.0),
                100.0 * lo,
                100.0 * hi
            )
        };
        println!("flash: {}", show(&flash));
        println!("peak SRAM: {}", show(&sram));
    }
}
