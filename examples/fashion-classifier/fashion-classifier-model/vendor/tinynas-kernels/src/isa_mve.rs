//! Armv8.1-M MVE (Helium: Cortex-M55, M85) inner loops, in assembly: sixteen int8
//! multiply-accumulates per VMLADAVA.S8 into a scalar accumulator, in tail-predicated loops
//! (DLSTP/LETP) so a length that is not a multiple of 16 needs no padding.
//!
//! Lane-wise work (the requantisation of four channels, depthwise convolution over four or sixteen
//! channels) runs in 32-bit lanes: VQRDMULH is gemmlowp's saturating rounding doubling high
//! multiply exactly, and its rounding right shift is VRSHL after subtracting one from negative
//! values, which turns VRSHL's round-half-up into gemmlowp's round-half-away-from-zero.
//!
//! On an MVE target (cfg `tinynas_mve`, set by `build.rs` for `thumbv8m.main` built for
//! `cortex-m55`/`cortex-m85` or with `+mve`) these are `asm!`; elsewhere (the host, for tests)
//! they are the same computation in plain Rust.
#![allow(unsafe_code)]

pub use crate::fast::mac::{Clamp, DwPixel};
#[cfg(all(test, not(tinynas_mve)))]
pub use imp::requant_lane;

/// Four int8 columns of `len` values each, `len` bytes apart in `block`, times one weight row of
/// `len` values: `acc[p] + sum_k col_p[k] * w[k]`.
#[inline(always)]
pub fn dot_4x1_i8(block: &[i8], w: &[i8], acc: [i32; 4]) -> [i32; 4] {
    let n = w.len();
    let cols = [0, 1, 2, 3].map(|p| block.get(p * n..(p + 1) * n));
    let [Some(c0), Some(c1), Some(c2), Some(c3)] = cols else {
        return acc;
    };
    imp::dot4(c0, c1, c2, c3, w, acc)
}

/// One input against three rows, every value: `acc[r] + sum_k x[k] * w_r[k]`.
#[inline(always)]
pub fn dot_1x3(x: &[i8], w: [&[i8]; 3], acc: [i32; 3]) -> [i32; 3] {
    let n = x.len();
    let [Some(r0), Some(r1), Some(r2)] = w.map(|r| r.get(..n)) else {
        return acc;
    };
    imp::dot3(x, r0, r1, r2, acc)
}

/// Requantises four channels of up to four rows of convolution accumulators: `y[r * ystride + j]
/// = requant(acc[r][lane + j], m[j], s[j])` for `r < acc.len()`, `j < 4`, shifts in `-31..=31`.
/// Returns false (nothing written) where a slice is too short or `lane > 4`.
#[inline(always)]
pub fn requant4(
    acc: &[[i32; 8]],
    lane: usize,
    m: &[i32],
    s: &[i32],
    k: &Clamp,
    y: &mut [i8],
    ystride: usize,
) -> bool {
    let rows = acc.len();
    let (Some(m), Some(s)) = (m.get(..4), s.get(..4)) else {
        return false;
    };
    let span = rows
        .checked_sub(1)
        .and_then(|r| r.checked_mul(ystride))
        .and_then(|v| v.checked_add(4));
    match span {
        Some(span) if span <= y.len() && lane <= 4 => {
            imp::requant4(acc, lane, m, s, k, y, ystride);
            true
        }
        _ => false,
    }
}

