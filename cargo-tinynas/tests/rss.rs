//! Training memory does not grow with the data set: `cargo tinynas train` on an image folder whose
//! decoded size (at the model's input size) is larger than 256 MiB keeps its peak RSS well under
//! 256 MiB, because images are decoded once into the cache file and read back batch by batch.
//!
//! RSS is the kernel's own high-water mark for the training process (`VmHWM` in
//! `/proc/self/status`), which `train` reports as `peak_rss_bytes` in its JSON report.

mod common;

use std::path::PathBuf;

#[test]
#[cfg(target_os = "linux")]
fn training_on_a_folder_larger_than_256_mib_stays_under_256_mib() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rss-folder");
    let _ = std::fs::remove_dir_all(&dir);
    // 9,800 small PNGs, resized on load to 96x96x3 = 27,648 bytes each: 271 MB decoded.
    let (classes, per_class, side) = (4usize, 2450usize, 96usize);
    for c in 0..classes {
        let d = dir.join("data").join(format!("class{c}"));
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..per_class {
            let img = image::RgbImage::from_fn(12, 12, |x, y| {
                let v = (x as usize * 17 + y as usize * 5 + i * 13 + c * 60) % 256;
                image::Rgb([v as u8, (v as u8).wrapping_mul(3), (c * 64) as u8])
            });
            img.save(d.join(format!("{i}.png"))).unwrap();
        }
    }
    let decoded = classes * per_class * side * side * 3;
    assert!(decoded > 256 << 20, "{decoded} bytes decoded");
    let o = common::tinynas()
        .args(["train", "--data"])
        .arg(dir.join("data"))
        .args([
            "--arch",
            "nanonas:k=2,c=1",
            "--input",
            &format!("{side}x{side}x3"),
            "--epochs",
            "1",
            "--batch",
            "32",
            "--qat",
            "never",
            "--message-format",
            "json",
            "--out",
        ])
        .arg(dir.join("m.tnas"))
        .env("TINYNAS_CACHE_DIR", dir.join("cache"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let out = String::from_utf8_lossy(&o.stdout);
    let report: serde_json::Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["reason"] == "train-report")
        .unwrap_or_else(|| panic!("no train report in {out}"));
    let rss = report["peak_rss_bytes"].as_u64().expect("peak_rss_bytes");
    // The cache file really holds the whole decoded set.
    let cache_bytes: u64 = walk(&dir.join("data"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "tnds"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    eprintln!(
        "decoded {decoded} bytes, cache file {cache_bytes} bytes, peak RSS {rss} bytes ({:.1} MiB)",
        rss as f64 / 1048576.0
    );
    assert!(
        cache_bytes >= decoded as u64,
        "cache of {cache_bytes} bytes"
    );
    assert!(
        rss < 256 << 20,
        "peak RSS {rss} bytes while training on {decoded} bytes of images"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
