//! Layers with forward and backward passes. Each keeps what its backward pass needs from the last
//! forward pass, and accumulates parameter gradients into [`Param::grad`].

use super::Tensor;
use rayon::prelude::*;
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
    FakeQuant(&'a FakeQuant),
}

/// `c[m x n] = a[m x k] * b[k x n] + beta * c` (beta 0 or 1), with explicit row and column
/// strides.
///
/// The one place the engine calls the `gemm` crate's raw-pointer API: every index the call can
/// touch is checked against the slice lengths first. (`gemm` measured 2-3x faster than
/// `matrixmultiply` on these tall, narrow products: 15 against 5 GMAC/s for the first layer.)
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
    if k == 0 {
        if beta == 0.0 {
            for i in 0..m {
                for j in 0..n {
                    c[i * rsc + j * csc] = 0.0;
                }
            }
        }
        return;
    }
    let s = |v: usize| v as isize;
    #[allow(unsafe_code)]
    // SAFETY: the asserts above keep every element the call reads or writes inside the slices;
    // `c` does not alias `a` or `b` (it is a distinct `&mut`); no parallelism inside the call.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            s(csc),
            s(rsc),
            beta != 0.0,
            a.as_ptr(),
            s(csa),
            s(rsa),
            b.as_ptr(),
            s(csb),
            s(rsb),
            beta,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Output side and padding before, as the int8 runtime computes them.
fn geometry(input: usize, k: usize, stride: usize, padding: Padding) -> (usize, usize) {
    window_output(input, k, stride, padding).unwrap_or((0, 0))
}

/// Samples per parallel task. Fixed (not derived from the thread count) so that every sum of
/// per-task partial gradients is added in the same order whatever the number of threads: a seed
/// gives the same weights on any machine.
const GROUP: usize = 4;

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
    /// Whether `backward` computes the input gradient (false for a network's first layer, whose
    /// input is the image: the gradient would be thrown away).
    pub input_grad: bool,
    /// Quantisation-aware training: `Some(input scale)` runs forward and backward with int8
    /// weights and an int32 bias, as the export will quantise them (see [`FakeQuant`]).
    pub qat_input_scale: Option<f32>,
    /// The weights and bias the last forward pass used (fake-quantised under QAT).
    used: (Vec<f32>, Vec<f32>),
    /// The last input, kept for the weight gradient. The unfolded (im2col) rows are rebuilt per
    /// task in backward instead of kept: 9x smaller for a 3x3 kernel, and the rows stay in cache.
    x: Vec<f32>,
    /// The last input's batch size and window geometry.
    n: usize,
    win: Window,
}

/// The window geometry of one convolution or pool over one input shape: im2col and its inverse,
/// the depthwise loops, the pool spans.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    h: usize,
    w: usize,
    c: usize,
    k: [usize; 2],
    stride: usize,
    pad: (usize, usize),
    out: (usize, usize),
}

impl Window {
    /// A `k` window with `stride` and `padding` over the samples of `x`: output side and padding
    /// before, as the int8 runtime computes them.
    fn of(x: &Tensor, k: [usize; 2], stride: usize, padding: Padding) -> Self {
        let (oh, pt) = geometry(x.h, k[0], stride, padding);
        let (ow, pl) = geometry(x.w, k[1], stride, padding);
        Window {
            h: x.h,
            w: x.w,
            c: x.c,
            k,
            stride,
            pad: (pt, pl),
            out: (oh, ow),
        }
    }

    fn kdim(&self) -> usize {
        self.k[0] * self.k[1] * self.c
    }

    /// For each output position and kernel row inside the input, calls
    /// `f(col offset, input offset, len)`: a run of `len` values that is contiguous in both (the
    /// taps of one kernel row are neighbours in the input whatever the stride); taps in the
    /// padding are skipped.
    #[inline]
    fn for_runs(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (oh, ow) = self.out;
        let kd = self.kdim();
        let c = self.c;
        for oy in 0..oh {
            for ky in 0..self.k[0] {
                let Some(iy) = (oy * self.stride + ky)
                    .checked_sub(self.pad.0)
                    .filter(|&v| v < self.h)
                else {
                    continue;
                };
                for ox in 0..ow {
                    // Taps kx in [k0, k1) fall inside the input row.
                    let left = ox * self.stride;
                    let k0 = self.pad.1.saturating_sub(left);
                    let k1 = (self.w + self.pad.1).saturating_sub(left).min(self.k[1]);
                    if k0 >= k1 {
                        continue;
                    }
                    let ix = left + k0 - self.pad.1;
                    f(
                        (oy * ow + ox) * kd + (ky * self.k[1] + k0) * c,
                        (iy * self.w + ix) * c,
                        (k1 - k0) * c,
                    );
                }
            }
        }
    }

    /// Unfolds one sample into `cols` (`oh*ow` rows of `kd`); padding taps become zeros.
    fn im2col(&self, x: &[f32], cols: &mut [f32]) {
        // Only windows that reach into the padding need zeros; the rest is overwritten.
        let interior = |o: usize, k: usize, pad: usize, len: usize| {
            o * self.stride >= pad && o * self.stride + k <= len + pad
        };
        let kd = self.kdim();
        for oy in 0..self.out.0 {
            for ox in 0..self.out.1 {
                if !(interior(oy, self.k[0], self.pad.0, self.h)
                    && interior(ox, self.k[1], self.pad.1, self.w))
                {
                    let row = (oy * self.out.1 + ox) * kd;
                    cols[row..row + kd].fill(0.0);
                }
            }
        }
        self.for_runs(|dst, src, len| {
            for (d, s) in cols[dst..dst + len].iter_mut().zip(&x[src..src + len]) {
                *d = *s;
            }
        });
    }

