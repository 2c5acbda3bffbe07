//! `cargo tinynas search`: the architecture search, then the winner retrained and generated.

use std::path::PathBuf;

use super::{train::epoch_bar, MessageFormat, ProjectBoardArgs};
use anyhow::Context;
use cargo_tinynas::exit_codes;
use cargo_tinynas::search::journal::{Entry, EntryKind};
use clap::Args;

#[derive(Args, Debug)]
pub(crate) struct SearchArgs {
    #[command(flatten)]
    pub(crate) target: ProjectBoardArgs,
    /// nanonas (the published climb, every candidate measured) or evolve (wider space, candidates
    /// predicted to fit are trained and measured).
    #[arg(long)]
    pub(crate) strategy: Option<String>,
    /// evolve: candidates per generation.
    #[arg(long, default_value_t = 6, value_parser = super::at_least_one)]
    pub(crate) population: usize,
    /// evolve: generations after the first (default: 3; with --time-budget, as many as the
    /// budget holds).
    #[arg(long)]
    pub(crate) generations: Option<usize>,
    /// Epochs of each candidate's training (default: proxy-epochs of the config, else 3).
    #[arg(long, value_parser = super::at_least_one)]
    pub(crate) proxy_epochs: Option<usize>,
    /// Epochs of the winner's retraining (default: final-epochs of the config, else 30).
    #[arg(long, value_parser = super::at_least_one)]
    pub(crate) final_epochs: Option<usize>,
    /// nanonas: the largest k of A(k, c) tried (a safety bound; the climb stops long before).
    #[arg(long, default_value_t = 32, value_parser = super::at_least_one)]
    pub(crate) max_k: usize,
    /// Do not write the model crate at the end.
    #[arg(long)]
    pub(crate) no_generate: bool,
    /// Overwrite generated files edited by hand.
    #[arg(long)]
    pub(crate) force: bool,
    /// Worker threads for training (default: all cores).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Stop starting candidates when this much search time (e.g. 45m, 1h, 1h30m) would not also
    /// hold the winner's retraining; the best candidate so far wins. Counts this run's wall time
    /// plus the journaled time of earlier runs, so a resumed search goes on where the budget left
    /// it.
    #[arg(long, value_parser = parse_duration)]
    pub(crate) time_budget: Option<std::time::Duration>,
    /// evolve without some of its parts, to measure what each contributes (an ablation):
    /// growth (networks are not widened towards the budgets), screening (no one-epoch rung:
    /// each generation trains --population networks as drawn), promotion (no longer training of
    /// the best few: the best proxy score wins), pooling (no pooled blocks in the space: the
    /// NanoNAS-shaped seeds downsample by stride instead), fresh
    /// (later generations are all bred, none drawn afresh), calibration (no probe networks
    /// measured before the first generation: it is drawn without latency predictions), seeds (no
    /// NanoNAS- or MobileNet-shaped networks in the first generation), families (plain and
    /// depthwise-separable networks do not each keep a place in every rung, and only the best
    /// proxy score is retrained with the final recipe, not the best of each family; no
    /// MobileNet-shaped seed). Comma-separated.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub(crate) evolve_without: Vec<EvolvePart>,
    /// Seconds a board run may take.
    #[arg(long, default_value_t = 120)]
    pub(crate) timeout: u64,
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    pub(crate) message_format: MessageFormat,
}

/// A part of `evolve` that `--evolve-without` switches off.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EvolvePart {
    Growth,
    Screening,
    Promotion,
    Pooling,
    Fresh,
    Calibration,
    Seeds,
    Families,
}

/// A duration like `45m`, `1h` or `1h30m`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be longer than zero, e.g. 1h".into()),
        Err(e) => Err(format!("{e}: write e.g. 45m, 1h or 1h30m")),
    }
}

/// The search on a pool of `--threads` workers.
pub(crate) fn run(a: SearchArgs) -> anyhow::Result<i32> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads.unwrap_or(0))
        .build()
        .context("cannot start the worker threads")?;
    pool.install(|| search_on_pool(a))
}

