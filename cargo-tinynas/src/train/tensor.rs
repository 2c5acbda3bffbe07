//! A float32 NHWC batch.

/// `n` samples of `h x w x c`, stored NHWC.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn zeros(n: usize, h: usize, w: usize, c: usize) -> Self {
        Tensor {
            n,
            h,
            w,
            c,
            data: vec![0.0; n * h * w * c],
        }
    }

    pub fn from(n: usize, h: usize, w: usize, c: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), n * h * w * c, "tensor data length");
        Tensor { n, h, w, c, data }
    }

    /// Elements per sample.
    pub fn sample_len(&self) -> usize {
        self.h * self.w * self.c
    }

    pub fn same_shape(&self) -> Self {
        Tensor::zeros(self.n, self.h, self.w, self.c)
    }
}