    /// Adds `dcols` back onto one sample's input gradient.
    fn col2im(&self, dcols: &[f32], dx: &mut [f32]) {
        self.for_runs(|src, dst, len| {
            for (d, s) in dx[dst..dst + len].iter_mut().zip(&dcols[src..src + len]) {
                *d += s;
            }
        });
    }
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
            input_grad: true,
            qat_input_scale: None,
            used: (Vec::new(), Vec::new()),
            x: Vec::new(),
            n: 0,
            win: Window::default(),
        }
    }
}

impl Layer for Conv2d {
    fn view(&self) -> View<'_> {
        View::Conv(self)
    }

    fn forward(&mut self, x: &Tensor, _train: bool) -> Tensor {
        let win = Window::of(x, self.k, self.stride, self.padding);
        (self.n, self.win) = (x.n, win);
        let (oh, ow) = win.out;
        let (kd, m, oc, sl) = (win.kdim(), oh * ow, self.out_c, x.sample_len());
        self.x.clear();
        self.x.extend_from_slice(&x.data);
        let mut y = Tensor::scratch(x.n, oh, ow, oc);
        if m == 0 || oc == 0 || kd == 0 {
            y.data.fill(0.0);
            return y;
        }
        self.used = effective_weights(
            &self.weight.value,
            &self.bias.value,
            oc,
            self.qat_input_scale,
        );
        let (w, bias) = (&self.used.0, &self.used.1);
        y.data
            .par_chunks_mut(GROUP * m * oc)
            .zip(x.data.par_chunks(GROUP * sl))
            .for_each(|(ys, xs)| {
                let mut cols = super::tensor::take_any(xs.len() / sl * m * kd);
                for (xs, cols) in xs.chunks_exact(sl).zip(cols.chunks_exact_mut(m * kd)) {
                    win.im2col(xs, cols);
                }
                for row in ys.chunks_exact_mut(oc) {
                    row.copy_from_slice(bias);
                }
                // y[rows x out] += cols[rows x kd] * W^T[kd x out]
                gemm(
                    ys.len() / oc,
                    kd,
                    oc,
                    &cols,
                    (kd, 1),
                    w,
                    (1, kd),
                    1.0,
                    ys,
                    (oc, 1),
                );
                super::tensor::give(cols);
            });
        y
    }

    fn backward(&mut self, dy: &Tensor) -> Tensor {
        let (n, win) = (self.n, self.win);
        let (h, w, c) = (win.h, win.w, win.c);
        let (kd, m, oc, sl) = (win.kdim(), win.out.0 * win.out.1, self.out_c, h * w * c);
        let mut dx = Tensor::zeros(n, h, w, c);
        if m == 0 || oc == 0 || kd == 0 {
            return dx;
        }
        let (wv, input_grad) = (&self.used.0, self.input_grad);
        let partial: Vec<(Vec<f32>, Vec<f32>)> = dy
            .data
            .par_chunks(GROUP * m * oc)
            .zip(self.x.par_chunks(GROUP * sl))
            .zip(dx.data.par_chunks_mut(GROUP * sl))
            .map(|((dys, xs), dxs)| {
                let rows = dys.len() / oc;
                let mut cols = super::tensor::take_any(rows * kd);
                for (xs, cols) in xs.chunks_exact(sl).zip(cols.chunks_exact_mut(m * kd)) {
                    win.im2col(xs, cols);
                }
                let mut db = vec![0.0f32; oc];
                for row in dys.chunks_exact(oc) {
                    for (g, d) in db.iter_mut().zip(row) {
                        *g += d;
                    }
                }
                // dW[out x kd] = dy^T[out x rows] * cols[rows x kd]
                let mut dw = vec![0.0f32; oc * kd];
                gemm(
                    oc,
                    rows,
                    kd,
                    dys,
                    (1, oc),
                    &cols,
                    (kd, 1),
                    0.0,
                    &mut dw,
                    (kd, 1),
                );
                super::tensor::give(cols);
                if input_grad {
                    // dcols[rows x kd] = dy[rows x out] * W[out x kd]
                    let mut dcols = super::tensor::take_zeroed(rows * kd);
                    gemm(
                        rows,
                        oc,
                        kd,
                        dys,
                        (oc, 1),
                        wv,
                        (kd, 1),
                        0.0,
                        &mut dcols,
                        (kd, 1),
                    );
                    for (dcols, dxs) in dcols.chunks_exact(m * kd).zip(dxs.chunks_exact_mut(sl)) {
                        win.col2im(dcols, dxs);
                    }
                    super::tensor::give(dcols);
                }
                (dw, db)
            })
            .collect();
        for (dw, db) in partial {
            add_into(&mut self.weight.grad, &dw);
            add_into(&mut self.bias.grad, &db);
        }
        dx
    }

    fn params(&mut self) -> Vec<&mut Param> {
        vec![&mut self.weight, &mut self.bias]
    }
}

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
fn effective_weights(
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

fn add_into(acc: &mut [f32], v: &[f32]) {
    for (a, b) in acc.iter_mut().zip(v) {
        *a += b;
    }
}

/// `[rows][cols]` to `[cols][rows]`.
pub fn transpose<T: Copy>(v: &[T], rows: usize, cols: usize) -> Vec<T> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| v[r * cols + c]))
        .collect()
}

