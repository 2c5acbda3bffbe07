//! The converter-built models of `tests/fixtures/tflite/make_op_models.py`, one or more per
//! supported operator path (PAD, PADV2, CONCATENATION, MEAN with and without keep_dims and
//! with equal quantisations, ADD, pools, uint8
//! input, per-tensor weights, an output DEQUANTIZE, a uint8 output), import and run on the host interpreter bit
//! for bit as TF Lite's reference kernels: every tensor an operator writes and the final output.
//! References: `make_references.py`, with TF Lite's own interpreter.

mod common;

use common::check;
use tinynas_model::{Activation, InputType, Op};

fn ops(m: &tinynas_model::Model) -> Vec<&'static str> {
    m.nodes.iter().map(|n| n.op.kind()).collect()
}

#[test]
fn int8_model_with_pad_concat_add_pools_and_mean_equals_tflite() {
    let imported = check("ops_int8");
    assert_eq!(imported.output, tinynas_tflite::FileOutput::Int8);
    let m = imported.model;
    assert_eq!(m.input_type, InputType::I8);
    let kinds = ops(&m);
    for k in [
        "Pad",
        "Conv2d",
        "DepthwiseConv2d",
        "Concat",
        "Add",
        "MaxPool2d",
        "AvgPool2d",
        "Mean",
        "FullyConnected",
        "Softmax",
    ] {
        assert!(kinds.contains(&k), "no {k} in {kinds:?}");
    }
    let concat = m.nodes.iter().find(|n| n.op == Op::Concat).unwrap();
    assert_eq!(concat.inputs.len(), 3);
    assert!(m
        .nodes
        .iter()
        .any(|n| matches!(n.op, Op::DepthwiseConv2d { multiplier: 2, .. })));
    // Keras's global average pool: MEAN without keep_dims, input and output quantisation apart.
    let mean = m.nodes.iter().position(|n| n.op == Op::Mean).unwrap();
    assert_ne!(m.quant(m.nodes[mean].inputs[0]), m.quant(mean + 1));
}

#[test]
fn uint8_input_per_tensor_weights_padv2_and_keep_dims_mean_equal_tflite() {
    let imported = check("ops_uint8_per_tensor");
    // Its final DEQUANTIZE is folded away: the file's output is float.
    assert_eq!(imported.output, tinynas_tflite::FileOutput::Float32);
    let m = imported.model;
    assert_eq!(m.input_type, InputType::U8);
    // PADV2 with its own constant, not the zero point.
    let pad = m
        .nodes
        .iter()
        .find_map(|n| match n.op {
            Op::Pad { value, .. } => Some((value, m.quant(n.inputs[0]).zero_point)),
            _ => None,
        })
        .unwrap();
    assert_ne!(i32::from(pad.0), pad.1, "the pad value is the zero point");
    // tf.reduce_mean(keepdims=True): the file states a 1x1x1xC output.
    assert!(m.nodes.iter().any(|n| n.op == Op::Mean));
    // Per-tensor weights: one scale per layer.
    for n in &m.nodes {
        let scales = match &n.op {
            Op::Conv2d { conv, .. } | Op::DepthwiseConv2d { conv, .. } => &conv.weight_scales,
            Op::FullyConnected { weight_scales, .. } => weight_scales,
            _ => continue,
        };
        assert!(
            scales.iter().all(|&s| s == scales[0]),
            "{}: per channel",
            n.name
        );
    }
}

#[test]
fn mean_with_equal_input_and_output_quantisation_equals_tflite() {
    let m = check("ops_mean_same_quant").model;
    let mean = m.nodes.iter().position(|n| n.op == Op::Mean).unwrap();
    assert_eq!(m.quant(m.nodes[mean].inputs[0]), m.quant(mean + 1));
}

#[test]
fn uint8_input_and_uint8_output_equal_tflite() {
    let imported = check("ops_uint8_io");
    assert_eq!(imported.model.input_type, InputType::U8);
    assert_eq!(imported.output, tinynas_tflite::FileOutput::Uint8);
    // The final QUANTIZE to uint8 is folded away and said so.
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.contains("final QUANTIZE to uint8")),
        "{:?}",
        imported.notes
    );
    assert!(imported
        .model
        .nodes
        .iter()
        .any(|n| matches!(n.op, Op::Softmax { .. })));
}

/// MLPerf Tiny's keyword-spotting DS-CNN: a 10x4 (even, not square) stride-2 convolution with
/// SAME padding, and an average pool over the whole 25x5 map whose stride (Keras's default, the
/// window) is 25x5.
#[test]
fn mlperf_kws_dscnn_equals_tflite() {
    let m = check("mlperf_kws_dscnn").model;
    assert!(m
        .nodes
        .iter()
        .any(|n| matches!(&n.op, Op::Conv2d { conv, .. } if conv.kernel == [10, 4])));
    assert!(m
        .nodes
        .iter()
        .any(|n| matches!(&n.op, Op::AvgPool2d(p) if p.size == [25, 5])));
}

/// MLPerf Tiny's image-classification ResNet-8: three ADDs with a fused RELU, 1x1 stride-2
/// projections.
#[test]
fn mlperf_ic_resnet8_equals_tflite() {
    let m = check("mlperf_ic_resnet8").model;
    let adds = m
        .nodes
        .iter()
        .filter(|n| {
            matches!(
                n.op,
                Op::Add {
                    activation: Activation::Relu
                }
            )
        })
        .count();
    assert_eq!(adds, 3);
}

/// MLPerf Tiny's anomaly-detection autoencoder (narrowed): ten FULLY_CONNECTED layers on a
/// 640-value input, 640 values out.
#[test]
fn mlperf_ad_autoencoder_equals_tflite() {
    let m = check("mlperf_ad_autoencoder").model;
    assert_eq!(m.classes(), 640);
    assert_eq!(m.nodes.len(), 10);
}

/// TF Lite Micro's micro_speech model (`tiny_conv`): a 10x8 stride-2 convolution with SAME
/// padding, then one dense layer of 4,000 inputs.
#[test]
fn tflm_micro_speech_equals_tflite() {
    let m = check("tflm_micro_speech").model;
    assert!(m.nodes.iter().any(
        |n| matches!(&n.op, Op::Conv2d { conv, .. } if conv.kernel == [10, 8] && conv.stride == 2)
    ));
}

/// TF Lite Micro's magic_wand model: 4x3 and 4x1 kernels, and a 3x1 max pool whose stride 3x1
/// runs over a map one column wide (taken as stride 3).
#[test]
fn tflm_magic_wand_equals_tflite() {
    let m = check("tflm_magic_wand").model;
    assert!(m
        .nodes
        .iter()
        .any(|n| matches!(&n.op, Op::MaxPool2d(p) if p.size == [3, 1] && p.stride == 3)));
}
