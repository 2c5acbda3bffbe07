//! The fast kernels on the emulated boards, bit for bit against the reference kernels on the host:
//! random cases (shapes, strides, paddings, zero points, multipliers, shifts, activations) for
//! every fast kernel, at least 200 per kernel on qemu-m4 (Armv7E-M DSP), qemu-m3 (Armv7-M, the
//! portable paths), qemu-m55 (Armv8.1-M,
//! built for `cortex-m55`) and qemu-m0 (Armv6-M). The cases are batched into a few firmware images
//! per board (`tests/kernel-check`), each printing a CRC-32 of every output.
//!
//! Case format (`cases.bin`, little-endian u32/i32 unless said): kind (0 conv int8, 1 conv u8
//! pixels, 2 depthwise, 3 dense, 4 max pool, 5 mean, 6 depthwise with the padded rows' scratch, 7
//! average pool, 8 conv int8 through the pointwise entry), narrow (0: not narrow; else the layer's accumulator
//! bound, `FastConv::acc_bound`, at least 1), 11 dims (in_h, in_w, in_c,
//! out_h, out_w, out_c, k_h, k_w, stride, pad_top, pad_left), the output quantisation (input
//! offset, output offset, act min, act max), the byte counts of input and weights, the channel
//! count, the output length; then input bytes, weight bytes, biases, multipliers, shifts (i32).

use std::path::{Path, PathBuf};
use std::process::Command;

use cargo_tinynas::board::qemu::{machine, QemuMachine};
use tinynas_kernels::fast::{narrow_channel, padded_k, pointwise_takes, FastConv};
use tinynas_kernels::{ConvDims, MeanParams, OutputQuant, PoolDims};
use tinynas_model::lower::{abs_sums, fold, pad_rows};
use tinynas_model::random::{Source, SplitMix};

const KINDS: [&str; 9] = [
    "conv2d",
    "conv2d_u8",
    "depthwise_conv2d",
    "fully_connected",
    "max_pool2d",
    "global_average_pool",
    "depthwise_conv2d_rows",
    "avg_pool2d",
    "conv2d_pointwise",
];
const CASES_PER_KIND: usize = 210;
/// Flash bytes of cases per firmware image (the micro:bit has 256 KiB of flash).
const IMAGE_BYTES: usize = 128 << 10;

/// Kernel weights, folded biases, multipliers, shifts, the narrow word (0: not narrow; else the
/// layer's accumulator bound, at least 1), and the reference output.
type Prepared = (Vec<i8>, Vec<i32>, Vec<i32>, Vec<i32>, u32, Vec<i8>);

/// One random case: its encoding for the device and the reference output.
struct Case {
    kind: usize,
    bytes: Vec<u8>,
    want: Vec<i8>,
    what: String,
    /// A pointwise case that the DSP's channel loop takes.
    takes_loop: bool,
}

fn put(b: &mut Vec<u8>, v: impl IntoIterator<Item = i64>) {
    for v in v {
        b.extend_from_slice(&(v as u32).to_le_bytes());
    }
}

fn multiplier(r: &mut SplitMix) -> i32 {
    if r.chance(0.1) {
        0
    } else {
        r.int(1 << 30, i32::MAX as i64) as i32
    }
}

fn shift(r: &mut SplitMix) -> i32 {
    if r.chance(0.1) {
        r.int(-31, 30) as i32
    } else {
        r.int(-12, 1) as i32
    }
}

fn quant(r: &mut SplitMix) -> OutputQuant {
    let lo = r.int(-128, 127) as i32;
    OutputQuant {
        input_offset: -(r.int(-128, 127) as i32),
        output_offset: r.int(-128, 127) as i32,
        act_min: lo,
        act_max: (lo + r.int(0, 255) as i32).min(127),
    }
}

