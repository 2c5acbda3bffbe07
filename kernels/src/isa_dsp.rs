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
