//! `cargo tinynas bench --kernels`: the six layers Arm's CMSIS-NN was measured on (same shapes and
//! quantisation: int8, NHWC, per-channel weights, input zero point -128, output zero point -3, no
//! activation) through our generated code on each emulated board, in instructions per MAC beside
//! CMSIS-NN's; then whole models (the committed fixtures).
//!
//! Each layer is a one-node model benched with per-layer timing: its figure is the kernel call
//! alone (the first step), not the copy of the output into a `Prediction`. The outputs are checked
//! against the host reference bit for bit, like every bench run.

use std::path::{Path, PathBuf};

use tinynas_model::ir::{Activation, ConvParams, InputType, Op, Padding, QParams, Shape};
use tinynas_model::random::{weights, SplitMix};
use tinynas_model::{Model, ModelBuilder};

use crate::bench::{self, BenchError, Options};
use crate::board::Board;

/// CMSIS-NN v7.0.0 (arm-none-eabi-gcc 12.2 `-Ofast`), each layer through its own dispatcher,
/// measured on QEMU 7.2 with `-icount shift=0` (issue "Kernels tuned per core"): instructions on
/// the Cortex-M4 (DSP) and the Cortex-M55 (Helium).
#[derive(Debug, Clone, Copy)]
pub struct CmsisFigures {
    pub m4: u64,
    pub m55: u64,
}

/// One benchmark layer.
#[derive(Debug, Clone)]
pub struct Layer {
    pub id: &'static str,
    pub what: &'static str,
    pub model: Model,
    /// MACs over every kernel tap, padding included (CMSIS-NN's and TF Lite's count).
    pub macs_all_taps: u64,
    pub cmsis: CmsisFigures,
}

/// What the benchmark measured for one layer or model on one board.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub board: String,
    pub instructions: u64,
    /// MACs inside the input (what `bench` counts).
    pub macs: u64,
    pub macs_all_taps: u64,
    pub cmsis: Option<u64>,
    pub outputs_match: bool,
    pub peak_sram_bytes: u64,
}

fn conv(
    rng: &mut SplitMix,
    input: Shape,
    oc: usize,
    k: usize,
    stride: usize,
    depthwise: bool,
) -> Result<Model, tinynas_model::Error> {
    let in_q = QParams {
        scale: 0.03,
        zero_point: -128,
    };
    let mut b = ModelBuilder::new(InputType::I8, input, in_q)?;
    let (n, fan) = if depthwise {
        (k * k * input.c, k * k)
    } else {
        (oc * k * k * input.c, k * k * input.c)
    };
    let oc = if depthwise { input.c } else { oc };
    let (w, scales, bias, mut q) = weights(rng, n, oc, fan, in_q);
    q.zero_point = -3;
    let conv = ConvParams {
        kernel: [k, k],
        stride,
        padding: Padding::Same,
        activation: Activation::None,
        weights: w,
        weight_scales: scales,
        bias,
    };
    let op = if depthwise {
        Op::DepthwiseConv2d {
            multiplier: 1,
            conv,
        }
    } else {
        Op::Conv2d {
            out_channels: oc,
            conv,
        }
    };
    b.add("layer", op, &[0], q)?;
    b.finish()
}

fn dense(rng: &mut SplitMix, n: usize, o: usize) -> Result<Model, tinynas_model::Error> {
    let in_q = QParams {
        scale: 0.03,
        zero_point: -128,
    };
    let mut b = ModelBuilder::new(InputType::I8, Shape::new(1, 1, n), in_q)?;
    let (w, scales, bias, mut q) = weights(rng, n * o, o, n, in_q);
    q.zero_point = -3;
    let op = Op::FullyConnected {
        out_features: o,
        activation: Activation::None,
        weights: w,
        weight_scales: scales,
        bias,
    };
    b.add("layer", op, &[0], q)?;
    b.finish()
}

