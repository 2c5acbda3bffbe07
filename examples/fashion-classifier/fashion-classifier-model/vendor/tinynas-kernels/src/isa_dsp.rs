//! The few Armv7E-M / Armv8-M DSP instructions the fast kernels are built on, one function each.
//!
//! On a target with the DSP extension (cfg `tinynas_dsp`, set by `build.rs`) each is one `asm!`
//! instruction: the only `unsafe` in the kernels. Elsewhere (the host, for tests) each is its
//! architectural definition in plain Rust, so the DSP kernel loops run and are tested on the host
//! too; on the device they are tested again under QEMU.
//!
//! None of them touches memory; SMLAD and SMLAxy may set the sticky Q flag, which nothing reads.
#![allow(unsafe_code)]

/// One depthwise tap: the 12 bytes at `{g}` (offset, then the weight words `w02`, `w13`; `{g}`
/// advances past them), the input word at `{px} + off` widened by SXTB16 and multiplied into the
/// four channel accumulators `{a0}`..`{a3}` by SMLABB/SMLATT (`{o}`, `{x}`, `{wa}`, `{wb}`
/// clobbered; no flag but Q changes).
#[cfg(tinynas_dsp)]
#[rustfmt::skip]
macro_rules! dw_tap {
    () => {
        concat!(
            "ldr    {o}, [{g}], #12\n",
            "ldr    {x}, [{px}, {o}]\n",
            "ldrd   {wa}, {wb}, [{g}, #-8]\n",
            "sxtb16 {o}, {x}\n",
            "sxtb16 {x}, {x}, ror #8\n",
            "smlabb {a0}, {o}, {wa}, {a0}\n",
            "smlatt {a2}, {o}, {wa}, {a2}\n",
            "smlabb {a1}, {x}, {wb}, {a1}\n",
            "smlatt {a3}, {x}, {wb}, {a3}\n",
        )
    };
}

/// The depthwise tap loop (labels 5 and 6): `{n} >= 1` taps by [`dw_tap!`], one first if `{n}`
/// is odd, then two per iteration (LSRS sets C to the odd bit and Z for no pairs; a tap changes
/// neither); `{n}` ends at 0.
#[cfg(tinynas_dsp)]
#[rustfmt::skip]
macro_rules! dw_tap_loop {
    () => {
        concat!(
            "lsrs   {n}, {n}, #1\n",
            "bcc    5f\n",
            dw_tap!(),
            "beq    6f\n",
            "5:\n",
            dw_tap!(),
            dw_tap!(),
            "subs   {n}, {n}, #1\n",
            "bne    5b\n",
            "6:",
        )
    };
}

/// The short requantisation of accumulator `{a}` by the `Requant` at `[{k}, #at]` (multiplier and
/// left shift plus one, then `2^right` and the right shift: two LDRD), plus the output offset in
/// `{off}`, saturated to int8 (SSAT): the short form of `Requant::apply` in seven instructions.
/// The arguments name the template's registers (`m`, `l`, `pw`, `r`, `t` are clobbered).
#[cfg(tinynas_dsp)]
#[rustfmt::skip]
macro_rules! requant_lane {
    ($a:literal, $k:literal, $at:literal, $at8:literal, $m:literal, $l:literal, $pw:literal,
     $r:literal, $t:literal, $off:literal) => {
        concat!(
            "ldrd   {", $m, "}, {", $l, "}, [{", $k, "}, #", $at, "]\n",
            "ldrd   {", $pw, "}, {", $r, "}, [{", $k, "}, #", $at8, "]\n",
            "lsl    {", $a, "}, {", $a, "}, {", $l, "}\n",
            "smmulr {", $a, "}, {", $a, "}, {", $m, "}\n",
            "add    {", $t, "}, {", $pw, "}, {", $a, "}, asr #31\n",
            "add    {", $a, "}, {", $a, "}, {", $t, "}, lsr #1\n",
            "asr    {", $a, "}, {", $a, "}, {", $r, "}\n",
            "add    {", $a, "}, {", $a, "}, {", $off, "}\n",
            "ssat   {", $a, "}, #8, {", $a, "}",
        )
    };
}

#[cfg(tinynas_dsp)]
mod imp {
    use crate::fast::dw_groups::{runs, DwRow, DwTap, DwTaps, Requant4, RequantCol, Win};
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

    /// The multiply-accumulates of one group of four depthwise channels over window `win` of
    /// `taps`: `acc[j] += x[base + t.off + j] * w_j`. A run of the window one of whose taps would
    /// read outside `x` adds nothing.
    #[inline(always)]
    pub fn dw_taps(acc: [i32; 4], x: &[i8], base: isize, taps: &DwTaps, win: Win) -> [i32; 4] {
        runs(taps, win).fold(acc, |acc, r| taps_run(acc, x, base, r))
    }

