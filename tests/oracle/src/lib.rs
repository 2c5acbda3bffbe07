//! The independent oracle: tract-core runs the same quantised graph on the host.
//!
//! Accumulations are tract's own (its quantised `Conv`, `SumPool`, `MaxPool`, `Reduce`), and the
//! requantisation is TF Lite's integer arithmetic written as a graph of tract integer ops in `i64`
//! (`SaturatingRoundingDoublingHighMul` as a product, nudge and truncating division;
//! `RoundingDivideByPOT` as mask, threshold and arithmetic shift). So every op but softmax is
//! compared bit for bit.
//!
//! Softmax: TF Lite's int8 softmax is gemmlowp fixed point (a polynomial `exp`, a Newton-Raphson
//! reciprocal) that cannot be written as tract ops, so here tract computes it in `f32`
//! (dequantise, `Softmax`, multiply by 256, round half to even, -128). The two differ by at most 1
//! LSB, which the tests assert and the README records.

use tract_core::internal::*;
use tract_core::ops::cnn::{Conv, KernelFormat, MaxPool, PaddingSpec, PoolSpec, SumPool};
use tract_core::ops::math;
use tract_core::ops::nn::{DataFormat, Reduce, Reducer, Softmax, SoftmaxKind};

use tinynas_model::lower::{lower, Kernel, Weights};
use tinynas_model::{InputType, Model, Op, Padding, QParams, Shape};

pub use tinynas_model::host::{HostModel, Input};

/// Builds the tract graph of a model and runs it on one input.
pub fn tract_run(model: &Model, input: Input<'_>) -> TractResult<Vec<i8>> {
    let mut g = Graph::new(model);
    let x = match input {
        Input::U8(v) => tensor1(&v.iter().map(|&b| b as i32 - 128).collect::<Vec<_>>()),
        Input::I8(v) => tensor1(&v.iter().map(|&b| b as i32).collect::<Vec<_>>()),
    };
    let s = model.input_shape;
    let x = x.into_shape(&[1, s.h, s.w, s.c])?;
    let src = g.m.add_source("input", i32::fact([1, s.h, s.w, s.c]))?;
    let mut wires = vec![src];
    for i in 0..model.nodes.len() {
        let w = g.node(i, &wires)?;
        wires.push(w);
    }
    let out = *wires.last().unwrap();
    g.m.select_output_outlets(&[out])?;
    let plan = SimplePlan::new(g.m)?;
    let y = plan.run(tvec!(x.into_tvalue()))?;
    let y = y[0].cast_to::<i32>()?;
    Ok(y.try_as_plain_ram()?
        .as_slice::<i32>()?
        .iter()
        .map(|&v| v as i8)
        .collect())
}

/// True when the model's output comes from a softmax (compared within 1 LSB).
pub fn ends_in_softmax(model: &Model) -> bool {
    matches!(model.nodes.last().map(|n| &n.op), Some(Op::Softmax { .. }))
}

struct Graph<'a> {
    model: &'a Model,
    m: TypedModel,
    n: usize,
}

fn pads(input: usize, k: usize, stride: usize, padding: Padding) -> (usize, usize, usize) {
    let (out, before) = tinynas_model::ir::window_output(input, k, stride, padding).unwrap();
    let total = ((out - 1) * stride + k).saturating_sub(input);
    (out, before, total.saturating_sub(before))
}

impl<'a> Graph<'a> {
    fn new(model: &'a Model) -> Self {
        Graph {
            model,
            m: TypedModel::default(),
            n: 0,
        }
    }

    fn name(&mut self, what: &str) -> String {
        self.n += 1;
        format!("{what}.{}", self.n)
    }

    fn konst(&mut self, t: Tensor) -> TractResult<OutletId> {
        let name = self.name("const");
        self.m.add_const(name, t)
    }

    fn i64s(&mut self, v: &[i64]) -> TractResult<OutletId> {
        let t = if v.len() == 1 {
            tensor0(v[0])
        } else {
            tensor1(v)
        };
        self.konst(t)
    }

