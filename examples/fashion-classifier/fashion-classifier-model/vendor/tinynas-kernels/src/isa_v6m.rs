//! The Armv6-M (Cortex-M0/M0+) inner loop of the convolution, in assembly: Thumb-1 has eight low
//! registers and LDRSB only with a register offset, which leaves the compiler spilling the column
//! pointers of a Rust loop (23 instructions per four MACs); this loop takes 17.
//!
//! On an Armv6-M target (cfg `tinynas_v6m`, set by `build.rs`) it is `asm!`: the only `unsafe`
//! besides `isa_dsp.rs`. Elsewhere (the host, for tests) it is the same computation in plain Rust.
#![allow(unsafe_code)]

/// Four columns times one weight row: `acc[p] + sum_k x_p[k] * w[k]`. `block` holds, per `k`, the
/// four columns' values biased to unsigned (`x + 128`), four bytes; the loop multiplies the biased
/// bytes (LDRB with an immediate offset, no sign extension) and subtracts `128 * sum(w)` at the
/// end, which is exact in wrapping `i32` arithmetic.
#[inline(always)]
pub fn dot_4x1_u8(block: &[i8], w: &[i8], acc: [i32; 4]) -> [i32; 4] {
    let n = w.len().min(block.len() / 4);
    let (sums, wsum) = sums(block, w, n, acc);
    let bias = wsum.wrapping_mul(128);
    sums.map(|s| s.wrapping_sub(bias))
}

#[cfg(tinynas_v6m)]
#[inline(always)]
fn sums(block: &[i8], w: &[i8], n: usize, acc: [i32; 4]) -> ([i32; 4], i32) {
    if n == 0 {
        return (acc, 0);
    }
    // The four sums and the weight sum, kept in r8-r12 during the loop (Thumb-1 allows high
    // registers only as clobbers, so they go through this array).
    let mut sums = [acc[0], acc[1], acc[2], acc[3], 0];
    // SAFETY: `n >= 1` iterations; iteration `k` reads `w[k]` (through the row's end pointer and
    // the negative index `k - n`) and `block[4k..4k + 4]`, both inside their slices since
    // `n <= w.len()` and `4n <= block.len()`. Byte loads need no alignment. It reads and writes
    // `sums` (20 bytes, word-aligned as an `[i32; 5]`) and nothing else; no stack is used; the
    // pointers, the index, r8-r12 and the flags are declared clobbered.
    unsafe {
        core::arch::asm!(
            "ldr   {w}, [{sp_}, #0]",
            "mov   r8, {w}",
            "ldr   {w}, [{sp_}, #4]",
            "mov   r9, {w}",
            "ldr   {w}, [{sp_}, #8]",
            "mov   r10, {w}",
            "ldr   {w}, [{sp_}, #12]",
            "mov   r11, {w}",
            "ldr   {w}, [{sp_}, #16]",
            "mov   r12, {w}",
            "2:",
            "ldrsb {w}, [{wp}, {i}]",
            "ldrb  {t}, [{xp}, #0]",
            "muls  {t}, {w}, {t}",
            "add   r8, {t}",
            "ldrb  {t}, [{xp}, #1]",
            "muls  {t}, {w}, {t}",
            "add   r9, {t}",
            "ldrb  {t}, [{xp}, #2]",
            "muls  {t}, {w}, {t}",
            "add   r10, {t}",
            "ldrb  {t}, [{xp}, #3]",
            "muls  {t}, {w}, {t}",
            "add   r11, {t}",
            "add   r12, {w}",
            "adds  {xp}, #4",
            "adds  {i}, #1",
            "bne   2b",
            "mov   {w}, r8",
            "str   {w}, [{sp_}, #0]",
            "mov   {w}, r9",
            "str   {w}, [{sp_}, #4]",
            "mov   {w}, r10",
            "str   {w}, [{sp_}, #8]",
            "mov   {w}, r11",
            "str   {w}, [{sp_}, #12]",
            "mov   {w}, r12",
            "str   {w}, [{sp_}, #16]",
            sp_ = in(reg) sums.as_mut_ptr(),
            wp = in(reg) w.as_ptr().wrapping_add(n),
            i = inout(reg) (n as isize).wrapping_neg() => _,
            xp = inout(reg) block.as_ptr() => _,
            w = out(reg) _,
            t = out(reg) _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            options(nostack),
        );
    }
    let [a0, a1, a2, a3, wsum] = sums;
    ([a0, a1, a2, a3], wsum)
}

#[cfg(not(tinynas_v6m))]
#[allow(dead_code)]
fn sums(block: &[i8], w: &[i8], n: usize, acc: [i32; 4]) -> ([i32; 4], i32) {
    let mut acc = acc;
    let mut wsum = 0i32;
    for (x, &w) in crate::fast::mac::rows(block, 4).zip(w).take(n) {
        let w = i32::from(w);
        for (a, &x) in acc.iter_mut().zip(x) {
            *a = a.wrapping_add(i32::from(x as u8) * w);
        }
        wsum = wsum.wrapping_add(w);
    }
    (acc, wsum)
}

use crate::fast::dw_groups::{run_inside, runs, DwTap, DwTaps, Win};

/// `acc[j] + sum_t x[base + t.off + j] * w_j(t)` over a run of taps of the depthwise group
/// layout (`w02`: channels 0 and 2 as int16 halves, `w13`: 1 and 3), the bytes of `x` read
/// unsigned (the strip holds `x ^ 0x80`; its bias subtracts `128 * sum(w)`). Nothing is added
/// where the run's first or last word leaves `x` (its offsets increase, so those bound the rest).
#[inline(always)]
pub fn dw_taps_u8(acc: [i32; 4], x: &[i8], base: isize, run: &[DwTap]) -> [i32; 4] {
    if run_inside(x, base, run) {
        run_taps::<false>(acc, x, base, run)
    } else {
        acc
    }
}

/// `acc[j] + sum_t x[base + t.off + j] * w_j(t)` over the taps of window `win` (the depthwise
/// group path's layout: `w02` holds channels 0 and 2 as int16 halves, `w13` channels 1 and 3),
/// run by run; a run whose first or last word leaves `x` adds nothing (the kernels never pass
/// one).
#[inline(always)]
pub fn dw_taps(acc: [i32; 4], x: &[i8], base: isize, taps: &DwTaps, win: Win) -> [i32; 4] {
    runs(taps, win).fold(acc, |a, r| {
        if run_inside(x, base, r) {
            run_taps::<true>(a, x, base, r)
        } else {
            a
        }
    })
}

