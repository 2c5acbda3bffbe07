//! The training loop: mini-batches from the dataset cache, augmentation, Adam, per-epoch
//! validation, keeping the best epoch. Deterministic from a seed (single-threaded for now).

use super::layers::softmax_cross_entropy_smoothed;
use super::net::Net;
use super::optim::{Optimizer, OptimizerKind, Schedule};
use super::Tensor;
use crate::{ReadError, Samples};
use tinynas_model::random::{Source, SplitMix};

/// How to train.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub epochs: usize,
    pub batch: usize,
    /// Base learning rate.
    pub lr: f32,
    pub optimizer: OptimizerKind,
    pub schedule: Schedule,
    pub seed: u64,
    /// Random horizontal flips and shifts of up to 2 pixels.
    pub augment: bool,
    /// Label smoothing of the loss (0: plain cross-entropy).
    pub label_smoothing: f32,
}

/// One epoch's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Epoch {
    pub epoch: usize,
    pub loss: f32,
    pub train_accuracy: f32,
    pub val_accuracy: f32,
    pub images_per_second: f32,
}

/// Where training is, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress<'a> {
    /// After each batch: batches done of this epoch, running loss and accuracy of the epoch.
    Batch {
        epoch: usize,
        done: usize,
        total: usize,
        loss: f32,
        accuracy: f32,
        images_per_second: f32,
    },
    /// After each epoch's validation.
    Epoch(&'a Epoch),
}

/// Pixels `u8` to `[0, 1]` floats, with optional flip and shift.
pub(crate) fn to_tensor(
    bytes: &[u8],
    n: usize,
    shape: crate::ImageShape,
    aug: Option<&mut SplitMix>,
) -> Tensor {
    let (h, w, c) = (shape.h, shape.w, shape.c);
    let mut t = Tensor::zeros(n, h, w, c);
    let mut aug = aug;
    for b in 0..n {
        let (flip, dy, dx) = match aug.as_deref_mut() {
            Some(r) => (r.chance(0.5), r.int(-2, 2), r.int(-2, 2)),
            None => (false, 0, 0),
        };
        let src = &bytes[b * h * w * c..(b + 1) * h * w * c];
        let dst = &mut t.data[b * h * w * c..(b + 1) * h * w * c];
        for y in 0..h {
            let sy = y as i64 + dy;
            if sy < 0 || sy >= h as i64 {
                continue;
            }
            for x in 0..w {
                let xx = if flip { w - 1 - x } else { x } as i64 + dx;
                if xx < 0 || xx >= w as i64 {
                    continue;
                }
                for ch in 0..c {
                    dst[(y * w + x) * c + ch] =
                        f32::from(src[(sy as usize * w + xx as usize) * c + ch]) / 255.0;
                }
            }
        }
    }
    t
}

/// Pixels to floats in `[0, 1]`, no augmentation (what evaluation feeds the network).
pub fn pixels_to_tensor(bytes: &[u8], n: usize, shape: crate::ImageShape) -> Tensor {
    to_tensor(bytes, n, shape, None)
}

fn order_batches(samples: usize, batch: usize) -> usize {
    samples.div_ceil(batch.max(1))
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}

/// Accuracy of the float network on `indices` (evaluation mode).
pub fn evaluate(
    net: &mut Net,
    data: &mut dyn Samples,
    indices: &[usize],
    batch: usize,
) -> Result<f32, ReadError> {
    let mut correct = 0usize;
    let mut buf = Vec::new();
    for chunk in indices.chunks(batch.max(1)) {
        data.read_batch(chunk, &mut buf)?;
        let x = to_tensor(&buf, chunk.len(), data.shape(), None);
        let y = net.forward(&x, false);
        for (b, &i) in chunk.iter().enumerate() {
            correct += usize::from(
                argmax(&y.data[b * net.classes..(b + 1) * net.classes]) == data.label(i),
            );
        }
    }
    Ok(correct as f32 / indices.len().max(1) as f32)
}

/// Trains `net` on `train`, validating on `val` after each epoch; calls `on_epoch` with each
/// epoch's figures. Returns the history.
pub fn fit(
    net: &mut Net,
    data: &mut dyn Samples,
    train: &[usize],
    val: &[usize],
    opts: &Options,
    mut on_epoch: impl FnMut(&Epoch),
) -> Result<Vec<Epoch>, ReadError> {
    let never = std::sync::atomic::AtomicBool::new(false);
    let on = |p: Progress<'_>| {
        if let Progress::Epoch(e) = p {
            on_epoch(e)
        }
    };
    fit_until(net, data, train, val, opts, on, &never).map(|(h, _)| h)
}

