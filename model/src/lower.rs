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
        let conv_dims = |k: [usize; 2], stride: usize, pad: (usize, usize)| ConvDims {
            in_h: x.h,
            in_w: x.w,
            in_c: x.c,
            out_h: y.h,
            out_w: y.w,
            out_c: y.c,
            k_h: k[0],
            k_w: k[1],
            stride,
            pad_top: pad.0,
            pad_left: pad.1,
        };
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
                let dims = conv_dims(
                    conv.kernel,
                    conv.stride,
                    pads(x, conv.kernel, conv.stride, conv.padding),
                );
                let depthwise = matches!(node.op, Op::DepthwiseConv2d { .. });
                let w = weights(
                    &conv.weights,
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