/// Runs [`DwPixel`] for channels `0..n`, `n` the largest multiple of 4 every slice has room for
/// (sixteen channels per step, then four), writes `y[..n]` and returns `n`. Shifts must be in
/// `-31..=31`.
#[inline(always)]
pub fn dw_pixel(p: &DwPixel<'_>, y: &mut [i8]) -> usize {
    let (Some(r1), Some(c1)) = (p.rows.checked_sub(1), p.cols.checked_sub(1)) else {
        return 0;
    };
    let extent = |row: usize| {
        r1.checked_mul(row)
            .and_then(|v| c1.checked_mul(p.c).and_then(|u| v.checked_add(u)))
    };
    let span = p.cols.saturating_mul(p.c);
    let skips = (p.in_row.checked_sub(span), p.w_row.checked_sub(span));
    let (Some(xe), Some(we), (Some(xskip), Some(wskip))) =
        (extent(p.in_row), extent(p.w_row), skips)
    else {
        return 0;
    };
    let ae = match p.taps.checked_sub(1) {
        Some(t) => t.checked_mul(p.c),
        None => Some(0),
    };
    let Some(ae) = ae else { return 0 };
    // The channels every slice has room for (`n` fits when `extent + n <= len`).
    let room = |len: usize, extent: usize| len.saturating_sub(extent);
    let wall = if p.taps == 0 {
        usize::MAX
    } else {
        room(p.wall.len(), ae)
    };
    let n = room(p.x.len(), xe)
        .min(room(p.w.len(), we))
        .min(wall)
        .min(p.bias.len())
        .min(p.mult.len())
        .min(p.shift.len())
        .min(y.len())
        .min(p.c);
    let (wide, narrow) = (n / 16, n % 16 / 4);
    let right = p.right_shifts_only;
    imp::dw_run::<4>(p, 0, wide, (xskip, wskip), right, y);
    imp::dw_run::<1>(p, 16 * wide, narrow, (xskip, wskip), right, y);
    16 * wide + 4 * narrow
}

/// One max pool output pixel: `y[j] = max(x[r * row + k * c + j])` over `r < rows`, `k < cols`,
/// for `j < y.len()`, sixteen channels a vector (the last block predicated by VCTP). False
/// (nothing written) for an empty window or an `x` too short.
#[inline(always)]
pub fn max_window(x: &[i8], c: usize, row: usize, window: (usize, usize), y: &mut [i8]) -> bool {
    if y.is_empty() {
        return true;
    }
    match crate::fast::mac::window_span(c, row, window, y.len()) {
        Some(span) if span <= x.len() => {
            imp::max_window(x, c, row, window, y);
            true
        }
        _ => false,
    }
}

/// The in-memory arguments of the depthwise assembly, which advances the per-block pointers in
/// place (word offsets fixed by `repr(C)` on 32-bit targets: 0 bias, 4 mult, 8 shift, 12 wall,
/// 16 taps, 20 pad, 24 xskip, 28 wskip, 32 y, 36 offset, 40 lo, 44 hi, 48 x, 52 w, 56 groups).
#[cfg(tinynas_mve)]
#[repr(C)]
struct DwArgs {
    bias: *const i32,
    mult: *const i32,
    shift: *const i32,
    wall: *const i8,
    taps: usize,
    pad: i32,
    xskip: usize,
    wskip: usize,
    y: *mut i8,
    offset: i32,
    lo: i32,
    hi: i32,
    x: *const i8,
    w: *const i8,
    groups: usize,
}

#[cfg(tinynas_mve)]
mod imp {
    use core::arch::asm;

    use super::{Clamp, DwArgs, DwPixel};

