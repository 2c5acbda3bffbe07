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
