//! Lowering: a [`Model`] becomes a [`Program`], the exact sequence of kernel calls with every
//! integer parameter computed (dims, padding, multipliers, shifts, offsets, clamps) and every
//! tensor placed in the arena. The code generator emits a program as Rust; the host interpreter in
//! `cargo-tinynas` runs the same program through the same kernels. The parameter types are the
//! kernels' own (`tinynas-kernels`): one definition for the host and the device.

use crate::error::Error;
use crate::ir::{window_output, InputType, Model, Op, QParams, Shape};
use crate::plan::{plan, Location, Plan};
use crate::quant;

use tinynas_kernels::fast::{narrow_channel, padded_k};
pub use tinynas_kernels::{
    AddParams, ConvDims, MeanParams, OutputQuant, PadDims, PoolDims, SoftmaxParams,
};

/// Weights and per-channel requantisation of a conv or dense layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weights {
    pub weights: Vec<i8>,
    /// The model's bias (what the reference kernels take).
    pub bias: Vec<i32>,
    /// `bias + input_offset * sum(weights of the channel)`, wrapping: what the fast kernels take
    /// (see `tinynas_kernels::fast`). For a convolution reading raw `u8` pixels, `input_offset` is
    /// that of the converted int8 input.
    pub folded_bias: Vec<i32>,
    /// The weights as the fast kernel reads them: conv rows zero-padded to
    /// `tinynas_kernels::fast::padded_k` values; the same as `weights` for other layers.
    pub kernel_weights: Vec<i8>,
    /// Every accumulator fits the short requantisation (`tinynas_kernels::fast::narrow_channel`).
    /// Read for convolutions only: dense layers round once, as TF Lite's FULLY_CONNECTED.
    pub narrow: bool,
    /// `|folded bias| + 128 * sum(|w|)` of the widest channel (saturating): no accumulator of the
    /// layer exceeds it (`tinynas_kernels::fast::FastConv::acc_bound`).
    pub acc_bound: u32,
    pub multiplier: Vec<i32>,
    pub shift: Vec<i32>,
    pub quant: OutputQuant,
}

impl Weights {
    /// The layer as the fast kernels take it (what the generated code's static holds).
    pub fn fast(&self, dims: ConvDims) -> tinynas_kernels::fast::FastConv<'_> {
        tinynas_kernels::fast::FastConv {
            weights: &self.kernel_weights,
            bias: &self.folded_bias,
            multiplier: &self.multiplier,
            shift: &self.shift,
            dims,
            quant: self.quant,
            narrow: self.narrow,
            acc_bound: self.acc_bound,
        }
    }
}

/// One kernel call with all its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kernel {
    /// `u8` input to int8 (`x - 128`).
    QuantizeU8,
    Conv2d {
        dims: ConvDims,
        w: Weights,
    },
    DepthwiseConv2d {
        dims: ConvDims,
        w: Weights,
    },
    FullyConnected {
        in_features: usize,
        out_features: usize,
        w: Weights,
    },
    MaxPool2d(PoolDims),
    AvgPool2d(PoolDims),
    GlobalAveragePool(MeanParams),
    Add(AddParams),
    Softmax(SoftmaxParams),
    Pad(PadDims),
    /// Channel concatenation: the channels of each input, in order.
    Concat {
        channels: Vec<usize>,
    },
}

/// A kernel call: where it reads and where it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The node this step computes (`None` for the input conversion).
    pub node: Option<usize>,
    pub kernel: Kernel,
    pub inputs: Vec<Location>,
    /// Always in the arena: `(offset, len)`.
    pub output: (usize, usize),
    /// The kernel's scratch in the arena, `(offset, len)`, if it needs any.
    pub scratch: Option<(usize, usize)>,
}

/// A model lowered to kernel calls over one arena.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub steps: Vec<Step>,
    pub plan: Plan,
    /// Where the logits are after the last step.
    pub output: Location,
}

