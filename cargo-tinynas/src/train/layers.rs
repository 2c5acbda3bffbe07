//! Layers with forward and backward passes. Each keeps what its backward pass needs from the last
//! forward pass, and accumulates parameter gradients into [`Param::grad`].

use super::Tensor;
use tinynas_model::ir::window_output;
use tinynas_model::random::{Source, SplitMix};
use tinynas_model::Padding;

/// A trainable tensor and its gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub value: Vec<f32>,
    pub grad: Vec<f32>,
}

impl Param {
    pub fn new(value: Vec<f32>) -> Self {
        let grad = vec![0.0; value.len()];
        Param { value, grad }
    }
}

/// A layer of the training graph.
pub trait Layer: std::fmt::Debug + Send + LayerClone {
    /// Computes the output; `train` selects batch statistics and dropout.
    fn forward(&mut self, x: &Tensor, train: bool) -> Tensor;
    /// Given the gradient of the loss w.r.t. the last output, accumulates parameter gradients and
    /// returns the gradient w.r.t. the last input.
    fn backward(&mut self, dy: &Tensor) -> Tensor;
    /// The trainable parameters.
    fn params(&mut self) -> Vec<&mut Param> {
        Vec::new()
    }
    /// What the layer is, for the int8 export.
    fn view(&self) -> View<'_>;
}

/// Copies a layer behind a `Box<dyn Layer>` (to keep the best epoch's weights).
pub trait LayerClone {
    fn boxed_clone(&self) -> Box<dyn Layer>;
}

impl<T: Layer + Clone + 'static> LayerClone for T {
    fn boxed_clone(&self) -> Box<dyn Layer> {
        Box::new(self.clone())
    }
}

