use super::{at, clamp_i8, put};
use crate::fixed::{
    exp_on_negative_values_q5, multiply_by_quantized_multiplier, reciprocal,
    rounding_divide_by_pot, saturating_rounding_doubling_high_mul,
};

/// `u8` pixels to int8 at equal scale (TF Lite `QUANTIZE` uint8 to int8): `x - 128`.
pub fn quantize_u8(input: &[u8], output: &mut [i8]) {
    for (o, &x) in output.iter_mut().zip(input) {
        *o = (i32::from(x) - 128) as i8;
    }
}

/// Parameters of TF Lite's int8 `ADD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddParams {
    pub input1_offset: i32,
    pub input2_offset: i32,
    pub output_offset: i32,
    pub left_shift: i32,
    pub input1_multiplier: i32,
    pub input1_shift: i32,
    pub input2_multiplier: i32,
    pub input2_shift: i32,
    pub output_multiplier: i32,
    pub output_shift: i32,
    pub act_min: i32,
    pub act_max: i32,
}

/// Element-wise sum (TFLM `reference_integer_ops::AddElementwise`).
pub fn add(a: &[i8], b: &[i8], output: &mut [i8], p: &AddParams) {
    let shift = p.left_shift.clamp(0, 31) as u32;
    for (i, o) in output.iter_mut().enumerate() {
        let x = at(a, i).wrapping_add(p.input1_offset).wrapping_shl(shift);
        let y = at(b, i).wrapping_add(p.input2_offset).wrapping_shl(shift);
        let x = multiply_by_quantized_multiplier(x, p.input1_multiplier, p.input1_shift);
        let y = multiply_by_quantized_multiplier(y, p.input2_multiplier, p.input2_shift);
        let sum = x.wrapping_add(y);
        let v = multiply_by_quantized_multiplier(sum, p.output_multiplier, p.output_shift)
            .wrapping_add(p.output_offset);
        *o = clamp_i8(v, p.act_min, p.act_max);
    }
}

/// Parameters of TF Lite's int8 `SOFTMAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftmaxParams {
    /// Length of the softmax axis (channels); the tensor is a sequence of such rows.
    pub depth: usize,
    pub rows: usize,
    pub input_multiplier: i32,
    pub input_left_shift: i32,
    pub diff_min: i32,
}

/// Softmax over each row (TFLM `reference_ops::Softmax` for int8 in and out, gemmlowp fixed point;
/// output scale 1/256, zero point -128).
pub fn softmax(input: &[i8], output: &mut [i8], p: &SoftmaxParams) {
    const ACCUM_INTEGER_BITS: i32 = 12;
    let rescale = |diff: i32| {
        let shifted = diff.wrapping_shl(p.input_left_shift.clamp(0, 31) as u32);
        saturating_rounding_doubling_high_mul(shifted, p.input_multiplier)
    };
    for r in 0..p.rows {
        let base = r * p.depth;
        let max = (0..p.depth).map(|c| at(input, base + c)).max().unwrap_or(0);
        let mut sum_of_exps = 0i32; // Q12.19
        for c in 0..p.depth {
            let diff = at(input, base + c) - max;
            if diff >= p.diff_min {
                let e = exp_on_negative_values_q5(rescale(diff));
                sum_of_exps =
                    sum_of_exps.wrapping_add(rounding_divide_by_pot(e, ACCUM_INTEGER_BITS));
            }
        }
        let (scale, bits_over_unit) = reciprocal(sum_of_exps, ACCUM_INTEGER_BITS);
        for c in 0..p.depth {
            let diff = at(input, base + c) - max;
            let v = if diff >= p.diff_min {
                let e = exp_on_negative_values_q5(rescale(diff));
                let unsat = rounding_divide_by_pot(
                    saturating_rounding_doubling_high_mul(scale, e),
                    bits_over_unit + 31 - 8,
                );
                clamp_i8(unsat - 128, -128, 127)
            } else {
                -128
            };
            put(output, base + c, v);
        }
    }
}
