//! int8 export: batch norm folded into the convolutions, per-output-channel symmetric int8
//! weights, int32 biases, and per-tensor asymmetric int8 activations whose ranges are calibrated
//! on training images. The result is a `tinynas_model::Model`: run it with the host interpreter to
//! get the accuracy of the code that runs on the microcontroller.

use super::fit::to_tensor;
use super::layers::{quantize_bias, quantize_weights, transpose, View};
use super::net::Net;
use super::Tensor;
use crate::{ReadError, Samples};
use tinynas_model::{
    Activation, ConvParams, InputType, Model, ModelBuilder, Op, Padding, PoolParams, QParams, Shape,
};

/// A (depthwise) convolution of the folded network: batch norm folded into `w` and `b`, the ReLU
/// after it fused as `act`.
pub(crate) struct ConvStage {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub k: [usize; 2],
    pub stride: usize,
    pub padding: Padding,
    pub act: Activation,
}

impl ConvStage {
    pub fn out_c(&self) -> usize {
        self.b.len()
    }

    /// The int8 parameters: symmetric int8 weights per output channel and int32 biases at
    /// `in_scale x weight scale`. `taps_major`: the weights are laid out `[taps][out]` (depthwise),
    /// so each channel is quantised across that layout; else `[out][...]`.
    fn int8(&self, in_scale: f32, taps_major: bool) -> ConvParams {
        let oc = self.out_c();
        let (weights, weight_scales) = if taps_major {
            let taps = self.k[0] * self.k[1];
            let (q, scales) = quantize_weights(&transpose(&self.w, taps, oc), oc);
            (transpose(&q, oc, taps), scales)
        } else {
            quantize_weights(&self.w, oc)
        };
        let bias = quantize_bias(&self.b, in_scale, &weight_scales);
        ConvParams {
            kernel: self.k,
            stride: self.stride,
            padding: self.padding,
            activation: self.act,
            weights,
            weight_scales,
            bias,
        }
    }
}

/// A float stage of the folded network.
pub(crate) enum Stage {
    /// Weights `[out][kh][kw][in]`.
    Conv(ConvStage),
    /// Weights `[taps][out]`, as the IR lays them out.
    Depthwise {
        multiplier: usize,
        conv: ConvStage,
    },
    Pool {
        max: bool,
        k: [usize; 2],
        stride: usize,
        padding: Padding,
    },
    Gap,
    Dense {
        w: Vec<f32>,
        b: Vec<f32>,
        out_f: usize,
    },
}

