//! The training engine of cargo-tinynas: float32 layers with forward and backward passes, each
//! checked against finite differences, networks, optimisers, the training loop, int8 export, the
//! quantisation-aware fine-tune, and the training throughput benchmark (`train --bench`). NHWC
//! batches; convolution weights are `[out][kh][kw][in]`, the layout the int8 export writes, so
//! no transposes are needed later.
//!
//! The engine knows nothing of files or the command line: it reads labelled images through the
//! [`Samples`] trait (cargo-tinynas's data set cache implements it) and returns a
//! `tinynas_model::Model`, whose int8 accuracy it measures with the host interpreter
//! (`tinynas_model::host`, the runtime's own kernels).
//!
//! * [`tensor`]: the float32 NHWC batch tensor and the pool its buffers come from.
//! * [`layers`]: one file per layer family, and the finite-difference checks.
//! * [`net`]: architectures ([`net::Arch`]) built into networks.
//! * [`optim`]: Adam and SGD, learning-rate schedules.
//! * [`fit`]: the training loop with early stopping on validation accuracy.
//! * [`export`]: batch norm folded, int8 weights, calibrated activations, int8 evaluation.
//! * [`qat`]: the quantisation-aware fine-tune.
//! * [`throughput`]: the training throughput benchmark.

pub mod export;
pub mod fit;
pub mod layers;
pub mod net;
pub mod optim;
pub mod qat;
mod samples;
pub mod tensor;
pub mod throughput;

pub use samples::{ImageShape, ReadError, Samples};
pub use tensor::Tensor;
