//! The loss.

use super::*;

/// Mean softmax cross-entropy of `logits` (`n` rows of `k`) against `labels`, and its gradient.
pub fn softmax_cross_entropy(logits: &Tensor, labels: &[usize]) -> (f32, Tensor) {
    softmax_cross_entropy_smoothed(logits, labels, 0.0)
}

/// Softmax cross-entropy against smoothed targets: the label gets `1 - smoothing` and every class
/// (the label included) `smoothing / k`, so the network is not pushed to ever larger logits.
/// `smoothing` 0 is plain cross-entropy.
pub fn softmax_cross_entropy_smoothed(
    logits: &Tensor,
    labels: &[usize],
    smoothing: f32,
) -> (f32, Tensor) {
    let k = logits.sample_len();
    let n = logits.n;
    let mut grad = logits.same_shape();
    let mut loss = 0.0f64;
    for b in 0..n {
        let row = &logits.data[b * k..(b + 1) * k];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f64> = row.iter().map(|&v| f64::from(v - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        let label = labels.get(b).copied().unwrap_or(0).min(k.saturating_sub(1));
        let eps = f64::from(smoothing.clamp(0.0, 1.0));
        let spread = eps / k.max(1) as f64;
        for (j, e) in exps.iter().enumerate() {
            let p = e / sum;
            let target = spread + if j == label { 1.0 - eps } else { 0.0 };
            if target > 0.0 {
                loss -= target * p.max(f64::MIN_POSITIVE).ln();
            }
            grad.data[b * k + j] = ((p - target) / n as f64) as f32;
        }
    }
    ((loss / n as f64) as f32, grad)
}
