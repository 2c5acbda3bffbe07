//! The training engine (work in progress for the "Training" issue): float32 layers with forward
//! and backward passes, each checked against finite differences. NHWC batches; convolution weights
//! are `[out][kh][kw][in]`, the layout the int8 export writes, so no transposes are needed later.

pub mod bench;
pub mod command;
pub mod export;
pub mod fit;
pub mod layers;
pub mod net;
pub mod qat;
pub mod tensor;

pub use tensor::Tensor;
