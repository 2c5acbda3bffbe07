//! Shared by the TF Lite import tests: compare an imported model with the committed references
//! of `tests/fixtures/tflite/make_references.py`, tensor by tensor.

use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::PathBuf;
use tinynas_model::host::{HostModel, Input};
use tinynas_model::InputType;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tflite")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|v| format!("{v:02x}")).collect()
}

/// Imports `stem.tflite`, runs it on every reference input and compares every node's tensor
/// with TF Lite's; returns the model for op-specific checks.
pub fn check(stem: &str) -> tinynas_tflite::Imported {
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
        // output DEQUANTIZE's / QUANTIZE's that the import folds away (at most one each).
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
        if r["output_dtype"] == "uint8" {
            // TF Lite's uint8 output after the folded final QUANTIZE: ours + 128.
            let ours: Vec<i64> = out.iter().map(|&v| i64::from(v) + 128).collect();
            let want: Vec<i64> = want.iter().map(|v| v.as_i64().unwrap()).collect();
            assert_eq!(ours, want, "{stem}/{name}: final output (uint8)");
        } else if want.iter().all(|v| v.is_i64()) {
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
    imported
}