fn case(r: &mut SplitMix, kind: usize) -> Case {
    let depthwise = kind == 2 || kind == 6;
    // A third of the depthwise cases: the portable channel path's layers (`dw_channel`: square
    // 3x3 or 5x5 kernels, strides 1 and 2, outputs of at least 32 pixels).
    let channel = depthwise && r.chance(0.3);
    let (ih, iw) = if channel {
        (r.int(10, 14) as usize, r.int(10, 14) as usize)
    } else {
        (r.int(1, 7) as usize, r.int(1, 7) as usize)
    };
    // Depthwise and pools: past 16 channels, the vector kernels' wide step.
    // (The channel path's cases at most 8, so that their outputs fit the check's buffer.)
    let ic = r.int(
        1,
        if channel {
            8
        } else if depthwise || kind == 4 || kind == 7 {
            20
        } else {
            9
        },
    ) as usize;
    let (kh, kw, s) = if kind == 4 && r.chance(0.3) {
        // The usual 2x2 pool (its own path).
        (2, 2, r.int(1, 2) as usize)
    } else if channel {
        let k = if r.chance(0.5) { 3 } else { 5 };
        (k, k, r.int(1, 2) as usize)
    } else {
        (
            r.int(1, 5) as usize,
            r.int(1, 5) as usize,
            r.int(1, 3) as usize,
        )
    };
    // A sixth of the convolutions: a 3x3 window over one channel (the kernels' own copy for a
    // grayscale image's first layer).
    let (ic, kh, kw) = if kind <= 1 && r.chance(1.0 / 6.0) {
        (1, 3, 3)
    } else {
        (ic, kh, kw)
    };
    // Convolutions: past 8 channels, the DSP path's one loop over the channels.
    let oc = if channel {
        ic
    } else if depthwise {
        ic * r.int(1, 2) as usize
    } else if kind <= 1 {
        r.int(1, 16) as usize
    } else {
        r.int(1, 9) as usize
    };
    let low = |n: usize| if channel { n.div_ceil(s) - 1 } else { 1 };
    let (oh, ow) = (
        r.int(low(ih) as i64, (ih.div_ceil(s) + 1) as i64) as usize,
        r.int(low(iw) as i64, (iw.div_ceil(s) + 1) as i64) as usize,
    );
    let (mut pt, mut pl) = (
        r.int(0, kh as i64 - 1) as usize,
        r.int(0, kw as i64 - 1) as usize,
    );
    // A sixth of the int8 convolutions: a pointwise layer (1x1, stride 1, no padding, as wide as
    // its input, channels of whole words): the DSP path's loop of its own.
    let (ic, kh, kw, s, oh, ow) = if kind == 0 && r.chance(1.0 / 6.0) {
        (pt, pl) = (0, 0);
        (
            4 * r.int(1, 3) as usize,
            1,
            1,
            1,
            r.int(1, ih as i64) as usize,
            iw,
        )
    } else {
        (ic, kh, kw, s, oh, ow)
    };
    // The pointwise entry's cases: pointwise layers (1x1, stride 1, no padding, as wide as the
    // input, channels of whole words), from 1 output pixel to 49 (the last block of four
    // overlapping the one before), mostly more than 8 output channels (the DSP's channel loop).
    let (ih, iw, ic, kh, kw, s, oh, ow, oc) = if kind == 8 {
        (pt, pl) = (0, 0);
        let (ih, iw) = (r.int(1, 7) as usize, r.int(2, 7) as usize);
        (
            ih,
            iw,
            4 * r.int(1, 4) as usize,
            1,
            1,
            1,
            r.int(1, ih as i64) as usize,
            iw,
            r.int(6, 20) as usize,
        )
    } else {
        (ih, iw, ic, kh, kw, s, oh, ow, oc)
    };
    // Half the 2x2 pools without padding: the row-by-row path of the DSP and Armv6-M kernels.
    if kind == 4 && (kh, kw) == (2, 2) && r.chance(0.5) {
        (pt, pl) = (0, 0);
    }
    let mut dims = ConvDims {
        in_h: ih,
        in_w: iw,
        in_c: ic,
        out_h: oh,
        out_w: ow,
        out_c: oc,
        k_h: kh,
        k_w: kw,
        stride: s,
        pad_top: pt,
        pad_left: pl,
    };
    let q = quant(r);
    let mut input: Vec<i8> = (0..ih * iw * ic).map(|_| r.int(-128, 127) as i8).collect();
    // Per-channel parameters of `n` channels as the generator prepares them for the fast kernels.
    let per_channel = |r: &mut SplitMix, w: &[i8], n: usize, k_depthwise: bool| {
        let b: Vec<i32> = (0..n).map(|_| r.int(-70000, 70000) as i32).collect();
        let m: Vec<i32> = (0..n).map(|_| multiplier(r)).collect();
        let s: Vec<i32> = (0..n).map(|_| shift(r)).collect();
        let f = fold(w, &b, q.input_offset, k_depthwise);
        let sums = abs_sums(w, n, k_depthwise);
        let nar = f
            .iter()
            .zip(&s)
            .zip(&sums)
            .all(|((&f, &s), &a)| narrow_channel(f, s, a))
            && r.chance(0.7);
        // As the generator's `acc_bound`.
        let bound = f
            .iter()
            .zip(&sums)
            .map(|(&f, &a)| u64::from(f.unsigned_abs()) + 128 * a)
            .max()
            .unwrap_or(0);
        let word = if nar {
            u32::try_from(bound).unwrap_or(u32::MAX).max(1)
        } else {
            0
        };
        (b, f, m, s, word)
    };
    let (kernel_weights, folded, mult, sh, narrow, want): Prepared = match kind {
        0..=2 | 6 | 8 => {
            let n = if depthwise {
                kh * kw * oc
            } else {
                oc * kh * kw * ic
            };
            let weights: Vec<i8> = (0..n).map(|_| r.int(-127, 127) as i8).collect();
            let (bias, folded, mult, sh, narrow) = per_channel(r, &weights, oc, depthwise);
            let kernel_weights = if depthwise {
                weights.clone()
            } else {
                pad_rows(&weights, oc, padded_k(&dims))
            };
            let p = tinynas_kernels::Conv {
                weights: &weights,
                bias: &bias,
                multiplier: &mult,
                shift: &sh,
                dims,
                quant: q,
            };
            let mut y = vec![0i8; oh * ow * oc];
            if depthwise {
                tinynas_kernels::depthwise_conv2d(&input, &mut y, &p);
            } else {
                tinynas_kernels::conv2d(&input, &mut y, &p);
            }
            if kind == 1 {
                // The device gets the raw u8 pixels x_i8 + 128.
                input = input.iter().map(|&x| x ^ i8::MIN).collect();
            }
            (kernel_weights, folded, mult, sh, narrow, y)
        }
        3 => {
            let (n, o) = (r.int(1, 80) as usize, r.int(1, 12) as usize);
            dims = ConvDims {
                in_c: n,
                out_c: o,
                ..dims
            };
            input = (0..n).map(|_| r.int(-128, 127) as i8).collect();
            let weights: Vec<i8> = (0..n * o).map(|_| r.int(-127, 127) as i8).collect();
            let (bias, folded, mult, sh, narrow) = per_channel(r, &weights, o, false);
            let p = tinynas_kernels::Dense {
                weights: &weights,
                bias: &bias,
                multiplier: &mult,
                shift: &sh,
                in_features: n,
                out_features: o,
                quant: q,
            };
            let mut y = vec![0i8; o];
            tinynas_kernels::fully_connected(&input, &mut y, &p);
            (weights, folded, mult, sh, narrow, y)
        }
        4 | 7 => {
            let d = PoolDims {
                in_h: ih,
                in_w: iw,
                channels: ic,
                out_h: oh,
                out_w: ow,
                k_h: kh,
                k_w: kw,
                stride: s,
                pad_top: pt,
                pad_left: pl,
            };
            let mut y = vec![0i8; oh * ow * ic];
            if kind == 4 {
                tinynas_kernels::max_pool2d(&input, &mut y, &d);
            } else {
                tinynas_kernels::avg_pool2d(&input, &mut y, &d);
            }
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0, y)
        }
        _ => {
            let (m, sh) = (multiplier(r), shift(r));
            let p = MeanParams {
                h: ih,
                w: iw,
                channels: ic,
                multiplier: m,
                shift: sh,
                input_offset: q.input_offset,
                output_offset: q.output_offset,
            };
            let mut y = vec![0i8; ic];
            tinynas_kernels::global_average_pool(&input, &mut y, &p);
            (Vec::new(), vec![0], vec![m], vec![sh], 0, y)
        }
    };
    // A pointwise case the DSP's channel loop takes (the others test the fallback).
    let takes_loop = kind == 8
        && narrow != 0
        && dims.out_h * dims.out_w >= 4
        && pointwise_takes(&FastConv {
            weights: &kernel_weights,
            bias: &folded,
            multiplier: &mult,
            shift: &sh,
            dims,
            quant: q,
            narrow: true,
            acc_bound: narrow,
        });
    let channels = mult.len();
    let mut b = Vec::new();
    let d = &dims;
    put(&mut b, [kind as i64, i64::from(narrow)]);
    put(
        &mut b,
        [
            d.in_h, d.in_w, d.in_c, d.out_h, d.out_w, d.out_c, d.k_h, d.k_w, d.stride, d.pad_top,
            d.pad_left,
        ]
        .map(|v| v as i64),
    );
    put(
        &mut b,
        [q.input_offset, q.output_offset, q.act_min, q.act_max].map(i64::from),
    );
    put(
        &mut b,
        [input.len(), kernel_weights.len(), channels, want.len()].map(|v| v as i64),
    );
    b.extend(input.iter().map(|&x| x as u8));
    b.extend(kernel_weights.iter().map(|&x| x as u8));
    for v in [&folded, &mult, &sh] {
        put(&mut b, v.iter().map(|&x| i64::from(x)));
    }
    let what = format!(
        "{}: {dims:?} {q:?} narrow word (0 or the accumulator bound) {narrow} multipliers {mult:?} shifts {sh:?}",
        KINDS[kind]
    );
    Case {
        kind,
        bytes: b,
        want,
        what,
        takes_loop,
    }
}

