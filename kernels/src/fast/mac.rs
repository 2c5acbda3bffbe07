//! The inner loops every fast kernel is built on, one implementation per instruction set.
//!
//! A kernel is generic over [`Mac`] and instantiated with [`Selected`], the implementation of the
//! target it is compiled for; tests instantiate every implementation on the host (the DSP one with
//! its instructions emulated, see `isa.rs`) and compare them with the reference kernels.
//!
//! Slices are walked with `chunks_exact`, `rows` and `zip`, so there is no bounds check per MAC
//! and no index that could be out of range: slices shorter than each other give a shorter sum, never a
//! fault. Every sum wraps like the reference kernels' (`i32` arithmetic is exact modulo 2^32 in any
//! order).

use super::dw_groups::{DwTap, DwTaps, Requant4, RequantCol, Win};

/// `s` in consecutive pieces of `n` (a shorter tail left out, [`Rows::remainder`]), like
/// `chunks_exact`; unlike a `Zip` of `ChunksExact`, a `zip` of these never divides by `n` to size
/// itself, so no division-by-zero panic path is left in the binary (the panic-never link check).
/// Its `next` is always inlined: at opt-level `z` the compiler calls `ChunksExact`'s and
/// `FromFn`'s `next` (and `Zip`'s, `Enumerate`'s) once per row instead, which took 38 % of a small
/// model's instructions (see [`zip`]).
#[inline(always)]
pub(crate) fn rows<T>(s: &[T], n: usize) -> Rows<'_, T> {
    Rows { rest: s, n }
}

/// [`rows`] of a mutable slice.
#[inline(always)]
pub(crate) fn rows_mut<T>(s: &mut [T], n: usize) -> RowsMut<'_, T> {
    RowsMut { rest: s, n }
}

/// See [`rows`].
pub(crate) struct Rows<'a, T> {
    rest: &'a [T],
    n: usize,
}

impl<'a, T> Rows<'a, T> {
    /// What is left: after the last row, the shorter tail (as `ChunksExact::remainder`).
    #[inline(always)]
    #[cfg_attr(not(any(tinynas_small, test)), allow(dead_code))]
    pub(crate) fn remainder(&self) -> &'a [T] {
        self.rest
    }
}

impl<'a, T> Iterator for Rows<'a, T> {
    type Item = &'a [T];
    #[inline(always)]
    fn next(&mut self) -> Option<&'a [T]> {
        if self.n == 0 {
            return None;
        }
        let (row, tail) = self.rest.split_at_checked(self.n)?;
        self.rest = tail;
        Some(row)
    }
}

/// See [`rows_mut`].
pub(crate) struct RowsMut<'a, T> {
    rest: &'a mut [T],
    n: usize,
}

impl<'a, T> RowsMut<'a, T> {
    /// What is left: after the last row, the shorter tail (as `ChunksExactMut::into_remainder`).
    #[inline(always)]
    #[cfg_attr(not(any(tinynas_small, test)), allow(dead_code))]
    pub(crate) fn into_remainder(self) -> &'a mut [T] {
        self.rest
    }
}

impl<'a, T> Iterator for RowsMut<'a, T> {
    type Item = &'a mut [T];
    #[inline(always)]
    fn next(&mut self) -> Option<&'a mut [T]> {
        if self.n == 0 {
            return None;
        }
        // (Checked before the slice is taken, so that `into_remainder` still has it.)
        if self.rest.len() < self.n {
            return None;
        }
        let (row, tail) = core::mem::take(&mut self.rest).split_at_mut_checked(self.n)?;
        self.rest = tail;
        Some(row)
    }
}

/// `a.zip(b)`, `it.enumerate()` and `s.chunks_exact(n)` for the loops around the inner ones.
///
/// Where the crate is built for size (`tinynas_small`: opt-level `s` or `z`) these are our own
/// adapters, whose `next` is always inlined: at `z` the compiler calls core's `Zip`, `Enumerate`,
/// `Take` and `ChunksExact` `next` once per item instead (with `FromFn`'s, 38 % of a small model's
/// instructions at `z`). At 2 and 3 they are core's, which the compiler inlines and sizes once
/// (our own measured up to 3.5 % slower there). The host's unit tests and the board test at
/// opt-level `s` take our own, the other board tests (opt-level 3) core's.
#[cfg(any(tinynas_small, test))]
#[inline(always)]
pub(crate) fn zip<A: Iterator, B: IntoIterator>(a: A, b: B) -> Both<A, B::IntoIter> {
    Both(a, b.into_iter())
}

/// See [`zip`].
#[cfg(not(any(tinynas_small, test)))]
#[inline(always)]
pub(crate) fn zip<A: Iterator, B: IntoIterator>(a: A, b: B) -> core::iter::Zip<A, B::IntoIter> {
    a.zip(b)
}

/// See [`zip`].
#[cfg(any(tinynas_small, test))]
#[inline(always)]
pub(crate) fn enumerate<I: Iterator>(it: I) -> Counted<I> {
    Counted(it, 0)
}

/// See [`zip`].
#[cfg(not(any(tinynas_small, test)))]
#[inline(always)]
pub(crate) fn enumerate<I: Iterator>(it: I) -> core::iter::Enumerate<I> {
    it.enumerate()
}

/// `s.iter().enumerate().take(n)`; see [`zip`].
#[cfg(any(tinynas_small, test))]
#[inline(always)]
pub(crate) fn enumerate_first<T>(s: &[T], n: usize) -> Counted<core::slice::Iter<'_, T>> {
    enumerate(s.get(..n).unwrap_or(s).iter())
}

/// See [`enumerate_first`].
#[cfg(not(any(tinynas_small, test)))]
#[inline(always)]
pub(crate) fn enumerate_first<T>(
    s: &[T],
    n: usize,
) -> core::iter::Take<core::iter::Enumerate<core::slice::Iter<'_, T>>> {
    s.iter().enumerate().take(n)
}

/// `s` in pieces of `n.max(1)`; see [`zip`].
#[cfg(any(tinynas_small, test))]
#[inline(always)]
pub(crate) fn chunks_mut<T>(s: &mut [T], n: usize) -> RowsMut<'_, T> {
    rows_mut(s, n.max(1))
}