/// The six layers (random weights from a fixed seed).
pub fn layers() -> Result<Vec<Layer>, tinynas_model::Error> {
    let mut r = SplitMix(0xC315);
    let cmsis = |m4, m55| CmsisFigures { m4, m55 };
    Ok(vec![
        Layer {
            id: "a",
            what: "conv 1x1, 24x24x32 -> 24x24x64",
            model: conv(&mut r, Shape::new(24, 24, 32), 64, 1, 1, false)?,
            macs_all_taps: 24 * 24 * 64 * 32,
            cmsis: cmsis(3_178_917, 725_067),
        },
        Layer {
            id: "b",
            what: "conv 3x3 s1, 32x32x8 -> 32x32x16",
            model: conv(&mut r, Shape::new(32, 32, 8), 16, 3, 1, false)?,
            macs_all_taps: 32 * 32 * 16 * 9 * 8,
            cmsis: cmsis(3_383_976, 734_638),
        },
        Layer {
            id: "c",
            what: "depthwise 3x3 s1, 24x24x64",
            model: conv(&mut r, Shape::new(24, 24, 64), 64, 3, 1, true)?,
            macs_all_taps: 24 * 24 * 64 * 9,
            cmsis: cmsis(2_886_134, 763_657),
        },
        Layer {
            id: "d",
            what: "depthwise 3x3 s2, 48x48x32 -> 24x24x32",
            model: conv(&mut r, Shape::new(48, 48, 32), 32, 3, 2, true)?,
            macs_all_taps: 24 * 24 * 32 * 9,
            cmsis: cmsis(1_486_550, 446_967),
        },
        Layer {
            id: "e",
            what: "conv 3x3 s2, 96x96x3 -> 48x48x8",
            model: conv(&mut r, Shape::new(96, 96, 3), 8, 3, 2, false)?,
            macs_all_taps: 48 * 48 * 8 * 27,
            cmsis: cmsis(3_063_022, 990_660),
        },
        Layer {
            id: "f",
            what: "fully connected 256 -> 10",
            model: dense(&mut r, 256, 10)?,
            macs_all_taps: 2560,
            cmsis: cmsis(5_518, 1_790),
        },
    ])
}

/// The committed model fixtures, by file name, from this checkout's `tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("fixtures")
}

/// The whole models the benchmark runs: NanoNAS's sample A(8, 3), the all-ops model, a trained
/// depthwise-separable `evolve` model.
pub const FIXTURES: [&str; 3] = ["nanonas-k8-c3.tnas", "all-ops.tnas", "evolve-dw.tnas"];

/// Benches one layer on one board: the kernel call's instructions.
pub fn bench_layer(layer: &Layer, board: &mut dyn Board, cache: &Path) -> Result<Row, BenchError> {
    let bytes = tinynas_model::format::to_bytes(&layer.model);
    let opts = Options {
        inputs: 1,
        per_layer: true,
        ..Options::default()
    };
    let o = bench::run(&bytes, board, &opts, cache, |_| {})?;
    let cmsis = match board.core().as_str() {
        c if c.starts_with("Cortex-M4") => Some(layer.cmsis.m4),
        c if c.starts_with("Cortex-M55") => Some(layer.cmsis.m55),
        _ => None,
    };
    Ok(Row {
        id: layer.id.into(),
        board: board.name(),
        instructions: o.measurement.per_step.first().copied().unwrap_or(0),
        macs: o.model.macs(),
        macs_all_taps: layer.macs_all_taps,
        cmsis,
        outputs_match: o.outputs_match(),
        peak_sram_bytes: o.measurement.peak_sram_bytes(),
    })
}

/// Benches a whole model file on one board.
pub fn bench_model(
    name: &str,
    bytes: &[u8],
    board: &mut dyn Board,
    cache: &Path,
) -> Result<Row, BenchError> {
    let o = bench::run(bytes, board, &Options::default(), cache, |_| {})?;
    let latency = o.measurement.latency.iter().copied().min().unwrap_or(0);
    Ok(Row {
        id: name.into(),
        board: board.name(),
        instructions: latency,
        macs: o.model.macs(),
        macs_all_taps: o.model.macs(),
        cmsis: None,
        outputs_match: o.outputs_match(),
        peak_sram_bytes: o.measurement.peak_sram_bytes(),
    })
}

impl Row {
    pub fn per_mac(&self) -> f64 {
        self.instructions as f64 / self.macs_all_taps.max(1) as f64
    }

    pub fn json(&self, kind: &str) -> serde_json::Value {
        serde_json::json!({
            "reason": "kernel-bench",
            "kind": kind,
            "id": self.id,
            "board": self.board,
            "instructions": self.instructions,
            "macs": self.macs,
            "macs_all_taps": self.macs_all_taps,
            "instructions_per_mac": self.per_mac(),
            "cmsis_nn_instructions": self.cmsis,
            "vs_cmsis_nn": self.cmsis.map(|c| self.instructions as f64 / c as f64),
            "outputs_match_host": self.outputs_match,
            "peak_sram_bytes": self.peak_sram_bytes,
        })
    }
}

