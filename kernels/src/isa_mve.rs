//! Armv8.1-M MVE (Helium: Cortex-M55, M85) inner loops, in assembly: sixteen int8
//! multiply-accumulates per VMLADAVA.S8 into a scalar accumulator, in tail-predicated loops
//! (DLSTP/LETP) so a length that is not a multiple of 16 needs no padding.
//!
//! On an MVE target (cfg `tinynas_mve`, set by `build.rs` for `thumbv8m.main` built for
//! `cortex-m55`/`cortex-m85` or with `+mve`) these are `asm!`; elsewhere (the host, for tests)
//! they are the same computation in plain Rust.
#![allow(unsafe_code)]

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

#[cfg(tinynas_mve)]
mod imp {
    use core::arch::asm;

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
