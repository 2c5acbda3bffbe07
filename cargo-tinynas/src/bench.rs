//! `cargo tinynas bench`: build the bench firmware for a board, run it, check the device's outputs
//! against the host reference bit for bit, and report latency, SRAM and flash, per layer when asked.

use std::path::Path;

use tinynas_model::lower::Program;
use tinynas_model::plan::Location;
use tinynas_model::random::{Source, SplitMix};
use tinynas_model::{InputType, Model};

use crate::board::{Board, Measurement};
use crate::firmware::{self, Firmware, Spec};
use tinynas_model::host::{HostModel, Input};

/// What to bench.
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of random inputs (embedded in flash).
    pub inputs: usize,
    pub seed: u64,
    pub per_layer: bool,
    /// Check every intermediate tensor: the firmware reports a CRC-32 of each kernel call's
    /// output for each input, compared with the host interpreter's (a separate firmware build;
    /// hashing on the device would distort `per_layer` timing, so the two do not mix).
    pub trace: bool,
    /// A buffer of this many bytes added to the stack around the model (for testing).
    pub extra_stack_bytes: usize,
    /// The firmware's `opt-level` and `debug`.
    pub profile: crate::firmware::Profile,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            inputs: 4,
            seed: 1,
            per_layer: false,
            trace: false,
            extra_stack_bytes: 0,
            profile: crate::firmware::Profile::default(),
        }
    }
}

/// Everything a bench run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub model: Model,
    pub program: Program,
    pub firmware: Firmware,
    pub measurement: Measurement,
    pub inputs: Vec<Vec<u8>>,
    pub host_outputs: Vec<Vec<i8>>,
    /// (input, output index) of every value where the device and the host differ.
    pub mismatches: Vec<(usize, usize)>,
    /// With [`Options::trace`]: (input, kernel call) of every intermediate tensor whose CRC-32
    /// on the device differs from the host's.
    pub trace_mismatches: Vec<(usize, usize)>,
    /// With [`Options::trace`]: the number of intermediate tensors compared (inputs x calls).
    pub traced_tensors: usize,
}

