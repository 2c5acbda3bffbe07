//! Convolutions: [`Conv2d`] (im2col and `gemm`) and [`DepthwiseConv2d`].

use super::*;

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
                let mut cols = crate::tensor::take_any(xs.len() / sl * m * kd);
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
                crate::tensor::give(cols);
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
                let mut cols = crate::tensor::take_any(rows * kd);
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
                crate::tensor::give(cols);
                if input_grad {
                    // dcols[rows x kd] = dy[rows x out] * W[out x kd]
                    let mut dcols = crate::tensor::take_zeroed(rows * kd);
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
                    crate::tensor::give(dcols);
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
        debug_assert_eq!(
            oc,
            self.bias.value.len(),
            "depthwise: input channels x multiplier != the layer's channels (a shape bug)"
        );
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
            debug_assert!(false, "depthwise: backward before forward");
            return Tensor::zeros(0, 0, 0, 0);
        };
        let m = self.multiplier;
        let oc = win.c * m;
        let (sl, ol) = (win.h * win.w * win.c, win.out.0 * win.out.1 * oc);
        let mut dx = Tensor::zeros(n, win.h, win.w, win.c);
        debug_assert_eq!(
            dy.data.len(),
            n * ol,
            "depthwise: gradient of the wrong shape"
        );
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