    /// The vector requantisation of `q0` (four lanes), in place: shift left by `q1` (the
    /// non-negative shifts), VQRDMULH by `q3`, subtract one from negative values where `q2` (the
    /// non-positive shifts) is negative, VRSHL by `q2`, add the offset, clamp to `q5..q6`.
    /// (Documentation of the sequence in [`requant4`]'s template.)
    #[inline(always)]
    pub fn requant4(
        acc: &[[i32; 8]],
        lane: usize,
        m: &[i32],
        s: &[i32],
        k: &Clamp,
        y: &mut [i8],
        ystride: usize,
    ) {
        if acc.is_empty() {
            return;
        }
        // SAFETY: the loop runs `acc.len() >= 1` times, reading the 16 bytes of lanes `lane..lane
        // + 4` of row `r` of `acc` (each row has 8 lanes, `lane <= 4` checked) and writing 4 bytes at `y + r * ystride`, inside `y` (the caller checked
        // `(rows - 1) * ystride + 4 <= y.len()`); `m` and `s` have 4 values. VLDRW needs word
        // alignment, which `[i32]` has. No stack; LR, Q0-Q6, the pointers and flags are clobbered.
        unsafe {
            asm!(
                "vldrw.u32 q2, [{s}]",
                "vmov.i32 q3, #0",
                "vmax.s32 q1, q2, q3",
                "vmin.s32 q2, q2, q3",
                "vldrw.u32 q3, [{m}]",
                "vdup.32 q5, {lo}",
                "vdup.32 q6, {hi}",
                "dls lr, {n}",
                "2:",
                "vldrw.u32 q0, [{a}], #32",
                "vshl.s32 q0, q0, q1",
                "vqrdmulh.s32 q0, q0, q3",
                "vand q4, q0, q2",
                "vshr.s32 q4, q4, #31",
                "vqadd.s32 q0, q0, q4",
                "vrshl.s32 q0, q0, q2",
                "vadd.i32 q0, q0, {off}",
                "vmax.s32 q0, q0, q5",
                "vmin.s32 q0, q0, q6",
                "vstrb.32 q0, [r0]",
                "add r0, r0, {ys}",
                "le lr, 2b",
                n = in(reg) acc.len(),
                a = inout(reg) acc.as_ptr().cast::<i32>().wrapping_add(lane) => _,
                // Narrowing stores take a low base register.
                inout("r0") y.as_mut_ptr() => _,
                ys = in(reg) ystride,
                m = in(reg) m.as_ptr(),
                s = in(reg) s.as_ptr(),
                lo = in(reg) k.lo,
                hi = in(reg) k.hi,
                off = in(reg) k.offset,
                out("lr") _,
                out("s0") _, out("s1") _, out("s2") _, out("s3") _,
                out("s4") _, out("s5") _, out("s6") _, out("s7") _,
                out("s8") _, out("s9") _, out("s10") _, out("s11") _,
                out("s12") _, out("s13") _, out("s14") _, out("s15") _,
                out("s16") _, out("s17") _, out("s18") _, out("s19") _,
                out("s20") _, out("s21") _, out("s22") _, out("s23") _,
                out("s24") _, out("s25") _, out("s26") _, out("s27") _,
                options(nostack),
            );
        }
    }

    /// The requantisation of accumulator `q$q` (see `requant4`), shifts from `r2` and multipliers
    /// from `r4` (both post-incremented), the output offset in `r1`, `lo` in `q7`; `hi` in `r0`
    /// (`any`: shifts of either sign) or in `q6` (`right`: every shift `<= 0`, no left shift),
    /// the four bytes stored at `r3` (post-incremented): its head (the left shift, if any, and
    /// the doubling high multiply), the shared middle, its end (the upper clamp and the store).
    #[rustfmt::skip]
    macro_rules! requant_head {
        (any, $q:literal) => {
            concat!(
                "vldrw.u32 q4, [r2], #16\n", "vmov.i32 q5, #0\n",
                "vmax.s32 q6, q4, q5\n", "vmin.s32 q4, q4, q5\n",
                "vshl.s32 q", $q, ", q", $q, ", q6\n",
                "vldrw.u32 q6, [r4], #16\n",
                "vqrdmulh.s32 q", $q, ", q", $q, ", q6",
            )
        };
        (right, $q:literal) => {
            concat!(
                "vldrw.u32 q4, [r2], #16\n", "vldrw.u32 q5, [r4], #16\n",
                "vqrdmulh.s32 q", $q, ", q", $q, ", q5",
            )
        };
    }

