//! Every fast kernel, with every instruction set's inner loops that run on the host (the DSP
//! instructions emulated), against the reference kernel: bit for bit over random shapes, strides,
//! paddings, zero points, multipliers and shifts.

use super::mac::{Dsp, Mac, Mve, Portable, V6m};
use super::*;
use crate::{conv2d as ref_conv2d, Conv, Dense};
use proptest::prelude::*;

/// A random layer: geometry, int8 input and weights, requantisation.
#[derive(Debug, Clone)]
struct Case {
    dims: ConvDims,
    input: Vec<i8>,
    weights: Vec<i8>,
    bias: Vec<i32>,
    multiplier: Vec<i32>,
    shift: Vec<i32>,
    quant: OutputQuant,
}

impl Case {
    fn reference(&self) -> Conv<'_> {
        Conv {
            weights: &self.weights,
            bias: &self.bias,
            multiplier: &self.multiplier,
            shift: &self.shift,
            dims: self.dims,
            quant: self.quant,
        }
    }

    /// `bias + input_offset * sum(w)` per output channel, for rows of `k` weights (conv) or
    /// for weights interleaved by channel (depthwise).
    fn folded(&self, depthwise: bool) -> Vec<i32> {
        let oc = self.bias.len();
        (0..oc)
            .map(|c| {
                let sum: i32 = if depthwise {
                    self.weights
                        .iter()
                        .skip(c)
                        .step_by(oc)
                        .map(|&w| i32::from(w))
                        .sum()
                } else {
                    let k = self.weights.len() / oc;
                    self.weights[c * k..(c + 1) * k]
                        .iter()
                        .map(|&w| i32::from(w))
                        .sum()
                };
                self.bias[c].wrapping_add(self.quant.input_offset.wrapping_mul(sum))
            })
            .collect()
    }

    fn fast<'a>(&'a self, bias: &'a [i32]) -> FastConv<'a> {
        FastConv {
            weights: &self.weights,
            bias,
            multiplier: &self.multiplier,
            shift: &self.shift,
            dims: self.dims,
            quant: self.quant,
            narrow: false,
            acc_bound: u32::MAX,
        }
    }

    /// `sum(|w|)` of channel `c` of `oc` (`depthwise`: the weights `[taps][channels]`, else
    /// `[channels][k]`).
    fn abs_sum(&self, c: usize, oc: usize, depthwise: bool) -> u64 {
        let abs = |w: &i8| u64::from(w.unsigned_abs());
        if depthwise {
            self.weights.iter().skip(c).step_by(oc).map(abs).sum()
        } else {
            let k = self.weights.len() / oc;
            self.weights[c * k..(c + 1) * k].iter().map(abs).sum()
        }
    }

    /// What the generator sets `acc_bound` to: `|bias| + 128 * sum(|w|)` of the widest channel.
    fn bound(&self, bias: &[i32], depthwise: bool) -> u32 {
        let oc = bias.len();
        let widest = (0..oc)
            .map(|c| u64::from(bias[c].unsigned_abs()) + 128 * self.abs_sum(c, oc, depthwise))
            .max()
            .unwrap_or(0);
        u32::try_from(widest).unwrap_or(u32::MAX)
    }

    /// What the generator sets `narrow` to.
    fn narrow(&self, bias: &[i32], depthwise: bool) -> bool {
        let oc = bias.len();
        (0..oc).all(|c| narrow_channel(bias[c], self.shift[c], self.abs_sum(c, oc, depthwise)))
    }

    fn out_len(&self) -> usize {
        self.dims.out_h * self.dims.out_w * self.dims.out_c
    }
}

fn multiplier() -> impl Strategy<Value = i32> {
    prop_oneof![
        9 => (1i32 << 30)..=i32::MAX,
        1 => Just(0),
    ]
}

fn shift() -> impl Strategy<Value = i32> {
    prop_oneof![
        8 => -12i32..=1,
        1 => -31i32..=30,
    ]
}

