//! The few Armv7E-M / Armv8-M DSP instructions the fast kernels are built on, one function each.
//!
//! On a target with the DSP extension (cfg `tinynas_dsp`, set by `build.rs`) each is one `asm!`
//! instruction: the only `unsafe` in the kernels. Elsewhere (the host, for tests) each is its
//! architectural definition in plain Rust, so the DSP kernel loops run and are tested on the host
//! too; on the device they are tested again under QEMU.
//!
//! None of them touches memory; SMLAD and SMLAxy may set the sticky Q flag, which nothing reads.
#![allow(unsafe_code)]

#[cfg(tinynas_dsp)]
mod imp {
    use core::arch::asm;

    /// SXTB16: bytes 0 and 2 of `x`, sign-extended to two halfwords.
    #[inline(always)]
    pub fn sxtb16(x: u32) -> u32 {
        let r: u32;
        // SAFETY: a register-only data-processing instruction; no memory, stack or flags.
        unsafe {
            asm!("sxtb16 {r}, {x}", r = lateout(reg) r, x = in(reg) x,
                 options(pure, nomem, nostack, preserves_flags))
        };
        r
    }

    /// SXTB16 with ROR #8: bytes 1 and 3 of `x`, sign-extended to two halfwords.
    #[inline(always)]
    pub fn sxtb16_ror8(x: u32) -> u32 {
        let r: u32;
        // SAFETY: as `sxtb16`.
        unsafe {
            asm!("sxtb16 {r}, {x}, ror #8", r = lateout(reg) r, x = in(reg) x,
                 options(pure, nomem, nostack, preserves_flags))
        };
        r
    }

