//! Writes the sample model committed as `tests/fixtures/nanonas-k8-c3.tnas`: a NanoNAS A(8, 3)
//! network on 32x32x3 `u8` input with 10 classes and seeded random weights.
//!
//! `cargo run -p tinynas-model --example write_fixture -- tests/fixtures/nanonas-k8-c3.tnas`

fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| "nanonas-k8-c3.tnas".into());
    let mut rng = tinynas_model::random::SplitMix(8_3);
    let mut model = tinynas_model::random::nanonas(&mut rng, 8, 3, tinynas_model::Shape::new(32, 32, 3), 10)
        .expect("a valid network");
    model.labels = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    std::fs::write(&out, tinynas_model::format::to_bytes(&model)).expect("write the model");
    eprintln!("wrote {out}");
}