    fn bin(
        &mut self,
        op: impl Into<Box<dyn TypedOp>>,
        a: OutletId,
        b: OutletId,
    ) -> TractResult<OutletId> {
        let name = self.name("bin");
        Ok(wire_with_rank_broadcast(name, &mut self.m, op, &[a, b])?[0])
    }

    fn cast(&mut self, x: OutletId, dt: DatumType) -> TractResult<OutletId> {
        let name = self.name("cast");
        Ok(self
            .m
            .wire_node(name, tract_core::ops::cast::cast(dt), &[x])?[0])
    }

    fn add_i(&mut self, x: OutletId, v: &[i64]) -> TractResult<OutletId> {
        let c = self.i64s(v)?;
        self.bin(math::add(), x, c)
    }

    fn mul_i(&mut self, x: OutletId, v: &[i64]) -> TractResult<OutletId> {
        let c = self.i64s(v)?;
        self.bin(math::mul(), x, c)
    }

    /// `1` where `x < 0`, else `0` (as `-(x >> 63)`).
    fn is_negative(&mut self, x: OutletId) -> TractResult<OutletId> {
        let c = self.i64s(&[63])?;
        let s = self.bin(math::shift_right(), x, c)?;
        self.mul_i(s, &[-1])
    }

    /// TF Lite's `MultiplyByQuantizedMultiplier` on an `i64` wire holding int32 values, with
    /// scalar or per-channel (last axis) multipliers and shifts.
    fn mbqm(&mut self, x: OutletId, mult: &[i32], shift: &[i32]) -> TractResult<OutletId> {
        // Left shift (multiplier >= 1): exact in i64.
        let left: Vec<i64> = shift.iter().map(|&s| 1i64 << s.max(0)).collect();
        let x = self.mul_i(x, &left)?;
        // SaturatingRoundingDoublingHighMul: (x * m + nudge) / 2^31, truncating.
        let m: Vec<i64> = mult.iter().map(|&v| i64::from(v)).collect();
        let p = self.mul_i(x, &m)?;
        let neg = self.is_negative(p)?;
        let adj = self.mul_i(neg, &[-((1i64 << 31) - 1)])?;
        let nudge = self.add_i(adj, &[1 << 30])?;
        let p = self.bin(math::add(), p, nudge)?;
        let d = self.i64s(&[1i64 << 31])?;
        let q = self.bin(math::div(), p, d)?;
        // RoundingDivideByPOT by e = -shift.
        let e: Vec<i64> = shift
            .iter()
            .map(|&s| i64::from((-s).clamp(0, 31)))
            .collect();
        let mask: Vec<i64> = e.iter().map(|&e| (1i64 << e) - 1).collect();
        let mask_c = self.i64s(&mask)?;
        let rem = self.bin(tract_core::ops::logic::bitand(), q, mask_c)?;
        let half: Vec<i64> = mask.iter().map(|&m| m >> 1).collect();
        let qneg = self.is_negative(q)?;
        let threshold = self.add_i(qneg, &half)?;
        // rem > threshold  <=>  threshold - rem < 0
        let diff = self.bin(math::sub(), threshold, rem)?;
        let round = self.is_negative(diff)?;
        let e_c = self.i64s(&e)?;
        let shifted = self.bin(math::shift_right(), q, e_c)?;
        self.bin(math::add(), shifted, round)
    }

    /// TF Lite's single-rounding `MultiplyByQuantizedMultiplier` (its int8 FULLY_CONNECTED):
    /// `(x * m + 2^(30 - shift)) >> (31 - shift)`, exact in i64 (`|x * m| <= 2^62`).
    fn mbqm_once(&mut self, x: OutletId, mult: &[i32], shift: &[i32]) -> TractResult<OutletId> {
        let m: Vec<i64> = mult.iter().map(|&v| i64::from(v)).collect();
        let p = self.mul_i(x, &m)?;
        let total: Vec<i64> = shift
            .iter()
            .map(|&s| i64::from(31 - s.clamp(-31, 30)))
            .collect();
        let round: Vec<i64> = total.iter().map(|&t| 1i64 << (t - 1)).collect();
        let p = self.add_i(p, &round)?;
        let t = self.i64s(&total)?;
        self.bin(math::shift_right(), p, t)
    }

