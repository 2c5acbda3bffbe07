//! The layers' tests: finite-difference gradient checks and the int8 export's rounding.

use super::norm::{channel_sums, TILE_ROWS};
use super::*;

fn random(n: usize, h: usize, w: usize, c: usize, seed: u64, away_from_zero: bool) -> Tensor {
    let mut r = SplitMix(seed);
    let data = (0..n * h * w * c)
        .map(|_| {
            let v = r.real(-1.0, 1.0) as f32;
            if away_from_zero {
                v.signum() * (0.1 + v.abs())
            } else {
                v
            }
        })
        .collect();
    Tensor::from(n, h, w, c, data)
}

/// Central finite differences of `sum(dy * layer(x))` against the analytic gradients of the
/// input and of every parameter.
fn check(layer: &mut dyn Layer, x: &Tensor, seed: u64) {
    let y = layer.forward(x, true);
    let dy = random(y.n, y.h, y.w, y.c, seed, false);
    for p in layer.params() {
        p.grad.iter_mut().for_each(|g| *g = 0.0);
    }
    let dx = layer.backward(&dy);
    let objective = |layer: &mut dyn Layer, x: &Tensor| -> f64 {
        let y = layer.forward(x, true);
        y.data
            .iter()
            .zip(&dy.data)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum()
    };
    let eps = 1e-2f32;
    let close = |a: f32, n: f64, what: &str| {
        let tol = 2e-2 * (1.0 + n.abs());
        assert!(
            (f64::from(a) - n).abs() <= tol,
            "{what}: analytic {a}, numeric {n}"
        );
    };
    let mut xp = x.clone();
    for i in (0..x.data.len()).step_by(1 + x.data.len() / 40) {
        let v = xp.data[i];
        xp.data[i] = v + eps;
        let up = objective(layer, &xp);
        xp.data[i] = v - eps;
        let down = objective(layer, &xp);
        xp.data[i] = v;
        close(
            dx.data[i],
            (up - down) / f64::from(2.0 * eps),
            &format!("dx[{i}]"),
        );
    }
    let grads: Vec<Vec<f32>> = layer.params().iter().map(|p| p.grad.clone()).collect();
    for (pi, g) in grads.iter().enumerate() {
        for i in (0..g.len()).step_by(1 + g.len() / 25) {
            let v = layer.params()[pi].value[i];
            layer.params()[pi].value[i] = v + eps;
            let up = objective(layer, x);
            layer.params()[pi].value[i] = v - eps;
            let down = objective(layer, x);
            layer.params()[pi].value[i] = v;
            close(
                g[i],
                (up - down) / f64::from(2.0 * eps),
                &format!("param {pi}[{i}]"),
            );
        }
    }
}

#[test]
fn gradients_conv2d() {
    for (k, stride, padding) in [
        ([3, 3], 1, Padding::Same),
        ([3, 1], 2, Padding::Valid),
        ([5, 5], 2, Padding::Same),
        ([1, 1], 1, Padding::Valid),
    ] {
        let mut l = Conv2d::new(3, 4, k, stride, padding, 1);
        l.bias.value = vec![0.1, -0.2, 0.3, 0.0];
        check(&mut l, &random(2, 7, 6, 3, 2, false), 3);
    }
}

/// Batches of several parallel tasks (9 samples = 3 tasks of 4, the last one short).
#[test]
fn gradients_across_parallel_tasks() {
    let mut l = Conv2d::new(2, 3, [3, 3], 1, Padding::Same, 31);
    check(&mut l, &random(9, 4, 5, 2, 32, false), 33);
    let mut bn = BatchNorm::new(2);
    bn.gamma.value = vec![0.7, -1.2];
    check(&mut bn, &random(9, 3, 2, 2, 34, false), 35);
    check(
        &mut Pool::new(true, [2, 2], 2, Padding::Valid),
        &random(9, 4, 4, 2, 36, false),
        37,
    );
}

