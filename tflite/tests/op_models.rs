//! The converter-built models of `tests/fixtures/tflite/make_op_models.py`, one or more per
//! supported operator path (PAD, PADV2, CONCATENATION, MEAN with and without keep_dims and
//! with equal quantisations, ADD, pools, uint8
//! input, per-tensor weights, an output DEQUANTIZE), import and run on the host interpreter bit
//! for bit as TF Lite's reference kernels: every tensor an operator writes and the final output.
//! References: `make_references.py`, with TF Lite's own interpreter.

use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::PathBuf;
use tinynas_model::host::{HostModel, Input};
use tinynas_model::{InputType, Op};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tflite")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|v| format!("{v:02x}")).collect()
}

/// Imports `stem.tflite`, runs it on every reference input and compares every node's tensor
/// with TF Lite's; returns the model for op-specific checks.
fn check(stem: &str) -> tinynas_model::Model {
    let bytes = std::fs::read(fixtures().join(format!("{stem}.tflite"))).unwrap();
    let refs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(format!("{stem}.references.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        refs["model_sha256"].as_str().unwrap(),
        hex(&Sha256::digest(&bytes)),
        "{stem}: the references were made from another model file"
    );
    let imported = tinynas_tflite::import(&bytes).unwrap();
    let m = &imported.model;
    // The new ops survive the .tnas format.
    let back = tinynas_model::format::read(&tinynas_model::format::to_bytes(m)).unwrap();
    assert_eq!(&back, m, "{stem}: .tnas round trip");
    let host = HostModel::new(m).unwrap();
    let inputs = refs["inputs"].as_object().unwrap();
    assert!(inputs.len() >= 4, "{stem}: too few reference inputs");
    for (name, r) in inputs {
        let raw = std::fs::read(fixtures().join(format!("{stem}.inputs/{name}.bin"))).unwrap();
        let x: Vec<i8> = raw.iter().map(|&b| b as i8).collect();
        let input = match m.input_type {
            InputType::U8 => Input::U8(&raw),
            InputType::I8 => Input::I8(&x),
        };
        let all = host.run_all(input).unwrap();
        let tensors = r["tensors"].as_object().unwrap();
        // Every tensor TF Lite's operators wrote is one of ours, or the input QUANTIZE's /
        // output DEQUANTIZE's that the import folds away (at most one each).
        let ours: BTreeSet<String> = imported.tensors.iter().map(|t| t.to_string()).collect();
        let folded = tensors.keys().filter(|t| !ours.contains(*t)).count();
        assert!(
            folded <= 2,
            "{stem}/{name}: {folded} TF Lite tensors have no node"
        );
        for (i, y) in all.iter().enumerate() {
            let t = imported.tensors[i].to_string();
            let want = &tensors[&t];
            let bytes: Vec<u8> = y.iter().map(|&v| v as u8).collect();
            assert_eq!(
                want["len"].as_u64(),
                Some(bytes.len() as u64),
                "{stem}/{name}: tensor {t} length"
            );
            assert_eq!(
                want["sha256"].as_str().unwrap(),
                hex(&Sha256::digest(&bytes)),
                "{stem}/{name}: node {i} ({}, {}) differs from TF Lite's tensor {t}",
                m.nodes[i].op.kind(),
                m.nodes[i].name
            );
        }
        let out = host.run(input).unwrap();
        let want = &r["output"].as_array().unwrap();
        assert_eq!(out.len(), want.len(), "{stem}/{name}: output length");
        if want.iter().all(|v| v.is_i64()) {
            let want: Vec<i8> = want.iter().map(|v| v.as_i64().unwrap() as i8).collect();
            assert_eq!(out, want, "{stem}/{name}: final output");
        } else {
            // A float output after the folded DEQUANTIZE: ours dequantised as TF Lite does
            // (`static_cast<float>(double(scale) * (q - zero_point))`).
            let q = m.quant(m.output());
            for (k, (&o, w)) in out.iter().zip(want.iter()).enumerate() {
                let f = (f64::from(q.scale) * f64::from(i32::from(o) - q.zero_point)) as f32;
                assert_eq!(
                    f,
                    w.as_f64().unwrap() as f32,
                    "{stem}/{name}: output {k} ({o})"
                );
            }
        }
    }
    imported.model
}

fn ops(m: &tinynas_model::Model) -> Vec<&'static str> {
    m.nodes.iter().map(|n| n.op.kind()).collect()
}

#[test]
fn int8_model_with_pad_concat_add_pools_and_mean_equals_tflite() {
    let m = check("ops_int8");
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
    let m = check("ops_uint8_per_tensor");
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
    let m = check("ops_mean_same_quant");
    let mean = m.nodes.iter().position(|n| n.op == Op::Mean).unwrap();
    assert_eq!(m.quant(m.nodes[mean].inputs[0]), m.quant(mean + 1));
}
