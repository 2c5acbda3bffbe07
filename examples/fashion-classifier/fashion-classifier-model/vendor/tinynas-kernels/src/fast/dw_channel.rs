//! The depthwise path one channel at a time: portable (Armv7-M without the DSP extension, RISC-V,
//! the host) through a ring of `k_h` padded rows of that channel in the generator's scratch
//! ([`scratch_bytes`]); on DSP through an int16 plane (below).
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
//!
//! On DSP, narrow 3x3 and 5x5 layers of stride 1 take a form of their own ([`plane_bytes`] of
//! scratch): the channel as an int16 plane, so that SMLAD multiplies two neighbouring columns by
//! two weights, and every group of four output pixels of the channel in one assembly loop with
//! its requantisation (see `pairs`). On qemu-m4 3.7 to 8.4 instructions per MAC on 16x16 to 4x4
//! layers that took 5.0 to 10.9 through the group path.

use super::dw_groups::padded_width;
use super::mac::Mac;
use super::{FastConv, Requant};
use crate::ConvDims;

/// The kernel sizes and strides this path is compiled for (each its own copy in the portable
/// loop, which runs only on outputs of at least [`MIN_PIXELS`] pixels; the DSP one takes stride
/// 1 only, on any output size).
fn takes(d: &ConvDims) -> bool {
    d.in_c == d.out_c
        && d.in_c > 0
        && d.k_h == d.k_w
        && d.out_w > 0
        && matches!((d.k_h, d.stride), (3, 1) | (3, 2) | (5, 1) | (5, 2))
}

/// Below this many output pixels a channel's fixed work (its weights, the ring's rows) outweighs
/// what the ring saves: measured on qemu-m3-an385, a 4x4 output ran 1.4 times as long this way
/// as through the lane-wise blocks, a 7x7 one 0.68 times.
const MIN_PIXELS: usize = 32;

/// Scratch bytes the portable path needs for a layer (`k_h` padded rows of one channel), `None`
/// where it does not take the layer.
pub fn scratch_bytes(d: &ConvDims) -> Option<usize> {
    if !takes(d) {
        return None;
    }
    padded_width(d)?.checked_mul(d.k_h)
}

/// Scratch bytes the DSP path needs for a layer of stride 1: the plane, every padded row of one
/// channel as int16 (`plane_rows` of `pair_width` halfwords, plus 3 bytes to word-align
/// them); `None` where it does not take the layer.
pub fn plane_bytes(d: &ConvDims) -> Option<usize> {
    if !takes(d) || d.stride != 1 {
        return None;
    }
    plane_rows(d)?
        .checked_mul(pair_width(d)?)?
        .checked_mul(2)?
        .checked_add(3)
}

/// Rows of the DSP plane: the padded rows the output rows' windows cover.
fn plane_rows(d: &ConvDims) -> Option<usize> {
    d.out_h
        .checked_sub(1)?
        .checked_mul(d.stride)?
        .checked_add(d.k_h)
}

/// Words of a DSP plane row that four output pixels' windows cover: `3 * stride + k` halfwords,
/// rounded up to whole words.
const fn words(k: usize, s: usize) -> usize {
    (3 * s + k).div_ceil(2)
}

