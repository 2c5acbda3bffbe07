//! Integer parameters of TF Lite's int8 arithmetic, computed on the host from float scales.
//!
//! These follow TF Lite Micro exactly (`QuantizeMultiplier`, `CalculateActivationRangeQuantized`,
//! the int8 `ADD` and `SOFTMAX` preparation), so that a model quantised elsewhere runs identically.
//! The device only ever sees the integers computed here.

use crate::ir::{Activation, QParams};

/// A real multiplier `m` as `multiplier * 2^(shift - 31)`, with `multiplier` in `[2^30, 2^31)`
/// (or 0): TF Lite's `QuantizeMultiplier`, including its rounding (half away from zero) and its
/// flushing of multipliers below `2^-31` to zero.
///
/// `real` must be finite and non-negative; callers validate scales before they get here.
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    if real.is_nan() || real <= 0.0 {
        return (0, 0);
    }
    let (q, mut shift) = frexp(real);
    let mut q_fixed = (q * (1u64 << 31) as f64).round() as i64;
    if q_fixed == 1i64 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        shift = 0;
        q_fixed = 0;
    }
    if shift > 30 {
        // The runtime shifts left by at most 30 bits; a larger multiplier saturates (as TF Lite's
        // single-rounding build does). No real model comes close.
        shift = 30;
        q_fixed = (1i64 << 31) - 1;
    }
    (q_fixed as i32, shift)
}

/// `x = q * 2^e` with `q` in `[0.5, 1)`, for finite positive `x` (C's `frexp`).
fn frexp(x: f64) -> (f64, i32) {
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale up into the normal range first.
        let (q, e) = frexp(x * f64::powi(2.0, 64));
        return (q, e - 64);
    }
    let mantissa_bits = (bits & !(0x7ffu64 << 52)) | (1022u64 << 52);
    (f64::from_bits(mantissa_bits), exp - 1022)
}

/// The clamp range of an int8 output with a fused activation (TF Lite's
/// `CalculateActivationRangeQuantized`): the float bound divided by the scale in `f32`, rounded
/// half away from zero, plus the zero point, within `[-128, 127]`.
pub fn activation_range(act: Activation, out: QParams) -> (i32, i32) {
    let quantize = |f: f32| -> i32 {
        let q = (f / out.scale).round();
        let q = if q.is_finite() {
            q.clamp(-1e9, 1e9) as i32
        } else {
            i32::MAX
        };
        out.zero_point.saturating_add(q)
    };
    let (lo, hi) = (-128, 127);
    match act {
        Activation::None => (lo, hi),
        Activation::Relu => (lo.max(quantize(0.0)).min(hi), hi),
        Activation::Relu6 => {
            let min = lo.max(quantize(0.0)).min(hi);
            (min, hi.min(quantize(6.0)).max(min))
        }
    }
}

/// Per-output-channel requantisation of a convolution or dense layer: the effective scale
/// `input_scale * weight_scale[c] / output_scale` in `f64`, as TF Lite's
/// `PopulateConvolutionQuantizationParams`.
pub fn per_channel(input: QParams, weight_scales: &[f32], output: QParams) -> (Vec<i32>, Vec<i32>) {
    weight_scales
        .iter()
        .map(|&ws| {
            quantize_multiplier(f64::from(input.scale) * f64::from(ws) / f64::from(output.scale))
        })
        .unzip()
}

/// The multipliers and shifts of TF Lite's int8 `ADD` (the kernel's `AddParams` adds the zero
/// points).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddScales {
    pub left_shift: i32,
    pub input1_multiplier: i32,
    pub input1_shift: i32,
    pub input2_multiplier: i32,
    pub input2_shift: i32,
    pub output_multiplier: i32,
    pub output_shift: i32,
}