/// The 2x2 max-pool fast path picks the same winners as the general path, ties included
/// (the first maximum in row-major order).
#[test]
fn max_pool_fast_path_matches_general_path_on_ties() {
    let mut r = SplitMix(40);
    // Values from a small set, so that windows often tie.
    let data: Vec<f32> = (0..2 * 6 * 6 * 3).map(|_| r.int(0, 2) as f32).collect();
    let x = Tensor::from(2, 6, 6, 3, data);
    let mut fast = Pool::new(true, [2, 2], 2, Padding::Valid);
    let y_fast = fast.forward(&x, true);
    // Against a direct computation of the first maximum in row-major order.
    for b in 0..2 {
        for oy in 0..3 {
            for ox in 0..3 {
                for ch in 0..3 {
                    let at = |iy: usize, ix: usize| ((b * 6 + iy) * 6 + ix) * 3 + ch;
                    let taps = [
                        at(2 * oy, 2 * ox),
                        at(2 * oy, 2 * ox + 1),
                        at(2 * oy + 1, 2 * ox),
                        at(2 * oy + 1, 2 * ox + 1),
                    ];
                    let mut win = taps[0];
                    for &t in &taps[1..] {
                        if x.data[t] > x.data[win] {
                            win = t;
                        }
                    }
                    let o = ((b * 3 + oy) * 3 + ox) * 3 + ch;
                    assert_eq!(y_fast.data[o], x.data[win]);
                    assert_eq!(
                        fast.winners[o] as usize,
                        win - b * 6 * 6 * 3,
                        "winner of output {o}"
                    );
                }
            }
        }
    }
}

/// The tiled per-channel sums (f32 inside blocks of tiles, f64 across) against plain f64 sums,
/// over several blocks and a partial last tile.
#[test]
fn channel_sums_match_f64_sums() {
    let c = 5;
    let rows = 16 * TILE_ROWS * 2 + 37;
    let a = random(1, rows, 1, c, 50, false).data.clone();
    let b = random(1, rows, 1, c, 51, false).data.clone();
    let (sa, sab) = channel_sums(&a, &b, c);
    for j in 0..c {
        let (mut wa, mut wab) = (0.0f64, 0.0f64);
        for r in 0..rows {
            wa += f64::from(a[r * c + j]);
            wab += f64::from(a[r * c + j]) * f64::from(b[r * c + j]);
        }
        assert!((sa[j] - wa).abs() < 1e-3, "channel {j}: {} vs {wa}", sa[j]);
        assert!(
            (sab[j] - wab).abs() < 1e-3,
            "channel {j}: {} vs {wab}",
            sab[j]
        );
    }
}

#[test]
fn fake_quant_rounds_to_the_grid_and_passes_gradients_straight_through() {
    let mut fq = FakeQuant::new(-1.0, 3.0);
    assert!((fq.scale - 4.0 / 255.0).abs() < 1e-7);
    let x = Tensor::from(1, 1, 1, 5, vec![-2.0, -0.5, 0.013, 1.0, 5.0]);
    let y = fq.forward(&x, true);
    for (&v, &q) in x.data.iter().zip(&y.data) {
        let steps = q / fq.scale;
        assert!((steps - steps.round()).abs() < 1e-3, "{q} is on the grid");
        let code = steps.round() as i32 + fq.zero_point;
        assert!((-128..=127).contains(&code));
        if (-1.0..=3.0).contains(&v) {
            assert!((q - v).abs() <= fq.scale / 2.0 + 1e-6, "{v} -> {q}");
        }
    }
    assert!((y.data[0] - fq.range.0).abs() < fq.scale, "clamped below");
    assert!((y.data[4] - fq.range.1).abs() < fq.scale, "clamped above");
    let dx = fq.backward(&Tensor::from(1, 1, 1, 5, vec![1.0; 5]));
    assert_eq!(dx.data, vec![0.0, 1.0, 1.0, 1.0, 0.0]);
}

/// Under QAT a convolution computes with the int8 weights and int32 bias the export writes.
#[test]
fn qat_convolution_uses_the_exported_integers() {
    let mut l = Conv2d::new(2, 3, [3, 3], 1, Padding::Same, 41);
    l.bias.value = vec![0.05, -0.1, 0.2];
    let x = random(2, 4, 4, 2, 42, false);
    let float = l.forward(&x, true);
    l.qat_input_scale = Some(0.01);
    let qat = l.forward(&x, true);
    let (q, scales) = quantize_weights(&l.weight.value, 3);
    let bias = quantize_bias(&l.bias.value, 0.01, &scales);
    let mut reference = Conv2d::new(2, 3, [3, 3], 1, Padding::Same, 41);
    reference.weight.value = q
        .iter()
        .enumerate()
        .map(|(i, &v)| f32::from(v) * scales[i / 18])
        .collect();
    reference.bias.value = bias
        .iter()
        .zip(&scales)
        .map(|(&b, s)| b as f32 * 0.01 * s)
        .collect();
    let want = reference.forward(&x, true);
    for (a, b) in qat.data.iter().zip(&want.data) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    assert!(
        qat.data.iter().zip(&float.data).any(|(a, b)| a != b),
        "quantisation changes something"
    );
    // The straight-through gradient still reaches the float weights.
    check_weights_get_gradients(&mut l, &x);
}

