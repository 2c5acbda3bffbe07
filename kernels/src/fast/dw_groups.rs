//! Depthwise convolution group by group of four channels (DSP, Armv6-M): for each group the
//! kernel's taps are prepared once as [`DwTaps`] (each tap's input offset from the window's first
//! byte and its four weights widened to int16 pairs), with the group's requantisation constants;
//! then each row of output pixels is one call of [`Mac::dw_row`] (on DSP, taps and requantisation
//! in assembly).
//!
//! The folded bias makes a padded tap contribute `pad * w` (see [`super`]). The output pixels fall
//! into rectangles whose windows have the same taps inside the input (the interior, each border,
//! each corner); in each, the padded taps' products are one constant per channel, `pad *
//! sum(w outside)`, added to the folded bias once, and only the inside taps (a [`Win`] of the
//! kernel) are run (`depthwise_groups`). The sums are the reference's integers, so the output
//! is bit for bit its own.
//!
//! Given the generator's scratch, two paths write the padding out instead, so that all pixels of
//! an output row share their taps: on DSP a copy of the group's whole input with its left and
//! right padding (`depthwise_rows`, for short rows, where the rectangles' calls cost more than
//! the padded taps: [`rows_pay_off`]); on Armv6-M a strip of each output row's window rows as
//! unsigned bytes (`depthwise_strip`).

use super::mac::{Clamp, Mac};
use super::{FastConv, Requant};

/// The first channels of a layer's groups of four: 0, 4, 8, ..., and where `c` is not a
/// multiple of four (and more than four), one more, `c - 4`, whose group overlaps the one before:
/// its first channels are computed again, to the same bytes, and its last `c % 4` channels take
/// the group path too (with the per-pixel tail for its last two channels, a 16x16x18 3x3 layer
/// took 502,200 instructions on qemu-m4; this way 224,640). Fewer than four channels: no group
/// (the per-pixel path).
#[inline(always)]
pub(crate) fn groups(c: usize) -> impl Iterator<Item = usize> {
    // c.div_ceil(4) groups, the last one starting at c - 4 at the latest (none below 4).
    let n = if c < 4 { 0 } else { c.div_ceil(4) };
    (0..n).map(move |g| (4 * g).min(c.saturating_sub(4)))
}

/// A layer of fewer than four channels, which has no group: every output pixel by `tail` (until
/// it gives up). Nothing for four channels or more.
#[inline(always)]
fn below_four(
    input: &[i8],
    output: &mut [i8],
    d: &crate::ConvDims,
    tail: impl FnMut(&[i8], &mut [i8], (usize, usize)) -> bool,
) {
    let c = d.in_c;
    if c == 0 || c >= 4 {
        return;
    }
    tail_pixels(input, output, (c, d.out_w), (0..d.out_h, 0..d.out_w), tail);
}

/// The output pixels `rows` x `cols` (all `c` channels of each, the output `out_w` pixels wide)
/// by `tail`, row by row. False when `tail` gives up or a pixel is outside `output` (the caller
/// stops there).
#[inline(always)]
fn tail_pixels(
    input: &[i8],
    output: &mut [i8],
    (c, out_w): (usize, usize),
    (rows, cols): (core::ops::Range<usize>, core::ops::Range<usize>),
    mut tail: impl FnMut(&[i8], &mut [i8], (usize, usize)) -> bool,
) -> bool {
    for oy in rows {
        for ox in cols.clone() {
            let at = oy.wrapping_mul(out_w).wrapping_add(ox).wrapping_mul(c);
            let Some(y) = output.get_mut(at..).and_then(|y| y.get_mut(..c)) else {
                return false;
            };
            if !tail(input, y, (oy, ox)) {
                return false;
            }
        }
    }
    true
}

/// The largest kernel (`k_h * k_w` taps) of the group path: 5x5. Larger kernels take the
/// per-pixel path (the runs live on the stack, 12 bytes a tap).
pub const MAX_TAPS: usize = 25;

/// One kernel tap of a group of four channels: the input byte offset from the window's first byte
/// (`ky * in_w * c + kx * c`), and the weights of channels 0 and 2 (`w02`: low, high halfword) and
/// 1 and 3 (`w13`), as SMLABB/SMLATT read them next to SXTB16 of an input word.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DwTap {
    pub off: i32,
    pub w02: u32,
    pub w13: u32,
}

/// Taps of one group in `[k_h][k_w]` order, their offsets strictly increasing (which
/// [`DwTaps::fill`] ensures, and which the assembly's bounds proof rests on: a run's taps all lie
/// between its first and its last).
/// (The default has no taps: see [`DwTaps::fill`].)
#[derive(Debug, Clone, Default)]
pub struct DwTaps {
    taps: [DwTap; MAX_TAPS],
    n: usize,
    k_w: usize,
}

/// The taps `rows.0..rows.1` x `cols.0..cols.1` of a kernel.
pub type Win = ((usize, usize), (usize, usize));

/// Where a [`Win`] lies in a [`DwTaps`]: `rows` runs of `cols` taps, the first at index
/// `first`, each `k_w` taps after the previous; `span` holds the window's first to last tap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rect<'a> {
    pub span: &'a [DwTap],
    pub rows: usize,
    pub cols: usize,
    /// Taps between the end of one run and the start of the next.
    pub skip: usize,
}

/// Two int16 values as one word (`lo` in the low halfword).
#[inline(always)]
fn halves(lo: i32, hi: i32) -> u32 {
    u32::from(lo as u16) | (u32::from(hi as u16) << 16)
}