/// TF Lite's int8 `ADD` preparation: both inputs rescaled to twice the larger input scale with
/// 20 bits of headroom, summed, and rescaled to the output.
pub fn add_scales(a: QParams, b: QParams, out: QParams) -> AddScales {
    let left_shift = 20;
    let twice_max = 2.0 * f64::from(a.scale.max(b.scale));
    let (input1_multiplier, input1_shift) = quantize_multiplier(f64::from(a.scale) / twice_max);
    let (input2_multiplier, input2_shift) = quantize_multiplier(f64::from(b.scale) / twice_max);
    let (output_multiplier, output_shift) =
        quantize_multiplier(twice_max / (f64::from(1u32 << left_shift) * f64::from(out.scale)));
    AddScales {
        left_shift,
        input1_multiplier,
        input1_shift,
        input2_multiplier,
        input2_shift,
        output_multiplier,
        output_shift,
    }
}

/// The integer parameters of TF Lite's int8 `SOFTMAX` (gemmlowp fixed point, 5 integer bits for
/// the scaled difference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftmaxParams {
    pub input_multiplier: i32,
    pub input_left_shift: i32,
    pub diff_min: i32,
}

/// Integer bits of the scaled input difference in TF Lite's softmax.
pub const SOFTMAX_SCALED_DIFF_INTEGER_BITS: i32 = 5;

/// TF Lite's `PreprocessSoftmaxScaling` and `CalculateInputRadius`. `None` when `beta * scale` is
/// so small that the multiplier would be below one (TF Lite rejects such a model too).
pub fn softmax_params(beta: f32, input: QParams) -> Option<SoftmaxParams> {
    let bits = SOFTMAX_SCALED_DIFF_INTEGER_BITS;
    let real = (f64::from(beta) * f64::from(input.scale) * f64::from(1u32 << (31 - bits)))
        .min(f64::from(u32::MAX >> 1));
    let (input_multiplier, input_left_shift) = quantize_multiplier(real);
    if input_multiplier == 0 || input_left_shift < 0 {
        return None;
    }
    let max_input_rescaled = f64::from((1u32 << bits) - 1) * f64::from(1u32 << (31 - bits))
        / 2f64.powi(input_left_shift);
    Some(SoftmaxParams {
        input_multiplier,
        input_left_shift,
        diff_min: -(max_input_rescaled.floor() as i32),
    })
}

/// Requantisation of the global average pool: `input_scale / (output_scale * count)`.
pub fn mean_multiplier(input: QParams, output: QParams, count: usize) -> (i32, i32) {
    quantize_multiplier(f64::from(input.scale) / (f64::from(output.scale) * count as f64))
}

