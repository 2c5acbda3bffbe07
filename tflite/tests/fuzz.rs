//! The reader never panics: 1,000+ mutations of person_detect.tflite (flipped bytes, overwritten
//! words, truncations, splices) each import to a model or to an error. Seeded, so a failure
//! reproduces; the failing case's seed and mutation are in the message.

use std::path::PathBuf;
use tinynas_model::random::{Source, SplitMix};

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
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/tflite/person_detect.tflite");
    let good = std::fs::read(path).unwrap();
    assert!(tinynas_tflite::import(&good).is_ok());
    let mut rng = Rng(SplitMix(0x7f1_17e));
    let (mut ok, mut refused) = (0usize, 0usize);
    // Most of the file is weight data, where a flip changes values but not structure; bias the
    // mutations to the first and last 8 KiB, where the flatbuffer's tables and vectors sit.
    for case in 0..1200 {
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
        let r = std::panic::catch_unwind(|| tinynas_tflite::import(&v));
        match r {
            Ok(Ok(imported)) => {
                ok += 1;
                // What imports must also lower and plan without panicking.
                let _ = tinynas_model::lower::lower(&imported.model);
            }
            Ok(Err(e)) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
            }
            Err(_) => panic!("case {case} ({what}) panicked the reader"),
        }
    }
    assert_eq!(ok + refused, 1200);
    // The mutations reach the structure: most of them are refused.
    assert!(
        refused > 600,
        "only {refused} of 1200 mutations were refused"
    );
}