fn quant() -> impl Strategy<Value = OutputQuant> {
    (-128i32..=127, -128i32..=127, -128i32..=127, 0i32..=255).prop_map(|(zp, out, lo, span)| {
        let hi = (lo + span).min(127);
        OutputQuant {
            input_offset: -zp,
            output_offset: out,
            act_min: lo,
            act_max: hi,
        }
    })
}

/// `k`: kernel sides; `depthwise`: output channels are a multiple of the input's.
fn case(k: std::ops::RangeInclusive<usize>, depthwise: bool) -> impl Strategy<Value = Case> {
    let channels = if depthwise { 1..=21 } else { 1..=11 };
    case_in(1..=9, channels, k, 1..=3, depthwise, false)
}

/// [`case`] with the input sides `hw` and the strides `strides`; `square`: a square kernel and a
/// depth multiplier of 1 (depthwise).
fn case_in(
    hw: std::ops::RangeInclusive<usize>,
    channels: std::ops::RangeInclusive<usize>,
    k: std::ops::RangeInclusive<usize>,
    strides: std::ops::RangeInclusive<usize>,
    depthwise: bool,
    square: bool,
) -> impl Strategy<Value = Case> {
    (
        hw.clone(),
        hw,
        // Depthwise: past 16 channels, the vector kernels' wide step.
        channels,
        1usize..=11,
        k.clone(),
        k,
        strides,
    )
        .prop_flat_map(move |(ih, iw, ic, oc, kh, kw, s)| {
            let kw = if square { kh } else { kw };
            let oc = if square {
                ic
            } else if depthwise {
                ic * (1 + oc % 3)
            } else {
                oc
            };
            let oh = 1..=ih.div_ceil(s) + 1;
            let ow = 1..=iw.div_ceil(s) + 1;
            let nw = if depthwise {
                kh * kw * oc
            } else {
                oc * kh * kw * ic
            };
            (
                Just((ih, iw, ic, oc, kh, kw, s)),
                oh,
                ow,
                0..kh,
                0..kw,
                prop::collection::vec(any::<i8>(), ih * iw * ic),
                prop::collection::vec(any::<i8>(), nw),
                prop::collection::vec(-70000i32..=70000, oc),
                prop::collection::vec(multiplier(), oc),
                prop::collection::vec(shift(), oc),
                quant(),
            )
        })
        .prop_map(
            |((ih, iw, ic, oc, kh, kw, s), oh, ow, pt, pl, input, weights, bias, m, sh, q)| Case {
                dims: ConvDims {
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
                },
                input,
                weights,
                bias,
                multiplier: m,
                shift: sh,
                quant: q,
            },
        )
}