/// The fixed-point multiplier of TF Lite's int8 `MEAN` over `count` values, for
/// `multiply_by_quantized_multiplier(sum(x - input_zero_point), multiplier, shift) +
/// output_zero_point`. TF Lite (the reference kernel of `ai-edge-litert` 2.3, whichever of
/// `keep_dims` and whether the quantisations are equal) quantises `input_scale / output_scale`
/// first, then divides the multiplier by the count in integers: `(multiplier << k) / count`
/// with `k = floor(log2(count))`, clamped to 32 and to `31 + shift`, and `shift - k`. That
/// rounds differently from quantising `input_scale / (output_scale * count)` directly
/// ([`mean_multiplier`], our own global average pool) by one in some sums.
///
/// Refused where TF Lite's left shift could overflow 32 bits for a reachable sum (C leaves its
/// result undefined there).
pub fn tflite_mean_multiplier(
    input: QParams,
    output: QParams,
    count: usize,
) -> Result<(i32, i32), String> {
    if count == 0 || count > crate::ir::MAX_TENSOR_ELEMENTS {
        return Err(format!("a mean over {count} values"));
    }
    let (m, shift) = quantize_multiplier(f64::from(input.scale) / f64::from(output.scale));
    let k = (usize::BITS - 1 - count.leading_zeros()) as i32;
    let k = k.min(32).min(31 + shift);
    let reduced = (i64::from(m) << k.max(0)) / count as i64;
    let shift = shift - k;
    // The largest |sum(x - zero point)| is 255 * count.
    if shift > 0 && (255 * count as u64) << shift >= 1 << 31 {
        return Err(format!(
            "the mean's requantisation (input scale {} / output scale {}) overflows 32 bits over {count} values; TF Lite's result is undefined there",
            input.scale, output.scale
        ));
    }
    let reduced =
        i32::try_from(reduced).map_err(|_| "the mean's multiplier overflows".to_string())?;
    Ok((reduced, shift))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinynas_kernels::fixed::multiply_by_quantized_multiplier;

    #[test]
    fn tflite_mean_rounds_as_tflite_where_one_multiplier_would_not() {
        // Found with TF Lite's interpreter (ai-edge-litert 2.3.0, BUILTIN_REF) on a lone MEAN
        // over 3 values [6, 20, 21]: TF Lite gives -12; input_scale / (output_scale * 3) as one
        // multiplier gives -13 (6.35 rounded, against TF Lite's 12.7 -> 13, halved -> 7).
        let x = QParams {
            scale: 0.020_372_808,
            zero_point: 7,
        };
        let y = QParams {
            scale: 0.027_799_368,
            zero_point: -19,
        };
        let sum = 6 + 20 + 21 - 3 * 7;
        let mean = |(m, s): (i32, i32)| multiply_by_quantized_multiplier(sum, m, s) + y.zero_point;
        assert_eq!(mean(tflite_mean_multiplier(x, y, 3).unwrap()), -12);
        assert_eq!(mean(mean_multiplier(x, y, 3)), -13);
        // The 2^k-scaled multiplier stays an i32 and the shift at least -31.
        for count in [1, 2, 3, 7, 64, 1000, 1 << 20] {
            let (m, s) = tflite_mean_multiplier(x, y, count).unwrap();
            assert!(m > 0 && s >= -31, "{count}: {m} {s}");
        }
        // A huge scale ratio overflows TF Lite's shift: refused, not approximated.
        let tiny = QParams {
            scale: 1e-9,
            zero_point: 0,
        };
        assert!(tflite_mean_multiplier(x, tiny, 4).is_err());
    }

    #[test]
    fn multiplier_matches_tflite_examples() {
        // 0.5 = 2^30 * 2^(0 - 31) * 2 ... frexp(0.5) = (0.5, 0)
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
        assert_eq!(quantize_multiplier(0.25), (1 << 30, -1));
        // A value that rounds up to 2^31 moves to the next exponent.
        assert_eq!(quantize_multiplier(0.999_999_999_9), (1 << 30, 1));
        assert_eq!(quantize_multiplier(1e-12), (0, 0));
        assert_eq!(quantize_multiplier(0.0), (0, 0));
        let (m, s) = quantize_multiplier(0.003_921_568_6);
        let back = f64::from(m) * 2f64.powi(s - 31);
        assert!((back - 0.003_921_568_6).abs() / 0.003_921_568_6 < 1e-9);
    }

    #[test]
    fn frexp_handles_subnormals() {
        let (q, e) = frexp(f64::MIN_POSITIVE / 4.0);
        assert!((0.5..1.0).contains(&q));
        assert_eq!(q * 2f64.powi(e), f64::MIN_POSITIVE / 4.0);
    }

    #[test]
    fn activation_ranges() {
        let q = QParams {
            scale: 0.05,
            zero_point: -10,
        };
        assert_eq!(activation_range(Activation::None, q), (-128, 127));
        assert_eq!(activation_range(Activation::Relu, q), (-10, 127));
        assert_eq!(activation_range(Activation::Relu6, q), (-10, 110));
    }

    #[test]
    fn softmax_params_are_sane() {
        let p = softmax_params(
            1.0,
            QParams {
                scale: 0.1,
                zero_point: 0,
            },
        )
        .unwrap();
        assert!(p.input_left_shift >= 0);
        assert!(p.diff_min < 0);
        assert!(softmax_params(
            1.0,
            QParams {
                scale: 1e-12,
                zero_point: 0
            }
        )
        .is_none());
    }
}