/// See [`chunks_mut`].
#[cfg(not(any(tinynas_small, test)))]
#[inline(always)]
pub(crate) fn chunks_mut<T>(s: &mut [T], n: usize) -> core::slice::ChunksExactMut<'_, T> {
    s.chunks_exact_mut(n.max(1))
}

/// `s` in pieces of `n.max(1)`; see [`zip`].
#[cfg(any(tinynas_small, test))]
#[inline(always)]
pub(crate) fn chunks<T>(s: &[T], n: usize) -> Rows<'_, T> {
    rows(s, n.max(1))
}

/// See [`chunks`].
#[cfg(not(any(tinynas_small, test)))]
#[inline(always)]
pub(crate) fn chunks<T>(s: &[T], n: usize) -> core::slice::ChunksExact<'_, T> {
    s.chunks_exact(n.max(1))
}

/// See [`zip`].
#[cfg_attr(not(any(tinynas_small, test)), allow(dead_code))]
pub(crate) struct Both<A, B>(A, B);

impl<A: Iterator, B: Iterator> Iterator for Both<A, B> {
    type Item = (A::Item, B::Item);
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        let a = self.0.next()?;
        Some((a, self.1.next()?))
    }
}

/// See [`zip`].
#[cfg_attr(not(any(tinynas_small, test)), allow(dead_code))]
pub(crate) struct Counted<I>(I, usize);

impl<I: Iterator> Iterator for Counted<I> {
    type Item = (usize, I::Item);
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        let item = self.0.next()?;
        let i = self.1;
        self.1 += 1;
        Some((i, item))
    }
}

/// A layer's output offset and clamp as the vector kernels apply them: `min(max(v + offset, lo),
/// hi)` equals the reference's `clamp(min(max(v + offset, act_min), act_max), -128, 127)`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Clamp {
    pub offset: i32,
    pub lo: i32,
    pub hi: i32,
}

impl Clamp {
    #[inline(always)]
    pub fn new(q: &crate::OutputQuant) -> Self {
        Clamp {
            offset: q.output_offset,
            lo: q.act_min.clamp(-128, 127),
            hi: q.act_max.clamp(-128, 127),
        }
    }
}

/// Whether every shift is one the vector requantisation takes as it is (`-31..=31`; the reference
/// clamps larger ones, which the scalar form does too).
#[inline(always)]
pub fn shifts_in_range(shift: &[i32]) -> bool {
    shift.iter().all(|s| (-31..=31).contains(s))
}

/// One output pixel of a depthwise convolution (depth multiplier 1), channel block by channel
/// block: the window's taps inside the input are a rectangle of `rows x cols` taps, `x` and `w`
/// start at its first tap (channel 0), taps `c` bytes apart in a row and `in_row` (input) or
/// `w_row` (weights) bytes apart from row to row. Where the window leaves the input (`taps > 0`:
/// all `k_h * k_w` taps of `wall`, `c` apart), every tap first adds `pad * w` and each tap inside
/// then `(x - pad) * w`, which leaves `pad * w` for the padded taps, as the folded bias needs.
#[derive(Debug, Clone, Copy)]
pub struct DwPixel<'a> {
    pub x: &'a [i8],
    pub w: &'a [i8],
    pub wall: &'a [i8],
    pub c: usize,
    pub in_row: usize,
    pub w_row: usize,
    pub rows: usize,
    pub cols: usize,
    pub taps: usize,
    pub pad: i32,
    pub bias: &'a [i32],
    pub mult: &'a [i32],
    pub shift: &'a [i32],
    pub clamp: Clamp,
    /// Every shift is `<= 0` (the requantisation then needs no left shift).
    pub right_shifts_only: bool,
}

/// Bytes of `x` a window of `rows x cols` taps of `n` channels reads (`c` bytes a pixel, `row` a
/// row): `(rows - 1) * row + (cols - 1) * c + n`, or `None` for an empty window or an overflow.
#[inline(always)]
#[cfg(any(tinynas_mve, test))]
pub(crate) fn window_span(
    c: usize,
    row: usize,
    (rows, cols): (usize, usize),
    n: usize,
) -> Option<usize> {
    let r = rows.checked_sub(1)?.checked_mul(row)?;
    let k = cols.checked_sub(1)?.checked_mul(c)?;
    r.checked_add(k)?.checked_add(n)
}