    /// SMLAD: `acc + a.lo * b.lo + a.hi * b.hi` (signed halfwords), wrapping.
    #[inline(always)]
    pub fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        let r: i32;
        // SAFETY: register-only; it may set the sticky Q flag (so no `preserves_flags`).
        unsafe {
            asm!("smlad {r}, {a}, {b}, {acc}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b,
                 acc = in(reg) acc, options(pure, nomem, nostack))
        };
        r
    }

    /// SMLABB: `acc + a.lo * b.lo` (signed halfwords), wrapping.
    #[inline(always)]
    pub fn smlabb(a: u32, b: u32, acc: i32) -> i32 {
        let r: i32;
        // SAFETY: as `smlad`.
        unsafe {
            asm!("smlabb {r}, {a}, {b}, {acc}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b,
                 acc = in(reg) acc, options(pure, nomem, nostack))
        };
        r
    }

    /// SMLATT: `acc + a.hi * b.hi` (signed halfwords), wrapping.
    #[inline(always)]
    pub fn smlatt(a: u32, b: u32, acc: i32) -> i32 {
        let r: i32;
        // SAFETY: as `smlad`.
        unsafe {
            asm!("smlatt {r}, {a}, {b}, {acc}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b,
                 acc = in(reg) acc, options(pure, nomem, nostack))
        };
        r
    }

    /// One kernel row of a depthwise convolution for four channels: `acc[j] += x[t * stride + j] *
    /// w[t * stride + j]` for `t < taps`, `j < 4` (input and weights both `stride` bytes apart
    /// from tap to tap: the channel count).
    #[inline(always)]
    pub fn dw_row4(x: &[i8], w: &[i8], stride: usize, taps: usize, acc: [i32; 4]) -> [i32; 4] {
        let span = taps
            .checked_sub(1)
            .and_then(|t| t.checked_mul(stride))
            .and_then(|v| v.checked_add(4));
        let Some(span) = span.filter(|&s| s <= x.len() && s <= w.len() && stride <= 1 << 24) else {
            return crate::fast::mac::dw_row4(x, w, stride, taps, acc);
        };
        let [mut a0, mut a1, mut a2, mut a3] = acc;
        let end = taps * stride;
        // SAFETY: the loop runs `taps >= 1` times (span checked), with the index going from
        // `-taps * stride` up to 0 in steps of `stride`; the word at `x_end + index` (and `w_end +
        // index`) is then `x[t * stride..t * stride + 4]` for `t < taps`, inside both slices since
        // `(taps - 1) * stride + 4 <= len` was checked. Unaligned LDR is allowed. Nothing is
        // written; no stack is used; pointers, index and flags are clobbered.
        unsafe {
            asm!(
                "2:",
                "ldr    {xv}, [{xp}, {i}]",
                "ldr    {wv}, [{wp}, {i}]",
                "sxtb16 {t}, {xv}",
                "sxtb16 {xv}, {xv}, ror #8",
                "sxtb16 {u}, {wv}",
                "sxtb16 {wv}, {wv}, ror #8",
                "smlabb {a0}, {t}, {u}, {a0}",
                "smlatt {a2}, {t}, {u}, {a2}",
                "smlabb {a1}, {xv}, {wv}, {a1}",
                "smlatt {a3}, {xv}, {wv}, {a3}",
                "adds   {i}, {i}, {st}",
                "bne    2b",
                xp = in(reg) x.as_ptr().wrapping_add(end),
                wp = in(reg) w.as_ptr().wrapping_add(end),
                i = inout(reg) (end as isize).wrapping_neg() => _,
                st = in(reg) stride,
                xv = out(reg) _,
                wv = out(reg) _,
                t = out(reg) _,
                u = out(reg) _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
                options(nostack, readonly),
            );
        }
        let _ = span;
        [a0, a1, a2, a3]
    }

    /// A dense layer's input against three weight rows, over the first `4 * (len / 4)` values:
    /// `acc[r] += sum_k x[k] * w_r[k]`; the caller adds the last `len % 4` products.
    #[inline(always)]
    pub fn dot_1x3(x: &[i8], w: [&[i8]; 3], acc: [i32; 3]) -> [i32; 3] {
        let n = x.len().min(w[0].len()).min(w[1].len()).min(w[2].len()) / 4;
        if n == 0 {
            return acc;
        }
        let [mut a0, mut a1, mut a2] = acc;
        // SAFETY: `n >= 1` iterations, each reading the next word of `x` and of each row; `4n`
        // bytes are inside all four slices (`n` is bounded by their lengths). Unaligned LDR is
        // allowed. Nothing is written; no stack is used; pointers, counter and flags clobbered.
        unsafe {
            asm!(
                "2:",
                "ldr    {xe}, [{xp}], #4",
                "sxtb16 {xo}, {xe}, ror #8",
                "sxtb16 {xe}, {xe}",
                "ldr    {w}, [{p0}], #4",
                "sxtb16 {t}, {w}",
                "sxtb16 {w}, {w}, ror #8",
                "smlad  {a0}, {xe}, {t}, {a0}",
                "smlad  {a0}, {xo}, {w}, {a0}",
                "ldr    {w}, [{p1}], #4",
                "sxtb16 {t}, {w}",
                "sxtb16 {w}, {w}, ror #8",
                "smlad  {a1}, {xe}, {t}, {a1}",
                "smlad  {a1}, {xo}, {w}, {a1}",
                "ldr    {w}, [{p2}], #4",
                "sxtb16 {t}, {w}",
                "sxtb16 {w}, {w}, ror #8",
                "smlad  {a2}, {xe}, {t}, {a2}",
                "smlad  {a2}, {xo}, {w}, {a2}",
                "subs   {n}, {n}, #1",
                "bne    2b",
                xp = inout(reg) x.as_ptr() => _,
                p0 = inout(reg) w[0].as_ptr() => _,
                p1 = inout(reg) w[1].as_ptr() => _,
                p2 = inout(reg) w[2].as_ptr() => _,
                n = inout(reg) n => _,
                xe = out(reg) _,
                xo = out(reg) _,
                w = out(reg) _,
                t = out(reg) _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                options(nostack, readonly),
            );
        }
        [a0, a1, a2]
    }

    /// SMMULR: `(a * b + 2^31) >> 32`, the rounded high word of the 64-bit product.
    #[inline(always)]
    pub fn smmulr(a: i32, b: i32) -> i32 {
        let r: i32;
        // SAFETY: register-only; no memory, stack or flags.
        unsafe {
            asm!("smmulr {r}, {a}, {b}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b,
                 options(pure, nomem, nostack, preserves_flags))
        };
        r
    }

    /// Bytewise signed maximum of four int8 lanes (SSUB8 sets the GE flags, SEL picks by them).
    #[inline(always)]
    pub fn max8x4(a: u32, b: u32) -> u32 {
        let r: u32;
        // SAFETY: register-only; it writes the GE flags, which both instructions use inside
        // this one block (so no `preserves_flags`).
        unsafe {
            asm!("ssub8 {r}, {a}, {b}", "sel {r}, {a}, {b}", r = out(reg) r, a = in(reg) a,
                 b = in(reg) b, options(pure, nomem, nostack))
        };
        r
    }

    /// Four columns times one weight row: `acc[p] += sum_k col_p[k] * w[k]` over `n` groups of four
    /// `k`. `cols` holds, per group, per column, two words `(k0, k2)` and `(k1, k3)` of int16
    /// (the order SXTB16 splits a weight word in), 32 bytes a group; `w` holds four int8 per group.
    #[inline(always)]
    pub fn dot_4x1_i16(cols: &[i8], w: &[i8], acc: [i32; 4]) -> [i32; 4] {
        let n = (cols.len() / 32).min(w.len() / 4);
        if n == 0 || cols.as_ptr() as usize % 4 != 0 {
            return crate::fast::mac::dot_4x1_i16(cols, w, acc);
        }
        let [mut a0, mut a1, mut a2, mut a3] = acc;
        // SAFETY: the loop runs `n >= 1` times and reads 32 bytes of `cols` and 4 of `w` per
        // iteration, so it stays inside both slices (`n` is bounded by both lengths above). LDRD
        // needs a word-aligned address: `cols` was checked to be aligned, and advances by 8. LDR
        // on `w` may be unaligned (allowed on Armv7E-M/Armv8-M Mainline). It writes no memory and
        // no stack; the pointers, the counter and the flags are declared clobbered.
        unsafe {
            core::arch::asm!(
                "2:",
                "ldr    {w}, [{wp}], #4",
                "sxtb16 {we}, {w}",
                "sxtb16 {w}, {w}, ror #8",
                "ldrd   {x}, {y}, [{cp}], #8",
                "smlad  {a0}, {x}, {we}, {a0}",
                "smlad  {a0}, {y}, {w}, {a0}",
                "ldrd   {x}, {y}, [{cp}], #8",
                "smlad  {a1}, {x}, {we}, {a1}",
                "smlad  {a1}, {y}, {w}, {a1}",
                "ldrd   {x}, {y}, [{cp}], #8",
                "smlad  {a2}, {x}, {we}, {a2}",
                "smlad  {a2}, {y}, {w}, {a2}",
                "ldrd   {x}, {y}, [{cp}], #8",
                "smlad  {a3}, {x}, {we}, {a3}",
                "smlad  {a3}, {y}, {w}, {a3}",
                "subs   {n}, {n}, #1",
                "bne    2b",
                wp = inout(reg) w.as_ptr() => _,
                cp = inout(reg) cols.as_ptr() => _,
                n = inout(reg) n => _,
                w = out(reg) _,
                we = out(reg) _,
                x = out(reg) _,
                y = out(reg) _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
                options(nostack, readonly),
            );
        }
        [a0, a1, a2, a3]
    }
}