impl Outcome {
    pub fn outputs_match(&self) -> bool {
        self.mismatches.is_empty() && self.trace_mismatches.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Model(#[from] tinynas_model::Error),
    #[error(transparent)]
    Firmware(#[from] firmware::FirmwareError),
    #[error(transparent)]
    Board(#[from] crate::board::BoardError),
    #[error(transparent)]
    Host(#[from] tinynas_model::host::RunError),
    #[error("bench inputs must be one or more images of {0} bytes each")]
    Inputs(usize),
    #[error("the firmware's trace does not fit the model: {0}")]
    Trace(String),
    #[error("the stack used all {size} bytes of RAM the board leaves it after the statics ({statics} bytes, the model's arena included): it overflowed into them, so neither the outputs nor the figures can be trusted; the model needs more RAM than this board has (a smaller model, or a board or chip with more RAM)")]
    StackOverflow { size: u64, statics: u64 },
}

impl BenchError {
    /// Why this model cannot be measured on this board, where that is the model's doing and
    /// not the tool's or the machine's: its firmware does not fit the board's memory (the link
    /// fails, or its stack overflows at run time), or its run does not finish in time. A search
    /// rejects such a candidate and goes on; every other error stops it.
    pub fn unmeasurable(&self) -> Option<String> {
        match self {
            BenchError::Firmware(firmware::FirmwareError::Build {
                overflow: Some(o),
                target,
                ..
            }) => Some(format!(
                "its firmware does not fit the board ({target}: {o})"
            )),
            BenchError::Board(crate::board::BoardError::Timeout { seconds, .. }) => Some(format!(
                "its firmware did not finish within {seconds} s on the board"
            )),
            BenchError::StackOverflow { size, .. } => Some(format!(
                "its stack overflowed the {size} bytes of RAM the board leaves after the statics"
            )),
            BenchError::Board(crate::board::BoardError::Report(
                crate::report::ReportError::Fault(f),
            )) if f.contains("stack overflow") => {
                Some(format!("its stack overflowed the board's RAM ({f})"))
            }
            _ => None,
        }
    }
}

/// Seeded random inputs for a model (raw bytes; `i8` models read them as `i8`).
pub fn random_inputs(model: &Model, n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut r = SplitMix(seed);
    let len = model.input_shape.elements();
    (0..n)
        .map(|_| (0..len).map(|_| r.next_u64() as u8).collect())
        .collect()
}

/// The host reference outputs for raw inputs.
pub fn host_outputs(model: &Model, inputs: &[Vec<u8>]) -> Result<Vec<Vec<i8>>, BenchError> {
    let host = HostModel::new(model)?;
    inputs
        .iter()
        .map(|x| {
            Ok(match model.input_type {
                InputType::U8 => host.run(Input::U8(x))?,
                InputType::I8 => {
                    host.run(Input::I8(&x.iter().map(|&b| b as i8).collect::<Vec<_>>()))?
                }
            })
        })
        .collect()
}

/// Builds the firmware for `board`, runs it on `opts.inputs` seeded random inputs, and compares
/// with the host.
pub fn run(
    model_bytes: &[u8],
    board: &mut dyn Board,
    opts: &Options,
    cache: &Path,
    progress: impl FnMut(&str),
) -> Result<Outcome, BenchError> {
    let model = tinynas_model::format::read(model_bytes)?;
    let inputs = random_inputs(&model, opts.inputs.max(1), opts.seed);
    run_with_inputs(model_bytes, inputs, board, opts, cache, progress)
}

/// Like [`run`] on given inputs (raw bytes of the model's input length each), e.g. test images.
pub fn run_with_inputs(
    model_bytes: &[u8],
    inputs: Vec<Vec<u8>>,
    board: &mut dyn Board,
    opts: &Options,
    cache: &Path,
    mut progress: impl FnMut(&str),
) -> Result<Outcome, BenchError> {
    let model = tinynas_model::format::read(model_bytes)?;
    let program = tinynas_model::lower::lower(&model)?;
    let len = model.input_shape.elements();
    if inputs.is_empty() || inputs.iter().any(|i| i.len() != len) {
        return Err(BenchError::Inputs(len));
    }
    let spec = Spec {
        model_bytes,
        model: &model,
        inputs: &inputs,
        target: board.target(),
        target_cpu: board.target_cpu(),
        memory: board.bench_memory(inputs.iter().map(|i| i.len() as u64).sum()),
        timer: board.timer(),
        unlock_dwt: board.unlock_dwt(),
        per_layer: opts.per_layer && !opts.trace,
        trace: opts.trace,
        extra_stack_bytes: opts.extra_stack_bytes,
        profile: opts.profile,
    };
    progress(&format!(
        "building the bench firmware for {} ({})",
        board.name(),
        board.target()
    ));
    let fw = firmware::build(&spec, cache)?;
    progress(&format!("running on {}", board.name()));
    let measurement = board.run(&fw)?;
    // Painted to its very bottom: the stack ran into the statics below it.
    if measurement.stack_size_bytes > 0
        && measurement.stack_peak_bytes >= measurement.stack_size_bytes
    {
        return Err(BenchError::StackOverflow {
            size: measurement.stack_size_bytes,
            statics: fw.sizes.static_ram(),
        });
    }
    let host = host_outputs(&model, &inputs)?;
    let mut mismatches = Vec::new();
    for (i, (d, h)) in measurement.outputs.iter().zip(&host).enumerate() {
        for (j, (a, b)) in d.iter().zip(h).enumerate() {
            if a != b {
                mismatches.push((i, j));
            }
        }
    }
    let (mut trace_mismatches, mut traced_tensors) = (Vec::new(), 0);
    if opts.trace {
        let hm = tinynas_model::host::HostModel::new(&model)?;
        if measurement.traces.len() != inputs.len() {
            return Err(BenchError::Trace(format!(
                "the firmware traced {} inputs of {}",
                measurement.traces.len(),
                inputs.len()
            )));
        }
        for (i, (x, device)) in inputs.iter().zip(&measurement.traces).enumerate() {
            let steps = match model.input_type {
                tinynas_model::InputType::U8 => hm.run_steps(tinynas_model::host::Input::U8(x))?,
                tinynas_model::InputType::I8 => {
                    let v: Vec<i8> = x.iter().map(|&b| b as i8).collect();
                    hm.run_steps(tinynas_model::host::Input::I8(&v))?
                }
            };
            if steps.len() != device.len() {
                return Err(BenchError::Trace(format!(
                    "the firmware traced {} kernel calls, the host ran {}",
                    device.len(),
                    steps.len()
                )));
            }
            for (s, (y, &crc)) in steps.iter().zip(device).enumerate() {
                let bytes: Vec<u8> = y.iter().map(|&v| v as u8).collect();
                traced_tensors += 1;
                if crc32fast::hash(&bytes) != crc {
                    trace_mismatches.push((i, s));
                }
            }
        }
    }
    Ok(Outcome {
        model,
        program,
        firmware: fw,
        measurement,
        inputs,
        host_outputs: host,
        mismatches,
        trace_mismatches,
        traced_tensors,
    })
}

/// One row per kernel call: what it is and what it cost.
fn layers(o: &Outcome) -> Vec<serde_json::Value> {
    let m = &o.measurement;
    o.program
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let (name, op, shape, macs) = match step.node {
                Some(n) => {
                    let node = &o.model.nodes[n];
                    (
                        node.name.clone(),
                        node.op.kind().to_string(),
                        node.shape,
                        node.macs,
                    )
                }
                None => ("input".into(), "QuantizeU8".into(), o.model.input_shape, 0),
            };
            let latency = m.per_step.get(i).copied();
            serde_json::json!({
                "step": i,
                "name": name,
                "op": op,
                "output_shape": [shape.h, shape.w, shape.c],
                "macs": macs,
                "latency": latency,
                "latency_per_mac": latency.filter(|_| macs > 0).map(|l| l as f64 / macs as f64),
                "activation_bytes": step.output.1,
            })
        })
        .collect()
}

/// The JSON report (one object; `--message-format json` prints it on one line).
pub fn json(o: &Outcome) -> serde_json::Value {
    let m = &o.measurement;
    let s = &m.sizes;
    let macs = o.model.macs();
    let lat_min = m.latency.iter().copied().min().unwrap_or(0);
    let lat_max = m.latency.iter().copied().max().unwrap_or(0);
    let unit = m.unit.name();
    let input_bytes = match o.program.plan.locations.first() {
        Some(Location::Arena { len, .. }) => *len,
        _ => 0,
    };
    serde_json::json!({
        "reason": "bench-report",
        "board": m.board,
        "core": m.core,
        "target": o.firmware.target,
        "opt_level": o.firmware.profile.opt_level.name(),
        "debug": o.firmware.profile.debug.name(),
        "package_overrides": o.firmware.profile.packages.json(),
        // For people who want to disassemble or profile it (benchmarks/profile-firmware.py).
        "firmware": o.firmware.elf,
        "latency_unit": unit,
        "latency": { "per_input": m.latency, "min": lat_min, "max": lat_max },
        unit: lat_min,
        "macs": macs,
        "latency_per_mac": if macs > 0 { Some(lat_min as f64 / macs as f64) } else { None },
        "outputs_match_host": o.outputs_match(),
        "mismatched_values": o.mismatches.len(),
        "traced_tensors": o.traced_tensors,
        "mismatched_tensors": o.trace_mismatches.iter().map(|&(i, s)| serde_json::json!({"input": i, "step": s})).collect::<Vec<_>>(),
        "inputs": o.inputs.len(),
        "peak_sram_bytes": m.peak_sram_bytes(),
        "sram": {
            "static_bytes": s.static_ram(),
            "arena_bytes": m.arena_bytes,
            "arena_floor_bytes": o.program.plan.live_peak_bytes,
            "arena_input_copy_bytes": input_bytes,
            "other_static_bytes": s.static_ram().saturating_sub(m.arena_bytes + s.bench_buffers),
            "bench_buffer_bytes": s.bench_buffers,
            "stack_peak_bytes": m.stack_peak_bytes,
            "stack_size_bytes": m.stack_size_bytes,
            "data_bytes": s.data,
            "bss_bytes": s.bss + s.uninit,
        },
        "flash_bytes": s.flash(),
        "flash": {
            "text_bytes": s.text,
            "rodata_bytes": s.rodata,
            "data_bytes": s.data,
            "vector_table_bytes": s.vector_table,
            "model_param_bytes": o.model.param_bytes(),
            "bench_input_bytes": o.inputs.iter().map(Vec::len).sum::<usize>(),
        },
        "layers": layers(o),
    })
}

/// The human report: a table in the spirit of STM32Cube.AI's analyze report.
pub fn table(o: &Outcome) -> String {
    use std::fmt::Write;
    let j = json(o);
    let m = &o.measurement;
    let unit = m.unit.name();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "board {} ({}, {}, {}); latency in {unit}{}",
        m.board,
        m.core,
        o.firmware.target,
        o.firmware.profile.describe(),
        if unit == "instructions" {
            " executed (emulator: not cycles)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "{:>4}  {:<28} {:<18} {:>10} {:>10} {:>12} {:>9} {:>9}",
        "#", "name", "op", "output", "MACs", unit, "per MAC", "act bytes"
    );
    for l in j["layers"].as_array().into_iter().flatten() {
        let shape = l["output_shape"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join("x")
            })
            .unwrap_or_default();
        let lat = l["latency"].as_u64().map_or("-".into(), |v| v.to_string());
        let per = l["latency_per_mac"]
            .as_f64()
            .map_or("-".into(), |v| format!("{v:.2}"));
        let _ = writeln!(
            s,
            "{:>4}  {:<28} {:<18} {:>10} {:>10} {:>12} {:>9} {:>9}",
            l["step"].to_string(),
            crate::inspect::fit_name(l["name"].as_str().unwrap_or(""), crate::inspect::NAME_WIDTH),
            l["op"].as_str().unwrap_or(""),
            shape,
            l["macs"].to_string(),
            lat,
            per,
            l["activation_bytes"].to_string()
        );
    }
    let lat = &j["latency"];
    let _ = writeln!(
        s,
        "latency:     {} {unit} per inference (min over {} inputs; max {}), {} MACs, {} {unit}/MAC",
        lat["min"],
        o.inputs.len(),
        lat["max"],
        j["macs"],
        j["latency_per_mac"]
            .as_f64()
            .map_or("-".into(), |v| format!("{v:.2}"))
    );
    let sr = &j["sram"];
    let _ = writeln!(
        s,
        "peak SRAM:   {} bytes = arena {} (liveness floor {}) + other statics {} + stack peak {}; not counted: the bench's result buffers, {} bytes",
        j["peak_sram_bytes"],
        sr["arena_bytes"],
        sr["arena_floor_bytes"],
        sr["other_static_bytes"],
        sr["stack_peak_bytes"],
        sr["bench_buffer_bytes"]
    );
    let f = &j["flash"];
    let _ = writeln!(s, "flash:       {} bytes = code {} + read-only data {} (model parameters {}, bench inputs {}) + data {} + vectors {}",
        j["flash_bytes"], f["text_bytes"], f["rodata_bytes"], f["model_param_bytes"], f["bench_input_bytes"], f["data_bytes"], f["vector_table_bytes"]);
    let _ = writeln!(
        s,
        "outputs:     {}",
        if o.mismatches.is_empty() {
            format!(
                "device == host reference, bit for bit ({} inputs x {} values)",
                o.inputs.len(),
                o.model.classes()
            )
        } else {
            format!(
                "MISMATCH: {} values differ from the host reference (first at input {}, value {})",
                o.mismatches.len(),
                o.mismatches[0].0,
                o.mismatches[0].1
            )
        }
    );
    if o.traced_tensors > 0 {
        let _ = writeln!(
            s,
            "tensors:     {}",
            match o.trace_mismatches.first() {
                None => format!(
                    "every intermediate tensor == host reference, bit for bit ({} inputs x {} kernel calls, by CRC-32)",
                    o.inputs.len(),
                    o.traced_tensors / o.inputs.len().max(1)
                ),
                Some(&(i, st)) => format!(
                    "MISMATCH: {} of {} intermediate tensors differ from the host's (first: input {i}, kernel call {st})",
                    o.trace_mismatches.len(),
                    o.traced_tensors
                ),
            }
        );
    }
    s
}