/// The depthwise convolution's loops (multiplier `m`).
impl Window {
    /// The outputs `[lo, hi)` (of `n`) whose kernel tap `k` falls inside an input of side `len`.
    #[inline]
    fn outputs_inside(&self, k: usize, pad: usize, len: usize, n: usize) -> (usize, usize) {
        let s = self.stride;
        // o * s + k - pad must lie in [0, len).
        let lo = pad.saturating_sub(k).div_ceil(s);
        let hi = (len + pad).saturating_sub(k).div_ceil(s);
        (lo.min(n), hi.min(n))
    }

    /// For each output row `oy` and each kernel tap `(ky, kx)` inside the input, calls
    /// `f(tap, first output pixel, first input pixel, count)`: `count` outputs in a row, output
    /// pixel `o + j` reading input pixel `i + j * stride`. Whole runs instead of single taps keep
    /// the index arithmetic out of the inner loops.
    #[inline]
    fn for_tap_runs(&self, mut f: impl FnMut(usize, usize, usize, usize)) {
        let (oh, ow) = self.out;
        let xr: Vec<(usize, usize)> = (0..self.k[1])
            .map(|kx| self.outputs_inside(kx, self.pad.1, self.w, ow))
            .collect();
        for oy in 0..oh {
            for ky in 0..self.k[0] {
                let Some(iy) = (oy * self.stride + ky)
                    .checked_sub(self.pad.0)
                    .filter(|&v| v < self.h)
                else {
                    continue;
                };
                for (kx, &(ox0, ox1)) in xr.iter().enumerate() {
                    if ox0 < ox1 {
                        let ix0 = ox0 * self.stride + kx - self.pad.1;
                        f(
                            ky * self.k[1] + kx,
                            oy * ow + ox0,
                            iy * self.w + ix0,
                            ox1 - ox0,
                        );
                    }
                }
            }
        }
    }

    /// One sample: `y = bias + depthwise(x, w)`.
    fn depthwise(&self, m: usize, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
        let (c, s) = (self.c, self.stride);
        let oc = c * m;
        for row in y.chunks_exact_mut(oc) {
            row.copy_from_slice(bias);
        }
        self.for_tap_runs(|t, o, i, n| {
            let wr = &w[t * oc..(t + 1) * oc];
            let ys = y[o * oc..(o + n) * oc].chunks_exact_mut(oc);
            let xs = x[i * c..].chunks(c).step_by(s);
            for (yr, xr) in ys.zip(xs) {
                if m == 1 {
                    for ((y, x), w) in yr.iter_mut().zip(xr).zip(wr) {
                        *y += x * w;
                    }
                } else {
                    for ((ys, ws), x) in yr.chunks_exact_mut(m).zip(wr.chunks_exact(m)).zip(xr) {
                        for (y, w) in ys.iter_mut().zip(ws) {
                            *y += x * w;
                        }
                    }
                }
            }
        });
    }

    /// One sample's depthwise gradients: adds into `dw`, and into `dx` when given.
    fn depthwise_backward(
        &self,
        m: usize,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        dw: &mut [f32],
        mut dx: Option<&mut [f32]>,
    ) {
        let (c, s) = (self.c, self.stride);
        let oc = c * m;
        self.for_tap_runs(|t, o, i, n| {
            let (wr, dwr) = (&w[t * oc..(t + 1) * oc], &mut dw[t * oc..(t + 1) * oc]);
            let dys = dy[o * oc..(o + n) * oc].chunks_exact(oc);
            for (dyr, xr) in dys.clone().zip(x[i * c..].chunks(c).step_by(s)) {
                if m == 1 {
                    for ((g, x), d) in dwr.iter_mut().zip(xr).zip(dyr) {
                        *g += x * d;
                    }
                } else {
                    for ((gs, ds), x) in dwr.chunks_exact_mut(m).zip(dyr.chunks_exact(m)).zip(xr) {
                        for (g, d) in gs.iter_mut().zip(ds) {
                            *g += x * d;
                        }
                    }
                }
            }
            if let Some(dx) = dx.as_deref_mut() {
                for (dyr, dxr) in dys.zip(dx[i * c..].chunks_mut(c).step_by(s)) {
                    if m == 1 {
                        for ((g, w), d) in dxr.iter_mut().zip(wr).zip(dyr) {
                            *g += w * d;
                        }
                    } else {
                        for ((g, ws), ds) in dxr
                            .iter_mut()
                            .zip(wr.chunks_exact(m))
                            .zip(dyr.chunks_exact(m))
                        {
                            *g += ws.iter().zip(ds).map(|(w, d)| w * d).sum::<f32>();
                        }
                    }
                }
            }
        });
    }
}

/// Depthwise convolution: output channel `ic * multiplier + m` filters input channel `ic`;
/// weights `[kh][kw][out]` (the int8 export layout), bias `[out]`. Channels are the innermost
/// loop (contiguous in input, weights and output, so it vectorises); samples run in parallel in
/// groups of 4 samples, as in [`Conv2d`].
#[derive(Debug, Clone)]
pub struct DepthwiseConv2d {
    pub in_c: usize,
    pub multiplier: usize,
    pub k: [usize; 2],
    pub stride: usize,
    pub padding: Padding,
    pub weight: Param,
    pub bias: Param,
    /// As [`Conv2d::input_grad`].
    pub input_grad: bool,
    /// As [`Conv2d::qat_input_scale`].
    pub qat_input_scale: Option<f32>,
    used: (Vec<f32>, Vec<f32>),
    x: Vec<f32>,
    /// The last input's batch size and window geometry.
    win: Option<(usize, Window)>,
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
            input_grad: true,
            qat_input_scale: None,
            used: (Vec::new(), Vec::new()),
            x: Vec::new(),
            win: None,
        }
    }

    /// The weights and bias a forward pass computes with (see [`effective_weights`]); the
    /// per-channel quantisation works on `[out][taps]`, the layout is `[taps][out]`.
    fn effective(&self) -> (Vec<f32>, Vec<f32>) {
        let (oc, taps) = (self.in_c * self.multiplier, self.k[0] * self.k[1]);
        if self.qat_input_scale.is_none() {
            return (self.weight.value.clone(), self.bias.value.clone());
        }
        let t = transpose(&self.weight.value, taps, oc);
        let (w, b) = effective_weights(&t, &self.bias.value, oc, self.qat_input_scale);
        (transpose(&w, oc, taps), b)
    }
}

