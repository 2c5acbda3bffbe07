//! The training engine: float32 layers with forward and backward passes, each checked against
//! finite differences, networks, optimisers, the training loop, int8 export and the
//! quantisation-aware fine-tune. NHWC batches; convolution weights
//! are `[out][kh][kw][in]`, the layout the int8 export writes, so no transposes are needed later.

pub mod bench;
pub mod command;
pub mod export;
pub mod fit;
pub mod layers;
pub mod net;
pub mod optim;
pub mod qat;
pub mod tensor;

pub use tensor::Tensor;