/// The inner loops of one instruction set.
pub trait Mac {
    /// Whether depthwise layers run interior pixels four channels at a time through
    /// [`Mac::dw_row4`] (worth it where that is one tight loop: DSP, MVE); otherwise every pixel
    /// goes through the channel blocks of [`Mac::mac_lanes`].
    const DW_ROWS: bool = false;
    /// Whether depthwise layers (depth multiplier 1, given the generator's scratch) run one channel
    /// at a time through a ring of padded rows ([`super::dw_channel`]): where a multiply-accumulate
    /// is one MLA on values loaded one by one (no SIMD), so the weights are best kept in registers.
    const DW_CHANNELS: bool = false;
    /// Stores column `p` (0 to 3) of a block of four im2col columns: `col` holds `kp` int8 values,
    /// `kp` a multiple of 4, and the block has [`block_bytes`]`(kp)` bytes (each instruction set
    /// lays the block out its own way, within that size).
    fn store_column(block: &mut [i8], p: usize, col: &[i8]);
    /// Where column `p` of `kp` values can be gathered straight into the block, for layouts that
    /// keep it contiguous and unconverted (then [`Mac::store_column`] is not called).
    /// Gathers the im2col column of output pixel `at` straight into column `q` of the block
    /// (Armv6-M: `isa_v6m::gather_block`); false where the instruction set does not (the caller
    /// gathers it then).
    fn gather_block<T: super::Pixel>(
        _input: &[T],
        _d: &crate::ConvDims,
        _at: (usize, usize),
        _pad: i8,
        _block: &mut [i8],
        _q: usize,
    ) -> bool {
        false
    }
    fn column_mut(_block: &mut [i8], _p: usize, _kp: usize) -> Option<&mut [i8]> {
        None
    }
    /// Whether [`Mac::widen_rows`] writes block columns straight from the input (DSP).
    const WIDEN_ROWS: bool = false;
    /// Column `p` of the block from `rows` input rows of `4 * groups` pixels, `stride` apart
    /// (the im2col column of a window inside the input, `kp = rows * 4 * groups`); false where
    /// it cannot (nothing written: the caller gathers and stores the column).
    fn widen_rows<T: super::Pixel>(
        _x: &[T],
        _stride: usize,
        _rows: usize,
        _groups: usize,
        _block: &mut [i8],
        _p: usize,
    ) -> bool {
        false
    }
    /// The block's four columns times one weight row of `kp` int8: `acc[p] += col_p . w`.
    fn dot_block(block: &[i8], w: &[i8], acc: [i32; 4]) -> [i32; 4];
    /// `[x.w0, x.w1]` added to `acc`.
    fn dot_1x2(x: &[i8], w0: &[i8], w1: &[i8], acc: [i32; 2]) -> [i32; 2];
    /// `[x.w0, x.w1, x.w2]` added to `acc` (dense layers, three rows at a time).
    fn dot_1x3(x: &[i8], w: [&[i8]; 3], acc: [i32; 3]) -> [i32; 3] {
        let [a, b] = Self::dot_1x2(x, w[0], w[1], [acc[0], acc[1]]);
        [a, b, Self::dot_1x1(x, w[2], acc[2])]
    }
    /// `x.w` added to `acc`.
    fn dot_1x1(x: &[i8], w: &[i8], acc: i32) -> i32 {
        x.iter().zip(w).fold(acc, |a, (&x, &w)| {
            a.wrapping_add(i32::from(x) * i32::from(w))
        })
    }
    /// The rounded high word of `a * b`: `(a * b + 2^31) >> 32`.
    fn mul_high_round(a: i32, b: i32) -> i32 {
        ((i64::from(a) * i64::from(b) + (1 << 31)) >> 32) as i32
    }
    /// One kernel row of a depthwise convolution for four channels.
    fn dw_row4(x: &[i8], w: &[i8], stride: usize, taps: usize, acc: [i32; 4]) -> [i32; 4] {
        dw_row4(x, w, stride, taps, acc)
    }
    /// Requantises lanes `lane..lane + 4` of the conv accumulator rows `acc` into `y` (row `r` at
    /// `r * ystride`) with vector instructions, for shifts in `-31..=31`; false where the
    /// instruction set has none (nothing written: the caller requantises lane by lane).
    fn requant4(
        _acc: &[[i32; 8]],
        _lane: usize,
        _m: &[i32],
        _s: &[i32],
        _k: &Clamp,
        _y: &mut [i8],
        _ystride: usize,
    ) -> bool {
        false
    }
    /// Whether the convolution requantises each channel's four accumulators right after their
    /// dot products (measured faster on DSP, where [`Mac::round_short`] is five instructions,
    /// and on Armv6-M) instead of in a second pass over a block of channels.
    const FUSED: bool = false;
    /// The short requantisation's rounded value for a right shift of at least 1: with `high =
    /// mul_high_round(acc << 1, m)`, `(high + half + (high >> 31)) >> right`, `half =
    /// 2^(right - 1)`: the nudge of the short form of `Requant::apply` (`2^(right - 1)`, less one
    /// for a negative `high`).
    fn round_short(acc: i32, m: i32, half: i32, right: u32) -> i32 {
        let high = Self::mul_high_round(acc.wrapping_shl(1), m);
        high.wrapping_add(half.wrapping_add(high >> 31)) >> (right & 31)
    }
    /// Every output channel of a block of four im2col columns of `kp` values, short form (layers
    /// the generator proved narrow): channel `c`'s four dot products from its bias, requantised
    /// into `y[c + q * oc]`, in one loop of the instruction set's own (DSP). False where it has
    /// none (nothing written: the caller runs the channels itself).
    fn conv_cols(_block: &[i8], _p: &super::FastConv<'_>, _kp: usize, _y: &mut [i8]) -> bool {
        false
    }
    /// Whether [`Mac::conv_cols`] takes the layer (checked once per layer; false where the
    /// instruction set has none).
    fn conv_cols_takes(_p: &super::FastConv<'_>) -> bool {
        false
    }
    /// `dst`'s word `k` from the four bytes at `src[k * step..]` (for `k < dst.len() / 4`).
    /// False (nothing written) where `src` is short.
    fn gather_words(dst: &mut [i8], src: &[i8], step: usize) -> bool {
        gather_words_portable(dst, src, step)
    }
    /// Whether depthwise layers given the generator's scratch run group by group of four
    /// channels in a strip of padded rows ([`super::dw_groups`]: Armv6-M, [`Mac::dw_taps_u8`]).
    const DW_STRIP: bool = false;
    /// `acc[j] += (x[base + t.off + j] as u8) * w_j` over a run of taps (offsets increasing);
    /// nothing added where its first or last word leaves `x`.
    fn dw_taps_u8(acc: [i32; 4], x: &[i8], base: isize, run: &[DwTap]) -> [i32; 4] {
        if super::dw_groups::run_inside(x, base, run) {
            super::dw_groups::taps_u8_portable(acc, x, base, run)
        } else {
            acc
        }
    }
    /// One input row of a depthwise group into the Armv6-M strip (`isa_v6m::strip_copy`): false
    /// (nothing written) where the instruction set has no loop of its own or a slice is short.
    fn strip_copy(_dst: &mut [i8], _src: &[i8], _c: usize) -> bool {
        false
    }
    /// Whether [`Mac::strip_row`] takes the layer (checked once per layer; false where the
    /// instruction set has none).
    fn strip_row_takes(_p: &super::FastConv<'_>) -> bool {
        false
    }
    /// A row of output pixels of a depthwise group whose windows run one run of taps (on the
    /// input, `SIGNED`, or on the Armv6-M strip), its taps, requantisation and clamp in one loop
    /// of the instruction set's own (Armv6-M, for layers it [`Mac::strip_row_takes`]): see
    /// `isa_v6m::strip_row`. False (nothing written) where it has none or a slice is short.
    #[allow(clippy::too_many_arguments)]
    fn strip_row<const SIGNED: bool>(
        _bias: [i32; 4],
        _x: &[i8],
        _px: (isize, usize),
        _run: &[DwTap],
        _p: &super::FastConv<'_>,
        _c0: usize,
        _count: usize,
        _y: &mut [i8],
        _ys: (usize, usize),
    ) -> bool {
        false
    }
    /// Whether depthwise layers run group by group of four channels ([`super::dw_groups`]:
    /// [`Mac::dw_row`] per row of output pixels, [`Mac::dw_taps`] per pixel).
    const DW_GROUPS: bool = false;
    /// `acc[j] += x[base + t.off + j] * w_j` over the taps of window `win` of `taps`. A run
    /// that reaches outside `x` adds nothing (the kernels never pass one).
    fn dw_taps(acc: [i32; 4], x: &[i8], base: isize, taps: &DwTaps, win: Win) -> [i32; 4] {
        super::dw_groups::runs(taps, win)
            .fold(acc, |a, r| super::dw_groups::taps_portable(a, x, base, r))
    }
    /// Whether [`Mac::requant_col`] is the instruction set's own (DSP: SMMULR, SSAT, SSUB8/SEL),
    /// which the convolutions then use for the short form.
    const QUAD_REQUANT: bool = false;
    /// One channel's accumulators of four output pixels requantised (short form) into
    /// `y[q * stride]`, `q < 4`.
    fn requant_col(acc: [i32; 4], k: &RequantCol, y: &mut [i8], stride: usize) {
        super::dw_groups::requant_col_portable::<Self>(acc, k, y, stride);
    }
    /// `count` output pixels of one group: pixel `i` from `bias` and window `win` of `taps` at
    /// `base + i * px_step`, requantised into `y[y_at + i * y_step..][..4]`. Nothing written
    /// where the window is empty or a window or an output would leave its slice.
    #[allow(clippy::too_many_arguments)]
    fn dw_row(
        taps: &DwTaps,
        win: Win,
        bias: [i32; 4],
        rq: &Requant4,
        x: &[i8],
        px: (isize, usize),
        count: usize,
        y: &mut [i8],
        ys: (usize, usize),
    ) {
        super::dw_groups::row_portable::<Self>(taps, win, bias, rq, x, px, count, y, ys);
    }
    /// [`Mac::dw_row`] over `rows` rows: row `j` starts at `base + j * row_step` and writes from
    /// `y_at + j * y_row` (each a row of `count` pixels `px_step` and `y_step` apart). One call
    /// for a rectangle of pixels with the same window, so the checks and set-up are paid once
    /// (the Cortex-M DSP kernel); elsewhere one [`Mac::dw_row`] per row. `WHOLE_ROWS`: the
    /// caller's windows are all whole kernel rows (one run of taps each), so the DSP kernel
    /// compiles only its loop for one run (the padded-rows path: 0.4 KB less code at
    /// opt-level 3).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn dw_rows<const WHOLE_ROWS: bool>(
        taps: &DwTaps,
        win: Win,
        bias: [i32; 4],
        rq: &Requant4,
        x: &[i8],
        (base, px_step, row_step): (isize, usize, usize),
        (count, rows): (usize, usize),
        y: &mut [i8],
        (y_at, y_step, y_row): (usize, usize, usize),
    ) {
        for j in 0..rows {
            let at = base.wrapping_add(j.wrapping_mul(row_step) as isize);
            let y0 = y_at.wrapping_add(j.wrapping_mul(y_row));
            Self::dw_row(
                taps,
                win,
                bias,
                rq,
                x,
                (at, px_step),
                count,
                y,
                (y0, y_step),
            );
        }
    }
    /// Whether [`Mac::requant4`] and [`Mac::dw_pixel`] are vector kernels (MVE).
    const VECTOR: bool = false;
    /// The channels of one depthwise output pixel with vector instructions: writes `y[..n]` and
    /// returns `n`, a multiple of 4 (0 where the instruction set has none).
    fn dw_pixel(_p: &DwPixel<'_>, _y: &mut [i8]) -> usize {
        0
    }
    /// `acc[c] += x[c] * w[c]` lane by lane (depthwise convolution).
    fn mac_lanes(acc: &mut [i32], x: &[i8], w: &[i8]);
    /// `y[j] = max(x[r * row + k * c + j])` over the window's `rows x cols` taps inside the input
    /// (`rows, cols >= 1`), for `j < y.len()`: one max pool output pixel, where the instruction
    /// set has a lane-wise maximum; false (nothing written) otherwise or where `x` is too short.
    fn max_window(
        _x: &[i8],
        _c: usize,
        _row: usize,
        (_rows, _cols): (usize, usize),
        _y: &mut [i8],
    ) -> bool {
        false
    }
    /// `y[j] = max(a[j], b[j], c[j], d[j])`: a 2x2 max pool window inside the input. (Inlined
    /// where built for size, where it is a call per pixel otherwise; at 3 that measured slower.)
    #[cfg_attr(any(tinynas_small, test), inline(always))]
    fn max4(y: &mut [i8], [a, b, c, d]: [&[i8]; 4]) {
        for ((((y, &a), &b), &c), &d) in y.iter_mut().zip(a).zip(b).zip(c).zip(d) {
            *y = a.max(b).max(c.max(d));
        }
    }
    /// `out[c] = max(out[c], x[c])` lane by lane (max pool).
    fn max_lanes(out: &mut [i8], x: &[i8]);
}

