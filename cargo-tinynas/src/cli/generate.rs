//! `cargo tinynas generate`: the model crate the firmware depends on.

use std::path::PathBuf;

use super::MessageFormat;
use anyhow::Context;
use cargo_tinynas::exit_codes;
use clap::Args;

#[derive(Args, Debug)]
pub(crate) struct GenerateArgs {
    /// The model file: `.tnas`, or an int8 TF Lite `.tflite`.
    #[arg(long)]
    pub(crate) model: PathBuf,
    #[command(flatten)]
    pub(crate) target: super::ProjectBoardArgs,
    /// Class names, comma-separated, one per output value, for the crate's `LABELS` (a `.tflite`
    /// file carries none; a `.tnas` file's own names are replaced).
    #[arg(long, value_delimiter = ',')]
    pub(crate) labels: Vec<String>,
    /// Measure the model on the board first, as `verify` does (the configured board, or
    /// --board/--chip), and put the figures on the model card: latency, peak SRAM and flash
    /// with the firmware's opt-level, every output checked against the host. Nothing is written
    /// if the outputs differ (exit 3); over a budget the crate is written and the exit code is 4.
    #[arg(long)]
    pub(crate) measure: bool,
    /// With --measure: the test images to run (from the data set's test split; random images
    /// if it has none).
    #[arg(long, default_value_t = 8, value_parser = super::at_least_one, requires = "measure")]
    pub(crate) images: usize,
    /// With --measure: seconds a board run may take.
    #[arg(long, default_value_t = 120, requires = "measure")]
    pub(crate) timeout: u64,
    /// Architecture named on the model card.
    #[arg(long)]
    pub(crate) arch: Option<String>,
    /// Overwrite files edited since they were generated.
    #[arg(long)]
    pub(crate) force: bool,
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    pub(crate) message_format: MessageFormat,
}

pub(crate) fn run(a: GenerateArgs) -> anyhow::Result<i32> {
    use cargo_tinynas::generate::{self, Card, Measured};
    let json = a.message_format == MessageFormat::Json;
    let p = a.target.project()?;
    let loaded = cargo_tinynas::modelfile::load(&a.model)
        .with_context(|| format!("{} is not a usable model", a.model.display()))?;
    if !json {
        for n in &loaded.notes {
            eprintln!("note: {n}");
        }
    }
    let (mut model, mut bytes) = (loaded.model, loaded.tnas);
    if !a.labels.is_empty() {
        super::set_labels(&mut model, &a.labels)?;
        bytes = tinynas_model::format::to_bytes(&model);
    }
    p.check_model(&model, &a.model.display().to_string())?;
    let name = p.crate_name();
    let mut card = Card {
        arch: a.arch.clone(),
        notes: loaded.notes,
        ..Card::default()
    };
    // Measured before anything is written: a model whose outputs differ on the board is not
    // handed to the firmware.
    let mut over = Vec::new();
    let mut measured_json = serde_json::Value::Null;
    if a.measure {
        let mut board = a.target.open_board(&p, a.timeout)?;
        let budgets = p.budgets(&board.memory())?;
        let Some(run) =
            super::verify::run_in_project(&p, &model, &bytes, board.as_mut(), a.images, json)
                .with_context(|| format!("measuring {}", a.model.display()))?
        else {
            return Ok(exit_codes::NO_BOARD);
        };
        let m = &run.outcome.measurement;
        if !run.outcome.outputs_match() {
            eprintln!(
                "error: on {} {} output values differ from the host interpreter's ({}): nothing was written; please report this with the model file",
                m.board,
                run.outcome.mismatches.len(),
                run.source
            );
            return Ok(exit_codes::MISMATCH);
        }
        let unit = m.unit.name();
        over = budgets.check(m.peak_sram_bytes(), run.flash, run.latency, unit);
        let latency_ms = budgets
            .clock_hz
            .map(|hz| cargo_tinynas::project::latency_at_clock(run.latency, hz, unit));
        let profile = run.outcome.firmware.profile;
        measured_json = serde_json::json!({
            "board": m.board, "inputs": run.source, "opt_level": profile.opt_level.name(),
            "debug": profile.debug.name(), "package_overrides": profile.packages.json(), "latency": run.latency, "unit": unit, "latency_ms": latency_ms,
            "peak_sram_bytes": m.peak_sram_bytes(), "flash_bytes": run.flash, "over_budget": over,
            "link_note": run.link_note,
        });
        if !json {
            eprintln!(
                "measured on {} ({}, {}): latency {} {unit}{}, peak SRAM {} bytes, flash {} bytes; outputs equal the host's",
                m.board,
                run.source,
                profile.describe(),
                run.latency,
                latency_ms.as_ref().map_or(String::new(), |ms| format!(" ({ms})")),
                m.peak_sram_bytes(),
                run.flash
            );
            if let Some(n) = &run.link_note {
                eprintln!("  note: {n}");
            }
        }
        card.measured = Some(Measured {
            board: m.board.clone(),
            core: board.core(),
            date: generate::today(),
            profile,
            latency: run.latency,
            unit: unit.to_string(),
            latency_ms,
            peak_sram: m.peak_sram_bytes(),
            flash: run.flash,
            outputs: format!("device == host, bit for bit ({})", run.source),
        });
    }
    let g = generate::generate(
        &p.dir.join(&name),
        &name,
        &bytes,
        &card,
        Some(&p.manifest_path),
        a.force,
    )?;
    let hint = p.kernel_hint();
    let code = if over.is_empty() {
        exit_codes::OK
    } else {
        exit_codes::OVER_BUDGET
    };
    if json {
        out!(
            "{}",
            serde_json::json!({"reason": "generated", "crate": name, "dir": g.dir, "files": g.files, "dependency_added": g.dependency_added, "discarded": g.discarded, "hint": hint, "notes": card.notes, "measured": measured_json, "exit_code": code})
        );
    } else {
        if let Some(h) = &hint {
            eprintln!("note: {h}");
        }
        if !g.discarded.is_empty() {
            eprintln!(
                "--force replaced what had changed since the crate was generated:\n  {}",
                g.discarded.join("\n  ")
            );
        }
        eprintln!("wrote {} ({})", g.dir.display(), g.files.join(", "));
        if g.dependency_added {
            eprintln!(
                "added {name} to [dependencies] of {}",
                p.manifest_path.display()
            );
        }
        for o in &over {
            eprintln!("over budget: {o}");
        }
    }
    Ok(code)
}