/// Folds a batch norm at `i + 1` into the (depthwise) convolution at `i` (`scale(o, s)` scales
/// output channel `o`'s weights by `s`; the bias is folded here), and takes a ReLU after it as the
/// fused activation. Returns the activation and the index of the stage's last layer.
fn fold_bn_relu(
    views: &[View<'_>],
    i: usize,
    out_c: usize,
    b: &mut [f32],
    mut scale: impl FnMut(usize, f32),
) -> (Activation, usize) {
    let mut end = i;
    if let Some(View::BatchNorm(bn)) = views.get(i + 1) {
        for (o, b) in b.iter_mut().enumerate().take(out_c) {
            let s = bn.gamma.value[o] / (bn.running_var[o] + bn.eps).sqrt();
            scale(o, s);
            *b = (*b - bn.running_mean[o]) * s + bn.beta.value[o];
        }
        end += 1;
    }
    let mut act = Activation::None;
    if let Some(View::Relu(r)) = views.get(end + 1) {
        act = if r.cap == Some(6.0) {
            Activation::Relu6
        } else {
            Activation::Relu
        };
        end += 1;
    }
    (act, end)
}

/// Folds the network into stages, and the index of the last layer of each stage.
pub(crate) fn stages(net: &Net) -> Result<Vec<(Stage, usize)>, String> {
    let mut out = Vec::new();
    let views: Vec<View<'_>> = net.layers.iter().map(|l| l.view()).collect();
    let mut i = 0;
    while i < views.len() {
        match views[i] {
            View::Conv(c) => {
                let (mut w, mut b) = (c.weight.value.clone(), c.bias.value.clone());
                let per = c.k[0] * c.k[1] * c.in_c;
                // Weights [out][kh][kw][in]: output channel o owns a contiguous run.
                let (act, end) = fold_bn_relu(&views, i, c.out_c, &mut b, |o, s| {
                    w[o * per..(o + 1) * per].iter_mut().for_each(|v| *v *= s)
                });
                let conv = ConvStage {
                    w,
                    b,
                    k: c.k,
                    stride: c.stride,
                    padding: c.padding,
                    act,
                };
                out.push((Stage::Conv(conv), end));
                i = end + 1;
            }
            View::Depthwise(d) => {
                let (mut w, mut b) = (d.weight.value.clone(), d.bias.value.clone());
                let oc = d.in_c * d.multiplier;
                // Weights [kh][kw][out]: output channel o is every oc-th value.
                let (act, end) = fold_bn_relu(&views, i, oc, &mut b, |o, s| {
                    w.iter_mut().skip(o).step_by(oc).for_each(|v| *v *= s)
                });
                let conv = ConvStage {
                    w,
                    b,
                    k: d.k,
                    stride: d.stride,
                    padding: d.padding,
                    act,
                };
                let multiplier = d.multiplier;
                out.push((Stage::Depthwise { multiplier, conv }, end));
                i = end + 1;
            }
            View::Pool(p) => {
                out.push((
                    Stage::Pool {
                        max: p.max,
                        k: p.k,
                        stride: p.stride,
                        padding: p.padding,
                    },
                    i,
                ));
                i += 1;
            }
            View::GlobalAvgPool => {
                out.push((Stage::Gap, i));
                i += 1;
            }
            View::Dropout | View::FakeQuant(_) => i += 1,
            View::Dense(d) => {
                out.push((
                    Stage::Dense {
                        w: d.weight.value.clone(),
                        b: d.bias.value.clone(),
                        out_f: d.out_f,
                    },
                    i,
                ));
                i += 1;
            }
            _ => {
                // Named, not printed with its weights (a layer's Debug holds all of them).
                let name = net.layer_names().get(i).cloned().unwrap_or_default();
                return Err(format!(
                    "the exporter cannot place layer {i} ({name}) on its own"
                ));
            }
        }
    }
    Ok(out)
}

/// Per-tensor asymmetric quantisation of the range `[lo, hi]` (widened to contain 0): the grid
/// [`FakeQuant`](super::layers::FakeQuant) trains with.
fn activation_quant(lo: f32, hi: f32) -> QParams {
    let f = super::layers::FakeQuant::new(lo, hi);
    QParams {
        scale: f.scale,
        zero_point: f.zero_point,
    }
}

/// The output range of each stage of the folded network over the calibration images (eval mode).
/// A stage followed by a [`FakeQuant`](super::layers::FakeQuant) layer (a network fine-tuned with
/// quantisation-aware training) keeps the range it was trained with.
pub fn calibrate(
    net: &mut Net,
    data: &mut dyn Samples,
    calib: &[usize],
) -> Result<Vec<(f32, f32)>, ExportError> {
    let st = stages(net).map_err(ExportError::Graph)?;
    // Calibration: the range of each stage's output over the calibration images (eval mode).
    let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); st.len()];
    let mut buf = Vec::new();
    for chunk in calib.chunks(64) {
        data.read_batch(chunk, &mut buf)?;
        let mut t: Tensor = to_tensor(&buf, chunk.len(), data.shape(), None);
        let mut next = 0;
        for (li, layer) in net.layers.iter_mut().enumerate() {
            t = layer.forward(&t, false);
            if next < st.len() && st[next].1 == li {
                let r = &mut ranges[next];
                for &v in &t.data {
                    r.0 = r.0.min(v);
                    r.1 = r.1.max(v);
                }
                next += 1;
            }
        }
    }
    for (i, (_, end)) in st.iter().enumerate() {
        if let Some(View::FakeQuant(f)) = net.layers.get(end + 1).map(|l| l.view()) {
            ranges[i] = f.range;
        }
    }
    Ok(ranges)
}

/// Exports the trained network as an int8 model, calibrating activation ranges on `calib`.
pub fn export(
    net: &mut Net,
    data: &mut dyn Samples,
    calib: &[usize],
    labels: Vec<String>,
) -> Result<Model, ExportError> {
    let ranges = calibrate(net, data, calib)?;
    export_with_ranges(net, data.shape(), &ranges, labels)
}

