use super::{at, clamp_i8, put, OutputQuant};
use crate::fixed::{multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_once};

/// Geometry of a (depthwise) convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvDims {
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub out_c: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

impl ConvDims {
    /// The input row (column) that tap `k` of output row (column) `o` reads, with the padding
    /// `pad` before an input side of `size`, if it is inside the input.
    #[inline(always)]
    pub(crate) fn tap(&self, o: usize, k: usize, pad: usize, size: usize) -> Option<usize> {
        (o * self.stride + k).checked_sub(pad).filter(|&i| i < size)
    }
}

/// Weights and requantisation of a (depthwise) convolution.
#[derive(Debug, Clone, Copy)]
pub struct Conv<'a> {
    /// Conv2d: `[out_c][k_h][k_w][in_c]`; depthwise: `[k_h][k_w][out_c]`.
    pub weights: &'a [i8],
    pub bias: &'a [i32],
    /// Per output channel fixed-point multiplier and shift.
    pub multiplier: &'a [i32],
    pub shift: &'a [i32],
    pub dims: ConvDims,
    pub quant: OutputQuant,
}

impl Conv<'_> {
    #[inline]
    fn requantize(&self, acc: i32, oc: usize) -> i8 {
        let m = self.multiplier.get(oc).copied().unwrap_or(0);
        let s = self.shift.get(oc).copied().unwrap_or(0);
        let q = &self.quant;
        let v = multiply_by_quantized_multiplier(acc, m, s).wrapping_add(q.output_offset);
        clamp_i8(v, q.act_min, q.act_max)
    }
}

/// 2-D convolution (TFLM `reference_integer_ops::ConvPerChannel`): for each output,
/// `bias + sum((x + input_offset) * w)` over the taps inside the input, requantised per channel.
pub fn conv2d(input: &[i8], output: &mut [i8], p: &Conv<'_>) {
    let d = p.dims;
    for oy in 0..d.out_h {
        for ox in 0..d.out_w {
            for oc in 0..d.out_c {
                let mut acc = p.bias.get(oc).copied().unwrap_or(0);
                for ky in 0..d.k_h {
                    let Some(iy) = d.tap(oy, ky, d.pad_top, d.in_h) else {
                        continue;
                    };
                    for kx in 0..d.k_w {
                        let Some(ix) = d.tap(ox, kx, d.pad_left, d.in_w) else {
                            continue;
                        };
                        let x_base = (iy * d.in_w + ix) * d.in_c;
                        let w_base = ((oc * d.k_h + ky) * d.k_w + kx) * d.in_c;
                        for ic in 0..d.in_c {
                            let x = at(input, x_base + ic).wrapping_add(p.quant.input_offset);
                            let w = at(p.weights, w_base + ic);
                            acc = acc.wrapping_add(x.wrapping_mul(w));
                        }
                    }
                }
                put(
                    output,
                    (oy * d.out_w + ox) * d.out_c + oc,
                    p.requantize(acc, oc),
                );
            }
        }
    }
}

/// Depthwise convolution (TFLM `reference_integer_ops::DepthwiseConvPerChannel`): output channel
/// `ic * multiplier + m` filters input channel `ic` alone.
pub fn depthwise_conv2d(input: &[i8], output: &mut [i8], p: &Conv<'_>) {
    let d = p.dims;
    let multiplier = d.out_c.checked_div(d.in_c).unwrap_or(0);
    for oy in 0..d.out_h {
        for ox in 0..d.out_w {
            for ic in 0..d.in_c {
                for m in 0..multiplier {
                    let oc = ic * multiplier + m;
                    let mut acc = p.bias.get(oc).copied().unwrap_or(0);
                    for ky in 0..d.k_h {
                        let Some(iy) = d.tap(oy, ky, d.pad_top, d.in_h) else {
                            continue;
                        };
                        for kx in 0..d.k_w {
                            let Some(ix) = d.tap(ox, kx, d.pad_left, d.in_w) else {
                                continue;
                            };
                            let x = at(input, (iy * d.in_w + ix) * d.in_c + ic)
                                .wrapping_add(p.quant.input_offset);
                            let w = at(p.weights, (ky * d.k_w + kx) * d.out_c + oc);
                            acc = acc.wrapping_add(x.wrapping_mul(w));
                        }
                    }
                    put(
                        output,
                        (oy * d.out_w + ox) * d.out_c + oc,
                        p.requantize(acc, oc),
                    );
                }
            }
        }
    }
}

/// Weights and requantisation of a dense layer.
#[derive(Debug, Clone, Copy)]
pub struct Dense<'a> {
    /// `[out_features][in_features]`.
    pub weights: &'a [i8],
    pub bias: &'a [i32],
    pub multiplier: &'a [i32],
    pub shift: &'a [i32],
    pub in_features: usize,
    pub out_features: usize,
    pub quant: OutputQuant,
}

/// Dense layer (TF Lite's `FullyConnected`, per-tensor or per-channel weights) over the flattened
/// input, requantised as TF Lite's interpreter does it for this op: rounded once
/// ([`multiply_by_quantized_multiplier_once`]).
pub fn fully_connected(input: &[i8], output: &mut [i8], p: &Dense<'_>) {
    for o in 0..p.out_features {
        let mut acc = p.bias.get(o).copied().unwrap_or(0);
        let row = o * p.in_features;
        for i in 0..p.in_features {
            let x = at(input, i).wrapping_add(p.quant.input_offset);
            acc = acc.wrapping_add(x.wrapping_mul(at(p.weights, row + i)));
        }
        let m = p.multiplier.get(o).copied().unwrap_or(0);
        let s = p.shift.get(o).copied().unwrap_or(0);
        put(output, o, requantize_dense(acc, m, s, &p.quant));
    }
}

/// A dense layer's output from its accumulator: [`multiply_by_quantized_multiplier_once`], the
/// output offset, the activation range (the fast kernel's too). One called copy: a dense layer
/// requantises one value per weight row, and six inlined copies of the 64-bit arithmetic cost
/// flash (0.6 KB on the example's model at opt-level 3) for no measurable time.
#[inline(never)]
pub fn requantize_dense(acc: i32, multiplier: i32, shift: i32, q: &OutputQuant) -> i8 {
    let v =
        multiply_by_quantized_multiplier_once(acc, multiplier, shift).wrapping_add(q.output_offset);
    clamp_i8(v, q.act_min, q.act_max)
}
