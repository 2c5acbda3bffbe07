//! Quantisation-aware fine-tuning, for when post-training quantisation loses too much accuracy.
//!
//! The trained network is folded the way the export folds it (batch norm into the convolution) and
//! rebuilt with the int8 model's rounding points: each convolution and dense layer computes with
//! its per-channel int8 weights and int32 bias (dequantised), and each tensor the int8 model
//! requantises passes a [`FakeQuant`] on the grid the export will give it (the calibrated range;
//! fused ReLU/ReLU6 clamps before it, as the runtime clamps in the requantisation). The input needs
//! none: `u8 / 255` is exact. Gradients pass straight through (STE). The float master weights are
//! then exported as usual, and the int8 accuracy is measured, as always, by the runtime's kernels.
//!
//! What is not simulated: the runtime multiplies by a 31-bit fixed-point multiplier where this
//! uses f32, so a value exactly between two grid points may round to the other one (1 LSB).

use std::sync::atomic::{AtomicBool, Ordering};

use super::export::{calibrate, export, int8_accuracy, stages, ExportError, Stage};
use super::fit::{fit_until, Options, Progress};
use super::layers::{Conv2d, Dense, DepthwiseConv2d, FakeQuant, GlobalAvgPool, Layer, Pool, Relu};
use super::net::Net;
use crate::Samples;
use tinynas_model::{Activation, Model};

/// When to run the quantisation-aware fine-tune.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QatPolicy {
    /// When post-training quantisation loses more than [`QAT_THRESHOLD`] of validation accuracy.
    Auto,
    Always,
    Never,
}

/// The validation accuracy post-training quantisation may lose before `Auto` fine-tunes.
pub const QAT_THRESHOLD: f32 = 0.01;

/// What the quantisation-aware fine-tune did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QatOutcome {
    /// int8 validation accuracy after post-training quantisation alone.
    pub ptq_val: f32,
    /// int8 validation accuracy after the fine-tune.
    pub qat_val: f32,
    pub epochs: usize,
    /// Whether the fine-tuned model was kept (it is when it is better on validation).
    pub kept: bool,
}

/// What [`quantise`] reports while it works.
#[derive(Debug)]
pub enum Quantising<'a> {
    /// The fine-tune starts; post-training quantisation alone reached `ptq_val`.
    Started {
        ptq_val: f32,
    },
    Progress(Progress<'a>),
}

/// The int8 model `quantise` settled on.
#[derive(Debug)]
pub struct Quantised {
    pub model: Model,
    /// Its int8 validation accuracy (the runtime's kernels on the host).
    pub int8_val: f32,
    /// The fine-tune's outcome, when one ran to the end of an epoch.
    pub qat: Option<QatOutcome>,
}