/// The words [`Mac::gather_words`] copies (`dst.len() / 4`), or `None` where the last one
/// would leave `src`.
#[inline(always)]
pub(crate) fn gathered_words(dst: &[i8], src: &[i8], step: usize) -> Option<usize> {
    let n = dst.len() / 4;
    let Some(last) = n.checked_sub(1) else {
        return Some(0);
    };
    let end = last.checked_mul(step)?.checked_add(4)?;
    (end <= src.len()).then_some(n)
}

/// [`Mac::gather_words`] in plain Rust.
#[inline(always)]
pub(crate) fn gather_words_portable(dst: &mut [i8], src: &[i8], step: usize) -> bool {
    if gathered_words(dst, src, step).is_none() {
        return false;
    }
    for (d, s) in rows_mut(dst, 4).zip(core::iter::successors(Some(src), |s| s.get(step..))) {
        if let Some(s) = s.get(..4) {
            d.copy_from_slice(s);
        }
    }
    true
}

/// Four columns of a DSP block (see [`Dsp`]) times one weight row, in plain Rust: the DSP
/// instruction's emulation on the host, and its fallback for a misaligned block (which the kernels
/// never pass).
#[cfg(any(tinynas_dsp, test))]
#[inline(always)]
pub(crate) fn dot_4x1_i16(cols: &[i8], w: &[i8], acc: [i32; 4]) -> [i32; 4] {
    let mut acc = acc;
    let half = |lo: i8, hi: i8| i32::from(i16::from_le_bytes([lo as u8, hi as u8]));
    for (g, w) in rows(cols, 32).zip(rows(w, 4)) {
        for (a, col) in acc.iter_mut().zip(rows(g, 8)) {
            // The words (k0, k2) and (k1, k3).
            if let ([c0l, c0h, c2l, c2h, c1l, c1h, c3l, c3h], [w0, w1, w2, w3]) = (col, w) {
                let x = [
                    half(*c0l, *c0h),
                    half(*c1l, *c1h),
                    half(*c2l, *c2h),
                    half(*c3l, *c3h),
                ];
                for (x, w) in x.iter().zip([w0, w1, w2, w3]) {
                    *a = a.wrapping_add(x * i32::from(*w));
                }
            }
        }
    }
    acc
}