impl Layer for DepthwiseConv2d {
    fn view(&self) -> View<'_> {
        View::Depthwise(self)
    }

    fn forward(&mut self, x: &Tensor, _train: bool) -> Tensor {
        let win = Window::of(x, self.k, self.stride, self.padding);
        self.win = Some((x.n, win));
        let ((oh, ow), m) = (win.out, self.multiplier);
        let oc = x.c * m;
        self.x.clear();
        self.x.extend_from_slice(&x.data);
        let mut y = Tensor::scratch(x.n, oh, ow, oc);
        let (sl, ol) = (x.sample_len(), oh * ow * oc);
        if ol == 0 || sl == 0 || oc != self.bias.value.len() {
            y.data.fill(0.0);
            return y;
        }
        self.used = self.effective();
        let (w, bias) = (&self.used.0, &self.used.1);
        y.data
            .par_chunks_mut(GROUP * ol)
            .zip(x.data.par_chunks(GROUP * sl))
            .for_each(|(ys, xs)| {
                for (y, x) in ys.chunks_exact_mut(ol).zip(xs.chunks_exact(sl)) {
                    win.depthwise(m, x, w, bias, y);
                }
            });
        y
    }

    fn backward(&mut self, dy: &Tensor) -> Tensor {
        let Some((n, win)) = self.win else {
            return Tensor::zeros(0, 0, 0, 0);
        };
        let m = self.multiplier;
        let oc = win.c * m;
        let (sl, ol) = (win.h * win.w * win.c, win.out.0 * win.out.1 * oc);
        let mut dx = Tensor::zeros(n, win.h, win.w, win.c);
        if ol == 0 || sl == 0 || dy.data.len() != n * ol {
            return dx;
        }
        let (w, input_grad, wlen) = (&self.used.0, self.input_grad, self.weight.value.len());
        let partial: Vec<(Vec<f32>, Vec<f32>)> = dy
            .data
            .par_chunks(GROUP * ol)
            .zip(self.x.par_chunks(GROUP * sl))
            .zip(dx.data.par_chunks_mut(GROUP * sl))
            .map(|((dys, xs), dxs)| {
                let mut dw = vec![0.0f32; wlen];
                let mut db = vec![0.0f32; oc];
                for ((dy, x), dx) in dys
                    .chunks_exact(ol)
                    .zip(xs.chunks_exact(sl))
                    .zip(dxs.chunks_exact_mut(sl))
                {
                    for row in dy.chunks_exact(oc) {
                        add_into(&mut db, row);
                    }
                    win.depthwise_backward(m, x, w, dy, &mut dw, input_grad.then_some(dx));
                }
                (dw, db)
            })
            .collect();
        for (dw, db) in partial {
            add_into(&mut self.weight.grad, &dw);
            add_into(&mut self.bias.grad, &db);
        }
        dx
    }

    fn params(&mut self) -> Vec<&mut Param> {
        vec![&mut self.weight, &mut self.bias]
    }
}

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
const TILE_ROWS: usize = 64;

fn tile(v: &[f32]) -> Vec<f32> {
    v.iter()
        .copied()
        .cycle()
        .take(v.len() * TILE_ROWS)
        .collect()
}