    /// See `requant_head`: the fix-up of negative values, the rounding shift, the offset and the
    /// lower clamp.
    #[rustfmt::skip]
    macro_rules! requant_middle {
        ($q:literal) => {
            concat!(
                "vand q5, q", $q, ", q4\n", "vshr.s32 q5, q5, #31\n",
                "vqadd.s32 q", $q, ", q", $q, ", q5\n",
                "vrshl.s32 q", $q, ", q", $q, ", q4\n",
                "vadd.i32 q", $q, ", q", $q, ", r1\n",
                "vmax.s32 q", $q, ", q", $q, ", q7",
            )
        };
    }

    /// See `requant_head`.
    #[rustfmt::skip]
    macro_rules! requant_end {
        (any, $q:literal) => {
            concat!(
                "vdup.32 q5, r0\n", "vmin.s32 q", $q, ", q", $q, ", q5\n",
                "vstrb.32 q", $q, ", [r3], #4",
            )
        };
        (right, $q:literal) => {
            concat!("vmin.s32 q", $q, ", q", $q, ", q6\n", "vstrb.32 q", $q, ", [r3], #4")
        };
    }

    /// `hi` into `r0` (`any`) or `q6` (`right`).
    macro_rules! requant_hi {
        (any) => {
            "ldr r0, [{prm}, #44]"
        };
        (right) => {
            "ldr r0, [{prm}, #44]\nvdup.32 q6, r0"
        };
    }

    /// The depthwise assembly for blocks of channels: `$q` an accumulator register, `$o` its
    /// byte offset in the block (lanes of int8); `$kind` the requantisation (`any` or `right`);
    /// `$n` the block's channels.
    macro_rules! dw_asm {
        ($args:expr, $c:expr, $rows:expr, $cols:expr, $kind:tt, $n:literal;
         $($q:literal $o:literal),+) => {
            asm!(
                "ldr {g}, [{prm}, #56]",
                "20:",
                // Accumulators from the biases.
                "ldr r2, [{prm}, #0]",
                $(concat!("vldrw.u32 q", $q, ", [r2], #16"),)+
                "str r2, [{prm}, #0]",
                // Outside the input: every tap times the zero point first.
                "ldr r4, [{prm}, #16]",
                "ldr r2, [{prm}, #12]",
                "ldr r3, [{prm}, #20]",
                concat!("add r0, r2, #", $n),
                "str r0, [{prm}, #12]",
                "wls lr, r4, 3f",
                "4:",
                $(
                    concat!("vldrb.s32 q4, [r2, #", $o, "]"),
                    concat!("vmla.s32 q", $q, ", q4, r3"),
                )+
                "add r2, r2, {c}",
                "le lr, 4b",
                "3:",
                // The taps inside: rows x cols, x (less the zero point outside) times w.
                "ldr r0, [{prm}, #48]",
                "ldr r1, [{prm}, #52]",
                concat!("add r2, r0, #", $n),
                "str r2, [{prm}, #48]",
                concat!("add r2, r1, #", $n),
                "str r2, [{prm}, #52]",
                "ldr r2, [{prm}, #24]",
                "ldr r4, [{prm}, #28]",
                "mov {rows}, {rows0}",
                "ldr r3, [{prm}, #16]",
                "cmp r3, #0",
                "beq 7f",
                "ldr r3, [{prm}, #20]",
                "5:",
                "dls lr, {cols}",
                "6:",
                $(
                    concat!("vldrb.s32 q4, [r0, #", $o, "]"),
                    concat!("vldrb.s32 q5, [r1, #", $o, "]"),
                    "vsub.i32 q4, q4, r3",
                    "vmul.i32 q4, q4, q5",
                    concat!("vadd.i32 q", $q, ", q", $q, ", q4"),
                )+
                "add r0, r0, {c}",
                "add r1, r1, {c}",
                "le lr, 6b",
                "add r0, r0, r2",
                "add r1, r1, r4",
                "subs {rows}, {rows}, #1",
                "bne 5b",
                "b 9f",
                "7:",
                "dls lr, {cols}",
                "8:",
                $(
                    concat!("vldrb.s32 q4, [r0, #", $o, "]"),
                    concat!("vldrb.s32 q5, [r1, #", $o, "]"),
                    "vmul.i32 q4, q4, q5",
                    concat!("vadd.i32 q", $q, ", q", $q, ", q4"),
                )+
                "add r0, r0, {c}",
                "add r1, r1, {c}",
                "le lr, 8b",
                "add r0, r0, r2",
                "add r1, r1, r4",
                "subs {rows}, {rows}, #1",
                "bne 7b",
                "9:",
                // Requantisation, block by block, and the pointers of the next block.
                "ldr r2, [{prm}, #8]",
                "ldr r4, [{prm}, #4]",
                "ldr r3, [{prm}, #32]",
                "ldr r0, [{prm}, #40]",
                "vdup.32 q7, r0",
                requant_hi!($kind),
                "ldr r1, [{prm}, #36]",
                $(
                    requant_head!($kind, $q),
                    requant_middle!($q),
                    requant_end!($kind, $q),
                )+
                "str r2, [{prm}, #8]",
                "str r4, [{prm}, #4]",
                "str r3, [{prm}, #32]",
                "subs {g}, {g}, #1",
                "bne 20b",
                prm = in(reg) $args,
                c = in(reg) $c,
                cols = in(reg) $cols,
                rows0 = in(reg) $rows,
                rows = out(reg) _,
                g = out(reg) _,
                // Widening loads and narrowing stores take low base registers.
                out("r0") _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                out("r4") _,
                out("lr") _,
                out("s0") _, out("s1") _, out("s2") _, out("s3") _,
                out("s4") _, out("s5") _, out("s6") _, out("s7") _,
                out("s8") _, out("s9") _, out("s10") _, out("s11") _,
                out("s12") _, out("s13") _, out("s14") _, out("s15") _,
                out("s16") _, out("s17") _, out("s18") _, out("s19") _,
                out("s20") _, out("s21") _, out("s22") _, out("s23") _,
                out("s24") _, out("s25") _, out("s26") _, out("s27") _,
                out("s28") _, out("s29") _, out("s30") _, out("s31") _,
                options(nostack),
            )
        };
    }

