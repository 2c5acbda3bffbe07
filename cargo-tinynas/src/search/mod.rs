//! `cargo tinynas search`: the hardware-aware architecture search.
//!
//! Strategy `nanonas` is the published climb (DESIGN.md section 5) over the space A(k, c):
//! k = 1, 2, ...; for each k, c = 0, 1, ... while the validation accuracy strictly improves (a
//! candidate over budget ends the c loop); stop growing k when the best accuracy per k stops
//! improving. Each candidate trains `proxy_epochs` (Adam, lr 1e-3, batch 16) and is quantised;
//! one that passes the analytic checks (planned arena against the SRAM budget, parameter bytes
//! against the flash budget) is then **measured on the board**, and the budgets are checked on the
//! measured peak SRAM, flash and latency. The winner is retrained from scratch (`final_epochs`,
//! Adam lr 0.01, batch 128, keeping the best epoch), quantised (with the quantisation-aware
//! fine-tune when post-training quantisation loses more than a point) and measured again.
//!
//! Strategy `evolve` (beyond the paper) searches a wider space, [`Blocks`]: 3x3 or 5x5 convolutions,
//! stride-2 downsampling instead of pooling, a width per block, 2 to 6 blocks, and the input
//! resolution (the data's, or three quarters of it). A seeded evolutionary search keeps a
//! population, mutates the best candidates that fit, and trains only children **predicted** to
//! fit: arena and parameter bytes exactly from the model, latency from [`predict`]'s per-board
//! table of measured layer latencies. Every trained candidate is still measured on the board (and
//! its layers added to the table); the predictor's error against those measurements is reported.
//!
//! Every evaluation goes to the [`journal`]; a search killed and started again resumes from it.

pub mod journal;
pub mod predict;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use journal::{Entry, Journal, Measured, Status};

use crate::board::Board;
use crate::data::{split, ImageShape};
use crate::project::Budgets;
use crate::train::command::{load, QatPolicy, TrainError};
use crate::train::export::{export, int8_accuracy};
use crate::train::fit::{fit_until, Options, Progress};
use crate::train::net::{Arch, Block, Blocks, Net, OptimizerKind, Schedule, MAX_BLOCKS};
use tinynas_model::random::{Source, SplitMix};

/// Which search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    NanoNas,
    Evolve {
        /// Candidates per generation.
        population: usize,
        /// Generations after the first.
        generations: usize,
    },
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
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Export(#[from] crate::train::export::ExportError),
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
    pub model_bytes: Vec<u8>,
    pub journal: PathBuf,
    pub resumed: usize,
    /// Accuracy against latency and peak SRAM: the candidates that fit and are not beaten on all
    /// three.
    pub pareto: Vec<Entry>,
    pub classes: Vec<String>,
    /// Fingerprint of the data set's source files.
    pub data_fingerprint: u64,
    /// `evolve`: (candidate, predicted, measured latency) of every measured candidate that had a
    /// prediction.
    pub predictions: Vec<(String, u64, u64)>,
}

impl Outcome {
    /// Mean and largest relative error of the latency predictor, if it predicted anything.
    pub fn predictor_error(&self) -> Option<(f64, f64)> {
        let e: Vec<f64> = self
            .predictions
            .iter()
            .map(|(_, p, m)| (*p as f64 - *m as f64).abs() / (*m as f64).max(1.0))
            .collect();
        (!e.is_empty()).then(|| {
            (
                e.iter().sum::<f64>() / e.len() as f64,
                e.iter().copied().fold(0.0, f64::max),
            )
        })
    }
}

