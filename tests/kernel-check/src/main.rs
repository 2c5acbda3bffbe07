//! The fast kernels on the device: each case of `cases.bin` (format in
//! `cargo-tinynas/tests/kernels_on_boards.rs`) is run through the fast kernel the generated code
//! would call, and `TNAS-CASE <index> <crc32 of the output>` is printed over semihosting; then
//! `TNAS-DONE <count>`.
#![no_std]
#![no_main]

use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hprintln};
use tinynas_kernels::fast::{self, FastConv, FastDense};
use tinynas_kernels::{ConvDims, MeanParams, OutputQuant, PoolDims};

static CASES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cases.bin"));

const MAX_OUT: usize = 2048;
const MAX_SCRATCH: usize = 4096;
static mut OUT: [i8; MAX_OUT] = [0; MAX_OUT];
static mut SCRATCH: [i8; MAX_SCRATCH] = [0; MAX_SCRATCH];

/// A little-endian reader over the case stream.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes(4).try_into().unwrap())
    }
    fn i32(&mut self) -> i32 {
        self.u32() as i32
    }
    fn i8s(&mut self, n: usize) -> &'a [i8] {
        let b = self.bytes(n);
        // SAFETY: u8 and i8 have the same size and alignment; the slice stays inside CASES.
        unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<i8>(), b.len()) }
    }
    /// `n` little-endian i32 values, copied into `buf`.
    fn i32s<'b>(&mut self, n: usize, buf: &'b mut [i32]) -> &'b [i32] {
        for v in buf[..n].iter_mut() {
            *v = self.i32();
        }
        &buf[..n]
    }
}

fn crc32(data: &[i8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b as u8);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[entry]
fn main() -> ! {
    let out = unsafe { &mut *core::ptr::addr_of_mut!(OUT) };
    let scratch = unsafe { &mut *core::ptr::addr_of_mut!(SCRATCH) };
    let (mut bias, mut mult, mut shift) = ([0i32; 64], [0i32; 64], [0i32; 64]);
    let mut r = Reader(CASES);
    let mut index = 0u32;
    while !r.0.is_empty() {
        let kind = r.u32();
        // 0: not narrow; else the accumulator bound.
        let word = r.u32();
        let (narrow, acc_bound) = (word != 0, if word != 0 { word } else { u32::MAX });
        let mut d = [0usize; 11];
        for v in d.iter_mut() {
            *v = r.u32() as usize;
        }
        let quant = OutputQuant {
            input_offset: r.i32(),
            output_offset: r.i32(),
            act_min: r.i32(),
            act_max: r.i32(),
        };
        let (n_in, n_w, n_ch, n_out) = (
            r.u32() as usize,
            r.u32() as usize,
            r.u32() as usize,
            r.u32() as usize,
        );
        let input = r.i8s(n_in);
        let weights = r.i8s(n_w);
        let bias = r.i32s(n_ch, &mut bias);
        let multiplier = r.i32s(n_ch, &mut mult);
        let shift = r.i32s(n_ch, &mut shift);
        let dims = ConvDims {
            in_h: d[0],
            in_w: d[1],
            in_c: d[2],
            out_h: d[3],
            out_w: d[4],
            out_c: d[5],
            k_h: d[6],
            k_w: d[7],
            stride: d[8],
            pad_top: d[9],
            pad_left: d[10],
        };
        let conv = FastConv {
            weights,
            bias,
            multiplier,
            shift,
            dims,
            quant,
            narrow,
            acc_bound,
        };
        let pool = PoolDims {
            in_h: d[0],
            in_w: d[1],
            channels: d[2],
            out_h: d[3],
            out_w: d[4],
            k_h: d[6],
            k_w: d[7],
            stride: d[8],
            pad_top: d[9],
            pad_left: d[10],
        };
        let y = &mut out[..n_out];
        match kind {
            // A 3x3 layer over one channel: what the generator calls for it.
            0 if fast::one_channel_takes(&conv.dims) => {
                fast::conv2d_one_channel(input, y, scratch, &conv)
            }
            0 => fast::conv2d(input, y, scratch, &conv),
            1 => {
                // SAFETY: the same bytes read as u8 (the raw pixels).
                let raw = unsafe { core::slice::from_raw_parts(input.as_ptr().cast::<u8>(), n_in) };
                if fast::one_channel_takes(&conv.dims) {
                    fast::conv2d_u8_one_channel(raw, y, scratch, &conv)
                } else {
                    fast::conv2d_u8(raw, y, scratch, &conv)
                }
            }
            // A layer the group path takes: what the generator calls for it on even cases, the
            // general entry on odd ones (both give the reference's bytes). The groups entry also
            // on a third of all cases: on a layer the path does not take, its small per-pixel
            // fallback gives the reference's bytes too.
            2 if (fast::dw_groups::groups_take(&dims) && index % 2 == 0) || index % 3 == 1 => {
                fast::depthwise_conv2d_groups(input, y, &mut [], &conv)
            }
            2 => fast::depthwise_conv2d(input, y, &conv),
            6 => {
                // The padded rows' scratch, at a varying alignment (the kernel aligns it).
                let at = (index % 4) as usize;
                let n = fast::dw_groups::rows_scratch_bytes(&dims)
                    .max(fast::dw_channel::scratch_bytes(&dims).unwrap_or(0));
                let scratch = &mut scratch[at..at + n];
                if fast::dw_groups::groups_take(&dims) && (index / 4) % 2 == 0 {
                    fast::depthwise_conv2d_groups(input, y, scratch, &conv)
                } else {
                    fast::depthwise_conv2d_rows(input, y, scratch, &conv)
                }
            }
            // The pointwise entry on every case of its kind: on a layer its loop does not take
            // (or one that is not narrow), its per-pixel fallback gives the reference's bytes.
            8 => fast::conv2d_pointwise(input, y, scratch, &conv),
            3 => fast::fully_connected(
                input,
                y,
                &FastDense {
                    weights,
                    bias,
                    multiplier,
                    shift,
                    in_features: d[2],
                    out_features: d[5],
                    quant,
                },
            ),
            4 => fast::max_pool2d(input, y, &pool),
            7 => fast::avg_pool2d(input, y, &pool),
            _ => fast::global_average_pool(
                input,
                y,
                &MeanParams {
                    h: d[0],
                    w: d[1],
                    channels: d[2],
                    multiplier: multiplier[0],
                    shift: shift[0],
                    input_offset: quant.input_offset,
                    output_offset: quant.output_offset,
                },
            ),
        }
        hprintln!("TNAS-CASE {} {:08x}", index, crc32(y));
        index += 1;
    }
    hprintln!("TNAS-DONE {}", index);
    debug::exit(debug::EXIT_SUCCESS);
    #[allow(clippy::empty_loop)]
    loop {}
}

#[exception]
unsafe fn HardFault(_frame: &ExceptionFrame) -> ! {
    hprintln!("TNAS-FAULT hard fault");
    debug::exit(debug::EXIT_FAILURE);
    #[allow(clippy::empty_loop)]
    loop {}
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    hprintln!("TNAS-FAULT panic");
    debug::exit(debug::EXIT_FAILURE);
    #[allow(clippy::empty_loop)]
    loop {}
}
