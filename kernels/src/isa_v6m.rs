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

use crate::fast::dw_groups::ByteTap;

/// `acc[j] + sum_t x[base + t.off + j] * t.w[j]` over `taps`, the bytes of `x` read unsigned (the
/// kernel's copy of the input holds `x ^ 0x80`, and its bias subtracts `128 * sum(w)`). The taps'
/// offsets increase (as `fast::dw_groups` builds them), so the first and the last tap bound every
/// word read; nothing is added where either leaves `x`.
#[inline(always)]
pub fn dw_taps_u8(acc: [i32; 4], x: &[i8], base: isize, taps: &[ByteTap]) -> [i32; 4] {
    let (Some(first), Some(last)) = (taps.first(), taps.last()) else {
        return acc;
    };
    let lo = base.checked_add(first.off as isize);
    let hi = base
        .checked_add(last.off as isize)
        .and_then(|v| v.checked_add(4));
    match (lo, hi) {
        (Some(lo), Some(hi)) if lo >= 0 && hi as usize <= x.len() => {}
        _ => return acc,
    }
    taps_u8(acc, x, base, taps)
}

#[cfg(tinynas_v6m)]
#[inline(always)]
fn taps_u8(acc: [i32; 4], x: &[i8], base: isize, taps: &[ByteTap]) -> [i32; 4] {
    // The four sums, then the window's first byte and the taps' end, which the loop keeps in
    // r12 and lr (Thumb-1 allows high registers only as clobbers, so they go through memory).
    let [a0, a1, a2, a3] = acc;
    let mut state = [
        a0,
        a1,
        a2,
        a3,
        x.as_ptr().wrapping_offset(base) as i32,
        taps.as_ptr().wrapping_add(taps.len()) as i32,
    ];
    // SAFETY: called with `taps` non-empty and the words of its first and last tap inside `x`
    // (`dw_taps_u8`); the offsets increase, so every tap's word `x + base + off .. + 4` lies
    // between them. The loop runs `taps.len() >= 1` times (LDM advances `r4` by the 20 bytes of a
    // tap, up to the end pointer in `lr`), reading each `ByteTap` (`repr(C)`, word-aligned, five
    // words: LDM needs word alignment) and four bytes of `x` (LDRB needs none). It reads `state`
    // (24 bytes, word-aligned) and writes its first 16, nothing else; no stack; r0-r4, r8-r12,
    // lr and the flags are declared clobbered.
    unsafe {
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
            "ldrb  r3, [r0, #0]",
            "muls  r3, r1, r3",
            "add   r8, r3",
            "ldrb  r3, [r0, #1]",
            "muls  r3, r2, r3",
            "add   r9, r3",
            "ldm   r4!, {{r1, r2}}",
            "ldrb  r3, [r0, #2]",
            "muls  r3, r1, r3",
            "add   r10, r3",
            "ldrb  r3, [r0, #3]",
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
            in("r5") state.as_mut_ptr(),
            inout("r4") taps.as_ptr() => _,
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
        );
    }
    let [a0, a1, a2, a3, _, _] = state;
    [a0, a1, a2, a3]
}

#[cfg(not(tinynas_v6m))]
#[allow(dead_code)]
fn taps_u8(acc: [i32; 4], x: &[i8], base: isize, taps: &[ByteTap]) -> [i32; 4] {
    crate::fast::dw_groups::taps_u8_portable(acc, x, base, taps)
}
