//! At least 200 random whole networks (chains and residual graphs over every op), expanded by the
//! `model!` macro at build time (see build.rs), compiled for the host and run, against tract and
//! against the host interpreter. Bit for bit; a network ending in softmax within 1 LSB (tract's
//! f32 softmax, see src/lib.rs).

mod generated {
    #![allow(clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/nets.rs"));
}

use tinynas_model::{Model, Op};
use tinynas_oracle_tests::*;

fn load(i: usize) -> Model {
    tinynas_model::format::read(&std::fs::read(generated::FILES[i]).unwrap()).unwrap()
}

#[test]
fn generated_code_matches_tract_on_200_plus_networks() {
    let n = generated::FILES.len();
    assert!(n >= 200, "only {n} networks");
    let (mut residual, mut softmax, mut off_by_one, mut compared) = (0, 0, 0, 0);
    for i in 0..n {
        let model = load(i);
        residual += usize::from(model.nodes.iter().any(|n| matches!(n.op, Op::Add { .. })));
        softmax += usize::from(ends_in_softmax(&model));
        for seed in 0..3u64 {
            let raw = random_input(&model, seed * 1000 + i as u64);
            let generated = generated::run_generated(i, &raw.0).expect("network runs");
            let host = host_run(&model, input_of(&model, &raw));
            let tract = tract_run(&model, input_of(&model, &raw))
                .unwrap_or_else(|e| panic!("net {i}: {e:#}"));
            assert_eq!(
                generated, host,
                "net {i}: generated code and host interpreter differ"
            );
            let d = max_diff(&generated, &tract);
            let allowed = i32::from(ends_in_softmax(&model));
            assert!(d <= allowed, "net {i} seed {seed}: generated code and tract differ by {d} LSB\n{generated:?}\n{tract:?}");
            off_by_one += usize::from(d == 1);
            compared += 1;
        }
    }
    println!("{compared} runs of {n} networks ({residual} residual, {softmax} ending in softmax); {off_by_one} softmax outputs 1 LSB from tract's f32 softmax");
    assert!(residual >= 50, "only {residual} residual networks");
    assert!(softmax >= 20, "only {softmax} networks end in softmax");
}

#[test]
fn generated_constants_match_the_model() {
    for i in 0..generated::FILES.len() {
        let model = load(i);
        let plan = tinynas_model::plan::plan(&model);
        let (arena, macs, classes, input_len, params) = generated::CONSTS[i];
        assert_eq!(arena, plan.arena_bytes, "net {i}");
        assert_eq!(macs, model.macs(), "net {i}");
        assert_eq!(classes, model.classes(), "net {i}");
        assert_eq!(input_len, model.input_shape.elements(), "net {i}");
        assert_eq!(params, model.params(), "net {i}");
        assert!(
            plan.live_peak_bytes <= plan.arena_bytes && plan.arena_bytes <= plan.naive_bytes,
            "net {i}"
        );
    }
}