/// Per-channel sums of `a` and of `a * b` over the rows of `a` and `b` (`c` values each), in
/// f32 inside a block of tiles and f64 across blocks, in one pass.
fn channel_sums(a: &[f32], b: &[f32], c: usize) -> (Vec<f64>, Vec<f64>) {
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

/// Max or average pooling (average excludes padding, as the int8 runtime).
#[derive(Debug, Clone)]
pub struct Pool {
    pub max: bool,
    pub k: [usize; 2],
    pub stride: usize,
    pub padding: Padding,
    /// Max pooling: per output element, the winner's index within its sample.
    winners: Vec<u32>,
    /// The last input's batch size and window geometry.
    n: usize,
    win: Window,
}

impl Pool {
    pub fn new(max: bool, k: [usize; 2], stride: usize, padding: Padding) -> Self {
        Pool {
            max,
            k,
            stride,
            padding,
            winners: Vec::new(),
            n: 0,
            win: Window::default(),
        }
    }

    /// The input rows and columns of output `(oy, ox)`'s window, clipped to the input.
    fn span(&self, oy: usize, ox: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let Window { h, w, pad, .. } = self.win;
        let clip = |o: usize, k: usize, pad: usize, len: usize| {
            let lo = (o * self.stride).saturating_sub(pad);
            let hi = (o * self.stride + k).saturating_sub(pad).min(len);
            lo..hi.max(lo)
        };
        (clip(oy, self.k[0], pad.0, h), clip(ox, self.k[1], pad.1, w))
    }
}

impl Layer for Pool {
    fn view(&self) -> View<'_> {
        View::Pool(self)
    }

    fn forward(&mut self, x: &Tensor, _train: bool) -> Tensor {
        let win = Window::of(x, self.k, self.stride, self.padding);
        (self.n, self.win) = (x.n, win);
        let ((oh, ow), (pt, pl)) = (win.out, win.pad);
        let mut y = Tensor::zeros(x.n, oh, ow, x.c);
        let (c, sl, ol) = (x.c, x.sample_len(), oh * ow * x.c);
        if ol == 0 || sl == 0 {
            return y;
        }
        let mut winners = std::mem::take(&mut self.winners);
        winners.resize(if self.max { y.data.len() } else { 0 }, 0);
        if self.max && self.k == [2, 2] && self.stride == 2 && (pt, pl) == (0, 0) {
            let w = x.w;
            y.data
                .par_chunks_mut(ol)
                .zip(winners.par_chunks_mut(ol))
                .zip(x.data.par_chunks(sl))
                .for_each(|((ys, win), xs)| max_pool_2x2(xs, w, c, oh, ow, ys, win));
            self.winners = winners;
            return y;
        }
        let this = &*self;
        let kernel = |ys: &mut [f32], win: &mut [u32], xs: &[f32]| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (rows, cols) = this.span(oy, ox);
                    let o = (oy * ow + ox) * c;
                    let out = &mut ys[o..o + c];
                    let taps = rows.len() * cols.len();
                    if taps == 0 {
                        continue;
                    }
                    let mut first = true;
                    for iy in rows {
                        for ix in cols.clone() {
                            let i = (iy * x.w + ix) * c;
                            let px = &xs[i..i + c];
                            if this.max {
                                let at = &mut win[o..o + c];
                                for ch in 0..c {
                                    if first || px[ch] > out[ch] {
                                        out[ch] = px[ch];
                                        at[ch] = (i + ch) as u32;
                                    }
                                }
                            } else {
                                add_into(out, px);
                            }
                            first = false;
                        }
                    }
                    if !this.max {
                        out.iter_mut().for_each(|v| *v /= taps as f32);
                    }
                }
            }
        };
        if self.max {
            y.data
                .par_chunks_mut(ol)
                .zip(winners.par_chunks_mut(ol))
                .zip(x.data.par_chunks(sl))
                .for_each(|((ys, win), xs)| kernel(ys, win, xs));
        } else {
            y.data
                .par_chunks_mut(ol)
                .zip(x.data.par_chunks(sl))
                .for_each(|(ys, xs)| kernel(ys, &mut [], xs));
        }
        self.winners = winners;
        y
    }

    fn backward(&mut self, dy: &Tensor) -> Tensor {
        let Window {
            h,
            w,
            c,
            out: (oh, ow),
            ..
        } = self.win;
        let n = self.n;
        let mut dx = Tensor::zeros(n, h, w, c);
        let (sl, ol) = (h * w * c, oh * ow * c);
        if ol == 0 || sl == 0 {
            return dx;
        }
        if self.max {
            dx.data
                .par_chunks_mut(sl)
                .zip(dy.data.par_chunks(ol))
                .zip(self.winners.par_chunks(ol))
                .for_each(|((dxs, dys), win)| {
                    for (&d, &i) in dys.iter().zip(win) {
                        if let Some(v) = dxs.get_mut(i as usize) {
                            *v += d;
                        }
                    }
                });
        } else {
            let this = &*self;
            dx.data
                .par_chunks_mut(sl)
                .zip(dy.data.par_chunks(ol))
                .for_each(|(dxs, dys)| {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let (rows, cols) = this.span(oy, ox);
                            let taps = (rows.len() * cols.len()) as f32;
                            if taps == 0.0 {
                                continue;
                            }
                            for iy in rows {
                                for ix in cols.clone() {
                                    for ch in 0..c {
                                        dxs[(iy * w + ix) * c + ch] +=
                                            dys[(oy * ow + ox) * c + ch] / taps;
                                    }
                                }
                            }
                        }
                    }
                });
        }
        dx
    }
}