fn header(first: &str, boards: &[String]) -> String {
    let mut head = format!("{first:<44} {:>10}", "MACs");
    for b in boards {
        head.push_str(&format!(" {b:>22}"));
    }
    head
}

/// A row of the table: the label, the MACs, and one cell per board.
fn line(
    label: &str,
    macs: u64,
    boards: &[String],
    cell: impl Fn(&str) -> Option<String>,
) -> String {
    let mut line = format!("{label:<44} {macs:>10}");
    for b in boards {
        line.push_str(&format!(" {:>22}", cell(b).unwrap_or_else(|| "-".into())));
    }
    line
}

fn mismatch(r: &Row) -> &'static str {
    if r.outputs_match {
        ""
    } else {
        " MISMATCH"
    }
}

/// The human table: one row per layer, one column group per board.
pub fn table(layers: &[Layer], rows: &[Row], models: &[Row], boards: &[String]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Instructions per MAC (QEMU -icount: instructions executed, not cycles); MACs count every \
         kernel tap, padding included, as CMSIS-NN does. CMSIS-NN v7.0.0 beside ours where it \
         was measured (Cortex-M4, Cortex-M55)."
    );
    let _ = writeln!(s, "{}", header("layer", boards));
    for l in layers {
        let label = format!("{}) {}", l.id, l.what);
        let _ = writeln!(
            s,
            "{}",
            line(&label, l.macs_all_taps, boards, |b| {
                let r = rows.iter().find(|r| r.id == l.id && r.board == b)?;
                Some(match r.cmsis {
                    Some(c) => format!(
                        "{:.2} (CMSIS {:.2}){}",
                        r.per_mac(),
                        c as f64 / r.macs_all_taps as f64,
                        mismatch(r)
                    ),
                    None => format!("{:.2}{}", r.per_mac(), mismatch(r)),
                })
            })
        );
    }
    let _ = writeln!(
        s,
        "\nWhole models, instructions per MAC as `bench` reports them (MACs inside the input):"
    );
    let _ = writeln!(s, "{}", header("model", boards));
    let mut names: Vec<&str> = Vec::new();
    for r in models {
        if !names.contains(&r.id.as_str()) {
            names.push(&r.id);
        }
    }
    for n in names {
        let macs = models.iter().find(|r| r.id == n).map_or(0, |r| r.macs);
        let _ = writeln!(
            s,
            "{}",
            line(n, macs, boards, |b| {
                let r = models.iter().find(|r| r.id == n && r.board == b)?;
                Some(format!("{:.2}{}", r.per_mac(), mismatch(r)))
            })
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_layers_with_the_benchmark_shapes() {
        let l = layers().unwrap();
        assert_eq!(l.len(), 6);
        // MACs counting every tap equal the figures; ours count taps inside the input.
        let all: Vec<u64> = l.iter().map(|l| l.macs_all_taps).collect();
        assert_eq!(
            all,
            [1_179_648, 1_179_648, 331_776, 165_888, 497_664, 2_560]
        );
        for l in &l {
            assert!(l.model.macs() <= l.macs_all_taps, "{}", l.id);
            assert_eq!(l.model.nodes.len(), 1);
            assert_eq!(l.model.input_quant.zero_point, -128);
            assert_eq!(l.model.nodes[0].quant.zero_point, -3);
        }
        // 1x1 and dense layers have no padding: both counts agree.
        assert_eq!(l[0].model.macs(), l[0].macs_all_taps);
        assert_eq!(l[5].model.macs(), l[5].macs_all_taps);
    }

    #[test]
    fn table_shows_cmsis_beside_ours_and_mismatches() {
        let l = layers().unwrap();
        let row = |id: &str, board: &str, ins, cmsis, ok| Row {
            id: id.into(),
            board: board.into(),
            instructions: ins,
            macs: 2_560,
            macs_all_taps: 2_560,
            cmsis,
            outputs_match: ok,
            peak_sram_bytes: 0,
        };
        let rows = [row("f", "qemu-m4", 5_120, Some(5_518), true)];
        let models = [row("m.tnas", "qemu-m4", 25_600, None, false)];
        let t = table(&l, &rows, &models, &["qemu-m4".into()]);
        assert!(t.contains("2.00 (CMSIS 2.16)"), "{t}");
        assert!(t.contains("10.00 MISMATCH"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("a) conv 1x1") && l.ends_with('-')),
            "{t}"
        );
    }
}
