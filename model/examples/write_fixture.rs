//! Writes the sample models committed under `tests/fixtures/`:
//!
//! * `nanonas-k8-c3.tnas`: a NanoNAS A(8, 3) network on 32x32x3 `u8` input, 10 classes;
//! * `all-ops.tnas`: a random `i8`-input network that uses every op (the first seed whose network
//!   does), so that the no_std cross-builds compile every kernel.
//!
//! Weights are seeded random numbers, not trained ones.
//! `cargo run -p tinynas-model --example write_fixture -- tests/fixtures`

use std::collections::BTreeSet;
use tinynas_model::random::{nanonas, network, Config, SplitMix};
use tinynas_model::{format, InputType, Shape};

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let mut model =
        nanonas(&mut SplitMix(83), 8, 3, Shape::new(32, 32, 3), 10).expect("a valid network");
    model.labels = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    std::fs::write(dir.join("nanonas-k8-c3.tnas"), format::to_bytes(&model))
        .expect("write the model");

    let cfg = Config {
        max_side: 12,
        max_channels: 8,
        max_layers: 10,
        residual: 0.3,
    };
    for seed in 0.. {
        let m = network(&mut SplitMix(seed), &cfg);
        let kinds: BTreeSet<_> = m.nodes.iter().map(|n| n.op.kind()).collect();
        if kinds.len() == 9 && m.input_type == InputType::I8 {
            std::fs::write(dir.join("all-ops.tnas"), format::to_bytes(&m))
                .expect("write the model");
            eprintln!("all-ops.tnas: seed {seed}, {} nodes", m.nodes.len());
            break;
        }
    }
}