/// The Thumb-1 loop over one run of taps: the sums in r8-r11, the window's first byte in r12,
/// the run's end in lr; `$load` is the instructions that put a tap's input byte `$at` in r3
/// (signed: LDRB then SXTB; unsigned: LDRB).
#[cfg(tinynas_v6m)]
#[rustfmt::skip]
macro_rules! run_asm {
    ($state:expr, $run:expr, $($load:literal),*) => {
        core::arch::asm!(
            "ldr   r0, [r5, #16]",
            "mov   r12, r0",
            "ldr   r0, [r5, #20]",
            "mov   lr, r0",
            "ldr   r0, [r5, #0]",
            "mov   r8, r0",
            "ldr   r0, [r5, #4]",
            "mov   r9, r0",
            "ldr   r0, [r5, #8]",
            "mov   r10, r0",
            "ldr   r0, [r5, #12]",
            "mov   r11, r0",
            "2:",
            "ldm   r4!, {{r0, r1, r2}}",
            "add   r0, r12",
            "ldrb  r3, [r0, #0]", $($load,)*
            "muls  r3, r1, r3",
            "sxth  r3, r3",
            "add   r8, r3",
            "ldrb  r3, [r0, #1]", $($load,)*
            "muls  r3, r2, r3",
            "sxth  r3, r3",
            "add   r9, r3",
            "asrs  r1, r1, #16",
            "ldrb  r3, [r0, #2]", $($load,)*
            "muls  r3, r1, r3",
            "add   r10, r3",
            "asrs  r2, r2, #16",
            "ldrb  r3, [r0, #3]", $($load,)*
            "muls  r3, r2, r3",
            "add   r11, r3",
            "cmp   r4, lr",
            "bne   2b",
            "mov   r0, r8",
            "str   r0, [r5, #0]",
            "mov   r0, r9",
            "str   r0, [r5, #4]",
            "mov   r0, r10",
            "str   r0, [r5, #8]",
            "mov   r0, r11",
            "str   r0, [r5, #12]",
            in("r5") $state,
            inout("r4") $run => _,
            out("r0") _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
            options(nostack),
        )
    };
}

/// One run of taps inside `x` (`run_inside`), the input bytes read `SIGNED` (the input itself)
/// or unsigned (the strip's biased bytes).
#[cfg(tinynas_v6m)]
#[inline(always)]
fn run_taps<const SIGNED: bool>(acc: [i32; 4], x: &[i8], base: isize, run: &[DwTap]) -> [i32; 4] {
    let [a0, a1, a2, a3] = acc;
    // The four sums, then the window's first byte and the run's end (for r12 and lr, which
    // Thumb-1 allows only as clobbers).
    let mut state = [
        a0,
        a1,
        a2,
        a3,
        x.as_ptr().wrapping_offset(base) as i32,
        run.as_ptr().wrapping_add(run.len()) as i32,
    ];
    // SAFETY: called with `run` non-empty and the words of its first and last tap inside `x`
    // (`run_inside`); the offsets of a run increase (`DwTaps::fill_in`), so every tap's word lies
    // between them. The loop runs `run.len() >= 1` times (LDM advances `r4` by a tap's 12 bytes,
    // up to the end pointer in `lr`), reading each `DwTap` (`repr(C)`: offset, `w02`, `w13`;
    // word-aligned, as LDM needs) and four bytes of `x` (LDRB needs no alignment). A byte (signed,
    // or unsigned up to 255) times `w02` keeps channel 0's product in its low halfword (`|x * w|
    // <= 255 * 128 < 2^15`, so SXTH recovers it exactly), likewise channel 1's with `w13`;
    // channels 2 and 3 multiply the high halves, shifted down. It reads `state` (24 bytes,
    // word-aligned) and writes its first 16, nothing else; no stack; r0-r4, r8-r12, lr and the
    // flags are declared clobbered.
    unsafe {
        if SIGNED {
            run_asm!(state.as_mut_ptr(), run.as_ptr(), "sxtb  r3, r3");
        } else {
            run_asm!(state.as_mut_ptr(), run.as_ptr(),);
        }
    }
    let [a0, a1, a2, a3, _, _] = state;
    [a0, a1, a2, a3]
}

#[cfg(not(tinynas_v6m))]
#[allow(dead_code)]
fn run_taps<const SIGNED: bool>(acc: [i32; 4], x: &[i8], base: isize, run: &[DwTap]) -> [i32; 4] {
    if SIGNED {
        crate::fast::dw_groups::taps_portable(acc, x, base, run)
    } else {
        crate::fast::dw_groups::taps_u8_portable(acc, x, base, run)
    }
}

/// The Armv6-M requantisation's per-channel constants (see [`requant3`]), from a channel's
/// multiplier `m` (`[0, 2^31)`) and shift `s` (`-13..=8`) and the layer's output offset: the
/// multiplier in three pieces of 11, 11 and 9 bits, and the rounding constants and shifts.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(tinynas_v6m, allow(dead_code))]
pub(crate) struct Requant3 {
    m0: i32,
    m1: i32,
    m2: i32,
    c1: i32,
    sn: u32,
    c2: i32,
    s2: u32,
}

#[cfg_attr(tinynas_v6m, allow(dead_code))]
impl Requant3 {
    /// As the assembly of [`conv_cols`] works them out, channel by channel.
    #[inline(always)]
    pub(crate) fn new(m: i32, s: i32, offset: i32) -> Self {
        let s2 = 9i32.wrapping_sub(s) as u32;
        let pow = 1i32.wrapping_shl(8i32.wrapping_sub(s) as u32);
        let off = offset.wrapping_shl(s2);
        let (c1, sn, c2) = if s >= 0 {
            (pow, 32, off)
        } else {
            (256, 9, off.wrapping_add(pow))
        };
        Requant3 {
            m0: m & 0x7FF,
            m1: (m >> 11) & 0x7FF,
            m2: ((m as u32) >> 22) as i32,
            c1,
            sn,
            c2,
            s2,
        }
    }