/// `acc[j] + sum_t x[t * stride + j] * w[t * stride + j]` for `t < taps`, `j < 4`: one kernel row
/// of a depthwise convolution for four channels, input and weights `stride` (the channel count)
/// apart from tap to tap.
#[inline(always)]
pub(crate) fn dw_row4(x: &[i8], w: &[i8], stride: usize, taps: usize, acc: [i32; 4]) -> [i32; 4] {
    let mut acc = acc;
    for t in 0..taps {
        let at = t * stride;
        if let (Some(x), Some(w)) = (x.get(at..at + 4), w.get(at..at + 4)) {
            for ((a, &x), &w) in acc.iter_mut().zip(x).zip(w) {
                *a = a.wrapping_add(i32::from(x) * i32::from(w));
            }
        }
    }
    acc
}

/// Plain Rust, for every target (Armv6-M, Armv7-M, RISC-V, the host).
#[derive(Debug, Clone, Copy)]
pub struct Portable;

/// Bytes of a block of four im2col columns of `kp` values: what the largest layout (the DSP
/// path's int16 values) needs, so that the planner's arena fits every target.
pub const fn block_bytes(kp: usize) -> usize {
    8 * kp
}

/// The portable block: the four int8 columns one after the other (half of [`block_bytes`]).
impl Mac for Portable {
    // Not at opt-level s or z: its four kernel shapes cost about 10 KB of flash on Armv7-M.
    const DW_CHANNELS: bool = !cfg!(tinynas_small);

    #[inline(always)]
    fn store_column(block: &mut [i8], p: usize, col: &[i8]) {
        if let Some(dst) = block.get_mut(p * col.len()..(p + 1) * col.len()) {
            dst.copy_from_slice(col);
        }
    }

    #[inline(always)]
    fn column_mut(block: &mut [i8], p: usize, kp: usize) -> Option<&mut [i8]> {
        block.get_mut(p * kp..(p + 1) * kp)
    }

    #[inline(always)]
    fn dot_block(block: &[i8], w: &[i8], acc: [i32; 4]) -> [i32; 4] {
        let kp = w.len();
        let [mut a, mut b, mut c, mut d] = acc;
        let (Some(x0), Some(x1), Some(x2), Some(x3)) = (
            block.get(..kp),
            block.get(kp..2 * kp),
            block.get(2 * kp..3 * kp),
            block.get(3 * kp..4 * kp),
        ) else {
            return acc;
        };
        for ((((&w, &p), &q), &r), &s) in w.iter().zip(x0).zip(x1).zip(x2).zip(x3) {
            let w = i32::from(w);
            a = a.wrapping_add(i32::from(p) * w);
            b = b.wrapping_add(i32::from(q) * w);
            c = c.wrapping_add(i32::from(r) * w);
            d = d.wrapping_add(i32::from(s) * w);
        }
        [a, b, c, d]
    }

    #[inline(always)]
    fn dot_1x2(x: &[i8], w0: &[i8], w1: &[i8], acc: [i32; 2]) -> [i32; 2] {
        let [mut a, mut b] = acc;
        for ((&p, &r), &s) in x.iter().zip(w0).zip(w1) {
            let p = i32::from(p);
            a = a.wrapping_add(p * i32::from(r));
            b = b.wrapping_add(p * i32::from(s));
        }
        [a, b]
    }

    #[inline(always)]
    fn mac_lanes(acc: &mut [i32], x: &[i8], w: &[i8]) {
        for ((a, &x), &w) in acc.iter_mut().zip(x).zip(w) {
            *a = a.wrapping_add(i32::from(x) * i32::from(w));
        }
    }

    #[inline(always)]
    fn max_lanes(out: &mut [i8], x: &[i8]) {
        for (o, &x) in out.iter_mut().zip(x) {
            *o = (*o).max(x);
        }
    }
}

/// Armv7E-M / Armv8-M DSP: four int8 values per 32-bit load, widened in pairs with SXTB16,
/// two multiply-accumulates per SMLAD.
///
/// Its conv block holds the four columns as int16, interleaved per group of four values, each
/// group and column as the words `(k0, k2)` and `(k1, k3)`: the order SXTB16 splits a weight word
/// in, so one LDRD gives what two SMLADs multiply with a weight word.
///
/// SXTB16 splits a word into bytes (0, 2) and, rotated, (1, 3); both operands are split the same
/// way, so each SMLAD pairs matching elements and no reordering of the weights is needed.
#[cfg(any(tinynas_dsp, test))]
#[derive(Debug, Clone, Copy)]
pub struct Dsp;

/// Four bytes as a little-endian word (one unaligned LDR on Armv7E-M).
#[cfg(any(tinynas_dsp, test))]
#[inline(always)]
fn word(c: &[i8]) -> u32 {
    match c {
        [a, b, c, d] => u32::from_le_bytes([*a as u8, *b as u8, *c as u8, *d as u8]),
        _ => 0,
    }
}

/// Stores word `w` as four little-endian bytes (one unaligned STR on Armv7E-M); nothing where
/// `dst` is not four bytes long. (Element by element: at opt-level `z` an array `map` or a loop
/// over the bytes stays a call.)
#[cfg(any(tinynas_dsp, test))]
#[inline(always)]
fn put_word(dst: &mut [i8], w: u32) {
    if let [a, b, c, d] = dst {
        let [w0, w1, w2, w3] = w.to_le_bytes();
        (*a, *b, *c, *d) = (w0 as i8, w1 as i8, w2 as i8, w3 as i8);
    }
}

