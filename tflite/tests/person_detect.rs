//! TF Lite Micro's `person_detect.tflite` imports and runs, on the host interpreter, bit for bit
//! as TF Lite's reference kernels: the final output and every tensor an operator writes, on the
//! model's two test images and on random inputs. The references were made by
//! `tests/fixtures/tflite/make_references.py` with TF Lite's own interpreter.

use sha2::{Digest, Sha256};
use std::path::PathBuf;
use tinynas_model::host::{HostModel, Input};
use tinynas_model::{InputType, Op};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tflite")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|v| format!("{v:02x}")).collect()
}

#[test]
fn person_detect_equals_tflite_reference_kernels_in_every_tensor() {
    let bytes = std::fs::read(fixtures().join("person_detect.tflite")).unwrap();
    let refs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("person_detect.references.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        refs["model_sha256"].as_str().unwrap(),
        hex(&Sha256::digest(&bytes)),
        "the references were made from another model file"
    );
    let imported = tinynas_tflite::import(&bytes).unwrap();
    let m = &imported.model;
    assert_eq!(m.input_type, InputType::I8);
    assert_eq!(m.input_shape.elements(), 96 * 96);
    assert_eq!(m.nodes.len(), 31);
    // Taps that land inside the input; counting the padding taps too gives the 7,157,888 that
    // the other runtimes' per-MAC figures use.
    assert_eq!(m.macs(), 7_072_280);
    // The first layer is a depthwise convolution with depth multiplier 8.
    assert!(matches!(
        m.nodes[0].op,
        Op::DepthwiseConv2d { multiplier: 8, .. }
    ));
    let host = HostModel::new(m).unwrap();
    let inputs = refs["inputs"].as_object().unwrap();
    assert_eq!(inputs.len(), 5);
    for (name, r) in inputs {
        let raw =
            std::fs::read(fixtures().join(format!("person_detect.inputs/{name}.bin"))).unwrap();
        let x: Vec<i8> = raw.iter().map(|&b| b as i8).collect();
        let all = host.run_all(Input::I8(&x)).unwrap();
        let tensors = r["tensors"].as_object().unwrap();
        assert_eq!(
            tensors.len(),
            all.len(),
            "{name}: one reference per operator"
        );
        for (i, y) in all.iter().enumerate() {
            let t = imported.tensors[i].to_string();
            let want = &tensors[&t];
            let bytes: Vec<u8> = y.iter().map(|&v| v as u8).collect();
            assert_eq!(
                want["len"].as_u64(),
                Some(bytes.len() as u64),
                "{name}: tensor {t} length"
            );
            assert_eq!(
                want["sha256"].as_str().unwrap(),
                hex(&Sha256::digest(&bytes)),
                "{name}: node {i} ({}) differs from TF Lite's tensor {t}",
                m.nodes[i].name
            );
        }
        let want: Vec<i8> = r["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap() as i8)
            .collect();
        assert_eq!(
            host.run(Input::I8(&x)).unwrap(),
            want,
            "{name}: final output"
        );
    }
}