/// The fingerprint of a search: the data and every setting that changes its result. `board`
/// names the board and the core its bench firmware is built for; the sources of that firmware
/// (kernels, runtime, code generation, templates: `build.rs`) are part of it too, so a search
/// resumed after they change measures again.
pub fn fingerprint(s: &Settings, data_fingerprint: u64, board: &str) -> u64 {
    // The prefix names the search's own version: bump it whenever the same settings would
    // evaluate other candidates (v2: depthwise-separable blocks in the evolve space), so that an
    // older journal is not resumed into a different search.
    let text = format!(
        "v2|{:?}|{data_fingerprint}|{:?}|{board}|{}|{}|{:?}|{}|{}|{}|{}|{}|{:?}|{}|{}",
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
    crate::hash::fnv1a(text.as_bytes())
}

fn over_budget(s: &Settings, m: &Measured) -> Option<String> {
    let b = &s.budgets;
    let mut why = Vec::new();
    if m.peak_sram_bytes > b.ram_bytes {
        why.push(format!(
            "peak SRAM {} > {} bytes",
            m.peak_sram_bytes, b.ram_bytes
        ));
    }
    if m.flash_bytes > b.flash_bytes {
        why.push(format!("flash {} > {} bytes", m.flash_bytes, b.flash_bytes));
    }
    if let Some(l) = b.latency_cycles {
        if m.latency > l {
            why.push(format!("latency {} > {l} {}", m.latency, m.unit));
        }
    }
    (!why.is_empty()).then(|| why.join(", "))
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
}

impl Searcher<'_> {
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
        crate::train::export::shape_model(&net, self.classes.clone()).ok()
    }

    /// Trains, quantises, checks and measures one architecture (or reads it from the journal).
    fn evaluate(
        &mut self,
        arch: Arch,
        kind: &str,
        epochs: usize,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<Option<(Entry, Vec<u8>)>, SearchError> {
        let s = self.s;
        let name = arch.to_string();
        let final_run = kind == "final";
        if let Some(e) = self.journal.get(kind, &name).cloned() {
            // The final model is kept next to the journal; a candidate needs no file.
            let bytes = if final_run {
                match std::fs::read(self.dir.join("winner.tnas")) {
                    Ok(b) if Some(crc32fast::hash(&b)) == e.model_crc => b,
                    _ => Vec::new(),
                }
            } else {
                Vec::new()
            };
            if !final_run || !bytes.is_empty() {
                if let (Some(p), Some(m)) = (e.predicted_latency, &e.measured) {
                    self.predictions.push((name.clone(), p, m.latency));
                }
                if let (Some(t), Some(rows)) = (self.table.as_mut(), &e.layers) {
                    t.extend(rows);
                }
                on(Event::Evaluated {
                    entry: &e,
                    resumed: true,
                });
                return Ok(Some((e, bytes)));
            }
        }
        let start = Instant::now();
        let mut entry = Entry {
            kind: kind.to_string(),
            arch: name.clone(),
            seed: s.seed,
            epochs,
            float_val: None,
            int8_val: None,
            int8_test: None,
            params: None,
            macs: None,
            arena_bytes: None,
            measured: None,
            predicted_latency: None,
            layers: None,
            status: Status::Fits,
            seconds: 0.0,
            model_crc: None,
        };
        let input = Net::input_of(arch, self.base);
        let mut net = match Net::new(arch, input, self.classes.len(), s.seed) {
            Ok(n) => n,
            Err(e) => {
                entry.status = Status::Invalid(e);
                self.journal.append(&entry).map_err(self.jerr())?;
                on(Event::Evaluated {
                    entry: &entry,
                    resumed: false,
                });
                return Ok(Some((entry, Vec::new())));
            }
        };
        self.cache(input)?;
        let data = self
            .data
            .get_mut(&(input.h, input.w, input.c))
            .expect("loaded above");
        let (train, val, test, calib) = (
            &self.split.train,
            &self.split.val,
            &self.split.test,
            &self.calib,
        );
        on(Event::Training {
            arch: &name,
            final_run,
        });
        let opts = Options {
            epochs,
            batch: if final_run { 128 } else { 16 },
            lr: if final_run { 0.01 } else { 1e-3 },
            optimizer: OptimizerKind::Adam,
            schedule: Schedule::Constant,
            seed: s.seed,
            augment: false,
        };
        let stop = self.stop;
        let (history, best) = fit_until(
            &mut net,
            data,
            train,
            val,
            &opts,
            |p| on(Event::Progress(p)),
            stop,
        )
        .map_err(TrainError::from)?;
        let Some(mut best) = best.filter(|_| history.len() == epochs) else {
            return Ok(None); // stopped: nothing is journaled
        };
        entry.float_val = history.iter().map(|e| e.val_accuracy).reduce(f32::max);
        let ptq = export(&mut best, data, calib, self.classes.clone())?;
        let (model, int8_val) = if final_run {
            // The winner gets the quantisation-aware fine-tune when it needs one.
            let qopts = Options {
                epochs: 2,
                lr: 1e-3,
                schedule: Schedule::Cosine,
                ..opts
            };
            let q = crate::train::qat::quantise(
                &mut best,
                data,
                (train, val),
                calib,
                ptq,
                entry.float_val.unwrap_or(0.0),
                s.qat,
                &qopts,
                stop,
                |e| {
                    if let crate::train::qat::Quantising::Progress(p) = e {
                        on(Event::Progress(p))
                    }
                },
            )?;
            if stop.load(Ordering::Relaxed) {
                // Stopped before or during the fine-tune: journaling this model would make a
                // resumed search end differently from an uninterrupted one.
                return Ok(None);
            }
            entry.int8_test = Some(int8_accuracy(&q.model, data, test)?);
            (q.model, q.int8_val)
        } else {
            let v = int8_accuracy(&ptq, data, val)?;
            (ptq, v)
        };
        entry.int8_val = Some(int8_val);
        let plan = tinynas_model::plan::plan(&model);
        let param_bytes: usize = model.nodes.iter().map(|n| n.param_bytes()).sum();
        entry.params = Some(model.params());
        entry.macs = Some(model.macs());
        entry.arena_bytes = Some(plan.arena_bytes);
        let bytes = tinynas_model::format::to_bytes(&model);
        entry.model_crc = Some(crc32fast::hash(&bytes));
        let b = &s.budgets;
        if plan.arena_bytes as u64 > b.ram_bytes || param_bytes as u64 > b.flash_bytes {
            entry.status = Status::OverBudgetAnalytic(format!(
                "arena {} bytes (SRAM budget {}), parameters {} bytes (flash budget {})",
                plan.arena_bytes, b.ram_bytes, param_bytes, b.flash_bytes
            ));
        } else {
            on(Event::Measuring { arch: &name });
            entry.predicted_latency = self.table.as_ref().and_then(|t| t.predict(&model));
            let opts = crate::bench::Options {
                inputs: 2,
                seed: s.seed,
                per_layer: self.table.is_some(),
                extra_stack_bytes: 0,
            };
            let o = crate::bench::run(&bytes, self.board, &opts, &s.firmware_cache, |_| {})
                .map_err(|source| SearchError::Bench {
                    arch: name.clone(),
                    source: Box::new(source),
                })?;
            if !o.outputs_match() {
                return Err(SearchError::Mismatch { arch: name });
            }
            let m = &o.measurement;
            let input_bytes: u64 = o.inputs.iter().map(|i| i.len() as u64).sum();
            let measured = Measured {
                board: m.board.clone(),
                latency: m.latency.iter().copied().max().unwrap_or(0),
                unit: m.unit.name().to_string(),
                peak_sram_bytes: m.peak_sram_bytes(),
                flash_bytes: m.sizes.flash().saturating_sub(input_bytes),
                outputs_match_host: true,
            };
            if let Some(t) = self.table.as_mut() {
                let rows = predict::Table::rows_of(&model, &m.per_step)?;
                t.extend(&rows);
                // The board's table in the cache is shared by later searches; a failed write
                // costs only predictions.
                let _ = predict::Table::merge_into_cache(&s.firmware_cache, &t.board, &rows);
                entry.layers = Some(rows);
            }
            if let Some(p) = entry.predicted_latency {
                self.predictions.push((name.clone(), p, measured.latency));
            }
            if let Some(why) = over_budget(s, &measured) {
                entry.status = Status::OverBudgetMeasured(why);
            }
            entry.measured = Some(measured);
        }
        entry.seconds = start.elapsed().as_secs_f64();
        if final_run {
            crate::fsutil::write_atomic(&self.dir.join("winner.tnas"), &bytes)
                .map_err(self.jerr())?;
        }
        self.journal.append(&entry).map_err(self.jerr())?;
        on(Event::Evaluated {
            entry: &entry,
            resumed: false,
        });
        Ok(Some((entry, bytes)))
    }

    /// The published NanoNAS climb; the best candidate that fits.
    fn nanonas(
        &mut self,
        candidates: &mut Vec<Entry>,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<Option<Entry>, SearchError> {
        let score = |e: &Entry| e.float_val.unwrap_or(0.0);
        let mut best: Option<Entry> = None;
        let mut best_per_k_prev: Option<f32> = None;
        'k: for k in 1..=self.s.max_k {
            let mut best_k: Option<Entry> = None;
            for c in 0..=8 {
                if self.stop.load(Ordering::Relaxed) {
                    break 'k;
                }
                let arch = Arch::NanoNas { k, c };
                let Some((e, _)) = self.evaluate(arch, "candidate", self.s.proxy_epochs, on)?
                else {
                    break 'k;
                };
                candidates.push(e.clone());
                if e.status != Status::Fits {
                    break;
                }
                if best_k.as_ref().is_some_and(|b| score(&e) <= score(b)) {
                    break;
                }
                best_k = Some(e);
            }
            let Some(bk) = best_k else {
                // Nothing fits at this k (even c = 0): a larger k will not fit either.
                break;
            };
            if best_per_k_prev.is_some_and(|p| score(&bk) <= p) {
                break;
            }
            best_per_k_prev = Some(score(&bk));
            if best.as_ref().is_none_or(|b| score(&bk) > score(b)) {
                best = Some(bk);
            }
        }
        Ok(best)
    }

    /// Whether an untrained architecture is predicted to fit: arena and parameter bytes exactly,
    /// latency from the table when it knows every kind of layer (else it is left to the board).
    fn predicted_fit(&self, arch: Arch) -> bool {
        let Some(model) = self.shape_model(arch) else {
            return false;
        };
        let b = &self.s.budgets;
        let arena = tinynas_model::plan::plan(&model).arena_bytes as u64;
        let params: u64 = model.nodes.iter().map(|n| n.param_bytes() as u64).sum();
        if arena > b.ram_bytes || params > b.flash_bytes {
            return false;
        }
        match (
            b.latency_cycles,
            self.table.as_ref().and_then(|t| t.predict(&model)),
        ) {
            (Some(budget), Some(p)) => p <= budget,
            _ => true,
        }
    }

    /// The evolutionary search over [`Blocks`]; the best candidate that fits.
    fn evolve(
        &mut self,
        population: usize,
        generations: usize,
        candidates: &mut Vec<Entry>,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<Option<Entry>, SearchError> {
        let mut rng = SplitMix(self.s.seed ^ 0xE70_1E5);
        let res_choices = [
            self.base.h.min(self.base.w),
            (self.base.h.min(self.base.w) * 3 / 4) & !1,
        ];
        let mut seen = std::collections::BTreeSet::new();
        let population = population.max(2);
        let mut generation: Vec<Arch> = Vec::new();
        for _ in 0..population * 50 {
            if generation.len() == population {
                break;
            }
            let a = random_blocks(&mut rng, &res_choices);
            if seen.insert(a.to_string()) && self.predicted_fit(a) {
                generation.push(a);
            }
        }
        let score = |e: &Entry| e.float_val.unwrap_or(0.0);
        let mut fitting: Vec<(Arch, Entry)> = Vec::new();
        for g in 0..=generations {
            for &arch in &generation {
                if self.stop.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                let Some((e, _)) = self.evaluate(arch, "candidate", self.s.proxy_epochs, on)?
                else {
                    return Ok(None);
                };
                candidates.push(e.clone());
                if e.status == Status::Fits {
                    fitting.push((arch, e));
                }
            }
            if g == generations {
                break;
            }
            // Parents: the better half of everything that fitted so far.
            fitting.sort_by(|a, b| score(&b.1).total_cmp(&score(&a.1)));
            let parents: Vec<Arch> = fitting
                .iter()
                .take(population.div_ceil(2))
                .map(|(a, _)| *a)
                .collect();
            generation.clear();
            if parents.is_empty() {
                break;
            }
            for _ in 0..population * 50 {
                if generation.len() == population {
                    break;
                }
                let p = parents[rng.int(0, parents.len() as i64 - 1) as usize];
                let child = mutate(&mut rng, p, &res_choices);
                if seen.insert(child.to_string()) && self.predicted_fit(child) {
                    generation.push(child);
                }
            }
        }
        fitting.sort_by(|a, b| score(&b.1).total_cmp(&score(&a.1)));
        Ok(fitting.into_iter().next().map(|(_, e)| e))
    }
}

fn pick<T: Copy>(rng: &mut SplitMix, v: &[T]) -> T {
    v[rng.int(0, v.len() as i64 - 1) as usize]
}

/// A random network of the `evolve` space.
pub fn random_blocks(rng: &mut SplitMix, res: &[usize]) -> Arch {
    let n = rng.int(2, 5) as usize;
    let mut b = Blocks {
        res: pick(rng, res) as u16,
        n: n as u8,
        blocks: [Block::default(); MAX_BLOCKS],
    };
    // The stem is a plain convolution: a depthwise one would see only the image's 1-3 channels.
    b.blocks[0] = Block {
        k: 3,
        stride: 1,
        out: pick(rng, &[4u16, 6, 8, 12, 16]),
        sep: false,
    };
    for i in 1..n {
        let prev = f64::from(b.blocks[i - 1].out);
        b.blocks[i] = Block {
            k: pick(rng, &[3u8, 5]),
            stride: if rng.chance(0.6) { 2 } else { 1 },
            out: ((prev * pick(rng, &[1.0, 1.5, 2.0])).round() as u16).clamp(4, 96),
            sep: rng.chance(0.5),
        };
    }
    Arch::Blocks(b)
}

/// One random change: a width, a kernel size, a stride, plain vs depthwise-separable, a block more
/// or less, or the resolution.
pub fn mutate(rng: &mut SplitMix, arch: Arch, res: &[usize]) -> Arch {
    let Arch::Blocks(mut b) = arch else {
        return arch;
    };
    let n = usize::from(b.n);
    let i = rng.int(0, n as i64 - 1) as usize;
    let j = rng.int(1, (n as i64 - 1).max(1)) as usize;
    match rng.int(0, 6) {
        0 => {
            let o = f64::from(b.blocks[i].out);
            let f = if rng.chance(0.5) { 1.5 } else { 1.0 / 1.5 };
            b.blocks[i].out = ((o * f).round() as u16).clamp(4, 128);
        }
        1 if n > 1 => b.blocks[j].k = if b.blocks[j].k == 3 { 5 } else { 3 },
        2 if n > 1 => b.blocks[j].stride = 3 - b.blocks[j].stride,
        3 if n < MAX_BLOCKS => {
            let last = b.blocks[n - 1];
            b.blocks[n] = Block {
                k: 3,
                stride: pick(rng, &[1u8, 2]),
                out: last.out,
                sep: rng.chance(0.5),
            };
            b.n += 1;
        }
        5 if n > 1 => b.blocks[j].sep = !b.blocks[j].sep,
        4 if n > 2 => {
            for x in j..n - 1 {
                b.blocks[x] = b.blocks[x + 1];
            }
            b.blocks[n - 1] = Block::default();
            b.n -= 1;
        }
        _ => b.res = pick(rng, res) as u16,
    }
    Arch::Blocks(b)
}

/// Runs the search.
pub fn run(
    s: &Settings,
    board: &mut dyn Board,
    stop: &AtomicBool,
    mut on: impl FnMut(Event<'_>),
) -> Result<Outcome, SearchError> {
    let (data, _skipped) = load(&s.data, Some(s.input), false)?;
    let sp = split::stratified(&data.labels, &data.assigned, s.val, s.test, s.seed);
    let classes = data.classes.clone();
    let data_fingerprint = data.fingerprint;
    let board_id = format!("{} {}", board.name(), board.target_cpu().unwrap_or("-"));
    let fp = fingerprint(s, data.fingerprint, &board_id);
    let dir = s.state_dir.join(format!("{fp:016x}"));
    let jpath = dir.join("journal.jsonl");
    let journal = Journal::open(&jpath).map_err(|source| SearchError::Journal {
        path: jpath.clone(),
        source,
    })?;
    let resumed = journal.done.len();
    on(Event::Started {
        journal: &jpath,
        resumed,
        samples: (sp.train.len(), sp.val.len(), sp.test.len()),
        classes: classes.len(),
    });
    let calib: Vec<usize> = sp.train.iter().copied().take(512).collect();
    // evolve: the table as it was when this search started (kept next to the journal, so that a
    // resumed search predicts exactly as the first run did), grown by the journal's rows.
    let table = match s.strategy {
        Strategy::NanoNas => None,
        Strategy::Evolve { .. } => {
            let snap = dir.join("table-start.json");
            Some(match predict::Table::read(&snap) {
                Some(t) => t,
                None => {
                    let t = predict::Table::load(&s.firmware_cache, &board.name());
                    t.write(&snap).map_err(|source| SearchError::Journal {
                        path: snap.clone(),
                        source,
                    })?;
                    t
                }
            })
        }
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
    };
    let mut candidates = Vec::new();
    let best = match s.strategy {
        Strategy::NanoNas => se.nanonas(&mut candidates, &mut on)?,
        Strategy::Evolve {
            population,
            generations,
        } => se.evolve(population, generations, &mut candidates, &mut on)?,
    };
    let Some(winner) = best else {
        if stop.load(Ordering::Relaxed) {
            return Err(SearchError::Stopped);
        }
        return Err(SearchError::NothingFits(s.budgets.explain.join("; ")));
    };
    let arch: Arch = winner.arch.parse().map_err(TrainError::Arch)?;
    let Some((final_entry, model_bytes)) = se.evaluate(arch, "final", s.final_epochs, &mut on)?
    else {
        return Err(SearchError::Stopped);
    };
    let pareto = pareto(&candidates);
    Ok(Outcome {
        candidates,
        winner,
        final_entry,
        model_bytes,
        journal: jpath,
        resumed,
        pareto,
        data_fingerprint,
        classes,
        predictions: se.predictions,
    })
}

/// Candidates that fit and that no other fitting candidate beats on accuracy, latency and peak
/// SRAM at once.
pub fn pareto(entries: &[Entry]) -> Vec<Entry> {
    let fits: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.status == Status::Fits && e.measured.is_some())
        .collect();
    let key = |e: &Entry| {
        let m = e
            .measured
            .as_ref()
            .map_or((u64::MAX, u64::MAX), |m| (m.latency, m.peak_sram_bytes));
        (e.float_val.unwrap_or(0.0), m.0, m.1)
    };
    let mut front: Vec<Entry> = fits
        .iter()
        .filter(|e| {
            let (a, l, r) = key(e);
            !fits.iter().any(|o| {
                let (a2, l2, r2) = key(o);
                a2 >= a && l2 <= l && r2 <= r && (a2 > a || l2 < l || r2 < r)
            })
        })
        .map(|e| (*e).clone())
        .collect();
    front.sort_by_key(|e| e.measured.as_ref().map_or(0, |m| m.latency));
    front
}

/// The candidates as an SVG scatter plot: latency across, accuracy up, the Pareto front joined and
/// marked, each point's area by its peak SRAM.
pub fn svg(entries: &[Entry], front: &[Entry]) -> String {
    use std::fmt::Write;
    let pts: Vec<(&Entry, f64, f64, f64)> = entries
        .iter()
        .filter_map(|e| {
            let m = e.measured.as_ref()?;
            Some((
                e,
                m.latency as f64,
                f64::from(e.float_val.unwrap_or(0.0)),
                m.peak_sram_bytes as f64,
            ))
        })
        .collect();
    let (w, h, pad) = (640.0, 420.0, 60.0);
    let lmax = pts.iter().map(|p| p.1).fold(1.0, f64::max);
    let (amin, amax) = pts
        .iter()
        .fold((1.0f64, 0.0f64), |(lo, hi), p| (lo.min(p.2), hi.max(p.2)));
    let (amin, amax) = if amax > amin {
        (amin, amax)
    } else {
        (0.0, 1.0)
    };
    let smax = pts.iter().map(|p| p.3).fold(1.0, f64::max);
    let x = |l: f64| pad + (w - 2.0 * pad) * l / lmax;
    let y = |a: f64| h - pad - (h - 2.0 * pad) * (a - amin) / (amax - amin);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<line x1="{pad}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        h - pad,
        w - pad,
        h - pad
    );
    let _ = writeln!(
        s,
        r#"<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{}" stroke="black"/>"#,
        h - pad
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">latency per inference (0 to {lmax})</text>"#,
        w / 2.0,
        h - 20.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">validation accuracy ({:.1} % to {:.1} %)</text>"#,
        h / 2.0,
        h / 2.0,
        100.0 * amin,
        100.0 * amax
    );
    let mut line = String::new();
    for e in front {
        if let Some(p) = pts.iter().find(|p| p.0.arch == e.arch) {
            let _ = write!(line, "{:.1},{:.1} ", x(p.1), y(p.2));
        }
    }
    let _ = writeln!(
        s,
        r#"<polyline points="{}" fill="none" stroke="tomato" stroke-width="1.5"/>"#,
        line.trim()
    );
    for (e, l, a, sram) in &pts {
        let on_front = front.iter().any(|f| f.arch == e.arch);
        let r = 3.0 + 9.0 * (sram / smax).sqrt();
        let fill = if e.status == Status::Fits {
            if on_front {
                "tomato"
            } else {
                "steelblue"
            }
        } else {
            "lightgray"
        };
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="{r:.1}" fill="{fill}" fill-opacity="0.7"><title>{}: {:.1} %, latency {l}, peak SRAM {sram} bytes</title></circle>"#,
            x(*l),
            y(*a),
            e.arch,
            100.0 * a
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            x(*l) + r + 2.0,
            y(*a) + 4.0,
            e.arch.trim_start_matches("nanonas:")
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In the repository, the journal key covers the bench firmware's sources (`build.rs` found
    /// them), so a search resumed after the kernels change measures again.
    #[test]
    fn the_journal_key_covers_the_firmware_sources() {
        let id = env!("TINYNAS_FIRMWARE_SOURCES");
        assert_eq!(id.len(), 8, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
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
        let mut a = random_blocks(&mut rng, &res);
        for i in 0..300 {
            a = if i % 3 == 0 {
                random_blocks(&mut rng, &res)
            } else {
                mutate(&mut rng, a, &res)
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
            assert!(!b.blocks[0].sep, "{text}");
            let input = ImageShape { h: 28, w: 28, c: 1 };
            // Valid unless it downsamples past 2x2; then Net::new says so.
            if let Err(e) = Net::new(a, Net::input_of(a, input), 10, 1) {
                assert!(e.contains("downsample"), "{text}: {e}");
            }
        }
        assert_eq!(seen_res.len(), 2);
        assert!(seen_k5 && seen_s2 && seen_sep && seen_plain);
    }

    #[test]
    fn pareto_front_keeps_only_undominated_fitting_candidates() {
        let e = |arch: &str, acc: f32, lat: u64, sram: u64, status: Status| Entry {
            kind: "candidate".into(),
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
        let svg = svg(&all, &pareto(&all));
        assert!(svg.starts_with("<svg") && svg.contains("tomato"));
    }
}
