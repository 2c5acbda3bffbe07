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
    // The first layer, a depthwise convolution of the one-channel input with depth multiplier 8,
    // is imported as the convolution it equals (its 8 output channels are TF Lite's, as every
    // tensor's hash above says), and the import says so.
    assert!(matches!(
        m.nodes[0].op,
        Op::Conv2d {
            out_channels: 8,
            ..
        }
    ));
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.starts_with("operator 0 (DEPTHWISE_CONV_2D) reads one channel")),
        "{:?}",
        imported.notes
    );
}