    /// `Requant::apply` of the short form plus the offset, before the clamp, for `|acc| < 2^20`
    /// (the layer's `acc_bound`), `narrow` (the reference's `acc << left` does not wrap), a shift
    /// `s` in `-13..=8` and `|offset| <= 128`, with three 11-bit multiplies instead of a 64-bit
    /// product. With `left = max(s, 0)`, `e = max(-s, 0)`, the reference is `high =
    /// floor((acc m 2^left + 2^30) / 2^31)` (gemmlowp's doubling high multiply, for every sign)
    /// and then `floor((high + N) / 2^e)` with `N = 2^(e-1) - [high < 0]` (`0` for `e = 0`).
    /// Nested floors of integer sums fold, so with `T2 = floor(acc m / 2^22)`, computed exactly as
    /// `acc m2 + ((acc m1 + ((acc m0) >> 11)) >> 11)` (every product below `2^31`), `high =
    /// floor((T2 + 2^(8-left)) / 2^(9-left))` and the result is `floor((T2 + c1 - [T2 + c1 < 0]
    /// 2^sn + c2) / 2^s2)` with `c1 = 2^(8-left)`, `s2 = 9 - s` and, for `e >= 1` (`left = 0`),
    /// `sn = 9`, `c2 = 2^(8+e) + offset 2^s2`; for `e = 0`, `sn = 32` (Armv6-M's LSLS by 32
    /// gives 0) and `c2 = offset 2^s2`. Every sum stays below `2^31`: `|T2| < 2^29`, `|c2| <=
    /// 2^(s2+7) + 2^(s2-1)` with `s2 <= 22`.
    #[inline(always)]
    pub(crate) fn apply(&self, acc: i32) -> i32 {
        let p0 = self.m0.wrapping_mul(acc) >> 11;
        let t1 = self.m1.wrapping_mul(acc).wrapping_add(p0) >> 11;
        let t2 = acc.wrapping_mul(self.m2).wrapping_add(t1);
        let u = t2.wrapping_add(self.c1);
        let neg = ((u as u32) >> 31).checked_shl(self.sn).unwrap_or(0) as i32;
        u.wrapping_sub(neg).wrapping_add(self.c2) >> (self.s2 & 31)
    }
}

/// Whether [`conv_cols`] takes the layer (checked once per layer by the caller): narrow, every
/// accumulator below `2^20` (`acc_bound`), shifts in `-13..=8`, multipliers non-negative and an
/// int8 output offset (see [`Requant3::apply`]). The same on every target.
#[inline(always)]
pub fn conv_cols_takes(p: &crate::fast::FastConv<'_>) -> bool {
    p.narrow
        && p.acc_bound < 1 << 20
        && (-128..=128).contains(&p.quant.output_offset)
        && p.shift.iter().all(|s| (-13..=8).contains(s))
        && p.multiplier.iter().all(|&m| m >= 0)
}

/// Whether the slices fit [`conv_cols`]: `kp` a positive multiple of 4, the block's `4 kp`
/// bytes, `oc >= 1` weight rows of `kp`, `oc` biases, multipliers and shifts, and the four
/// pixels' `4 oc` outputs.
#[inline(always)]
fn conv_cols_fit(block: &[i8], p: &crate::fast::FastConv<'_>, kp: usize, y: &[i8]) -> bool {
    let oc = p.dims.out_c;
    let fits = |len: usize, n: Option<usize>| n.is_some_and(|n| n <= len);
    kp != 0
        && kp % 4 == 0
        && oc != 0
        && fits(block.len(), kp.checked_mul(4))
        && fits(p.weights.len(), oc.checked_mul(kp))
        && fits(y.len(), oc.checked_mul(4))
        && p.bias.len() >= oc
        && p.multiplier.len() >= oc
        && p.shift.len() >= oc
}

/// Every output channel of a block of four im2col columns (this module's layout: per `k` the
/// four columns' bytes biased to unsigned), for a layer that [`conv_cols_takes`]: channel `c`'s
/// four dot products with weight row `c` from its bias, [`Requant3`] and the clamp, written to
/// `y[c + q * oc]` for the four pixels `q`. False (nothing written) where a slice is too short.
#[inline(always)]
pub fn conv_cols(block: &[i8], p: &crate::fast::FastConv<'_>, kp: usize, y: &mut [i8]) -> bool {
    if !conv_cols_fit(block, p, kp, y) {
        return false;
    }
    cols(block, p, kp, y);
    true
}

/// [`conv_cols`] in plain Rust (the host runs it in tests): the same arithmetic.
#[cfg(not(tinynas_v6m))]
#[inline(always)]
fn cols(block: &[i8], p: &crate::fast::FastConv<'_>, kp: usize, y: &mut [i8]) {
    let oc = p.dims.out_c;
    let k = crate::fast::mac::Clamp::new(&p.quant);
    let rows = crate::fast::mac::rows(p.weights, kp).zip(p.bias);
    let ms = p.multiplier.iter().zip(p.shift);
    for (c, ((w, &b), (&m, &s))) in rows.zip(ms).take(oc).enumerate() {
        let acc = dot_4x1_u8(block, w, [b; 4]);
        let rq = Requant3::new(m, s, k.offset);
        for (q, a) in acc.into_iter().enumerate() {
            if let Some(y) = y.get_mut(c + q * oc) {
                *y = rq.apply(a).max(k.lo).min(k.hi) as i8;
            }
        }
    }
}

/// What the assembly of [`conv_cols`] reads and updates, at the offsets the assembly names
/// (`repr(C)`, word fields): the pointers move one channel on each iteration; the last seven
/// fields are the current channel's [`Requant3`], written by the assembly.
#[cfg(tinynas_v6m)]
#[repr(C)]
struct Cols {
    row_end: *const i8, // 0: the current weight row plus its groups of four
    neg_kp: i32,        // 4
    block: *const i8,   // 8
    kp: usize,          // 12
    bias: *const i32,   // 16
    mult: *const i32,   // 20
    shift: *const i32,  // 24
    y: *mut i8,         // 28: the current channel's first output
    y_end: *mut i8,     // 32: `y + oc`
    oc: usize,          // 36
    lo: i32,            // 40
    hi: i32,            // 44
    offset: i32,        // 48
    m2: i32,            // 52
    c1: i32,            // 56
    sn: u32,            // 60
    c2: i32,            // 64
    s2: u32,            // 68
    tail: usize,        // 72: the row's values after its last group of four (`k % 4`)
}

