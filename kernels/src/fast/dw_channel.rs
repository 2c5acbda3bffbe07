//! The portable depthwise path (Armv7-M without the DSP extension, RISC-V, the host): one
//! channel at a time, through a ring of `k_h` padded rows of that channel in the generator's
//! scratch ([`scratch_bytes`]).
//!
//! Without SIMD a multiply-accumulate is one instruction (MLA) and each operand one load, so what
//! costs is everything around them. The lane-wise blocks of the general path walk every tap of
//! every pixel with its bounds and a stack accumulator (about 19 instructions per MAC on the
//! Cortex-M3); here the channel's weights are read once for the layer, each input row of the
//! channel is copied once into the ring (its left and right padding and the rows above and below
//! the input written out as the zero point), and every four output pixels run the same `k_h * k_w`
//! taps from `k_h` row slices (four accumulators in registers, each weight loaded once for the
//! four), with no border case: padded taps read the zero point, whose product cancels the folded
//! `input_offset * sum(w)` of the bias exactly as the reference skips them. Measured on qemu-m3-an385 (`bench --per-layer`): 10.6 to 12.2
//! instructions per MAC on 16x16, 14x14 and 7x7 layers that took 16.7 to 19.7 the other way.

use super::dw_groups::padded_width;
use super::mac::Mac;
use super::{FastConv, Requant};
use crate::ConvDims;

/// The kernel sizes and strides this path is compiled for (each its own copy), on outputs of at
/// least [`MIN_PIXELS`] pixels.
fn takes(d: &ConvDims) -> bool {
    d.in_c == d.out_c
        && d.in_c > 0
        && d.k_h == d.k_w
        && matches!((d.k_h, d.stride), (3, 1) | (3, 2) | (5, 1) | (5, 2))
        && d.out_h.saturating_mul(d.out_w) >= MIN_PIXELS
}

/// Below this many output pixels a channel's fixed work (its weights, the ring's rows) outweighs
/// what the ring saves: measured on qemu-m3-an385, a 4x4 output ran 1.4 times as long this way
/// as through the lane-wise blocks, a 7x7 one 0.68 times.
const MIN_PIXELS: usize = 32;

/// Scratch bytes the path needs for a layer (`k_h` padded rows of one channel), `None` where it
/// does not take the layer.
pub fn scratch_bytes(d: &ConvDims) -> Option<usize> {
    if !takes(d) {
        return None;
    }
    padded_width(d)?.checked_mul(d.k_h)
}

/// Runs the layer channel by channel if the path takes it and `scratch` is long enough; false
/// (nothing written) otherwise.
#[inline(always)]
pub(super) fn depthwise_channels<M: Mac, const SHORT: bool>(
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i8],
    p: &FastConv<'_>,
    pad: i8,
) -> bool {
    // Each kernel size and stride its own copy; SPAN: the columns four outputs' windows cover.
    match (p.dims.k_h, p.dims.stride) {
        (3, 1) => channels::<M, SHORT, 3, 1, 6>(input, output, scratch, p, pad),
        (3, 2) => channels::<M, SHORT, 3, 2, 9>(input, output, scratch, p, pad),
        (5, 1) => channels::<M, SHORT, 5, 1, 8>(input, output, scratch, p, pad),
        (5, 2) => channels::<M, SHORT, 5, 2, 11>(input, output, scratch, p, pad),
        _ => false,
    }
}

/// Output pixels whose raw sums are kept on the stack before they are requantised together.
const SEG: usize = 32;

