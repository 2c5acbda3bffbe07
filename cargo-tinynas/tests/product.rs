//! The firmware-project commands end to end: `init` in a fresh firmware project, `generate` from a
//! model file, and the generated crate compiled for a Cortex-M target.

use std::path::{Path, PathBuf};
use std::process::Command;

fn tinynas(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cargo-tinynas"))
        .arg("tinynas")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn init_then_generate_gives_a_crate_that_builds_for_cortex_m() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("product-init-generate");
    let _ = std::fs::remove_dir_all(&root);
    let fw = root.join("fw");
    std::fs::create_dir_all(fw.join("src")).unwrap();
    std::fs::create_dir_all(fw.join(".cargo")).unwrap();
    std::fs::write(
        fw.join("Cargo.toml"),
        "[package]\nname = \"fw\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(fw.join("src/lib.rs"), "#![no_std]\n").unwrap();
    std::fs::write(
        fw.join(".cargo/config.toml"),
        "[target.thumbv7em-none-eabihf]\nrunner = \"probe-rs run --chip STM32F746NGHx\"\n",
    )
    .unwrap();
    let o = tinynas(&fw, &["init"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("chip STM32F746NGHx"), "{err}");
    let o = tinynas(&fw, &["init"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already has"));

    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/nanonas-k8-c3.tnas");
    let o = tinynas(
        &fw,
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--message-format",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["crate"], "fw-model");
    assert_eq!(v["dependency_added"], true);
    // The firmware, with the generated crate as a dependency, builds for a Cortex-M4F.
    let firmware_lib = "#![no_std]\npub fn classify(x: &[u8; fw_model::Model::INPUT_LEN]) -> usize {\n    let mut arena = [0u8; fw_model::Model::ARENA_BYTES];\n    fw_model::Model::new().predict(x, &mut arena).class\n}\n";
    std::fs::write(fw.join("src/lib.rs"), firmware_lib).unwrap();
    let o = Command::new(env!("CARGO"))
        .args(["build", "--release", "--target", "thumbv7em-none-eabihf"])
        .current_dir(&fw)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A bad key in the section is reported with its line.
    let manifest = std::fs::read_to_string(fw.join("Cargo.toml")).unwrap();
    std::fs::write(
        fw.join("Cargo.toml"),
        manifest.replace("seed = 1", "sed = 1"),
    )
    .unwrap();
    let o = tinynas(&fw, &["generate", "--model", model.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("unknown field `sed`") && err.contains("line"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