impl DwTaps {
    /// Whether [`DwTaps::fill`] takes the layer: depth multiplier 1, at least 4 channels, at
    /// most [`MAX_TAPS`] taps, a kernel no wider than the input (so that the offsets increase)
    /// and offsets that fit an `i32`.
    pub fn fits(d: &crate::ConvDims) -> bool {
        d.in_w
            .checked_mul(d.in_c)
            .is_some_and(|row| Self::fits_in(d, d.in_c, row))
    }

    /// [`DwTaps::fits`] for an input laid out `px` bytes a pixel and `row` bytes a row.
    fn fits_in(d: &crate::ConvDims, px: usize, row: usize) -> bool {
        let n = d.k_h.checked_mul(d.k_w);
        let end = row.checked_mul(d.k_h);
        let wide = d.k_w.checked_mul(px);
        d.in_c >= 4
            && d.out_c == d.in_c
            && n.is_some_and(|n| (1..=MAX_TAPS).contains(&n))
            && wide.is_some_and(|w| w <= row)
            && end.is_some_and(|e| i32::try_from(e).is_ok())
    }

    /// The taps of channels `c0..c0 + 4` of a layer that [`DwTaps::fits`] (weights
    /// `[k_h][k_w][c]`), and returns the sums of the four channels' weights. `None` (and no taps)
    /// where the layer does not fit or the weights are short.
    pub fn fill(&mut self, weights: &[i8], d: &crate::ConvDims, c0: usize) -> Option<[i32; 4]> {
        self.fill_in(weights, d, c0, (d.in_c, d.in_w.checked_mul(d.in_c)?))
    }

    /// [`DwTaps::fill`] for an input laid out `px` bytes a pixel and `row` bytes a row (the
    /// offsets are `ky * row + kx * px`).
    pub fn fill_in(
        &mut self,
        weights: &[i8],
        d: &crate::ConvDims,
        c0: usize,
        (px, row): (usize, usize),
    ) -> Option<[i32; 4]> {
        self.n = 0;
        if !Self::fits_in(d, px, row) {
            return None;
        }
        let c = d.in_c;
        let mut sums = [0i32; 4];
        let mut dst = super::mac::rows_mut(&mut self.taps, d.k_w);
        let w = weights.get(c0..)?;
        for ky in 0..d.k_h {
            let dst = dst.next()?;
            // In row-major order, so increasing (`fits_in`: a kernel row is no wider than an
            // input row, and the last offset fits an i32).
            let mut off = (ky * row) as i32;
            for (kx, t) in dst.iter_mut().enumerate() {
                let at = (ky * d.k_w + kx) * c;
                let Some(&[w0, w1, w2, w3]) = w.get(at..at + 4) else {
                    return None;
                };
                let w = [i32::from(w0), i32::from(w1), i32::from(w2), i32::from(w3)];
                for (s, w) in sums.iter_mut().zip(w) {
                    *s += w;
                }
                *t = DwTap {
                    off,
                    w02: halves(w[0], w[2]),
                    w13: halves(w[1], w[3]),
                };
                off += px as i32;
            }
        }
        self.n = d.k_h * d.k_w;
        self.k_w = d.k_w;
        Some(sums)
    }

    /// Where window `win` of the kernel lies, or `None` for an empty window or one outside the
    /// kernel. A window of whole kernel rows is one run.
    #[inline(always)]
    pub(crate) fn rect(&self, ((y0, y1), (x0, x1)): Win) -> Option<Rect<'_>> {
        let k_w = self.k_w;
        if y0 >= y1 || x0 >= x1 || x1 > k_w {
            return None;
        }
        let (first, last) = (y0 * k_w + x0, (y1 - 1) * k_w + x1 - 1);
        let span = self.taps.get(first..=last).filter(|_| last < self.n)?;
        let (rows, cols) = (y1 - y0, x1 - x0);
        Some(if cols == k_w {
            Rect {
                span,
                rows: 1,
                cols: rows * cols,
                skip: 0,
            }
        } else {
            Rect {
                span,
                rows,
                cols,
                skip: k_w - cols,
            }
        })
    }

    /// The sums of the four channels' weights over window `win` (0 for an empty one).
    #[inline(always)]
    pub fn sums(&self, win: Win) -> [i32; 4] {
        let [mut s0, mut s1, mut s2, mut s3] = [0i32; 4];
        for run in runs(self, win) {
            for t in run {
                s0 += i32::from(t.w02 as u16 as i16);
                s2 += (t.w02 as i32) >> 16;
                s1 += i32::from(t.w13 as u16 as i16);
                s3 += (t.w13 as i32) >> 16;
            }
        }
        [s0, s1, s2, s3]
    }
}

/// The output offset and the clamp's bounds as four int8 lanes, as the DSP assembly reads them
/// after the `Requant`s of [`Requant4`] and [`RequantCol`] (`repr(C)`: offset, lo, hi).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Lanes {
    pub offset: i32,
    pub lo: u32,
    pub hi: u32,
}

impl Lanes {
    #[inline(always)]
    pub fn new(k: &Clamp) -> Self {
        let lanes = |v: i32| u32::from_le_bytes([v as u8; 4]);
        Lanes {
            offset: k.offset,
            lo: lanes(k.lo),
            hi: lanes(k.hi),
        }
    }

    /// A requantised value plus the offset, saturated to int8 and clamped, as the assembly does
    /// with SSAT, then SSUB8/SEL against the bounds (the bounds lie in int8, so they saturate
    /// too).
    #[inline(always)]
    fn apply(&self, v: i32) -> i8 {
        let v = v.wrapping_add(self.offset);
        v.max(i32::from(self.lo as u8 as i8))
            .min(i32::from(self.hi as u8 as i8)) as i8
    }
}