fn crc32(v: &[i8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&v.iter().map(|&x| x as u8).collect::<Vec<_>>());
    h.finalize()
}

/// Builds the kernel check for board `m` at `opt_level` (the kernels inline differently at `s`
/// and `z`).
fn build(m: &QemuMachine, opt_level: &str, cases: &[u8], dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let (cases_path, memory) = (dir.join("cases.bin"), dir.join("memory.x"));
    std::fs::write(&cases_path, cases).unwrap();
    std::fs::write(
        &memory,
        format!(
            "MEMORY\n{{\n  FLASH : ORIGIN = {:#x}, LENGTH = {}\n  RAM : ORIGIN = {:#x}, LENGTH = {}\n}}\n",
            m.flash.0, m.flash.1, m.ram.0, m.ram.1
        ),
    )
    .unwrap();
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/kernel-check");
    let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("kernel-check-{}-{opt_level}", m.board));
    let flags_var = format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        m.target.to_uppercase().replace(['-', '.'], "_")
    );
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            m.target,
            "--manifest-path",
        ])
        .arg(crate_dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("TINYNAS_KERNEL_CASES", &cases_path)
        .env("TINYNAS_MEMORY_X", &memory)
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", opt_level)
        .env(
            flags_var,
            format!("-C link-arg=-Tlink.x -C target-cpu={}", m.cpu),
        )
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building the kernel check for {}:\n{}",
        m.board,
        String::from_utf8_lossy(&out.stderr)
    );
    target_dir
        .join(m.target)
        .join("release")
        .join("tinynas-kernel-check")
}

