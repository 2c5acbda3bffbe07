//! [`Dense`].

use super::*;

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
        debug_assert!(self.x.is_some(), "dense: backward before forward");
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