    /// One run of [`dw_taps`] (a slice of a `DwTaps`, so its offsets increase).
    #[inline(always)]
    fn taps_run(acc: [i32; 4], x: &[i8], base: isize, r: &[DwTap]) -> [i32; 4] {
        if !crate::fast::dw_groups::run_inside(x, base, r) {
            return acc;
        }
        let [mut a0, mut a1, mut a2, mut a3] = acc;
        // SAFETY: the loop runs `r.len() >= 1` times (`run_inside` is false for an empty run),
        // reading the 12-byte taps of `r` in order (`repr(C)`: offset, then the two weight words
        // at -8 after the post-increment) and the input word at `px + off`, which `run_inside`
        // proved inside `x` for the first and the last tap; `r` is a slice of a `DwTaps`
        // (`runs`), whose offsets increase strictly (`DwTaps::fill`, the only way to set them), so
        // every tap's word lies between those two. Unaligned LDR is allowed; LDRD reads the
        // word-aligned taps. Nothing is written; no stack is used; pointers, counter and flags (and
        // the sticky Q flag) are clobbered.
        unsafe {
            asm!(
                dw_tap_loop!(),
                px = in(reg) x.as_ptr().wrapping_offset(base),
                g = inout(reg) r.as_ptr() => _,
                n = inout(reg) r.len() => _,
                o = out(reg) _,
                x = out(reg) _,
                wa = out(reg) _,
                wb = out(reg) _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
                options(nostack, readonly),
            );
        }
        [a0, a1, a2, a3]
    }

    /// One channel's four accumulators requantised by `k` (the short form of `Requant::apply`,
    /// the offset, SSAT, the clamp by SSUB8/SEL) into `y[q * stride]`, `q < 4`; nothing written
    /// where `y` is shorter.
    #[inline(always)]
    pub fn requant_col(acc: [i32; 4], k: &RequantCol, y: &mut [i8], stride: usize) {
        let end = stride.checked_mul(3).and_then(|e| e.checked_add(1));
        if end.is_none_or(|e| e > y.len()) {
            return;
        }
        let [a0, a1, a2, a3] = acc;
        macro_rules! value {
            ($a:literal) => {
                concat!(
                    "lsl    {",
                    $a,
                    "}, {",
                    $a,
                    "}, {l}\n",
                    "smmulr {",
                    $a,
                    "}, {",
                    $a,
                    "}, {m}\n",
                    "add    {t}, {pw}, {",
                    $a,
                    "}, asr #31\n",
                    "add    {",
                    $a,
                    "}, {",
                    $a,
                    "}, {t}, lsr #1\n",
                    "asr    {",
                    $a,
                    "}, {",
                    $a,
                    "}, {r}\n",
                    "ldr    {t}, [{k}, #16]\n",
                    "add    {",
                    $a,
                    "}, {",
                    $a,
                    "}, {t}\n",
                    "ssat   {",
                    $a,
                    "}, #8, {",
                    $a,
                    "}",
                )
            };
        }
        // SAFETY: reads the 28 bytes of `*k` (`repr(C)`: a `Requant` of four words, then the
        // offset and the two clamp words, word-aligned for LDRD) and writes the bytes at `y`,
        // `y + stride`, `y + 2 stride` and `y + 3 stride`, inside `y` (`3 stride + 1 <= len`,
        // checked). No stack; flags (GE) clobbered.
        unsafe {
            asm!(
                "ldrd   {m}, {l}, [{k}]",
                "ldrd   {pw}, {r}, [{k}, #8]",
                value!("a0"),
                value!("a1"),
                value!("a2"),
                value!("a3"),
                "bfi    {a0}, {a1}, #8, #8",
                "bfi    {a0}, {a2}, #16, #8",
                "bfi    {a0}, {a3}, #24, #8",
                "ldrd   {m}, {pw}, [{k}, #20]",
                "ssub8  {t}, {a0}, {m}",
                "sel    {a0}, {a0}, {m}",
                "ssub8  {t}, {pw}, {a0}",
                "sel    {a0}, {a0}, {pw}",
                "strb   {a0}, [{y}]",
                "lsr    {a0}, {a0}, #8",
                "strb   {a0}, [{y}, {st}]",
                "add    {y}, {y}, {st}, lsl #1",
                "lsr    {a0}, {a0}, #8",
                "strb   {a0}, [{y}]",
                "lsr    {a0}, {a0}, #8",
                "strb   {a0}, [{y}, {st}]",
                k = in(reg) k as *const RequantCol,
                y = inout(reg) y.as_mut_ptr() => _,
                st = in(reg) stride,
                a0 = inout(reg) a0 => _,
                a1 = inout(reg) a1 => _,
                a2 = inout(reg) a2 => _,
                a3 = inout(reg) a3 => _,
                m = out(reg) _,
                l = out(reg) _,
                pw = out(reg) _,
                r = out(reg) _,
                t = out(reg) _,
                options(nostack),
            );
        }
    }

    /// `dst`'s word `k` (`k < dst.len() / 4`) from the four bytes at `src[k * step..]`, a word at
    /// a time (a group of four channels of an input row). False (nothing written) where `src`
    /// is short.
    #[inline(always)]
    pub fn gather_words(dst: &mut [i8], src: &[i8], step: usize) -> bool {
        let n = match crate::fast::mac::gathered_words(dst, src, step) {
            Some(0) => return true,
            Some(n) => n,
            None => return false,
        };
        // SAFETY: `n >= 1` words; word `k` reads the 4 bytes at `src + k step`, the last ending
        // at `(n - 1) step + 4 <= src.len()` (checked), and writes the 4 bytes at `dst + 4 k`,
        // inside `dst` (`4 n <= dst.len()`). Unaligned LDR/STR are allowed. No stack; flags
        // clobbered.
        unsafe {
            asm!(
                "1:",
                "ldr    {v}, [{s}]",
                "add    {s}, {s}, {st}",
                "str    {v}, [{d}], #4",
                "subs   {n}, {n}, #1",
                "bne    1b",
                s = inout(reg) src.as_ptr() => _,
                d = inout(reg) dst.as_mut_ptr() => _,
                n = inout(reg) n => _,
                st = in(reg) step,
                v = out(reg) _,
                options(nostack),
            );
        }
        true
    }