    fn clamp(&mut self, x: OutletId, lo: i32, hi: i32) -> TractResult<OutletId> {
        let l = self.i64s(&[i64::from(lo)])?;
        let x = self.bin(math::max(), x, l)?;
        let h = self.i64s(&[i64::from(hi)])?;
        self.bin(math::min(), x, h)
    }

    fn reshape(&mut self, x: OutletId, from: Shape, to: Shape) -> TractResult<OutletId> {
        let d = |s: Shape| tvec![s.h.to_dim(), s.w.to_dim(), s.c.to_dim()];
        let name = self.name("reshape");
        Ok(self
            .m
            .wire_node(name, AxisOp::Reshape(1, d(from), d(to)), &[x])?[0])
    }

    fn pool_spec(
        &self,
        x: Shape,
        k: [usize; 2],
        stride: usize,
        padding: Padding,
        oc: usize,
    ) -> PoolSpec {
        let (_, t, b) = pads(x.h, k[0], stride, padding);
        let (_, l, r) = pads(x.w, k[1], stride, padding);
        PoolSpec {
            data_format: DataFormat::NHWC,
            kernel_shape: tvec![k[0], k[1]],
            padding: PaddingSpec::Explicit(tvec![t, l], tvec![b, r]),
            dilations: None,
            strides: Some(tvec![stride, stride]),
            input_channels: x.c,
            output_channels: oc,
        }
    }

    /// tract's quantised convolution with an int32 output: the exact accumulators.
    #[allow(clippy::too_many_arguments)]
    fn conv_acc(
        &mut self,
        x: OutletId,
        xs: Shape,
        xq: QParams,
        kernel: Tensor,
        k: [usize; 2],
        stride: usize,
        padding: Padding,
        oc: usize,
        group: usize,
        depthwise: bool,
        bias: &[i32],
    ) -> TractResult<OutletId> {
        // Depthwise kernels are given as OIHW ([oc][1][kh][kw]), even with one group; plain ones as
        // OHWI.
        let kernel_fmt = if depthwise {
            KernelFormat::OIHW
        } else {
            KernelFormat::OHWI
        };
        let x8 = self.cast(x, i8::datum_type())?;
        let kernel = self.konst(kernel)?;
        let bias = self.konst(tensor1(bias))?;
        let x0 = self.konst(tensor0(xq.zero_point))?;
        let one = self.konst(tensor0(1f32))?;
        let zero = self.konst(tensor0(0i32))?;
        let conv = Conv {
            pool_spec: self.pool_spec(xs, k, stride, padding, oc),
            kernel_fmt,
            group,
            q_params: Some(i32::datum_type()),
        };
        let name = self.name("conv");
        let acc = self.m.wire_node(
            name,
            conv,
            &[x8, kernel, bias, x0, one, zero, one, zero, one],
        )?[0];
        self.cast(acc, i64::datum_type())
    }

    /// Requantise int32 accumulators per channel and clamp to the activation range.
    fn requant(
        &mut self,
        acc: OutletId,
        mult: &[i32],
        shift: &[i32],
        zp: i32,
        lo: i32,
        hi: i32,
    ) -> TractResult<OutletId> {
        let y = self.mbqm(acc, mult, shift)?;
        let y = self.add_i(y, &[i64::from(zp)])?;
        let y = self.clamp(y, lo, hi)?;
        self.cast(y, i32::datum_type())
    }

    /// [`Self::requant`] with a conv or dense layer's lowered per-channel parameters.
    fn requant_layer(&mut self, acc: OutletId, w: &Weights) -> TractResult<OutletId> {
        let q = w.quant;
        self.requant(
            acc,
            &w.multiplier,
            &w.shift,
            q.output_offset,
            q.act_min,
            q.act_max,
        )
    }