#[cfg(any(tinynas_dsp, test))]
impl Mac for Dsp {
    const DW_ROWS: bool = true;
    const FUSED: bool = true;
    const DW_GROUPS: bool = true;

    #[inline(always)]
    fn dw_taps(acc: [i32; 4], x: &[i8], base: isize, taps: &DwTaps, win: Win) -> [i32; 4] {
        crate::isa_dsp::dw_taps(acc, x, base, taps, win)
    }

    const QUAD_REQUANT: bool = true;

    #[inline(always)]
    fn gather_words(dst: &mut [i8], src: &[i8], step: usize) -> bool {
        crate::isa_dsp::gather_words(dst, src, step)
    }

    #[inline(always)]
    fn conv_cols(block: &[i8], p: &super::FastConv<'_>, kp: usize, y: &mut [i8]) -> bool {
        crate::isa_dsp::conv_cols(block, p, kp, y)
    }

    #[inline(always)]
    fn conv_cols_takes(p: &super::FastConv<'_>) -> bool {
        crate::isa_dsp::conv_cols_takes(p)
    }

    #[inline(always)]
    fn requant_col(acc: [i32; 4], k: &RequantCol, y: &mut [i8], stride: usize) {
        crate::isa_dsp::requant_col(acc, k, y, stride);
    }

    #[inline(always)]
    fn dw_row(
        taps: &DwTaps,
        win: Win,
        bias: [i32; 4],
        rq: &Requant4,
        x: &[i8],
        px: (isize, usize),
        count: usize,
        y: &mut [i8],
        ys: (usize, usize),
    ) {
        crate::isa_dsp::dw_row(taps, win, bias, rq, x, px, count, y, ys);
    }

    // The DSP assembly does a rectangle in one call; the host stand-in of `isa_dsp` (tests) takes
    // the trait's loop over rows.
    #[cfg(tinynas_dsp)]
    #[inline(always)]
    fn dw_rows<const WHOLE_ROWS: bool>(
        taps: &DwTaps,
        win: Win,
        bias: [i32; 4],
        rq: &Requant4,
        x: &[i8],
        px: (isize, usize, usize),
        n: (usize, usize),
        y: &mut [i8],
        ys: (usize, usize, usize),
    ) {
        crate::isa_dsp::dw_rows::<WHOLE_ROWS>(taps, win, bias, rq, x, px, n, y, ys);
    }

    #[inline(always)]
    fn round_short(acc: i32, m: i32, half: i32, right: u32) -> i32 {
        crate::isa_dsp::round_short(acc, m, half, right)
    }

    #[inline(always)]
    fn mul_high_round(a: i32, b: i32) -> i32 {
        crate::isa_dsp::smmulr(a, b)
    }

    #[inline(always)]
    fn dw_row4(x: &[i8], w: &[i8], stride: usize, taps: usize, acc: [i32; 4]) -> [i32; 4] {
        crate::isa_dsp::dw_row4(x, w, stride, taps, acc)
    }

    #[inline(always)]
    fn dot_1x3(x: &[i8], w: [&[i8]; 3], acc: [i32; 3]) -> [i32; 3] {
        let acc = crate::isa_dsp::dot_1x3(x, w, acc);
        // The last `len % 4` values.
        let n = 4 * (x.len() / 4);
        let tail = |w: &[i8], a: i32| {
            Portable::dot_1x1(x.get(n..).unwrap_or(&[]), w.get(n..).unwrap_or(&[]), a)
        };
        [tail(w[0], acc[0]), tail(w[1], acc[1]), tail(w[2], acc[2])]
    }

    const WIDEN_ROWS: bool = true;

    #[inline(always)]
    fn widen_rows<T: super::Pixel>(
        x: &[T],
        stride: usize,
        rows: usize,
        groups: usize,
        block: &mut [i8],
        p: usize,
    ) -> bool {
        crate::isa_dsp::widen_rows(x, stride, rows, groups, block, p)
    }

    #[inline(always)]
    fn store_column(block: &mut [i8], p: usize, col: &[i8]) {
        use crate::isa_dsp::{sxtb16, sxtb16_ror8};
        // The loop in assembly for long columns; short ones (a first layer's 27 values) measure
        // faster as the compiler unrolls them.
        if col.len() > 32 && crate::isa_dsp::store_column(block, p, col) {
            return;
        }
        for (g, c) in zip(rows_mut(block, 32), rows(col, 4)) {
            let v = word(c);
            // (Two words: at opt-level `s` a loop over the chained halves stayed an iterator,
            // byte by byte.)
            if let Some((lo, hi)) = g
                .get_mut(p * 8..p * 8 + 8)
                .and_then(|d| d.split_at_mut_checked(4))
            {
                put_word(lo, sxtb16(v));
                put_word(hi, sxtb16_ror8(v));
            }
        }
    }

    #[inline(always)]
    fn dot_block(block: &[i8], w: &[i8], acc: [i32; 4]) -> [i32; 4] {
        crate::isa_dsp::dot_4x1_i16(block, w, acc)
    }

    #[inline(always)]
    fn dot_1x2(x: &[i8], w0: &[i8], w1: &[i8], acc: [i32; 2]) -> [i32; 2] {
        use crate::isa_dsp::{smlad, sxtb16, sxtb16_ror8};
        let [mut a, mut b] = acc;
        let (mut p4, mut r4, mut s4) = (x.chunks_exact(4), w0.chunks_exact(4), w1.chunks_exact(4));
        for ((p, r), s) in p4.by_ref().zip(r4.by_ref()).zip(s4.by_ref()) {
            let (p, r, s) = (word(p), word(r), word(s));
            let (pe, po) = (sxtb16(p), sxtb16_ror8(p));
            a = smlad(pe, sxtb16(r), a);
            a = smlad(po, sxtb16_ror8(r), a);
            b = smlad(pe, sxtb16(s), b);
            b = smlad(po, sxtb16_ror8(s), b);
        }
        Portable::dot_1x2(p4.remainder(), r4.remainder(), s4.remainder(), [a, b])
    }