/// The requantisation of four channels as [`Mac::dw_row`] reads it: each channel's short
/// form (multiplier, left shift plus one, `2^right`, right shift), then the [`Lanes`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Requant4 {
    rq: [Requant; 4],
    k: Lanes,
}

impl Requant4 {
    /// The short form of channels `c0..c0 + 4` (only for layers the generator proved narrow).
    pub fn new(p: &FastConv<'_>, c0: usize) -> Option<Self> {
        let (m, s) = (p.multiplier.get(c0..c0 + 4)?, p.shift.get(c0..c0 + 4)?);
        let mut rq = [Requant::ZERO; 4];
        for ((r, &m), &s) in rq.iter_mut().zip(m).zip(s) {
            *r = Requant::new::<true>(m, s);
        }
        Some(Requant4 {
            rq,
            k: Lanes::new(&Clamp::new(&p.quant)),
        })
    }
}

// The DSP assembly reads the offset and the bounds at these byte offsets.
const _: () = assert!(core::mem::offset_of!(Requant4, k) == 64);
const _: () = assert!(core::mem::offset_of!(RequantCol, k) == 16);

/// The requantisation of one channel as [`Mac::requant_col`] reads it: the channel's short form,
/// then the [`Lanes`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RequantCol {
    rq: Requant,
    k: Lanes,
}

impl RequantCol {
    /// The short form of a channel with multiplier `m` and shift `s` (layers proved narrow).
    #[inline(always)]
    pub fn new(m: i32, s: i32, k: &Clamp) -> Self {
        RequantCol {
            rq: Requant::new::<true>(m, s),
            k: Lanes::new(k),
        }
    }

    /// The same clamp for a channel with multiplier `m` and shift `s`.
    #[inline(always)]
    pub fn set(&mut self, m: i32, s: i32) {
        self.rq = Requant::new::<true>(m, s);
    }
}

/// [`Mac::requant_col`] in plain Rust: the short form of `Requant::apply` of one channel, the
/// offset, int8 saturation and the clamp, into `y[q * stride]` for `q < 4`.
#[inline(always)]
pub(crate) fn requant_col_portable<M: Mac + ?Sized>(
    acc: [i32; 4],
    k: &RequantCol,
    y: &mut [i8],
    stride: usize,
) {
    for (q, a) in acc.into_iter().enumerate() {
        if let Some(y) = y.get_mut(q * stride) {
            *y = k.k.apply(k.rq.short::<M>(a));
        }
    }
}

/// A row of output pixels of one group with the same window inside the input, as the DSP assembly
/// walks it (`repr(C)`: the assembly reads the fields at their offsets): per pixel the bias, the
/// window's taps from `px`, the requantisation into `y`, then `px += px_step`, `y += y_step`.
#[repr(C)]
#[derive(Debug)]
#[cfg_attr(not(tinynas_dsp), allow(dead_code))]
pub(crate) struct DwRow {
    pub bias: [i32; 4],
    pub rq: *const Requant4,
    /// The window's first tap, its runs' length, the bytes from a run's end to the next run, the
    /// number of runs, and the runs left (the assembly's counter).
    pub taps: *const DwTap,
    pub cols: usize,
    pub skip: usize,
    pub rows: usize,
    pub left: usize,
    pub px: *const i8,
    pub px_step: usize,
    pub y: *mut i8,
    pub y_step: usize,
    pub count: usize,
}

/// [`Mac::dw_row`] in plain Rust: per pixel [`Mac::dw_taps`] and [`requant_quad_portable`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn row_portable<M: Mac + ?Sized>(
    taps: &DwTaps,
    win: Win,
    bias: [i32; 4],
    rq: &Requant4,
    x: &[i8],
    (base, px_step): (isize, usize),
    count: usize,
    y: &mut [i8],
    (y_at, y_step): (usize, usize),
) {
    for i in 0..count {
        let at = base.wrapping_add((i * px_step) as isize);
        let acc = M::dw_taps(bias, x, at, taps, win);
        if let Some(y) = y.get_mut(y_at + i * y_step..) {
            requant_quad_portable::<M>(acc, rq, y);
        }
    }
}

/// [`Mac::dw_taps`] in plain Rust: `acc[j] += x[base + t.off + j] * w_j` over the taps of one
/// run. Taps outside `x` are skipped (the kernels never pass one).
#[inline(always)]
pub(crate) fn taps_portable(acc: [i32; 4], x: &[i8], base: isize, run: &[DwTap]) -> [i32; 4] {
    taps_read(acc, x, base, run, i32::from)
}

/// [`taps_portable`] with each input byte read by `byte` (as it is, or unsigned).
#[inline(always)]
fn taps_read(
    acc: [i32; 4],
    x: &[i8],
    base: isize,
    run: &[DwTap],
    byte: impl Fn(i8) -> i32,
) -> [i32; 4] {
    let mut acc = acc;
    let half = |v: u32, hi: bool| i32::from((if hi { v >> 16 } else { v }) as u16 as i16);
    for t in run {
        let at = base.wrapping_add(t.off as isize);
        let Some(v) = usize::try_from(at)
            .ok()
            .and_then(|at| x.get(at..at.checked_add(4)?))
        else {
            continue;
        };
        let w = [
            half(t.w02, false),
            half(t.w13, false),
            half(t.w02, true),
            half(t.w13, true),
        ];
        for ((a, &x), w) in acc.iter_mut().zip(v).zip(w) {
            *a = a.wrapping_add(byte(x) * w);
        }
    }
    acc
}

