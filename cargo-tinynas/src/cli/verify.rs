//! `cargo tinynas verify`: the generated crate on the board against the host, and the budgets.

use super::{MessageFormat, ProjectBoardArgs};
use anyhow::Context;
use cargo_tinynas::{board, exit_codes};
use clap::Args;

#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    pub(crate) target: ProjectBoardArgs,
    /// Test images to run (from the data set's test split; random images if it has none).
    #[arg(long, default_value_t = 8, value_parser = super::at_least_one)]
    pub(crate) images: usize,
    /// Seconds a board run may take.
    #[arg(long, default_value_t = 120)]
    pub(crate) timeout: u64,
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    pub(crate) message_format: MessageFormat,
}

pub(crate) fn run(a: VerifyArgs) -> anyhow::Result<i32> {
    let json = a.message_format == MessageFormat::Json;
    let p = a.target.project()?;
    let name = p.crate_name();
    let model_path = p.dir.join(&name).join("src").join("model.tnas");
    let bytes = std::fs::read(&model_path).with_context(|| {
        format!(
            "cannot read {}: run `cargo tinynas search` or `cargo tinynas generate` first",
            model_path.display()
        )
    })?;
    let model =
        tinynas_model::format::read(&bytes).with_context(|| format!("{}", model_path.display()))?;
    p.check_model(&model, &model_path.display().to_string())?;
    let mut board = a.target.open_board(&p, a.timeout)?;
    let budgets = p.budgets(&board.memory())?;
    let Some(run) = run_in_project(&p, &model, &bytes, board.as_mut(), a.images, json)
        .with_context(|| format!("verifying {}", model_path.display()))?
    else {
        return Ok(exit_codes::NO_BOARD);
    };
    let (outcome, source, profile, latency, flash) = (
        &run.outcome,
        &run.source,
        run.outcome.firmware.profile,
        run.latency,
        run.flash,
    );
    let m = &outcome.measurement;
    let over = budgets.check(m.peak_sram_bytes(), flash, latency, m.unit.name());
    let code = if !outcome.outputs_match() {
        exit_codes::MISMATCH
    } else if !over.is_empty() {
        exit_codes::OVER_BUDGET
    } else {
        exit_codes::OK
    };
    if json {
        out!(
            "{}",
            serde_json::json!({
                "reason": "verify", "crate": name, "board": m.board, "inputs": source, "opt_level": profile.opt_level.name(), "debug": profile.debug.name(),
                "package_overrides": profile.packages.json(),
                "outputs_match_host": outcome.outputs_match(), "mismatches": outcome.mismatches.len(),
                "latency": latency, "unit": m.unit.name(), "latency_ms": budgets.ms(latency), "clock_hz": budgets.clock_hz,
                "peak_sram_bytes": m.peak_sram_bytes(), "flash_bytes": flash,
                "budgets": {"ram_bytes": budgets.ram_bytes, "flash_bytes": budgets.flash_bytes, "latency": budgets.latency_cycles},
                "over_budget": over, "link_note": run.link_note, "exit_code": code,
            })
        );
    } else {
        eprintln!(
            "{name} on {}: {source}, built at {}",
            m.board,
            profile.describe()
        );
        if let Some(n) = &run.link_note {
            eprintln!("  note: {n}");
        }
        eprintln!(
            "  outputs: {}",
            if outcome.outputs_match() {
                "device == host, bit for bit".to_string()
            } else {
                format!("{} values differ from the host", outcome.mismatches.len())
            }
        );
        let ms = |l: u64| {
            budgets.clock_hz.map_or(String::new(), |hz| {
                format!(" = {}", cargo_tinynas::project::ms_text(l, hz))
            })
        };
        eprintln!("  latency {latency} {}{} (budget {}), peak SRAM {} bytes (budget {}), flash {flash} bytes (budget {})",
            m.unit.name(), ms(latency), budgets.latency_cycles.map_or("none".into(), |l| format!("{l}{}", ms(l))), m.peak_sram_bytes(), budgets.ram_bytes, budgets.flash_bytes);
        if m.unit == board::LatencyUnit::Instructions && budgets.clock_hz.is_some() {
            eprintln!(
                "  (an emulated board counts instructions: the ms figures take one cycle per instruction at clock-hz)"
            );
        }
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

/// What [`run_in_project`] measured.
pub(crate) struct ProjectRun {
    pub(crate) outcome: cargo_tinynas::bench::Outcome,
    /// Where the inputs came from (`8 test images of data`, `random images`).
    pub(crate) source: String,
    /// The slowest input's latency, in the board's unit.
    pub(crate) latency: u64,
    /// Flash of the bench firmware without its test inputs.
    pub(crate) flash: u64,
    /// Where the firmware's release profile links differently from the bench
    /// ([`cargo_tinynas::project::Project::link_note`]).
    pub(crate) link_note: Option<String>,
}

/// Runs the model (`bytes`, already checked against the project) on `board` as the firmware
/// would: built with the firmware's release profile (`outcome.firmware.profile`), on up to
/// `images` images of the data set's test split (random images when the project has none),
/// every output compared with the host's.
/// `None`: there is no board (QEMU missing, or no debug probe), said on stderr.
pub(crate) fn run_in_project(
    p: &cargo_tinynas::project::Project,
    model: &tinynas_model::Model,
    bytes: &[u8],
    board: &mut dyn board::Board,
    images: usize,
    json: bool,
) -> anyhow::Result<Option<ProjectRun>> {
    let s = model.input_shape;
    let shape = cargo_tinynas::data::ImageShape {
        h: s.h,
        w: s.w,
        c: s.c,
    };
    let mut source = "random images".to_string();
    let mut inputs = cargo_tinynas::bench::random_inputs(model, images, 1);
    if p.data_dir().is_dir() && model.input_type == tinynas_model::InputType::U8 {
        let (mut data, _) = cargo_tinynas::data::load(&p.data_dir(), Some(shape), false)?;
        let sp = cargo_tinynas::data::split::stratified(
            &data.labels,
            &data.assigned,
            0.1,
            0.1,
            p.config.seed.unwrap_or(1),
        );
        let pick: Vec<usize> = sp.test.iter().copied().take(images).collect();
        if !pick.is_empty() {
            let mut buf = Vec::new();
            data.read_batch(&pick, &mut buf)?;
            inputs = buf.chunks(shape.len()).map(<[u8]>::to_vec).collect();
            source = format!("{} test images of {}", pick.len(), p.data_dir().display());
        }
    }
    // Built as the firmware is, as `search` measured it.
    let opts = cargo_tinynas::bench::Options {
        inputs: inputs.len(),
        seed: 1,
        per_layer: false,
        trace: false,
        profile: p.profile()?.0,
        ..Default::default()
    };
    let input_bytes: u64 = inputs.iter().map(|i| i.len() as u64).sum();
    let outcome = match cargo_tinynas::bench::run_with_inputs(
        bytes,
        inputs,
        board,
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
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let m = &outcome.measurement;
    let latency = m.latency.iter().copied().max().unwrap_or(0);
    let flash = m.sizes.flash().saturating_sub(input_bytes);
    Ok(Some(ProjectRun {
        outcome,
        source,
        latency,
        flash,
        link_note: p.link_note(),
    }))
}