fn check_conv<M: Mac>(c: &Case) -> Result<(), TestCaseError> {
    let mut want = vec![0i8; c.out_len()];
    ref_conv2d(&c.input, &mut want, &c.reference());
    let bias = c.folded(false);
    // Rows zero-padded to a multiple of 4, as the generator stores them.
    let (k, kp) = (c.weights.len() / c.bias.len(), padded_k(&c.dims));
    let padded: Vec<i8> = c
        .weights
        .chunks(k)
        .flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0, kp - k)))
        .collect();
    let narrow = c.narrow(&bias, false);
    for (narrow, skew) in [(false, 0), (narrow, 1), (narrow, 2), (narrow, 3)] {
        let f = FastConv {
            weights: &padded,
            narrow,
            acc_bound: c.bound(&bias, false),
            ..c.fast(&bias)
        };
        // Scratch at every alignment, with its garbage left in.
        let mut scratch = vec![0x55i8; im2col_scratch_bytes(&c.dims) + skew];
        let scratch = &mut scratch[skew..];
        let mut got = vec![0i8; c.out_len()];
        im2col::<M, i8>(&c.input, &mut got, scratch, &f);
        prop_assert_eq!(&got, &want, "im2col, skew {}", skew);
        // What the generator calls for a pointwise layer (any other layer takes its per-pixel
        // fallback, which must give the same bytes).
        let mut got = vec![0i8; c.out_len()];
        pointwise::<M>(&c.input, &mut got, scratch, &f);
        prop_assert_eq!(&got, &want, "pointwise, skew {}", skew);
        // What the generator calls for a 3x3 layer over one channel (the others as above).
        let mut got = vec![0i8; c.out_len()];
        one_channel::<M, i8>(&c.input, &mut got, scratch, &f);
        prop_assert_eq!(&got, &want, "one channel, skew {}", skew);
        // The same layer on raw u8 pixels: x_u8 = x_i8 + 128.
        let raw: Vec<u8> = c.input.iter().map(|&x| (x as u8) ^ 0x80).collect();
        let mut got = vec![0i8; c.out_len()];
        im2col::<M, u8>(&raw, &mut got, scratch, &f);
        prop_assert_eq!(&got, &want, "im2col u8, skew {}", skew);
        let mut got = vec![0i8; c.out_len()];
        one_channel::<M, u8>(&raw, &mut got, scratch, &f);
        prop_assert_eq!(&got, &want, "one channel u8, skew {}", skew);
    }
    Ok(())
}

