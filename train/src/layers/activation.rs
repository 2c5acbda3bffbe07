//! [`Relu`] (and ReLU6) and [`Dropout`].

use super::*;

/// ReLU, or ReLU6 with `cap = Some(6.0)`.
#[derive(Debug, Clone, Default)]
pub struct Relu {
    pub cap: Option<f32>,
    mask: Vec<bool>,
}

impl Relu {
    pub fn new(cap: Option<f32>) -> Self {
        Relu {
            cap,
            mask: Vec::new(),
        }
    }
}

impl Layer for Relu {
    fn view(&self) -> View<'_> {
        View::Relu(self)
    }

    fn forward(&mut self, x: &Tensor, _train: bool) -> Tensor {
        let hi = self.cap.unwrap_or(f32::INFINITY);
        let mut y = x.scratch_like();
        self.mask.resize(x.data.len(), false);
        const TASK: usize = 1 << 14;
        y.data
            .par_chunks_mut(TASK)
            .zip(self.mask.par_chunks_mut(TASK))
            .zip(x.data.par_chunks(TASK))
            .for_each(|((ys, ms), xs)| {
                for ((y, m), &v) in ys.iter_mut().zip(ms).zip(xs) {
                    *m = (v > 0.0) & (v < hi);
                    *y = v.max(0.0).min(hi);
                }
            });
        y
    }

    fn backward(&mut self, dy: &Tensor) -> Tensor {
        let mut dx = dy.scratch_like();
        const TASK: usize = 1 << 14;
        dx.data
            .par_chunks_mut(TASK)
            .zip(self.mask.par_chunks(TASK))
            .zip(dy.data.par_chunks(TASK))
            .for_each(|((xs, ms), ds)| {
                for ((x, &m), &d) in xs.iter_mut().zip(ms).zip(ds) {
                    *x = if m { d } else { 0.0 };
                }
            });
        dx
    }
}

/// Inverted dropout with a seeded mask (identity when not training).
#[derive(Debug, Clone)]
pub struct Dropout {
    pub rate: f32,
    rng: SplitMix,
    mask: Vec<f32>,
}

impl Dropout {
    pub fn new(rate: f32, seed: u64) -> Self {
        Dropout {
            rate,
            rng: SplitMix(seed),
            mask: Vec::new(),
        }
    }
}

impl Layer for Dropout {
    fn view(&self) -> View<'_> {
        View::Dropout
    }

    fn forward(&mut self, x: &Tensor, train: bool) -> Tensor {
        if !train || self.rate <= 0.0 {
            self.mask = vec![1.0; x.data.len()];
            return x.clone();
        }
        let keep = 1.0 - self.rate;
        self.mask = (0..x.data.len())
            .map(|_| {
                if self.rng.real(0.0, 1.0) < f64::from(keep) {
                    1.0 / keep
                } else {
                    0.0
                }
            })
            .collect();
        let mut y = x.clone();
        for (v, m) in y.data.iter_mut().zip(&self.mask) {
            *v *= m;
        }
        y
    }

    fn backward(&mut self, dy: &Tensor) -> Tensor {
        let mut dx = dy.clone();
        for (v, m) in dx.data.iter_mut().zip(&self.mask) {
            *v *= m;
        }
        dx
    }
}