/// One group of four `k` of a channel's dot products: weight `k` (LDRSB through the base
/// `$wp`, `r4 + j` for the group's `j`-th, and the index `r3`) times the four columns' unsigned
/// bytes `$o..$o + 3` from `r2`, into r8-r11, and the weight sum in r12.
#[cfg(tinynas_v6m)]
#[rustfmt::skip]
macro_rules! cols_tap {
    ($wp:literal, $o0:literal, $o1:literal, $o2:literal, $o3:literal) => {
        concat!(
            "ldrsb r0, [", $wp, ", r3]\n",
            "ldrb  r1, [r2, #", $o0, "]\n", "muls r1, r0, r1\n", "add r8, r1\n",
            "ldrb  r1, [r2, #", $o1, "]\n", "muls r1, r0, r1\n", "add r9, r1\n",
            "ldrb  r1, [r2, #", $o2, "]\n", "muls r1, r0, r1\n", "add r10, r1\n",
            "ldrb  r1, [r2, #", $o3, "]\n", "muls r1, r0, r1\n", "add r11, r1\n",
            "add   r12, r0\n",
        )
    };
}

/// One pixel's accumulator (`$acc`, a high register) less `r2 = 128 * sum(w)`, requantised by
/// [`Requant3::apply`] (`m0` in r6, `m1` in r7, the rest from the job at r0), clamped and stored
/// at `r1`.
#[cfg(tinynas_v6m)]
#[rustfmt::skip]
macro_rules! cols_value {
    ($acc:literal) => {
        concat!(
            "mov   r3, ", $acc, "\n",
            "subs  r3, r3, r2\n",
            "movs  r4, r6\n", "muls r4, r3, r4\n",
            "asrs  r4, r4, #11\n",
            "movs  r5, r7\n", "muls r5, r3, r5\n",
            "adds  r4, r4, r5\n",
            "asrs  r4, r4, #11\n",
            "ldr   r5, [r0, #52]\n", "muls r3, r5, r3\n",
            "adds  r3, r3, r4\n",
            "ldr   r5, [r0, #56]\n", "adds r3, r3, r5\n",
            "lsrs  r4, r3, #31\n", "ldr r5, [r0, #60]\n", "lsls r4, r4, r5\n", "subs r3, r3, r4\n",
            "ldr   r5, [r0, #64]\n", "adds r3, r3, r5\n",
            "ldr   r5, [r0, #68]\n", "asrs r3, r3, r5\n",
            "ldr   r5, [r0, #40]\n", "cmp r3, r5\n", "bge 4f\n", "mov r3, r5\n", "4:\n",
            "ldr   r5, [r0, #44]\n", "cmp r3, r5\n", "ble 5f\n", "mov r3, r5\n", "5:\n",
            "strb  r3, [r1]\n",
        )
    };
}

#[cfg(tinynas_v6m)]
#[inline(always)]
fn cols(block: &[i8], p: &crate::fast::FastConv<'_>, kp: usize, y: &mut [i8]) {
    let oc = p.dims.out_c;
    let k = crate::fast::mac::Clamp::new(&p.quant);
    // The row's groups of four, then its last `k % 4` values one by one (not the zero padding
    // up to `kp`); a row shorter than 4 runs its one padded group.
    let d = p.dims;
    let taps = (d.k_h * d.k_w * d.in_c).min(kp);
    let (groups, tail) = if taps >= 4 {
        (taps & !3, taps % 4)
    } else {
        (kp, 0)
    };
    let mut job = Cols {
        row_end: p.weights.as_ptr().wrapping_add(groups),
        neg_kp: (groups as i32).wrapping_neg(),
        block: block.as_ptr(),
        kp,
        bias: p.bias.as_ptr(),
        mult: p.multiplier.as_ptr(),
        shift: p.shift.as_ptr(),
        y: y.as_mut_ptr(),
        y_end: y.as_mut_ptr().wrapping_add(oc),
        oc,
        lo: k.lo,
        hi: k.hi,
        offset: k.offset,
        m2: 0,
        c1: 0,
        sn: 0,
        c2: 0,
        s2: 0,
        tail,
    };
    // SAFETY: r0 points to `job`, a `repr(C)` value of word fields on this stack frame that the
    // assembly reads and updates and that lives until the block ends (word loads and stores at
    // the fields' offsets). The channel loop runs `oc >= 1` times (`conv_cols_fit`): it ends when
    // `y`, one byte further a channel, reaches `y_end = y + oc`. Channel `c` reads `bias[c]`,
    // `multiplier[c]` and `shift[c]` (each pointer advances a word a channel; all three are at
    // least `oc` long) and weight row `c`: the group loop runs `groups / 4 >= 1` times (the
    // index r3 goes from `-groups` up to 0 in steps of 4; `groups` is a multiple of 4, at most
    // `kp`), reading `row_end - groups + i + j` for `j < 4`, then the tail loop `tail` times
    // (r3 from 0), reading `row_end + i`: all below `groups + tail <= kp`, inside row `c`
    // (`row_end` advances `kp` a channel; `oc kp <= weights.len()`); and bytes `4 i..4 i + 4`
    // of the block for value `i < groups + tail`, all below `4 kp <= block.len()`.
    // It writes `y[c + q oc]`, `q < 4`, below `4 oc <= y.len()`. Byte loads and stores need no
    // alignment. r6 and r7 (which LLVM reserves) are saved on the stack and restored; r0-r5,
    // r8-r12, lr and the flags are declared clobbered.
    unsafe {
        core::arch::asm!(
            "push  {{r6, r7}}",
            "mov   lr, r0",
            "6:",
            "mov   r0, lr",
            "ldr   r1, [r0, #16]",
            "ldm   r1!, {{r2}}",
            "str   r1, [r0, #16]",
            "mov   r8, r2",
            "mov   r9, r2",
            "mov   r10, r2",
            "mov   r11, r2",
            "movs  r2, #0",
            "mov   r12, r2",
            "ldr   r4, [r0, #0]",
            "adds  r5, r4, #1",
            "adds  r6, r4, #2",
            "adds  r7, r4, #3",
            "ldr   r3, [r0, #4]",
            "ldr   r2, [r0, #8]",
            "7:",
            cols_tap!("r4", "0", "1", "2", "3"),
            cols_tap!("r5", "4", "5", "6", "7"),
            cols_tap!("r6", "8", "9", "10", "11"),
            cols_tap!("r7", "12", "13", "14", "15"),
            "adds  r2, #16",
            "adds  r3, #4",
            "bne   7b",
            // The last `k % 4` values.
            "mov   r0, lr",
            "ldr   r5, [r0, #72]",
            "cmp   r5, #0",
            "beq   9f",
            "8:",
            cols_tap!("r4", "0", "1", "2", "3"),
            "adds  r2, #4",
            "adds  r3, #1",
            "cmp   r3, r5",
            "bne   8b",
            "9:",
            // The next row; this channel's Requant3.
            "mov   r0, lr",
            "ldr   r1, [r0, #12]",
            "adds  r4, r4, r1",
            "str   r4, [r0, #0]",
            "ldr   r1, [r0, #20]",
            "ldm   r1!, {{r6}}",
            "str   r1, [r0, #20]",
            "lsrs  r5, r6, #22",
            "str   r5, [r0, #52]",
            "lsls  r7, r6, #10",
            "lsrs  r7, r7, #21",
            "lsls  r6, r6, #21",
            "lsrs  r6, r6, #21",
            "ldr   r1, [r0, #24]",
            "ldm   r1!, {{r3}}",
            "str   r1, [r0, #24]",
            "movs  r4, #9",
            "subs  r4, r4, r3",
            "str   r4, [r0, #68]",
            "ldr   r1, [r0, #48]",
            "lsls  r1, r1, r4",
            "subs  r4, #1",
            "movs  r5, #1",
            "lsls  r5, r5, r4",
            "cmp   r3, #0",
            "blt   2f",
            "str   r5, [r0, #56]",
            "movs  r5, #32",
            "str   r5, [r0, #60]",
            "str   r1, [r0, #64]",
            "b     3f",
            "2:",
            "adds  r1, r1, r5",
            "str   r1, [r0, #64]",
            "movs  r5, #1",
            "lsls  r5, r5, #8",
            "str   r5, [r0, #56]",
            "movs  r5, #9",
            "str   r5, [r0, #60]",
            "3:",
            "mov   r2, r12",
            "lsls  r2, r2, #7",
            "ldr   r1, [r0, #28]",
            cols_value!("r8"),
            "ldr   r5, [r0, #36]",
            "adds  r1, r1, r5",
            cols_value!("r9"),
            "ldr   r5, [r0, #36]",
            "adds  r1, r1, r5",
            cols_value!("r10"),
            "ldr   r5, [r0, #36]",
            "adds  r1, r1, r5",
            cols_value!("r11"),
            "ldr   r1, [r0, #28]",
            "adds  r1, #1",
            "str   r1, [r0, #28]",
            "ldr   r2, [r0, #32]",
            "cmp   r1, r2",
            "beq   8f",
            "b     6b",
            "8:",
            "pop   {{r6, r7}}",
            inout("r0") &mut job as *mut Cols => _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            out("r4") _,
            out("r5") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
        );
    }
}