/// A layer seen by the exporter.
#[derive(Debug, Clone, Copy)]
pub enum View<'a> {
    Conv(&'a Conv2d),
    Depthwise(&'a DepthwiseConv2d),
    BatchNorm(&'a BatchNorm),
    Relu(&'a Relu),
    Pool(&'a Pool),
    GlobalAvgPool,
    Dropout,
    Dense(&'a Dense),
}

/// `c[m x n] = alpha * a[m x k] * b[k x n] + beta * c`, with explicit row and column strides.
///
/// The one place the engine calls `matrixmultiply`'s raw-pointer API: every index the call can
/// touch is checked against the slice lengths first.
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
    (rsc, csc): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| {
        (rows.saturating_sub(1)) * rs + (cols.saturating_sub(1)) * cs
    };
    assert!(
        k == 0 || (last(m, k, rsa, csa) < a.len() && last(k, n, rsb, csb) < b.len()),
        "gemm operand out of bounds"
    );
    assert!(last(m, n, rsc, csc) < c.len(), "gemm output out of bounds");
    #[allow(unsafe_code)]
    // SAFETY: the asserts above keep every element the call reads or writes inside the slices;
    // `c` does not alias `a` or `b` (it is a distinct `&mut`).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            csc as isize,
        );
    }
}

/// Output side and padding before, as the int8 runtime computes them.
fn geometry(input: usize, k: usize, stride: usize, padding: Padding) -> (usize, usize) {
    window_output(input, k, stride, padding).unwrap_or((0, 0))
}

/// 2-D convolution, weights `[out][kh][kw][in]`, bias `[out]`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub in_c: usize,
    pub out_c: usize,
    pub k: [usize; 2],
    pub stride: usize,
    pub padding: Padding,
    pub weight: Param,
    pub bias: Param,
    cols: Vec<f32>,
    x_shape: (usize, usize, usize, usize),
    out_hw: (usize, usize),
    pad: (usize, usize),
}

impl Conv2d {
    /// He-initialised weights from a seed.
    pub fn new(
        in_c: usize,
        out_c: usize,
        k: [usize; 2],
        stride: usize,
        padding: Padding,
        seed: u64,
    ) -> Self {
        let fan_in = k[0] * k[1] * in_c;
        let mut r = SplitMix(seed);
        let bound = (6.0 / fan_in as f64).sqrt();
        let w = (0..out_c * fan_in)
            .map(|_| r.real(-bound, bound) as f32)
            .collect();
        Conv2d {
            in_c,
            out_c,
            k,
            stride,
            padding,
            weight: Param::new(w),
            bias: Param::new(vec![0.0; out_c]),
            cols: Vec::new(),
            x_shape: (0, 0, 0, 0),
            out_hw: (0, 0),
            pad: (0, 0),
        }
    }

    fn kdim(&self) -> usize {
        self.k[0] * self.k[1] * self.in_c
    }
}

impl Layer for Conv2d {
    fn view(&self) -> View<'_> {
        View::Conv(self)
    }

    fn forward(&mut self, x: &Tensor, _train: bool) -> Tensor {
        let (oh, pt) = geometry(x.h, self.k[0], self.stride, self.padding);
        let (ow, pl) = geometry(x.w, self.k[1], self.stride, self.padding);
        let (kd, m) = (self.kdim(), oh * ow);
        self.x_shape = (x.n, x.h, x.w, x.c);
        self.out_hw = (oh, ow);
        self.pad = (pt, pl);
        self.cols.clear();
        self.cols.resize(x.n * m * kd, 0.0);
        for b in 0..x.n {
            let xs = &x.data[b * x.sample_len()..(b + 1) * x.sample_len()];
            let cols = &mut self.cols[b * m * kd..(b + 1) * m * kd];
            for oy in 0..oh {
                for ox in 0..ow {
                    let row = &mut cols[(oy * ow + ox) * kd..(oy * ow + ox + 1) * kd];
                    for ky in 0..self.k[0] {
                        let Some(iy) = (oy * self.stride + ky).checked_sub(pt).filter(|&v| v < x.h)
                        else {
                            continue;
                        };
                        for kx in 0..self.k[1] {
                            let Some(ix) =
                                (ox * self.stride + kx).checked_sub(pl).filter(|&v| v < x.w)
                            else {
                                continue;
                            };
                            let src = &xs[(iy * x.w + ix) * x.c..(iy * x.w + ix + 1) * x.c];
                            row[(ky * self.k[1] + kx) * x.c..(ky * self.k[1] + kx + 1) * x.c]
                                .copy_from_slice(src);
                        }
                    }
                }
            }
        }
        let mut y = Tensor::zeros(x.n, oh, ow, self.out_c);
        for b in 0..x.n {
            let ys = &mut y.data[b * m * self.out_c..(b + 1) * m * self.out_c];
            for row in ys.chunks_exact_mut(self.out_c) {
                row.copy_from_slice(&self.bias.value);
            }
            // y[m x out] += cols[m x kd] * W^T[kd x out]
            gemm(
                m,
                kd,
                self.out_c,
                &self.cols[b * m * kd..(b + 1) * m * kd],
                (kd, 1),
                &self.weight.value,
                (1, kd),
                1.0,
                ys,
                (self.out_c, 1),
            );
        }
        y
    }

    fn backward(&mut self, dy: &Tensor) -> Tensor {
        let (n, h, w, c) = self.x_shape;
        let (oh, ow) = self.out_hw;
        let (pt, pl) = self.pad;
        let (kd, m, oc) = (self.kdim(), oh * ow, self.out_c);
        let mut dx = Tensor::zeros(n, h, w, c);
        let mut dcols = vec![0.0f32; m * kd];
        for b in 0..n {
            let dys = &dy.data[b * m * oc..(b + 1) * m * oc];
            for row in dys.chunks_exact(oc) {
                for (g, d) in self.bias.grad.iter_mut().zip(row) {
                    *g += d;
                }
            }
            let cols = &self.cols[b * m * kd..(b + 1) * m * kd];
            // dW[out x kd] += dy^T[out x m] * cols[m x kd]
            gemm(
                oc,
                m,
                kd,
                dys,
                (1, oc),
                cols,
                (kd, 1),
                1.0,
                &mut self.weight.grad,
                (kd, 1),
            );
            // dcols[m x kd] = dy[m x out] * W[out x kd]
            gemm(
                m,
                oc,
                kd,
                dys,
                (oc, 1),
                &self.weight.value,
                (kd, 1),
                0.0,
                &mut dcols,
                (kd, 1),
            );
            let dxs = &mut dx.data[b * h * w * c..(b + 1) * h * w * c];
            for oy in 0..oh {
                for ox in 0..ow {
                    let row = &dcols[(oy * ow + ox) * kd..(oy * ow + ox + 1) * kd];
                    for ky in 0..self.k[0] {
                        let Some(iy) = (oy * self.stride + ky).checked_sub(pt).filter(|&v| v < h)
                        else {
                            continue;
                        };
                        for kx in 0..self.k[1] {
                            let Some(ix) =
                                (ox * self.stride + kx).checked_sub(pl).filter(|&v| v < w)
                            else {
                                continue;
                            };
                            let dst = &mut dxs[(iy * w + ix) * c..(iy * w + ix + 1) * c];
                            for (d, s) in dst
                                .iter_mut()
                                .zip(&row[(ky * self.k[1] + kx) * c..(ky * self.k[1] + kx + 1) * c])
                            {
                                *d += s;
                            }
                        }
                    }
                }
            }
        }
        dx
    }

    fn params(&mut self) -> Vec<&mut Param> {
        vec![&mut self.weight, &mut self.bias]
    }
}