fn output_quant(x: QParams, y: QParams, act: crate::ir::Activation) -> OutputQuant {
    let (act_min, act_max) = quant::activation_range(act, y);
    OutputQuant {
        input_offset: -x.zero_point,
        output_offset: y.zero_point,
        act_min,
        act_max,
    }
}

pub(crate) fn pads(
    x: Shape,
    k: [usize; 2],
    stride: usize,
    padding: crate::ir::Padding,
) -> (usize, usize) {
    let top = window_output(x.h, k[0], stride, padding).map_or(0, |v| v.1);
    let left = window_output(x.w, k[1], stride, padding).map_or(0, |v| v.1);
    (top, left)
}

/// The geometry of node `i`, a (depthwise) convolution, with the model's whole kernel.
pub fn conv_dims(model: &Model, i: usize, conv: &crate::ir::ConvParams) -> ConvDims {
    let x = model.shape(model.nodes[i].inputs[0]);
    let y = model.nodes[i].shape;
    let (pad_top, pad_left) = pads(x, conv.kernel, conv.stride, conv.padding);
    ConvDims {
        in_h: x.h,
        in_w: x.w,
        in_c: x.c,
        out_h: y.h,
        out_w: y.w,
        out_c: y.c,
        k_h: conv.kernel[0],
        k_w: conv.kernel[1],
        stride: conv.stride,
        pad_top,
        pad_left,
    }
}

/// The taps `lo..hi` along one side of a kernel (`k` taps, `pad` before an input side of `size`,
/// `out` outputs `stride` apart) that read the input for at least one output: tap `t` of output
/// `o` reads input `o * stride + t - pad`, so the taps below `pad - (out - 1) * stride` and from
/// `size + pad` on read only padding. All `k` where that leaves none (a side of 0).
fn used_taps(k: usize, pad: usize, out: usize, stride: usize, size: usize) -> (usize, usize) {
    let Some(last) = out.checked_sub(1) else {
        return (0, k);
    };
    let lo = pad.saturating_sub(last.saturating_mul(stride)).min(k);
    let hi = size.saturating_add(pad).clamp(lo, k);
    if hi == lo {
        (0, k)
    } else {
        (lo, hi)
    }
}

/// The layer with its kernel cut down to the taps that read the input for some output pixel
/// (`used_taps` on each side), the padding before it moved with the cut. The taps cut away
/// multiply only padding, which adds `(x - zero point) * w = 0` to every accumulator: the cut
/// layer computes the same bytes with fewer multiply-accumulates (the kernels multiply the
/// padding too, their bias folded over the whole kernel) and fewer weights in flash. It cuts
/// where the input is smaller than the kernel's reach: a 5x5 layer on a 2x2 map is a 3x3 one
/// (searches pick such layers, which then spent most of their time on padding), any layer on a
/// 1x1 map is a 1x1 one. The same dims for every other layer.
pub fn crop(d: &ConvDims) -> ConvDims {
    let (y0, y1) = used_taps(d.k_h, d.pad_top, d.out_h, d.stride, d.in_h);
    let (x0, x1) = used_taps(d.k_w, d.pad_left, d.out_w, d.stride, d.in_w);
    ConvDims {
        k_h: y1 - y0,
        k_w: x1 - x0,
        pad_top: d.pad_top - y0,
        pad_left: d.pad_left - x0,
        ..*d
    }
}