    fn node(&mut self, i: usize, wires: &[OutletId]) -> TractResult<OutletId> {
        let node = &self.model.nodes[i];
        let x = wires[node.inputs[0]];
        let xs = self.model.shape(node.inputs[0]);
        let xq = self.model.quant(node.inputs[0]);
        let lowered = lower_node(self.model, i);
        match (&node.op, lowered) {
            (Op::Conv2d { out_channels, conv }, Some(Kernel::Conv2d { w, .. })) => {
                let [kh, kw] = conv.kernel;
                let kernel = tensor1(&conv.weights).into_shape(&[*out_channels, kh, kw, xs.c])?;
                let acc = self.conv_acc(
                    x,
                    xs,
                    xq,
                    kernel,
                    conv.kernel,
                    conv.stride,
                    conv.padding,
                    *out_channels,
                    1,
                    false,
                    &conv.bias,
                )?;
                self.requant_layer(acc, &w)
            }
            (Op::DepthwiseConv2d { multiplier, conv }, Some(Kernel::DepthwiseConv2d { w, .. })) => {
                let [kh, kw] = conv.kernel;
                let oc = xs.c * multiplier;
                // Ours: [kh][kw][oc]; tract grouped OIHW: [oc][1][kh][kw].
                let mut t = vec![0i8; oc * kh * kw];
                for o in 0..oc {
                    for p in 0..kh * kw {
                        t[o * kh * kw + p] = conv.weights[p * oc + o];
                    }
                }
                let kernel = tensor1(&t).into_shape(&[oc, 1, kh, kw])?;
                let acc = self.conv_acc(
                    x,
                    xs,
                    xq,
                    kernel,
                    conv.kernel,
                    conv.stride,
                    conv.padding,
                    oc,
                    xs.c,
                    true,
                    &conv.bias,
                )?;
                self.requant_layer(acc, &w)
            }
            (
                Op::FullyConnected {
                    out_features,
                    weights,
                    bias,
                    ..
                },
                Some(Kernel::FullyConnected { w, .. }),
            ) => {
                let n = xs.elements();
                let flat = Shape::new(1, 1, n);
                let x = self.reshape(x, xs, flat)?;
                let kernel = tensor1(weights).into_shape(&[*out_features, 1, 1, n])?;
                let acc = self.conv_acc(
                    x,
                    flat,
                    xq,
                    kernel,
                    [1, 1],
                    1,
                    Padding::Valid,
                    *out_features,
                    1,
                    false,
                    bias,
                )?;
                // Rounded once, as TF Lite's FULLY_CONNECTED.
                let y = self.mbqm_once(acc, &w.multiplier, &w.shift)?;
                let q = w.quant;
                let y = self.add_i(y, &[i64::from(q.output_offset)])?;
                let y = self.clamp(y, q.act_min, q.act_max)?;
                self.cast(y, i32::datum_type())
            }
            (Op::MaxPool2d(p), _) => {
                let x8 = self.cast(x, i8::datum_type())?;
                let spec = self.pool_spec(xs, p.size, p.stride, p.padding, xs.c);
                let name = self.name("maxpool");
                let y = self.m.wire_node(
                    name,
                    MaxPool {
                        pool_spec: spec,
                        with_index_outputs: None,
                    },
                    &[x8],
                )?[0];
                self.cast(y, i32::datum_type())
            }
            (Op::AvgPool2d(p), _) => {
                // Sum and count of the taps inside the input, both by tract's SumPool.
                let spec = self.pool_spec(xs, p.size, p.stride, p.padding, xs.c);
                let xi = self.cast(x, i64::datum_type())?;
                let name = self.name("sumpool");
                let sum = self.m.wire_node(
                    name,
                    SumPool {
                        pool_spec: spec.clone(),
                        count_include_pad: false,
                        normalize: false,
                    },
                    &[xi],
                )?[0];
                let ones = self.konst(Tensor::from_shape(
                    &[1, xs.h, xs.w, 1],
                    &vec![1i64; xs.h * xs.w],
                )?)?;
                let mut one_spec = spec;
                one_spec.input_channels = 1;
                one_spec.output_channels = 1;
                let name = self.name("countpool");
                let count = self.m.wire_node(
                    name,
                    SumPool {
                        pool_spec: one_spec,
                        count_include_pad: false,
                        normalize: false,
                    },
                    &[ones],
                )?[0];
                // (sum > 0 ? sum + count/2 : sum - count/2) / count, truncating.
                let two = self.i64s(&[2])?;
                let half = self.bin(math::div(), count, two)?;
                let neg_sum = self.mul_i(sum, &[-1])?;
                let positive = self.is_negative(neg_sum)?; // 1 when sum > 0
                let sign = self.mul_i(positive, &[2])?;
                let sign = self.add_i(sign, &[-1])?;
                let adj = self.bin(math::mul(), half, sign)?;
                let num = self.bin(math::add(), sum, adj)?;
                let y = self.bin(math::div(), num, count)?;
                let y = self.clamp(y, -128, 127)?;
                self.cast(y, i32::datum_type())
            }
            (Op::GlobalAveragePool, Some(Kernel::GlobalAveragePool(mp))) => {
                let xi = self.cast(x, i64::datum_type())?;
                let xi = self.add_i(xi, &[i64::from(mp.input_offset)])?;
                let name = self.name("sum");
                let s = self.m.wire_node(
                    name,
                    Reduce {
                        axes: tvec![1, 2],
                        reducer: Reducer::Sum,
                    },
                    &[xi],
                )?[0];
                self.requant(
                    s,
                    &[mp.multiplier],
                    &[mp.shift],
                    mp.output_offset,
                    -128,
                    127,
                )
            }
            (Op::Add { .. }, Some(Kernel::Add(a))) => {
                let y = wires[node.inputs[1]];
                let mut scaled = Vec::new();
                for (w, off, m, s) in [
                    (x, a.input1_offset, a.input1_multiplier, a.input1_shift),
                    (y, a.input2_offset, a.input2_multiplier, a.input2_shift),
                ] {
                    let v = self.cast(w, i64::datum_type())?;
                    let v = self.add_i(v, &[i64::from(off)])?;
                    let v = self.mul_i(v, &[1i64 << a.left_shift])?;
                    scaled.push(self.mbqm(v, &[m], &[s])?);
                }
                let sum = self.bin(math::add(), scaled[0], scaled[1])?;
                self.requant(
                    sum,
                    &[a.output_multiplier],
                    &[a.output_shift],
                    a.output_offset,
                    a.act_min,
                    a.act_max,
                )
            }
            (Op::Reshape { shape }, _) => self.reshape(x, xs, *shape),
            (Op::Softmax { beta }, _) => {
                let f = self.cast(x, f32::datum_type())?;
                let zp = self.konst(tensor0(xq.zero_point as f32))?;
                let f = self.bin(math::sub(), f, zp)?;
                let sc = self.konst(tensor0(xq.scale * beta))?;
                let f = self.bin(math::mul(), f, sc)?;
                let name = self.name("softmax");
                let sm = Softmax {
                    axes: tvec![3],
                    quant_output_dt: None,
                    kind: SoftmaxKind::Softmax,
                };
                let p = self.m.wire_node(name, sm, &[f])?[0];
                let k = self.konst(tensor0(256f32))?;
                let p = self.bin(math::mul(), p, k)?;
                let name = self.name("round");
                let p = self.m.wire_node(name, math::round_half_to_even(), &[p])?[0];
                let k = self.konst(tensor0(128f32))?;
                let p = self.bin(math::sub(), p, k)?;
                let p = self.cast(p, i64::datum_type())?;
                let p = self.clamp(p, -128, 127)?;
                self.cast(p, i32::datum_type())
            }
            (op, k) => bail!("oracle: no tract graph for {op:?} lowered as {k:?}"),
        }
    }
}