fn check_weights_get_gradients(l: &mut Conv2d, x: &Tensor) {
    let y = l.forward(x, true);
    l.weight.grad.iter_mut().for_each(|g| *g = 0.0);
    l.backward(&y);
    assert!(l.weight.grad.iter().any(|&g| g != 0.0));
}

#[test]
fn gradients_depthwise() {
    for (m, k, stride, padding) in [
        (1, [3, 3], 1, Padding::Same),
        (2, [3, 3], 2, Padding::Valid),
        (1, [5, 3], 2, Padding::Same),
    ] {
        let mut l = DepthwiseConv2d::new(3, m, k, stride, padding, 4);
        // 6 samples: two parallel groups.
        check(&mut l, &random(6, 6, 5, 3, 5, false), 6);
    }
}

/// The direct definition of a depthwise convolution, one tap at a time (index by index on
/// purpose: it is the definition the fast loops are checked against).
#[allow(clippy::needless_range_loop)]
fn depthwise_reference(l: &DepthwiseConv2d, x: &Tensor, dy: &Tensor) -> [Vec<f64>; 4] {
    let (oh, pt) = geometry(x.h, l.k[0], l.stride, l.padding);
    let (ow, pl) = geometry(x.w, l.k[1], l.stride, l.padding);
    let oc = x.c * l.multiplier;
    let mut y = vec![0.0f64; x.n * oh * ow * oc];
    let mut dx = vec![0.0f64; x.data.len()];
    let mut dw = vec![0.0f64; l.weight.value.len()];
    let mut db = vec![0.0f64; oc];
    for b in 0..x.n {
        for oy in 0..oh {
            for ox in 0..ow {
                for o in 0..oc {
                    let yi = ((b * oh + oy) * ow + ox) * oc + o;
                    let d = f64::from(dy.data[yi]);
                    y[yi] += f64::from(l.bias.value[o]);
                    db[o] += d;
                    for ky in 0..l.k[0] {
                        for kx in 0..l.k[1] {
                            let (iy, ix) = (oy * l.stride + ky, ox * l.stride + kx);
                            if iy < pt || ix < pl || iy - pt >= x.h || ix - pl >= x.w {
                                continue;
                            }
                            let xi = ((b * x.h + iy - pt) * x.w + ix - pl) * x.c + o / l.multiplier;
                            let wi = (ky * l.k[1] + kx) * oc + o;
                            y[yi] += f64::from(x.data[xi]) * f64::from(l.weight.value[wi]);
                            dw[wi] += f64::from(x.data[xi]) * d;
                            dx[xi] += f64::from(l.weight.value[wi]) * d;
                        }
                    }
                }
            }
        }
    }
    [y, dx, dw, db]
}

#[test]
fn depthwise_matches_its_definition() {
    let mut cases = 0;
    for m in [1, 2, 3] {
        for (k, stride, padding, h, w) in [
            ([3, 3], 1, Padding::Same, 7, 6),
            ([5, 5], 2, Padding::Same, 9, 8),
            ([3, 5], 2, Padding::Valid, 6, 9),
            ([1, 1], 1, Padding::Valid, 3, 3),
            ([5, 5], 1, Padding::Same, 2, 3),
        ] {
            let mut l = DepthwiseConv2d::new(4, m, k, stride, padding, 7 + cases);
            l.bias
                .value
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = i as f32 * 0.1);
            let x = random(9, h, w, 4, 8 + cases, false);
            let y = l.forward(&x, true);
            let dy = random(y.n, y.h, y.w, y.c, 9 + cases, false);
            let dx = l.backward(&dy);
            let [ry, rdx, rdw, rdb] = depthwise_reference(&l, &x, &dy);
            for (what, got, want) in [
                ("y", &y.data, &ry),
                ("dx", &dx.data, &rdx),
                ("dw", &l.weight.grad, &rdw),
                ("db", &l.bias.grad, &rdb),
            ] {
                assert_eq!(got.len(), want.len(), "{what} m={m} k={k:?}");
                for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
                    assert!(
                        (f64::from(*a) - b).abs() < 1e-4 * (1.0 + b.abs()),
                        "{what}[{i}] m={m} k={k:?} s={stride}: {a} vs {b}"
                    );
                }
            }
            cases += 1;
        }
    }
    // Without the input gradient, the weight gradient is unchanged and dx is zero.
    let mut l = DepthwiseConv2d::new(2, 1, [3, 3], 1, Padding::Same, 3);
    l.input_grad = false;
    let x = random(2, 4, 4, 2, 4, false);
    let y = l.forward(&x, true);
    assert!(l.backward(&y).data.iter().all(|&v| v == 0.0));
    assert!(l.weight.grad.iter().any(|&g| g != 0.0));
}