    /// `groups` blocks of `4 * G` channels of one depthwise output pixel from channel `c0` (`G`
    /// is 4 or 1); [`super::dw_pixel`] checked that they fit every slice, and `rows, cols >= 1`.
    /// `right`: every shift is `<= 0` (the requantisation needs no left shift).
    #[inline(always)]
    pub fn dw_run<const G: usize>(
        p: &DwPixel<'_>,
        c0: usize,
        groups: usize,
        (xskip, wskip): (usize, usize),
        right: bool,
        y: &mut [i8],
    ) {
        if groups == 0 {
            return;
        }
        let mut args = DwArgs {
            bias: p.bias.as_ptr().wrapping_add(c0),
            mult: p.mult.as_ptr().wrapping_add(c0),
            shift: p.shift.as_ptr().wrapping_add(c0),
            wall: p.wall.as_ptr().wrapping_add(c0),
            taps: p.taps,
            pad: p.pad,
            xskip,
            wskip,
            y: y.as_mut_ptr().wrapping_add(c0),
            offset: p.clamp.offset,
            lo: p.clamp.lo,
            hi: p.clamp.hi,
            x: p.x.as_ptr().wrapping_add(c0),
            w: p.w.as_ptr().wrapping_add(c0),
            groups,
        };
        let args = core::ptr::addr_of_mut!(args);
        // SAFETY: `dw_pixel` checked that the channels `c0..c0 + groups * n` (`n = 4 * G`) fit
        // every slice. Block `b` (the loop runs `groups >= 1` times) reads, with `c1 = c0 + b *
        // n` and `j < n`: the input at `x + r * in_row + k * c + c1 + j` and the weights at `w +
        // r * w_row + k * c + c1 + j` for `r < rows`, `k < cols` (the row loop runs `rows >= 1`
        // times, the column loop `cols >= 1` times; `xskip = in_row - cols * c` and `wskip =
        // w_row - cols * c` take each pointer to the next row); `wall + t * c + c1 + j` for `t <
        // taps` (a loop of `taps` iterations, none for 0); the words of `bias`, `mult`, `shift`
        // from `c1`; and it writes the `n` output bytes from `y + c1`. Each pointer in `args`
        // advances by one block per block, as `c1` does. `args` is a local borrowed mutably for
        // the whole block. Byte loads need no alignment, word loads get `[i32]`'s. No stack is
        // used by the block; LR, Q0-Q7, the pointers, counters and flags are clobbered.
        unsafe {
            match (G == 4, right) {
                (true, true) => dw_asm!(args, p.c, p.rows, p.cols, right, 16; 0 0, 1 4, 2 8, 3 12),
                (true, false) => dw_asm!(args, p.c, p.rows, p.cols, any, 16; 0 0, 1 4, 2 8, 3 12),
                (false, true) => dw_asm!(args, p.c, p.rows, p.cols, right, 4; 0 0),
                (false, false) => dw_asm!(args, p.c, p.rows, p.cols, any, 4; 0 0),
            }
        }
    }

