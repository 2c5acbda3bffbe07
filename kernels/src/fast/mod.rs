//! The fast kernels: what generated code runs. Each gives exactly the bytes of its reference kernel
//! (tested bit for bit, on the host and on the emulated boards), from parameters the generator
//! prepared on the host:
//!
//! * the input offset is folded into the bias: `bias + input_offset * sum(w)`, so the inner loops
//!   multiply raw int8 values; a padded tap then reads the input zero point (`-input_offset`),
//!   whose product cancels the folded term exactly as the reference skips the tap;
//! * weights are stored as the kernel reads them (convolution rows zero-padded to a multiple of 4);
//! * a layer is run by the kernel its shape calls for ([`conv2d`] with a block of four im2col
//!   columns in planned scratch, [`depthwise_conv2d`] over channel lanes, or on DSP and Armv6-M
//!   group by group of four channels, [`dw_groups`], or on the portable path one channel at a
//!   time, [`dw_channel`]), chosen by the generator, never at run time;
//! * the first convolution of a `u8` model reads the pixels directly ([`conv2d_u8`]): the
//!   `x - 128` of TF Lite's QUANTIZE happens while its columns are gathered;
//! * a 3x3 convolution over one input channel (a grayscale image's first layer) runs in its own
//!   copy of the kernel with those sides as constants ([`conv2d_one_channel`]);
//! * a pointwise layer ([`pointwise_takes`]) is called through [`conv2d_pointwise`], which on DSP
//!   compiles only the channel loop over pixels widened straight into the block, not the general
//!   path (person_detect on qemu-m4: 3.8 KB less code, 0.5 % fewer instructions);
//! * a depthwise layer the group path takes ([`dw_groups::groups_take`]) is called through
//!   [`depthwise_conv2d_groups`], which leaves out the general path's register loop that such a
//!   layer never reaches (on DSP, 1.9 KB of code at opt-level 3).
//!
//! What is compiled is what the generator calls: each entry point above instantiates its own
//! code, so the generator calls the narrowest one that takes the layer.
//!
//! The instruction-set paths are in [`mac`]: the inner loops are the only difference between them.

pub mod dw_channel;
pub mod dw_groups;
pub mod mac;

use crate::conv::requantize_dense;
use crate::conv::ConvDims;
use crate::fixed::multiply_by_quantized_multiplier;
use crate::pool::{MeanParams, PoolDims};
use crate::OutputQuant;
use mac::{Mac, Selected};

/// A (depthwise) convolution prepared for the fast kernels.
#[derive(Debug, Clone, Copy)]
pub struct FastConv<'a> {
    /// Conv2d: `[out_c][k_h][k_w][in_c]`, each row zero-padded to [`padded_k`] values;
    /// depthwise: `[k_h][k_w][out_c]` (as the reference).
    pub weights: &'a [i8],
    /// Per output channel `bias + input_offset * sum(weights of the channel)` (wrapping).
    pub bias: &'a [i32],
    /// Per output channel fixed-point multiplier (`[2^30, 2^31)` or 0, as `quantize_multiplier`
    /// gives) and shift.
    pub multiplier: &'a [i32],
    pub shift: &'a [i32],
    pub dims: ConvDims,
    /// `input_offset` is the int8 input's; padded taps read `-input_offset`.
    pub quant: OutputQuant,
    /// The generator proved that every accumulator this layer can produce, for every input,
    /// shifted left by its channel's left shift, is below `2^30` in magnitude: requantisation takes
    /// its short exact form. (False is always correct.)
    pub narrow: bool,
    /// No accumulator of the layer exceeds this in magnitude, for any input (the generator's
    /// `|bias| + 128 * sum(|w|)` of the widest channel; `u32::MAX` where it is not known): the
    /// Armv6-M requantisation takes its three-multiply form below `2^20`.
    pub acc_bound: u32,
}

/// A dense layer prepared for the fast kernel (bias folded as in [`FastConv`]).
#[derive(Debug, Clone, Copy)]
pub struct FastDense<'a> {
    /// `[out_features][in_features]`.
    pub weights: &'a [i8],
    pub bias: &'a [i32],
    pub multiplier: &'a [i32],
    pub shift: &'a [i32],
    pub in_features: usize,
    pub out_features: usize,
    pub quant: OutputQuant,
}

/// Values per weight row of [`conv2d`]: `k_h * k_w * in_c` rounded up to a multiple of 4 (the rows
/// are zero-padded so the inner loop has no tail).
pub const fn padded_k(d: &ConvDims) -> usize {
    (d.k_h * d.k_w * d.in_c + 3) & !3
}

/// Scratch bytes [`conv2d`] and [`conv2d_u8`] need: a block of four int16 im2col columns, the
/// int8 column being gathered, and 3 bytes to word-align the block.
pub const fn im2col_scratch_bytes(d: &ConvDims) -> usize {
    let kp = padded_k(d);
    mac::block_bytes(kp) + kp + 3
}

/// Fixed-point requantisation, equal to the reference's `multiply_by_quantized_multiplier`
/// followed by the output offset and the clamp, for every multiplier except `i32::MIN` (which
/// `quantize_multiplier` never gives). The per-channel constants are worked out once per channel;
/// [`Requant::apply`] then costs a few instructions per output.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Requant {
    multiplier: i32,
    /// The left shift (plus one in the short form).
    left: u32,
    /// `2^right` (short form) or `2^right - 1` (full form).
    pow: u32,
    right: u32,
}

impl Requant {
    const ZERO: Requant = Requant {
        multiplier: 0,
        left: 0,
        pow: 0,
        right: 0,
    };

    #[inline(always)]
    fn new<const SHORT: bool>(multiplier: i32, shift: i32) -> Self {
        let left = shift.clamp(0, 31) as u32;
        let right = (-shift).clamp(0, 31) as u32;
        Requant {
            multiplier,
            left: left + u32::from(SHORT),
            pow: if SHORT { 1 << right } else { (1 << right) - 1 },
            right,
        }
    }

    /// `SHORT` (the generator proved `|acc * 2^left| < 2^30` for every input of the layer): the
    /// doubling high multiply is the rounded high word of `(acc << (left + 1)) * m` (one SMMULR:
    /// `floor((2 * x * m + 2^31) / 2^32) = floor((x * m + 2^30) / 2^31)`), and the rounding right
    /// shift adds `(2^right - [high < 0]) / 2` and shifts: half, less one for negatives, and 0 for a
    /// shift of 0, as gemmlowp rounds (no overflow: `|high| < 2^30`). Otherwise the full form: one
    /// 64-bit multiply-add, and gemmlowp's remainder test.
    #[inline(always)]
    fn apply<M: Mac, const SHORT: bool>(&self, acc: i32, q: &OutputQuant) -> i8 {
        let v = if SHORT {
            self.short::<M>(acc)
        } else {
            let x = acc.wrapping_shl(self.left);
            let high = ((i64::from(x) * i64::from(self.multiplier) + (1 << 30)) >> 31) as i32;
            let mask = self.pow as i32;
            let threshold = (mask >> 1) + i32::from(high < 0);
            (high >> self.right) + i32::from((high & mask) > threshold)
        };
        let v = v.wrapping_add(q.output_offset);
        // `clamp(min(max(v, act_min), act_max), -128, 127)` as two bounds (equal for every
        // input, an empty activation range included: see `mac::Clamp`).
        let (lo, hi) = (q.act_min.clamp(-128, 127), q.act_max.clamp(-128, 127));
        v.max(lo).min(hi) as i8
    }

