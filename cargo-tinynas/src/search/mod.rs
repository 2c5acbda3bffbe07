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
//! Every evaluation goes to the [`journal`]; a search killed and started again resumes from it.

pub mod journal;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use journal::{Entry, Journal, Measured, Status};

use crate::board::Board;
use crate::data::{split, ImageShape};
use crate::project::Budgets;
use crate::train::command::{load, QatPolicy, TrainError, QAT_THRESHOLD};
use crate::train::export::{export, int8_accuracy};
use crate::train::fit::{fit_until, Options, Progress};
use crate::train::net::{Arch, Net, OptimizerKind, Schedule};

/// What to search, and where.
#[derive(Debug, Clone)]
pub struct Settings {
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
        "the search was stopped before any candidate fitted the budget; run it again to resume"
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
}

fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The fingerprint of a search: the data and every setting that changes its result.
pub fn fingerprint(s: &Settings, data_fingerprint: u64, board: &str) -> u64 {
    let text = format!(
        "v1|{data_fingerprint}|{:?}|{board}|{}|{}|{:?}|{}|{}|{}|{}|{}|{:?}|{}",
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
    );
    fnv(0xcbf2_9ce4_8422_2325, text.as_bytes())
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

/// Runs the search.
pub fn run(
    s: &Settings,
    board: &mut dyn Board,
    stop: &AtomicBool,
    mut on: impl FnMut(Event<'_>),
) -> Result<Outcome, SearchError> {
    let (mut data, _skipped) = load(&s.data, Some(s.input), false)?;
    let sp = split::stratified(&data.labels, &data.assigned, s.val, s.test, s.seed);
    let classes = data.classes.clone();
    let fp = fingerprint(s, data.fingerprint, &board.name());
    let dir = s.state_dir.join(format!("{fp:016x}"));
    let jpath = dir.join("journal.jsonl");
    let jerr = |source| SearchError::Journal {
        path: jpath.clone(),
        source,
    };
    let mut journal = Journal::open(&jpath).map_err(jerr)?;
    let resumed_before = journal.done.len();
    on(Event::Started {
        journal: &jpath,
        resumed: resumed_before,
        samples: (sp.train.len(), sp.val.len(), sp.test.len()),
        classes: classes.len(),
    });
    let calib: Vec<usize> = sp.train.iter().copied().take(512).collect();
    let mut candidates = Vec::new();

    // Trains, quantises, checks and measures one architecture.
    let mut evaluate = |arch: Arch,
                        kind: &str,
                        epochs: usize,
                        data: &mut crate::data::Cache,
                        journal: &mut Journal,
                        on: &mut dyn FnMut(Event<'_>)|
     -> Result<Option<(Entry, Vec<u8>)>, SearchError> {
        let name = arch.to_string();
        if let Some(e) = journal.get(kind, &name) {
            // The final model is kept next to the journal; a candidate needs no file.
            let bytes = if kind == "final" {
                match std::fs::read(dir.join("winner.tnas")) {
                    Ok(b) if Some(crc32fast::hash(&b)) == e.model_crc => b,
                    _ => Vec::new(),
                }
            } else {
                Vec::new()
            };
            if kind != "final" || !bytes.is_empty() {
                let e = e.clone();
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
            status: Status::Fits,
            seconds: 0.0,
            model_crc: None,
        };
        let mut net = match Net::new(arch, data.shape, classes.len(), s.seed) {
            Ok(n) => n,
            Err(e) => {
                entry.status = Status::Invalid(e);
                journal.append(&entry).map_err(jerr)?;
                on(Event::Evaluated {
                    entry: &entry,
                    resumed: false,
                });
                return Ok(Some((entry, Vec::new())));
            }
        };
        on(Event::Training {
            arch: &name,
            final_run: kind == "final",
        });
        let final_run = kind == "final";
        let opts = Options {
            epochs,
            batch: if final_run { 128 } else { 16 },
            lr: if final_run { 0.01 } else { 1e-3 },
            optimizer: OptimizerKind::Adam,
            schedule: Schedule::Constant,
            seed: s.seed,
            augment: false,
        };
        let (history, best) = fit_until(
            &mut net,
            data,
            &sp.train,
            &sp.val,
            &opts,
            |p| on(Event::Progress(p)),
            stop,
        )
        .map_err(TrainError::from)?;
        let Some(mut best) = best.filter(|_| history.len() == epochs) else {
            return Ok(None); // stopped: nothing is journaled
        };
        entry.float_val = history.iter().map(|e| e.val_accuracy).reduce(f32::max);
        let mut model = export(&mut best, data, &calib, classes.clone())?;
        let mut int8_val = int8_accuracy(&model, data, &sp.val)?;
        if final_run {
            let float_val = entry.float_val.unwrap_or(0.0);
            let want = match s.qat {
                QatPolicy::Always => true,
                QatPolicy::Never => false,
                QatPolicy::Auto => float_val - int8_val > QAT_THRESHOLD,
            };
            if want {
                let mut q = crate::train::qat::qat_net(&mut best, data, &calib)?;
                let qopts = Options {
                    epochs: 2,
                    lr: 1e-3,
                    schedule: Schedule::Cosine,
                    ..opts
                };
                let (_, qb) = fit_until(
                    &mut q,
                    data,
                    &sp.train,
                    &sp.val,
                    &qopts,
                    |p| on(Event::Progress(p)),
                    stop,
                )
                .map_err(TrainError::from)?;
                if let Some(mut qb) = qb {
                    let qm = export(&mut qb, data, &calib, classes.clone())?;
                    let qv = int8_accuracy(&qm, data, &sp.val)?;
                    if qv > int8_val {
                        (model, int8_val) = (qm, qv);
                    }
                }
            }
            entry.int8_test = Some(int8_accuracy(&model, data, &sp.test)?);
        }
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
            let opts = crate::bench::Options {
                inputs: 2,
                seed: s.seed,
                per_layer: false,
                extra_stack_bytes: 0,
            };
            let o = crate::bench::run(&bytes, board, &opts, &s.firmware_cache, |_| {}).map_err(
                |source| SearchError::Bench {
                    arch: name.clone(),
                    source: Box::new(source),
                },
            )?;
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
            if let Some(why) = over_budget(s, &measured) {
                entry.status = Status::OverBudgetMeasured(why);
            }
            entry.measured = Some(measured);
        }
        entry.seconds = start.elapsed().as_secs_f64();
        if final_run {
            crate::fsutil::write_atomic(&dir.join("winner.tnas"), &bytes).map_err(jerr)?;
        }
        journal.append(&entry).map_err(jerr)?;
        on(Event::Evaluated {
            entry: &entry,
            resumed: false,
        });
        Ok(Some((entry, bytes)))
    };

    // The climb.
    let mut best: Option<Entry> = None;
    let mut best_per_k_prev: Option<f32> = None;
    let score = |e: &Entry| e.float_val.unwrap_or(0.0);
    'k: for k in 1..=s.max_k {
        let mut best_k: Option<Entry> = None;
        for c in 0..=8 {
            if stop.load(Ordering::Relaxed) {
                break 'k;
            }
            let arch = Arch::NanoNas { k, c };
            let Some((e, _)) = evaluate(
                arch,
                "candidate",
                s.proxy_epochs,
                &mut data,
                &mut journal,
                &mut on,
            )?
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
    let Some(winner) = best else {
        if stop.load(Ordering::Relaxed) {
            return Err(SearchError::Stopped);
        }
        return Err(SearchError::NothingFits(s.budgets.explain.join("; ")));
    };
    let arch: Arch = winner.arch.parse().map_err(TrainError::Arch)?;
    let Some((final_entry, model_bytes)) = evaluate(
        arch,
        "final",
        s.final_epochs,
        &mut data,
        &mut journal,
        &mut on,
    )?
    else {
        return Err(SearchError::Stopped);
    };
    let pareto = pareto(&candidates);
    Ok(Outcome {
        candidates,
        winner,
        final_entry,
        model_bytes,
        journal: jpath.clone(),
        resumed: resumed_before,
        pareto,
        data_fingerprint: data.fingerprint,
        classes,
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
