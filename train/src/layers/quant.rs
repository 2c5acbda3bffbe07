//! Quantisation: the export's weight and bias rounding, the weights a forward pass computes
//! with under QAT, and [`FakeQuant`] for activations.

use super::*;

/// Symmetric per-output-channel int8 quantisation, as the export does it: the integer values and
/// the scale of each channel.
pub fn quantize_weights(w: &[f32], channels: usize) -> (Vec<i8>, Vec<f32>) {
    let per = w.len() / channels.max(1);
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(channels);
    for ch in w.chunks(per.max(1)) {
        let m = ch.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let s = if m > 0.0 { m / 127.0 } else { 1e-6 };
        scales.push(s);
        q.extend(
            ch.iter()
                .map(|v| (v / s).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (q, scales)
}

/// An int32 bias at scale `input scale x weight scale`, as the export does it.
pub fn quantize_bias(b: &[f32], in_scale: f32, w_scales: &[f32]) -> Vec<i32> {
    b.iter()
        .zip(w_scales)
        .map(|(v, s)| {
            (f64::from(*v) / (f64::from(in_scale) * f64::from(*s)))
                .round()
                .clamp(-2e9, 2e9) as i32
        })
        .collect()
}

/// The weights and bias a forward pass computes with: the float ones, or under QAT
/// (`Some(input scale)`) the values the int8 model will hold, dequantised.
pub(super) fn effective_weights(
    w: &[f32],
    b: &[f32],
    out: usize,
    qat_input_scale: Option<f32>,
) -> (Vec<f32>, Vec<f32>) {
    match qat_input_scale {
        None => (w.to_vec(), b.to_vec()),
        Some(s_in) => {
            let (q, scales) = quantize_weights(w, out);
            let per = w.len() / out.max(1);
            let wq = q
                .iter()
                .enumerate()
                .map(|(i, &v)| f32::from(v) * scales[i / per.max(1)])
                .collect();
            let bq = quantize_bias(b, s_in, &scales)
                .iter()
                .zip(&scales)
                .map(|(&v, s)| (f64::from(v) * f64::from(s_in) * f64::from(*s)) as f32)
                .collect();
            (wq, bq)
        }
    }
}

/// Fake quantisation of an activation for quantisation-aware training: the forward pass rounds
/// to the int8 grid `scale * (q - zero_point)`, `q` in `[-128, 127]`, exactly where the int8 model
/// requantises (half away from zero, as the runtime's fixed-point rounding); the backward pass is
/// the straight-through estimator (gradient 1 inside the representable range, 0 where clamped).
#[derive(Debug, Clone)]
pub struct FakeQuant {
    pub scale: f32,
    pub zero_point: i32,
    /// The float range this grid was calibrated on (the export uses it as is).
    pub range: (f32, f32),
    inside: Vec<bool>,
}

impl FakeQuant {
    /// The grid the export gives the range `[lo, hi]` (widened to contain 0).
    pub fn new(lo: f32, hi: f32) -> Self {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let scale = ((hi - lo) / 255.0).max(1e-8);
        let zero_point = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i32;
        FakeQuant {
            scale,
            zero_point,
            range: (lo, hi),
            inside: Vec::new(),
        }
    }
}

impl Layer for FakeQuant {
    fn view(&self) -> View<'_> {
        View::FakeQuant(self)
    }

    fn forward(&mut self, x: &Tensor, _train: bool) -> Tensor {
        let mut y = x.scratch_like();
        self.inside.resize(x.data.len(), false);
        let (s, zp) = (self.scale, self.zero_point as f32);
        let (lo, hi) = (-128.0 - zp, 127.0 - zp);
        const TASK: usize = 1 << 14;
        y.data
            .par_chunks_mut(TASK)
            .zip(self.inside.par_chunks_mut(TASK))
            .zip(x.data.par_chunks(TASK))
            .for_each(|((ys, ins), xs)| {
                for ((y, inside), &v) in ys.iter_mut().zip(ins).zip(xs) {
                    let q = (v / s).round();
                    *inside = (q >= lo) & (q <= hi);
                    *y = s * q.max(lo).min(hi);
                }
            });
        y
    }

    fn backward(&mut self, dy: &Tensor) -> Tensor {
        let mut dx = dy.scratch_like();
        for ((d, &g), &inside) in dx.data.iter_mut().zip(&dy.data).zip(&self.inside) {
            *d = if inside { g } else { 0.0 };
        }
        dx
    }
}
