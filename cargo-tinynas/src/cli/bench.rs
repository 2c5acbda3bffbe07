//! `cargo tinynas bench`: a model measured on a board, or the kernel benchmark (`--kernels`).

use std::path::PathBuf;

use super::{parse_target_cpu, MessageFormat};
use anyhow::Context;
use cargo_tinynas::board;
use cargo_tinynas::exit_codes;
use clap::Args;

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// The model file: `.tnas`, or an int8 TF Lite `.tflite`.
    #[arg(long, required_unless_present = "kernels")]
    pub(crate) model: Option<PathBuf>,
    /// The kernel benchmark instead: the six layers CMSIS-NN was measured on, through our
    /// generated code on each of --boards, in instructions per MAC beside CMSIS-NN's; then the
    /// committed fixture models.
    #[arg(long, conflicts_with_all = ["model", "chip", "board"])]
    pub(crate) kernels: bool,
    /// Boards of --kernels, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "qemu-m0-an385,qemu-m4,qemu-m7,qemu-m55"
    )]
    pub(crate) boards: Vec<String>,
    #[command(flatten)]
    pub(crate) on: super::BoardArgs,
    /// With --chip: the `-C target-cpu` your firmware is built with (e.g. cortex-m33), so the
    /// bench runs the kernels your firmware will (on thumbv8m.main the DSP and Helium paths
    /// depend on it). Default: none, as a firmware that names no core.
    #[arg(long, requires = "chip", value_parser = parse_target_cpu)]
    pub(crate) target_cpu: Option<String>,
    /// Time every layer.
    #[arg(long)]
    pub(crate) per_layer: bool,
    /// Check every intermediate tensor too: the firmware reports a CRC-32 of each layer's output
    /// for each input, compared with the host interpreter's (exit 3 if one differs). Hashing on
    /// the device would distort per-layer times, so this is a run of its own.
    #[arg(long, conflicts_with = "per_layer")]
    pub(crate) trace: bool,
    /// The firmware's `opt-level` (`[profile.release]`): code size against speed. Set it to
    /// your firmware's.
    #[arg(long, value_enum, default_value_t = cargo_tinynas::firmware::OptLevel::O3)]
    pub(crate) opt_level: cargo_tinynas::firmware::OptLevel,
    /// The firmware's `debug` (`[profile.release]`: true, false, 0, 1, 2, none, limited, full,
    /// line-tables-only, line-directives-only): LLVM emits slightly other code with debug info.
    /// Set it to your firmware's (cargo's release default is false).
    #[arg(long, default_value = "true", value_parser = parse_debug)]
    pub(crate) debug: cargo_tinynas::firmware::DebugInfo,
    /// Number of random inputs to run.
    #[arg(long, default_value_t = 4)]
    pub(crate) inputs: usize,
    /// Run these inputs instead of random ones (repeat the option): images, or `.bin` files of
    /// the input tensor's bytes, read as `cargo tinynas predict --input` reads them.
    #[arg(long = "input", value_name = "FILE")]
    pub(crate) input_files: Vec<PathBuf>,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Seconds a run may take before it counts as hung.
    #[arg(long, default_value_t = 120)]
    pub(crate) timeout: u64,
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    pub(crate) message_format: MessageFormat,
}

pub(crate) fn kernel_bench(a: &BenchArgs) -> anyhow::Result<i32> {
    use cargo_tinynas::kernel_bench as kb;
    let human = a.message_format == MessageFormat::Human;
    let cache = cargo_tinynas::firmware::cache_dir();
    let layers = kb::layers()?;
    let (mut rows, mut models) = (Vec::new(), Vec::new());
    let mut all_match = true;
    for name in &a.boards {
        let choice = board::BoardChoice::Emulated {
            board: name.clone(),
            chip: None,
        };
        let mut board = board::open(&choice, &a.on.options(a.timeout, None))?;
        for l in &layers {
            if human {
                eprintln!("  {name}: layer {}) {}", l.id, l.what);
            }
            let r = kb::bench_layer(l, board.as_mut(), &cache)
                .with_context(|| format!("layer {} on {name}", l.id))?;
            all_match &= r.outputs_match;
            if !human {
                out!("{}", r.json("layer"));
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
                out!("{}", r.json("model"));
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

pub(crate) fn run(a: BenchArgs) -> anyhow::Result<i32> {
    if a.kernels {
        return kernel_bench(&a);
    }
    let model = a.model.clone().unwrap_or_default();
    let loaded = cargo_tinynas::modelfile::load(&model)
        .with_context(|| format!("{} is not a usable model", model.display()))?;
    if a.message_format == MessageFormat::Human {
        for n in &loaded.notes {
            eprintln!("note: {n}");
        }
    }
    let bytes = loaded.tnas.clone();
    let choice =
        a.on.choice()
            .unwrap_or_else(board::BoardChoice::default_emulated);
    let mut board = board::open(&choice, &a.on.options(a.timeout, a.target_cpu.clone()))?;
    let opts = cargo_tinynas::bench::Options {
        inputs: a.inputs,
        seed: a.seed,
        per_layer: a.per_layer,
        trace: a.trace,
        extra_stack_bytes: 0,
        profile: cargo_tinynas::firmware::Profile {
            opt_level: a.opt_level,
            debug: a.debug,
            packages: Default::default(),
        },
    };
    let human = a.message_format == MessageFormat::Human;
    let progress = |msg: &str| {
        if human {
            eprintln!("  {msg}");
        }
    };
    let cache = cargo_tinynas::firmware::cache_dir();
    let outcome = if a.input_files.is_empty() {
        cargo_tinynas::bench::run(&bytes, board.as_mut(), &opts, &cache, progress)
    } else {
        let inputs = a
            .input_files
            .iter()
            .map(|f| cargo_tinynas::modelfile::input_bytes(&loaded.model, f))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        cargo_tinynas::bench::run_with_inputs(
            &bytes,
            inputs,
            board.as_mut(),
            &opts,
            &cache,
            progress,
        )
    }
    .with_context(|| format!("benching {}", model.display()))?;
    match a.message_format {
        MessageFormat::Json => out!("{}", cargo_tinynas::bench::json(&outcome)),
        MessageFormat::Human => eprint!("{}", cargo_tinynas::bench::table(&outcome)),
    }
    Ok(if outcome.outputs_match() {
        exit_codes::OK
    } else {
        exit_codes::MISMATCH
    })
}

/// `--debug` as a Cargo profile's `debug` is written.
fn parse_debug(v: &str) -> Result<cargo_tinynas::firmware::DebugInfo, String> {
    cargo_tinynas::firmware::DebugInfo::parse(v).ok_or_else(|| {
        format!(
            "{v:?}: give one of {}",
            cargo_tinynas::firmware::DebugInfo::accepted(false)
        )
    })
}
