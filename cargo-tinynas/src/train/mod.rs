//! The training engine: float32 layers with forward and backward passes, each checked against
//! finite differences, networks, optimisers, the training loop, int8 export, the
//! quantisation-aware fine-tune, and the training throughput benchmark (`train --bench`). NHWC
//! batches; convolution weights are `[out][kh][kw][in]`, the layout the int8 export writes, so
//! no transposes are needed later.

pub mod command;
pub mod export;
pub mod fit;
pub mod layers;
pub mod net;
pub mod optim;
pub mod qat;
pub mod tensor;
pub mod throughput;

pub use tensor::Tensor;
