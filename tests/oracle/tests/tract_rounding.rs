//! Where tract's own int8 arithmetic rounds differently from TF Lite's, and by how much.
//!
//! tract requantises a convolution by multiplying the int32 accumulator by the combined scale in
//! `f32` and rounding half to even. TF Lite (and our runtime) multiply by a 31-bit fixed-point
//! multiplier (`SaturatingRoundingDoublingHighMul`, which rounds half away from zero except that an
//! exact negative tie goes toward zero) and then `RoundingDivideByPOT` (half away from zero). The
//! results differ on exact ties and where f32 loses precision near a tie: by at most 1 LSB per op,
//! which this test asserts. The oracle in src/lib.rs therefore takes tract's exact int32
//! accumulators and writes TF Lite's requantisation as tract integer ops, and is bit-exact; the
//! runtime is never bent toward tract's rounding.

use tinynas_model::random::{Source, SplitMix};
use tinynas_model::*;
use tinynas_oracle_tests::*;

#[test]
fn tract_native_requantisation_is_within_one_lsb() {
    let mut r = SplitMix(42);
    let (mut outputs, mut off_by_one) = (0usize, 0usize);
    for case in 0..400u64 {
        let c = r.int(1, 4) as usize;
        let (h, w) = (r.int(3, 8) as usize, r.int(3, 8) as usize);
        let oc = r.int(1, 6) as usize;
        let k = r.pick(&[1usize, 3, 5]);
        let xq = QParams {
            scale: r.real(0.01, 0.2) as f32,
            zero_point: r.int(-100, 100) as i32,
        };
        let mut b = ModelBuilder::new(InputType::I8, Shape::new(h, w, c), xq).unwrap();
        let weights = (0..oc * k * k * c)
            .map(|_| r.int(-127, 127) as i8)
            .collect();
        let weight_scales: Vec<f32> = (0..oc).map(|_| r.real(0.002, 0.05) as f32).collect();
        let bias = (0..oc).map(|_| r.int(-2000, 2000) as i32).collect();
        let fan = (k * k * c) as f64;
        let yq = QParams {
            scale: (f64::from(xq.scale) * 0.02 * 64.0 * 73.0 * fan.sqrt() / 40.0) as f32,
            zero_point: r.int(-20, 20) as i32,
        };
        let conv = ConvParams {
            kernel: [k, k],
            stride: r.int(1, 2) as usize,
            padding: Padding::Same,
            activation: Activation::None,
            weights,
            weight_scales,
            bias,
        };
        b.add(
            "conv",
            Op::Conv2d {
                out_channels: oc,
                conv,
            },
            &[0],
            yq,
        )
        .unwrap();
        let model = b.finish().unwrap();
        let native = tract_native_conv(&model).unwrap();
        let raw = random_input(&model, case);
        let ours = host_run(&model, Input::I8(&raw.1));
        let theirs = native(&raw.1).unwrap();
        let d = max_diff(&ours, &theirs);
        assert!(
            d <= 1,
            "case {case}: tract's native requantisation is {d} LSB away"
        );
        outputs += ours.len();
        off_by_one += ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
    }
    println!(
        "{outputs} outputs, {off_by_one} differ by 1 LSB from tract's native f32 requantisation"
    );
    assert!(outputs > 10_000);
}