/// 2x2 max pooling with stride 2 and no padding over one sample (`w` wide, `c` channels):
/// first the larger of each pair of rows, then of each pair of columns. Ties keep the first
/// element in row-major order, as the general path.
fn max_pool_2x2(
    xs: &[f32],
    w: usize,
    c: usize,
    oh: usize,
    ow: usize,
    ys: &mut [f32],
    win: &mut [u32],
) {
    let span = 2 * ow * c;
    let mut best = vec![0.0f32; span];
    let mut lower = vec![false; span];
    for oy in 0..oh {
        let r0 = &xs[2 * oy * w * c..][..span];
        let r1 = &xs[(2 * oy + 1) * w * c..][..span];
        for i in 0..span {
            let down = r1[i] > r0[i];
            lower[i] = down;
            best[i] = if down { r1[i] } else { r0[i] };
        }
        let out = &mut ys[oy * ow * c..][..ow * c];
        let at = &mut win[oy * ow * c..][..ow * c];
        for ox in 0..ow {
            for ch in 0..c {
                let (l, r) = (2 * ox * c + ch, (2 * ox + 1) * c + ch);
                // Row-major order of the window: (0,0) (0,1) (1,0) (1,1).
                // On a tie the right one wins only if it is from the upper row and the left one
                // from the lower (it comes first in row-major order). Written without branches:
                // the comparisons are random, and mispredicted branches cost more than the work.
                let (a, b) = (best[l], best[r]);
                let pick_right = (b > a) | ((b == a) & lower[l] & !lower[r]);
                let (v, col, row_down) = if pick_right {
                    (b, 2 * ox + 1, lower[r])
                } else {
                    (a, 2 * ox, lower[l])
                };
                out[ox * c + ch] = v;
                at[ox * c + ch] = (((2 * oy + usize::from(row_down)) * w + col) * c + ch) as u32;
            }
        }
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
        if x.c == 0 || hw == 0.0 {
            return y;
        }
        for (ys, xs) in y
            .data
            .chunks_exact_mut(x.c)
            .zip(x.data.chunks_exact(x.sample_len()))
        {
            for row in xs.chunks_exact(x.c) {
                add_into(ys, row);
            }
            ys.iter_mut().for_each(|v| *v /= hw);
        }
        y
    }

    fn backward(&mut self, dy: &Tensor) -> Tensor {
        let (n, h, w, c) = self.x_shape;
        let hw = (h * w) as f32;
        let mut dx = Tensor::zeros(n, h, w, c);
        if c == 0 || hw == 0.0 {
            return dx;
        }
        for (dxs, dys) in dx
            .data
            .chunks_exact_mut(h * w * c)
            .zip(dy.data.chunks_exact(c))
        {
            for row in dxs.chunks_exact_mut(c) {
                for (d, g) in row.iter_mut().zip(dys) {
                    *d = g / hw;
                }
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
    /// As [`Conv2d::qat_input_scale`].
    pub qat_input_scale: Option<f32>,
    used: (Vec<f32>, Vec<f32>),
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
            qat_input_scale: None,
            used: (Vec::new(), Vec::new()),
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
        self.used = effective_weights(
            &self.weight.value,
            &self.bias.value,
            self.out_f,
            self.qat_input_scale,
        );
        for row in y.data.chunks_exact_mut(self.out_f) {
            row.copy_from_slice(&self.used.1);
        }
        // y[n x out] += x[n x in] * W^T[in x out]
        gemm(
            n,
            self.in_f,
            self.out_f,
            &x.data,
            (self.in_f, 1),
            &self.used.0,
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
            &self.used.0,
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

    /// Batches of several parallel tasks (9 samples = 3 tasks of 4, the last one short).
    #[test]
    fn gradients_across_parallel_tasks() {
        let mut l = Conv2d::new(2, 3, [3, 3], 1, Padding::Same, 31);
        check(&mut l, &random(9, 4, 5, 2, 32, false), 33);
        let mut bn = BatchNorm::new(2);
        bn.gamma.value = vec![0.7, -1.2];
        check(&mut bn, &random(9, 3, 2, 2, 34, false), 35);
        check(
            &mut Pool::new(true, [2, 2], 2, Padding::Valid),
            &random(9, 4, 4, 2, 36, false),
            37,
        );
    }

    /// The 2x2 max-pool fast path picks the same winners as the general path, ties included
    /// (the first maximum in row-major order).
    #[test]
    fn max_pool_fast_path_matches_general_path_on_ties() {
        let mut r = SplitMix(40);
        // Values from a small set, so that windows often tie.
        let data: Vec<f32> = (0..2 * 6 * 6 * 3).map(|_| r.int(0, 2) as f32).collect();
        let x = Tensor::from(2, 6, 6, 3, data);
        let mut fast = Pool::new(true, [2, 2], 2, Padding::Valid);
        let y_fast = fast.forward(&x, true);
        // Against a direct computation of the first maximum in row-major order.
        for b in 0..2 {
            for oy in 0..3 {
                for ox in 0..3 {
                    for ch in 0..3 {
                        let at = |iy: usize, ix: usize| ((b * 6 + iy) * 6 + ix) * 3 + ch;
                        let taps = [
                            at(2 * oy, 2 * ox),
                            at(2 * oy, 2 * ox + 1),
                            at(2 * oy + 1, 2 * ox),
                            at(2 * oy + 1, 2 * ox + 1),
                        ];
                        let mut win = taps[0];
                        for &t in &taps[1..] {
                            if x.data[t] > x.data[win] {
                                win = t;
                            }
                        }
                        let o = ((b * 3 + oy) * 3 + ox) * 3 + ch;
                        assert_eq!(y_fast.data[o], x.data[win]);
                        assert_eq!(
                            fast.winners[o] as usize,
                            win - b * 6 * 6 * 3,
                            "winner of output {o}"
                        );
                    }
                }
            }
        }
    }

    /// The tiled per-channel sums (f32 inside blocks of tiles, f64 across) against plain f64 sums,
    /// over several blocks and a partial last tile.
    #[test]
    fn channel_sums_match_f64_sums() {
        let c = 5;
        let rows = 16 * TILE_ROWS * 2 + 37;
        let a = random(1, rows, 1, c, 50, false).data.clone();
        let b = random(1, rows, 1, c, 51, false).data.clone();
        let (sa, sab) = channel_sums(&a, &b, c);
        for j in 0..c {
            let (mut wa, mut wab) = (0.0f64, 0.0f64);
            for r in 0..rows {
                wa += f64::from(a[r * c + j]);
                wab += f64::from(a[r * c + j]) * f64::from(b[r * c + j]);
            }
            assert!((sa[j] - wa).abs() < 1e-3, "channel {j}: {} vs {wa}", sa[j]);
            assert!(
                (sab[j] - wab).abs() < 1e-3,
                "channel {j}: {} vs {wab}",
                sab[j]
            );
        }
    }

    #[test]
    fn fake_quant_rounds_to_the_grid_and_passes_gradients_straight_through() {
        let mut fq = FakeQuant::new(-1.0, 3.0);
        assert!((fq.scale - 4.0 / 255.0).abs() < 1e-7);
        let x = Tensor::from(1, 1, 1, 5, vec![-2.0, -0.5, 0.013, 1.0, 5.0]);
        let y = fq.forward(&x, true);
        for (&v, &q) in x.data.iter().zip(&y.data) {
            let steps = q / fq.scale;
            assert!((steps - steps.round()).abs() < 1e-3, "{q} is on the grid");
            let code = steps.round() as i32 + fq.zero_point;
            assert!((-128..=127).contains(&code));
            if (-1.0..=3.0).contains(&v) {
                assert!((q - v).abs() <= fq.scale / 2.0 + 1e-6, "{v} -> {q}");
            }
        }
        assert!((y.data[0] - fq.range.0).abs() < fq.scale, "clamped below");
        assert!((y.data[4] - fq.range.1).abs() < fq.scale, "clamped above");
        let dx = fq.backward(&Tensor::from(1, 1, 1, 5, vec![1.0; 5]));
        assert_eq!(dx.data, vec![0.0, 1.0, 1.0, 1.0, 0.0]);
    }

    /// Under QAT a convolution computes with the int8 weights and int32 bias the export writes.
    #[test]
    fn qat_convolution_uses_the_exported_integers() {
        let mut l = Conv2d::new(2, 3, [3, 3], 1, Padding::Same, 41);
        l.bias.value = vec![0.05, -0.1, 0.2];
        let x = random(2, 4, 4, 2, 42, false);
        let float = l.forward(&x, true);
        l.qat_input_scale = Some(0.01);
        let qat = l.forward(&x, true);
        let (q, scales) = quantize_weights(&l.weight.value, 3);
        let bias = quantize_bias(&l.bias.value, 0.01, &scales);
        let mut reference = Conv2d::new(2, 3, [3, 3], 1, Padding::Same, 41);
        reference.weight.value = q
            .iter()
            .enumerate()
            .map(|(i, &v)| f32::from(v) * scales[i / 18])
            .collect();
        reference.bias.value = bias
            .iter()
            .zip(&scales)
            .map(|(&b, s)| b as f32 * 0.01 * s)
            .collect();
        let want = reference.forward(&x, true);
        for (a, b) in qat.data.iter().zip(&want.data) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert!(
            qat.data.iter().zip(&float.data).any(|(a, b)| a != b),
            "quantisation changes something"
        );
        // The straight-through gradient still reaches the float weights.
        check_weights_get_gradients(&mut l, &x);
    }

    fn check_weights_get_gradients(l: &mut Conv2d, x: &Tensor) {
        let y = l.forward(x, true);
        l.weight.grad.iter_mut().for_each(|g| *g = 0.0);
        l.backward(&y);
        assert!(l.weight.grad.iter().any(|&g| g != 0.0));
    }

    #[test]
    fn gradients_depthwise() {
        for (m, k, stride, padding) in [
            (1, [3, 3], 1, Padding::Same),
            (2, [3, 3], 2, Padding::Valid),
            (1, [5, 3], 2, Padding::Same),
        ] {
            let mut l = DepthwiseConv2d::new(3, m, k, stride, padding, 4);
            // 6 samples: two parallel groups.
            check(&mut l, &random(6, 6, 5, 3, 5, false), 6);
        }
    }

    /// The direct definition of a depthwise convolution, one tap at a time (index by index on
    /// purpose: it is the definition the fast loops are checked against).
    #[allow(clippy::needless_range_loop)]
    fn depthwise_reference(l: &DepthwiseConv2d, x: &Tensor, dy: &Tensor) -> [Vec<f64>; 4] {
        let (oh, pt) = geometry(x.h, l.k[0], l.stride, l.padding);
        let (ow, pl) = geometry(x.w, l.k[1], l.stride, l.padding);
        let oc = x.c * l.multiplier;
        let mut y = vec![0.0f64; x.n * oh * ow * oc];
        let mut dx = vec![0.0f64; x.data.len()];
        let mut dw = vec![0.0f64; l.weight.value.len()];
        let mut db = vec![0.0f64; oc];
        for b in 0..x.n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for o in 0..oc {
                        let yi = ((b * oh + oy) * ow + ox) * oc + o;
                        let d = f64::from(dy.data[yi]);
                        y[yi] += f64::from(l.bias.value[o]);
                        db[o] += d;
                        for ky in 0..l.k[0] {
                            for kx in 0..l.k[1] {
                                let (iy, ix) = (oy * l.stride + ky, ox * l.stride + kx);
                                if iy < pt || ix < pl || iy - pt >= x.h || ix - pl >= x.w {
                                    continue;
                                }
                                let xi =
                                    ((b * x.h + iy - pt) * x.w + ix - pl) * x.c + o / l.multiplier;
                                let wi = (ky * l.k[1] + kx) * oc + o;
                                y[yi] += f64::from(x.data[xi]) * f64::from(l.weight.value[wi]);
                                dw[wi] += f64::from(x.data[xi]) * d;
                                dx[xi] += f64::from(l.weight.value[wi]) * d;
                            }
                        }
                    }
                }
            }
        }
        [y, dx, dw, db]
    }

    #[test]
    fn depthwise_matches_its_definition() {
        let mut cases = 0;
        for m in [1, 2, 3] {
            for (k, stride, padding, h, w) in [
                ([3, 3], 1, Padding::Same, 7, 6),
                ([5, 5], 2, Padding::Same, 9, 8),
                ([3, 5], 2, Padding::Valid, 6, 9),
                ([1, 1], 1, Padding::Valid, 3, 3),
                ([5, 5], 1, Padding::Same, 2, 3),
            ] {
                let mut l = DepthwiseConv2d::new(4, m, k, stride, padding, 7 + cases);
                l.bias
                    .value
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b = i as f32 * 0.1);
                let x = random(9, h, w, 4, 8 + cases, false);
                let y = l.forward(&x, true);
                let dy = random(y.n, y.h, y.w, y.c, 9 + cases, false);
                let dx = l.backward(&dy);
                let [ry, rdx, rdw, rdb] = depthwise_reference(&l, &x, &dy);
                for (what, got, want) in [
                    ("y", &y.data, &ry),
                    ("dx", &dx.data, &rdx),
                    ("dw", &l.weight.grad, &rdw),
                    ("db", &l.bias.grad, &rdb),
                ] {
                    assert_eq!(got.len(), want.len(), "{what} m={m} k={k:?}");
                    for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
                        assert!(
                            (f64::from(*a) - b).abs() < 1e-4 * (1.0 + b.abs()),
                            "{what}[{i}] m={m} k={k:?} s={stride}: {a} vs {b}"
                        );
                    }
                }
                cases += 1;
            }
        }
        // Without the input gradient, the weight gradient is unchanged and dx is zero.
        let mut l = DepthwiseConv2d::new(2, 1, [3, 3], 1, Padding::Same, 3);
        l.input_grad = false;
        let x = random(2, 4, 4, 2, 4, false);
        let y = l.forward(&x, true);
        assert!(l.backward(&y).data.iter().all(|&v| v == 0.0));
        assert!(l.weight.grad.iter().any(|&g| g != 0.0));
    }

    /// Under QAT a depthwise convolution computes with the int8 weights (per output channel,
    /// across the `[taps][out]` layout) and the int32 bias the export writes.
    #[test]
    fn qat_depthwise_uses_the_exported_integers() {
        let mut l = DepthwiseConv2d::new(3, 1, [3, 3], 1, Padding::Same, 51);
        l.bias.value = vec![0.05, -0.1, 0.2];
        // Channel 1 much smaller than the others: a per-tensor scale would flatten it.
        for t in 0..9 {
            l.weight.value[t * 3 + 1] *= 0.01;
        }
        let x = random(2, 4, 4, 3, 52, false);
        let float = l.forward(&x, true);
        l.qat_input_scale = Some(0.01);
        let qat = l.forward(&x, true);
        let (q, scales) = quantize_weights(&transpose(&l.weight.value, 9, 3), 3);
        let bias = quantize_bias(&l.bias.value, 0.01, &scales);
        let mut reference = DepthwiseConv2d::new(3, 1, [3, 3], 1, Padding::Same, 51);
        let deq: Vec<f32> = q
            .iter()
            .enumerate()
            .map(|(i, &v)| f32::from(v) * scales[i / 9])
            .collect();
        reference.weight.value = transpose(&deq, 3, 9);
        reference.bias.value = bias
            .iter()
            .zip(&scales)
            .map(|(&b, s)| b as f32 * 0.01 * s)
            .collect();
        let want = reference.forward(&x, true);
        for (a, b) in qat.data.iter().zip(&want.data) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert!(qat.data.iter().zip(&float.data).any(|(a, b)| a != b));
        assert!(
            scales[1] < scales[0] / 20.0,
            "per-channel scales: {scales:?}"
        );
        l.weight.grad.iter_mut().for_each(|g| *g = 0.0);
        l.backward(&qat);
        assert!(l.weight.grad.iter().any(|&g| g != 0.0));
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

    #[test]
    fn batch_norm_evaluation_uses_the_running_statistics() {
        let mut r = SplitMix(1);
        let x = Tensor::from(
            64,
            7,
            7,
            8,
            (0..64 * 49 * 8).map(|_| r.real(-1.0, 2.0) as f32).collect(),
        );
        let mut bn = BatchNorm::new(8);
        bn.gamma.value = (0..8).map(|i| 0.5 + i as f32 * 0.1).collect();
        let yt = bn.forward(&x, true);
        let m: Vec<f32> = (0..8)
            .map(|j| {
                let mut s = 0.0f64;
                for r in 0..64 * 49 {
                    s += x.data[r * 8 + j] as f64;
                }
                (s / (64.0 * 49.0)) as f32
            })
            .collect();
        let v: Vec<f32> = (0..8)
            .map(|j| {
                let mut s = 0.0f64;
                for r in 0..64 * 49 {
                    let d = x.data[r * 8 + j] as f64 - m[j] as f64;
                    s += d * d;
                }
                (s / (64.0 * 49.0)) as f32
            })
            .collect();
        bn.running_mean = m.clone();
        bn.running_var = v.clone();
        let ye = bn.forward(&x, false);
        let md = yt
            .data
            .iter()
            .zip(&ye.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(md < 1e-3, "max diff {md}");
    }

    #[test]
    fn evaluation_does_not_depend_on_the_batch() {
        let mut r = SplitMix(1);
        let shape = crate::data::ImageShape { h: 28, w: 28, c: 1 };
        let mut net = crate::train::net::Net::new(
            crate::train::net::Arch::NanoNas { k: 8, c: 2 },
            shape,
            10,
            1,
        )
        .unwrap();
        let x = Tensor::from(
            64,
            28,
            28,
            1,
            (0..64 * 784).map(|_| r.real(0.0, 1.0) as f32).collect(),
        );
        for _ in 0..3 {
            net.forward(&x, true);
        }
        let y = net.forward(&x, false);
        for b in [0usize, 5, 63] {
            let xb = Tensor::from(1, 28, 28, 1, x.data[b * 784..(b + 1) * 784].to_vec());
            let yb = net.forward(&xb, false);
            let md = yb
                .data
                .iter()
                .zip(&y.data[b * 10..(b + 1) * 10])
                .map(|(a, c)| (a - c).abs())
                .fold(0.0f32, f32::max);
            assert!(
                md < 1e-4,
                "sample {b}: {md} {:?} vs {:?}",
                yb.data,
                &y.data[b * 10..b * 10 + 10]
            );
        }
    }
}
