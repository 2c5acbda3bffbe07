use super::{at, clamp_i8, put};
use crate::fixed::multiply_by_quantized_multiplier;

/// Geometry of a pool (input and output share channels and quantisation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolDims {
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

/// Calls `f(oy, ox, c, taps)` with the input values of each window, padding excluded.
fn windows(
    d: &PoolDims,
    input: &[i8],
    output: &mut [i8],
    mut f: impl FnMut(&mut dyn Iterator<Item = i32>) -> i8,
) {
    for oy in 0..d.out_h {
        for ox in 0..d.out_w {
            for c in 0..d.channels {
                let y0 = oy * d.stride;
                let x0 = ox * d.stride;
                let mut taps = (0..d.k_h)
                    .filter_map(|ky| (y0 + ky).checked_sub(d.pad_top).filter(|&y| y < d.in_h))
                    .flat_map(|iy| {
                        (0..d.k_w)
                            .filter_map(move |kx| {
                                (x0 + kx).checked_sub(d.pad_left).filter(|&x| x < d.in_w)
                            })
                            .map(move |ix| (iy * d.in_w + ix) * d.channels + c)
                    })
                    .map(|i| at(input, i));
                let v = f(&mut taps);
                put(output, (oy * d.out_w + ox) * d.channels + c, v);
            }
        }
    }
}

/// Max pool (TFLM `reference_integer_ops::MaxPool`): padding is ignored.
pub fn max_pool2d(input: &[i8], output: &mut [i8], d: &PoolDims) {
    windows(d, input, output, |taps| taps.max().unwrap_or(-128) as i8);
}

/// Average pool (TFLM `reference_integer_ops::AveragePool`): the sum over the taps inside the input
/// divided by their count, rounded half away from zero.
pub fn avg_pool2d(input: &[i8], output: &mut [i8], d: &PoolDims) {
    windows(d, input, output, |taps| {
        let (mut acc, mut count) = (0i32, 0i32);
        for t in taps {
            acc = acc.wrapping_add(t);
            count += 1;
        }
        let half = count / 2;
        let v = if acc > 0 {
            acc.wrapping_add(half)
        } else {
            acc.wrapping_sub(half)
        };
        clamp_i8(v.checked_div(count).unwrap_or(0), -128, 127)
    });
}

/// Requantisation of a global average pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeanParams {
    pub h: usize,
    pub w: usize,
    pub channels: usize,
    /// Fixed-point form of `input_scale / (output_scale * h * w)`.
    pub multiplier: i32,
    pub shift: i32,
    pub input_offset: i32,
    pub output_offset: i32,
}

/// Global average pool: per channel, `sum(x + input_offset)` over height and width, times the
/// multiplier, plus the output zero point.
pub fn global_average_pool(input: &[i8], output: &mut [i8], p: &MeanParams) {
    for c in 0..p.channels {
        let mut acc = 0i32;
        for i in 0..p.h * p.w {
            acc = acc.wrapping_add(at(input, i * p.channels + c).wrapping_add(p.input_offset));
        }
        let v = multiply_by_quantized_multiplier(acc, p.multiplier, p.shift)
            .wrapping_add(p.output_offset);
        put(output, c, clamp_i8(v, -128, 127));
    }
}