    /// [`super::max_window`]: `y` is not empty, the window is not and fits `x` (checked).
    #[inline(always)]
    pub fn max_window(x: &[i8], c: usize, row: usize, (rows, cols): (usize, usize), y: &mut [i8]) {
        // SAFETY: blocks of 16 channels from 0 while `rem = y.len() - 16 b > 0`; VCTP.8 enables
        // the first `min(rem, 16)` lanes, and only those are loaded (predicated VLDRB) or stored
        // (predicated VSTRB): bytes `j < y.len()` of `y`, and of `x` at `r * row + k * c + j` for
        // `r < rows`, `k < cols` (loops of `rows >= 1` and `cols >= 1` iterations), inside `x`
        // since `(rows - 1) * row + (cols - 1) * c + y.len() <= x.len()` was checked. Byte
        // accesses need no alignment. No stack; LR, Q0, Q1, VPR, pointers, counters and flags
        // are clobbered.
        unsafe {
            asm!(
                "2:",
                "vctp.8 {rem}",
                "mov {t}, {xp}",
                "vpst",
                "vldrbt.u8 q0, [{t}]",
                "mov {r}, {rows}",
                "3:",
                "mov {u}, {t}",
                "dls lr, {cols}",
                "4:",
                "vpst",
                "vldrbt.u8 q1, [{u}]",
                "vmax.s8 q0, q0, q1",
                "add {u}, {u}, {c}",
                "le lr, 4b",
                "add {t}, {t}, {row}",
                "subs {r}, {r}, #1",
                "bne 3b",
                "vpst",
                "vstrbt.8 q0, [{yp}]",
                "adds {yp}, {yp}, #16",
                "adds {xp}, {xp}, #16",
                "subs {rem}, {rem}, #16",
                "bgt 2b",
                rem = inout(reg) y.len() => _,
                xp = inout(reg) x.as_ptr() => _,
                yp = inout(reg) y.as_mut_ptr() => _,
                c = in(reg) c,
                row = in(reg) row,
                rows = in(reg) rows,
                cols = in(reg) cols,
                t = out(reg) _,
                u = out(reg) _,
                r = out(reg) _,
                out("lr") _,
                out("s0") _, out("s1") _, out("s2") _, out("s3") _,
                out("s4") _, out("s5") _, out("s6") _, out("s7") _,
                options(nostack),
            );
        }
    }

