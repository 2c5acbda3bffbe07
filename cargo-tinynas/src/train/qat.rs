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

use super::export::{calibrate, stages, ExportError, Stage};
use super::layers::{Conv2d, Dense, FakeQuant, GlobalAvgPool, Layer, Pool, Relu};
use super::net::Net;
use crate::data::Cache;
use tinynas_model::Activation;

/// The fake-quantised copy of `net`, with activation grids calibrated on `calib`.
pub fn qat_net(net: &mut Net, data: &mut Cache, calib: &[usize]) -> Result<Net, ExportError> {
    let ranges = calibrate(net, data, calib)?;
    let st = stages(net).map_err(ExportError::Graph)?;
    // The int8 input: u8 pixels at scale 1/255.
    let mut in_scale = 1.0 / 255.0;
    let mut in_range = (0.0, 1.0);
    let mut layers: Vec<Box<dyn Layer>> = Vec::new();
    for (i, (stage, _)) in st.into_iter().enumerate() {
        let (lo, hi) = ranges[i];
        match stage {
            Stage::Conv {
                w,
                b,
                out_c,
                k,
                stride,
                padding,
                act,
            } => {
                let in_c = w.len() / (out_c * k[0] * k[1]).max(1);
                let mut conv = Conv2d::new(in_c, out_c, k, stride, padding, 0);
                conv.weight.value = w;
                conv.bias.value = b;
                conv.input_grad = !layers.is_empty();
                conv.qat_input_scale = Some(in_scale);
                layers.push(Box::new(conv));
                match act {
                    Activation::Relu => layers.push(Box::new(Relu::new(None))),
                    Activation::Relu6 => layers.push(Box::new(Relu::new(Some(6.0)))),
                    Activation::None => {}
                }
                let fq = FakeQuant::new(lo, hi);
                (in_scale, in_range) = (fq.scale, fq.range);
                layers.push(Box::new(fq));
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