/// A row of output pixels of one depthwise group of four channels whose windows run the same
/// taps (one run), for a layer that [`conv_cols_takes`]: for pixel `i < count`, the taps of `run`
/// on the window at `x[first + i * step..]` (its bytes `SIGNED`, the input, or unsigned, the
/// Armv6-M strip of `dw_groups::depthwise_strip`) from `bias`, each lane's [`Requant3`]
/// (channel `c0 + j` of `p`) and the clamp, into `y[at + i * ystep..][..4]`. False (nothing
/// written) where a slice is too short or a window leaves `x`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn strip_row<const SIGNED: bool>(
    bias: [i32; 4],
    x: &[i8],
    (first, step): (isize, usize),
    run: &[DwTap],
    p: &crate::fast::FastConv<'_>,
    c0: usize,
    count: usize,
    y: &mut [i8],
    (at, ystep): (usize, usize),
) -> bool {
    let k = crate::fast::mac::Clamp::new(&p.quant);
    // (No indexing: where this was a closure indexing `m[j]`, LLVM once kept it out of line
    // with its bounds checks, a panic path the link check caught.)
    let (Some(&[m0, m1, m2, m3]), Some(&[s0, s1, s2, s3])) =
        (p.multiplier.get(c0..c0 + 4), p.shift.get(c0..c0 + 4))
    else {
        return false;
    };
    let lanes = [
        Requant3::new(m0, s0, k.offset),
        Requant3::new(m1, s1, k.offset),
        Requant3::new(m2, s2, k.offset),
        Requant3::new(m3, s3, k.offset),
    ];
    let last = count
        .checked_sub(1)
        .and_then(|n| n.checked_mul(step))
        .and_then(|l| isize::try_from(l).ok())
        .and_then(|l| l.checked_add(first));
    let y_end = count
        .checked_sub(1)
        .and_then(|n| n.checked_mul(ystep))
        .and_then(|l| l.checked_add(at))
        .and_then(|l| l.checked_add(4));
    let fits = match (last, y_end) {
        (Some(last), Some(y_end)) => {
            run_inside(x, first, run) && run_inside(x, last, run) && y_end <= y.len()
        }
        _ => false,
    };
    if !fits {
        return false;
    }
    let clamp = (k.lo, k.hi);
    row::<SIGNED>(
        bias,
        x,
        (first, step),
        run,
        (&lanes, clamp),
        count,
        y,
        (at, ystep),
    );
    true
}

/// [`strip_row`] in plain Rust (the host runs it in tests): the same arithmetic.
#[cfg(not(tinynas_v6m))]
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn row<const SIGNED: bool>(
    bias: [i32; 4],
    x: &[i8],
    (first, step): (isize, usize),
    run: &[DwTap],
    (lanes, (lo, hi)): (&[Requant3; 4], (i32, i32)),
    count: usize,
    y: &mut [i8],
    (at, ystep): (usize, usize),
) {
    for i in 0..count {
        let base = first.wrapping_add((i * step) as isize);
        let acc = if SIGNED {
            crate::fast::dw_groups::taps_portable(bias, x, base, run)
        } else {
            crate::fast::dw_groups::taps_u8_portable(bias, x, base, run)
        };
        if let Some(y) = y.get_mut(at + i * ystep..).and_then(|y| y.get_mut(..4)) {
            for ((y, a), l) in y.iter_mut().zip(acc).zip(lanes) {
                *y = l.apply(a).max(lo).min(hi) as i8;
            }
        }
    }
}