/// Depthwise convolution: output channel `ic * multiplier + m` filters input channel `ic`;
/// weights `[kh][kw][out]` (the int8 export layout).
#[derive(Debug, Clone)]
pub struct DepthwiseConv2d {
    pub in_c: usize,
    pub multiplier: usize,
    pub k: [usize; 2],
    pub stride: usize,
    pub padding: Padding,
    pub weight: Param,
    pub bias: Param,
    x: Option<Tensor>,
    pad: (usize, usize),
}

impl DepthwiseConv2d {
    pub fn new(
        in_c: usize,
        multiplier: usize,
        k: [usize; 2],
        stride: usize,
        padding: Padding,
        seed: u64,
    ) -> Self {
        let oc = in_c * multiplier;
        let mut r = SplitMix(seed);
        let bound = (6.0 / (k[0] * k[1]) as f64).sqrt();
        let w = (0..k[0] * k[1] * oc)
            .map(|_| r.real(-bound, bound) as f32)
            .collect();
        DepthwiseConv2d {
            in_c,
            multiplier,
            k,
            stride,
            padding,
            weight: Param::new(w),
            bias: Param::new(vec![0.0; oc]),
            x: None,
            pad: (0, 0),
        }
    }

    fn taps(&self, x: &Tensor, oh: usize, ow: usize, mut f: impl FnMut(usize, usize, usize)) {
        // f(input index within the sample, weight index, output index within the sample)
        let oc = self.in_c * self.multiplier;
        let (pt, pl) = self.pad;
        for oy in 0..oh {
            for ox in 0..ow {
                for ky in 0..self.k[0] {
                    let Some(iy) = (oy * self.stride + ky).checked_sub(pt).filter(|&v| v < x.h)
                    else {
                        continue;
                    };
                    for kx in 0..self.k[1] {
                        let Some(ix) = (ox * self.stride + kx).checked_sub(pl).filter(|&v| v < x.w)
                        else {
                            continue;
                        };
                        for o in 0..oc {
                            let ic = o / self.multiplier;
                            f(
                                (iy * x.w + ix) * x.c + ic,
                                (ky * self.k[1] + kx) * oc + o,
                                (oy * ow + ox) * oc + o,
                            );
                        }
                    }
                }
            }
        }
    }
}

impl Layer for DepthwiseConv2d {
    fn view(&self) -> View<'_> {
        View::Depthwise(self)
    }

    fn forward(&mut self, x: &Tensor, _train: bool) -> Tensor {
        let (oh, pt) = geometry(x.h, self.k[0], self.stride, self.padding);
        let (ow, pl) = geometry(x.w, self.k[1], self.stride, self.padding);
        self.pad = (pt, pl);
        let oc = self.in_c * self.multiplier;
        let mut y = Tensor::zeros(x.n, oh, ow, oc);
        let (sl, ol) = (x.sample_len(), oh * ow * oc);
        for b in 0..x.n {
            for (i, v) in y.data[b * ol..(b + 1) * ol].iter_mut().enumerate() {
                *v = self.bias.value[i % oc];
            }
            let (w, ys) = (&self.weight.value, &mut y.data[b * ol..(b + 1) * ol]);
            let xs = &x.data[b * sl..(b + 1) * sl];
            self.taps(x, oh, ow, |xi, wi, yi| ys[yi] += xs[xi] * w[wi]);
        }
        self.x = Some(x.clone());
        y
    }

    fn backward(&mut self, dy: &Tensor) -> Tensor {
        let x = self.x.take().unwrap_or_else(|| Tensor::zeros(0, 0, 0, 0));
        let oc = self.in_c * self.multiplier;
        let mut dx = x.same_shape();
        let (sl, ol) = (x.sample_len(), dy.h * dy.w * oc);
        let mut dw = std::mem::take(&mut self.weight.grad);
        for b in 0..x.n {
            let dys = &dy.data[b * ol..(b + 1) * ol];
            for (i, d) in dys.iter().enumerate() {
                self.bias.grad[i % oc] += d;
            }
            let xs = &x.data[b * sl..(b + 1) * sl];
            let w = &self.weight.value;
            let dxs = &mut dx.data[b * sl..(b + 1) * sl];
            self.taps(&x, dy.h, dy.w, |xi, wi, yi| {
                dw[wi] += xs[xi] * dys[yi];
                dxs[xi] += w[wi] * dys[yi];
            });
        }
        self.weight.grad = dw;
        self.x = Some(x);
        dx
    }

    fn params(&mut self) -> Vec<&mut Param> {
        vec![&mut self.weight, &mut self.bias]
    }
}