/// A `K`x`K` layer of stride `S`; `SPAN = 3 * S + K`.
#[inline(never)]
fn channels<M: Mac, const SHORT: bool, const K: usize, const S: usize, const SPAN: usize>(
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i8],
    p: &FastConv<'_>,
    pad: i8,
) -> bool {
    let d = p.dims;
    let c = d.in_c;
    let (Some(wp), Some(len_in), Some(len_out), Some(len_w)) = (
        padded_width(&d),
        d.in_h.checked_mul(d.in_w).and_then(|n| n.checked_mul(c)),
        d.out_h.checked_mul(d.out_w).and_then(|n| n.checked_mul(c)),
        c.checked_mul(K * K),
    ) else {
        return false;
    };
    let Some(ring) = wp.checked_mul(K) else {
        return false;
    };
    if !takes(&d)
        || (d.k_h, d.k_w, d.stride) != (K, K, S)
        || SPAN != 3 * S + K
        || d.out_w == 0
        || input.len() < len_in
        || output.len() < len_out
        || p.weights.len() < len_w
        || p.bias.len() < c
        || p.multiplier.len() < c
        || p.shift.len() < c
        || scratch.len() < ring
    {
        return false;
    }
    let q = p.quant;
    // Nonzero: `c > 0` and `out_w > 0`, and their product is at most `len_out`.
    let row_len = (d.out_w * c).max(1);
    let mut raw = [0i32; SEG];
    // The left and right padding of every row (the copies write only the input's columns).
    if let Some(ring) = scratch.get_mut(..ring) {
        ring.fill(pad);
    }
    for ch in 0..c {
        // The channel's taps, `[ky][kx]`.
        let mut w = [[0i32; K]; K];
        for (ky, row) in w.iter_mut().enumerate() {
            for (kx, v) in row.iter_mut().enumerate() {
                let t = (ky * K + kx) * c + ch;
                *v = i32::from(p.weights.get(t).copied().unwrap_or(0));
            }
        }
        let bias = p.bias.get(ch).copied().unwrap_or(0);
        let rq = Requant::new::<SHORT>(
            p.multiplier.get(ch).copied().unwrap_or(0),
            p.shift.get(ch).copied().unwrap_or(0),
        );
        // The next padded row to copy into the ring (padded row `r` lives in slot `r % K`).
        let mut next = 0;
        for (oy, out_row) in output.chunks_exact_mut(row_len).take(d.out_h).enumerate() {
            let top = oy * S;
            next = next.max(top);
            while next < top + K {
                let slot = (next % K) * wp + d.pad_left;
                if let Some(dst) = scratch.get_mut(slot..slot + d.in_w) {
                    copy_row(dst, input, &d, next, ch, pad);
                }
                next += 1;
            }
            let mut rows: [&[i8]; K] = [&[]; K];
            for (ky, r) in rows.iter_mut().enumerate() {
                let slot = ((top + ky) % K) * wp;
                *r = scratch.get(slot..slot + wp).unwrap_or(&[]);
            }
            // Segments of up to SEG output pixels: their raw sums four at a time (accumulators
            // in registers, each weight loaded once for the four), then one at a time; then the
            // segment's requantisation in one pass (its parameters in registers).
            let mut ox = 0;
            while ox < d.out_w {
                let n = (d.out_w - ox).min(SEG);
                let mut j = 0;
                while j + 4 <= n {
                    let mut acc = [bias; 4];
                    let x0 = (ox + j) * S;
                    for (r, wr) in rows.iter().zip(&w) {
                        let Some(win) = r.get(x0..).and_then(<[i8]>::first_chunk::<SPAN>) else {
                            continue;
                        };
                        for (kx, &wv) in wr.iter().enumerate() {
                            for (i, a) in acc.iter_mut().enumerate() {
                                let x = win.get(i * S + kx).copied().unwrap_or(0);
                                *a = a.wrapping_add(i32::from(x) * wv);
                            }
                        }
                    }
                    if let Some(dst) = raw.get_mut(j..j + 4) {
                        dst.copy_from_slice(&acc);
                    }
                    j += 4;
                }
                while j < n {
                    let mut acc = bias;
                    let x0 = (ox + j) * S;
                    for (r, wr) in rows.iter().zip(&w) {
                        if let Some(win) = r.get(x0..).and_then(<[i8]>::first_chunk::<K>) {
                            for (&x, &wv) in win.iter().zip(wr) {
                                acc = acc.wrapping_add(i32::from(x) * wv);
                            }
                        }
                    }
                    if let Some(a) = raw.get_mut(j) {
                        *a = acc;
                    }
                    j += 1;
                }
                if let (Some(ys), Some(raw)) = (out_row.get_mut(ox * c + ch..), raw.get(..n)) {
                    requantise::<M, SHORT>(raw, ys, c, &rq, &q);
                }
                ox += n;
            }
        }
    }
    true
}

/// `ys[i * c] = requantised raw[i]`: a loop of its own, so that the requantisation's parameters
/// stay in registers.
#[inline(never)]
fn requantise<M: Mac, const SHORT: bool>(
    raw: &[i32],
    ys: &mut [i8],
    c: usize,
    rq: &Requant,
    q: &crate::OutputQuant,
) {
    let (rq, q) = (*rq, *q);
    for (y, &a) in ys.iter_mut().step_by(c.max(1)).zip(raw) {
        *y = rq.apply::<M, SHORT>(a, &q);
    }
}

/// Padded row `r` (input row `r - pad_top`) of channel `ch` into the columns `dst` holds between
/// the left and the right padding (which [`channels`] wrote once): the channel's values, or the
/// zero point for a row above or below the input.
#[inline(never)]
fn copy_row(dst: &mut [i8], input: &[i8], d: &ConvDims, r: usize, ch: usize, pad: i8) {
    let iy = r.checked_sub(d.pad_top).filter(|&y| y < d.in_h);
    let Some(iy) = iy else {
        dst.fill(pad);
        return;
    };
    let c = d.in_c.max(1);
    if let Some(src) = input.get(iy * d.in_w * c + ch..) {
        for (v, x) in dst.iter_mut().zip(src.iter().step_by(c)) {
            *v = *x;
        }
    }
}