/// Halfwords of a row of the DSP plane: the padded width, or more where the last four output
/// pixels' words reach further (an output width that is not a multiple of four); even, so that
/// every row starts on a word.
fn pair_width(d: &ConvDims) -> Option<usize> {
    let last = d.out_w.checked_sub(1)? / 4 * 4;
    let reach = last
        .checked_mul(d.stride)?
        .checked_add(2 * words(d.k_w, d.stride))?;
    Some(padded_width(d)?.max(reach).next_multiple_of(2))
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
    // On DSP: the int16 plane and SMLAD (a copy for each kernel size; the generated code's
    // layers are statics, so only the sizes a model has are compiled).
    #[cfg(any(tinynas_dsp, test))]
    if M::DW_PAIRS {
        return match p.dims.k_h {
            3 => pairs::<M, SHORT, 3>(input, output, scratch, p, pad),
            5 => pairs::<M, SHORT, 5>(input, output, scratch, p, pad),
            _ => false,
        };
    }
    if p.dims.out_h.saturating_mul(p.dims.out_w) < MIN_PIXELS {
        return false;
    }
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
        || d.out_h.saturating_mul(d.out_w) < MIN_PIXELS
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

/// The DSP form of [`channels`], for narrow 3x3 and 5x5 layers of stride 1 whose output rows are
/// whole groups of four pixels: the scratch holds the channel's padded rows as int16 (the plane:
/// [`plane_rows`] of [`pair_width`] halfwords, its padding written once for the layer, the input
/// rows copied in by `isa_dsp::widen_plane`), so that one word is two neighbouring columns, and
/// the taps of four output pixels are SMLAD over pairs of columns with pairs of weights (packed
/// once per channel), SMLABT/SMLATB for the odd tap: for 3x3, eight multiply instructions and
/// three loads per kernel row for the four pixels' twelve products. Every group of the channel,
/// each requantised as it goes (the short form), is one assembly call
/// (`isa_dsp::PairSums::run_requant`). The sums are the reference's integers, as in
/// [`channels`]. False (before writing anything) where it does not take the layer or `scratch`
/// is short: the group path runs it then.
#[cfg(any(tinynas_dsp, test))]
#[inline(never)]
fn pairs<M: Mac, const SHORT: bool, const K: usize>(
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i8],
    p: &FastConv<'_>,
    pad: i8,
) -> bool {
    use super::dw_groups::RequantCol;
    use crate::isa_dsp::{pair_bytes, widen_plane, PairSums};
    let d = p.dims;
    // What most layers it does not take fail first.
    if !(SHORT && M::QUAD_REQUANT) || d.stride != 1 || scratch.is_empty() {
        return false;
    }
    let (c, k, s) = (d.in_c, K, d.stride);
    let (Some(b), Some(wr), Some(rows), Some(len_in), Some(len_out), Some(len_w)) = (
        pair_bytes(k),
        pair_width(&d),
        plane_rows(&d),
        d.in_h.checked_mul(d.in_w).and_then(|n| n.checked_mul(c)),
        d.out_h.checked_mul(d.out_w).and_then(|n| n.checked_mul(c)),
        c.checked_mul(k * k),
    ) else {
        return false;
    };
    let row_bytes = 2 * wr;
    let Some(need) = row_bytes.checked_mul(rows) else {
        return false;
    };
    // Word-aligned (the scratch has 3 bytes for it).
    let align = scratch.as_ptr().align_offset(4).min(3);
    // Narrow layers of stride 1 (the assembly requantises by the short form, with the output
    // offset folded into its rounding: exact for offsets within int8 and right shifts up to 22,
    // as in `isa_dsp::conv_cols`); the others take the group path.
    let folds = (-128..=127).contains(&p.quant.output_offset)
        && p.shift
            .get(..c)
            .is_some_and(|s| s.iter().all(|&s| s >= -22));
    if !(SHORT && M::QUAD_REQUANT && folds && takes(&d))
        || s != 1
        || d.k_h != K
        || d.out_h == 0
        || b != 4 * words(k, s)
        || input.len() < len_in
        || output.len() < len_out
        || p.weights.len() < len_w
        || p.bias.len() < c
        || p.multiplier.len() < c
        || p.shift.len() < c
    {
        return false;
    }
    let Some(plane) = scratch.get_mut(align..align + need) else {
        return false;
    };
    let q = p.quant;
    let pad16 = i16::from(pad).to_le_bytes().map(|b| b as i8);
    // The padding (the copies write only the input's values).
    for h in plane.chunks_exact_mut(2) {
        h.copy_from_slice(&pad16);
    }
    // The plane rows that hold input rows, from row `pad_top`, and where they start.
    let inside = d.in_h.min(rows.saturating_sub(d.pad_top));
    let first = d.pad_top * row_bytes + 2 * d.pad_left;
    let row_len = (d.out_w * c).max(1);
    // Whole groups of four pixels a row, and the pixels after them; where there are some, the
    // last group of a row but the last writes into the rows after it (see below), which must be
    // inside the output: so not for rows of one pixel.
    let (whole, tail) = (d.out_w / 4, d.out_w % 4);
    let spill = d.out_h > 1 && tail > 0;
    if spill && (d.out_h - 2) * d.out_w + 4 * (whole + 1) > d.out_h * d.out_w {
        return false;
    }
    let at: [usize; 5] = core::array::from_fn(|ky| ky * row_bytes);
    let mut col = RequantCol::new(0, 0, &super::mac::Clamp::new(&q));
    let mut sums = PairSums::new();
    // One channel's taps as int16, `[ky][kx]`.
    let mut taps = [0i8; 2 * 25];
    for ch in 0..c {
        let (w, x) = (p.weights.get(ch..), input.get(ch..));
        let (Some(w), Some(x), Some(t), Some(dst)) =
            (w, x, taps.get_mut(..2 * k * k), plane.get_mut(first..))
        else {
            return false;
        };
        if !widen_plane(t, 2 * k * k, w, c, (k * k, 1))
            || !widen_plane(dst, row_bytes, x, c, (d.in_w, inside))
        {
            return false;
        }
        let bias = p.bias.get(ch).copied().unwrap_or(0);
        let (m, sh) = (
            p.multiplier.get(ch).copied().unwrap_or(0),
            p.shift.get(ch).copied().unwrap_or(0),
        );
        col.set(m, sh);
        sums.set::<K>(&taps, bias, &col);
        // Every group of four pixels of the channel in one call. Where a row ends in a part of a
        // group, that group's four pixels are computed all the same, the last ones written to
        // the next row's first pixels, which that row then writes again: so in one call every
        // row but the last, then the last row's whole groups, then its part into `part`.
        let ys = output.get_mut(ch..).unwrap_or(&mut []);
        let run = |sums: &mut PairSums, at, rows, groups, ys: &mut [i8], steps| {
            groups == 0 || sums.run_requant::<K>(plane, at, rows, groups, ys, steps)
        };
        let last = d.out_h - 1;
        let (rows, steps) = ((d.out_h, row_bytes), (c, row_len));
        let done = if tail == 0 {
            run(&mut sums, at, rows, whole, ys, steps)
        } else {
            let mut part = [0i8; 4];
            let last_at = at.map(|a| a + last * row_bytes + 8 * whole);
            let done = (last == 0 || run(&mut sums, at, (last, row_bytes), whole + 1, ys, steps))
                && run(
                    &mut sums,
                    at.map(|a| a + last * row_bytes),
                    (1, row_bytes),
                    whole,
                    ys.get_mut(last * row_len..).unwrap_or(&mut []),
                    steps,
                )
                && run(&mut sums, last_at, (1, row_bytes), 1, &mut part, (1, 4));
            let ys = ys
                .get_mut(last * row_len + 4 * whole * c..)
                .unwrap_or(&mut []);
            for (y, &v) in ys.iter_mut().step_by(c.max(1)).zip(&part).take(tail) {
                *y = v;
            }
            done
        };
        if !done {
            return false;
        }
    }
    true
}