/// The weights of the taps [`crop`] kept (`cut`) out of the layer's (`full`): `[out][k_h][k_w][in]`
/// for a convolution, `[k_h][k_w][out]` for a depthwise layer (`depthwise`). The taps kept are
/// those from `full.pad_top - cut.pad_top` (rows) and `full.pad_left - cut.pad_left` (columns).
pub fn crop_weights(w: &[i8], full: &ConvDims, cut: &ConvDims, depthwise: bool) -> Vec<i8> {
    if (cut.k_h, cut.k_w) == (full.k_h, full.k_w) {
        return w.to_vec();
    }
    let (y0, x0) = (full.pad_top - cut.pad_top, full.pad_left - cut.pad_left);
    // A tap's run of values: a depthwise tap holds every channel, a convolution's a row of
    // input channels within each output channel's kernel.
    let (groups, run) = if depthwise {
        (1, full.out_c)
    } else {
        (full.out_c, full.in_c)
    };
    let per_group = full.k_h * full.k_w * run;
    let mut out = Vec::with_capacity(groups * cut.k_h * cut.k_w * run);
    for g in 0..groups {
        for ky in y0..y0 + cut.k_h {
            let at = g * per_group + (ky * full.k_w + x0) * run;
            out.extend_from_slice(w.get(at..at + cut.k_w * run).unwrap_or(&[]));
        }
    }
    out
}

/// `sum(f(w))` per output channel (`depthwise`: weights interleaved by channel, `[taps][c]`; else
/// rows, `[c][k]`).
fn channel_sums(w: &[i8], channels: usize, depthwise: bool, f: impl Fn(i8) -> i64) -> Vec<i64> {
    let mut sums = vec![0i64; channels];
    let k = w.len() / channels.max(1);
    for (j, &v) in w.iter().enumerate() {
        let c = if depthwise {
            j % channels.max(1)
        } else {
            j / k.max(1)
        };
        if let Some(s) = sums.get_mut(c) {
            *s += f(v);
        }
    }
    sums
}

/// `sum(|w|)` per output channel (`depthwise`: weights interleaved by channel).
pub fn abs_sums(w: &[i8], channels: usize, depthwise: bool) -> Vec<u64> {
    channel_sums(w, channels, depthwise, |v| i64::from(v.unsigned_abs()))
        .into_iter()
        .map(|s| s as u64)
        .collect()
}

/// `rows` rows of weights, each zero-padded to `kp` values.
pub fn pad_rows(w: &[i8], rows: usize, kp: usize) -> Vec<i8> {
    let k = w.len() / rows.max(1);
    let mut out = vec![0i8; rows * kp];
    for (dst, src) in out.chunks_mut(kp.max(1)).zip(w.chunks(k.max(1))) {
        dst[..k.min(kp)].copy_from_slice(&src[..k.min(kp)]);
    }
    out
}

/// `bias + input_offset * sum(w)` per output channel (wrapping, like the kernels' sums;
/// `depthwise`: weights interleaved by channel).
pub fn fold(w: &[i8], bias: &[i32], input_offset: i32, depthwise: bool) -> Vec<i32> {
    let sums = channel_sums(w, bias.len(), depthwise, i64::from);
    bias.iter()
        .zip(sums)
        .map(|(&b, s)| b.wrapping_add(input_offset.wrapping_mul(s as i32)))
        .collect()
}