/// Batch normalisation over N, H and W per channel (momentum 0.99 for the running statistics, as
/// Keras).
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

impl Layer for BatchNorm {
    fn view(&self) -> View<'_> {
        View::BatchNorm(self)
    }

    fn forward(&mut self, x: &Tensor, train: bool) -> Tensor {
        let c = x.c;
        let count = (x.data.len() / c.max(1)) as f64;
        let (mean, var): (Vec<f32>, Vec<f32>) = if train {
            let mut s = vec![0.0f64; c];
            let mut s2 = vec![0.0f64; c];
            for row in x.data.chunks_exact(c) {
                for j in 0..c {
                    s[j] += f64::from(row[j]);
                    s2[j] += f64::from(row[j]) * f64::from(row[j]);
                }
            }
            let mean: Vec<f64> = s.iter().map(|v| v / count).collect();
            let var: Vec<f64> = s2
                .iter()
                .zip(&mean)
                .map(|(v, m)| (v / count - m * m).max(0.0))
                .collect();
            for j in 0..c {
                self.running_mean[j] = 0.99 * self.running_mean[j] + 0.01 * mean[j] as f32;
                self.running_var[j] = 0.99 * self.running_var[j] + 0.01 * var[j] as f32;
            }
            (
                mean.iter().map(|&v| v as f32).collect(),
                var.iter().map(|&v| v as f32).collect(),
            )
        } else {
            (self.running_mean.clone(), self.running_var.clone())
        };
        self.inv_std = var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        let mut y = x.same_shape();
        self.xhat = vec![0.0; x.data.len()];
        for (i, (&v, o)) in x.data.iter().zip(y.data.iter_mut()).enumerate() {
            let j = i % c;
            let xh = (v - mean[j]) * self.inv_std[j];
            self.xhat[i] = xh;
            *o = self.gamma.value[j] * xh + self.beta.value[j];
        }
        y
    }

    fn backward(&mut self, dy: &Tensor) -> Tensor {
        let c = dy.c;
        let count = (dy.data.len() / c.max(1)) as f32;
        let mut sum_dy = vec![0.0f32; c];
        let mut sum_dy_xhat = vec![0.0f32; c];
        for (i, &d) in dy.data.iter().enumerate() {
            let j = i % c;
            sum_dy[j] += d;
            sum_dy_xhat[j] += d * self.xhat[i];
        }
        for j in 0..c {
            self.beta.grad[j] += sum_dy[j];
            self.gamma.grad[j] += sum_dy_xhat[j];
        }
        let mut dx = dy.same_shape();
        for (i, (&d, o)) in dy.data.iter().zip(dx.data.iter_mut()).enumerate() {
            let j = i % c;
            let g = self.gamma.value[j] * self.inv_std[j] / count;
            *o = g * (count * d - sum_dy[j] - self.xhat[i] * sum_dy_xhat[j]);
        }
        dx
    }

    fn params(&mut self) -> Vec<&mut Param> {
        vec![&mut self.gamma, &mut self.beta]
    }
}

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
        self.mask = x.data.iter().map(|&v| v > 0.0 && v < hi).collect();
        let mut y = x.clone();
        for v in &mut y.data {
            *v = v.clamp(0.0, hi);
        }
        y
    }

    fn backward(&mut self, dy: &Tensor) -> Tensor {
        let mut dx = dy.clone();
        for (d, &m) in dx.data.iter_mut().zip(&self.mask) {
            if !m {
                *d = 0.0;
            }
        }
        dx
    }
}