    /// All five slices have the same length (the callers checked).
    #[inline(always)]
    pub fn dot4(c0: &[i8], c1: &[i8], c2: &[i8], c3: &[i8], w: &[i8], acc: [i32; 4]) -> [i32; 4] {
        if w.is_empty() {
            return acc;
        }
        let [mut a0, mut a1, mut a2, mut a3] = acc;
        // SAFETY: DLSTP.8 runs ceil(n / 16) iterations over `n = w.len() >= 1` bytes and predicates
        // off the lanes past `n` in the last one (a predicated-off lane is not loaded), so every
        // VLDRB reads inside its slice, each of which has `n` bytes. Byte loads need no alignment.
        // Nothing is written; no stack is used; LR (the loop counter), Q0, Q1 (as S0-S7), the
        // pointers and the flags are clobbered; VMLADAVA needs even accumulator registers, hence
        // r0, r2, r4, r8.
        unsafe {
            asm!(
                "dlstp.8 lr, {n}",
                "2:",
                "vldrb.u8 q0, [{wp}], #16",
                "vldrb.u8 q1, [{x0}], #16",
                "vmladava.s8 r0, q1, q0",
                "vldrb.u8 q1, [{x1}], #16",
                "vmladava.s8 r2, q1, q0",
                "vldrb.u8 q1, [{x2}], #16",
                "vmladava.s8 r4, q1, q0",
                "vldrb.u8 q1, [{x3}], #16",
                "vmladava.s8 r8, q1, q0",
                "letp lr, 2b",
                n = in(reg) w.len(),
                wp = inout(reg) w.as_ptr() => _,
                x0 = inout(reg) c0.as_ptr() => _,
                x1 = inout(reg) c1.as_ptr() => _,
                x2 = inout(reg) c2.as_ptr() => _,
                x3 = inout(reg) c3.as_ptr() => _,
                inout("r0") a0,
                inout("r2") a1,
                inout("r4") a2,
                inout("r8") a3,
                out("lr") _,
                out("s0") _, out("s1") _, out("s2") _, out("s3") _,
                out("s4") _, out("s5") _, out("s6") _, out("s7") _,
                options(nostack, readonly),
            );
        }
        [a0, a1, a2, a3]
    }

    /// All four slices have the same length (the callers checked).
    #[inline(always)]
    pub fn dot3(x: &[i8], r0: &[i8], r1: &[i8], r2: &[i8], acc: [i32; 3]) -> [i32; 3] {
        if x.is_empty() {
            return acc;
        }
        let [mut a0, mut a1, mut a2] = acc;
        // SAFETY: as `dot4`: ceil(n / 16) tail-predicated iterations over `n = x.len() >= 1` bytes of
        // four slices of `n` bytes each; nothing written; LR, Q0, Q1, pointers and flags clobbered.
        unsafe {
            asm!(
                "dlstp.8 lr, {n}",
                "2:",
                "vldrb.u8 q0, [{xp}], #16",
                "vldrb.u8 q1, [{p0}], #16",
                "vmladava.s8 r0, q1, q0",
                "vldrb.u8 q1, [{p1}], #16",
                "vmladava.s8 r2, q1, q0",
                "vldrb.u8 q1, [{p2}], #16",
                "vmladava.s8 r4, q1, q0",
                "letp lr, 2b",
                n = in(reg) x.len(),
                xp = inout(reg) x.as_ptr() => _,
                p0 = inout(reg) r0.as_ptr() => _,
                p1 = inout(reg) r1.as_ptr() => _,
                p2 = inout(reg) r2.as_ptr() => _,
                inout("r0") a0,
                inout("r2") a1,
                inout("r4") a2,
                out("lr") _,
                out("s0") _, out("s1") _, out("s2") _, out("s3") _,
                out("s4") _, out("s5") _, out("s6") _, out("s7") _,
                options(nostack, readonly),
            );
        }
        [a0, a1, a2]
    }
}

#[cfg(not(tinynas_mve))]
#[allow(dead_code)]
mod imp {
    use super::{Clamp, DwPixel};

    pub fn max_window(x: &[i8], c: usize, row: usize, (rows, cols): (usize, usize), y: &mut [i8]) {
        for (j, y) in y.iter_mut().enumerate() {
            let mut m = i8::MIN;
            for r in 0..rows {
                for k in 0..cols {
                    if let Some(&v) = x.get(r * row + k * c + j) {
                        m = m.max(v);
                    }
                }
            }
            *y = m;
        }
    }