    /// What [`conv_cols`]'s assembly reads and walks (`repr(C)`: it loads the fields at their
    /// offsets): the current channel's multiplier, the byte distances from it to its shift and
    /// its bias, the block and its groups, the current channel's output pointer, the channel
    /// stride and the end of the first pixel's outputs, then `1 + 2 * offset` (the output offset
    /// folded into the rounding, see [`conv_cols`]) and the clamp words.
    #[repr(C)]
    struct ConvCols {
        mult: *const i32,
        to_shift: usize,
        to_bias: usize,
        block: *const i8,
        groups: usize,
        y: *mut i8,
        stride: usize,
        y_end: *mut i8,
        odd_offset: i32,
        lo: u32,
        hi: u32,
    }

    /// Every output channel of a block of four im2col columns (DSP layout, `kp = 4 * groups`
    /// values a column), in one assembly loop: channel `c`'s dot products with weight row `c`
    /// from its bias, the short requantisation (see `Requant::apply`) with its multiplier and
    /// shift, the offset, SSAT and the clamp (SSUB8/SEL), written to `y[c + q * oc]` for the
    /// four pixels `q`. False (nothing written) where a slice is too short or the block is
    /// misaligned. Only for layers the generator proved narrow and that [`conv_cols_takes`]
    /// (checked once per layer by the caller; elsewhere the values, not the memory accesses, would
    /// be wrong).
    ///
    /// The offset is added with the rounding: with `sign = high >> 31`, the short form is
    /// `((high + ((2^right + sign) >> 1)) >> right) + offset`, and since `offset * 2^(right + 1)`
    /// is even this is `(high + (((1 + 2 offset) 2^right + sign) >> 1)) >> right` (arithmetic
    /// shifts), exactly, as long as nothing overflows: `|high| < 2^30` (narrow), `|offset| <=
    /// 128` and `right <= 22` keep every sum below `2^31`.
    #[inline(always)]
    pub fn conv_cols(block: &[i8], p: &crate::fast::FastConv<'_>, kp: usize, y: &mut [i8]) -> bool {
        let (oc, groups) = (p.dims.out_c, kp / 4);
        if !super::conv_cols_fit(block, p, kp, y) {
            return false;
        }
        let k = crate::fast::dw_groups::Lanes::new(&crate::fast::mac::Clamp::new(&p.quant));
        let mult = p.multiplier.as_ptr();
        let mut job = ConvCols {
            mult,
            to_shift: (p.shift.as_ptr() as usize).wrapping_sub(mult as usize),
            to_bias: (p.bias.as_ptr() as usize).wrapping_sub(mult as usize),
            block: block.as_ptr(),
            groups,
            y: y.as_mut_ptr(),
            stride: oc,
            y_end: y.as_mut_ptr().wrapping_add(oc),
            odd_offset: 1 + 2 * k.offset,
            lo: k.lo,
            hi: k.hi,
        };
        // One group of four `k`: the weight word split by SXTB16, each column's two words.
        macro_rules! group {
            () => {
                concat!(
                    "ldr    {w}, [{wp}], #4\n",
                    "sxtb16 {we}, {w}\n",
                    "sxtb16 {w}, {w}, ror #8\n",
                    "ldrd   {x}, {v}, [{cp}], #8\n",
                    "smlad  {a0}, {x}, {we}, {a0}\n",
                    "smlad  {a0}, {v}, {w}, {a0}\n",
                    "ldrd   {x}, {v}, [{cp}], #8\n",
                    "smlad  {a1}, {x}, {we}, {a1}\n",
                    "smlad  {a1}, {v}, {w}, {a1}\n",
                    "ldrd   {x}, {v}, [{cp}], #8\n",
                    "smlad  {a2}, {x}, {we}, {a2}\n",
                    "smlad  {a2}, {v}, {w}, {a2}\n",
                    "ldrd   {x}, {v}, [{cp}], #8\n",
                    "smlad  {a3}, {x}, {we}, {a3}\n",
                    "smlad  {a3}, {v}, {w}, {a3}\n",
                )
            };
        }
        // The short form of one accumulator plus the offset, saturated: `{we}` is the left shift
        // plus one, `{n}` the multiplier, `{x}` is `(1 + 2 offset) 2^right` and `{v}` the right
        // shift (`{cp}` clobbered).
        macro_rules! lane {
            ($a:literal) => {
                concat!(
                    "lsl    {",
                    $a,
                    "}, {",
                    $a,
                    "}, {we}\n",
                    "smmulr {",
                    $a,
                    "}, {",
                    $a,
                    "}, {n}\n",
                    "add    {cp}, {x}, {",
                    $a,
                    "}, asr #31\n",
                    "add    {",
                    $a,
                    "}, {",
                    $a,
                    "}, {cp}, asr #1\n",
                    "asr    {",
                    $a,
                    "}, {",
                    $a,
                    "}, {v}\n",
                    "ssat   {",
                    $a,
                    "}, #8, {",
                    $a,
                    "}\n",
                )
            };
        }
        // SAFETY: `j` points to `job`, a `repr(C)` value of word fields on this stack frame that
        // the assembly reads and updates (`mult`, `y`) and that lives until the block ends; LDRD
        // reads the pairs (`mult`, `to_shift`), (`block`, `groups`), (`y`, `stride`), (`lo`,
        // `hi`), each at a word-aligned offset. The loop runs `oc >= 1` channels: it ends when
        // `y`, one byte further a channel, reaches `y_end = y + oc`. Channel `c` reads
        // `mult[c]`, `shift[c]` and `bias[c]` (`job.mult = multiplier + 4 c` plus the distances
        // from the multipliers to the shifts and to the biases; all three at least `oc` long),
        // weight row `c` (`groups` words from `weights + c kp`, `oc kp <= weights.len()`; `wp`
        // advances one row a channel), and the `32 groups <= block.len()` bytes of the block
        // from its start (word-aligned, checked, as LDRD needs); the group loop runs
        // `groups >= 1` times (one group first if `groups` is odd, then two per iteration: LSRS
        // sets C to the odd bit and Z for no pairs, and no instruction of a group changes N, Z,
        // C or V). It writes the bytes `y[c + q oc]`, `q < 4`, all below `4 oc <= y.len()`.
        // Unaligned LDR on the weights is allowed. No stack; the flags (GE, Q) are clobbered.
        unsafe {
            asm!(
                "0:",
                "ldrd   {cp}, {x}, [{j}, #{omult}]",
                "ldr    {x}, [{j}, #{obias}]",
                "ldr    {a0}, [{cp}, {x}]",
                "mov    {a1}, {a0}",
                "mov    {a2}, {a0}",
                "mov    {a3}, {a0}",
                "ldrd   {cp}, {n}, [{j}, #{oblock}]",
                "lsrs   {n}, {n}, #1",
                "bcc    3f",
                group!(),
                "beq    4f",
                "3:",
                group!(),
                group!(),
                "subs   {n}, {n}, #1",
                "bne    3b",
                "4:",
                "ldrd   {cp}, {x}, [{j}, #{omult}]",
                "ldr    {v}, [{cp}, {x}]",
                "ldr    {n}, [{cp}], #4",
                "str    {cp}, [{j}, #{omult}]",
                "usat   {we}, #5, {v}",
                "add    {we}, {we}, #1",
                "rsb    {v}, {v}, #0",
                "usat   {v}, #5, {v}",
                "ldr    {x}, [{j}, #{ooffset}]",
                "lsl    {x}, {x}, {v}",
                lane!("a0"),
                lane!("a1"),
                lane!("a2"),
                lane!("a3"),
                "bfi    {a0}, {a1}, #8, #8",
                "bfi    {a0}, {a2}, #16, #8",
                "bfi    {a0}, {a3}, #24, #8",
                "ldrd   {we}, {x}, [{j}, #{olo}]",
                "ssub8  {cp}, {a0}, {we}",
                "sel    {a0}, {a0}, {we}",
                "ssub8  {cp}, {x}, {a0}",
                "sel    {a0}, {a0}, {x}",
                "ldrd   {cp}, {n}, [{j}, #{oy}]",
                "strb   {a0}, [{cp}]",
                "lsr    {a0}, {a0}, #8",
                "strb   {a0}, [{cp}, {n}]",
                "add    {we}, {cp}, {n}, lsl #1",
                "lsr    {a0}, {a0}, #8",
                "strb   {a0}, [{we}]",
                "lsr    {a0}, {a0}, #8",
                "strb   {a0}, [{we}, {n}]",
                "add    {cp}, {cp}, #1",
                "str    {cp}, [{j}, #{oy}]",
                "ldr    {n}, [{j}, #{oend}]",
                "cmp    {cp}, {n}",
                "bne    0b",
                j = in(reg) &mut job as *mut ConvCols,
                omult = const core::mem::offset_of!(ConvCols, mult),
                obias = const core::mem::offset_of!(ConvCols, to_bias),
                oblock = const core::mem::offset_of!(ConvCols, block),
                oy = const core::mem::offset_of!(ConvCols, y),
                oend = const core::mem::offset_of!(ConvCols, y_end),
                ooffset = const core::mem::offset_of!(ConvCols, odd_offset),
                olo = const core::mem::offset_of!(ConvCols, lo),
                wp = inout(reg) p.weights.as_ptr() => _,
                cp = out(reg) _,
                n = out(reg) _,
                w = out(reg) _,
                we = out(reg) _,
                x = out(reg) _,
                v = out(reg) _,
                a0 = out(reg) _,
                a1 = out(reg) _,
                a2 = out(reg) _,
                a3 = out(reg) _,
                options(nostack),
            );
        }
        let _ = &job;
        true
    }

