//! trybuild tests of `model!`: a valid model compiles and runs; each kind of bad input is a
//! `compile_error!` at the path literal (or at the offending token), never a panic of the macro.
//!
//! The model files are written by this driver into trybuild's project folder
//! (`<target>/tests/trybuild/tinynas-macros/fixtures/`), which is the `CARGO_MANIFEST_DIR` the
//! test programs are compiled with, so the programs name them by relative paths.

use std::path::PathBuf;
use tinynas_model::format::to_bytes;
use tinynas_model::random::{nanonas, SplitMix};
use tinynas_model::*;

fn fixtures_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().expect("CARGO_TARGET_TMPDIR is <target>/tmp");
    target
        .join("tests")
        .join("trybuild")
        .join(env!("CARGO_PKG_NAME"))
        .join("fixtures")
}

fn write_fixtures() {
    let dir = fixtures_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let model = nanonas(&mut SplitMix(1), 2, 1, Shape::new(8, 8, 1), 3).unwrap();
    let good = to_bytes(&model);
    let w = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
    w("valid.tnas", &good);
    w("truncated.tnas", &good[..good.len() / 2]);
    let mut v = good.clone();
    v[..4].copy_from_slice(b"ONNX");
    w("bad_magic.tnas", &v);
    let mut v = good.clone();
    let last = v.len() - 1;
    v[last] ^= 0xff;
    w("corrupted.tnas", &v);
    let mut v = good.clone();
    v[4] = 7;
    w("future_version.tnas", &v);
    // A graph the IR rejects, in a well-formed file with a correct checksum: a dense layer whose
    // weight count does not match its input.
    let mut bad = model.clone();
    if let Some(Op::FullyConnected { weights, .. }) = bad.nodes.last_mut().map(|n| &mut n.op) {
        weights.pop();
    }
    w("invalid_graph.tnas", &to_bytes_unchecked(&bad));
    let mut i8_model = model.clone();
    i8_model.input_type = InputType::I8;
    w("i8_input.tnas", &to_bytes(&i8_model));
    // TF Lite Micro's person_detect and a damaged copy.
    let tflite = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tflite");
    let pd = std::fs::read(tflite.join("person_detect.tflite")).unwrap();
    w("person_detect.tflite", &pd);
    let mut v = pd.clone();
    v[20..28].copy_from_slice(&[0xff; 8]);
    w("corrupted.tflite", &v);
}

/// `to_bytes` writes whatever it is given; the reader is what checks.
fn to_bytes_unchecked(m: &Model) -> Vec<u8> {
    to_bytes(m)
}

#[test]
fn ui() {
    write_fixtures();
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