#[cfg(not(tinynas_dsp))]
#[allow(dead_code)]
mod imp {
    fn lo(x: u32) -> i32 {
        i32::from(x as u16 as i16)
    }

    fn hi(x: u32) -> i32 {
        i32::from((x >> 16) as u16 as i16)
    }

    fn halves(lo: i32, hi: i32) -> u32 {
        (lo as u16 as u32) | ((hi as u16 as u32) << 16)
    }

    pub fn sxtb16(x: u32) -> u32 {
        halves(i32::from(x as u8 as i8), i32::from((x >> 16) as u8 as i8))
    }

    pub fn sxtb16_ror8(x: u32) -> u32 {
        sxtb16(x.rotate_right(8))
    }

    pub fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        acc.wrapping_add(lo(a) * lo(b)).wrapping_add(hi(a) * hi(b))
    }

    pub fn smlabb(a: u32, b: u32, acc: i32) -> i32 {
        acc.wrapping_add(lo(a) * lo(b))
    }

    pub fn smlatt(a: u32, b: u32, acc: i32) -> i32 {
        acc.wrapping_add(hi(a) * hi(b))
    }

    pub fn dot_4x1_i16(cols: &[i8], w: &[i8], acc: [i32; 4]) -> [i32; 4] {
        crate::fast::mac::dot_4x1_i16(cols, w, acc)
    }

    pub fn dw_row4(x: &[i8], w: &[i8], stride: usize, taps: usize, acc: [i32; 4]) -> [i32; 4] {
        crate::fast::mac::dw_row4(x, w, stride, taps, acc)
    }

    pub fn dot_1x3(x: &[i8], w: [&[i8]; 3], acc: [i32; 3]) -> [i32; 3] {
        let n = 4 * (x.len().min(w[0].len()).min(w[1].len()).min(w[2].len()) / 4);
        let mut acc = acc;
        for (a, w) in acc.iter_mut().zip(w) {
            for (&x, &w) in x.iter().zip(w).take(n) {
                *a = a.wrapping_add(i32::from(x) * i32::from(w));
            }
        }
        acc
    }

    pub fn smmulr(a: i32, b: i32) -> i32 {
        ((i64::from(a) * i64::from(b) + (1 << 31)) >> 32) as i32
    }

    pub fn max8x4(a: u32, b: u32) -> u32 {
        let mut r = [0u8; 4];
        for (i, r) in r.iter_mut().enumerate() {
            let (x, y) = ((a >> (8 * i)) as u8 as i8, (b >> (8 * i)) as u8 as i8);
            *r = x.max(y) as u8;
        }
        u32::from_le_bytes(r)
    }
}

pub use imp::*;