    /// The short form's rounded value before the offset (see [`Requant::apply`]).
    #[inline(always)]
    fn short<M: Mac + ?Sized>(&self, acc: i32) -> i32 {
        let high = M::mul_high_round(acc.wrapping_shl(self.left), self.multiplier);
        let nudge = self.pow.wrapping_sub((high as u32) >> 31) >> 1;
        high.wrapping_add(nudge as i32) >> (self.right & 31)
    }
}

/// Whether a channel's accumulators fit the short requantisation ([`FastConv::narrow`]): with int8
/// inputs, `|acc| <= |bias| + 128 * sum(|w|)` for every input (the folded bias, and padded taps
/// read an int8 zero point too), and that bound times `2^left` must stay below `2^30`.
pub fn narrow_channel(folded_bias: i32, shift: i32, abs_weight_sum: u64) -> bool {
    let left = shift.clamp(0, 31) as u32;
    let bound = u64::from(folded_bias.unsigned_abs()) + 128 * abs_weight_sum;
    bound < (1u64 << 30) >> left
}

/// The full-form requantisation of one value (for tests).
#[cfg(test)]
fn requantize(acc: i32, multiplier: i32, shift: i32, q: &OutputQuant) -> i8 {
    Requant::new::<false>(multiplier, shift).apply::<mac::Portable, false>(acc, q)
}

/// The int8 value a padded tap reads: the input zero point (`-input_offset`).
#[inline(always)]
fn pad_value(q: &OutputQuant) -> i8 {
    q.input_offset.wrapping_neg().clamp(-128, 127) as i8
}

/// One weight row with its channel's bias and requantisation.
type Channel<'a> = ((&'a [i8], &'a i32), (&'a i32, &'a i32));

fn channels<'a>(
    weights: &'a [i8],
    k: usize,
    bias: &'a [i32],
    multiplier: &'a [i32],
    shift: &'a [i32],
) -> impl Iterator<Item = Channel<'a>> {
    mac::zip(
        mac::zip(mac::rows(weights, k), bias),
        mac::zip(multiplier.iter(), shift),
    )
}

/// One column times every weight row.
#[inline(always)]
fn gemm_1<M: Mac>(x: &[i8], w: (&[i8], &[i32], &[i32], &[i32]), q: &OutputQuant, y: &mut [i8]) {
    let mut rows = channels(w.0, x.len(), w.1, w.2, w.3);
    let mut ys = y.iter_mut();
    // Rounded once, as TF Lite's FULLY_CONNECTED (one requantisation per output value, so the
    // 64-bit product costs little: a dense layer's outputs are few beside its MACs).
    let rq = |a, m, s| requantize_dense(a, m, s, q);
    while let (Some(((w0, &b0), (&m0, &s0))), Some(y0)) = (rows.next(), ys.next()) {
        match (rows.next(), ys.next()) {
            (Some(((w1, &b1), (&m1, &s1))), Some(y1)) => match (rows.next(), ys.next()) {
                (Some(((w2, &b2), (&m2, &s2))), Some(y2)) => {
                    let [a, b, c] = M::dot_1x3(x, [w0, w1, w2], [b0, b1, b2]);
                    *y0 = rq(a, m0, s0);
                    *y1 = rq(b, m1, s1);
                    *y2 = rq(c, m2, s2);
                }
                _ => {
                    let [a, b] = M::dot_1x2(x, w0, w1, [b0, b1]);
                    *y0 = rq(a, m0, s0);
                    *y1 = rq(b, m1, s1);
                }
            },
            _ => *y0 = rq(M::dot_1x1(x, w0, b0), m0, s0),
        }
    }
}

/// An input element the im2col gather can read: int8 as it is, or a raw `u8` pixel converted as
/// TF Lite's QUANTIZE from uint8 does (`x - 128`).
pub trait Pixel: Copy {
    /// What a word of four pixels is XORed with to give four int8 (`u8`: `0x80808080`).
    const XOR: u32;
    fn to_i8(self) -> i8;
    /// The byte as it is stored.
    fn to_u8(self) -> u8;
}

impl Pixel for i8 {
    const XOR: u32 = 0;
    #[inline(always)]
    fn to_i8(self) -> i8 {
        self
    }
    #[inline(always)]
    fn to_u8(self) -> u8 {
        self as u8
    }
}

impl Pixel for u8 {
    const XOR: u32 = 0x8080_8080;
    #[inline(always)]
    fn to_i8(self) -> i8 {
        (self ^ 0x80) as i8
    }
    #[inline(always)]
    fn to_u8(self) -> u8 {
        self
    }
}

/// Writes the im2col column of output pixel `(oy, ox)`: the window's taps in `[k_h][k_w][in_c]`
/// order, padded taps set to `pad`. A window inside the input is `k_h` straight row copies.
#[inline(always)]
fn gather<T: Pixel>(input: &[T], d: &ConvDims, oy: usize, ox: usize, pad: i8, col: &mut [i8]) {
    let row_len = d.k_w * d.in_c;
    let (y0, x0) = (oy * d.stride, ox * d.stride);
    let inside_x = x0 >= d.pad_left && x0 + d.k_w <= d.in_w + d.pad_left;
    let inside_y = y0 >= d.pad_top && y0 + d.k_h <= d.in_h + d.pad_top;
    if inside_x && inside_y {
        let stride = d.in_w * d.in_c;
        let start = (y0 - d.pad_top) * stride + (x0 - d.pad_left) * d.in_c;
        for (k, row) in mac::enumerate(mac::chunks_mut(col, row_len)) {
            let at = start + k * stride;
            if let Some(src) = input.get(at..at + row_len) {
                copy(row, src);
            }
        }
        return;
    }
    // The kernel columns inside the input: kx in lo..hi.
    let lo = d.pad_left.saturating_sub(x0).min(d.k_w);
    let hi = (d.in_w + d.pad_left).saturating_sub(x0).clamp(lo, d.k_w);
    for (ky, row) in mac::enumerate(mac::chunks_mut(col, row_len)) {
        let src = (y0 + ky)
            .checked_sub(d.pad_top)
            .filter(|&y| y < d.in_h && hi > lo)
            .and_then(|iy| {
                let at = (iy * d.in_w + x0 + lo - d.pad_left) * d.in_c;
                input.get(at..at + (hi - lo) * d.in_c)
            });
        match src {
            Some(src) => {
                let Some((before, rest)) = row.split_at_mut_checked(lo * d.in_c) else {
                    continue;
                };
                let Some((inside, after)) = rest.split_at_mut_checked(src.len()) else {
                    continue;
                };
                fill(before, pad);
                copy(inside, src);
                fill(after, pad);
            }
            None => fill(row, pad),
        }
    }
}