/// What the assembly of [`strip_row`] reads and updates (`repr(C)`, word fields at the offsets
/// it names).
#[cfg(tinynas_v6m)]
#[repr(C)]
struct StripRow {
    bias: [i32; 4],         // 0
    run: *const DwTap,      // 16
    run_end: *const DwTap,  // 20
    x: *const i8,           // 24: the first pixel's window
    step: usize,            // 28
    y: *mut i8,             // 32: the first pixel's four outputs
    ystep: usize,           // 36
    count: usize,           // 40: pixels left
    lanes: *const Requant3, // 44: the four channels'
    lo: i32,                // 48
    hi: i32,                // 52
}

/// Lane `$j`'s accumulator (`$acc`, a high register) requantised by its [`Requant3`] (the
/// seven words at r6 + `$o0`..`$o6`), clamped (the bounds from the job at r7) and stored at
/// `y[$j]` (r5).
#[cfg(tinynas_v6m)]
#[rustfmt::skip]
macro_rules! strip_lane {
    ($acc:literal, $j:literal, $o0:literal, $o1:literal, $o2:literal, $o3:literal, $o4:literal,
     $o5:literal, $o6:literal) => {
        concat!(
            "mov   r3, ", $acc, "\n",
            "ldr   r4, [r6, #", $o0, "]\n", "muls r4, r3, r4\n", "asrs r4, r4, #11\n",
            "ldr   r2, [r6, #", $o1, "]\n", "muls r2, r3, r2\n", "adds r4, r4, r2\n",
            "asrs  r4, r4, #11\n",
            "ldr   r2, [r6, #", $o2, "]\n", "muls r3, r2, r3\n", "adds r3, r3, r4\n",
            "ldr   r2, [r6, #", $o3, "]\n", "adds r3, r3, r2\n",
            "lsrs  r4, r3, #31\n", "ldr r2, [r6, #", $o4, "]\n", "lsls r4, r4, r2\n",
            "subs  r3, r3, r4\n",
            "ldr   r2, [r6, #", $o5, "]\n", "adds r3, r3, r2\n",
            "ldr   r2, [r6, #", $o6, "]\n", "asrs r3, r3, r2\n",
            "ldr   r2, [r7, #48]\n", "cmp r3, r2\n", "bge 4f\n", "mov r3, r2\n", "4:\n",
            "ldr   r2, [r7, #52]\n", "cmp r3, r2\n", "ble 5f\n", "mov r3, r2\n", "5:\n",
            "strb  r3, [r5, #", $j, "]\n",
        )
    };
}

/// One tap of [`strip_row`]'s loop: LDM the tap (offset, `w02`, `w13`) from r4, its four
/// input bytes at `r12 + offset` (each followed by `$load`), the four products into r8-r11.
#[cfg(tinynas_v6m)]
#[rustfmt::skip]
macro_rules! dw_tap {
    ($_tap:ident [$($load:literal),*]) => {
        concat!(
            "ldm   r4!, {{r0, r1, r2}}\n",
            "add   r0, r12\n",
            "ldrb  r3, [r0, #0]\n", $($load, "\n",)*
            "muls  r3, r1, r3\n", "sxth r3, r3\n", "add r8, r3\n",
            "ldrb  r3, [r0, #1]\n", $($load, "\n",)*
            "muls  r3, r2, r3\n", "sxth r3, r3\n", "add r9, r3\n",
            "asrs  r1, r1, #16\n",
            "ldrb  r3, [r0, #2]\n", $($load, "\n",)*
            "muls  r3, r1, r3\n", "add r10, r3\n",
            "asrs  r2, r2, #16\n",
            "ldrb  r3, [r0, #3]\n", $($load, "\n",)*
            "muls  r3, r2, r3\n", "add r11, r3\n",
        )
    };
}

/// The assembly of [`strip_row`]'s row loop on the job at `$job`; `$load` is what follows each
/// tap's LDRB (SXTB for signed bytes, nothing for the strip's unsigned ones).
#[cfg(tinynas_v6m)]
#[rustfmt::skip]
macro_rules! strip_row_asm {
    ($job:expr, $loads:tt, $($tap:ident)+) => {
        core::arch::asm!(
            "push  {{r6, r7}}",
            "mov   r7, r0",
            // Across the pixels: the window in r12, the run's end in lr, the lanes in r6 and
            // the outputs in r5 (the tap loop and the lanes leave them as they are).
            "ldr   r0, [r7, #24]",
            "mov   r12, r0",
            "ldr   r0, [r7, #20]",
            "mov   lr, r0",
            "ldr   r6, [r7, #44]",
            "ldr   r5, [r7, #32]",
            "6:",
            "ldr   r0, [r7, #0]",
            "mov   r8, r0",
            "ldr   r0, [r7, #4]",
            "mov   r9, r0",
            "ldr   r0, [r7, #8]",
            "mov   r10, r0",
            "ldr   r0, [r7, #12]",
            "mov   r11, r0",
            "ldr   r4, [r7, #16]",
            "7:",
            $(dw_tap!($tap $loads),)+
            "cmp   r4, lr",
            "bne   7b",
            strip_lane!("r8", "0", "0", "4", "8", "12", "16", "20", "24"),
            strip_lane!("r9", "1", "28", "32", "36", "40", "44", "48", "52"),
            strip_lane!("r10", "2", "56", "60", "64", "68", "72", "76", "80"),
            strip_lane!("r11", "3", "84", "88", "92", "96", "100", "104", "108"),
            "ldr   r1, [r7, #28]",
            "add   r12, r1",
            "ldr   r1, [r7, #36]",
            "adds  r5, r5, r1",
            "ldr   r0, [r7, #40]",
            "subs  r0, #1",
            "str   r0, [r7, #40]",
            "beq   8f",
            "b     6b",
            "8:",
            "pop   {{r6, r7}}",
            inout("r0") $job => _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            out("r4") _,
            out("r5") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
        )
    };
}