/// The runs of a window in a [`DwTaps`], one slice each.
#[inline(always)]
pub(crate) fn runs(taps: &DwTaps, win: Win) -> impl Iterator<Item = &[DwTap]> {
    let r = taps.rect(win);
    let (span, rows, cols, step) = r.map_or((&[][..], 0, 0, 1), |r| {
        (r.span, r.rows, r.cols, r.cols + r.skip)
    });
    (0..rows).filter_map(move |i| span.get(i * step..i * step + cols))
}

/// The requantisation of four channels of one pixel in plain Rust: the short form of
/// `Requant::apply`, the offset, int8
/// saturation and the clamp.
#[inline(always)]
pub(crate) fn requant_quad_portable<M: Mac + ?Sized>(acc: [i32; 4], k: &Requant4, y: &mut [i8]) {
    for ((y, a), rq) in y.iter_mut().zip(acc).zip(&k.rq) {
        *y = k.k.apply(rq.short::<M>(a));
    }
}

/// Runs of output rows (or columns) whose windows have the same taps inside the input:
/// `(from, to, k_lo, k_hi)` for outputs `from..to`, taps `k_lo..k_hi` along that side, written
/// into `v` (in place: returned by value, its 100 bytes were copied with `memcpy`, whose code
/// was then linked for that alone). At most [`MAX_SPANS`] (the taps inside change at most `k`
/// times at each edge); `None` for more.
#[inline(always)]
fn spans(
    v: &mut Spans,
    out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    len: usize,
) -> Option<&Spans> {
    v.n = 0;
    for o in 0..out {
        let at = o * stride;
        let lo = pad.saturating_sub(at).min(k);
        let hi = (len + pad).saturating_sub(at).clamp(lo, k);
        let (o16, lo, hi) = (u16::try_from(o).ok()?, lo as u16, hi as u16);
        match v.n.checked_sub(1).and_then(|i| v.s.get_mut(i)) {
            Some(last) if (last[2], last[3]) == (lo, hi) => last[1] = o16 + 1,
            _ => {
                *v.s.get_mut(v.n)? = [o16, o16 + 1, lo, hi];
                v.n += 1;
            }
        }
    }
    Some(v)
}

const MAX_SPANS: usize = 12;

/// [`spans`], 16 bits a field (to keep the stack small).
struct Spans {
    s: [[u16; 4]; MAX_SPANS],
    n: usize,
}

impl Spans {
    const EMPTY: Spans = Spans {
        s: [[0; 4]; MAX_SPANS],
        n: 0,
    };

    /// [`spans`] of a layer's output rows, filled in place.
    #[inline(always)]
    fn of_rows(&mut self, d: &crate::ConvDims) -> Option<&Spans> {
        spans(self, d.out_h, d.k_h, d.stride, d.pad_top, d.in_h)
    }

    /// [`spans`] of a layer's output columns, filled in place.
    #[inline(always)]
    fn of_cols(&mut self, d: &crate::ConvDims) -> Option<&Spans> {
        spans(self, d.out_w, d.k_w, d.stride, d.pad_left, d.in_w)
    }

    fn iter(&self) -> impl Iterator<Item = (usize, usize, usize, usize)> + Clone + '_ {
        let s = self.s.get(..self.n).unwrap_or(&[]);
        s.iter()
            .map(|&[a, b, c, d]| (a.into(), b.into(), c.into(), d.into()))
    }
}