/// `dst[i] = src[i].to_i8()`, a word of four at a time (one load, XOR and store where the target
/// allows unaligned words; Armv6-M does not, and copies byte by byte).
#[inline(always)]
fn copy<T: Pixel>(dst: &mut [i8], src: &[T]) {
    if cfg!(tinynas_v6m) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s.to_i8();
        }
        return;
    }
    let (mut d4, mut s4) = (mac::chunks_mut(dst, 4), mac::chunks(src, 4));
    #[inline(always)]
    fn word<T: Pixel>(d: &mut [i8], s: &[T]) {
        if let ([d0, d1, d2, d3], [s0, s1, s2, s3]) = (d, s) {
            let w = u32::from_le_bytes([s0.to_u8(), s1.to_u8(), s2.to_u8(), s3.to_u8()]) ^ T::XOR;
            let [b0, b1, b2, b3] = w.to_le_bytes();
            (*d0, *d1, *d2, *d3) = (b0 as i8, b1 as i8, b2 as i8, b3 as i8);
        }
    }
    #[cfg(not(any(tinynas_small, test)))]
    for (d, s) in d4.by_ref().zip(s4.by_ref()) {
        word(d, s);
    }
    // (Not a `zip` of `by_ref`s where built for size: at `z` each `&mut` iterator's `next` is a
    // call.)
    #[cfg(any(tinynas_small, test))]
    #[allow(clippy::while_let_on_iterator)] // (`for` over `by_ref()`: the call above)
    while let Some(d) = d4.next() {
        let Some(s) = s4.next() else { break };
        word(d, s);
    }
    // The last one to three values one by one: as a loop of unknown length the compiler calls
    // `memcpy` for them (i8 input), which costs more than the copy itself where rows are short (a
    // one-channel input's 3x3 window: three such calls per output pixel).
    match (d4.into_remainder(), s4.remainder()) {
        ([d0], [s0]) => *d0 = s0.to_i8(),
        ([d0, d1], [s0, s1]) => (*d0, *d1) = (s0.to_i8(), s1.to_i8()),
        ([d0, d1, d2], [s0, s1, s2]) => (*d0, *d1, *d2) = (s0.to_i8(), s1.to_i8(), s2.to_i8()),
        _ => {}
    }
}

#[inline(always)]
fn fill(dst: &mut [i8], v: i8) {
    for d in dst {
        *d = v;
    }
}

/// 2-D convolution of any kernel, stride and padding: four output pixels at a time, their im2col
/// columns gathered into one block in `scratch` ([`im2col_scratch_bytes`]), then every weight row
/// (padded to [`padded_k`] values) against the block.
#[inline(always)]
pub fn conv2d(input: &[i8], output: &mut [i8], scratch: &mut [i8], p: &FastConv<'_>) {
    im2col::<Selected, i8>(input, output, scratch, p);
}

/// [`conv2d`] on the model's raw `u8` input: `p` is prepared for the int8 input `x - 128`.
#[inline(always)]
pub fn conv2d_u8(input: &[u8], output: &mut [i8], scratch: &mut [i8], p: &FastConv<'_>) {
    im2col::<Selected, u8>(input, output, scratch, p);
}

/// [`conv2d`] of a layer that [`pointwise_takes`]: the generator calls it for such layers. Where
/// the instruction set widens pixels straight into the block and has the channel loop (DSP), that
/// loop runs every block of four pixels (the last block overlaps the one before it where the
/// pixels are not a multiple of four: those outputs are written twice, with the same bytes), so
/// none of the general path is compiled: the window gather, the channel blocks and their lane by
/// lane requantisation (person_detect on qemu-m4: 3.8 KB less code). A pixel or a
/// layer the loop refuses goes through the small per-pixel copy (`pixel_scalar`), so any layer
/// still gets exactly the reference's bytes, slowly. Elsewhere as [`conv2d`].
#[inline(always)]
pub fn conv2d_pointwise(input: &[i8], output: &mut [i8], scratch: &mut [i8], p: &FastConv<'_>) {
    pointwise::<Selected>(input, output, scratch, p);
}

#[inline(always)]
fn pointwise<M: Mac>(input: &[i8], output: &mut [i8], scratch: &mut [i8], p: &FastConv<'_>) {
    if M::WIDEN_ROWS && M::FUSED {
        let pixels = p.dims.out_h * p.dims.out_w;
        // (A constant where the layer's parameters are: the generator's statics.)
        if p.narrow {
            pointwise_q::<M>(input, output, scratch, p, pixels);
        } else {
            conv_pixels::<M, false>(input, output, p, 0..pixels);
        }
    } else {
        im2col::<M, i8>(input, output, scratch, p);
    }
}

/// A pointwise layer: a 1x1 kernel of stride 1 without padding, as wide as its input and at most
/// as high (output pixel `i` reads input pixel `i`), over channels of whole words.
pub const fn pointwise_dims(d: &ConvDims) -> bool {
    d.k_h == 1
        && d.k_w == 1
        && d.stride == 1
        && d.pad_top == 0
        && d.pad_left == 0
        && d.out_w == d.in_w
        && d.out_h <= d.in_h
        && d.in_c % 4 == 0
}

/// Whether the generator calls [`conv2d_pointwise`] for a layer: pointwise sides
/// ([`pointwise_dims`]), narrow ([`FastConv::narrow`]), and either at least four output pixels
/// and what the DSP's channel loop takes (more than 8 output channels, an output offset in
/// `-128..=127`, no shift below -22), or at most [`POINTWISE_SCALAR_MACS`] multiply-accumulates
/// (a small classifier's last layer, person_detect's: per pixel costs nothing there). A large
/// layer of fewer than four pixels (MobileNet's 1x1 head, 1024 to 1001 channels) keeps `conv2d`.
pub fn pointwise_takes(p: &FastConv<'_>) -> bool {
    let d = &p.dims;
    let pixels = d.out_h.saturating_mul(d.out_w);
    let macs = pixels.saturating_mul(d.in_c).saturating_mul(d.out_c);
    pointwise_dims(d)
        && p.narrow
        && ((pixels >= 4 && dsp_channel_loop_takes(p)) || macs <= POINTWISE_SCALAR_MACS)
}

/// The most multiply-accumulates of a layer that [`conv2d_pointwise`] takes whole to its
/// per-pixel fallback (on DSP about 7 instructions a MAC there, about 1.5 in the channel loop).
pub const POINTWISE_SCALAR_MACS: usize = 4096;

/// Whether the DSP's channel loop (`isa_dsp::conv_cols`) is exact for a narrow layer: an output
/// offset within int8 and every right shift at most 22; and more than one block of channels
/// (for fewer, the two passes of `im2col_q` measure faster). The same on every target: the
/// generator asks it on the host.
pub fn dsp_channel_loop_takes(p: &FastConv<'_>) -> bool {
    p.dims.out_c > OC_BLOCK
        && (-128..=127).contains(&p.quant.output_offset)
        && p.shift.iter().all(|&s| s >= -22)
}

/// [`conv2d_pointwise`] of a narrow layer of `pixels` output pixels where the instruction set has
/// the channel loop.
#[inline]
fn pointwise_q<M: Mac>(
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i8],
    p: &FastConv<'_>,
    pixels: usize,
) {
    let d = p.dims;
    let (kp, oc) = (padded_k(&d), d.out_c);
    // The block is read by word (and doubleword) loads: align it (the planner left 3 bytes).
    let align = scratch.as_ptr().align_offset(4).min(3);
    let block = scratch.get_mut(align..align + mac::block_bytes(kp));
    let loop_takes = pointwise_dims(&d) && pixels >= 4 && M::conv_cols_takes(p);
    let mut from = 0;
    if let (Some(block), true) = (block, loop_takes) {
        for base in (0..pixels).step_by(4) {
            let b = base.min(pixels - 4);
            let done = widen_pixels::<M, i8>(input, d.in_c, b, 4, block)
                && output
                    .get_mut(b * oc..(b + 4) * oc)
                    .is_some_and(|y| M::conv_cols(block, p, kp, y));
            if !done && !conv_pixels::<M, true>(input, output, p, b..b + 4) {
                return;
            }
        }
        from = pixels;
    }
    conv_pixels::<M, true>(input, output, p, from..pixels);
}

