//! The converter-built models of `tests/fixtures/tflite/make_op_models.py`, one or more per
//! supported operator path (PAD, PADV2, CONCATENATION, MEAN with and without keep_dims and
//! with equal quantisations, ADD, pools, uint8
//! input, per-tensor weights, an output DEQUANTIZE), import and run on the host interpreter bit
//! for bit as TF Lite's reference kernels: every tensor an operator writes and the final output.
//! References: `make_references.py`, with TF Lite's own interpreter.

mod common;

use common::check;
use tinynas_model::{InputType, Op};

fn ops(m: &tinynas_model::Model) -> Vec<&'static str> {
    m.nodes.iter().map(|n| n.op.kind()).collect()
}

#[test]
fn int8_model_with_pad_concat_add_pools_and_mean_equals_tflite() {
    let m = check("ops_int8").model;
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
    let m = check("ops_uint8_per_tensor").model;
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
