//! A seeded generator of random valid networks: chains and residual graphs over every op, with
//! random shapes, strides, paddings, zero points and scales. Used by the format, planner, codegen
//! and oracle tests. Deterministic from a seed ([`SplitMix`]), with no dependency on `rand`.

use crate::ir::{
    Activation, ConvParams, InputType, Model, ModelBuilder, Op, Padding, PoolParams, QParams,
    Shape, TensorId,
};

/// A source of random numbers (implemented for every `rand::RngCore`).
pub trait Source {
    fn next_u64(&mut self) -> u64;

    /// Uniform in `lo..=hi`.
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i64
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.int(0, xs.len() as i64 - 1) as usize]
    }

    /// Uniform in `[lo, hi)`.
    fn real(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.real(0.0, 1.0) < p
    }
}

/// A small deterministic generator (SplitMix64): the same seed gives the same networks on every
/// machine.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl Source for SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Sizes of the generated networks.
#[derive(Debug, Clone)]
pub struct Config {
    pub max_side: usize,
    pub max_channels: usize,
    pub max_layers: usize,
    /// Chance of a residual block at each layer.
    pub residual: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_side: 12,
            max_channels: 8,
            max_layers: 6,
            residual: 0.3,
        }
    }
}

/// A random valid network.
pub fn network(rng: &mut impl Source, cfg: &Config) -> Model {
    loop {
        if let Some(m) = try_network(rng, cfg) {
            return m;
        }
    }
}

fn act(rng: &mut impl Source) -> Activation {
    rng.pick(&[Activation::None, Activation::Relu, Activation::Relu6])
}

fn quant(rng: &mut impl Source) -> QParams {
    QParams {
        scale: rng.real(0.004, 0.2) as f32,
        zero_point: rng.int(-128, 127) as i32,
    }
}

/// Weights, per-channel scales, bias and an output quantisation that keeps most outputs in range.
/// Random int8 weights (`n` of them, `oc` output channels, `fan_in` taps each) with per-channel
/// scales, int32 biases, and an output quantisation that keeps the outputs spread over int8.
pub fn weights(
    rng: &mut impl Source,
    n: usize,
    oc: usize,
    fan_in: usize,
    in_q: QParams,
) -> (Vec<i8>, Vec<f32>, Vec<i32>, QParams) {
    let w: Vec<i8> = (0..n).map(|_| rng.int(-127, 127) as i8).collect();
    let scales: Vec<f32> = (0..oc).map(|_| rng.real(0.002, 0.05) as f32).collect();
    let bias: Vec<i32> = (0..oc).map(|_| rng.int(-3000, 3000) as i32).collect();
    let mean_ws = scales.iter().map(|&s| f64::from(s)).sum::<f64>() / oc as f64;
    let spread = 64.0 * 73.0 * (fan_in as f64).sqrt() / 40.0;
    let out_scale = f64::from(in_q.scale) * mean_ws * spread * rng.real(0.3, 2.0);
    let q = QParams {
        scale: out_scale as f32,
        zero_point: rng.int(-60, 60) as i32,
    };
    (w, scales, bias, q)
}

fn conv_layer(
    rng: &mut impl Source,
    b: &mut ModelBuilder,
    x: TensorId,
    cfg: &Config,
    depthwise: bool,
    keep_shape: bool,
) -> Option<TensorId> {
    let s = b.shape(x)?;
    let xq = b.quant(x)?;
    let k = rng.pick(&[1usize, 3, 3, 5]);
    let (stride, padding) = if keep_shape {
        (1, Padding::Same)
    } else {
        (
            rng.pick(&[1usize, 1, 2]),
            rng.pick(&[Padding::Same, Padding::Valid]),
        )
    };
    let kernel = if rng.chance(0.15) {
        [k, rng.pick(&[1usize, 3])]
    } else {
        [k, k]
    };
    let name = format!("n{}", b.last());
    if depthwise {
        let multiplier = if keep_shape {
            1
        } else {
            rng.pick(&[1usize, 1, 2])
        };
        let oc = s.c * multiplier;
        let (w, sc, bias, q) = weights(
            rng,
            kernel[0] * kernel[1] * oc,
            oc,
            kernel[0] * kernel[1],
            xq,
        );
        let conv = ConvParams {
            kernel,
            stride,
            padding,
            activation: act(rng),
            weights: w,
            weight_scales: sc,
            bias,
        };
        b.add(name, Op::DepthwiseConv2d { multiplier, conv }, &[x], q)
            .ok()
    } else {
        let oc = if keep_shape {
            s.c
        } else {
            rng.int(1, cfg.max_channels as i64) as usize
        };
        let fan = kernel[0] * kernel[1] * s.c;
        let (w, sc, bias, q) = weights(rng, oc * fan, oc, fan, xq);
        let conv = ConvParams {
            kernel,
            stride,
            padding,
            activation: act(rng),
            weights: w,
            weight_scales: sc,
            bias,
        };
        b.add(
            name,
            Op::Conv2d {
                out_channels: oc,
                conv,
            },
            &[x],
            q,
        )
        .ok()
    }
}