    /// `count >= 1` output pixels of one group, each from window `win` of `taps`: see
    /// `Mac::dw_row`; [`dw_rows`] with one row.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn dw_row(
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
        dw_rows::<false>(
            taps,
            win,
            bias,
            rq,
            x,
            (base, px_step, 0),
            (count, 1),
            y,
            (y_at, y_step, 0),
        );
    }

    /// `rows >= 1` rows of `count >= 1` output pixels of one group, each from window `win` of
    /// `taps`: see `Mac::dw_rows` (`Mac::dw_row` is one row). Nothing written where the window is
    /// empty or a window or an output would leave its slice, or, with `WHOLE_ROWS` (the caller's
    /// windows are whole kernel rows, which `DwTaps::rect` makes one run), where it is not one
    /// run of taps.
    #[allow(clippy::too_many_arguments)]
    // One copy at opt-level s or z (see `fast::DwBlocks::pixel`): 2.2 KB less code there.
    #[cfg_attr(tinynas_small, inline(never))]
    #[cfg_attr(not(tinynas_small), inline(always))]
    pub fn dw_rows<const WHOLE_ROWS: bool>(
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
        let Some(r) = taps.rect(win) else {
            return;
        };
        // The last row's last pixel: every other pixel's window and output lie between it and
        // the first row's first (both steps are not negative).
        let last = count
            .checked_sub(1)
            .and_then(|c| c.checked_mul(px_step))
            .and_then(|l| l.checked_add(rows.checked_sub(1)?.checked_mul(row_step)?))
            .and_then(|l| isize::try_from(l).ok())
            .and_then(|l| base.checked_add(l));
        let y_end = count
            .checked_sub(1)
            .and_then(|c| c.checked_mul(y_step))
            .and_then(|l| l.checked_add(rows.checked_sub(1)?.checked_mul(y_row)?))
            .and_then(|l| l.checked_add(y_at)?.checked_add(4));
        let (Some(last), Some(y_end)) = (last, y_end) else {
            return;
        };
        let inside = crate::fast::dw_groups::run_inside(x, base, r.span)
            && crate::fast::dw_groups::run_inside(x, last, r.span);
        if !inside || y_end > y.len() || r.rows == 0 || r.cols == 0 || (WHOLE_ROWS && r.rows > 1) {
            return;
        }
        let mut row = DwRow {
            bias,
            rq,
            taps: r.span.as_ptr(),
            cols: r.cols,
            skip: 12 * r.skip,
            rows: r.rows,
            left: 0,
            px: x.as_ptr().wrapping_offset(base),
            px_step,
            y: y.as_mut_ptr().wrapping_add(y_at),
            y_step,
            count,
        };
        macro_rules! row_asm {
            ($($rows_head:literal,)* ; $($rows_tail:literal,)*) => {
                asm!(
                        "1:",
                        "ldrd   {a0}, {a1}, [{st}, #{obias}]",
                        "ldrd   {a2}, {a3}, [{st}, #{obias8}]",
                        "ldrd   {g}, {n}, [{st}, #{otaps}]",
                        $($rows_head,)*
                        "ldr    {px}, [{st}, #{opx}]",
                        dw_tap_loop!(),
                        $($rows_tail,)*
                        "ldr    {px}, [{st}, #{orq}]",
                        "ldr    {wb}, [{px}, #64]",
                        requant_lane!("a0", "px", "0", "8", "g", "n", "o", "x", "wa", "wb"),
                        requant_lane!("a1", "px", "16", "24", "g", "n", "o", "x", "wa", "wb"),
                        requant_lane!("a2", "px", "32", "40", "g", "n", "o", "x", "wa", "wb"),
                        requant_lane!("a3", "px", "48", "56", "g", "n", "o", "x", "wa", "wb"),
                        "bfi    {a0}, {a1}, #8, #8",
                        "bfi    {a0}, {a2}, #16, #8",
                        "bfi    {a0}, {a3}, #24, #8",
                        "ldrd   {g}, {n}, [{px}, #68]",
                        "ssub8  {wa}, {a0}, {g}",
                        "sel    {a0}, {a0}, {g}",
                        "ssub8  {wa}, {n}, {a0}",
                        "sel    {a0}, {a0}, {n}",
                        "ldrd   {g}, {n}, [{st}, #{oy}]",
                        "str    {a0}, [{g}]",
                        "add    {g}, {g}, {n}",
                        "str    {g}, [{st}, #{oy}]",
                        "ldrd   {g}, {n}, [{st}, #{opx}]",
                        "add    {g}, {g}, {n}",
                        "str    {g}, [{st}, #{opx}]",
                        "ldr    {g}, [{st}, #{ocount}]",
                        "subs   {g}, {g}, #1",
                        "str    {g}, [{st}, #{ocount}]",
                        "bne    1b",
                        st = in(reg) &mut row as *mut DwRow,
                        obias = const core::mem::offset_of!(DwRow, bias),
                        obias8 = const core::mem::offset_of!(DwRow, bias) + 8,
                        orq = const core::mem::offset_of!(DwRow, rq),
                        ocols = const core::mem::offset_of!(DwRow, cols),
                        orows = const core::mem::offset_of!(DwRow, rows),
                        oleft = const core::mem::offset_of!(DwRow, left),
                        otaps = const core::mem::offset_of!(DwRow, taps),
                        opx = const core::mem::offset_of!(DwRow, px),
                        oy = const core::mem::offset_of!(DwRow, y),
                        ocount = const core::mem::offset_of!(DwRow, count),
                        px = out(reg) _,
                        g = out(reg) _,
                        n = out(reg) _,
                        o = out(reg) _,
                        x = out(reg) _,
                        wa = out(reg) _,
                        wb = out(reg) _,
                        a0 = out(reg) _,
                        a1 = out(reg) _,
                        a2 = out(reg) _,
                        a3 = out(reg) _,
                        options(nostack),
                    );
            };
        }
        // SAFETY: `st` points to `row`, a `repr(C)` value on this stack frame that the assembly
        // reads and updates (its own `left`, `px`, `y` and `count`) and that lives until the
        // block ends; `row.rq` points to `*rq` (`repr(C)`: four `Requant`s of four words each,
        // then the offset and the two clamp words, all word-aligned for LDRD). Each of the
        // `rows >= 1` runs of the loop (row `j`) does `count >= 1` pixels (`count - 1` and
        // `rows - 1` did not underflow); pixel `i` reads `r.rows >= 1` runs of `cols >= 1` taps
        // (one run where `r.rows` is 1), each run `skip` taps after the previous one's end, all
        // inside `r.span` (`DwTaps::rect`: the window's first to last tap), and the input words
        // at `base + j * row_step + i * px_step + off`: the first row's first and the last row's
        // last pixel's first and last tap were proved inside `x`, the offsets increase
        // (`DwTaps::fill`) and no pixel's base lies outside those two (steps not negative), so
        // every word lies between. It writes the four bytes at `y_at + j * y_row + i * y_step`,
        // the last ending at `y_end <= y.len()`. After each row `px`, `y` and `count` are set to
        // row `j + 1`'s. Unaligned LDR/STR are allowed; LDRD reads word-aligned fields. The
        // assembly uses no stack; flags (GE, Q) are clobbered.
        for _ in 0..rows {
            unsafe {
                if !WHOLE_ROWS && r.rows > 1 {
                    row_asm!(
                        "ldr    {px}, [{st}, #{orows}]",
                        "str    {px}, [{st}, #{oleft}]",
                        "3:",
                        ;
                        "ldrd   {n}, {o}, [{st}, #{ocols}]",
                        "add    {g}, {g}, {o}",
                        "ldr    {o}, [{st}, #{oleft}]",
                        "subs   {o}, {o}, #1",
                        "str    {o}, [{st}, #{oleft}]",
                        "bne    3b",
                    );
                } else {
                    // (The loop's field offsets, unused here, named in a comment.)
                    row_asm!("@ {orows} {oleft} {ocols}", ;);
                }
            }
            // The next row: the assembly moved `px` and `y` on by `count` steps and counted
            // `count` down. (Also after the last row: skipping it there made LLVM copy the whole
            // loop at opt-level 3, 1.7 KB; setting them before each row instead is slower.)
            row.px = row
                .px
                .wrapping_add(row_step.wrapping_sub(count.wrapping_mul(px_step)));
            row.y = row
                .y
                .wrapping_add(y_row.wrapping_sub(count.wrapping_mul(y_step)));
            row.count = count;
        }
        let _ = &row;
    }

    /// The short requantisation's rounding for a right shift of at least 1 (see
    /// `Mac::round_short`): LSL, SMMULR, the nudge as one add of a shifted register, ADD, ASR.
    #[inline(always)]
    pub fn round_short(acc: i32, m: i32, half: i32, right: u32) -> i32 {
        let v: i32;
        // SAFETY: register-only; no memory, stack or flags (ASR by a register uses its low
        // byte: `right` is at most 31 here, as the portable form's `& 31`).
        unsafe {
            asm!(
                "lsl {v}, {a}, #1",
                "smmulr {v}, {v}, {m}",
                "add {t}, {half}, {v}, asr #31",
                "add {v}, {v}, {t}",
                "asr {v}, {v}, {r}",
                a = in(reg) acc,
                m = in(reg) m,
                half = in(reg) half,
                r = in(reg) right & 31,
                v = out(reg) v,
                t = out(reg) _,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        v
    }

    /// Widens `groups` groups of four int8 (each a word at `x`, read as `x ^ xor`: `xor` is
    /// `0x80808080` for `u8` pixels, else 0) into the block layout of `fast::mac::Dsp`: per
    /// group the words `(k0, k2)` and `(k1, k3)` of int16 at `blk`, groups 32 bytes apart.
    /// `rows` rows of `groups` groups each, `x` advancing by `stride` bytes from row to row.
    ///
    /// # Safety
    /// `rows >= 1` and `groups >= 1`; the `rows * groups` words read (row `r`'s at
    /// `x + r * stride + 4 g`) are readable, and the `rows * groups` 8-byte pairs written (at
    /// `blk + 32 j`) are writable and word-aligned.
    #[inline(always)]
    unsafe fn widen(
        x: *const u8,
        stride: usize,
        rows: usize,
        groups: usize,
        xor: u32,
        blk: *mut i8,
    ) {
        // SAFETY: by the caller's contract (unaligned LDR is allowed; STRD gets an aligned
        // address). No stack; the pointers, counters, temporaries and flags are clobbered.
        unsafe {
            asm!(
                "2:",
                "mov {xp}, {x}",
                "mov {g}, {groups}",
                "3:",
                "ldr {v}, [{xp}], #4",
                "eor {v}, {v}, {xor}",
                "sxtb16 {e}, {v}",
                "sxtb16 {v}, {v}, ror #8",
                "strd {e}, {v}, [{b}], #32",
                "subs {g}, {g}, #1",
                "bne 3b",
                "add {x}, {x}, {stride}",
                "subs {rows}, {rows}, #1",
                "bne 2b",
                x = inout(reg) x => _,
                stride = in(reg) stride,
                rows = inout(reg) rows => _,
                groups = in(reg) groups,
                xor = in(reg) xor,
                b = inout(reg) blk => _,
                xp = out(reg) _,
                g = out(reg) _,
                v = out(reg) _,
                e = out(reg) _,
                options(nostack),
            );
        }
    }

    /// Column `p` (0 to 3) of a DSP block from `col` (int8, a multiple of 4 values): see
    /// `fast::mac::Dsp`. False (nothing written) where the block is too short or misaligned.
    #[inline(always)]
    pub fn store_column(block: &mut [i8], p: usize, col: &[i8]) -> bool {
        let groups = col.len() / 4;
        if !super::fits(block, p, groups) {
            return false;
        }
        if groups > 0 {
            // SAFETY: one row of `groups >= 1` words of `col`; the pairs at `block + 8 p + 32 g`
            // are inside `block` and aligned (`fits`).
            unsafe {
                widen(
                    col.as_ptr().cast(),
                    0,
                    1,
                    groups,
                    0,
                    block.as_mut_ptr().wrapping_add(8 * p),
                );
            }
        }
        true
    }

    /// The block's column `p` straight from `rows` input rows of `4 * groups` pixels each
    /// (`stride` apart from row `x[0..]`), converted as `T` is (`Pixel::XOR`): the im2col column
    /// of a window inside the input whose rows are whole groups. False where a slice is short,
    /// the block misaligned, or `T` is not one byte.
    #[inline(always)]
    pub fn widen_rows<T: crate::fast::Pixel>(
        x: &[T],
        stride: usize,
        rows: usize,
        groups: usize,
        block: &mut [i8],
        p: usize,
    ) -> bool {
        let span = rows
            .checked_sub(1)
            .and_then(|r| r.checked_mul(stride))
            .and_then(|v| groups.checked_mul(4).and_then(|g| v.checked_add(g)));
        let fit = span.is_some_and(|s| s <= x.len())
            && rows
                .checked_mul(groups)
                .is_some_and(|n| super::fits(block, p, n))
            && core::mem::size_of::<T>() == 1
            && groups > 0
            && stride <= isize::MAX as usize;
        if !fit {
            return false;
        }
        // SAFETY: `T` is one byte, so row `r`'s words at `x + r * stride + 4 g` (`g < groups`) are
        // inside `x` (`(rows - 1) * stride + 4 groups <= x.len()`); `rows, groups >= 1`; the
        // `rows * groups` pairs at `block + 8 p + 32 j` are inside `block` and aligned (`fits`).
        unsafe {
            widen(
                x.as_ptr().cast(),
                stride,
                rows,
                groups,
                T::XOR,
                block.as_mut_ptr().wrapping_add(8 * p),
            );
        }
        true
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
        // One group: a weight word split by SXTB16, then each column's two words.
        macro_rules! group {
            () => {
                concat!(
                    "ldr    {w}, [{wp}], #4\n",
                    "sxtb16 {we}, {w}\n",
                    "sxtb16 {w}, {w}, ror #8\n",
                    "ldrd   {x}, {y}, [{cp}], #8\n",
                    "smlad  {a0}, {x}, {we}, {a0}\n",
                    "smlad  {a0}, {y}, {w}, {a0}\n",
                    "ldrd   {x}, {y}, [{cp}], #8\n",
                    "smlad  {a1}, {x}, {we}, {a1}\n",
                    "smlad  {a1}, {y}, {w}, {a1}\n",
                    "ldrd   {x}, {y}, [{cp}], #8\n",
                    "smlad  {a2}, {x}, {we}, {a2}\n",
                    "smlad  {a2}, {y}, {w}, {a2}\n",
                    "ldrd   {x}, {y}, [{cp}], #8\n",
                    "smlad  {a3}, {x}, {we}, {a3}\n",
                    "smlad  {a3}, {y}, {w}, {a3}\n",
                )
            };
        }
        // SAFETY: `n >= 1` groups run (one first if `n` is odd, then two per iteration, `n / 2`
        // iterations, none for 0), each reading 32 bytes of `cols` and 4 of `w`, so they stay
        // inside both slices (`n` is bounded by both lengths above). LDRD needs a word-aligned
        // address: `cols` was checked to be aligned, and advances by 8. LDR on `w` may be
        // unaligned (allowed on Armv7E-M/Armv8-M Mainline). It writes no memory and no stack; the
        // pointers, the counter and the flags are declared clobbered.
        unsafe {
            core::arch::asm!(
                "lsrs   {n}, {n}, #1",
                "bcc    3f",
                group!(),
                "cmp    {n}, #0",
                "beq    4f",
                "3:",
                group!(),
                group!(),
                "subs   {n}, {n}, #1",
                "bne    3b",
                "4:",
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
    use crate::fast::dw_groups::{DwTaps, Requant4, RequantCol, Win};

    pub fn dw_taps(acc: [i32; 4], x: &[i8], base: isize, taps: &DwTaps, win: Win) -> [i32; 4] {
        crate::fast::dw_groups::runs(taps, win).fold(acc, |a, r| {
            if crate::fast::dw_groups::run_inside(x, base, r) {
                crate::fast::dw_groups::taps_portable(a, x, base, r)
            } else {
                a
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn dw_row(
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
        crate::fast::dw_groups::row_portable::<crate::fast::mac::Dsp>(
            taps, win, bias, rq, x, px, count, y, ys,
        );
    }

    pub fn gather_words(dst: &mut [i8], src: &[i8], step: usize) -> bool {
        crate::fast::mac::gather_words_portable(dst, src, step)
    }

    pub fn conv_cols(block: &[i8], p: &crate::fast::FastConv<'_>, kp: usize, y: &mut [i8]) -> bool {
        let oc = p.dims.out_c;
        if !super::conv_cols_fit(block, p, kp, y) {
            return false;
        }
        let clamp = crate::fast::mac::Clamp::new(&p.quant);
        let rows = crate::fast::mac::rows(p.weights, kp).zip(p.bias);
        let ms = p.multiplier.iter().zip(p.shift);
        for (c, ((w, &b), (&m, &s))) in rows.zip(ms).take(oc).enumerate() {
            let acc = dot_4x1_i16(block, w, [b; 4]);
            let k = RequantCol::new(m, s, &clamp);
            if let Some(y) = y.get_mut(c..) {
                crate::fast::dw_groups::requant_col_portable::<crate::fast::mac::Dsp>(
                    acc, &k, y, oc,
                );
            }
        }
        true
    }

    pub fn requant_col(acc: [i32; 4], k: &RequantCol, y: &mut [i8], stride: usize) {
        let end = stride.checked_mul(3).and_then(|e| e.checked_add(1));
        if end.is_some_and(|e| e <= y.len()) {
            crate::fast::dw_groups::requant_col_portable::<crate::fast::mac::Dsp>(
                acc, k, y, stride,
            );
        }
    }

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

    pub fn round_short(acc: i32, m: i32, half: i32, right: u32) -> i32 {
        let high = smmulr(acc.wrapping_shl(1), m);
        high.wrapping_add(half.wrapping_add(high >> 31)) >> (right & 31)
    }

    /// The DSP block layout in plain Rust (see the assembly).
    fn widen_into(words: impl Iterator<Item = u32>, block: &mut [i8], p: usize) {
        for (j, v) in words.enumerate() {
            let at = 32 * j + 8 * p;
            if let Some(dst) = block.get_mut(at..at + 8) {
                let (e, o) = (sxtb16(v).to_le_bytes(), sxtb16_ror8(v).to_le_bytes());
                for (d, b) in dst.iter_mut().zip(e.iter().chain(&o)) {
                    *d = *b as i8;
                }
            }
        }
    }

    pub fn store_column(block: &mut [i8], p: usize, col: &[i8]) -> bool {
        let words = col
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8]));
        widen_into(words, block, p);
        true
    }

    pub fn widen_rows<T: crate::fast::Pixel>(
        x: &[T],
        stride: usize,
        rows: usize,
        groups: usize,
        block: &mut [i8],
        p: usize,
    ) -> bool {
        let words = (0..rows).flat_map(|r| {
            (0..groups).map(move |g| {
                let b = |i: usize| x.get(r * stride + 4 * g + i).map_or(0, |v| v.to_i8() as u8);
                u32::from_le_bytes([b(0), b(1), b(2), b(3)])
            })
        });
        widen_into(words, block, p);
        true
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

/// Whether [`conv_cols`] is exact for the layer: an output offset within int8 and every right
/// shift at most 22 (see there). The same on every target: the host runs the DSP loops too.
#[allow(dead_code)]
#[inline(always)]
pub fn conv_cols_takes(p: &crate::fast::FastConv<'_>) -> bool {
    // (For one block of channels or fewer, the two passes of `im2col_q` measure faster.)
    p.dims.out_c > crate::fast::OC_BLOCK
        && (-128..=127).contains(&p.quant.output_offset)
        && p.shift.iter().all(|&s| s >= -22)
}

/// Whether the slices fit [`conv_cols`]: `kp` a positive multiple of 4, a word-aligned block of
/// `kp / 4` groups of 32 bytes, `oc >= 1` weight rows of `kp`, `oc` biases, multipliers and
/// shifts, and the four pixels' `4 oc` outputs.
#[allow(dead_code)]
#[inline(always)]
fn conv_cols_fit(block: &[i8], p: &crate::fast::FastConv<'_>, kp: usize, y: &[i8]) -> bool {
    let oc = p.dims.out_c;
    let fits = |len: usize, n: Option<usize>| n.is_some_and(|n| n <= len);
    kp / 4 != 0
        && kp % 4 == 0
        && oc != 0
        && block.as_ptr() as usize % 4 == 0
        && fits(block.len(), (kp / 4).checked_mul(32))
        && fits(p.weights.len(), oc.checked_mul(kp))
        && fits(y.len(), oc.checked_mul(4))
        && p.bias.len() >= oc
        && p.multiplier.len() >= oc
        && p.shift.len() >= oc
}

/// Whether `n` int16 pairs of column `p` (at `8 p + 32 j`, `j < n`) fit `block`, word-aligned.
#[allow(dead_code)]
#[inline(always)]
fn fits(block: &[i8], p: usize, n: usize) -> bool {
    let end = n.checked_mul(32).map(|b| b + 8 * p);
    p < 4
        && block.as_ptr() as usize % 4 == 0
        && end.is_some_and(|e| n == 0 || e + 8 <= block.len() + 32)
}
