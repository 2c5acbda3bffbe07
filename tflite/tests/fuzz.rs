//! The reader never panics: 1,000+ mutations of person_detect.tflite, and of the converter-built
//! models that hold PAD, PADV2, CONCATENATION, MEAN, the uint8 edges and a pool stride that one
//! axis does not use (flipped bytes, overwritten words,
//! truncations, splices), each import to a model or to an error, and what imports lowers (and, for
//! the small models, runs) without panicking. Seeded, so a failure reproduces; the failing case's
//! mutation is in the message.

use std::path::PathBuf;
use tinynas_model::host::{HostModel, Input};
use tinynas_model::random::{Source, SplitMix};
use tinynas_model::InputType;

/// The model crate's seeded generator, with a bound.
struct Rng(SplitMix);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn a_thousand_mutations_of_person_detect_never_panic() {
    let refused = mutate("person_detect.tflite", 1200, false);
    // The mutations reach the structure: most of them are refused.
    assert!(
        refused > 600,
        "only {refused} of 1200 mutations were refused"
    );
}

#[test]
fn mutations_of_the_op_models_never_panic() {
    for file in [
        "ops_int8.tflite",
        "ops_uint8_per_tensor.tflite",
        "ops_uint8_io.tflite",
        "tflm_magic_wand.tflite",
    ] {
        let refused = mutate(file, 600, true);
        assert!(
            refused > 300,
            "{file}: only {refused} of 600 mutations were refused"
        );
    }
}

/// Imports `cases` mutations of the fixture `file`; returns how many were refused. `run`: run
/// what imports on the host interpreter too (a zero input).
fn mutate(file: &str, cases: usize, run: bool) -> usize {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/tflite")
        .join(file);
    let good = std::fs::read(path).unwrap();
    assert!(tinynas_tflite::import(&good).is_ok());
    let mut rng = Rng(SplitMix(0x7f1_17e));
    let (mut ok, mut refused) = (0usize, 0usize);
    // Most of the file is weight data, where a flip changes values but not structure; bias the
    // mutations to the first and last 8 KiB, where the flatbuffer's tables and vectors sit.
    for case in 0..cases {
        let mut v = good.clone();
        let at = |rng: &mut Rng, len: usize| {
            if rng.below(4) == 0 {
                rng.below(len)
            } else if rng.below(2) == 0 {
                rng.below(8192.min(len))
            } else {
                len - 1 - rng.below(8192.min(len))
            }
        };
        let what = match case % 5 {
            0 => {
                let n = 1 + rng.below(8);
                for _ in 0..n {
                    let i = at(&mut rng, v.len());
                    v[i] ^= 1 << rng.below(8);
                }
                format!("{n} bit flips")
            }
            1 => {
                let i = at(&mut rng, v.len() - 4);
                let w = match rng.below(4) {
                    0 => u32::MAX,
                    1 => 0,
                    2 => 0x8000_0000,
                    _ => rng.next() as u32,
                };
                v[i..i + 4].copy_from_slice(&w.to_le_bytes());
                format!("word {w:#x} at {i}")
            }
            2 => {
                let n = rng.below(v.len());
                v.truncate(n);
                format!("truncated to {n}")
            }
            3 => {
                let (a, b) = (at(&mut rng, v.len()), at(&mut rng, v.len()));
                let n = 1 + rng.below(64.min(v.len() - a.max(b)));
                let chunk = v[a..a + n].to_vec();
                v[b..b + n].copy_from_slice(&chunk);
                format!("{n} bytes copied from {a} to {b}")
            }
            _ => {
                let i = at(&mut rng, v.len());
                v[i] = rng.next() as u8;
                format!("byte at {i}")
            }
        };
        let r = std::panic::catch_unwind(|| {
            let imported = tinynas_tflite::import(&v)?;
            // What imports must also lower and plan without panicking, and run.
            if let (true, Ok(host)) = (run, HostModel::new(&imported.model)) {
                let m = &imported.model;
                let n = m.input_shape.elements();
                let _ = match m.input_type {
                    InputType::U8 => host.run(Input::U8(&vec![0; n])),
                    InputType::I8 => host.run(Input::I8(&vec![0; n])),
                };
            } else {
                let _ = tinynas_model::lower::lower(&imported.model);
            }
            Ok::<_, tinynas_tflite::ImportError>(())
        });
        match r {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
            }
            Err(_) => panic!("{file}: case {case} ({what}) panicked"),
        }
    }
    assert_eq!(ok + refused, cases);
    eprintln!("{file}: {ok} mutations imported, {refused} refused");
    refused
}