/// Output pixels `pixels` of a convolution, one at a time ([`pixel_scalar`]). False where a
/// slice is too short.
fn conv_pixels<M: Mac, const SHORT: bool>(
    input: &[i8],
    output: &mut [i8],
    p: &FastConv<'_>,
    pixels: core::ops::Range<usize>,
) -> bool {
    let d = p.dims;
    let w = d.out_w.max(1);
    pixels.into_iter().all(|i| {
        let y = output.get_mut(i * d.out_c..).unwrap_or(&mut []);
        pixel_scalar::<M, SHORT>(input, y, p, (i / w, i % w), 0, false)
    })
}

#[inline(always)]
fn im2col<M: Mac, T: Pixel>(input: &[T], output: &mut [i8], scratch: &mut [i8], p: &FastConv<'_>) {
    if p.narrow {
        im2col_q::<M, T, true, false>(input, output, scratch, p);
    } else {
        im2col_q::<M, T, false, false>(input, output, scratch, p);
    }
}

/// [`conv2d`] of a layer with a 3x3 kernel over one input channel (a grayscale image's first
/// layer): a narrow one runs in its own copy of the kernel with those sides as constants (nine
/// values per column, where the loops of the shared copy cost more than the arithmetic), except
/// at `opt-level` `s` and `z`; any other layer as [`conv2d`]. The generator calls it for such
/// layers only: the copy is compiled wherever this is called, and rustc's memory is what a
/// small gateway's search runs short of (each copy of the kernel adds about 5 MiB to building a
/// bench firmware).
#[inline(always)]
pub fn conv2d_one_channel(input: &[i8], output: &mut [i8], scratch: &mut [i8], p: &FastConv<'_>) {
    one_channel::<Selected, i8>(input, output, scratch, p);
}

/// [`conv2d_one_channel`] on the model's raw `u8` input, as [`conv2d_u8`].
#[inline(always)]
pub fn conv2d_u8_one_channel(
    input: &[u8],
    output: &mut [i8],
    scratch: &mut [i8],
    p: &FastConv<'_>,
) {
    one_channel::<Selected, u8>(input, output, scratch, p);
}

/// Whether [`conv2d_one_channel`]'s copy takes a layer of these sides (a 3x3 kernel over one
/// input channel; the copy also needs the layer to be narrow, [`FastConv::narrow`]): the
/// generator's test and the kernel's.
pub const fn one_channel_takes(d: &ConvDims) -> bool {
    d.k_h == 3 && d.k_w == 3 && d.in_c == 1
}

#[inline(always)]
fn one_channel<M: Mac, T: Pixel>(
    input: &[T],
    output: &mut [i8],
    scratch: &mut [i8],
    p: &FastConv<'_>,
) {
    #[cfg(not(tinynas_small))]
    if p.narrow && one_channel_takes(&p.dims) {
        im2col_q::<M, T, true, true>(input, output, scratch, p);
        return;
    }
    im2col::<M, T>(input, output, scratch, p);
}

/// Widens input pixels `base..base + n` (`channels` values each, whole words) into the block's
/// columns `0..n`: a pointwise layer's block (see `im2col_q`). One called copy: inlined, it
/// slowed the other layers' loop around it. False where a pixel does not fit.
#[inline(never)]
fn widen_pixels<M: Mac, T: Pixel>(
    input: &[T],
    channels: usize,
    base: usize,
    n: usize,
    block: &mut [i8],
) -> bool {
    (0..n).all(|q| {
        let x = input.get((base + q) * channels..).unwrap_or(&[]);
        M::widen_rows(x, channels, 1, channels / 4, block, q)
    })
}

