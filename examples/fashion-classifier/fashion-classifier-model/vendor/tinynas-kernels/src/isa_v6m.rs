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