/// The lowered kernel of node `i` (for its integer parameters).
fn lower_node(model: &Model, i: usize) -> Option<Kernel> {
    let p = lower(model).ok()?;
    p.steps
        .into_iter()
        .find(|s| s.node == Some(i))
        .map(|s| s.kernel)
}

/// Runs the host interpreter (the runtime's kernels) on one input.
pub fn host_run(model: &Model, input: Input<'_>) -> Vec<i8> {
    HostModel::new(model).unwrap().run(input).unwrap()
}

/// A random input for a model, from a seed.
pub fn random_input(model: &Model, seed: u64) -> (Vec<u8>, Vec<i8>) {
    use tinynas_model::random::{Source, SplitMix};
    let mut r = SplitMix(seed);
    let n = model.input_shape.elements();
    let bytes: Vec<u8> = (0..n).map(|_| r.next_u64() as u8).collect();
    let signed = bytes.iter().map(|&b| b as i8).collect();
    (bytes, signed)
}

/// The model's input from raw bytes, typed as the model says.
pub fn input_of<'a>(model: &Model, raw: &'a (Vec<u8>, Vec<i8>)) -> Input<'a> {
    match model.input_type {
        InputType::U8 => Input::U8(&raw.0),
        InputType::I8 => Input::I8(&raw.1),
    }
}