/// `THREE_BY_ONE`: the caller checked that the layer has a 3x3 kernel over one input channel;
/// the copy then works with those as constants.
#[inline]
fn im2col_q<M: Mac, T: Pixel, const SHORT: bool, const THREE_BY_ONE: bool>(
    input: &[T],
    output: &mut [i8],
    scratch: &mut [i8],
    p: &FastConv<'_>,
) {
    let mut d = p.dims;
    if THREE_BY_ONE {
        (d.k_h, d.k_w, d.in_c) = (3, 3, 1);
    }
    let (k, kp) = (d.k_h * d.k_w * d.in_c, padded_k(&d));
    // The block is read by word (and doubleword) loads: align it (the planner left 3 bytes).
    let align = scratch.as_ptr().align_offset(4).min(3);
    let Some(scratch) = scratch.get_mut(align..align + mac::block_bytes(kp) + kp) else {
        return;
    };
    let Some((block, col)) = scratch.split_at_mut_checked(mac::block_bytes(kp)) else {
        return;
    };
    if let Some(tail) = col.get_mut(k..) {
        tail.fill(0);
    }
    let pad = pad_value(&p.quant);
    let row_len = d.k_w * d.in_c;
    let (w, oc) = (d.out_w.max(1), d.out_c);
    let pixels = d.out_h * d.out_w;
    let vector = M::VECTOR && mac::shifts_in_range(p.shift);
    let clamp = mac::Clamp::new(&p.quant);
    let cols = SHORT && M::conv_cols_takes(p);
    // A 1x1 layer of stride 1 without padding over whole words (a pointwise layer): the column of
    // output pixel `i` is input pixel `i`, widened straight where the instruction set can (DSP),
    // in a loop of its own without the window arithmetic below (person_detect on qemu-m4: 1.5 %
    // fewer instructions, 0.6 KB more code).
    let pointwise = M::WIDEN_ROWS && !THREE_BY_ONE && pointwise_dims(&d);
    // The channel blocks' accumulators and requantisations below (each read only where written
    // for the block at hand): zeroed once, not per block of pixels (at opt-level `s` that was a
    // call to `memset` per block; faster at 3 too, on the DSP, Helium and Armv6-M), except on
    // Armv7-M without DSP at opt-level 3, where per block they stay in registers (the NanoNAS
    // fixture on qemu-m3-an385: 2 % fewer instructions).
    #[cfg(any(tinynas_small, tinynas_dsp, tinynas_mve, tinynas_v6m))]
    let (mut acc, mut rqs) = ([[0i32; OC_BLOCK]; 4], [Requant::ZERO; OC_BLOCK]);
    // The output pixel of the column being gathered, counted (Armv6-M has no divide).
    let (mut oy, mut ox) = (0, 0);
    for base in (0..pixels).step_by(4) {
        let n = 4.min(pixels - base);
        let widened = pointwise && widen_pixels::<M, T>(input, d.in_c, base, n, block);
        if !widened {
            // Where that refused, the loop below starts from this block's first pixel.
            if pointwise {
                (oy, ox) = (base / w, base % w);
            }
            for q in 0..n {
                let (py, px) = (oy, ox);
                ox += 1;
                if ox == w {
                    (oy, ox) = (oy + 1, 0);
                }
                // A window inside the input whose rows are whole groups of four: widened straight
                // from the input rows where the instruction set can (DSP).
                if M::WIDEN_ROWS && row_len % 4 == 0 {
                    let (y0, x0) = (py * d.stride, px * d.stride);
                    let inside = x0 >= d.pad_left
                        && x0 + d.k_w <= d.in_w + d.pad_left
                        && y0 >= d.pad_top
                        && y0 + d.k_h <= d.in_h + d.pad_top;
                    if inside {
                        let stride = d.in_w * d.in_c;
                        let at = (y0 - d.pad_top) * stride + (x0 - d.pad_left) * d.in_c;
                        let x = input.get(at..).unwrap_or(&[]);
                        if M::widen_rows(x, stride, d.k_h, row_len / 4, block, q) {
                            continue;
                        }
                    }
                }
                if M::gather_block(input, &d, (py, px), pad, block, q) {
                    continue;
                }
                if let Some(dst) = M::column_mut(block, q, kp) {
                    if let Some((taps, tail)) = dst.split_at_mut_checked(k) {
                        gather(input, &d, py, px, pad, taps);
                        tail.fill(0);
                    }
                    continue;
                }
                if let Some(taps) = col.get_mut(..k) {
                    gather(input, &d, py, px, pad, taps);
                }
                M::store_column(block, q, col);
            }
        }
        let Some(y) = output.get_mut(base * oc..(base + n) * oc) else {
            return;
        };
        // The short form in one loop over the channels where the instruction set has it (DSP).
        if cols && n == 4 && M::conv_cols(block, p, kp, y) {
            continue;
        }
        // The short form where the instruction set has a requantisation that leaves the four
        // accumulators in registers (DSP): channel by channel, the dot products of the four
        // pixels and at once their requantisation. (For one block of channels or fewer, the two
        // passes below measure faster.)
        if SHORT && M::FUSED && n == 4 && oc > OC_BLOCK {
            let k = clamp;
            let channels = channels(p.weights, kp, p.bias, p.multiplier, p.shift).take(oc);
            let mut rc = dw_groups::RequantCol::new(0, 0, &k);
            for (c, ((row, &b), (&m, &s))) in mac::enumerate(channels) {
                let acc = M::dot_block(block, row, [b; 4]);
                let Some(yc) = y.get_mut(c..) else {
                    return;
                };
                if M::QUAD_REQUANT {
                    rc.set(m, s);
                    M::requant_col(acc, &rc, yc, oc);
                    continue;
                }
                let rq = Requant::new::<true>(m, s);
                let v = if rq.right >= 1 {
                    let half = (rq.pow >> 1) as i32;
                    acc.map(|a| M::round_short(a, m, half, rq.right))
                } else {
                    acc.map(|a| M::mul_high_round(a.wrapping_shl(rq.left), m))
                };
                for (q, v) in v.into_iter().enumerate() {
                    if let Some(d) = yc.get_mut(q * oc) {
                        *d = v.wrapping_add(k.offset).max(k.lo).min(k.hi) as i8;
                    }
                }
            }
            continue;
        }
        // Channels in blocks: first every dot product of the block (nothing else live around the
        // inner loop), then their requantisation, output pixel by output pixel.
        #[cfg(not(any(tinynas_small, tinynas_dsp, tinynas_mve, tinynas_v6m)))]
        let (mut acc, mut rqs) = ([[0i32; OC_BLOCK]; 4], [Requant::ZERO; OC_BLOCK]);
        for c0 in (0..oc).step_by(OC_BLOCK) {
            let cn = OC_BLOCK.min(oc - c0);
            let (Some(w), Some(bias), Some(mult), Some(shift)) = (
                p.weights.get(c0 * kp..(c0 + cn) * kp),
                p.bias.get(c0..c0 + cn),
                p.multiplier.get(c0..c0 + cn),
                p.shift.get(c0..c0 + cn),
            ) else {
                return;
            };
            for (c, (row, &b)) in mac::enumerate(mac::zip(mac::rows(w, kp), bias)) {
                let [a0, a1, a2, a3] = M::dot_block(block, row, [b; 4]);
                let [r0, r1, r2, r3] = &mut acc;
                if let (Some(v0), Some(v1), Some(v2), Some(v3)) =
                    (r0.get_mut(c), r1.get_mut(c), r2.get_mut(c), r3.get_mut(c))
                {
                    (*v0, *v1, *v2, *v3) = (a0, a1, a2, a3);
                }
            }
            // Four channels at a time in vector lanes where the instruction set has them.
            let mut from = 0;
            if vector {
                let rows = acc.get(..n).unwrap_or(&[]);
                while from + 4 <= cn {
                    let (Some(m), Some(s), Some(yv)) =
                        (mult.get(from..), shift.get(from..), y.get_mut(c0 + from..))
                    else {
                        break;
                    };
                    if !M::requant4(rows, from, m, s, &clamp, yv, oc) {
                        break;
                    }
                    from += 4;
                }
            }
            if from < cn {
                for ((r, &m), &s) in mac::zip(mac::zip(rqs.iter_mut(), mult), shift) {
                    *r = Requant::new::<SHORT>(m, s);
                }
                for (q, a) in mac::enumerate_first(&acc, n) {
                    let Some(row) = y.get_mut(q * oc + c0 + from..q * oc + c0 + cn) else {
                        return;
                    };
                    let (a, rqs) = (a.get(from..).unwrap_or(&[]), rqs.get(from..).unwrap_or(&[]));
                    for ((y, &a), rq) in row.iter_mut().zip(a).zip(rqs) {
                        *y = rq.apply::<M, SHORT>(a, &p.quant);
                    }
                }
            }
        }
    }
}

/// Output channels per block of [`conv2d`]'s accumulators (on the stack: 16 bytes each).
pub(crate) const OC_BLOCK: usize = 8;

/// Channels per block of the stack accumulators of depthwise and mean.
const BLOCK: usize = 32;

/// Depthwise convolution: for each output pixel, a block of up to 32 channel accumulators on the
/// stack, one lane-wise multiply-accumulate per kernel tap (padded taps multiply the zero point).
#[inline(always)]
pub fn depthwise_conv2d(input: &[i8], output: &mut [i8], p: &FastConv<'_>) {
    depthwise::<Selected, true>(input, output, &mut [], p);
}

/// [`depthwise_conv2d`] with the scratch the planner found room for
/// ([`dw_groups::rows_scratch_bytes`]): on DSP, where it holds a whole group of four channels
/// with its left and right padding written out (short rows), each output row is one run; on
/// Armv6-M each output row's window rows are copied into a strip of it as unsigned bytes;
/// elsewhere (or with a shorter scratch) as [`depthwise_conv2d`].
#[inline(always)]
pub fn depthwise_conv2d_rows(
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i8],
    p: &FastConv<'_>,
) {
    depthwise::<Selected, true>(input, output, scratch, p);
}

/// [`depthwise_conv2d_rows`] (or, with an empty `scratch`, [`depthwise_conv2d`]) of a layer that
/// [`dw_groups::groups_take`]: the generator calls it for such layers. Where the instruction set
/// has the group path (DSP, Armv6-M) that path runs every such layer, so neither the general
/// path's register loop nor its per-pixel blocks are compiled: a scalar per-pixel copy
/// (`pixel_scalar`) stands behind the path. Any other layer still gets exactly the reference's
/// bytes, slowly.
#[inline(always)]
pub fn depthwise_conv2d_groups(
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i8],
    p: &FastConv<'_>,
) {
    depthwise::<Selected, false>(input, output, scratch, p);
}

/// `GENERAL`: whether the general path's register loop is compiled where the group path exists
/// (false: the caller checked [`dw_groups::groups_take`]).
#[inline(always)]
fn depthwise<M: Mac, const GENERAL: bool>(
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i8],
    p: &FastConv<'_>,
) {
    if p.narrow {
        depthwise_q::<M, true, GENERAL>(input, output, scratch, p);
    } else {
        depthwise_q::<M, false, GENERAL>(input, output, scratch, p);
    }
}