#[cfg(tinynas_v6m)]
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn row<const SIGNED: bool>(
    bias: [i32; 4],
    x: &[i8],
    (first, step): (isize, usize),
    run: &[DwTap],
    (lanes, (lo, hi)): (&[Requant3; 4], (i32, i32)),
    count: usize,
    y: &mut [i8],
    (at, ystep): (usize, usize),
) {
    let mut job = StripRow {
        bias,
        run: run.as_ptr(),
        run_end: run.as_ptr().wrapping_add(run.len()),
        x: x.as_ptr().wrapping_offset(first),
        step,
        y: y.as_mut_ptr().wrapping_add(at),
        ystep,
        count,
        lanes: lanes.as_ptr(),
        lo,
        hi,
    };
    // SAFETY: r0 points to `job`, a `repr(C)` value of word fields on this stack frame that the
    // assembly reads and updates and that lives until the block ends. The pixel loop runs
    // `count >= 1` times (`strip_row` checked it through `count - 1`). Pixel `i` runs the taps
    // of `run` (non-empty: `run_inside`; LDM advances r4 by a tap's 12 bytes up to the end
    // pointer in lr, reading each `DwTap`, word-aligned) on the window at `x + first + i step`:
    // `strip_row` checked that the words of the first and last taps lie inside `x` for the first
    // and the last pixel, and since a run's offsets increase and the windows move forward, every
    // tap's word of every pixel lies between those. The products are exact as in `run_taps`
    // (a byte times an int16 half). Then the four lanes' `Requant3` (seven words each, from
    // `lanes`, an array of four), the bounds, and the bytes `y[at + i ystep..][..4]`, inside `y`
    // (checked through the last pixel). r6 and r7 (which LLVM reserves) are saved on the stack
    // and restored; r0-r5, r8-r12, lr and the flags are declared clobbered.
    unsafe {
        let job = &mut job as *mut StripRow;
        // Three taps an iteration where the run allows (a 3-wide kernel's rows).
        match (SIGNED, run.len() % 3 == 0) {
            (true, true) => strip_row_asm!(job, ["sxtb  r3, r3"], t t t),
            (true, false) => strip_row_asm!(job, ["sxtb  r3, r3"], t),
            (false, true) => strip_row_asm!(job, [], t t t),
            (false, false) => strip_row_asm!(job, [], t),
        }
    }
}

/// `dst[4 i] = src[i] ^ xor` for every `i < src.len()` (a run of one im2col column into this
/// module's block layout); false (nothing written) where `dst` is short.
#[inline(always)]
fn spread(dst: &mut [i8], src: &[u8], xor: u8) -> bool {
    let n = src.len();
    if n == 0 {
        return true;
    }
    if dst.len() <= 4 * (n - 1) {
        return false;
    }
    spread_unchecked(dst, src, xor);
    true
}

#[cfg(not(tinynas_v6m))]
#[inline(always)]
fn spread_unchecked(dst: &mut [i8], src: &[u8], xor: u8) {
    for (d, &s) in dst.iter_mut().step_by(4).zip(src) {
        *d = (s ^ xor) as i8;
    }
}

#[cfg(tinynas_v6m)]
#[inline(always)]
fn spread_unchecked(dst: &mut [i8], src: &[u8], xor: u8) {
    let n = src.len();
    let src = src.as_ptr();
    // SAFETY: `spread` checked `n >= 1` and `4 (n - 1) < dst.len()`: the loops read `src[i]`
    // for `i < n` (the groups of four up to `n - n % 4`, then one byte at a time up to `n`)
    // and write `dst[4 i]`, all inside the slices; byte accesses need no alignment. No stack;
    // the pointers, the temporary and the flags are declared clobbered.
    unsafe {
        core::arch::asm!(
            "cmp   {s}, {e4}",
            "beq   3f",
            "2:",
            "ldrb  {t}, [{s}, #0]",
            "eors  {t}, {x}",
            "strb  {t}, [{d}, #0]",
            "ldrb  {t}, [{s}, #1]",
            "eors  {t}, {x}",
            "strb  {t}, [{d}, #4]",
            "ldrb  {t}, [{s}, #2]",
            "eors  {t}, {x}",
            "strb  {t}, [{d}, #8]",
            "ldrb  {t}, [{s}, #3]",
            "eors  {t}, {x}",
            "strb  {t}, [{d}, #12]",
            "adds  {s}, #4",
            "adds  {d}, #16",
            "cmp   {s}, {e4}",
            "bne   2b",
            "3:",
            "cmp   {s}, {e}",
            "beq   5f",
            "4:",
            "ldrb  {t}, [{s}, #0]",
            "eors  {t}, {x}",
            "strb  {t}, [{d}, #0]",
            "adds  {s}, #1",
            "adds  {d}, #4",
            "cmp   {s}, {e}",
            "bne   4b",
            "5:",
            s = inout(reg) src => _,
            d = inout(reg) dst.as_mut_ptr() => _,
            e4 = in(reg) src.wrapping_add(n - n % 4),
            e = in(reg) src.wrapping_add(n),
            x = in(reg) u32::from(xor),
            t = out(reg) _,
            options(nostack),
        );
    }
}

/// `dst[4 i] = v` for `i < n`; false (nothing written) where `dst` is short.
#[inline(always)]
fn spread_fill(dst: &mut [i8], n: usize, v: u8) -> bool {
    if n == 0 {
        return true;
    }
    let Some(d) = dst.get_mut(..4 * (n - 1) + 1) else {
        return false;
    };
    for d in d.iter_mut().step_by(4) {
        *d = v as i8;
    }
    true
}

