//! Every op of the runtime against tract, over random shapes, kernels, strides, paddings, zero
//! points, scales (so multipliers and shifts) and activations. Bit for bit, except softmax, which
//! tract computes in f32: at most 1 LSB (see src/lib.rs).

use proptest::prelude::*;
use tinynas_model::*;
use tinynas_oracle_tests::*;

fn check(model: &Model, seed: u64) -> Result<(), TestCaseError> {
    let raw = random_input(model, seed);
    let host = host_run(model, input_of(model, &raw));
    let tract = tract_run(model, input_of(model, &raw))
        .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
    let d = max_diff(&host, &tract);
    let allowed = if ends_in_softmax(model) { 1 } else { 0 };
    prop_assert!(
        d <= allowed,
        "runtime and tract differ by {} LSB\nhost  {:?}\ntract {:?}\nmodel {:#?}",
        d,
        host,
        tract,
        model.nodes.last()
    );
    Ok(())
}

fn qparams() -> impl Strategy<Value = QParams> {
    (0.002f32..0.5, -128i32..=127).prop_map(|(scale, zero_point)| QParams { scale, zero_point })
}

fn input() -> impl Strategy<Value = (InputType, Shape, QParams)> {
    (
        any::<bool>(),
        1usize..=9,
        1usize..=9,
        1usize..=6,
        0.002f32..1.0,
        -128i32..=127,
    )
        .prop_map(|(u8in, h, w, c, scale, zp)| {
            if u8in {
                (
                    InputType::U8,
                    Shape::new(h, w, c),
                    QParams {
                        scale,
                        zero_point: zp + 128,
                    },
                )
            } else {
                (
                    InputType::I8,
                    Shape::new(h, w, c),
                    QParams {
                        scale,
                        zero_point: zp,
                    },
                )
            }
        })
}

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::None),
        Just(Activation::Relu),
        Just(Activation::Relu6)
    ]
}

fn padding() -> impl Strategy<Value = Padding> {
    prop_oneof![Just(Padding::Same), Just(Padding::Valid)]
}

/// Output scale that keeps outputs mostly in range, times a random factor so that some saturate.
fn out_scale(in_scale: f32, w_scale: f32, fan_in: usize, factor: f32) -> f32 {
    in_scale * w_scale * 64.0 * 73.0 * (fan_in as f32).sqrt() / 40.0 * factor
}

fn builder(i: &(InputType, Shape, QParams)) -> ModelBuilder {
    ModelBuilder::new(i.0, i.1, i.2).unwrap()
}

#[derive(Debug, Clone)]
struct ConvCase {
    input: (InputType, Shape, QParams),
    out_c: usize,
    kernel: [usize; 2],
    stride: usize,
    padding: Padding,
    act: Activation,
    weights: Vec<i8>,
    scales: Vec<f32>,
    bias: Vec<i32>,
    zp: i32,
    factor: f32,
    seed: u64,
}

fn conv_case(depthwise: bool) -> impl Strategy<Value = ConvCase> {
    (
        input(),
        1usize..=6,
        // Even sides too (MLPerf Tiny's DS-CNN: 10x4).
        prop_oneof![Just(1usize), Just(2), Just(3), Just(4), Just(5), Just(7)],
        prop_oneof![Just(1usize), Just(2), Just(3), Just(5)],
        1usize..=2,
        padding(),
        activation(),
        -128i32..=127,
        0.2f32..3.0,
        any::<u64>(),
    )
        .prop_flat_map(
            move |(input, n, kh, kw, stride, padding, act, zp, factor, seed)| {
                let ic = input.1.c;
                let out_c = if depthwise { ic * n.min(3) } else { n };
                let nw = if depthwise {
                    kh * kw * out_c
                } else {
                    out_c * kh * kw * ic
                };
                (
                    Just((
                        input,
                        out_c,
                        [kh, kw],
                        stride,
                        padding,
                        act,
                        zp,
                        factor,
                        seed,
                    )),
                    prop::collection::vec(any::<i8>(), nw),
                    prop::collection::vec(0.001f32..0.1, out_c),
                    prop::collection::vec(-5000i32..5000, out_c),
                )
            },
        )
        .prop_map(
            |(
                (input, out_c, kernel, stride, padding, act, zp, factor, seed),
                weights,
                scales,
                bias,
            )| ConvCase {
                input,
                out_c,
                kernel,
                stride,
                padding,
                act,
                weights,
                scales,
                bias,
                zp,
                factor,
                seed,
            },
        )
}

