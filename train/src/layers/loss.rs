//! The loss.

use super::*;

/// Mean softmax cross-entropy of `logits` (`n` rows of `k`) against `labels`, and its gradient.
pub fn softmax_cross_entropy(logits: &Tensor, labels: &[usize]) -> (f32, Tensor) {
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
        loss -= (exps[label] / sum).ln();
        for (j, e) in exps.iter().enumerate() {
            let p = e / sum;
            grad.data[b * k + j] = ((p - f64::from(u8::from(j == label))) / n as f64) as f32;
        }
    }
    ((loss / n as f64) as f32, grad)
}