/// Max or average pooling (average excludes padding, as the int8 runtime).
#[derive(Debug, Clone)]
pub struct Pool {
    pub max: bool,
    pub k: [usize; 2],
    pub stride: usize,
    pub padding: Padding,
    /// Per output element: the input indices of its window (max: just the winner).
    taps: Vec<Vec<usize>>,
    x_shape: (usize, usize, usize, usize),
}

impl Pool {
    pub fn new(max: bool, k: [usize; 2], stride: usize, padding: Padding) -> Self {
        Pool {
            max,
            k,
            stride,
            padding,
            taps: Vec::new(),
            x_shape: (0, 0, 0, 0),
        }
    }
}

impl Layer for Pool {
    fn view(&self) -> View<'_> {
        View::Pool(self)
    }

    fn forward(&mut self, x: &Tensor, _train: bool) -> Tensor {
        let (oh, pt) = geometry(x.h, self.k[0], self.stride, self.padding);
        let (ow, pl) = geometry(x.w, self.k[1], self.stride, self.padding);
        let mut y = Tensor::zeros(x.n, oh, ow, x.c);
        self.x_shape = (x.n, x.h, x.w, x.c);
        self.taps = Vec::with_capacity(y.data.len());
        for b in 0..x.n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ch in 0..x.c {
                        let mut idx = Vec::new();
                        for ky in 0..self.k[0] {
                            let Some(iy) =
                                (oy * self.stride + ky).checked_sub(pt).filter(|&v| v < x.h)
                            else {
                                continue;
                            };
                            for kx in 0..self.k[1] {
                                let Some(ix) =
                                    (ox * self.stride + kx).checked_sub(pl).filter(|&v| v < x.w)
                                else {
                                    continue;
                                };
                                idx.push(((b * x.h + iy) * x.w + ix) * x.c + ch);
                            }
                        }
                        let out = ((b * oh + oy) * ow + ox) * x.c + ch;
                        if self.max {
                            let best = idx
                                .iter()
                                .copied()
                                .max_by(|&a, &c| x.data[a].total_cmp(&x.data[c]));
                            y.data[out] = best.map_or(0.0, |i| x.data[i]);
                            self.taps.push(best.into_iter().collect());
                        } else {
                            let s: f32 = idx.iter().map(|&i| x.data[i]).sum();
                            y.data[out] = if idx.is_empty() {
                                0.0
                            } else {
                                s / idx.len() as f32
                            };
                            self.taps.push(idx);
                        }
                    }
                }
            }
        }
        y
    }

    fn backward(&mut self, dy: &Tensor) -> Tensor {
        let (n, h, w, c) = self.x_shape;
        let mut dx = Tensor::zeros(n, h, w, c);
        for (taps, &d) in self.taps.iter().zip(&dy.data) {
            let share = if taps.is_empty() {
                0.0
            } else {
                d / taps.len() as f32
            };
            for &i in taps {
                dx.data[i] += share;
            }
        }
        dx
    }
}

/// Global average pooling: `n x h x w x c` to `n x 1 x 1 x c`.
#[derive(Debug, Clone, Default)]
pub struct GlobalAvgPool {
    x_shape: (usize, usize, usize, usize),
}