fn run_conv(c: ConvCase, depthwise: bool) -> Result<(), TestCaseError> {
    let mut b = builder(&c.input);
    let xq = b.quant(0).unwrap();
    let fan = c.kernel[0] * c.kernel[1] * if depthwise { 1 } else { c.input.1.c };
    let mean_w = c.scales.iter().sum::<f32>() / c.scales.len() as f32;
    let q = QParams {
        scale: out_scale(xq.scale, mean_w, fan, c.factor),
        zero_point: c.zp,
    };
    let conv = ConvParams {
        kernel: c.kernel,
        stride: c.stride,
        padding: c.padding,
        activation: c.act,
        weights: c.weights,
        weight_scales: c.scales,
        bias: c.bias,
    };
    let op = if depthwise {
        Op::DepthwiseConv2d {
            multiplier: c.out_c / c.input.1.c,
            conv,
        }
    } else {
        Op::Conv2d {
            out_channels: c.out_c,
            conv,
        }
    };
    match b.add("op", op, &[0], q) {
        Ok(_) => check(&b.finish().unwrap(), c.seed),
        // A kernel larger than the input with valid padding: rejected by the IR, nothing to run.
        Err(e) if e.to_string().contains("larger than") => Ok(()),
        Err(e) => Err(TestCaseError::fail(e.to_string())),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn conv2d(c in conv_case(false)) {
        run_conv(c, false)?;
    }

    #[test]
    fn depthwise_conv2d(c in conv_case(true)) {
        run_conv(c, true)?;
    }

    #[test]
    fn pools(i in input(), kh in 1usize..=4, kw in 1usize..=4, stride in 1usize..=3, padding in padding(), max in any::<bool>(), seed in any::<u64>()) {
        let mut b = builder(&i);
        let q = b.quant(0).unwrap();
        let p = PoolParams { size: [kh, kw], stride, padding };
        let op = if max { Op::MaxPool2d(p) } else { Op::AvgPool2d(p) };
        if b.add("pool", op, &[0], q).is_ok() {
            check(&b.finish().unwrap(), seed)?;
        }
    }

    #[test]
    fn global_average_pool(i in input(), out in qparams(), seed in any::<u64>()) {
        let mut b = builder(&i);
        b.add("gap", Op::GlobalAveragePool, &[0], out).unwrap();
        check(&b.finish().unwrap(), seed)?;
    }

    #[test]
    fn fully_connected(i in input(), n in 1usize..=12, act in activation(), zp in -128i32..=127, factor in 0.2f32..3.0, seed in any::<u64>(), wseed in any::<u64>()) {
        use tinynas_model::random::{Source, SplitMix};
        let mut r = SplitMix(wseed);
        let fan = i.1.elements();
        let weights = (0..n * fan).map(|_| r.next_u64() as i8).collect();
        let scales: Vec<f32> = (0..n).map(|_| r.real(0.001, 0.1) as f32).collect();
        let bias = (0..n).map(|_| r.int(-5000, 5000) as i32).collect();
        let mut b = builder(&i);
        let xq = b.quant(0).unwrap();
        let q = QParams { scale: out_scale(xq.scale, scales[0], fan, factor), zero_point: zp };
        b.add("fc", Op::FullyConnected { out_features: n, activation: act, weights, weight_scales: scales, bias }, &[0], q).unwrap();
        check(&b.finish().unwrap(), seed)?;
    }

    #[test]
    fn add(i in input(), side in qparams(), out in qparams(), act in activation(), w in any::<i8>(), seed in any::<u64>()) {
        // The second operand comes from a 1x1 depthwise conv, so the two inputs have their own
        // quantisations.
        let mut b = builder(&i);
        let c = i.1.c;
        let conv = ConvParams { kernel: [1, 1], stride: 1, padding: Padding::Same, activation: Activation::None, weights: vec![w; c], weight_scales: vec![0.02; c], bias: vec![0; c] };
        let y = b.add("side", Op::DepthwiseConv2d { multiplier: 1, conv }, &[0], side).unwrap();
        b.add("add", Op::Add { activation: act }, &[0, y], out).unwrap();
        check(&b.finish().unwrap(), seed)?;
    }

    #[test]
    fn softmax(i in input(), beta in 0.1f32..4.0, seed in any::<u64>()) {
        let mut b = builder(&i);
        let q = QParams { scale: 1.0 / 256.0, zero_point: -128 };
        if b.add("softmax", Op::Softmax { beta }, &[0], q).is_ok() {
            check(&b.finish().unwrap(), seed)?;
        }
    }

    #[test]
    fn reshape_then_dense(i in input(), seed in any::<u64>()) {
        let mut b = builder(&i);
        let s = i.1;
        let q = b.quant(0).unwrap();
        let t = b.add("flatten", Op::Reshape { shape: Shape::new(1, 1, s.elements()) }, &[0], q).unwrap();
        let n = s.elements();
        let fc = Op::FullyConnected { out_features: 3, activation: Activation::None, weights: (0..3 * n).map(|v| (v % 255) as i8).collect(), weight_scales: vec![0.01; 3], bias: vec![7, -7, 0] };
        b.add("fc", fc, &[t], QParams { scale: out_scale(q.scale, 0.01, n, 1.0), zero_point: 0 }).unwrap();
        check(&b.finish().unwrap(), seed)?;
    }
}
