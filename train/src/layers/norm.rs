//! [`BatchNorm`].

use super::*;

/// Batch normalisation over N, H and W per channel (running statistics with [`BN_MOMENTUM`]).
#[derive(Debug, Clone)]
pub struct BatchNorm {
    pub gamma: Param,
    pub beta: Param,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
    pub eps: f32,
    xhat: Vec<f32>,
    inv_std: Vec<f32>,
}

impl BatchNorm {
    pub fn new(c: usize) -> Self {
        BatchNorm {
            gamma: Param::new(vec![1.0; c]),
            beta: Param::new(vec![0.0; c]),
            running_mean: vec![0.0; c],
            running_var: vec![1.0; c],
            eps: 1e-3,
            xhat: Vec::new(),
            inv_std: Vec::new(),
        }
    }
}

/// Weight of the old running statistics at each training step (PyTorch's default; Keras's 0.99
/// leaves the statistics of a 3-epoch proxy training on a small data set far behind the weights,
/// and validation accuracy then swings by tens of points from one seed to the next).
pub const BN_MOMENTUM: f32 = 0.9;

/// Per-channel values repeated over `TILE_ROWS` rows, so that loops over NHWC data run over whole
/// tiles with no per-element channel index (and vectorise).
pub(super) const TILE_ROWS: usize = 64;

fn tile(v: &[f32]) -> Vec<f32> {
    v.iter()
        .copied()
        .cycle()
        .take(v.len() * TILE_ROWS)
        .collect()
}

/// Per-channel sums of `a` and of `a * b` over the rows of `a` and `b` (`c` values each), in
/// f32 inside a block of tiles and f64 across blocks, in one pass.
pub(super) fn channel_sums(a: &[f32], b: &[f32], c: usize) -> (Vec<f64>, Vec<f64>) {
    let t = c * TILE_ROWS;
    let (mut sa, mut sab) = (vec![0.0f32; t], vec![0.0f32; t]);
    let (mut ta, mut tab) = (vec![0.0f64; c], vec![0.0f64; c]);
    let mut fold = |sa: &mut [f32], sab: &mut [f32]| {
        for (i, (x, y)) in sa.iter_mut().zip(sab.iter_mut()).enumerate() {
            ta[i % c] += f64::from(*x);
            tab[i % c] += f64::from(*y);
            (*x, *y) = (0.0, 0.0);
        }
    };
    for (n, (xa, xb)) in a.chunks(t).zip(b.chunks(t)).enumerate() {
        for (((s, p), &x), &y) in sa.iter_mut().zip(sab.iter_mut()).zip(xa).zip(xb) {
            *s += x;
            *p += x * y;
        }
        // Fold into f64 every 16 tiles (1,024 rows) to bound the f32 rounding.
        if n % 16 == 15 {
            fold(&mut sa, &mut sab);
        }
    }
    fold(&mut sa, &mut sab);
    (ta, tab)
}

impl BatchNorm {
    /// Rows per parallel task: whole samples, so partial sums combine in a fixed order.
    fn task_len(x: &Tensor) -> usize {
        (GROUP * x.h * x.w * x.c).max(x.c).max(1)
    }
}