// At opt-level s or z one copy, called: without the register loop it is small enough that LLVM
// inlined its dispatch into every depthwise call (person_detect on qemu-m4: 700 B more code).
#[cfg_attr(tinynas_small, inline(never))]
#[cfg_attr(not(tinynas_small), inline)]
fn depthwise_q<M: Mac, const SHORT: bool, const GENERAL: bool>(
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i8],
    p: &FastConv<'_>,
) {
    let d = p.dims;
    let mult = d.out_c.checked_div(d.in_c).unwrap_or(0);
    let mut blocks = DwBlocks::new(pad_value(&p.quant), mult);
    if M::DW_CHANNELS
        && mult == 1
        && dw_channel::depthwise_channels::<M, SHORT>(input, output, scratch, p, blocks.pad)
    {
        return;
    }
    // Behind the group path of a layer that `groups_take` (GENERAL false), the per-pixel work
    // (a channel tail below four, a layer the path refuses after all) is never reached: one
    // small scalar copy keeps it exact without compiling the stack blocks (person_detect on
    // qemu-m4: 1.6 KB less code, the blocks' 2.5 KB for the copy's 0.9 KB).
    let compact = !GENERAL && M::DW_GROUPS;
    // With the generator's scratch: the padded strip (Armv6-M) or padded rows (DSP).
    if (M::DW_STRIP || M::DW_GROUPS) && mult == 1 && !scratch.is_empty() {
        let pad = blocks.pad;
        let tail = |x: &[i8], y: &mut [i8], at| {
            if compact {
                pixel_scalar::<M, SHORT>(x, y, p, at, 0, true)
            } else {
                blocks.pixel::<M, SHORT>(x, y, p, at, 0)
            }
        };
        let done = if M::DW_STRIP {
            dw_groups::depthwise_strip::<M, SHORT>(input, output, scratch, p, pad, tail)
        } else {
            dw_groups::depthwise_rows::<M, SHORT>(input, output, scratch, p, pad, tail)
        };
        if done {
            return;
        }
    }
    if M::DW_GROUPS
        && mult == 1
        && dw_groups::depthwise_groups::<M, SHORT>(input, output, p, blocks.pad, |x, y, at| {
            if compact {
                pixel_scalar::<M, SHORT>(x, y, p, at, 0, true)
            } else {
                blocks.pixel::<M, SHORT>(x, y, p, at, 0)
            }
        })
    {
        return;
    }
    if M::VECTOR && mult == 1 && d.in_c % 4 == 0 && mac::shifts_in_range(p.shift) {
        depthwise_vector::<M, SHORT>(input, output, p, &mut blocks);
        return;
    }
    for (i, y) in output.chunks_exact_mut(d.out_c.max(1)).enumerate() {
        let (oy, ox) = (i / d.out_w.max(1), i % d.out_w.max(1));
        let (y0, x0) = (oy * d.stride, ox * d.stride);
        let interior = M::DW_ROWS
            && (GENERAL || !M::DW_GROUPS)
            && mult == 1
            && y0 >= d.pad_top
            && y0 + d.k_h <= d.in_h + d.pad_top
            && x0 >= d.pad_left
            && x0 + d.k_w <= d.in_w + d.pad_left;
        // Inside the input, four channels at a time with the accumulators in registers; the
        // rest (borders, a channel tail, multipliers above 1) in stack blocks.
        let mut done = 0;
        if interior {
            let c = d.in_c;
            let row0 = ((y0 - d.pad_top) * d.in_w + (x0 - d.pad_left)) * c;
            let span = d.k_w.saturating_sub(1) * c + 4;
            for c0 in (0..c.saturating_sub(3)).step_by(4) {
                let (Some(bias), Some(m), Some(s)) = (
                    p.bias.get(c0..c0 + 4),
                    p.multiplier.get(c0..c0 + 4),
                    p.shift.get(c0..c0 + 4),
                ) else {
                    return;
                };
                let mut acc = [0i32; 4];
                acc.copy_from_slice(bias);
                for ky in 0..d.k_h {
                    let at = row0 + ky * d.in_w * c + c0;
                    let wt = ky * d.k_w * c + c0;
                    let (Some(x), Some(w)) =
                        (input.get(at..at + span), p.weights.get(wt..wt + span))
                    else {
                        return;
                    };
                    acc = M::dw_row4(x, w, c, d.k_w, acc);
                }
                let Some(y) = y.get_mut(c0..c0 + 4) else {
                    return;
                };
                for (((y, &a), &m), &s) in y.iter_mut().zip(&acc).zip(m).zip(s) {
                    *y = Requant::new::<SHORT>(m, s).apply::<M, SHORT>(a, &p.quant);
                }
                done = c0 + 4;
            }
        }
        let at = (oy, ox);
        let done = if compact {
            pixel_scalar::<M, SHORT>(input, y, p, at, done, true)
        } else {
            blocks.pixel::<M, SHORT>(input, y, p, at, done)
        };
        if !done {
            return;
        }
    }
}

/// Channels `from..` of output pixel `(oy, ox)` of a depthwise layer (`depthwise`) or a
/// convolution (weight rows of [`padded_k`]), one channel and one tap at a time (padded taps
/// multiply the zero point): what the fast paths compute, in a few hundred bytes of code, one
/// copy for both kinds of layer. The fallback behind the paths the generator chose (a pixel or
/// a layer they refuse). False where a slice is too short.
#[inline(never)]
fn pixel_scalar<M: Mac, const SHORT: bool>(
    input: &[i8],
    y: &mut [i8],
    p: &FastConv<'_>,
    (oy, ox): (usize, usize),
    from: usize,
    depthwise: bool,
) -> bool {
    let d = p.dims;
    let mult = d.out_c.checked_div(d.in_c).unwrap_or(0);
    let pad = pad_value(&p.quant);
    let kp = padded_k(&d);
    for c in from..d.out_c {
        let (Some(&b), Some(&m), Some(&s), Some(y)) = (
            p.bias.get(c),
            p.multiplier.get(c),
            p.shift.get(c),
            y.get_mut(c),
        ) else {
            return false;
        };
        // Depthwise: output channel c reads input channel c / mult, its weights `out_c` apart
        // per tap; a convolution: every input channel, its row of `kp`.
        let (x0, channels, row) = if depthwise {
            (c.checked_div(mult).unwrap_or(0), 1, 0)
        } else {
            (0, d.in_c, c.wrapping_mul(kp))
        };
        let mut acc = b;
        for ky in 0..d.k_h {
            let iy = d.tap(oy, ky, d.pad_top, d.in_h);
            for kx in 0..d.k_w {
                let ix = d.tap(ox, kx, d.pad_left, d.in_w);
                let t = ky * d.k_w + kx;
                let w0 = if depthwise {
                    t.wrapping_mul(d.out_c).wrapping_add(c)
                } else {
                    row.wrapping_add(t.wrapping_mul(d.in_c))
                };
                // A padded tap reads the zero point, one value for all its channels (so the
                // loop below is one loop for both), and the loop's count is opaque to the
                // optimiser: at opt-level 3 its copies, unrolled, were 1.7 KB on DSP.
                let (x, step) = match (iy, ix) {
                    (Some(iy), Some(ix)) => {
                        let at = (iy * d.in_w + ix) * d.in_c + x0;
                        (input.get(at..).unwrap_or(&[]), 1)
                    }
                    _ => (core::slice::from_ref(&pad), 0),
                };
                let mut j = 0;
                while j < core::hint::black_box(channels) {
                    let (Some(&w), Some(&x)) = (p.weights.get(w0.wrapping_add(j)), x.get(j * step))
                    else {
                        return false;
                    };
                    acc = acc.wrapping_add(i32::from(x) * i32::from(w));
                    j += 1;
                }
            }
        }
        *y = Requant::new::<SHORT>(m, s).apply::<M, SHORT>(acc, &p.quant);
    }
    true
}

