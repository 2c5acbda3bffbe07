// `model!` straight from TF Lite Micro's person_detect.tflite: the expanded code gives TF Lite's
// reference output on the person test input ([-113, 113], tests/fixtures/tflite).
tinynas_runtime::model!(Person, "fixtures/person_detect.tflite");

fn main() {
    static INPUT: &[u8; 9216] = include_bytes!("../../../../tests/fixtures/tflite/person_detect.inputs/person_detect_person.bin");
    let image: [i8; Person::INPUT_LEN] = core::array::from_fn(|i| INPUT[i] as i8);
    let mut arena = [0u8; Person::ARENA_BYTES];
    let p = Person::new().predict(&image, &mut arena);
    assert_eq!(p.logits, [-113, 113]);
    assert_eq!(p.class, 1);
}