    #[inline(always)]
    fn dot_1x1(x: &[i8], w: &[i8], acc: i32) -> i32 {
        use crate::isa_dsp::{smlad, sxtb16, sxtb16_ror8};
        let mut a = acc;
        let (mut p4, mut r4) = (x.chunks_exact(4), w.chunks_exact(4));
        for (p, r) in p4.by_ref().zip(r4.by_ref()) {
            let (p, r) = (word(p), word(r));
            a = smlad(sxtb16(p), sxtb16(r), a);
            a = smlad(sxtb16_ror8(p), sxtb16_ror8(r), a);
        }
        Portable::dot_1x1(p4.remainder(), r4.remainder(), a)
    }

    #[inline(always)]
    fn mac_lanes(acc: &mut [i32], x: &[i8], w: &[i8]) {
        use crate::isa_dsp::{smlabb, smlatt, sxtb16, sxtb16_ror8};
        let mut a4 = acc.chunks_exact_mut(4);
        let (mut x4, mut w4) = (x.chunks_exact(4), w.chunks_exact(4));
        for ((a, x), w) in a4.by_ref().zip(x4.by_ref()).zip(w4.by_ref()) {
            if let [a0, a1, a2, a3] = a {
                let (x, w) = (word(x), word(w));
                let (xe, xo, we, wo) = (sxtb16(x), sxtb16_ror8(x), sxtb16(w), sxtb16_ror8(w));
                *a0 = smlabb(xe, we, *a0);
                *a2 = smlatt(xe, we, *a2);
                *a1 = smlabb(xo, wo, *a1);
                *a3 = smlatt(xo, wo, *a3);
            }
        }
        Portable::mac_lanes(a4.into_remainder(), x4.remainder(), w4.remainder());
    }

    /// Four channels per word (SSUB8, SEL).
    #[inline(always)]
    fn max4(y: &mut [i8], [a, b, c, d]: [&[i8]; 4]) {
        let mut y4 = chunks_mut(y, 4);
        let (mut a4, mut b4, mut c4, mut d4) =
            (chunks(a, 4), chunks(b, 4), chunks(c, 4), chunks(d, 4));
        #[inline(always)]
        fn max_word(y: &mut [i8], [a, b, c, d]: [&[i8]; 4]) {
            use crate::isa_dsp::max8x4;
            let m = max8x4(max8x4(word(a), word(b)), max8x4(word(c), word(d)));
            // (One word: at opt-level `s` a loop over the bytes called `memcpy`.)
            put_word(y, m);
        }
        #[cfg(not(any(tinynas_small, test)))]
        for ((((y, a), b), c), d) in y4
            .by_ref()
            .zip(a4.by_ref())
            .zip(b4.by_ref())
            .zip(c4.by_ref())
            .zip(d4.by_ref())
        {
            max_word(y, [a, b, c, d]);
        }
        // Not a `zip` of `by_ref`s where built for size: at `z` each `&mut` iterator's `next` is
        // a call (and at 3 this loop measured 7 % slower on the example's model).
        #[cfg(any(tinynas_small, test))]
        #[allow(clippy::while_let_on_iterator)] // (`for` over `by_ref()`: the call above)
        while let Some(y) = y4.next() {
            let Some(a) = a4.next() else { break };
            let Some(b) = b4.next() else { break };
            let Some(c) = c4.next() else { break };
            let Some(d) = d4.next() else { break };
            max_word(y, [a, b, c, d]);
        }
        let tails = [
            a4.remainder(),
            b4.remainder(),
            c4.remainder(),
            d4.remainder(),
        ];
        Portable::max4(y4.into_remainder(), tails);
    }

    #[inline(always)]
    fn max_lanes(out: &mut [i8], x: &[i8]) {
        let mut o4 = out.chunks_exact_mut(4);
        let mut x4 = x.chunks_exact(4);
        for (o, x) in o4.by_ref().zip(x4.by_ref()) {
            put_word(o, crate::isa_dsp::max8x4(word(o), word(x)));
        }
        Portable::max_lanes(o4.into_remainder(), x4.remainder());
    }
}

/// Armv6-M: the portable loops, except the convolution block (see `isa_v6m.rs`): per `k`, the
/// four columns' values biased to unsigned bytes, and a high multiply from 16-bit pieces (Armv6-M
/// has no 64-bit multiply; the compiler's routine costs twice as much); and depthwise layers
/// group by group of four channels (a Thumb-1 tap loop over the group path's taps, on the input
/// or, given the generator's scratch, on a strip of unsigned bytes).
#[cfg(any(tinynas_v6m, test))]
#[derive(Debug, Clone, Copy)]
pub struct V6m;

#[cfg(any(tinynas_v6m, test))]
impl Mac for V6m {
    // Measured faster on Armv6-M than the two passes (its requantisation needs few registers).
    const FUSED: bool = true;
    const DW_STRIP: bool = true;
    const DW_GROUPS: bool = true;

    #[inline(always)]
    fn dw_taps(acc: [i32; 4], x: &[i8], base: isize, taps: &DwTaps, win: Win) -> [i32; 4] {
        crate::isa_v6m::dw_taps(acc, x, base, taps, win)
    }

    #[inline(always)]
    fn dw_taps_u8(acc: [i32; 4], x: &[i8], base: isize, run: &[DwTap]) -> [i32; 4] {
        crate::isa_v6m::dw_taps_u8(acc, x, base, run)
    }

    #[inline(always)]
    fn gather_block<T: super::Pixel>(
        input: &[T],
        d: &crate::ConvDims,
        at: (usize, usize),
        pad: i8,
        block: &mut [i8],
        q: usize,
    ) -> bool {
        crate::isa_v6m::gather_block(input, d, at, pad, block, q)
    }

    #[inline(always)]
    fn strip_copy(dst: &mut [i8], src: &[i8], c: usize) -> bool {
        crate::isa_v6m::strip_copy(dst, src, c)
    }

    #[inline(always)]
    fn strip_row_takes(p: &super::FastConv<'_>) -> bool {
        crate::isa_v6m::conv_cols_takes(p)
    }

    #[inline(always)]
    fn strip_row<const SIGNED: bool>(
        bias: [i32; 4],
        x: &[i8],
        px: (isize, usize),
        run: &[DwTap],
        p: &super::FastConv<'_>,
        c0: usize,
        count: usize,
        y: &mut [i8],
        ys: (usize, usize),
    ) -> bool {
        crate::isa_v6m::strip_row::<SIGNED>(bias, x, px, run, p, c0, count, y, ys)
    }

