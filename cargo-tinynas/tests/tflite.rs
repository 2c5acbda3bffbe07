//! Imported TF Lite models end to end: TF Lite Micro's person_detect on qemu-m4 (built and run
//! under QEMU like our own models), equal to TF Lite's reference kernels; and the CLI's import,
//! predict and refusals as a user meets them. References: tests/fixtures/tflite (made by its
//! make_references.py with TF Lite's interpreter).

mod common;

use std::path::PathBuf;

use cargo_tinynas::bench::{self, Options};
use cargo_tinynas::board::qemu::{machine, QemuBoard};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tflite")
}

fn references() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("person_detect.references.json")).unwrap(),
    )
    .unwrap()
}

fn want(refs: &serde_json::Value, name: &str) -> Vec<i8> {
    refs["inputs"][name]["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap() as i8)
        .collect()
}

const INPUTS: [&str; 5] = [
    "person_detect_person",
    "person_detect_no_person",
    "random0",
    "random1",
    "random2",
];

#[test]
fn person_detect_on_qemu_m4_equals_tflite_reference_kernels() {
    let loaded = cargo_tinynas::modelfile::load(&fixtures().join("person_detect.tflite")).unwrap();
    let refs = references();
    let inputs: Vec<Vec<u8>> = INPUTS
        .iter()
        .map(|n| std::fs::read(fixtures().join(format!("person_detect.inputs/{n}.bin"))).unwrap())
        .collect();
    let mut board = QemuBoard::new(machine("qemu-m4").unwrap());
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-cache");
    let run = |trace: bool, board: &mut QemuBoard| {
        bench::run_with_inputs(
            &loaded.tnas,
            inputs.clone(),
            board,
            &Options {
                inputs: INPUTS.len(),
                trace,
                ..Options::default()
            },
            &cache,
            |_| {},
        )
        .unwrap()
    };
    // Every intermediate tensor on the device equals the host's (CRC-32 per kernel call), and
    // the host's equal TF Lite's (tflite/tests/person_detect.rs, by SHA-256).
    let traced = run(true, &mut board);
    assert_eq!(traced.traced_tensors, INPUTS.len() * 30);
    assert!(
        traced.outputs_match(),
        "device tensors != host: {:?}",
        traced.trace_mismatches
    );
    let out = run(false, &mut board);
    assert!(out.outputs_match(), "device != host: {:?}", out.mismatches);
    for (i, name) in INPUTS.iter().enumerate() {
        assert_eq!(
            out.measurement.outputs[i],
            want(&refs, name),
            "{name} on the device"
        );
        assert_eq!(out.host_outputs[i], want(&refs, name), "{name} on the host");
    }
    // The budget, exact under QEMU: static RAM + arena + stack.
    let m = &out.measurement;
    assert!(
        m.peak_sram_bytes() <= 60_000,
        "peak SRAM {} B (arena {}, stack {})",
        m.peak_sram_bytes(),
        m.arena_bytes,
        m.stack_peak_bytes
    );
    // And its flash without the bench's test inputs, at the default opt-level 3: at most the
    // model's parameter bytes as `inspect` counts them (weights, biases and the per-channel
    // requantisation constants) + 24 KiB.
    let input_bytes: u64 = out.inputs.iter().map(|i| i.len() as u64).sum();
    let flash = m.sizes.flash() - input_bytes;
    let bound = out.model.param_bytes() as u64 + 24 * 1024;
    assert!(
        flash <= bound,
        "flash {flash} B (code {} B) over the parameter bytes + 24 KiB, {bound} B",
        m.sizes.text
    );
}

/// The converter-built models of `make_op_models.py`, every one with references (every
/// supported operator: PAD, PADV2, CONCATENATION, MEAN, ADD, pools, uint8 input and output,
/// per-tensor weights; MLPerf Tiny's DS-CNN, ResNet-8 and autoencoder; TF Lite Micro's
/// micro_speech and magic_wand) on qemu-m4: every kernel call's output equals the host's, and the
/// final outputs equal TF Lite's (tflite/tests/op_models.rs checks the host's against TF Lite's
/// in every tensor).
#[test]
fn converter_built_op_models_on_qemu_m4_equal_tflite() {
    let mut board = QemuBoard::new(machine("qemu-m4").unwrap());
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-cache");
    // Every model `make_references.py` made references for, but person_detect (its own test).
    let mut stems: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().ok()?;
            name.strip_suffix(".references.json").map(str::to_string)
        })
        .filter(|s| s != "person_detect")
        .collect();
    stems.sort();
    assert_eq!(stems.len(), 9, "{stems:?}");
    for stem in &stems {
        let loaded =
            cargo_tinynas::modelfile::load(&fixtures().join(format!("{stem}.tflite"))).unwrap();
        let refs: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join(format!("{stem}.references.json"))).unwrap(),
        )
        .unwrap();
        let names: Vec<String> = refs["inputs"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let inputs: Vec<Vec<u8>> = names
            .iter()
            .map(|n| std::fs::read(fixtures().join(format!("{stem}.inputs/{n}.bin"))).unwrap())
            .collect();
        let out = bench::run_with_inputs(
            &loaded.tnas,
            inputs,
            &mut board,
            &Options {
                inputs: names.len(),
                trace: true,
                ..Options::default()
            },
            &cache,
            |_| {},
        )
        .unwrap();
        assert!(out.traced_tensors > 0, "{stem}: nothing traced");
        assert!(
            out.outputs_match(),
            "{stem}: device != host: {:?} {:?}",
            out.mismatches,
            out.trace_mismatches
        );
        for (i, name) in names.iter().enumerate() {
            let want = refs["inputs"][name]["output"].as_array().unwrap();
            if refs["inputs"][name]["output_dtype"] == "uint8" {
                // TF Lite's uint8 output after the folded final QUANTIZE: ours + 128.
                let ours: Vec<i64> = out.measurement.outputs[i]
                    .iter()
                    .map(|&v| i64::from(v) + 128)
                    .collect();
                let want: Vec<i64> = want.iter().map(|v| v.as_i64().unwrap()).collect();
                assert_eq!(ours, want, "{stem}/{name} on the device");
            } else if want.iter().all(|v| v.is_i64()) {
                let want: Vec<i8> = want.iter().map(|v| v.as_i64().unwrap() as i8).collect();
                assert_eq!(
                    out.measurement.outputs[i], want,
                    "{stem}/{name} on the device"
                );
            }
        }
    }
}