/// Lowers a model.
pub fn lower(model: &Model) -> Result<Program, Error> {
    let plan = plan(model);
    let mut steps = Vec::new();
    let arena = |loc: Location| match loc {
        Location::Arena { offset, len } => Some((offset, len)),
        Location::Input => None,
    };
    if model.input_type == InputType::U8 {
        if let Some(out) = arena(plan.locations[0]) {
            steps.push(Step {
                node: None,
                kernel: Kernel::QuantizeU8,
                inputs: vec![Location::Input],
                output: out,
                scratch: None,
            });
        }
    }
    for (i, node) in model.nodes.iter().enumerate() {
        if matches!(node.op, Op::Reshape { .. }) {
            continue; // aliases its input: nothing to run
        }
        let Some(output) = arena(plan.locations[i + 1]) else {
            return Err(Error::node(
                i,
                &node.name,
                "planner left a computed tensor outside the arena",
            ));
        };
        let x = model.shape(node.inputs[0]);
        let xq = model.quant(node.inputs[0]);
        let (y, yq) = (node.shape, node.quant);
        // `depthwise`: weights are `[taps][channels]` (a channel's weights interleaved).
        let weights = |w: &[i8], scales: &[f32], bias: &[i32], act, depthwise: bool| {
            let (multiplier, shift) = quant::per_channel(xq, scales, yq);
            let folded_bias = fold(w, bias, -xq.zero_point, depthwise);
            let sums = abs_sums(w, bias.len(), depthwise);
            let narrow = folded_bias
                .iter()
                .zip(&shift)
                .zip(&sums)
                .all(|((&b, &s), &a)| narrow_channel(b, s, a));
            let acc_bound = folded_bias
                .iter()
                .zip(&sums)
                .map(|(&b, &a)| u64::from(b.unsigned_abs()).saturating_add(a.saturating_mul(128)))
                .max()
                .map_or(u32::MAX, |b| u32::try_from(b).unwrap_or(u32::MAX));
            Weights {
                weights: w.to_vec(),
                bias: bias.to_vec(),
                folded_bias,
                kernel_weights: w.to_vec(),
                narrow,
                acc_bound,
                multiplier,
                shift,
                quant: output_quant(xq, yq, act),
            }
        };
        let kernel = match &node.op {
            Op::Conv2d { conv, .. } | Op::DepthwiseConv2d { conv, .. } => {
                let full = conv_dims(model, i, conv);
                let dims = crop(&full);
                let depthwise = matches!(node.op, Op::DepthwiseConv2d { .. });
                let w = weights(
                    &crop_weights(&conv.weights, &full, &dims, depthwise),
                    &conv.weight_scales,
                    &conv.bias,
                    conv.activation,
                    depthwise,
                );
                if depthwise {
                    Kernel::DepthwiseConv2d { dims, w }
                } else {
                    let mut w = w;
                    w.kernel_weights = pad_rows(&w.weights, w.bias.len(), padded_k(&dims));
                    Kernel::Conv2d { dims, w }
                }
            }
            Op::FullyConnected {
                activation,
                weights: wv,
                weight_scales,
                bias,
                ..
            } => Kernel::FullyConnected {
                in_features: x.elements(),
                out_features: y.elements(),
                w: weights(wv, weight_scales, bias, *activation, false),
            },
            Op::MaxPool2d(p) | Op::AvgPool2d(p) => {
                let (pad_top, pad_left) = pads(x, p.size, p.stride, p.padding);
                let d = PoolDims {
                    in_h: x.h,
                    in_w: x.w,
                    channels: x.c,
                    out_h: y.h,
                    out_w: y.w,
                    k_h: p.size[0],
                    k_w: p.size[1],
                    stride: p.stride,
                    pad_top,
                    pad_left,
                };
                if matches!(node.op, Op::MaxPool2d(_)) {
                    Kernel::MaxPool2d(d)
                } else {
                    Kernel::AvgPool2d(d)
                }
            }
            Op::GlobalAveragePool | Op::Mean => {
                let n = x.h * x.w;
                let (multiplier, shift) = if node.op == Op::Mean {
                    quant::tflite_mean_multiplier(xq, yq, n)
                        .map_err(|m| Error::node(i, &node.name, m))?
                } else {
                    quant::mean_multiplier(xq, yq, n)
                };
                Kernel::GlobalAveragePool(MeanParams {
                    h: x.h,
                    w: x.w,
                    channels: x.c,
                    multiplier,
                    shift,
                    input_offset: -xq.zero_point,
                    output_offset: yq.zero_point,
                })
            }
            Op::Add { activation } => {
                let bq = model.quant(node.inputs[1]);
                let a = quant::add_scales(xq, bq, yq);
                let (act_min, act_max) = quant::activation_range(*activation, yq);
                Kernel::Add(AddParams {
                    input1_offset: -xq.zero_point,
                    input2_offset: -bq.zero_point,
                    output_offset: yq.zero_point,
                    left_shift: a.left_shift,
                    input1_multiplier: a.input1_multiplier,
                    input1_shift: a.input1_shift,
                    input2_multiplier: a.input2_multiplier,
                    input2_shift: a.input2_shift,
                    output_multiplier: a.output_multiplier,
                    output_shift: a.output_shift,
                    act_min,
                    act_max,
                })
            }
            Op::Softmax { beta } => {
                let p = quant::softmax_params(*beta, xq).ok_or_else(|| {
                    Error::node(i, &node.name, "softmax beta x input scale is too small")
                })?;
                Kernel::Softmax(SoftmaxParams {
                    depth: y.c,
                    rows: y.h * y.w,
                    input_multiplier: p.input_multiplier,
                    input_left_shift: p.input_left_shift,
                    diff_min: p.diff_min,
                })
            }
            Op::Pad {
                top, left, value, ..
            } => Kernel::Pad(PadDims {
                in_h: x.h,
                in_w: x.w,
                channels: x.c,
                out_h: y.h,
                out_w: y.w,
                pad_top: *top,
                pad_left: *left,
                value: *value,
            }),
            Op::Concat => Kernel::Concat {
                channels: node.inputs.iter().map(|&t| model.shape(t).c).collect(),
            },
            Op::Reshape { .. } => continue,
        };
        let inputs = node.inputs.iter().map(|&t| plan.locations[t]).collect();
        steps.push(Step {
            node: Some(i),
            kernel,
            inputs,
            output,
            scratch: plan.scratch[i],
        });
    }
    let output = plan.locations[model.output()];
    Ok(Program {
        steps,
        plan,
        output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Padding;
    use crate::random::Source;
    use proptest::prelude::*;
    use tinynas_kernels::{conv2d as ref_conv2d, depthwise_conv2d as ref_depthwise, Conv};

    fn dims(side: (usize, usize), k: (usize, usize), stride: usize, pad: Padding) -> ConvDims {
        let (oh, pt) = window_output(side.0, k.0, stride, pad).unwrap();
        let (ow, pl) = window_output(side.1, k.1, stride, pad).unwrap();
        ConvDims {
            in_h: side.0,
            in_w: side.1,
            in_c: 3,
            out_h: oh,
            out_w: ow,
            out_c: 5,
            k_h: k.0,
            k_w: k.1,
            stride,
            pad_top: pt,
            pad_left: pl,
        }
    }

    #[test]
    fn crop_keeps_the_taps_that_read_the_input() {
        let cut = |side, k, stride, pad| {
            let c = crop(&dims(side, k, stride, pad));
            (c.k_h, c.k_w, c.pad_top, c.pad_left)
        };
        // A 5x5 kernel on a 2x2 map (padding 2 before): taps 1..4 of each side.
        assert_eq!(cut((2, 2), (5, 5), 1, Padding::Same), (3, 3, 1, 1));
        // Any kernel on a 1x1 map: its centre tap.
        assert_eq!(cut((1, 1), (3, 3), 1, Padding::Same), (1, 1, 0, 0));
        assert_eq!(cut((1, 1), (5, 5), 2, Padding::Same), (1, 1, 0, 0));
        // One side only: 2 rows, 8 columns.
        assert_eq!(cut((2, 8), (5, 5), 1, Padding::Same), (3, 5, 1, 2));
        // Every tap reads the input for some output: unchanged.
        assert_eq!(cut((2, 2), (3, 3), 1, Padding::Same), (3, 3, 1, 1));
        assert_eq!(cut((4, 4), (5, 5), 2, Padding::Same), (5, 5, 1, 1));
        assert_eq!(cut((8, 8), (5, 5), 1, Padding::Valid), (5, 5, 0, 0));
        assert_eq!(cut((32, 32), (3, 3), 2, Padding::Same), (3, 3, 0, 0));
    }

    #[test]
    fn the_lowering_cuts_a_kernel_that_overhangs_its_map() {
        use crate::ir::{Activation, ConvParams, ModelBuilder};
        let q = QParams {
            scale: 0.1,
            zero_point: 3,
        };
        let conv = |k: usize, ic: usize, oc: usize| Op::Conv2d {
            out_channels: oc,
            conv: ConvParams {
                kernel: [k, k],
                stride: 1,
                padding: Padding::Same,
                activation: Activation::None,
                weights: (0..oc * k * k * ic)
                    .map(|i| (i % 200) as i32 - 100)
                    .map(|v| v as i8)
                    .collect(),
                weight_scales: vec![0.01; oc],
                bias: vec![7; oc],
            },
        };
        let mut b = ModelBuilder::new(InputType::I8, Shape::new(2, 2, 3), q).unwrap();
        let t = b.add("five", conv(5, 3, 4), &[0], q).unwrap();
        b.add("three", conv(3, 4, 2), &[t], q).unwrap();
        let model = b.finish().unwrap();
        let cut: Vec<_> = lower(&model)
            .unwrap()
            .steps
            .iter()
            .filter_map(|s| match &s.kernel {
                Kernel::Conv2d { dims, w } => Some(((dims.k_h, dims.k_w), w.weights.len())),
                _ => None,
            })
            .collect();
        // The 5x5 kernel on a 2x2 map runs as its middle 3x3; a 3x3 one there keeps every tap.
        assert_eq!(cut, [((3, 3), 4 * 9 * 3), ((3, 3), 2 * 9 * 4)]);
        assert_eq!(
            model.node_param_bytes(0),
            model.nodes[0].param_bytes() - 4 * 16 * 3
        );
        assert_eq!(model.node_param_bytes(1), model.nodes[1].param_bytes());
    }

    proptest! {
        /// The cut layer computes the same bytes as the whole one, by the reference kernels (the
        /// oracle the fast ones are tested against), for convolutions and depthwise layers on
        /// maps smaller and larger than their kernels.
        #[test]
        fn a_cut_layer_computes_the_same_bytes(
            ih in 1usize..=6, iw in 1usize..=6, kh in 1usize..=5, kw in 1usize..=5,
            stride in 1usize..=2, same in any::<bool>(), depthwise in any::<bool>(),
            in_c in 1usize..=4, oc in 1usize..=4, seed in any::<u64>(),
            zero_point in -128i32..=127,
        ) {
            let pad = if same { Padding::Same } else { Padding::Valid };
            prop_assume!(window_output(ih, kh, stride, pad).is_some_and(|o| o.0 > 0));
            prop_assume!(window_output(iw, kw, stride, pad).is_some_and(|o| o.0 > 0));
            let mut full = dims((ih, iw), (kh, kw), stride, pad);
            full.in_c = in_c;
            full.out_c = if depthwise { in_c } else { oc };
            let mut rng = crate::random::SplitMix(seed);
            let mut bytes = |n: usize| -> Vec<i8> { (0..n).map(|_| rng.int(-128, 127) as i8).collect() };
            let per_tap = if depthwise { full.out_c } else { full.out_c * in_c };
            let weights = bytes(kh * kw * per_tap);
            let input = bytes(ih * iw * in_c);
            let bias: Vec<i32> = (0..full.out_c as i32).map(|c| c * 1000 - 1500).collect();
            let multiplier = vec![1_518_500_250; full.out_c];
            let shift = vec![-7; full.out_c];
            let quant = OutputQuant { input_offset: -zero_point, output_offset: 3, act_min: -128, act_max: 127 };
            let run = |d: ConvDims, w: &[i8]| {
                let p = Conv { weights: w, bias: &bias, multiplier: &multiplier, shift: &shift, dims: d, quant };
                let mut y = vec![0i8; d.out_h * d.out_w * d.out_c];
                if depthwise { ref_depthwise(&input, &mut y, &p) } else { ref_conv2d(&input, &mut y, &p) }
                y
            };
            let cut = crop(&full);
            let w = crop_weights(&weights, &full, &cut, depthwise);
            prop_assert_eq!(w.len(), cut.k_h * cut.k_w * per_tap);
            prop_assert_eq!(run(cut, &w), run(full, &weights), "{:?} -> {:?}", full, cut);
        }
    }
}