    /// VQRDMULH.S32 lane: `sat((2 a b + 2^31) >> 32)`.
    fn vqrdmulh(a: i32, b: i32) -> i32 {
        let v = (2 * i128::from(a) * i128::from(b) + (1 << 31)) >> 32;
        v.clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32
    }

    /// VRSHL.S32 lane by `n` in `-32..=31`: a left shift, or a right shift rounding half up.
    fn vrshl(x: i32, n: i32) -> i32 {
        if n >= 0 {
            x.wrapping_shl(n as u32)
        } else {
            ((i64::from(x) + (1i64 << (-n - 1))) >> -n) as i32
        }
    }

    /// One lane of the vector requantisation, instruction by instruction.
    pub fn requant_lane(acc: i32, m: i32, s: i32, k: &Clamp) -> i8 {
        let (left, right) = (s.max(0), s.min(0));
        let v = vrshl(acc, left);
        let v = vqrdmulh(v, m);
        let fix = (v & right) >> 31;
        let v = vrshl(v.saturating_add(fix), right);
        v.wrapping_add(k.offset).max(k.lo).min(k.hi) as u8 as i8
    }

    pub fn requant4(
        acc: &[[i32; 8]],
        lane: usize,
        m: &[i32],
        s: &[i32],
        k: &Clamp,
        y: &mut [i8],
        ystride: usize,
    ) {
        for (r, a) in acc.iter().enumerate() {
            for j in 0..4 {
                if let (Some(&a), Some(&m), Some(&s), Some(y)) = (
                    a.get(lane + j),
                    m.get(j),
                    s.get(j),
                    y.get_mut(r * ystride + j),
                ) {
                    *y = requant_lane(a, m, s, k);
                }
            }
        }
    }

    pub fn dw_run<const G: usize>(
        p: &DwPixel<'_>,
        c0: usize,
        groups: usize,
        _skips: (usize, usize),
        _right: bool,
        y: &mut [i8],
    ) {
        let at = |s: &[i8], i: usize| i32::from(s.get(i).copied().unwrap_or(0));
        for j in c0..c0 + 4 * G * groups {
            let mut a = p.bias.get(j).copied().unwrap_or(0);
            for t in 0..p.taps {
                a = a.wrapping_add(p.pad.wrapping_mul(at(p.wall, t * p.c + j)));
            }
            let pad = if p.taps > 0 { p.pad } else { 0 };
            for r in 0..p.rows {
                for k in 0..p.cols {
                    let x = at(p.x, r * p.in_row + k * p.c + j).wrapping_sub(pad);
                    a = a.wrapping_add(x.wrapping_mul(at(p.w, r * p.w_row + k * p.c + j)));
                }
            }
            if let (Some(&m), Some(&s), Some(y)) = (p.mult.get(j), p.shift.get(j), y.get_mut(j)) {
                *y = requant_lane(a, m, s, &p.clamp);
            }
        }
    }
    fn dot(x: &[i8], w: &[i8], acc: i32) -> i32 {
        x.iter().zip(w).fold(acc, |a, (&x, &w)| {
            a.wrapping_add(i32::from(x) * i32::from(w))
        })
    }

    pub fn dot4(c0: &[i8], c1: &[i8], c2: &[i8], c3: &[i8], w: &[i8], acc: [i32; 4]) -> [i32; 4] {
        [
            dot(c0, w, acc[0]),
            dot(c1, w, acc[1]),
            dot(c2, w, acc[2]),
            dot(c3, w, acc[3]),
        ]
    }

    pub fn dot3(x: &[i8], r0: &[i8], r1: &[i8], r2: &[i8], acc: [i32; 3]) -> [i32; 3] {
        [dot(x, r0, acc[0]), dot(x, r1, acc[1]), dot(x, r2, acc[2])]
    }
}
