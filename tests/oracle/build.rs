//! Writes the random networks of `tests/networks.rs`: `OUT_DIR/nets/netN.tnas` and
//! `OUT_DIR/nets.rs`, one `tinynas_runtime::model!` invocation per network, so that the test
//! compiles and runs real macro-generated code.

use std::fmt::Write;
use tinynas_model::random::{network, Config, SplitMix};
use tinynas_model::InputType;

/// How many networks, and the seed: changing either changes every network.
const NETWORKS: usize = 240;
const SEED: u64 = 0x7e57_5eed;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dir = out.join("nets");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/nets");
    let mut rng = SplitMix(SEED);
    let mut code = String::new();
    let mut dispatch = String::new();
    let mut files = String::new();
    let mut consts = String::new();
    for i in 0..NETWORKS {
        // Every fourth network is a wider one, so the planner and kernels see larger tensors.
        let cfg = if i % 4 == 3 {
            Config {
                max_side: 20,
                max_channels: 12,
                max_layers: 8,
                residual: 0.4,
            }
        } else {
            Config::default()
        };
        let model = network(&mut rng, &cfg);
        let path = dir.join(format!("net{i}.tnas"));
        std::fs::write(&path, tinynas_model::format::to_bytes(&model)).expect("write network");
        let p = path.display().to_string();
        writeln!(code, "tinynas_runtime::model!(Net{i}, {p:?});").unwrap();
        let convert = match model.input_type {
            InputType::U8 => "let x: &[u8; Net{i}::INPUT_LEN] = raw.try_into().ok()?;",
            InputType::I8 => "let x: Vec<i8> = raw.iter().map(|&b| b as i8).collect(); let x: &[i8; Net{i}::INPUT_LEN] = x.as_slice().try_into().ok()?;",
        }
        .replace("{i}", &i.to_string());
        writeln!(
            dispatch,
            "        {i} => {{ {convert} let mut arena = [0u8; Net{i}::ARENA_BYTES]; Some(Net{i}::new().predict(x, &mut arena).logits.to_vec()) }}"
        )
        .unwrap();
        writeln!(files, "    {p:?},").unwrap();
        writeln!(consts, "    (Net{i}::ARENA_BYTES, Net{i}::MACS, Net{i}::CLASSES, Net{i}::INPUT_LEN, Net{i}::PARAMS),").unwrap();
    }
    let all = format!(
        "{code}\n/// Model files, by network index.\npub const FILES: [&str; {NETWORKS}] = [\n{files}];\n\n\
         /// (ARENA_BYTES, MACS, CLASSES, INPUT_LEN, PARAMS) of each generated type.\n\
         pub const CONSTS: [(usize, u64, usize, usize, usize); {NETWORKS}] = [\n{consts}];\n\n\
         /// Runs generated network `i` on raw input bytes (reinterpreted as i8 for i8 models).\n\
         pub fn run_generated(i: usize, raw: &[u8]) -> Option<Vec<i8>> {{\n    match i {{\n{dispatch}        _ => None,\n    }}\n}}\n"
    );
    std::fs::write(out.join("nets.rs"), all).expect("write nets.rs");
}
