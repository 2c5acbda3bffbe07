//! The training engine on real images: Fashion-MNIST from Debian's `dataset-fashion-mnist`
//! (installed by .ci/run). A short run on a subset; the full figures are produced by
//! `cargo tinynas train` (see the README) and reported in the closing notes.

use std::path::{Path, PathBuf};

use cargo_tinynas::data::import::{fashion_mnist, FASHION_MNIST_DIR};
use cargo_tinynas::data::ImageShape;
use cargo_tinynas::train::fit::{evaluate, fit, Options};
use cargo_tinynas::train::net::{Arch, Net};

fn cache() -> cargo_tinynas::data::Cache {
    let dir = Path::new(FASHION_MNIST_DIR);
    assert!(
        dir.is_dir(),
        "install the data set: apt-get install -y dataset-fashion-mnist"
    );
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("train-tests")
        .join("fashion-28x28x1.tnds");
    fashion_mnist(dir, ImageShape { h: 28, w: 28, c: 1 }, &out).unwrap()
}

#[test]
fn learns_fashion_mnist_and_is_deterministic() {
    let mut data = cache();
    let train: Vec<usize> = (0..4000).collect();
    let val: Vec<usize> = (60_000..61_000).collect();
    let opts = Options {
        epochs: 2,
        batch: 32,
        lr: 1e-2,
        seed: 5,
        augment: false,
    };
    let mut net = Net::new(Arch::NanoNas { k: 8, c: 2 }, data.shape, 10, 1).unwrap();
    let before = evaluate(&mut net, &mut data, &val, 64).unwrap();
    let history = fit(&mut net, &mut data, &train, &val, &opts, |_| {}).unwrap();
    let after = history.last().unwrap().val_accuracy;
    eprintln!("val accuracy {before:.3} -> {after:.3}; {history:?}");
    assert!(
        after > 0.6,
        "a NanoNAS A(8,2) reaches only {after} after 2 epochs on 4,000 images"
    );
    assert!(history[1].loss < history[0].loss);

    // Same seed, same weights.
    let mut again = Net::new(Arch::NanoNas { k: 8, c: 2 }, data.shape, 10, 1).unwrap();
    fit(&mut again, &mut data, &train, &val, &opts, |_| {}).unwrap();
    let a: Vec<f32> = net.params().iter().flat_map(|p| p.value.clone()).collect();
    let b: Vec<f32> = again
        .params()
        .iter()
        .flat_map(|p| p.value.clone())
        .collect();
    assert_eq!(a, b, "two runs with one seed give identical weights");

    // int8 export, run through the device's kernels on the host.
    use cargo_tinynas::train::export::{export, int8_accuracy};
    let calib: Vec<usize> = (0..500).collect();
    let classes = data.classes.clone();
    let model = export(&mut net, &mut data, &calib, classes).unwrap();
    let float = evaluate(&mut net, &mut data, &val, 64).unwrap();
    let int8 = int8_accuracy(&model, &mut data, &val).unwrap();
    eprintln!(
        "float {float:.3}, int8 {int8:.3} ({} params, {} MACs)",
        model.params(),
        model.macs()
    );
    assert!(
        (float - int8).abs() <= 0.03,
        "post-training quantisation moved accuracy from {float} to {int8}"
    );
    // The exported file reads back as the same model.
    let bytes = tinynas_model::format::to_bytes(&model);
    assert_eq!(tinynas_model::format::read(&bytes).unwrap(), model);
}

/// The CLI on a small image folder made by the test: it trains, writes a model that reads back,
/// and its last line is the int8 test accuracy.
#[test]
fn cli_train_on_an_image_folder() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("train-cli");
    let _ = std::fs::remove_dir_all(&dir);
    for (class, bright) in [("dark", false), ("light", true)] {
        std::fs::create_dir_all(dir.join("data").join(class)).unwrap();
        for i in 0..30u32 {
            let img = image::GrayImage::from_fn(12, 12, |x, y| {
                let base = if bright { 180 } else { 40 };
                image::Luma([(base + (x * 7 + y * 3 + i) % 40) as u8])
            });
            img.save(dir.join("data").join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let out = dir.join("m.tnas");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cargo-tinynas"))
        .args(["tinynas", "train", "--data"])
        .arg(dir.join("data"))
        .args([
            "--arch",
            "nanonas:k=2,c=1",
            "--input",
            "8x8x1",
            "--epochs",
            "3",
            "--lr",
            "0.01",
            "--out",
        ])
        .arg(&out)
        .env("TINYNAS_CACHE_DIR", dir.join("cache"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("int8 test accuracy: ") && last.ends_with(" %"),
        "{last}"
    );
    let model = tinynas_model::format::read(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(model.labels, vec!["dark", "light"]);
    // A bad architecture says what to write instead.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cargo-tinynas"))
        .args(["tinynas", "train", "--data", "x", "--arch", "nanonas:k=4"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nanonas:k=4,c=2"));
}