fn try_network(rng: &mut impl Source, cfg: &Config) -> Option<Model> {
    let input_type = if rng.chance(0.5) {
        InputType::U8
    } else {
        InputType::I8
    };
    let shape = Shape::new(
        rng.int(3, cfg.max_side as i64) as usize,
        rng.int(3, cfg.max_side as i64) as usize,
        rng.int(1, 4) as usize,
    );
    let in_q = match input_type {
        InputType::U8 => QParams {
            scale: rng.real(0.004, 1.0) as f32,
            zero_point: rng.int(0, 255) as i32,
        },
        InputType::I8 => quant(rng),
    };
    let mut b = ModelBuilder::new(input_type, shape, in_q).ok()?;
    let mut x: TensorId = 0;
    let layers = rng.int(1, cfg.max_layers as i64);
    for _ in 0..layers {
        let s = b.shape(x)?;
        if rng.chance(cfg.residual) {
            // A residual block: y = act(x + conv(x)) with a shape-keeping conv.
            let dw = rng.chance(0.4);
            let y = conv_layer(rng, &mut b, x, cfg, dw, true)?;
            let q = quant(rng);
            x = b
                .add(
                    format!("n{}", b.last()),
                    Op::Add {
                        activation: act(rng),
                    },
                    &[x, y],
                    q,
                )
                .ok()?;
            continue;
        }
        match rng.int(0, 9) {
            0..=3 => x = conv_layer(rng, &mut b, x, cfg, false, false)?,
            4 | 5 => x = conv_layer(rng, &mut b, x, cfg, true, false)?,
            6 | 7 => {
                let size = [rng.int(1, 3) as usize, rng.int(1, 3) as usize];
                let p = PoolParams {
                    size,
                    stride: rng.int(1, 2) as usize,
                    padding: rng.pick(&[Padding::Same, Padding::Valid]),
                };
                let op = if rng.chance(0.5) {
                    Op::MaxPool2d(p)
                } else {
                    Op::AvgPool2d(p)
                };
                let q = b.quant(x)?;
                x = b.add(format!("n{}", b.last()), op, &[x], q).ok()?;
            }
            8 => {
                // A reshape that swaps height and width keeps the data and the layout valid.
                let q = b.quant(x)?;
                x = b
                    .add(
                        format!("n{}", b.last()),
                        Op::Reshape {
                            shape: Shape::new(s.w, s.h, s.c),
                        },
                        &[x],
                        q,
                    )
                    .ok()?;
            }
            _ => {
                let q = b.quant(x)?;
                let z = b
                    .add(
                        format!("n{}", b.last()),
                        Op::Reshape {
                            shape: Shape::new(s.h, s.w, s.c),
                        },
                        &[x],
                        q,
                    )
                    .ok()?;
                let y = conv_layer(rng, &mut b, z, cfg, false, true)?;
                x = b
                    .add(
                        format!("n{}", b.last()),
                        Op::Add {
                            activation: act(rng),
                        },
                        &[y, x],
                        quant(rng),
                    )
                    .ok()?;
            }
        }
    }
    // Head: global average pool or flatten, then dense, then maybe softmax.
    let xq = b.quant(x)?;
    if rng.chance(0.5) {
        let q = QParams {
            scale: (f64::from(xq.scale) * rng.real(0.5, 1.5)) as f32,
            zero_point: rng.int(-20, 20) as i32,
        };
        x = b
            .add(format!("n{}", b.last()), Op::GlobalAveragePool, &[x], q)
            .ok()?;
    } else {
        let n = b.shape(x)?.elements();
        x = b
            .add(
                format!("n{}", b.last()),
                Op::Reshape {
                    shape: Shape::new(1, 1, n),
                },
                &[x],
                xq,
            )
            .ok()?;
    }
    let n = b.shape(x)?.elements();
    let classes = rng.int(2, 10) as usize;
    let (w, sc, bias, q) = weights(rng, classes * n, classes, n, b.quant(x)?);
    let fc = Op::FullyConnected {
        out_features: classes,
        activation: Activation::None,
        weights: w,
        weight_scales: sc,
        bias,
    };
    x = b.add(format!("n{}", b.last()), fc, &[x], q).ok()?;
    if rng.chance(0.4) {
        let q = QParams {
            scale: 1.0 / 256.0,
            zero_point: -128,
        };
        b.add(
            format!("n{}", b.last()),
            Op::Softmax {
                beta: rng.real(0.5, 2.0) as f32,
            },
            &[x],
            q,
        )
        .ok()?;
    }
    if rng.chance(0.3) {
        let labels = (0..classes).map(|i| format!("class{i}")).collect();
        b.labels(labels);
    }
    b.finish().ok()
}