/// The im2col column of output pixel `(oy, ox)` written straight into column `q` of the block
/// (this module's layout: value `i` at `4 i + q`, biased to unsigned: `x_i8 ^ 0x80`), the
/// window's taps in `[k_h][k_w][in_c]` order, padded taps the biased `pad`; the values from `k`
/// to `kp` are left as they are (their weights are zero). False where a slice is short, or for
/// a window at the border whose rows are shorter than 4 values (then the caller gathers it).
#[inline(always)]
pub fn gather_block<T: crate::fast::Pixel>(
    input: &[T],
    d: &crate::ConvDims,
    (oy, ox): (usize, usize),
    pad: i8,
    block: &mut [i8],
    q: usize,
) -> bool {
    // SAFETY: `T` is `i8` or `u8` (`Pixel`'s two implementations): one byte, any bit pattern,
    // so the same memory read as `u8` is valid.
    let bytes = unsafe { core::slice::from_raw_parts(input.as_ptr().cast::<u8>(), input.len()) };
    // `x_i8 ^ 0x80`: the stored byte itself for u8 pixels (`T::XOR` converts), else XOR 0x80.
    let xor = (T::XOR as u8) ^ 0x80;
    let padb = (pad as u8) ^ 0x80;
    let Some(col) = block.get_mut(q..) else {
        return false;
    };
    let row_len = d.k_w * d.in_c;
    let (y0, x0) = (oy * d.stride, ox * d.stride);
    let inside_x = x0 >= d.pad_left && x0 + d.k_w <= d.in_w + d.pad_left;
    let inside_y = y0 >= d.pad_top && y0 + d.k_h <= d.in_h + d.pad_top;
    let stride = d.in_w * d.in_c;
    // Rows shorter than 4 values (a first layer's few channels): byte by byte inside the
    // input; the caller gathers the border windows.
    if row_len < 4 {
        if !(inside_x && inside_y) {
            return false;
        }
        let start = (y0 - d.pad_top) * stride + (x0 - d.pad_left) * d.in_c;
        for ky in 0..d.k_h {
            let at = start + ky * stride;
            let to = 4 * ky * row_len;
            let (Some(src), Some(dst)) = (
                bytes.get(at..at + row_len),
                col.get_mut(to..to + 4 * row_len),
            ) else {
                return false;
            };
            for (d, &s) in dst.iter_mut().step_by(4).zip(src) {
                *d = (s ^ xor) as i8;
            }
        }
        return true;
    }
    if inside_x && inside_y {
        let start = (y0 - d.pad_top) * stride + (x0 - d.pad_left) * d.in_c;
        for ky in 0..d.k_h {
            let at = start + ky * stride;
            let (Some(src), Some(dst)) =
                (bytes.get(at..at + row_len), col.get_mut(4 * ky * row_len..))
            else {
                return false;
            };
            if !spread(dst, src, xor) {
                return false;
            }
        }
        return true;
    }
    // The kernel columns inside the input: kx in lo..hi.
    let lo = d.pad_left.saturating_sub(x0).min(d.k_w);
    let hi = (d.in_w + d.pad_left).saturating_sub(x0).clamp(lo, d.k_w);
    for ky in 0..d.k_h {
        let Some(dst) = col.get_mut(4 * ky * row_len..) else {
            return false;
        };
        let src = (y0 + ky)
            .checked_sub(d.pad_top)
            .filter(|&y| y < d.in_h && hi > lo)
            .and_then(|iy| {
                let at = (iy * d.in_w + x0 + lo - d.pad_left) * d.in_c;
                bytes.get(at..at + (hi - lo) * d.in_c)
            });
        let ok = match src {
            Some(src) => {
                let (before, inside) = (lo * d.in_c, src.len());
                let after = row_len - before - inside;
                spread_fill(dst, before, padb)
                    && dst
                        .get_mut(4 * before..)
                        .is_some_and(|r| spread(r, src, xor))
                    && dst
                        .get_mut(4 * (before + inside)..)
                        .is_some_and(|r| spread_fill(r, after, padb))
            }
            None => spread_fill(dst, row_len, padb),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// One input row of a depthwise group into the Armv6-M strip: `dst[4 i + j] = src[i * c + j] ^
/// 0x80` for the `dst.len() / 4` pixels and `j < 4` (word by word where both sides and `c` are
/// word-aligned). False (nothing written) where a slice is short.
#[inline(always)]
pub fn strip_copy(dst: &mut [i8], src: &[i8], c: usize) -> bool {
    let n = dst.len() / 4;
    if n == 0 {
        return true;
    }
    let need = (n - 1).checked_mul(c).and_then(|v| v.checked_add(4));
    if c < 4 || need.is_none_or(|need| need > src.len()) {
        return false;
    }
    copy_pixels(&mut dst[..4 * n], src, c);
    true
}

#[cfg(not(tinynas_v6m))]
#[inline(always)]
fn copy_pixels(dst: &mut [i8], src: &[i8], c: usize) {
    for (d, s) in crate::fast::mac::rows_mut(dst, 4).zip(src.chunks(c)) {
        for (d, &s) in d.iter_mut().zip(s) {
            *d = s ^ i8::MIN;
        }
    }
}

#[cfg(tinynas_v6m)]
#[inline(always)]
fn copy_pixels(dst: &mut [i8], src: &[i8], c: usize) {
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    let end = d.wrapping_add(dst.len());
    let words = (d as usize | s as usize | c) % 4 == 0;
    // SAFETY: `strip_copy` checked `dst.len() = 4 n`, `n >= 1`, `c >= 4` and `(n - 1) c + 4 <=
    // src.len()`: pixel `i < n` reads `src[i c..i c + 4]` and writes `dst[4 i..4 i + 4]`, both
    // inside. The word loop runs only where both pointers and `c` are multiples of 4 (LDR and
    // STR aligned); the other reads and writes bytes. No stack; the pointers, the temporary and
    // the flags are declared clobbered.
    unsafe {
        if words {
            core::arch::asm!(
                "2:",
                "ldr   {t}, [{s}]",
                "eors  {t}, {x}",
                "str   {t}, [{d}]",
                "adds  {s}, {s}, {c}",
                "adds  {d}, #4",
                "cmp   {d}, {e}",
                "bne   2b",
                s = inout(reg) s => _,
                d = inout(reg) d => _,
                c = in(reg) c,
                e = in(reg) end,
                x = in(reg) 0x8080_8080u32,
                t = out(reg) _,
                options(nostack),
            );
        } else {
            core::arch::asm!(
                "2:",
                "ldrb  {t}, [{s}, #0]",
                "eors  {t}, {x}",
                "strb  {t}, [{d}, #0]",
                "ldrb  {t}, [{s}, #1]",
                "eors  {t}, {x}",
                "strb  {t}, [{d}, #1]",
                "ldrb  {t}, [{s}, #2]",
                "eors  {t}, {x}",
                "strb  {t}, [{d}, #2]",
                "ldrb  {t}, [{s}, #3]",
                "eors  {t}, {x}",
                "strb  {t}, [{d}, #3]",
                "adds  {s}, {s}, {c}",
                "adds  {d}, #4",
                "cmp   {d}, {e}",
                "bne   2b",
                s = inout(reg) s => _,
                d = inout(reg) d => _,
                c = in(reg) c,
                e = in(reg) end,
                x = in(reg) 0x80u32,
                t = out(reg) _,
                options(nostack),
            );
        }
    }
}