/// Depthwise in vector lanes (MVE; depth multiplier 1, channels a multiple of 4, shifts in
/// `-31..=31`): every output pixel whose window meets the input in one call of
/// [`Mac::dw_pixel`] over the inside rectangle of taps; a window wholly in the padding (or
/// parameters the vector kernel refuses) in stack blocks.
#[inline]
fn depthwise_vector<M: Mac, const SHORT: bool>(
    input: &[i8],
    output: &mut [i8],
    p: &FastConv<'_>,
    blocks: &mut DwBlocks,
) {
    let d = p.dims;
    let c = d.in_c;
    let mut ys = output.chunks_exact_mut(d.out_c.max(1));
    let base = mac::DwPixel {
        x: &[],
        w: &[],
        wall: p.weights,
        c,
        in_row: d.in_w * c,
        w_row: d.k_w * c,
        rows: 0,
        cols: 0,
        taps: 0,
        pad: i32::from(blocks.pad),
        bias: p.bias,
        mult: p.multiplier,
        shift: p.shift,
        clamp: mac::Clamp::new(&p.quant),
        right_shifts_only: p.shift.iter().all(|&s| s <= 0),
    };
    for oy in 0..d.out_h {
        let y0 = oy * d.stride;
        let ky_lo = d.pad_top.saturating_sub(y0).min(d.k_h);
        let ky_hi = (d.in_h + d.pad_top).saturating_sub(y0).clamp(ky_lo, d.k_h);
        let rows = ky_hi - ky_lo;
        // The input row and weight row of the first tap inside.
        let (xrow, wrow) = (
            (y0 + ky_lo).saturating_sub(d.pad_top) * d.in_w,
            ky_lo * d.k_w,
        );
        for ox in 0..d.out_w {
            let Some(y) = ys.next() else { return };
            let x0 = ox * d.stride;
            let kx_lo = d.pad_left.saturating_sub(x0).min(d.k_w);
            let kx_hi = (d.in_w + d.pad_left).saturating_sub(x0).clamp(kx_lo, d.k_w);
            let cols = kx_hi - kx_lo;
            let mut done = 0;
            if rows > 0 && cols > 0 {
                let x_at = (xrow + (x0 + kx_lo).saturating_sub(d.pad_left)) * c;
                let w_at = (wrow + kx_lo) * c;
                let border = rows < d.k_h || cols < d.k_w;
                let px = mac::DwPixel {
                    x: input.get(x_at..).unwrap_or(&[]),
                    w: p.weights.get(w_at..).unwrap_or(&[]),
                    rows,
                    cols,
                    taps: if border { d.k_h * d.k_w } else { 0 },
                    ..base
                };
                done = M::dw_pixel(&px, y);
            }
            // A channel tail (channels not a multiple of 4) reaches it at every pixel: inlined
            // here (the evolve fixture on qemu-m55: 2 % more instructions called).
            if done < d.out_c && !blocks.pixel_inline::<M, SHORT>(input, y, p, (oy, ox), done) {
                return;
            }
        }
    }
}

/// The stack blocks of the general depthwise path: up to [`BLOCK`] channel accumulators, the
/// expanded input of a depth multiplier above 1, and a row of the zero point for padded taps.
struct DwBlocks {
    acc: [i32; BLOCK],
    expanded: [i8; BLOCK],
    pad_row: [i8; BLOCK],
    pad: i8,
    mult: usize,
}

impl DwBlocks {
    fn new(pad: i8, mult: usize) -> Self {
        DwBlocks {
            acc: [0; BLOCK],
            expanded: [0; BLOCK],
            pad_row: [pad; BLOCK],
            pad,
            mult,
        }
    }

    /// Channels `from..` of output pixel `(oy, ox)`, lane-wise by [`Mac::mac_lanes`], one tap at a
    /// time (padded taps multiply the zero point). False where a slice is too short.
    // One copy, called: the group and general paths reach it only at borders, channel tails and
    // multipliers above 1. Measured on person_detect (qemu-m4): at opt-level s 1.5 KB less code
    // and 0.2 % fewer instructions than inlined; at 3 (where it was inlined into its three
    // callers) 2.6 KB less and 0.07 % fewer.
    #[inline(never)]
    fn pixel<M: Mac, const SHORT: bool>(
        &mut self,
        input: &[i8],
        y: &mut [i8],
        p: &FastConv<'_>,
        at: (usize, usize),
        from: usize,
    ) -> bool {
        self.pixel_inline::<M, SHORT>(input, y, p, at, from)
    }

    /// [`DwBlocks::pixel`] inlined into its caller (the vector path's channel tail), except at
    /// opt-level s or z.
    #[cfg_attr(tinynas_small, inline(never))]
    #[cfg_attr(not(tinynas_small), inline(always))]
    fn pixel_inline<M: Mac, const SHORT: bool>(
        &mut self,
        input: &[i8],
        y: &mut [i8],
        p: &FastConv<'_>,
        (oy, ox): (usize, usize),
        from: usize,
    ) -> bool {
        let d = p.dims;
        let (mult, pad) = (self.mult, self.pad);
        for c0 in (from..d.out_c).step_by(BLOCK) {
            let n = BLOCK.min(d.out_c - c0);
            let (Some(acc), Some(bias)) = (self.acc.get_mut(..n), p.bias.get(c0..c0 + n)) else {
                return false;
            };
            acc.copy_from_slice(bias);
            for ky in 0..d.k_h {
                let iy = d.tap(oy, ky, d.pad_top, d.in_h);
                for kx in 0..d.k_w {
                    let ix = d.tap(ox, kx, d.pad_left, d.in_w);
                    let t = (ky * d.k_w + kx) * d.out_c + c0;
                    let Some(w) = p.weights.get(t..t + n) else {
                        return false;
                    };
                    let x = match (iy, ix) {
                        (Some(iy), Some(ix)) => {
                            let at = (iy * d.in_w + ix) * d.in_c;
                            let x = if mult == 1 {
                                input.get(at + c0..at + c0 + n)
                            } else {
                                // Output channel c reads input channel c / mult.
                                for (k, e) in self.expanded.iter_mut().take(n).enumerate() {
                                    let c = (c0 + k).checked_div(mult).unwrap_or(0);
                                    *e = input.get(at + c).copied().unwrap_or(pad);
                                }
                                self.expanded.get(..n)
                            };
                            let Some(x) = x else { return false };
                            x
                        }
                        _ => self.pad_row.get(..n).unwrap_or(&[]),
                    };
                    M::mac_lanes(acc, x, w);
                }
            }
            let (Some(m), Some(s), Some(y)) = (
                p.multiplier.get(c0..c0 + n),
                p.shift.get(c0..c0 + n),
                y.get_mut(c0..c0 + n),
            ) else {
                return false;
            };
            for (((y, &a), &m), &s) in y.iter_mut().zip(acc.iter()).zip(m).zip(s) {
                *y = Requant::new::<SHORT>(m, s).apply::<M, SHORT>(a, &p.quant);
            }
        }
        true
    }
}

/// Dense layer: three weight rows at a time against the input, each output requantised as the
/// reference ([`crate::conv::fully_connected`]) does it.
pub fn fully_connected(input: &[i8], output: &mut [i8], p: &FastDense<'_>) {
    dense::<Selected>(input, output, p);
}

fn dense<M: Mac>(input: &[i8], output: &mut [i8], p: &FastDense<'_>) {
    let Some(x) = input.get(..p.in_features) else {
        return;
    };
    let y = output.get_mut(..p.out_features).unwrap_or(&mut []);
    let w = (p.weights, p.bias, p.multiplier, p.shift);
    gemm_1::<M>(x, w, &p.quant, y);
}