impl Layer for BatchNorm {
    fn view(&self) -> View<'_> {
        View::BatchNorm(self)
    }

    fn forward(&mut self, x: &Tensor, train: bool) -> Tensor {
        let c = x.c;
        let mut y = x.scratch_like();
        if c == 0 || x.data.is_empty() {
            return y;
        }
        let task = Self::task_len(x);
        let (mean, var): (Vec<f32>, Vec<f32>) = if train {
            let count = (x.data.len() / c) as f64;
            let partial: Vec<(Vec<f64>, Vec<f64>)> = x
                .data
                .par_chunks(task)
                .map(|xs| channel_sums(xs, xs, c))
                .collect();
            let (mut s, mut s2) = (vec![0.0f64; c], vec![0.0f64; c]);
            for (ps, ps2) in partial {
                for j in 0..c {
                    s[j] += ps[j];
                    s2[j] += ps2[j];
                }
            }
            let mean: Vec<f64> = s.iter().map(|v| v / count).collect();
            let var: Vec<f64> = s2
                .iter()
                .zip(&mean)
                .map(|(v, m)| (v / count - m * m).max(0.0))
                .collect();
            for j in 0..c {
                let m = BN_MOMENTUM;
                self.running_mean[j] = m * self.running_mean[j] + (1.0 - m) * mean[j] as f32;
                self.running_var[j] = m * self.running_var[j] + (1.0 - m) * var[j] as f32;
            }
            (
                mean.iter().map(|&v| v as f32).collect(),
                var.iter().map(|&v| v as f32).collect(),
            )
        } else {
            (self.running_mean.clone(), self.running_var.clone())
        };
        self.inv_std = var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        let mean_t = tile(&mean);
        let inv_t = tile(&self.inv_std);
        let gamma_t = tile(&self.gamma.value);
        let beta_t = tile(&self.beta.value);
        self.xhat.resize(x.data.len(), 0.0);
        y.data
            .par_chunks_mut(task)
            .zip(self.xhat.par_chunks_mut(task))
            .zip(x.data.par_chunks(task))
            .for_each(|((ys, hs), xs)| {
                let t = c * TILE_ROWS;
                for ((yt, ht), xt) in ys.chunks_mut(t).zip(hs.chunks_mut(t)).zip(xs.chunks(t)) {
                    let coef = mean_t.iter().zip(&inv_t).zip(gamma_t.iter().zip(&beta_t));
                    for (((y, h), &x), ((&m, &s), (&g, &b))) in
                        yt.iter_mut().zip(ht.iter_mut()).zip(xt).zip(coef)
                    {
                        let xh = (x - m) * s;
                        *h = xh;
                        *y = g * xh + b;
                    }
                }
            });
        y
    }

    fn backward(&mut self, dy: &Tensor) -> Tensor {
        let c = dy.c;
        let mut dx = dy.scratch_like();
        if c == 0 || dy.data.is_empty() {
            return dx;
        }
        let count = (dy.data.len() / c) as f32;
        let task = Self::task_len(dy);
        let partial: Vec<(Vec<f64>, Vec<f64>)> = dy
            .data
            .par_chunks(task)
            .zip(self.xhat.par_chunks(task))
            .map(|(ds, hs)| channel_sums(ds, hs, c))
            .collect();
        let (mut sum_dy, mut sum_dy_xhat) = (vec![0.0f32; c], vec![0.0f32; c]);
        let (mut s, mut sh) = (vec![0.0f64; c], vec![0.0f64; c]);
        for (sd, sdh) in partial {
            for j in 0..c {
                s[j] += sd[j];
                sh[j] += sdh[j];
            }
        }
        for j in 0..c {
            sum_dy[j] = s[j] as f32;
            sum_dy_xhat[j] = sh[j] as f32;
        }
        add_into(&mut self.beta.grad, &sum_dy);
        add_into(&mut self.gamma.grad, &sum_dy_xhat);
        let g: Vec<f32> = (0..c)
            .map(|j| self.gamma.value[j] * self.inv_std[j] / count)
            .collect();
        let (g_t, sd_t, sdh_t) = (tile(&g), tile(&sum_dy), tile(&sum_dy_xhat));
        dx.data
            .par_chunks_mut(task)
            .zip(dy.data.par_chunks(task))
            .zip(self.xhat.par_chunks(task))
            .for_each(|((xs, ds), hs)| {
                let t = c * TILE_ROWS;
                for ((xt, dt), ht) in xs.chunks_mut(t).zip(ds.chunks(t)).zip(hs.chunks(t)) {
                    let coef = g_t.iter().zip(&sd_t).zip(&sdh_t);
                    for (((x, &d), &h), ((&g, &sd), &sdh)) in
                        xt.iter_mut().zip(dt).zip(ht).zip(coef)
                    {
                        *x = g * (count * d - sd - h * sdh);
                    }
                }
            });
        dx
    }

    fn params(&mut self) -> Vec<&mut Param> {
        vec![&mut self.gamma, &mut self.beta]
    }
}