/// The group path of a depthwise layer that [`DwTaps::fits`]: the channel groups of [`groups`]
/// (a layer of fewer than four channels by `tail`, pixel by pixel). False (nothing written)
/// where the layer does not fit.
///
/// Each rectangle of output pixels with the same window runs along its rows (or columns, where
/// it is taller than wide), a row per [`Mac::dw_row`]. A window wholly in the padding has no
/// taps: its pixels are the requantised bias.
// One copy at opt-level s or z (see `DwBlocks::pixel`).
#[cfg_attr(tinynas_small, inline(never))]
#[cfg_attr(not(tinynas_small), inline(always))]
pub(super) fn depthwise_groups<M: Mac, const SHORT: bool>(
    input: &[i8],
    output: &mut [i8],
    p: &FastConv<'_>,
    pad: i8,
    mut tail: impl FnMut(&[i8], &mut [i8], (usize, usize)) -> bool,
) -> bool {
    let d = p.dims;
    let c = d.in_c;
    let (mut sy, mut sx) = (Spans::EMPTY, Spans::EMPTY);
    let (Some(ys), Some(xs), true) = (sy.of_rows(&d), sx.of_cols(&d), DwTaps::fits(&d)) else {
        return false;
    };
    let full = ((0, d.k_h), (0, d.k_w));
    let pad = i32::from(pad);
    let (ci, in_w, in_row) = (c as isize, d.in_w as isize, d.in_w * c);
    // The window's first byte and the output of pixel (oy, ox), channel c0.
    let base = |oy: usize, ox: usize, c0: usize| {
        let y0 = (oy * d.stride) as isize - d.pad_top as isize;
        let x0 = (ox * d.stride) as isize - d.pad_left as isize;
        (y0 * in_w + x0) * ci + c0 as isize
    };
    let y_at = |oy: usize, ox: usize, c0: usize| (oy * d.out_w + ox) * c + c0;
    let mut taps = DwTaps::default();
    // Armv6-M's row loop with its three-multiply requantisation, where the layer allows it.
    let rows3 = SHORT && M::strip_row_takes(p);
    for c0 in groups(c) {
        let (Some(bias), Some(m), Some(s), Some(total)) = (
            p.bias.get(c0..c0 + 4),
            p.multiplier.get(c0..c0 + 4),
            p.shift.get(c0..c0 + 4),
            taps.fill(p.weights, &d, c0),
        ) else {
            return true;
        };
        let rq = if SHORT { Requant4::new(p, c0) } else { None };
        // (Never: the slices were read above.) So with `SHORT`, `rq` is `Some` below.
        if SHORT && rq.is_none() {
            return true;
        }
        for (oy0, oy1, ky_lo, ky_hi) in ys.iter() {
            for (ox0, ox1, kx_lo, kx_hi) in xs.iter() {
                let win = ((ky_lo, ky_hi), (kx_lo, kx_hi));
                let inside = if win == full { total } else { taps.sums(win) };
                // The folded bias plus the padded taps' products.
                let mut b = [0i32; 4];
                for (((b, &bias), &t), &i) in b.iter_mut().zip(bias).zip(&total).zip(&inside) {
                    *b = bias.wrapping_add(pad.wrapping_mul(t.wrapping_sub(i)));
                }
                // A window of whole kernel rows is one run: Armv6-M's row loop takes it.
                let run = if rows3 {
                    taps.rect(win).filter(|r| r.rows == 1).map(|r| r.span)
                } else {
                    None
                };
                let empty = taps.rect(win).is_none();
                match &rq {
                    _ if empty => {}
                    // The rectangle in one call: runs of pixels along its longer side, one
                    // per row or column of the shorter.
                    Some(k) if run.is_none() => {
                        let (h, w) = (oy1 - oy0, ox1 - ox0);
                        // Input and output steps to the next pixel of a row, of a column.
                        let across = (d.stride * c, c);
                        let down = (d.stride * in_row, d.out_w * c);
                        let ((pixel, next), n) = if w >= h {
                            ((across, down), (w, h))
                        } else {
                            ((down, across), (h, w))
                        };
                        let at = (base(oy0, ox0, c0), pixel.0, next.0);
                        let ys = (y_at(oy0, ox0, c0), pixel.1, next.1);
                        M::dw_rows::<false>(&taps, win, b, k, input, at, n, output, ys);
                    }
                    // Armv6-M's row loop, where a window is one run of taps: row by row (or
                    // column by column), each row the instruction set's loop if it takes it.
                    Some(k) if ox1 - ox0 >= oy1 - oy0 => {
                        for oy in oy0..oy1 {
                            let at = (base(oy, ox0, c0), d.stride * c);
                            let ys = (y_at(oy, ox0, c0), c);
                            let n = ox1 - ox0;
                            if let Some(run) = run {
                                if M::strip_row::<true>(b, input, at, run, p, c0, n, output, ys) {
                                    continue;
                                }
                            }
                            M::dw_row(&taps, win, b, k, input, at, n, output, ys);
                        }
                    }
                    Some(k) => {
                        for ox in ox0..ox1 {
                            let at = (base(oy0, ox, c0), d.stride * in_row);
                            let ys = (y_at(oy0, ox, c0), d.out_w * c);
                            let n = oy1 - oy0;
                            if let Some(run) = run {
                                if M::strip_row::<true>(b, input, at, run, p, c0, n, output, ys) {
                                    continue;
                                }
                            }
                            M::dw_row(&taps, win, b, k, input, at, n, output, ys);
                        }
                    }
                    None => {}
                }
                // A window wholly in the padding (no taps), and every window without the short
                // requantisation: pixel by pixel.
                // With `SHORT` (`rq` always `Some`, above) only a window wholly in the padding
                // comes here (a padding wider than the kernel; no layer TF Lite makes): such a
                // pixel is `tail`'s, all its channels (for each group again, the same bytes), so
                // no copy of the requantisation is compiled for it.
                if SHORT && empty {
                    let (rows, cols) = (oy0..oy1, ox0..ox1);
                    if !tail_pixels(input, output, (c, d.out_w), (rows, cols), &mut tail) {
                        return true;
                    }
                } else if rq.is_none() || empty {
                    for (oy, ox) in (oy0..oy1).flat_map(|y| (ox0..ox1).map(move |x| (y, x))) {
                        // No taps inside: the bias alone. With `SHORT`, `rq` is always `Some`
                        // (above), so only such windows come here: its copy compiles no
                        // tap loop.
                        let acc = if SHORT || empty {
                            b
                        } else {
                            M::dw_taps(b, input, base(oy, ox, c0), &taps, win)
                        };
                        let at = y_at(oy, ox, c0);
                        let Some(y) = output.get_mut(at..at + 4) else {
                            return true;
                        };
                        for ((y, a), (&m, &s)) in y.iter_mut().zip(acc).zip(m.iter().zip(s)) {
                            *y = Requant::new::<SHORT>(m, s).apply::<M, SHORT>(a, &p.quant);
                        }
                    }
                }
            }
        }
    }
    below_four(input, output, &d, tail);
    true
}

/// Whether the group path (`depthwise_groups`) takes a layer: depth multiplier 1, at least 4
/// channels, at most [`MAX_TAPS`] taps, a kernel no wider than the input ([`DwTaps::fits`]),
/// and output rows and columns whose windows change at most `MAX_SPANS` (12) times. The generator
/// calls [`super::depthwise_conv2d_groups`] for these layers.
pub fn groups_take(d: &crate::ConvDims) -> bool {
    let (mut sy, mut sx) = (Spans::EMPTY, Spans::EMPTY);
    DwTaps::fits(d) && sy.of_rows(d).is_some() && sx.of_cols(d).is_some()
}

/// Columns of one group's padded copy in [`depthwise_rows`]: the left padding, the input, and
/// the right padding the last output column's window reaches (`None` on overflow). Also the
/// rows of [`super::dw_channel`]'s ring.
pub(super) fn padded_width(d: &crate::ConvDims) -> Option<usize> {
    let have = d.pad_left.checked_add(d.in_w)?;
    let need = match d.out_w.checked_sub(1) {
        Some(last) => last.checked_mul(d.stride)?.checked_add(d.k_w)?,
        None => 0,
    };
    Some(have.max(need))
}