impl Layer for GlobalAvgPool {
    fn view(&self) -> View<'_> {
        View::GlobalAvgPool
    }

    fn forward(&mut self, x: &Tensor, _train: bool) -> Tensor {
        self.x_shape = (x.n, x.h, x.w, x.c);
        let hw = (x.h * x.w) as f32;
        let mut y = Tensor::zeros(x.n, 1, 1, x.c);
        for b in 0..x.n {
            for (i, &v) in x.data[b * x.sample_len()..(b + 1) * x.sample_len()]
                .iter()
                .enumerate()
            {
                y.data[b * x.c + i % x.c] += v / hw;
            }
        }
        y
    }

    fn backward(&mut self, dy: &Tensor) -> Tensor {
        let (n, h, w, c) = self.x_shape;
        let hw = (h * w) as f32;
        let mut dx = Tensor::zeros(n, h, w, c);
        let sl = h * w * c;
        for b in 0..n {
            for (i, d) in dx.data[b * sl..(b + 1) * sl].iter_mut().enumerate() {
                *d = dy.data[b * c + i % c] / hw;
            }
        }
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

/// Dense layer over the flattened sample: weights `[out][in]`, output `n x 1 x 1 x out`.
#[derive(Debug, Clone)]
pub struct Dense {
    pub in_f: usize,
    pub out_f: usize,
    pub weight: Param,
    pub bias: Param,
    x: Option<Tensor>,
}

impl Dense {
    pub fn new(in_f: usize, out_f: usize, seed: u64) -> Self {
        let mut r = SplitMix(seed);
        let bound = (6.0 / (in_f + out_f) as f64).sqrt();
        let w = (0..in_f * out_f)
            .map(|_| r.real(-bound, bound) as f32)
            .collect();
        Dense {
            in_f,
            out_f,
            weight: Param::new(w),
            bias: Param::new(vec![0.0; out_f]),
            x: None,
        }
    }
}

impl Layer for Dense {
    fn view(&self) -> View<'_> {
        View::Dense(self)
    }

    fn forward(&mut self, x: &Tensor, _train: bool) -> Tensor {
        let n = x.n;
        let mut y = Tensor::zeros(n, 1, 1, self.out_f);
        for row in y.data.chunks_exact_mut(self.out_f) {
            row.copy_from_slice(&self.bias.value);
        }
        // y[n x out] += x[n x in] * W^T[in x out]
        gemm(
            n,
            self.in_f,
            self.out_f,
            &x.data,
            (self.in_f, 1),
            &self.weight.value,
            (1, self.in_f),
            1.0,
            &mut y.data,
            (self.out_f, 1),
        );
        self.x = Some(x.clone());
        y
    }

    fn backward(&mut self, dy: &Tensor) -> Tensor {
        let x = self.x.take().unwrap_or_else(|| Tensor::zeros(0, 0, 0, 0));
        let n = x.n;
        for row in dy.data.chunks_exact(self.out_f) {
            for (g, d) in self.bias.grad.iter_mut().zip(row) {
                *g += d;
            }
        }
        // dW[out x in] += dy^T[out x n] * x[n x in]
        gemm(
            self.out_f,
            n,
            self.in_f,
            &dy.data,
            (1, self.out_f),
            &x.data,
            (self.in_f, 1),
            1.0,
            &mut self.weight.grad,
            (self.in_f, 1),
        );
        let mut dx = x.same_shape();
        // dx[n x in] = dy[n x out] * W[out x in]
        gemm(
            n,
            self.out_f,
            self.in_f,
            &dy.data,
            (self.out_f, 1),
            &self.weight.value,
            (self.in_f, 1),
            0.0,
            &mut dx.data,
            (self.in_f, 1),
        );
        self.x = Some(x);
        dx
    }

    fn params(&mut self) -> Vec<&mut Param> {
        vec![&mut self.weight, &mut self.bias]
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, h: usize, w: usize, c: usize, seed: u64, away_from_zero: bool) -> Tensor {
        let mut r = SplitMix(seed);
        let data = (0..n * h * w * c)
            .map(|_| {
                let v = r.real(-1.0, 1.0) as f32;
                if away_from_zero {
                    v.signum() * (0.1 + v.abs())
                } else {
                    v
                }
            })
            .collect();
        Tensor::from(n, h, w, c, data)
    }

    /// Central finite differences of `sum(dy * layer(x))` against the analytic gradients of the
    /// input and of every parameter.
    fn check(layer: &mut dyn Layer, x: &Tensor, seed: u64) {
        let y = layer.forward(x, true);
        let dy = random(y.n, y.h, y.w, y.c, seed, false);
        for p in layer.params() {
            p.grad.iter_mut().for_each(|g| *g = 0.0);
        }
        let dx = layer.backward(&dy);
        let objective = |layer: &mut dyn Layer, x: &Tensor| -> f64 {
            let y = layer.forward(x, true);
            y.data
                .iter()
                .zip(&dy.data)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum()
        };
        let eps = 1e-2f32;
        let close = |a: f32, n: f64, what: &str| {
            let tol = 2e-2 * (1.0 + n.abs());
            assert!(
                (f64::from(a) - n).abs() <= tol,
                "{what}: analytic {a}, numeric {n}"
            );
        };
        let mut xp = x.clone();
        for i in (0..x.data.len()).step_by(1 + x.data.len() / 40) {
            let v = xp.data[i];
            xp.data[i] = v + eps;
            let up = objective(layer, &xp);
            xp.data[i] = v - eps;
            let down = objective(layer, &xp);
            xp.data[i] = v;
            close(
                dx.data[i],
                (up - down) / f64::from(2.0 * eps),
                &format!("dx[{i}]"),
            );
        }
        let grads: Vec<Vec<f32>> = layer.params().iter().map(|p| p.grad.clone()).collect();
        for (pi, g) in grads.iter().enumerate() {
            for i in (0..g.len()).step_by(1 + g.len() / 25) {
                let v = layer.params()[pi].value[i];
                layer.params()[pi].value[i] = v + eps;
                let up = objective(layer, x);
                layer.params()[pi].value[i] = v - eps;
                let down = objective(layer, x);
                layer.params()[pi].value[i] = v;
                close(
                    g[i],
                    (up - down) / f64::from(2.0 * eps),
                    &format!("param {pi}[{i}]"),
                );
            }
        }
    }

    #[test]
    fn gradients_conv2d() {
        for (k, stride, padding) in [
            ([3, 3], 1, Padding::Same),
            ([3, 1], 2, Padding::Valid),
            ([5, 5], 2, Padding::Same),
            ([1, 1], 1, Padding::Valid),
        ] {
            let mut l = Conv2d::new(3, 4, k, stride, padding, 1);
            l.bias.value = vec![0.1, -0.2, 0.3, 0.0];
            check(&mut l, &random(2, 7, 6, 3, 2, false), 3);
        }
    }

    #[test]
    fn gradients_depthwise() {
        for (m, stride, padding) in [(1, 1, Padding::Same), (2, 2, Padding::Valid)] {
            let mut l = DepthwiseConv2d::new(3, m, [3, 3], stride, padding, 4);
            check(&mut l, &random(2, 6, 5, 3, 5, false), 6);
        }
    }

    #[test]
    fn gradients_batch_norm() {
        let mut l = BatchNorm::new(3);
        l.gamma.value = vec![1.5, 0.5, -1.0];
        l.beta.value = vec![0.1, 0.0, -0.3];
        check(&mut l, &random(4, 3, 3, 3, 7, false), 8);
    }

    #[test]
    fn gradients_relu_relu6_pools_gap_dense() {
        check(&mut Relu::new(None), &random(2, 3, 3, 2, 9, true), 10);
        let mut x6 = random(2, 3, 3, 2, 11, true);
        x6.data.iter_mut().for_each(|v| *v *= 4.0);
        check(&mut Relu::new(Some(6.0)), &x6, 12);
        check(
            &mut Pool::new(true, [2, 2], 2, Padding::Valid),
            &random(2, 5, 4, 3, 13, false),
            14,
        );
        check(
            &mut Pool::new(false, [3, 3], 2, Padding::Same),
            &random(2, 5, 4, 3, 15, false),
            16,
        );
        check(
            &mut GlobalAvgPool::default(),
            &random(2, 4, 3, 5, 17, false),
            18,
        );
        check(
            &mut Dense::new(12, 5, 19),
            &random(3, 2, 2, 3, 20, false),
            21,
        );
    }

    #[test]
    fn dropout_scales_kept_units_and_their_gradients() {
        let mut d = Dropout::new(0.5, 1);
        let x = random(4, 4, 4, 4, 22, true);
        let y = d.forward(&x, true);
        let kept = y.data.iter().filter(|&&v| v != 0.0).count();
        assert!((kept as f64 / y.data.len() as f64 - 0.5).abs() < 0.15);
        for (a, b) in x.data.iter().zip(&y.data) {
            assert!(*b == 0.0 || (b / a - 2.0).abs() < 1e-5);
        }
        let dx = d.backward(&x);
        assert_eq!(dx.data, y.data, "the gradient goes through the same mask");
        assert_eq!(d.forward(&x, false), x, "identity when not training");
    }

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        let logits = random(3, 1, 1, 4, 23, false);
        let labels = [0usize, 3, 1];
        let (_, g) = softmax_cross_entropy(&logits, &labels);
        let eps = 1e-3f32;
        for i in 0..logits.data.len() {
            let mut p = logits.clone();
            p.data[i] += eps;
            let (up, _) = softmax_cross_entropy(&p, &labels);
            p.data[i] -= 2.0 * eps;
            let (down, _) = softmax_cross_entropy(&p, &labels);
            let n = (up - down) / (2.0 * eps);
            assert!((g.data[i] - n).abs() < 1e-3, "{i}: {} vs {n}", g.data[i]);
        }
    }
}