/// Max pool: the lane-wise maximum of each output pixel's taps inside the input (padding is
/// ignored, as in the reference), by [`Mac::max_window`] where the instruction set has vector
/// lanes, [`Mac::max4`] for a 2x2 window inside the input, else starting from the first tap and
/// taking [`Mac::max_lanes`] with the others.
#[inline(always)]
pub fn max_pool2d(input: &[i8], output: &mut [i8], d: &PoolDims) {
    max_pool::<Selected>(input, output, d);
}

fn max_pool<M: Mac>(input: &[i8], output: &mut [i8], d: &PoolDims) {
    let c = d.channels.max(1);
    // The usual 2x2 stride-2 pool without padding, where the instruction set has no vector
    // window: the output pixels whose windows are inside the input row by row, two input rows
    // walked side by side ([`Mac::max4`] per pixel, no window arithmetic).
    let (mut inner_h, mut inner_w) = (0, 0);
    if !M::VECTOR && (d.k_h, d.k_w, d.stride, d.pad_top, d.pad_left) == (2, 2, 2, 0, 0) {
        (inner_h, inner_w) = (d.out_h.min(d.in_h / 2), d.out_w.min(d.in_w / 2));
        let row = d.in_w * c;
        let rows_in = mac::rows(input, 2 * row);
        for (yrow, x) in mac::rows_mut(output, d.out_w * c)
            .zip(rows_in)
            .take(inner_h)
        {
            let Some((r0, r1)) = x.split_at_checked(row) else {
                return;
            };
            let pixels = mac::rows(r0, 2 * c).zip(mac::rows(r1, 2 * c));
            for (y, (a, b)) in mac::rows_mut(yrow, c).zip(pixels).take(inner_w) {
                let halves = (a.split_at_checked(c), b.split_at_checked(c));
                if let (Some((a0, a1)), Some((b0, b1))) = halves {
                    M::max4(y, [a0, a1, b0, b1]);
                }
            }
        }
    }
    let mut ys = output.chunks_exact_mut(c);
    for oy in 0..d.out_h {
        let y0 = oy * d.stride;
        // Kernel rows inside the input.
        let ky_lo = d.pad_top.saturating_sub(y0).min(d.k_h);
        let ky_hi = (d.in_h + d.pad_top).saturating_sub(y0).clamp(ky_lo, d.k_h);
        for ox in 0..d.out_w {
            let Some(y) = ys.next() else { return };
            if oy < inner_h && ox < inner_w {
                continue;
            }
            let x0 = ox * d.stride;
            let kx_lo = d.pad_left.saturating_sub(x0).min(d.k_w);
            let kx_hi = (d.in_w + d.pad_left).saturating_sub(x0).clamp(kx_lo, d.k_w);
            let taps = (kx_hi - kx_lo) * c;
            if taps > 0 && ky_hi > ky_lo {
                let at = ((y0 + ky_lo - d.pad_top) * d.in_w + x0 + kx_lo - d.pad_left) * c;
                let window = (ky_hi - ky_lo, kx_hi - kx_lo);
                let x = input.get(at..).unwrap_or(&[]);
                if M::max_window(x, c, d.in_w * c, window, y) {
                    continue;
                }
                // The usual 2x2 window.
                let row = d.in_w * c;
                if let ((2, 2), Some(a), Some(b), Some(e), Some(f)) = (
                    window,
                    x.get(..c),
                    x.get(c..2 * c),
                    x.get(row..row + c),
                    x.get(row + c..row + 2 * c),
                ) {
                    M::max4(y, [a, b, e, f]);
                    continue;
                }
            }
            let mut first = true;
            let rows = if taps > 0 { ky_lo..ky_hi } else { 0..0 };
            for ky in rows {
                // The row's taps inside the input are contiguous pixels.
                let at = ((y0 + ky - d.pad_top) * d.in_w + x0 + kx_lo - d.pad_left) * c;
                let Some(row) = input.get(at..at + taps) else {
                    return;
                };
                for x in row.chunks_exact(c) {
                    if first {
                        y.copy_from_slice(x);
                        first = false;
                    } else {
                        M::max_lanes(y, x);
                    }
                }
            }
            if first {
                y.fill(-128);
            }
        }
    }
}

/// Average pool: each output pixel's window is cut to the input once, then channel by channel
/// the sum of its taps inside the input (a row of taps is every `channels`-th value of one
/// stretch of the input), divided by the count as the reference does (rounded half away from
/// zero). The reference finds every tap of every channel through an iterator: person_detect's
/// 3x3 pool over 256 channels took 38 instructions per tap on the Cortex-M4.
pub fn avg_pool2d(input: &[i8], output: &mut [i8], d: &PoolDims) {
    let c = d.channels.max(1);
    let mut ys = output.chunks_exact_mut(c);
    for oy in 0..d.out_h {
        let y0 = oy * d.stride;
        let ky_lo = d.pad_top.saturating_sub(y0).min(d.k_h);
        let ky_hi = (d.in_h + d.pad_top).saturating_sub(y0).clamp(ky_lo, d.k_h);
        for ox in 0..d.out_w {
            let Some(y) = ys.next() else { return };
            let x0 = ox * d.stride;
            let kx_lo = d.pad_left.saturating_sub(x0).min(d.k_w);
            let kx_hi = (d.in_w + d.pad_left).saturating_sub(x0).clamp(kx_lo, d.k_w);
            let cols = kx_hi - kx_lo;
            // The reference counts the taps in an `i32` too.
            let count = ((ky_hi - ky_lo) * cols) as i32;
            let half = count / 2;
            // The window's first tap (channel 0) and the length of a row's stretch.
            let at = ((y0 + ky_lo).saturating_sub(d.pad_top) * d.in_w + x0 + kx_lo)
                .saturating_sub(d.pad_left)
                * c;
            let span = cols.saturating_sub(1) * c + 1;
            for (ch, y) in y.iter_mut().enumerate() {
                let mut acc = 0i32;
                if cols > 0 {
                    for r in 0..ky_hi - ky_lo {
                        let from = at + r * d.in_w * c + ch;
                        let Some(row) = input.get(from..from + span) else {
                            return;
                        };
                        for &x in row.iter().step_by(c) {
                            acc = acc.wrapping_add(i32::from(x));
                        }
                    }
                }
                let v = if acc > 0 {
                    acc.wrapping_add(half)
                } else {
                    acc.wrapping_sub(half)
                };
                *y = v.checked_div(count).unwrap_or(0).clamp(-128, 127) as i8;
            }
        }
    }
}

/// Global average pool: channel sums in stack blocks, then the reference's requantisation.
pub fn global_average_pool(input: &[i8], output: &mut [i8], p: &MeanParams) {
    let mut acc = [0i32; BLOCK];
    let n = p.h * p.w;
    let start = (n as i32).wrapping_mul(p.input_offset);
    for c0 in (0..p.channels).step_by(BLOCK) {
        let cn = BLOCK.min(p.channels - c0);
        let Some(acc) = acc.get_mut(..cn) else { return };
        acc.fill(start);
        for x in input.chunks_exact(p.channels.max(1)).take(n) {
            let Some(x) = x.get(c0..c0 + cn) else { return };
            for (a, &x) in acc.iter_mut().zip(x) {
                *a = a.wrapping_add(i32::from(x));
            }
        }
        let Some(y) = output.get_mut(c0..c0 + cn) else {
            return;
        };
        for (y, &a) in y.iter_mut().zip(acc.iter()) {
            let v = multiply_by_quantized_multiplier(a, p.multiplier, p.shift)
                .wrapping_add(p.output_offset);
            *y = v.clamp(-128, 127) as i8;
        }
    }
}

#[cfg(test)]
mod tests;