/// Under QAT a depthwise convolution computes with the int8 weights (per output channel,
/// across the `[taps][out]` layout) and the int32 bias the export writes.
#[test]
fn qat_depthwise_uses_the_exported_integers() {
    let mut l = DepthwiseConv2d::new(3, 1, [3, 3], 1, Padding::Same, 51);
    l.bias.value = vec![0.05, -0.1, 0.2];
    // Channel 1 much smaller than the others: a per-tensor scale would flatten it.
    for t in 0..9 {
        l.weight.value[t * 3 + 1] *= 0.01;
    }
    let x = random(2, 4, 4, 3, 52, false);
    let float = l.forward(&x, true);
    l.qat_input_scale = Some(0.01);
    let qat = l.forward(&x, true);
    let (q, scales) = quantize_weights(&transpose(&l.weight.value, 9, 3), 3);
    let bias = quantize_bias(&l.bias.value, 0.01, &scales);
    let mut reference = DepthwiseConv2d::new(3, 1, [3, 3], 1, Padding::Same, 51);
    let deq: Vec<f32> = q
        .iter()
        .enumerate()
        .map(|(i, &v)| f32::from(v) * scales[i / 9])
        .collect();
    reference.weight.value = transpose(&deq, 3, 9);
    reference.bias.value = bias
        .iter()
        .zip(&scales)
        .map(|(&b, s)| b as f32 * 0.01 * s)
        .collect();
    let want = reference.forward(&x, true);
    for (a, b) in qat.data.iter().zip(&want.data) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    assert!(qat.data.iter().zip(&float.data).any(|(a, b)| a != b));
    assert!(
        scales[1] < scales[0] / 20.0,
        "per-channel scales: {scales:?}"
    );
    l.weight.grad.iter_mut().for_each(|g| *g = 0.0);
    l.backward(&qat);
    assert!(l.weight.grad.iter().any(|&g| g != 0.0));
}

#[test]
fn gradients_batch_norm() {
    let mut l = BatchNorm::new(3);
    l.gamma.value = vec![1.5, 0.5, -1.0];
    l.beta.value = vec![0.1, 0.0, -0.3];
    check(&mut l, &random(4, 3, 3, 3, 7, false), 8);
}

#[test]
fn gradients_relu_relu6_pools_gap_dense() {
    check(&mut Relu::new(None), &random(2, 3, 3, 2, 9, true), 10);
    let mut x6 = random(2, 3, 3, 2, 11, true);
    x6.data.iter_mut().for_each(|v| *v *= 4.0);
    check(&mut Relu::new(Some(6.0)), &x6, 12);
    check(
        &mut Pool::new(true, [2, 2], 2, Padding::Valid),
        &random(2, 5, 4, 3, 13, false),
        14,
    );
    check(
        &mut Pool::new(false, [3, 3], 2, Padding::Same),
        &random(2, 5, 4, 3, 15, false),
        16,
    );
    check(
        &mut GlobalAvgPool::default(),
        &random(2, 4, 3, 5, 17, false),
        18,
    );
    check(
        &mut Dense::new(12, 5, 19),
        &random(3, 2, 2, 3, 20, false),
        21,
    );
}

#[test]
fn dropout_scales_kept_units_and_their_gradients() {
    let mut d = Dropout::new(0.5, 1);
    let x = random(4, 4, 4, 4, 22, true);
    let y = d.forward(&x, true);
    let kept = y.data.iter().filter(|&&v| v != 0.0).count();
    assert!((kept as f64 / y.data.len() as f64 - 0.5).abs() < 0.15);
    for (a, b) in x.data.iter().zip(&y.data) {
        assert!(*b == 0.0 || (b / a - 2.0).abs() < 1e-5);
    }
    let dx = d.backward(&x);
    assert_eq!(dx.data, y.data, "the gradient goes through the same mask");
    assert_eq!(d.forward(&x, false), x, "identity when not training");
}