/// Channels of the NanoNAS space A(k, c): `k`, then `n_i = ceil(n_{i-1} * m_i)` with `m_1 = 2`
/// and `m_{i+1} = m_i - 2^-i` (2, 1.5, 1.25, ...), one per cell.
pub fn nanonas_channels(k: usize, cells: usize) -> Vec<usize> {
    let mut ch = vec![k];
    let mut m = 2.0f64;
    for i in 1..=cells {
        let prev = *ch.last().unwrap_or(&k) as f64;
        ch.push((prev * m).ceil() as usize);
        m -= 0.5f64.powi(i as i32);
    }
    ch
}

/// A network of the NanoNAS space A(k, c) with random int8 weights (for fixtures and tests; the
/// trainer builds the same shape from trained weights): 3x3 same conv with `k` filters + ReLU, then
/// `c` cells of [2x2 max pool stride 2, 3x3 same conv + ReLU], global average pool, dense.
pub fn nanonas(
    rng: &mut impl Source,
    k: usize,
    cells: usize,
    input: Shape,
    classes: usize,
) -> Result<Model, crate::Error> {
    let in_q = QParams {
        scale: 1.0 / 255.0,
        zero_point: 0,
    };
    let mut b = ModelBuilder::new(InputType::U8, input, in_q)?;
    let mut x: TensorId = 0;
    for (i, &oc) in nanonas_channels(k, cells).iter().enumerate() {
        if i > 0 {
            let q = b.quant(x).unwrap_or(in_q);
            let pool = PoolParams {
                size: [2, 2],
                stride: 2,
                padding: Padding::Valid,
            };
            x = b.add(format!("cell{i}.pool"), Op::MaxPool2d(pool), &[x], q)?;
        }
        let s = b.shape(x).unwrap_or(input);
        let xq = b.quant(x).unwrap_or(in_q);
        let fan = 9 * s.c;
        let (w, sc, bias, q) = weights(rng, oc * fan, oc, fan, xq);
        let conv = ConvParams {
            kernel: [3, 3],
            stride: 1,
            padding: Padding::Same,
            activation: Activation::Relu,
            weights: w,
            weight_scales: sc,
            bias,
        };
        x = b.add(
            format!("cell{i}.conv"),
            Op::Conv2d {
                out_channels: oc,
                conv,
            },
            &[x],
            q,
        )?;
    }
    let xq = b.quant(x).unwrap_or(in_q);
    x = b.add("gap", Op::GlobalAveragePool, &[x], xq)?;
    let n = b.shape(x).map_or(1, |s| s.elements());
    let (w, sc, bias, q) = weights(rng, classes * n, classes, n, xq);
    b.add(
        "dense",
        Op::FullyConnected {
            out_features: classes,
            activation: Activation::None,
            weights: w,
            weight_scales: sc,
            bias,
        },
        &[x],
        q,
    )?;
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanonas_channel_growth() {
        // 2, 1.5, 1.25, 1.125: 4 -> 8 -> 12 -> 15 -> 17
        assert_eq!(nanonas_channels(4, 4), vec![4, 8, 12, 15, 17]);
        let m = nanonas(&mut SplitMix(1), 4, 2, Shape::new(32, 32, 3), 10).unwrap();
        assert_eq!(m.classes(), 10);
        assert_eq!(m.nodes.len(), 1 + 2 * 2 + 2);
    }
}
