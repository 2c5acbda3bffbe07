//! Layers with forward and backward passes, one file per family. Each keeps what its backward
//! pass needs from the last forward pass, and accumulates parameter gradients into
//! [`Param::grad`].

mod activation;
mod conv;
mod dense;
mod loss;
mod matmul;
mod norm;
mod pool;
mod quant;
#[cfg(test)]
mod tests;
mod window;

pub use activation::{Dropout, Relu};
pub use conv::{Conv2d, DepthwiseConv2d};
pub use dense::Dense;
pub use loss::{softmax_cross_entropy, softmax_cross_entropy_smoothed};
pub use norm::{BatchNorm, BN_MOMENTUM};
pub use pool::{GlobalAvgPool, Pool};
pub use quant::{quantize_bias, quantize_weights, FakeQuant};

use super::Tensor;
use matmul::gemm;
use quant::effective_weights;
use rayon::prelude::*;
use tinynas_model::ir::window_output;
use tinynas_model::random::{Source, SplitMix};
use tinynas_model::Padding;
use window::Window;

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

/// Output side and padding before, as the int8 runtime computes them. `Arch` validation rejects
/// windows that do not fit before a network is built, so `None` is a shape bug (checked in debug
/// builds; release builds get an empty output).
fn geometry(input: usize, k: usize, stride: usize, padding: Padding) -> (usize, usize) {
    let g = window_output(input, k, stride, padding);
    debug_assert!(
        g.is_some(),
        "a window of {k} with stride {stride} does not fit a side of {input} (a shape bug)"
    );
    g.unwrap_or((0, 0))
}

/// Samples per parallel task. Fixed (not derived from the thread count) so that every sum of
/// per-task partial gradients is added in the same order whatever the number of threads: a seed
/// gives the same weights on any machine.
const GROUP: usize = 4;

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