/// Bytes the DSP padded-rows path ([`depthwise_rows`]) needs: one group of four channels of the
/// whole input, each row with its left and right padding, plus 3 to word-align it (`None` where
/// it does not take the layer).
pub(crate) fn full_rows_bytes(d: &crate::ConvDims) -> Option<usize> {
    let row = padded_width(d)?.checked_mul(4)?;
    DwTaps::fits_in(d, 4, row).then_some(())?;
    row.checked_mul(d.in_h)?.checked_add(3)
}

/// Scratch bytes of [`super::depthwise_conv2d_rows`], the generator's choice for a depthwise
/// layer: the Armv6-M path's strip of `k_h` padded rows of one group (`depthwise_strip`), and,
/// where [`rows_pay_off`], all padded rows of one group for the DSP path; 0 where neither path
/// takes the layer. (Each path checks the length it needs; a shorter scratch makes the DSP path
/// run the layer without it.)
pub fn rows_scratch_bytes(d: &crate::ConvDims) -> usize {
    let strip = strip_bytes(d).unwrap_or(0);
    let full = if rows_pay_off(d) {
        full_rows_bytes(d).unwrap_or(0)
    } else {
        0
    };
    strip.max(full)
}

/// The depthwise group path with the left and right padding written out: each group of four
/// channels is first copied into `scratch`, its rows padded with the zero point, so that every
/// output pixel of an output row has the same taps inside (only the rows at the top and bottom
/// borders differ) and each output row is one [`Mac::dw_row`] over the whole row. Meant for
/// layers whose output rows are short (the border columns then cost more as separate calls than
/// their padded taps do). The groups of [`groups`], as [`depthwise_groups`].
/// False (nothing written) where the layer does not fit or `scratch` is short.
// One copy at opt-level s or z (see `DwBlocks::pixel`).
#[cfg_attr(tinynas_small, inline(never))]
#[cfg_attr(not(tinynas_small), inline(always))]
pub(super) fn depthwise_rows<M: Mac, const SHORT: bool>(
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i8],
    p: &FastConv<'_>,
    pad: i8,
    mut tail: impl FnMut(&[i8], &mut [i8], (usize, usize)) -> bool,
) -> bool {
    let d = p.dims;
    let c = d.in_c;
    let need = full_rows_bytes(&d).unwrap_or(0);
    let mut sy = Spans::EMPTY;
    let (Some(width), Some(ys)) = (padded_width(&d), sy.of_rows(&d)) else {
        return false;
    };
    // Word-aligned (the planner left 3 bytes).
    let align = scratch.as_ptr().align_offset(4).min(3);
    let Some(buf) = need
        .checked_sub(3)
        .and_then(|n| scratch.get_mut(align..align + n))
    else {
        return false;
    };
    let row = 4 * width;
    let pad_word = [pad; 4];
    let padi = i32::from(pad);
    let in_row = d.in_w.wrapping_mul(c);
    let mut taps = DwTaps::default();
    for c0 in groups(c) {
        // The group's rows, padded.
        for (iy, dst) in super::mac::rows_mut(buf, row).enumerate().take(d.in_h) {
            let src = input.get(iy.wrapping_mul(in_row).wrapping_add(c0)..);
            let (Some((left, rest)), Some(src)) = (dst.split_at_mut_checked(4 * d.pad_left), src)
            else {
                return true;
            };
            let Some((mid, right)) = rest.split_at_mut_checked(4 * d.in_w) else {
                return true;
            };
            for w in super::mac::rows_mut(left, 4).chain(super::mac::rows_mut(right, 4)) {
                w.copy_from_slice(&pad_word);
            }
            if !M::gather_words(mid, src, c) {
                return true;
            }
        }
        let (Some(bias), Some(m), Some(s), Some(total)) = (
            p.bias.get(c0..c0 + 4),
            p.multiplier.get(c0..c0 + 4),
            p.shift.get(c0..c0 + 4),
            taps.fill_in(p.weights, &d, c0, (4, row)),
        ) else {
            return true;
        };
        let rq = if SHORT { Requant4::new(p, c0) } else { None };
        // (Never: the slices were read above.) So with `SHORT`, `rq` is `Some` below.
        if SHORT && rq.is_none() {
            return true;
        }
        for (oy0, oy1, ky_lo, ky_hi) in ys.iter() {
            let win = ((ky_lo, ky_hi), (0, d.k_w));
            let inside = if (ky_lo, ky_hi) == (0, d.k_h) {
                total
            } else {
                taps.sums(win)
            };
            // The folded bias plus the products of the padded rows' taps.
            let mut b = [0i32; 4];
            for (((b, &bias), &t), &i) in b.iter_mut().zip(bias).zip(&total).zip(&inside) {
                *b = bias.wrapping_add(padi.wrapping_mul(t.wrapping_sub(i)));
            }
            // The window of output column 0 starts at column 0 of the padded rows.
            let base = |oy: usize| {
                let y0 = (oy.wrapping_mul(d.stride) as isize).wrapping_sub(d.pad_top as isize);
                y0.wrapping_mul(row as isize)
            };
            let step = d.stride.wrapping_mul(4);
            let y_at = |oy: usize| oy.wrapping_mul(d.out_w).wrapping_mul(c).wrapping_add(c0);
            let empty = taps.rect(win).is_none();
            if let (Some(k), false) = (&rq, empty) {
                // The span's rows in one call.
                let px = (base(oy0), step, d.stride.wrapping_mul(row));
                let ys = (y_at(oy0), c, d.out_w.wrapping_mul(c));
                M::dw_rows::<true>(&taps, win, b, k, buf, px, (d.out_w, oy1 - oy0), output, ys);
                continue;
            }
            // With `SHORT`, only a row wholly in the padding comes here (a padding taller than
            // the kernel): its pixels are `tail`'s, as in `depthwise_groups`.
            if SHORT {
                let (rows, cols) = (oy0..oy1, 0..d.out_w);
                if !tail_pixels(input, output, (c, d.out_w), (rows, cols), &mut tail) {
                    return true;
                }
                continue;
            }
            for oy in oy0..oy1 {
                let (base, y_at) = (base(oy), y_at(oy));
                // No taps inside (a row wholly in the padding: the bias alone), or the full
                // requantisation.
                for ox in 0..d.out_w {
                    let at = base.wrapping_add(step.wrapping_mul(ox) as isize);
                    // With `SHORT` only such rows come here (as in `depthwise_groups`).
                    let acc = if SHORT || empty {
                        b
                    } else {
                        M::dw_taps(b, buf, at, &taps, win)
                    };
                    let yo = y_at.wrapping_add(ox.wrapping_mul(c));
                    let Some(y) = output.get_mut(yo..).and_then(|y| y.get_mut(..4)) else {
                        return true;
                    };
                    for ((y, a), (&m, &s)) in y.iter_mut().zip(acc).zip(m.iter().zip(s)) {
                        *y = Requant::new::<SHORT>(m, s).apply::<M, SHORT>(a, &p.quant);
                    }
                }
            }
        }
    }
    below_four(input, output, &d, tail);
    true
}