/// Like [`fit`] with progress after every batch, stopping at the next batch once `stop` is set (Ctrl-C); returns the history and
/// the network of the best validation epoch so far (`None` before the first epoch ends).
pub fn fit_until(
    net: &mut Net,
    data: &mut dyn Samples,
    train: &[usize],
    val: &[usize],
    opts: &Options,
    mut on: impl FnMut(Progress<'_>),
    stop: &std::sync::atomic::AtomicBool,
) -> Result<(Vec<Epoch>, Option<Net>), ReadError> {
    let mut best: Option<(f32, Net)> = None;
    let mut opt = Optimizer::new(opts.optimizer, opts.lr);
    let batches = order_batches(train.len(), opts.batch);
    let total_steps = (batches * opts.epochs).max(1);
    let mut rng = SplitMix(opts.seed);
    let mut order = train.to_vec();
    let mut buf = Vec::new();
    let mut history = Vec::new();
    for epoch in 0..opts.epochs {
        for i in (1..order.len()).rev() {
            let j = rng.int(0, i as i64) as usize;
            order.swap(i, j);
        }
        let start = std::time::Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for (b, chunk) in order.chunks(opts.batch.max(1)).enumerate() {
            let progress = (epoch * batches + b) as f64 / total_steps as f64;
            opt.set_lr(opts.lr * opts.schedule.factor(progress));
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok((history, best.map(|b| b.1)));
            }
            data.read_batch(chunk, &mut buf)?;
            let x = to_tensor(
                &buf,
                chunk.len(),
                data.shape(),
                opts.augment.then_some(&mut rng),
            );
            let labels: Vec<usize> = chunk.iter().map(|&i| data.label(i)).collect();
            let y = net.forward(&x, true);
            let (loss, dy) = softmax_cross_entropy_smoothed(&y, &labels, opts.label_smoothing);
            net.backward(&dy);
            opt.step(net.params());
            loss_sum += f64::from(loss) * chunk.len() as f64;
            for (b, &l) in labels.iter().enumerate() {
                correct +=
                    usize::from(argmax(&y.data[b * net.classes..(b + 1) * net.classes]) == l);
            }
            seen += chunk.len();
            on(Progress::Batch {
                epoch,
                done: b + 1,
                total: batches,
                loss: (loss_sum / seen as f64) as f32,
                accuracy: correct as f32 / seen as f32,
                images_per_second: seen as f32 / start.elapsed().as_secs_f32().max(1e-6),
            });
        }
        let secs = start.elapsed().as_secs_f32().max(1e-6);
        let e = Epoch {
            epoch,
            loss: (loss_sum / seen.max(1) as f64) as f32,
            train_accuracy: correct as f32 / seen.max(1) as f32,
            val_accuracy: evaluate(net, data, val, 64)?,
            images_per_second: seen as f32 / secs,
        };
        on(Progress::Epoch(&e));
        if best.as_ref().is_none_or(|(a, _)| e.val_accuracy > *a) {
            best = Some((e.val_accuracy, net.snapshot()));
        }
        history.push(e);
    }
    Ok((history, best.map(|b| b.1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageShape;

    /// Every augmented image is the original flipped or not and shifted by at most 2 pixels
    /// (zeros shifted in); over a batch, both flips and several shifts occur.
    #[test]
    fn augmentation_is_a_flip_and_a_small_shift() {
        let shape = ImageShape { h: 7, w: 9, c: 2 };
        let n = 64;
        let mut r = SplitMix(3);
        let bytes: Vec<u8> = (0..n * shape.len()).map(|_| r.int(1, 255) as u8).collect();
        let plain = to_tensor(&bytes, n, shape, None);
        let mut rng = SplitMix(4);
        let aug = to_tensor(&bytes, n, shape, Some(&mut rng));
        let (h, w, c) = (shape.h, shape.w, shape.c);
        let mut seen = std::collections::BTreeSet::new();
        for b in 0..n {
            let src = &plain.data[b * shape.len()..(b + 1) * shape.len()];
            let got = &aug.data[b * shape.len()..(b + 1) * shape.len()];
            let mut found = None;
            for flip in [false, true] {
                for dy in -2i64..=2 {
                    for dx in -2i64..=2 {
                        let ok = (0..h).all(|y| {
                            (0..w).all(|x| {
                                let sy = y as i64 + dy;
                                let sx = if flip { w - 1 - x } else { x } as i64 + dx;
                                (0..c).all(|ch| {
                                    let want = if (0..h as i64).contains(&sy)
                                        && (0..w as i64).contains(&sx)
                                    {
                                        src[(sy as usize * w + sx as usize) * c + ch]
                                    } else {
                                        0.0
                                    };
                                    got[(y * w + x) * c + ch] == want
                                })
                            })
                        });
                        if ok && found.is_none() {
                            found = Some((flip, dy, dx));
                        }
                    }
                }
            }
            let t = found.unwrap_or_else(|| panic!("sample {b} is not a flip + shift"));
            seen.insert(t);
        }
        assert!(
            seen.iter().any(|t| t.0) && seen.iter().any(|t| !t.0),
            "both flips"
        );
        assert!(seen.len() >= 10, "only {} distinct transforms", seen.len());
        // No augmentation: the pixels / 255.
        assert_eq!(plain.data[5], f32::from(bytes[5]) / 255.0);
    }
}