/// From the post-training-quantised `ptq` model of `best` (float validation accuracy
/// `float_val`): when `policy` asks for it, fine-tunes a fake-quantised copy of `best` with
/// `qopts` on `(train, val)` and keeps its export only if its int8 validation accuracy is better.
/// `train` and `search` both quantise through here.
#[allow(clippy::too_many_arguments)]
pub fn quantise(
    best: &mut Net,
    data: &mut dyn Samples,
    (train, val): (&[usize], &[usize]),
    calib: &[usize],
    ptq: Model,
    float_val: f32,
    policy: QatPolicy,
    qopts: &Options,
    stop: &AtomicBool,
    mut on: impl FnMut(Quantising<'_>),
) -> Result<Quantised, ExportError> {
    let ptq_val = int8_accuracy(&ptq, data, val)?;
    let mut out = Quantised {
        model: ptq,
        int8_val: ptq_val,
        qat: None,
    };
    let want = match policy {
        QatPolicy::Always => true,
        QatPolicy::Never => false,
        QatPolicy::Auto => float_val - ptq_val > QAT_THRESHOLD,
    };
    if !want || qopts.epochs == 0 || stop.load(Ordering::Relaxed) {
        return Ok(out);
    }
    on(Quantising::Started { ptq_val });
    let mut qnet = qat_net(best, data, calib)?;
    let (_, qbest) = fit_until(
        &mut qnet,
        data,
        train,
        val,
        qopts,
        |p| on(Quantising::Progress(p)),
        stop,
    )?;
    if let Some(mut qbest) = qbest {
        let labels = out.model.labels.clone();
        let qmodel = export(&mut qbest, data, calib, labels)?;
        let qat_val = int8_accuracy(&qmodel, data, val)?;
        let kept = qat_val > ptq_val;
        out.qat = Some(QatOutcome {
            ptq_val,
            qat_val,
            epochs: qopts.epochs,
            kept,
        });
        if kept {
            (out.model, out.int8_val) = (qmodel, qat_val);
        }
    }
    Ok(out)
}

/// The fused activation (clamped before the requantisation, as the runtime does it) and the
/// output's fake quantisation; returns the grid's scale and range.
fn push_activation(
    layers: &mut Vec<Box<dyn Layer>>,
    act: Activation,
    lo: f32,
    hi: f32,
) -> (f32, (f32, f32)) {
    match act {
        Activation::Relu => layers.push(Box::new(Relu::new(None))),
        Activation::Relu6 => layers.push(Box::new(Relu::new(Some(6.0)))),
        Activation::None => {}
    }
    let fq = FakeQuant::new(lo, hi);
    let grid = (fq.scale, fq.range);
    layers.push(Box::new(fq));
    grid
}

/// The fake-quantised copy of `net`, with activation grids calibrated on `calib`.
pub fn qat_net(net: &mut Net, data: &mut dyn Samples, calib: &[usize]) -> Result<Net, ExportError> {
    let ranges = calibrate(net, data, calib)?;
    let st = stages(net).map_err(ExportError::Graph)?;
    // The int8 input: u8 pixels at scale 1/255.
    let mut in_scale = 1.0 / 255.0;
    let mut in_range = (0.0, 1.0);
    let mut layers: Vec<Box<dyn Layer>> = Vec::new();
    for (i, (stage, _)) in st.into_iter().enumerate() {
        let (lo, hi) = ranges[i];
        match stage {
            Stage::Conv(c) => {
                let in_c = c.w.len() / (c.out_c() * c.k[0] * c.k[1]).max(1);
                let mut conv = Conv2d::new(in_c, c.out_c(), c.k, c.stride, c.padding, 0);
                (conv.weight.value, conv.bias.value) = (c.w, c.b);
                conv.input_grad = !layers.is_empty();
                conv.qat_input_scale = Some(in_scale);
                layers.push(Box::new(conv));
                (in_scale, in_range) = push_activation(&mut layers, c.act, lo, hi);
            }
            Stage::Depthwise {
                multiplier,
                conv: c,
            } => {
                let in_c = c.out_c() / multiplier.max(1);
                let mut dw = DepthwiseConv2d::new(in_c, multiplier, c.k, c.stride, c.padding, 0);
                (dw.weight.value, dw.bias.value) = (c.w, c.b);
                dw.input_grad = !layers.is_empty();
                dw.qat_input_scale = Some(in_scale);
                layers.push(Box::new(dw));
                (in_scale, in_range) = push_activation(&mut layers, c.act, lo, hi);
            }
            Stage::Pool {
                max,
                k,
                stride,
                padding,
            } => {
                // Max pooling keeps its input's grid; average pooling rounds back onto it.
                layers.push(Box::new(Pool::new(max, k, stride, padding)));
                if !max {
                    layers.push(Box::new(FakeQuant::new(in_range.0, in_range.1)));
                }
            }
            Stage::Gap => {
                layers.push(Box::new(GlobalAvgPool::default()));
                let fq = FakeQuant::new(lo, hi);
                (in_scale, in_range) = (fq.scale, fq.range);
                layers.push(Box::new(fq));
            }
            Stage::Dense { w, b, out_f } => {
                let in_f = w.len() / out_f.max(1);
                let mut d = Dense::new(in_f, out_f, 0);
                d.weight.value = w;
                d.bias.value = b;
                d.qat_input_scale = Some(in_scale);
                layers.push(Box::new(d));
                let fq = FakeQuant::new(lo, hi);
                (in_scale, in_range) = (fq.scale, fq.range);
                layers.push(Box::new(fq));
            }
        }
    }
    Ok(Net {
        arch: net.arch,
        input: net.input,
        classes: net.classes,
        layers,
        timing: None,
    })
}