#[test]
fn import_then_predict_gives_tflite_outputs() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tflite-cli");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out_file = dir.join("person.tnas");
    let o = common::tinynas()
        .arg("import")
        .arg(fixtures().join("person_detect.tflite"))
        .arg("-o")
        .arg(&out_file)
        .args(["--labels", "no_person,person", "--message-format", "json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["reason"], "imported");
    assert_eq!(j["nodes"], 31);
    // A second import does not overwrite the first without --force.
    let before = std::fs::read(&out_file).unwrap();
    let o = common::tinynas()
        .arg("import")
        .arg(fixtures().join("person_detect.tflite"))
        .arg("-o")
        .arg(&out_file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert_eq!(std::fs::read(&out_file).unwrap(), before);

    let refs = references();
    for model in [out_file.clone(), fixtures().join("person_detect.tflite")] {
        for name in ["person_detect_person", "person_detect_no_person"] {
            let o = common::tinynas()
                .args(["predict", "--model"])
                .arg(&model)
                .arg("--input")
                .arg(fixtures().join(format!("person_detect.inputs/{name}.bin")))
                .args(["--message-format", "json"])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let logits: Vec<i8> = j["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap() as i8)
                .collect();
            assert_eq!(logits, want(&refs, name), "{name} with {}", model.display());
        }
    }
    // The labelled .tnas names the class.
    let o = common::tinynas()
        .args(["predict", "--model"])
        .arg(&out_file)
        .arg("--input")
        .arg(fixtures().join("person_detect.inputs/person_detect_person.bin"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "person");
    // An image is decoded and converted (p - 128 for an int8 model), not refused.
    let o = common::tinynas()
        .args(["predict", "--model"])
        .arg(&out_file)
        .arg("--input")
        .arg(fixtures().join("person_detect_person.bmp"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A .bin of the wrong length says the right one.
    let short = dir.join("short.bin");
    std::fs::write(&short, [0u8; 100]).unwrap();
    let o = common::tinynas()
        .args(["predict", "--model"])
        .arg(&out_file)
        .arg("--input")
        .arg(&short)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("96x96x1 = 9216 bytes"));

    // A model whose file ends in uint8 or float: `predict` gives TF Lite's values of that type
    // too (the references' outputs), beside the int8 logits the generated crate returns.
    for (stem, dtype) in [
        ("ops_uint8_io", "uint8"),
        ("ops_uint8_per_tensor", "float32"),
        ("ops_int8", ""),
    ] {
        let refs: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join(format!("{stem}.references.json"))).unwrap(),
        )
        .unwrap();
        let o = common::tinynas()
            .args(["predict", "--model"])
            .arg(fixtures().join(format!("{stem}.tflite")))
            .arg("--input")
            .arg(fixtures().join(format!("{stem}.inputs/random1.bin")))
            .args(["--message-format", "json"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let want = &refs["inputs"]["random1"]["output"];
        if dtype.is_empty() {
            assert!(j["file_output"].is_null(), "{j}");
            assert_eq!(&j["logits"], want, "{stem}");
        } else {
            assert_eq!(j["file_output"]["dtype"], dtype, "{j}");
            assert_eq!(&j["file_output"]["values"], want, "{stem}");
        }
    }
}

/// `bench` takes the user's input files (a `.bin` tensor and an image) and, with `--trace`,
/// checks every intermediate tensor on the device.
#[test]
fn cli_bench_traces_user_inputs_on_qemu_m4() {
    let o = common::tinynas()
        .args([
            "bench",
            "--board",
            "qemu-m4",
            "--trace",
            "--message-format",
            "json",
        ])
        .arg("--model")
        .arg(fixtures().join("person_detect.tflite"))
        .arg("--input")
        .arg(fixtures().join("person_detect.inputs/person_detect_person.bin"))
        .arg("--input")
        .arg(fixtures().join("person_detect_no_person.bmp"))
        .env(
            "TINYNAS_CACHE_DIR",
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-cache"),
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["inputs"], 2);
    assert_eq!(j["traced_tensors"], 60);
    assert_eq!(j["mismatched_tensors"].as_array().map(Vec::len), Some(0));
    assert_eq!(j["outputs_match_host"], true);
}

/// Each refusal exits 1 with a message that says what is wrong and what to do, never a panic.
#[test]
fn float_unsupported_and_corrupted_models_are_refused_clearly() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tflite-refusals");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut corrupted = std::fs::read(fixtures().join("person_detect.tflite")).unwrap();
    corrupted[20..28].copy_from_slice(&[0xff; 8]);
    std::fs::write(dir.join("corrupted.tflite"), &corrupted).unwrap();
    let cases = [
        (
            fixtures().join("float_model.tflite"),
            "this is a float model; convert it with full integer quantisation",
        ),
        (
            fixtures().join("unsupported_op.tflite"),
            "operator 27 (L2_POOL_2D): is not supported",
        ),
        (
            dir.join("corrupted.tflite"),
            "not a valid TF Lite model file",
        ),
        (
            fixtures().join("uint8_output_rescaled.tflite"),
            "operator 6 (QUANTIZE): converts the int8 output (scale 0.00390625, zero point -128) to uint8 with scale 0.00390625, zero point 3; only the exact conversion",
        ),
    ];
    for (file, message) in &cases {
        for cmd in ["import", "inspect"] {
            let mut c = common::tinynas();
            c.arg(cmd).arg(file);
            if cmd == "import" {
                c.arg("-o").arg(dir.join("out.tnas"));
            }
            let o = c.output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{cmd} {}: {err}", file.display());
            assert!(err.contains(message), "{cmd} {}: {err}", file.display());
            assert!(!err.contains("panicked"), "{err}");
        }
        assert!(
            !dir.join("out.tnas").exists(),
            "nothing written for a refused model"
        );
    }
}

/// A `.tflite` model straight into a fresh firmware project: `generate --labels --measure` names
/// the classes, measures the model on the project's emulated chip and puts the figures on the
/// model card; a wrong number of labels is refused before anything is written; without labels
/// the crate's docs do not promise a `LABELS` it lacks.
#[test]
fn generate_from_tflite_names_classes_and_measures_on_qemu() {
    let (root, fw) = common::fresh_f746_firmware("tflite-generate-measure");
    let manifest = fw.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text + "\n[package.metadata.tinynas]\ninput = \"12x12x3\"\n",
    )
    .unwrap();
    let model = fixtures().join("ops_int8.tflite");
    let model = model.to_str().unwrap();
    let run = |args: &[&str]| {
        common::tinynas()
            .args(args)
            .current_dir(&fw)
            .output()
            .unwrap()
    };
    let o = run(&["generate", "--model", model, "--labels", "a,b"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--labels gives 2 names for the model's 5 outputs"),
        "{err}"
    );
    assert!(!fw.join("fw-model").exists());

    let o = run(&["generate", "--model", model]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lib = std::fs::read_to_string(fw.join("fw-model/src/lib.rs")).unwrap();
    let card = std::fs::read_to_string(fw.join("fw-model/README.md")).unwrap();
    assert!(
        !lib.contains("LABELS") && !card.contains("LABELS"),
        "{lib}\n{card}"
    );
    assert!(card.contains("| classes | 5, unnamed"), "{card}");
    assert!(card.contains("Not measured on a board yet"), "{card}");

    let o = run(&[
        "generate",
        "--model",
        model,
        "--labels",
        "one, two,three,four,five",
        "--measure",
        "--images",
        "2",
        "--message-format",
        "json",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("measuring STM32F746NGHx"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["reason"], "generated");
    let m = &v["measured"];
    assert_eq!(m["board"], "qemu-m7", "{v}"); // the STM32F746 is a Cortex-M7
    assert_eq!(m["inputs"], "random images", "{v}");
    let latency = m["latency"].as_u64().unwrap();
    assert!(latency > 0, "{v}");
    let card = std::fs::read_to_string(fw.join("fw-model/README.md")).unwrap();
    assert!(
        card.contains("| classes | one, two, three, four, five |"),
        "{card}"
    );
    assert!(card.contains("## Measured on qemu-m7 (Cortex-M7"), "{card}");
    assert!(
        card.contains(&format!(
            "| latency | {latency} instructions per inference |"
        )),
        "{card}"
    );
    assert!(
        card.contains(&format!("| flash | {} bytes", m["flash_bytes"])),
        "{card}"
    );
    assert!(card.contains("Model::LABELS"), "{card}");
    let _ = std::fs::remove_dir_all(&root);
}
