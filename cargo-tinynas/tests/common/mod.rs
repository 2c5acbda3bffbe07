//! Helpers shared by the end-to-end tests (each test file that starts the CLI has `mod common;`).

use std::process::Command;

/// `cargo tinynas` as a user runs it: the built binary and its `tinynas` subcommand word.
pub fn tinynas() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cargo-tinynas"));
    c.arg("tinynas");
    c
}

/// Grey pixel `(x, y)` of image `i` of a class whose pixels start at `base`: the "pattern"
/// `(x * px + y * py + i * pi) % range` on top.
#[derive(Clone, Copy)]
pub struct Pattern {
    pub px: u32,
    pub py: u32,
    pub pi: u32,
    pub range: u32,
}

/// A two-class image folder under `dir`: `dark/` and `light/`, each `n` PNGs of `size x size`
/// grey pixels at `bases.0` and `bases.1` plus `pattern` (an easy problem for a tiny network).
#[allow(dead_code)] // not every test file that has `mod common;` makes images
pub fn dark_and_light_images(
    dir: &std::path::Path,
    n: u32,
    size: u32,
    bases: (u32, u32),
    p: Pattern,
) {
    for (class, base) in [("dark", bases.0), ("light", bases.1)] {
        let d = dir.join(class);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..n {
            let img = image::GrayImage::from_fn(size, size, |x, y| {
                image::Luma([(base + (x * p.px + y * p.py + i * p.pi) % p.range) as u8])
            });
            img.save(d.join(format!("{i}.png"))).unwrap();
        }
    }
}

/// A fresh firmware project in `fw`: a `no_std` library package `name` of its own workspace,
/// and `.cargo/config.toml` holding `cargo_config` (target and probe-rs runner line).
#[allow(dead_code)] // not every test file that has `mod common;` makes a project
pub fn fresh_firmware(fw: &std::path::Path, name: &str, cargo_config: &str) {
    std::fs::create_dir_all(fw.join("src")).unwrap();
    std::fs::create_dir_all(fw.join(".cargo")).unwrap();
    std::fs::write(
        fw.join("Cargo.toml"),
        format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n\n[workspace]\n"),
    )
    .unwrap();
    std::fs::write(fw.join("src/lib.rs"), "#![no_std]\n").unwrap();
    std::fs::write(fw.join(".cargo/config.toml"), cargo_config).unwrap();
}

/// A fresh firmware project `fw` (package `fw`) for an STM32F746 (Cortex-M7), named by its
/// probe-rs runner line, in a new folder `name` of the tests' temporary folder: (that folder,
/// the project).
#[allow(dead_code)]
pub fn fresh_f746_firmware(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&root);
    let fw = root.join("fw");
    fresh_firmware(
        &fw,
        "fw",
        "[target.thumbv7em-none-eabihf]\nrunner = \"probe-rs run --chip STM32F746NGHx\"\n",
    );
    (root, fw)
}
