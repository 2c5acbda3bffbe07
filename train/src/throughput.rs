//! `cargo tinynas train --bench`: training speed of one architecture on synthetic images (the
//! engine's speed does not depend on pixel values), as images/s, effective GMAC/s and peak RSS.
//!
//! Effective GMAC/s counts forward + backward as 3x the forward MACs (the convention of the
//! "Training" issue). Peak RSS is the kernel's high-water mark of this process (`VmHWM` in
//! `/proc/self/status`), reset before each configuration through `/proc/self/clear_refs`.

use super::layers::softmax_cross_entropy;
use super::net::{Arch, Net};
use super::optim::Adam;
use super::Tensor;
use crate::ImageShape;
use tinynas_model::random::{Source, SplitMix};

/// One measured configuration.
#[derive(Debug, Clone)]
pub struct Row {
    pub arch: String,
    pub input: String,
    pub batch: usize,
    pub threads: usize,
    pub steps: usize,
    pub images_per_second: f64,
    pub forward_macs: u64,
    pub effective_gmac_per_second: f64,
    /// `None` where the platform has no `/proc/self/status`.
    pub peak_rss_bytes: Option<u64>,
    /// Per layer: name, forward and backward milliseconds per step.
    pub layers: Vec<(String, f64, f64)>,
}

/// The process's peak resident set size so far, in bytes (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Resets the peak RSS to the current RSS (Linux >= 4.0); false where unsupported.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Trains `steps` batches (after `warmup` untimed ones) of random images for each batch size.
pub fn run(
    arch: Arch,
    input: ImageShape,
    classes: usize,
    batches: &[usize],
    steps: usize,
    warmup: usize,
) -> Result<Vec<Row>, super::net::ArchError> {
    let macs = Net::new(arch, input, classes, 1)?.forward_macs();
    let mut rows = Vec::new();
    for &batch in batches {
        let mut net = Net::new(arch, input, classes, 1)?;
        let mut adam = Adam::new(1e-3);
        let mut rng = SplitMix(7);
        let x = Tensor::from(
            batch,
            input.h,
            input.w,
            input.c,
            (0..batch * input.len())
                .map(|_| rng.real(0.0, 1.0) as f32)
                .collect(),
        );
        let labels: Vec<usize> = (0..batch)
            .map(|_| rng.int(0, classes as i64 - 1) as usize)
            .collect();
        reset_peak_rss();
        let mut step = |net: &mut Net| {
            let y = net.forward(&x, true);
            let (_, dy) = softmax_cross_entropy(&y, &labels);
            net.backward(&dy);
            adam.step(net.params());
        };
        for _ in 0..warmup {
            step(&mut net);
        }
        net.timing = Some(Vec::new());
        let start = std::time::Instant::now();
        for _ in 0..steps {
            step(&mut net);
        }
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        let ips = (steps * batch) as f64 / secs;
        rows.push(Row {
            arch: arch.to_string(),
            input: format!("{}x{}x{}", input.h, input.w, input.c),
            batch,
            threads: rayon::current_num_threads(),
            steps,
            images_per_second: ips,
            forward_macs: macs,
            effective_gmac_per_second: ips * 3.0 * macs as f64 / 1e9,
            peak_rss_bytes: peak_rss_bytes(),
            layers: net
                .layer_names()
                .into_iter()
                .zip(net.timing.take().unwrap_or_default())
                .map(|(n, [f, b])| (n, 1e3 * f / steps as f64, 1e3 * b / steps as f64))
                .collect(),
        });
    }
    Ok(rows)
}