/// Compares two outputs: bit for bit, or within `tolerance` LSB. Returns the largest difference.
pub fn max_diff(a: &[i8], b: &[i8]) -> i32 {
    assert_eq!(a.len(), b.len(), "output lengths differ");
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (i32::from(x) - i32::from(y)).abs())
        .max()
        .unwrap_or(0)
}

/// tract's own quantised convolution, requantisation included: `Conv` with `q_params = I8`, the
/// real scales as inputs. tract multiplies the int32 accumulator by the combined scale in `f32` and
/// rounds half to even; TF Lite uses a 31-bit fixed-point multiplier with its own two roundings.
/// Used to measure how far apart the two are (see `tests/tract_rounding.rs`).
pub fn tract_native_conv(model: &Model) -> TractResult<impl Fn(&[i8]) -> TractResult<Vec<i8>>> {
    let node = &model.nodes[0];
    let Op::Conv2d { out_channels, conv } = &node.op else {
        bail!("expects a one-conv model")
    };
    let xs = model.input_shape;
    let xq = model.quant(0);
    let mut m = TypedModel::default();
    let x = m.add_source("x", i8::fact([1, xs.h, xs.w, xs.c]))?;
    let [kh, kw] = conv.kernel;
    let k = m.add_const(
        "k",
        tensor1(&conv.weights).into_shape(&[*out_channels, kh, kw, xs.c])?,
    )?;
    let b = m.add_const("b", tensor1(&conv.bias))?;
    let x0 = m.add_const("x0", tensor0(xq.zero_point))?;
    let xsc = m.add_const("xs", tensor0(xq.scale))?;
    let k0 = m.add_const("k0", tensor0(0i32))?;
    let ksc = m.add_const("ks", tensor1(&conv.weight_scales))?;
    let y0 = m.add_const("y0", tensor0(node.quant.zero_point))?;
    let ysc = m.add_const("ys", tensor0(node.quant.scale))?;
    let (_, t, bo) = pads(xs.h, kh, conv.stride, conv.padding);
    let (_, l, r) = pads(xs.w, kw, conv.stride, conv.padding);
    let op = Conv {
        pool_spec: PoolSpec {
            data_format: DataFormat::NHWC,
            kernel_shape: tvec![kh, kw],
            padding: PaddingSpec::Explicit(tvec![t, l], tvec![bo, r]),
            dilations: None,
            strides: Some(tvec![conv.stride, conv.stride]),
            input_channels: xs.c,
            output_channels: *out_channels,
        },
        kernel_fmt: KernelFormat::OHWI,
        group: 1,
        q_params: Some(i8::datum_type()),
    };
    let y = m.wire_node("conv", op, &[x, k, b, x0, xsc, k0, ksc, y0, ysc])?[0];
    m.select_output_outlets(&[y])?;
    let plan = SimplePlan::new(m)?;
    let shape = [1, xs.h, xs.w, xs.c];
    Ok(move |input: &[i8]| {
        let t = tensor1(input).into_shape(&shape)?;
        let y = plan.run(tvec!(t.into_tvalue()))?;
        let y = y[0].cast_to::<i8>()?;
        Ok(y.try_as_plain_ram()?.as_slice::<i8>()?.to_vec())
    })
}
