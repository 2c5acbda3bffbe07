//! Opt-in tests that need a real board behind a debug probe. They are `#[ignore]`d so that
//! `cargo test` never needs hardware; with a board connected, run:
//!
//! ```sh
//! TINYNAS_TEST_CHIP=STM32F746NGHx cargo test -p cargo-tinynas --test hardware -- --ignored
//! # several probes connected: also TINYNAS_TEST_PROBE=0483:374b[:SERIAL]
//! ```

use std::path::PathBuf;

use cargo_tinynas::bench::{self, Options};
use cargo_tinynas::board::probe::ProbeBoard;
use cargo_tinynas::board::LatencyUnit;

fn board() -> ProbeBoard {
    let chip = std::env::var("TINYNAS_TEST_CHIP")
        .expect("set TINYNAS_TEST_CHIP to the probe-rs name of the connected chip");
    let mut b = ProbeBoard::new(&chip).unwrap();
    b.probe = std::env::var("TINYNAS_TEST_PROBE").ok();
    b
}

#[test]
#[ignore = "needs a board: set TINYNAS_TEST_CHIP and run with --ignored"]
fn fixture_on_the_board_matches_the_host_and_counts_cycles() {
    let bytes = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/all-ops.tnas"),
    )
    .unwrap();
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-cache");
    let mut b = board();
    let o = bench::run(
        &bytes,
        &mut b,
        &Options {
            inputs: 3,
            per_layer: true,
            ..Options::default()
        },
        &cache,
        |m| eprintln!("{m}"),
    )
    .unwrap();
    assert!(
        o.outputs_match(),
        "device {:?} != host {:?}",
        o.measurement.outputs,
        o.host_outputs
    );
    assert_eq!(o.measurement.unit, LatencyUnit::Cycles);
    assert!(o.measurement.latency.iter().all(|&c| c > 0));
    eprintln!("{}", bench::table(&o));
}