fn search_on_pool(a: SearchArgs) -> anyhow::Result<i32> {
    use cargo_tinynas::search::{self, journal::Status, Event};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tinynas_train::fit::Progress;
    let json = a.message_format == MessageFormat::Json;
    let p = a.target.project()?;
    let strategy = a
        .strategy
        .clone()
        .or_else(|| p.config.strategy.clone())
        .unwrap_or_else(|| "nanonas".into());
    let strategy_kind = match strategy.as_str() {
        "nanonas" => search::Strategy::NanoNas,
        "evolve" => search::Strategy::Evolve {
            population: a.population.max(2),
            generations: match (a.generations, a.time_budget) {
                (Some(g), _) => g,
                (None, Some(_)) => search::UNTIL_OUT_OF_TIME,
                (None, None) => 3,
            },
        },
        other => anyhow::bail!("unknown strategy {other:?}: use nanonas or evolve ([package.metadata.tinynas] strategy, or --strategy)"),
    };
    if !a.evolve_without.is_empty() && strategy_kind == search::Strategy::NanoNas {
        eprintln!("error: --evolve-without applies to --strategy evolve only");
        return Ok(exit_codes::USAGE);
    }
    let mut board = a.target.open_board(&p, a.timeout)?;
    let budgets = p.budgets(&board.memory())?;
    let (profile, profile_from) = p.profile()?;
    let link_note = p.link_note();
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
        qat: cargo_tinynas::train::QatPolicy::Auto,
        state_dir: p.dir.join(".tinynas").join("search"),
        firmware_cache: cargo_tinynas::firmware::cache_dir(),
        time_budget: a.time_budget,
        evolve_without: search::Without {
            growth: a.evolve_without.contains(&EvolvePart::Growth),
            screening: a.evolve_without.contains(&EvolvePart::Screening),
            promotion: a.evolve_without.contains(&EvolvePart::Promotion),
            pooling: a.evolve_without.contains(&EvolvePart::Pooling),
            fresh: a.evolve_without.contains(&EvolvePart::Fresh),
            calibration: a.evolve_without.contains(&EvolvePart::Calibration),
            seeds: a.evolve_without.contains(&EvolvePart::Seeds),
            families: a.evolve_without.contains(&EvolvePart::Families),
        },
        profile,
    };
    if !json {
        let how = match strategy_kind {
            search::Strategy::NanoNas => "strategy nanonas".to_string(),
            search::Strategy::Evolve {
                population,
                generations,
            } if generations == search::UNTIL_OUT_OF_TIME => format!(
                "strategy evolve: population {population}, generations until the time budget"
            ),
            search::Strategy::Evolve {
                population,
                generations,
            } => format!(
                "strategy evolve: population {population}, {generations} generation(s) after the first"
            ),
        };
        eprintln!("searching for {} on {} ({how})", p.name, board.name());
        eprintln!("  bench firmware built as this firmware's release build: {profile_from}");
        if let Some(n) = &link_note {
            eprintln!("  note: {n}");
        }
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
    // Latency in the board's unit and, with clock-hz, in ms at that clock (on an emulated board:
    // instructions at one cycle each); sizes in bytes; accuracies on the validation split.
    let unit = board.latency_unit();
    let clock = budgets.clock_hz;
    let latency_head = match clock {
        Some(_) => format!("{:>12} {:>8}", unit.name(), "ms"),
        None => unit.name().to_string(),
    };
    // A latency cell under that heading.
    let lat_cell = |l: u64| match budgets.ms(l) {
        Some(ms) => format!("{l:>12} {ms:>8.2}"),
        None => l.to_string(),
    };
    let header = format!(
        "{:>7} {:>7} {latency_head:>21} {:>11} {:>9} {:>8}  {:<6}  candidate",
        "float", "int8", "SRAM bytes", "flash B", "seconds", "status"
    );
    let outcome = search::run(&settings, board.as_mut(), &stop, |e| match e {
        Event::Started {
            journal,
            resumed,
            samples,
            classes,
        } => {
            if json {
                out!(
                    "{}",
                    serde_json::json!({"reason": "search-started", "journal": journal, "resumed": resumed, "train": samples.0, "val": samples.1, "test": samples.2, "classes": classes, "opt_level": profile.opt_level.name(), "debug": profile.debug.name(), "package_overrides": profile.packages.json(), "link_note": link_note})
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
        Event::Training { .. } => {}
        Event::Calibrating { arch, index, of } => {
            if json {
                out!(
                    "{}",
                    serde_json::json!({"reason": "calibrating", "arch": arch, "index": index, "of": of})
                );
            } else {
                eprintln!(
                    "measuring probe {}/{of} on the board (untrained; teaches the latency predictor every kind of layer): {arch}",
                    index + 1
                );
            }
        }
        Event::Measuring { arch } => {
            if json {
                out!(
                    "{}",
                    serde_json::json!({"reason": "measuring", "arch": arch})
                );
            } else if let Some(b) = &bar {
                b.set_message(format!("measuring {arch} on the board"));
            }
        }
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
                if let Some(ms) = entry.measured.as_ref().and_then(|m| budgets.ms(m.latency)) {
                    v["measured"]["latency_ms"] = ms.into();
                }
                out!("{v}");
                return;
            }
            let pct = |v: Option<f32>| v.map_or("-".to_string(), |a| format!("{:.1}%", 100.0 * a));
            let (lat, sram, flash) =
                entry
                    .measured
                    .as_ref()
                    .map_or(("-".into(), "-".into(), "-".into()), |m| {
                        (
                            lat_cell(m.latency),
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
                Status::Screened => ("screen", None),
            };
            let name = match entry.kind {
                EntryKind::Final => format!("{} (final)", entry.arch),
                EntryKind::Screen => format!("{} (1 epoch)", entry.arch),
                EntryKind::Candidate if entry.epochs != settings.proxy_epochs => {
                    format!("{} ({} epochs)", entry.arch, entry.epochs)
                }
                EntryKind::Candidate => entry.arch.clone(),
            };
            eprintln!(
                "{:>7} {:>7} {lat:>21} {sram:>11} {flash:>9} {:>8.1}  {status:<6}  {name}{}",
                pct(entry.float_val),
                pct(entry.int8_val),
                entry.seconds,
                if resumed { " (from journal)" } else { "" }
            );
            if let (Some(p), Some(m)) = (entry.predicted_latency, &entry.measured) {
                let err = 100.0 * (p as f64 - m.latency as f64) / (m.latency as f64).max(1.0);
                eprintln!("{:>37}  predicted {p} ({err:+.1} %)", "");
            }
            if let Some(why) = why {
                eprintln!("{:>37}  {why}", "");
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
        search::svg(
            &outcome.candidates,
            &outcome.pareto,
            Some(&outcome.winner.arch),
            unit.name(),
        )
        .as_bytes(),
    )
    .with_context(|| format!("cannot write {}", svg.display()))?;
    let f = &outcome.final_entry;
    let generated = if a.no_generate {
        None
    } else {
        let name = p.crate_name();
        // The data folder as the project names it (not this machine's absolute path).
        let data = p
            .config
            .data
            .clone()
            .unwrap_or_else(|| PathBuf::from("data"));
        let card = cargo_tinynas::generate::Card::of_search(
            &outcome,
            &data,
            &board.core(),
            clock,
            settings.profile,
        );
        Some(cargo_tinynas::generate::generate(
            &p.dir.join(&name),
            &name,
            &outcome.model_bytes,
            &card,
            Some(&p.manifest_path),
            a.force,
        )?)
    };
    // How much of each budget the winner uses.
    let shares = f.measured.as_ref().map(|m| {
        let share = |used: u64, of: u64| used as f64 / of.max(1) as f64;
        (
            share(m.peak_sram_bytes, settings.budgets.ram_bytes),
            share(m.flash_bytes, settings.budgets.flash_bytes),
            settings.budgets.latency_cycles.map(|l| share(m.latency, l)),
        )
    });
    let budget_use = shares.map(|(sram, flash, latency)| {
        format!(
            "{:.0} % of the SRAM budget, {:.0} % of the flash budget{}",
            100.0 * sram,
            100.0 * flash,
            latency.map_or(
                " (no latency budget: set max-latency-ms and clock-hz)".into(),
                |l| format!(" and {:.0} % of the latency budget", 100.0 * l)
            )
        )
    });
    // A final's JSON: its entry, with the measured latency in ms when the clock is known.
    let final_json = |f: &Entry| {
        let mut v = serde_json::to_value(f).unwrap_or_default();
        if let Some(ms) = f.measured.as_ref().and_then(|m| budgets.ms(m.latency)) {
            v["measured"]["latency_ms"] = ms.into();
        }
        v
    };
    let other_finals: Vec<_> = outcome.other_finals.iter().map(final_json).collect();
    let final_json = final_json(f);
    if json {
        out!(
            "{}",
            serde_json::json!({
                "reason": "search-finished", "winner": outcome.winner.arch, "final": final_json, "other_finals": other_finals, "candidates": outcome.candidates.len(),
                "screened": outcome.candidates.iter().filter(|e| e.kind == EntryKind::Screen).count(),
                "board": board.name(), "core": board.core(), "stopped_because": outcome.stopped_because,
                "budget_use": shares.map(|(sram, flash, latency)| serde_json::json!({"sram": sram, "flash": flash, "latency": latency})),
                "resumed": outcome.resumed, "pareto": outcome.pareto.iter().map(|e| e.arch.clone()).collect::<Vec<_>>(),
                "pareto_svg": svg, "generated": generated.as_ref().map(|g| g.dir.clone()), "journal": outcome.journal,
                "hint": generated.as_ref().and_then(|_| p.kernel_hint()),
                "peak_rss_bytes": tinynas_train::throughput::peak_rss_bytes(),
                "predictor": outcome.predictor_error().map(|(mean, max)| serde_json::json!({
                    "mean_relative_error": mean, "max_relative_error": max,
                    "candidates": outcome.predictions.len(),
                })),
                "size_predictor": outcome.size_predictor_error().map(|z| serde_json::json!({
                    "candidates": z.candidates,
                    "sram": {"mean_relative_error": z.sram.0, "max_relative_error": z.sram.1},
                    "flash": {"mean_relative_error": z.flash.0, "max_relative_error": z.flash.1},
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
        if let Some(z) = outcome.size_predictor_error() {
            eprintln!(
                "peak SRAM and flash predicted against the board, {} candidates: mean error {:.1} % and {:.1} %, largest {:.1} % and {:.1} %",
                z.candidates,
                100.0 * z.sram.0,
                100.0 * z.flash.0,
                100.0 * z.sram.1,
                100.0 * z.flash.1
            );
        }
        eprintln!(
            "\nPareto front (accuracy vs latency vs peak SRAM), plotted in {}:",
            svg.display()
        );
        eprintln!(
            "  {:>7} {latency_head:>21} {:>11}  candidate",
            "float", "SRAM bytes"
        );
        for e in &outcome.pareto {
            let m = e.measured.as_ref();
            let lat = lat_cell(m.map_or(0, |m| m.latency));
            eprintln!(
                "  {:>6.1}% {lat:>21} {:>11}  {}",
                100.0 * e.float_val.unwrap_or(0.0),
                m.map_or(0, |m| m.peak_sram_bytes),
                e.arch,
            );
        }
        let screened = outcome
            .candidates
            .iter()
            .filter(|e| e.kind == EntryKind::Screen)
            .count();
        let trained = outcome.candidates.len() - screened;
        let among = if screened > 0 {
            format!(
                "{trained} candidates trained and measured, {screened} more screened for one epoch"
            )
        } else {
            format!("{trained} candidates")
        };
        let epochs = |n: usize| {
            if n == 1 {
                "1 epoch".to_string()
            } else {
                format!("{n} epochs")
            }
        };
        eprintln!(
            "winner: {} (best validation accuracy {:.1} % after {} among {among}), retrained for {}:",
            outcome.winner.arch,
            100.0 * outcome.winner.float_val.unwrap_or(0.0),
            epochs(outcome.winner.epochs),
            epochs(f.epochs)
        );
        eprintln!(
            "  float validation {:.1} %, int8 validation {:.1} %, int8 test {:.1} %",
            100.0 * f.float_val.unwrap_or(0.0),
            100.0 * f.int8_val.unwrap_or(0.0),
            100.0 * f.int8_test.unwrap_or(0.0)
        );
        for o in &outcome.other_finals {
            eprintln!(
                "  the other family's best, retrained too: {}: int8 validation {:.1} %, int8 test {:.1} %",
                o.arch,
                100.0 * o.int8_val.unwrap_or(0.0),
                100.0 * o.int8_test.unwrap_or(0.0)
            );
        }
        if let Some(m) = &f.measured {
            let ms = clock.map_or(String::new(), |hz| {
                format!(
                    " (= {})",
                    cargo_tinynas::project::latency_at_clock(m.latency, hz, &m.unit)
                )
            });
            eprintln!(
                "  measured on {} ({}): {} {} per inference{ms}, peak SRAM {} bytes, flash {} bytes",
                m.board, board.core(), m.latency, m.unit, m.peak_sram_bytes, m.flash_bytes
            );
        }
        if let Some(g) = &generated {
            if !g.discarded.is_empty() {
                eprintln!(
                    "--force replaced what had changed since the crate was generated:\n  {}",
                    g.discarded.join("\n  ")
                );
            }
            eprintln!("wrote {}", g.dir.display());
            if let Some(h) = p.kernel_hint() {
                eprintln!("note: {h}");
            }
        }
        if !outcome.stopped_because.is_empty() {
            eprintln!("the search stopped: {}", outcome.stopped_because);
        }
        if let Some(u) = &budget_use {
            eprintln!("the winner uses {u}");
        }
        match &generated {
            Some(g) => eprintln!(
                "next: build the firmware with {} as a dependency (`cargo build --release`), then check it with `cargo tinynas verify`",
                g.dir.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            ),
            None => eprintln!(
                "next: `cargo tinynas generate --model {}` writes the crate of the winner",
                outcome.journal.with_file_name("winner.tnas").display()
            ),
        }
    }
    Ok(if matches!(f.status, Status::Fits) {
        exit_codes::OK
    } else {
        exit_codes::OVER_BUDGET
    })
}