/// Whether the padded-rows path ([`super::depthwise_conv2d_rows`]) is estimated to take fewer
/// instructions than the rectangles of the group path on the layer (the generator's choice):
/// the group path pays per rectangle of output pixels with the same window (its bias) and per
/// call of [`Mac::dw_row`]; the padded rows pay for the copy and for the padded taps at the left
/// and right borders. The weights are measured on qemu-m4 (instructions per rectangle, call,
/// copied word and tap), when each output row was a call of its own; with one call per
/// rectangle ([`Mac::dw_rows`]) the choice was checked again on person_detect: forcing either
/// path on each of its 13 depthwise layers, it stays within 1.6 k instructions of the better.
pub fn rows_pay_off(d: &crate::ConvDims) -> bool {
    const RECT: u64 = 350;
    const CALL: u64 = 400;
    const TAP: u64 = 11;
    const WORD: u64 = 5;
    const ROW: u64 = 25;
    let (mut sy, mut sx) = (Spans::EMPTY, Spans::EMPTY);
    let (Some(ys), Some(xs), Some(width)) = (sy.of_rows(d), sx.of_cols(d), padded_width(d)) else {
        return false;
    };
    if full_rows_bytes(d).is_none() {
        return false;
    }
    let n = |v: usize| v as u64;
    let (mut groups, mut rows) = (0u64, 0u64);
    for (oy0, oy1, ky0, ky1) in ys.iter() {
        let h = n(oy1 - oy0);
        rows += RECT + h * CALL;
        for (ox0, ox1, kx0, kx1) in xs.iter() {
            let w = n(ox1 - ox0);
            groups += RECT + h.min(w) * CALL + h * w * n((ky1 - ky0) * (kx1 - kx0)) * TAP;
            rows += h * w * n((ky1 - ky0) * d.k_w) * TAP;
        }
    }
    rows += n(d.in_h) * (ROW + n(width) * WORD);
    rows < groups
}

/// [`Mac::dw_taps_u8`] in plain Rust: [`taps_portable`] with the input bytes read unsigned;
/// taps whose word leaves `x` are skipped (the kernels never pass one).
#[inline(always)]
pub(crate) fn taps_u8_portable(acc: [i32; 4], x: &[i8], base: isize, run: &[DwTap]) -> [i32; 4] {
    taps_read(acc, x, base, run, |x| i32::from(x as u8))
}

/// Bytes of the strip [`depthwise_strip`] works in: `k_h` rows of one group of four channels,
/// each with its left and right padding (`None` where the layer does not fit).
pub(crate) fn strip_bytes(d: &crate::ConvDims) -> Option<usize> {
    let row = padded_width(d)?.checked_mul(4)?;
    DwTaps::fits_in(d, 4, row).then_some(())?;
    row.checked_mul(d.k_h)
}