    #[inline(always)]
    fn store_column(block: &mut [i8], p: usize, col: &[i8]) {
        for (x, &c) in rows_mut(block, 4).zip(col) {
            if let Some(x) = x.get_mut(p) {
                *x = c ^ i8::MIN;
            }
        }
    }

    #[inline(always)]
    fn dot_block(block: &[i8], w: &[i8], acc: [i32; 4]) -> [i32; 4] {
        crate::isa_v6m::dot_4x1_u8(block, w, acc)
    }

    #[inline(always)]
    fn conv_cols(block: &[i8], p: &super::FastConv<'_>, kp: usize, y: &mut [i8]) -> bool {
        crate::isa_v6m::conv_cols(block, p, kp, y)
    }

    #[inline(always)]
    fn conv_cols_takes(p: &super::FastConv<'_>) -> bool {
        crate::isa_v6m::conv_cols_takes(p)
    }

    /// `floor((a * b + 2^31) / 2^32)` from the four 16-bit partial products: with
    /// `a = ah 2^16 + al`, `b = bh 2^16 + bl` (`al`, `bl` unsigned), it is
    /// `ah bh + (ah bl >> 16) + (al bh >> 16)` plus the carry of the low halves and the rounding
    /// (every partial product fits `i32`; the shifts are floor divisions, so the sum is exact).
    #[inline(always)]
    fn mul_high_round(a: i32, b: i32) -> i32 {
        let (al, ah) = ((a & 0xFFFF) as u32, a >> 16);
        let (bl, bh) = ((b & 0xFFFF) as u32, b >> 16);
        let ll = al * bl;
        let lh = (al as i32).wrapping_mul(bh);
        let hl = ah.wrapping_mul(bl as i32);
        let hh = ah.wrapping_mul(bh);
        let low = (lh & 0xFFFF) + (hl & 0xFFFF) + (ll >> 16) as i32 + 0x8000;
        hh.wrapping_add(lh >> 16)
            .wrapping_add(hl >> 16)
            .wrapping_add(low >> 16)
    }

    #[inline(always)]
    fn dot_1x2(x: &[i8], w0: &[i8], w1: &[i8], acc: [i32; 2]) -> [i32; 2] {
        Portable::dot_1x2(x, w0, w1, acc)
    }

    #[inline(always)]
    fn mac_lanes(acc: &mut [i32], x: &[i8], w: &[i8]) {
        Portable::mac_lanes(acc, x, w);
    }

    #[inline(always)]
    fn max_lanes(out: &mut [i8], x: &[i8]) {
        Portable::max_lanes(out, x);
    }
}

/// Armv8.1-M MVE (Helium), on top of the DSP path: the convolution block is four int8 columns one
/// after the other (as [`Portable`]'s), multiplied sixteen values per VMLADAVA.S8; dense layers
/// likewise; the rest as [`Dsp`] (every MVE core has the DSP extension).
#[cfg(any(tinynas_mve, test))]
#[derive(Debug, Clone, Copy)]
pub struct Mve;

#[cfg(any(tinynas_mve, test))]
impl Mac for Mve {
    const DW_ROWS: bool = true;
    const VECTOR: bool = true;

    #[inline(always)]
    fn requant4(
        acc: &[[i32; 8]],
        lane: usize,
        m: &[i32],
        s: &[i32],
        k: &Clamp,
        y: &mut [i8],
        ystride: usize,
    ) -> bool {
        crate::isa_mve::requant4(acc, lane, m, s, k, y, ystride)
    }

    #[inline(always)]
    fn dw_pixel(p: &DwPixel<'_>, y: &mut [i8]) -> usize {
        crate::isa_mve::dw_pixel(p, y)
    }

    #[inline(always)]
    fn store_column(block: &mut [i8], p: usize, col: &[i8]) {
        Portable::store_column(block, p, col);
    }

    #[inline(always)]
    fn column_mut(block: &mut [i8], p: usize, kp: usize) -> Option<&mut [i8]> {
        Portable::column_mut(block, p, kp)
    }

    #[inline(always)]
    fn dot_block(block: &[i8], w: &[i8], acc: [i32; 4]) -> [i32; 4] {
        crate::isa_mve::dot_4x1_i8(block, w, acc)
    }

    #[inline(always)]
    fn mul_high_round(a: i32, b: i32) -> i32 {
        Dsp::mul_high_round(a, b)
    }

    #[inline(always)]
    fn dw_row4(x: &[i8], w: &[i8], stride: usize, taps: usize, acc: [i32; 4]) -> [i32; 4] {
        Dsp::dw_row4(x, w, stride, taps, acc)
    }

    #[inline(always)]
    fn dot_1x3(x: &[i8], w: [&[i8]; 3], acc: [i32; 3]) -> [i32; 3] {
        crate::isa_mve::dot_1x3(x, w, acc)
    }

    #[inline(always)]
    fn dot_1x2(x: &[i8], w0: &[i8], w1: &[i8], acc: [i32; 2]) -> [i32; 2] {
        Dsp::dot_1x2(x, w0, w1, acc)
    }

    #[inline(always)]
    fn dot_1x1(x: &[i8], w: &[i8], acc: i32) -> i32 {
        Dsp::dot_1x1(x, w, acc)
    }

    #[inline(always)]
    fn mac_lanes(acc: &mut [i32], x: &[i8], w: &[i8]) {
        Dsp::mac_lanes(acc, x, w);
    }

    #[inline(always)]
    fn max_window(x: &[i8], c: usize, row: usize, window: (usize, usize), y: &mut [i8]) -> bool {
        crate::isa_mve::max_window(x, c, row, window, y)
    }

    #[inline(always)]
    fn max4(y: &mut [i8], taps: [&[i8]; 4]) {
        Dsp::max4(y, taps);
    }

    #[inline(always)]
    fn max_lanes(out: &mut [i8], x: &[i8]) {
        Dsp::max_lanes(out, x);
    }
}

/// The implementation of the target being compiled for.
#[cfg(tinynas_mve)]
pub type Selected = Mve;
/// The implementation of the target being compiled for.
#[cfg(all(tinynas_dsp, not(tinynas_mve)))]
pub type Selected = Dsp;
/// The implementation of the target being compiled for.
#[cfg(tinynas_v6m)]
pub type Selected = V6m;
/// The implementation of the target being compiled for.
#[cfg(not(any(tinynas_dsp, tinynas_v6m)))]
pub type Selected = Portable;