#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    let logits = random(3, 1, 1, 4, 23, false);
    let labels = [0usize, 3, 1];
    for smoothing in [0.0f32, 0.1, 0.5] {
        let (_, g) = softmax_cross_entropy_smoothed(&logits, &labels, smoothing);
        let eps = 1e-3f32;
        for i in 0..logits.data.len() {
            let mut p = logits.clone();
            p.data[i] += eps;
            let (up, _) = softmax_cross_entropy_smoothed(&p, &labels, smoothing);
            p.data[i] -= 2.0 * eps;
            let (down, _) = softmax_cross_entropy_smoothed(&p, &labels, smoothing);
            let n = (up - down) / (2.0 * eps);
            assert!(
                (g.data[i] - n).abs() < 1e-3,
                "{smoothing} {i}: {} vs {n}",
                g.data[i]
            );
        }
    }
    // Smoothing 0 is plain cross-entropy, bit for bit; smoothing pulls the target off one-hot,
    // so a confident right answer costs more than without it.
    assert_eq!(
        softmax_cross_entropy(&logits, &labels),
        softmax_cross_entropy_smoothed(&logits, &labels, 0.0)
    );
    let confident = Tensor::from(1, 1, 1, 4, vec![9.0, 0.0, 0.0, 0.0]);
    let (plain, _) = softmax_cross_entropy(&confident, &[0]);
    let (smoothed, g) = softmax_cross_entropy_smoothed(&confident, &[0], 0.1);
    assert!(smoothed > plain + 0.1, "{smoothed} vs {plain}");
    assert!(
        g.data[0] > 0.0,
        "the label's logit is pushed down past its target: {:?}",
        g.data
    );
}

#[test]
fn batch_norm_evaluation_uses_the_running_statistics() {
    let mut r = SplitMix(1);
    let x = Tensor::from(
        64,
        7,
        7,
        8,
        (0..64 * 49 * 8).map(|_| r.real(-1.0, 2.0) as f32).collect(),
    );
    let mut bn = BatchNorm::new(8);
    bn.gamma.value = (0..8).map(|i| 0.5 + i as f32 * 0.1).collect();
    let yt = bn.forward(&x, true);
    let m: Vec<f32> = (0..8)
        .map(|j| {
            let mut s = 0.0f64;
            for r in 0..64 * 49 {
                s += x.data[r * 8 + j] as f64;
            }
            (s / (64.0 * 49.0)) as f32
        })
        .collect();
    let v: Vec<f32> = (0..8)
        .map(|j| {
            let mut s = 0.0f64;
            for r in 0..64 * 49 {
                let d = x.data[r * 8 + j] as f64 - m[j] as f64;
                s += d * d;
            }
            (s / (64.0 * 49.0)) as f32
        })
        .collect();
    bn.running_mean = m.clone();
    bn.running_var = v.clone();
    let ye = bn.forward(&x, false);
    let md = yt
        .data
        .iter()
        .zip(&ye.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(md < 1e-3, "max diff {md}");
}

#[test]
fn evaluation_does_not_depend_on_the_batch() {
    let mut r = SplitMix(1);
    let shape = crate::ImageShape { h: 28, w: 28, c: 1 };
    let mut net =
        crate::net::Net::new(crate::net::Arch::NanoNas { k: 8, c: 2 }, shape, 10, 1).unwrap();
    let x = Tensor::from(
        64,
        28,
        28,
        1,
        (0..64 * 784).map(|_| r.real(0.0, 1.0) as f32).collect(),
    );
    for _ in 0..3 {
        net.forward(&x, true);
    }
    let y = net.forward(&x, false);
    for b in [0usize, 5, 63] {
        let xb = Tensor::from(1, 28, 28, 1, x.data[b * 784..(b + 1) * 784].to_vec());
        let yb = net.forward(&xb, false);
        let md = yb
            .data
            .iter()
            .zip(&y.data[b * 10..(b + 1) * 10])
            .map(|(a, c)| (a - c).abs())
            .fold(0.0f32, f32::max);
        assert!(
            md < 1e-4,
            "sample {b}: {md} {:?} vs {:?}",
            yb.data,
            &y.data[b * 10..b * 10 + 10]
        );
    }
}
