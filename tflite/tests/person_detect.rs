//! TF Lite Micro's `person_detect.tflite` imports and runs, on the host interpreter, bit for bit
//! as TF Lite's reference kernels: the final output and every tensor an operator writes, on the
//! model's two test images and on random inputs. The references were made by
//! `tests/fixtures/tflite/make_references.py` with TF Lite's own interpreter.

mod common;

use tinynas_model::{InputType, Op};

#[test]
fn person_detect_equals_tflite_reference_kernels_in_every_tensor() {
    let imported = common::check("person_detect");
    let m = &imported.model;
    assert_eq!(m.input_type, InputType::I8);
    assert_eq!(m.input_shape.elements(), 96 * 96);
    assert_eq!(m.nodes.len(), 31);
    // No edge conversion is folded away: every tensor TF Lite writes is one of ours.
    assert_eq!(imported.tensors.len(), 31);
    // Taps that land inside the input; counting the padding taps too gives the 7,157,888 that
    // the other runtimes' per-MAC figures use.
    assert_eq!(m.macs(), 7_072_280);
    // The first layer is a depthwise convolution with depth multiplier 8.
    assert!(matches!(
        m.nodes[0].op,
        Op::DepthwiseConv2d { multiplier: 8, .. }
    ));
}