/// The int8 model of `net` without calibration data: every activation range `[-1, 1]`. Its
/// shapes, MACs, parameter bytes and planned arena are exact; its outputs mean nothing. For
/// checking an architecture against the budgets before training it.
pub fn shape_model(net: &Net, labels: Vec<String>) -> Result<Model, ExportError> {
    let st = stages(net).map_err(ExportError::Graph)?;
    let ranges = vec![(-1.0, 1.0); st.len()];
    export_with_ranges(net, net.input, &ranges, labels)
}

fn export_with_ranges(
    net: &Net,
    s: crate::ImageShape,
    ranges: &[(f32, f32)],
    labels: Vec<String>,
) -> Result<Model, ExportError> {
    let st = stages(net).map_err(ExportError::Graph)?;
    let mut b = ModelBuilder::new(
        InputType::U8,
        Shape::new(s.h, s.w, s.c),
        QParams {
            scale: 1.0 / 255.0,
            zero_point: 0,
        },
    )?;
    let mut x = 0;
    for (i, (stage, _)) in st.iter().enumerate() {
        let xq = b
            .quant(x)
            .ok_or_else(|| ExportError::Graph("missing tensor".into()))?;
        let (lo, hi) = ranges[i];
        let name = format!("s{i}");
        x = match stage {
            Stage::Conv(c) => {
                let op = Op::Conv2d {
                    out_channels: c.out_c(),
                    conv: c.int8(xq.scale, false),
                };
                b.add(name, op, &[x], activation_quant(lo, hi))?
            }
            Stage::Depthwise { multiplier, conv } => {
                let op = Op::DepthwiseConv2d {
                    multiplier: *multiplier,
                    conv: conv.int8(xq.scale, true),
                };
                b.add(name, op, &[x], activation_quant(lo, hi))?
            }
            Stage::Pool {
                max,
                k,
                stride,
                padding,
            } => {
                let p = PoolParams {
                    size: *k,
                    stride: *stride,
                    padding: *padding,
                };
                b.add(
                    name,
                    if *max {
                        Op::MaxPool2d(p)
                    } else {
                        Op::AvgPool2d(p)
                    },
                    &[x],
                    xq,
                )?
            }
            Stage::Gap => b.add(name, Op::GlobalAveragePool, &[x], activation_quant(lo, hi))?,
            Stage::Dense { w, b: bias, out_f } => {
                let (weights, weight_scales) = quantize_weights(w, *out_f);
                let bias = quantize_bias(bias, xq.scale, &weight_scales);
                let op = Op::FullyConnected {
                    out_features: *out_f,
                    activation: Activation::None,
                    weights,
                    weight_scales,
                    bias,
                };
                b.add(name, op, &[x], activation_quant(lo, hi))?
            }
        };
    }
    b.labels(labels);
    Ok(b.finish()?)
}

/// The class an int8 model predicts for each image of `indices`, through the host interpreter
/// (the runtime's kernels): the one int8 evaluation `train` and `search` measure with.
pub fn int8_predictions(
    model: &Model,
    data: &mut dyn Samples,
    indices: &[usize],
) -> Result<Vec<usize>, ExportError> {
    let host = tinynas_model::host::HostModel::new(model)?;
    let n = data.shape().len();
    let mut buf = Vec::new();
    let mut out = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(256) {
        data.read_batch(chunk, &mut buf)?;
        for k in 0..chunk.len() {
            let y = host
                .run(tinynas_model::host::Input::U8(&buf[k * n..(k + 1) * n]))
                .map_err(|e| ExportError::Graph(e.to_string()))?;
            out.push(
                y.iter()
                    .enumerate()
                    .fold(0, |a, (j, &v)| if v > y[a] { j } else { a }),
            );
        }
    }
    Ok(out)
}

/// Accuracy of an int8 model through the host interpreter (the runtime's kernels).
pub fn int8_accuracy(
    model: &Model,
    data: &mut dyn Samples,
    indices: &[usize],
) -> Result<f32, ExportError> {
    let predicted = int8_predictions(model, data, indices)?;
    let correct = indices
        .iter()
        .zip(&predicted)
        .filter(|&(&i, &p)| data.label(i) == p)
        .count();
    Ok(correct as f32 / indices.len().max(1) as f32)
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot export: {0}")]
    Graph(String),
    #[error(transparent)]
    Model(#[from] tinynas_model::Error),
    #[error(transparent)]
    Data(#[from] ReadError),
}
