//! The model IR of cargo-tinynas, shared by the CLI and the `model!` proc macro.
//!
//! * [`ir`]: the graph (NHWC, batch 1), with shapes, MACs and parameter counts inferred as nodes are
//!   added ([`ModelBuilder`]). A wrong graph is an [`Error`] naming the node, never a panic.
//! * [`quant`]: TF Lite int8 arithmetic parameters (multiplier + shift) computed on the host.
//! * [`format`](mod@format): the versioned `.tnas` file, and a reader that validates everything.
//! * [`lower`]: the model as kernel calls with every integer parameter computed.
//! * [`plan`]: tensor liveness and arena offsets; the exact peak activation bytes.
//! * [`codegen`]: straight-line Rust for a model, as a `TokenStream`.
//! * [`host`]: runs a model on the host through the runtime's own kernels (the code that runs on
//!   the microcontroller), for int8 accuracy and as the reference a device's outputs must equal.
//! * [`random`]: a seeded generator of random valid networks, for tests of every layer above.

pub mod codegen;
mod error;
pub mod format;
pub mod host;
pub mod ir;
pub mod lower;
pub mod plan;
pub mod quant;
pub mod random;
pub mod select;

pub use error::Error;
pub use ir::{
    Activation, ConvParams, InputType, Model, ModelBuilder, Node, Op, Padding, PoolParams, QParams,
    Shape, TensorId,
};