/// A depthwise kernel of one instruction set: input, output, scratch, parameters.
type DepthwiseFn = fn(&[i8], &mut [i8], &mut [i8], &FastConv<'_>);

/// The fast depthwise kernels of every instruction set against the reference on `c`.
fn depthwise_case(c: &Case) -> Result<(), TestCaseError> {
    let mut want = vec![0i8; c.out_len()];
    crate::depthwise_conv2d(&c.input, &mut want, &c.reference());
    let bias = c.folded(true);
    // Without scratch, with the scratch of both padded-rows paths (DSP, Armv6-M) at each
    // alignment, and with exactly the channel path's ring (portable).
    let rows = dw_groups::full_rows_bytes(&c.dims)
        .unwrap_or(0)
        .max(dw_groups::strip_bytes(&c.dims).unwrap_or(0));
    let ring = dw_channel::scratch_bytes(&c.dims).unwrap_or(0);
    let sizes = [
        (0, None),
        (rows, Some(0)),
        (rows, Some(1)),
        (rows, Some(3)),
        (ring, Some(1)),
    ];
    // What the generator calls for any layer (`general`) and for a layer the group path takes
    // (`grouped`, `depthwise_conv2d_groups`); both run on every case here, as `grouped` must give
    // the reference's bytes on any layer too.
    let general: [DepthwiseFn; 4] = [
        depthwise::<Portable, true>,
        depthwise::<Dsp, true>,
        depthwise::<Mve, true>,
        depthwise::<V6m, true>,
    ];
    let grouped: [DepthwiseFn; 4] = [
        depthwise::<Portable, false>,
        depthwise::<Dsp, false>,
        depthwise::<Mve, false>,
        depthwise::<V6m, false>,
    ];
    // The generator's test is exactly where the group path takes the layer (so no layer it
    // sends to `depthwise_conv2d_groups` needs the register loop that leaves out).
    let f = FastConv {
        acc_bound: c.bound(&bias, true),
        ..c.fast(&bias)
    };
    let mut got = vec![0i8; c.out_len()];
    let pad = pad_value(&f.quant);
    let taken =
        dw_groups::depthwise_groups::<Dsp, false>(&c.input, &mut got, &f, pad, |_, _, _| true);
    prop_assert_eq!(taken, dw_groups::groups_take(&c.dims), "{:?}", c.dims);
    for narrow in [false, c.narrow(&bias, true)] {
        for run in general.into_iter().chain(grouped) {
            for (len, skip) in sizes {
                let mut scratch = vec![0i8; skip.map_or(0, |s| len + s)];
                let scratch = &mut scratch[skip.unwrap_or(0).min(len)..];
                let mut got = vec![0i8; c.out_len()];
                let acc_bound = c.bound(&bias, true);
                let f = FastConv {
                    narrow,
                    acc_bound,
                    ..c.fast(&bias)
                };
                run(&c.input, &mut got, scratch, &f);
                prop_assert_eq!(&got, &want, "narrow {} scratch {} {:?}", narrow, len, skip);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn conv2d_equals_the_reference(c in case(1..=5, false)) {
        check_conv::<Portable>(&c)?;
        check_conv::<Dsp>(&c)?;
        check_conv::<V6m>(&c)?;
        check_conv::<Mve>(&c)?;
    }

    /// A pointwise layer (1x1, stride 1, no padding; as wide as its input, at most as high), the
    /// channels whole words in most cases: the DSP path's loop of its own, and around it the
    /// pixels of the last block of four (outputs not a multiple of four).
    #[test]
    fn pointwise_conv2d_equals_the_reference(
        c in case_in(1..=9, 1..=16, 1..=1, 1..=1, false, false)
            .prop_filter("channels of whole words, mostly", |c| c.dims.in_c % 4 == 0 || c.dims.in_c == 7)
            .prop_map(|mut c| {
                c.dims.out_w = c.dims.in_w;
                c.dims.out_h = c.dims.out_h.min(c.dims.in_h);
                c
            }),
    ) {
        check_conv::<Portable>(&c)?;
        check_conv::<Dsp>(&c)?;
        check_conv::<V6m>(&c)?;
        check_conv::<Mve>(&c)?;
    }

    /// A 3x3 window over one input channel (a grayscale image's first layer): its own copy of
    /// the convolution, with those sides as constants (inputs up to 14x14 so that most windows
    /// are inside).
    #[test]
    fn one_channel_3x3_conv2d_equals_the_reference(c in case_in(1..=14, 1..=1, 3..=3, 1..=3, false, false)) {
        prop_assert_eq!((c.dims.k_h, c.dims.k_w, c.dims.in_c), (3, 3, 1));
        check_conv::<Portable>(&c)?;
        check_conv::<Dsp>(&c)?;
        check_conv::<V6m>(&c)?;
        check_conv::<Mve>(&c)?;
    }

    /// The vector requantisation's lane (MVE: VQRDMULH, the sign fix-up, VRSHL), instruction by
    /// instruction, against the reference, on any accumulator.
    #[test]
    fn vector_requantisation_equals_the_reference(
        acc in prop_oneof![any::<i32>(), Just(i32::MIN), Just(i32::MAX), -4096i32..=4096],
        m in multiplier(),
        s in -31i32..=31,
        q in quant(),
    ) {
        let want = crate::fixed::multiply_by_quantized_multiplier(acc, m, s)
            .wrapping_add(q.output_offset)
            .max(q.act_min)
            .min(q.act_max)
            .clamp(-128, 127) as i8;
        let k = mac::Clamp::new(&q);
        prop_assert_eq!(crate::isa_mve::requant_lane(acc, m, s, &k), want);
    }

    #[test]
    fn depthwise_equals_the_reference(c in case(1..=5, true)) {
        depthwise_case(&c)?;
    }

    /// The portable channel path's layers (`dw_channel`: 3x3 and 5x5, strides 1 and 2, outputs of
    /// at least 32 pixels) through every instruction set's kernels.
    #[test]
    fn depthwise_channels_equal_the_reference(c in case_in(6..=14, 1..=21, 3..=5, 1..=2, true, true)) {
        depthwise_case(&c)?;
    }
}

proptest! {
    #[test]
    fn dense_equals_the_reference(
        (input, weights, bias, m, s, q) in (1usize..=300, 1usize..=13).prop_flat_map(|(n, o)| (
            prop::collection::vec(any::<i8>(), n),
            prop::collection::vec(any::<i8>(), n * o),
            prop::collection::vec(-70000i32..=70000, o),
            prop::collection::vec(multiplier(), o),
            prop::collection::vec(shift(), o),
            quant(),
        ))
    ) {
        let (n, o) = (input.len(), bias.len());
        let r = Dense { weights: &weights, bias: &bias, multiplier: &m, shift: &s,
                        in_features: n, out_features: o, quant: q };
        let mut want = vec![0i8; o];
        crate::fully_connected(&input, &mut want, &r);
        let folded: Vec<i32> = (0..o).map(|c| {
            let sum: i32 = weights[c * n..(c + 1) * n].iter().map(|&w| i32::from(w)).sum();
            bias[c].wrapping_add(q.input_offset.wrapping_mul(sum))
        }).collect();
        let f = FastDense { weights: &weights, bias: &folded, multiplier: &m, shift: &s,
            in_features: n, out_features: o, quant: q };
        for run in [dense::<Portable>, dense::<Dsp>, dense::<Mve>] {
            let mut got = vec![0i8; o];
            run(&input, &mut got, &f);
            prop_assert_eq!(&got, &want);
        }
    }

    #[test]
    fn pools_equal_the_reference(c in case(1..=4, false)) {
        let d = PoolDims {
            in_h: c.dims.in_h, in_w: c.dims.in_w, channels: c.dims.in_c,
            out_h: c.dims.out_h, out_w: c.dims.out_w, k_h: c.dims.k_h, k_w: c.dims.k_w,
            stride: c.dims.stride, pad_top: c.dims.pad_top, pad_left: c.dims.pad_left,
        };
        let n = d.out_h * d.out_w * d.channels;
        let mut want = vec![0i8; n];
        crate::max_pool2d(&c.input, &mut want, &d);
        for run in [max_pool::<Portable>, max_pool::<Dsp>, max_pool::<Mve>, max_pool::<V6m>] {
            let mut got = vec![0i8; n];
            run(&c.input, &mut got, &d);
            prop_assert_eq!(&got, &want);
        }
        crate::avg_pool2d(&c.input, &mut want, &d);
        let mut got = vec![0i8; n];
        avg_pool2d(&c.input, &mut got, &d);
        prop_assert_eq!(&got, &want, "average");
        let mp = MeanParams {
            h: d.in_h, w: d.in_w, channels: d.channels,
            multiplier: c.multiplier[0], shift: c.shift[0],
            input_offset: c.quant.input_offset, output_offset: c.quant.output_offset,
        };
        let mut want = vec![0i8; d.channels];
        crate::global_average_pool(&c.input, &mut want, &mp);
        let mut got = vec![0i8; d.channels];
        global_average_pool(&c.input, &mut got, &mp);
        prop_assert_eq!(&got, &want);
    }

    #[test]
    fn average_pools_equal_the_reference(
        (ih, iw, c, kh, kw, s, pt, pl, oh, ow, input) in (
            1usize..=7, 1usize..=7, 1usize..=70, 1usize..=4, 1usize..=4, 1usize..=3,
            0usize..=4, 0usize..=4,
        ).prop_flat_map(|(ih, iw, c, kh, kw, s, pt, pl)| (
            Just(ih), Just(iw), Just(c), Just(kh), Just(kw), Just(s), Just(pt), Just(pl),
            1..=(ih + 2 * pt) / s + 1, 1..=(iw + 2 * pl) / s + 1,
            prop::collection::vec(any::<i8>(), ih * iw * c),
        )),
    ) {
        // Up to 70 channels (a channel's taps are strided by the channel count), windows cut by
        // the padding on every side, and windows wholly in the padding (no taps: 0, as in the
        // reference).
        let d = PoolDims {
            in_h: ih, in_w: iw, channels: c, out_h: oh, out_w: ow, k_h: kh, k_w: kw,
            stride: s, pad_top: pt, pad_left: pl,
        };
        let mut want = vec![0i8; oh * ow * c];
        crate::avg_pool2d(&input, &mut want, &d);
        let mut got = vec![0i8; oh * ow * c];
        avg_pool2d(&input, &mut got, &d);
        prop_assert_eq!(&got, &want);
    }

    #[test]
    fn max_pool_2x2_rows_equal_the_reference(
        (ih, iw, c, oh, ow, input) in (1usize..=9, 1usize..=9, 1usize..=11).prop_flat_map(
            |(ih, iw, c)| (
                Just(ih), Just(iw), Just(c),
                1..=ih.div_ceil(2) + 1, 1..=iw.div_ceil(2) + 1,
                prop::collection::vec(any::<i8>(), ih * iw * c),
            ),
        ),
    ) {
        // The row-by-row path of the 2x2 stride-2 pool without padding, and the pixels around it
        // (odd sizes, and outputs past the input's half) by the general one.
        let d = PoolDims {
            in_h: ih, in_w: iw, channels: c, out_h: oh, out_w: ow, k_h: 2, k_w: 2,
            stride: 2, pad_top: 0, pad_left: 0,
        };
        let mut want = vec![0i8; oh * ow * c];
        crate::max_pool2d(&input, &mut want, &d);
        for run in [max_pool::<Portable>, max_pool::<Dsp>, max_pool::<Mve>, max_pool::<V6m>] {
            let mut got = vec![0i8; oh * ow * c];
            run(&input, &mut got, &d);
            prop_assert_eq!(&got, &want);
        }
    }

    #[test]
    fn requantize_equals_the_reference(
        acc in prop_oneof![any::<i32>(), -(1i32 << 30) + 1..(1i32 << 30)],
        m in multiplier(),
        s in -31i32..=30,
    ) {
        let q = OutputQuant { input_offset: 0, output_offset: 0, act_min: -128, act_max: 127 };
        let want = (crate::fixed::multiply_by_quantized_multiplier(acc, m, s)).clamp(-128, 127);
        prop_assert_eq!(i32::from(requantize(acc, m, s, &q)), want);
        // The short form, wherever its bound holds.
        if narrow_channel(acc, s, 0) {
            let rq = Requant::new::<true>(m, s);
            prop_assert_eq!(i32::from(rq.apply::<Portable, true>(acc, &q)), want);
            prop_assert_eq!(i32::from(rq.apply::<Dsp, true>(acc, &q)), want);
            prop_assert_eq!(i32::from(rq.apply::<V6m, true>(acc, &q)), want);
        }
    }
}

// Armv6-M's high multiply from 16-bit pieces equals the 64-bit one, for any operands.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// Armv6-M's three-multiply requantisation (`isa_v6m::Requant3`) equals the reference plus
    /// the offset wherever `conv_cols_takes` lets it run: `|acc| < 2^20` and narrow, shifts in
    /// `-13..=8`, int8 offsets; also at the edges of that range.
    #[test]
    fn v6m_three_multiply_requantisation(
        acc in prop_oneof![
            -(1i32 << 20) + 1..(1i32 << 20),
            -3000i32..3000,
            prop_oneof![Just(-(1i32 << 20) + 1), Just((1i32 << 20) - 1), Just(-1), Just(0)],
        ],
        m in prop_oneof![multiplier(), Just(0), Just(1 << 30), Just(i32::MAX)],
        s in -13i32..=8,
        offset in -128i32..=128,
    ) {
        prop_assume!(narrow_channel(acc, s, 0));
        let want = crate::fixed::multiply_by_quantized_multiplier(acc, m, s).wrapping_add(offset);
        let got = crate::isa_v6m::Requant3::new(m, s, offset).apply(acc);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn v6m_high_multiply(a in any::<i32>(), b in any::<i32>()) {
        prop_assert_eq!(V6m::mul_high_round(a, b), Portable::mul_high_round(a, b));
    }
}

/// The emulated DSP instructions, against their definitions in the Arm ARM on hand-picked values.
#[test]
fn emulated_dsp_instructions() {
    use crate::isa_dsp::*;
    assert_eq!(sxtb16(0x80_7F_01_FF), 0x007F_FFFF);
    assert_eq!(sxtb16_ror8(0x80_7F_01_FF), 0xFF80_0001);
    // (-1 * 3) + (2 * -4) + 10
    assert_eq!(smlad(0x0002_FFFF, 0xFFFC_0003, 10), -1);
    assert_eq!(smlabb(0x0002_FFFF, 0xFFFC_0003, 10), 7);
    assert_eq!(smlatt(0x0002_FFFF, 0xFFFC_0003, 10), 2);
    assert_eq!(
        smlad(0x8000_8000, 0x8000_8000, i32::MAX),
        i32::MAX.wrapping_add(1 << 31)
    );
    assert_eq!(max8x4(0x80_7F_01_FF, 0x7F_80_FF_01), 0x7F_7F_01_01);
}

/// Inconsistent parameters: dims (zeros included) that do not match the slices, which are of
/// random lengths. The kernels must not panic (the tests run with overflow checks on); the
/// values they write are then meaningless.
fn total<M: Mac>(d: ConvDims, s: &[Vec<i8>; 3], n: (usize, usize), q: OutputQuant, narrow: bool) {
    let (input, weights, mut out) = (s[0].clone(), s[1].clone(), s[2].clone());
    let ints: Vec<i32> = (0..n.0 as i32).map(|i| i * 7 - 20).collect();
    let shifts: Vec<i32> = (0..n.0 as i32).map(|i| i % 5 - 3).collect();
    let mut scratch = vec![0i8; n.1];
    let f = FastConv {
        weights: &weights,
        bias: &ints,
        multiplier: &ints,
        shift: &shifts,
        dims: d,
        quant: q,
        narrow,
        // A bound that lies (every layer takes the Armv6-M column loop): still no panic.
        acc_bound: if narrow { 0 } else { u32::MAX },
    };
    im2col::<M, i8>(&input, &mut out, &mut scratch, &f);
    // The pointwise entry on any layer, and on the same slices with pointwise sides (its loop).
    pointwise::<M>(&input, &mut out, &mut scratch, &f);
    let pw = ConvDims {
        in_c: d.in_c / 4 * 4,
        out_w: d.in_w,
        // More than one block of channels: what the DSP's channel loop takes.
        out_c: d.out_c + 9,
        k_h: 1,
        k_w: 1,
        stride: 1,
        pad_top: 0,
        pad_left: 0,
        ..d
    };
    pointwise::<M>(&input, &mut out, &mut scratch, &FastConv { dims: pw, ..f });
    let raw: Vec<u8> = input.iter().map(|&x| x as u8).collect();
    im2col::<M, u8>(&raw, &mut out, &mut scratch, &f);
    depthwise::<M, true>(&input, &mut out, &mut [], &f);
    depthwise::<M, true>(&input, &mut out, &mut scratch, &f);
    // What the generator calls for layers the group path takes, here on any layer.
    depthwise::<M, false>(&input, &mut out, &mut [], &f);
    depthwise::<M, false>(&input, &mut out, &mut scratch, &f);
    let dense_p = FastDense {
        weights: &weights,
        bias: &ints,
        multiplier: &ints,
        shift: &shifts,
        in_features: d.in_c,
        out_features: d.out_c,
        quant: q,
    };
    dense::<M>(&input, &mut out, &dense_p);
    let p = PoolDims {
        in_h: d.in_h,
        in_w: d.in_w,
        channels: d.in_c,
        out_h: d.out_h,
        out_w: d.out_w,
        k_h: d.k_h,
        k_w: d.k_w,
        stride: d.stride,
        pad_top: d.pad_top,
        pad_left: d.pad_left,
    };
    max_pool::<M>(&input, &mut out, &p);
    let m = MeanParams {
        h: d.in_h,
        w: d.in_w,
        channels: d.in_c,
        multiplier: 1 << 30,
        shift: -1,
        input_offset: q.input_offset,
        output_offset: q.output_offset,
    };
    global_average_pool(&input, &mut out, &m);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn kernels_never_panic_on_inconsistent_parameters(
        dims in prop::collection::vec(0usize..6, 11),
        lens in prop::collection::vec(0usize..200, 3),
        channels in 0usize..12,
        scratch in 0usize..800,
        q in quant(),
        narrow in any::<bool>(),
        bytes in prop::collection::vec(any::<i8>(), 200),
    ) {
        let d = ConvDims {
            in_h: dims[0], in_w: dims[1], in_c: dims[2], out_h: dims[3], out_w: dims[4],
            out_c: dims[5], k_h: dims[6], k_w: dims[7], stride: dims[8] % 4,
            pad_top: dims[9], pad_left: dims[10],
        };
        let s = [bytes[..lens[0]].to_vec(), bytes[..lens[1]].to_vec(), bytes[..lens[2]].to_vec()];
        total::<Portable>(d, &s, (channels, scratch), q, narrow);
        total::<Dsp>(d, &s, (channels, scratch), q, narrow);
        total::<Mve>(d, &s, (channels, scratch), q, narrow);
        total::<V6m>(d, &s, (channels, scratch), q, narrow);
    }
}

/// Which pointwise layers the generator gives [`conv2d_pointwise`]: four pixels or more where
/// the DSP's channel loop takes them, and a layer of fewer pixels only up to
/// [`POINTWISE_SCALAR_MACS`] (person_detect's last layer: 512 MACs); MobileNet's 1x1 head, 1,024
/// to 1,001 channels on one pixel, keeps `conv2d` (the per-pixel fallback would run it at about
/// 7 instructions a MAC).
#[test]
fn pointwise_entry_takes_small_heads_only() {
    let layer = |pixels: (usize, usize), in_c: usize, out_c: usize| ConvDims {
        in_h: pixels.0,
        in_w: pixels.1,
        in_c,
        out_h: pixels.0,
        out_w: pixels.1,
        out_c,
        k_h: 1,
        k_w: 1,
        stride: 1,
        pad_top: 0,
        pad_left: 0,
    };
    let (zeros, shifts) = (vec![0i32; 1001], vec![-1i32; 1001]);
    let quant = OutputQuant {
        input_offset: 128,
        output_offset: -128,
        act_min: -128,
        act_max: 127,
    };
    let takes = |dims: ConvDims, narrow: bool| {
        pointwise_takes(&FastConv {
            weights: &[],
            bias: &zeros[..dims.out_c],
            multiplier: &zeros[..dims.out_c],
            shift: &shifts[..dims.out_c],
            dims,
            quant,
            narrow,
            acc_bound: 0,
        })
    };
    // person_detect's last layer (1x1, 256 to 2) and the largest single-pixel layer taken.
    assert!(takes(layer((1, 1), 256, 2), true));
    assert!(takes(layer((1, 1), 64, 64), true));
    assert_eq!(64 * 64, POINTWISE_SCALAR_MACS);
    // One MAC more, and MobileNet's head: `conv2d`.
    assert!(!takes(layer((1, 1), 64, 65), true));
    assert!(!takes(layer((1, 1), 1024, 1001), true));
    // Four pixels or more: the channel loop's own test (more than one block of channels).
    assert!(takes(layer((2, 2), 1024, 1001), true));
    assert!(!takes(layer((4, 4), 64, OC_BLOCK), true));
    assert!(takes(layer((4, 4), 64, OC_BLOCK + 1), true));
    // Never a wide layer, nor one whose channels are not whole words.
    assert!(!takes(layer((1, 1), 256, 2), false));
    assert!(!takes(layer((4, 4), 63, 16), true));
}