fn run(m: &QemuMachine, elf: &Path) -> Vec<u32> {
    // The board's own qemu-system-arm command line, bounded by `timeout`.
    let qemu = cargo_tinynas::board::qemu::command(m.machine, elf);
    let out = Command::new("timeout")
        .arg("300")
        .arg(qemu.get_program())
        .args(qemu.get_args())
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!(
            "{}: the kernel check failed ({}):\n{}{}",
            m.board,
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run timeout/qemu-system-arm: {e}"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("TNAS-FAULT"), "{}: {text}", m.board);
    let crcs: Vec<u32> = text
        .lines()
        .filter_map(|l| l.strip_prefix("TNAS-CASE "))
        .map(|l| u32::from_str_radix(l.split(' ').nth(1).unwrap(), 16).unwrap())
        .collect();
    assert!(
        text.contains(&format!("TNAS-DONE {}", crcs.len())),
        "{}: the run ended early:\n{text}",
        m.board
    );
    crcs
}

fn check_board(board: &str, opt_level: &str, seed: u64) {
    let m = machine(board).unwrap();
    let mut r = SplitMix(seed);
    let cases: Vec<Case> = (0..CASES_PER_KIND * KINDS.len())
        .map(|i| case(&mut r, i % KINDS.len()))
        .collect();
    let mut counts = [0usize; KINDS.len()];
    let (mut start, mut image) = (0, 0);
    while start < cases.len() {
        let mut end = start;
        let mut bytes = Vec::new();
        while end < cases.len() && bytes.len() + cases[end].bytes.len() <= IMAGE_BYTES {
            bytes.extend_from_slice(&cases[end].bytes);
            end += 1;
        }
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("kernel-cases-{board}-{opt_level}-{image}"));
        let crcs = run(m, &build(m, opt_level, &bytes, &dir));
        assert_eq!(crcs.len(), end - start, "{board}: cases reported");
        for (c, &got) in cases[start..end].iter().zip(&crcs) {
            assert_eq!(
                got,
                crc32(&c.want),
                "{board}: the fast kernel differs from the reference on {}",
                c.what
            );
            counts[c.kind] += 1;
        }
        start = end;
        image += 1;
    }
    for (k, n) in KINDS.iter().zip(counts) {
        assert!(n >= 200, "{board}: only {n} cases of {k}");
    }
    let looped = cases.iter().filter(|c| c.takes_loop).count();
    assert!(
        looped >= 50,
        "{board}: only {looped} pointwise cases that the DSP's channel loop takes"
    );
    eprintln!(
        "{board} at opt-level {opt_level}: {} cases ({} per kernel, {looped} through the pointwise channel loop where the board has it) in {image} firmware images, all equal to the reference",
        cases.len(),
        CASES_PER_KIND
    );
}

#[test]
fn fast_kernels_equal_the_reference_on_qemu_m4() {
    check_board("qemu-m4", "3", 0x4D34);
}

/// At opt-level `s` (and `z`) the kernels keep their largest depthwise paths as called copies
/// (`cfg(tinynas_small)`): the same cases through that build.
#[test]
fn fast_kernels_equal_the_reference_on_qemu_m4_at_opt_level_s() {
    check_board("qemu-m4", "s", 0x4D3453);
}

#[test]
fn fast_kernels_equal_the_reference_on_qemu_m55() {
    check_board("qemu-m55", "3", 0x4D3535);
}

/// Armv7-M without the DSP extension: the portable paths (the depthwise channel path among them).
#[test]
fn fast_kernels_equal_the_reference_on_qemu_m3() {
    check_board("qemu-m3", "3", 0x4D33);
}

#[test]
fn fast_kernels_equal_the_reference_on_qemu_m0() {
    check_board("qemu-m0", "3", 0x4D30);
}