/// The Armv6-M depthwise path, group by group of four channels, in a strip of `scratch`
/// ([`strip_bytes`]): for each output row the window's input rows of the group are copied into
/// the strip as unsigned bytes (`x ^ 0x80`), with their left and right padding (the zero point,
/// likewise), so that every pixel of the row runs the same taps ([`Mac::dw_taps_u8`]: the taps of
/// the window's rows inside the input, all columns); the bias of each band of rows adds the
/// padded rows' products and subtracts `128 * sum(w)` of the taps run, which leaves exactly the
/// reference's sums. The groups of [`groups`], as [`depthwise_groups`]. False (nothing written)
/// where the layer does not fit or `scratch` is short.
#[inline(always)]
pub(super) fn depthwise_strip<M: Mac, const SHORT: bool>(
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i8],
    p: &FastConv<'_>,
    pad: i8,
    tail: impl FnMut(&[i8], &mut [i8], (usize, usize)) -> bool,
) -> bool {
    let d = p.dims;
    let c = d.in_c;
    let mut sy = Spans::EMPTY;
    let (Some(need), Some(width), Some(ys)) = (strip_bytes(&d), padded_width(&d), sy.of_rows(&d))
    else {
        return false;
    };
    let Some(strip) = scratch.get_mut(..need) else {
        return false;
    };
    let row = 4 * width;
    let padu = (pad as u8) ^ 0x80;
    let padi = i32::from(pad);
    let in_row = d.in_w.wrapping_mul(c);
    let mut taps = DwTaps::default();
    // Armv6-M's row loop with its three-multiply requantisation, where the layer allows it.
    let rows3 = SHORT && M::strip_row_takes(p);
    for c0 in groups(c) {
        // The group's taps, their offsets in the strip increasing (`fits_in`), and weight sums.
        let Some(total) = taps.fill_in(p.weights, &d, c0, (4, row)) else {
            return true;
        };
        let (Some(bias), Some(m), Some(s)) = (
            p.bias.get(c0..c0 + 4),
            p.multiplier.get(c0..c0 + 4),
            p.shift.get(c0..c0 + 4),
        ) else {
            return true;
        };
        let mut rq = [Requant::ZERO; 4];
        for ((r, &m), &s) in rq.iter_mut().zip(m).zip(s) {
            *r = Requant::new::<SHORT>(m, s);
        }
        for (oy0, oy1, ky_lo, ky_hi) in ys.iter() {
            // Whole kernel rows: one run of taps (none for a band wholly in the padding).
            let win = ((ky_lo, ky_hi), (0, d.k_w));
            let run = taps.rect(win).map_or(&[][..], |r| r.span);
            let inside = taps.sums(win);
            // The folded bias, the padded rows' products, less the unsigned bytes' excess.
            let mut b = [0i32; 4];
            for (((b, &bias), &t), &i) in b.iter_mut().zip(bias).zip(&total).zip(&inside) {
                let padded = padi.wrapping_mul(t.wrapping_sub(i));
                *b = bias.wrapping_add(padded).wrapping_sub(i.wrapping_mul(128));
            }
            for oy in oy0..oy1 {
                // The window's rows inside the input, into strip rows ky_lo..ky_hi.
                let y0 = (oy.wrapping_mul(d.stride)).wrapping_sub(d.pad_top);
                let rows = super::mac::rows_mut(strip, row).enumerate();
                for (ky, dst) in rows.skip(ky_lo).take(ky_hi - ky_lo) {
                    let iy = y0.wrapping_add(ky);
                    let at = iy.wrapping_mul(in_row).wrapping_add(c0);
                    let Some((left, rest)) = dst.split_at_mut_checked(4 * d.pad_left) else {
                        return true;
                    };
                    let Some((mid, right)) = rest.split_at_mut_checked(4 * d.in_w) else {
                        return true;
                    };
                    left.fill(padu as i8);
                    right.fill(padu as i8);
                    // The row's pixels `c` bytes apart (the last input row, whose last pixel
                    // ends `c - c0 - 4` bytes before `in_w * c`, word by word).
                    match input.get(at..).and_then(|s| s.get(..in_row)) {
                        Some(src) if M::strip_copy(mid, src, c) => {}
                        Some(src) => {
                            for (px, x) in
                                super::mac::rows_mut(mid, 4).zip(super::mac::rows(src, c))
                            {
                                if let ([p0, p1, p2, p3], [a, b, e, f, ..]) = (px, x) {
                                    (*p0, *p1, *p2, *p3) =
                                        (a ^ i8::MIN, b ^ i8::MIN, e ^ i8::MIN, f ^ i8::MIN);
                                }
                            }
                        }
                        None => {
                            for (ix, px) in super::mac::rows_mut(mid, 4).enumerate() {
                                let at = at.wrapping_add(ix.wrapping_mul(c));
                                let x = input.get(at..).and_then(|x| x.get(..4));
                                if let (Some(&[a, b, e, f]), [p0, p1, p2, p3]) = (x, px) {
                                    (*p0, *p1, *p2, *p3) =
                                        (a ^ i8::MIN, b ^ i8::MIN, e ^ i8::MIN, f ^ i8::MIN);
                                }
                            }
                        }
                    }
                }
                let y_at = oy.wrapping_mul(d.out_w).wrapping_mul(c).wrapping_add(c0);
                let step = d.stride.wrapping_mul(4);
                // The whole row in one loop where the instruction set has it.
                if rows3
                    && M::strip_row::<false>(
                        b,
                        strip,
                        (0, step),
                        run,
                        p,
                        c0,
                        d.out_w,
                        output,
                        (y_at, c),
                    )
                {
                    continue;
                }
                for ox in 0..d.out_w {
                    let acc = M::dw_taps_u8(b, strip, step.wrapping_mul(ox) as isize, run);
                    let yo = y_at.wrapping_add(ox.wrapping_mul(c));
                    let Some(y) = output.get_mut(yo..).and_then(|y| y.get_mut(..4)) else {
                        return true;
                    };
                    for ((y, a), rq) in y.iter_mut().zip(acc).zip(&rq) {
                        *y = rq.apply::<M, SHORT>(a, &p.quant);
                    }
                }
            }
        }
    }
    below_four(input, output, &d, tail);
    true
}

/// Whether every tap of `run` reads a whole word of `x` at `base + off`: the first and the last
/// do (the offsets of a run increase, see `DwTaps`).
#[allow(dead_code)]
#[inline(always)]
pub(crate) fn run_inside(x: &[i8], base: isize, run: &[DwTap]) -> bool {
    let (Some(first), Some(last)) = (run.first(), run.last()) else {
        return false;
    };
    let lo = base.checked_add(first.off as isize);
    let hi = base
        .checked_add(last.off as isize)
        .and_then(|v| v.checked_add(4));
    matches!((lo, hi), (Some(lo), Some(hi)) if lo >= 0 && hi as usize <= x.len())
}
