//! Which fast kernel runs each node, decided on the host from the node's shape (never on the
//! device), and what that choice needs from the memory planner: scratch bytes during the node's
//! step, and whether the model's raw `u8` input can be read in place.
//!
//! * Conv2d (any kernel, 1x1 included): blocks of four im2col columns gathered into scratch, which
//!   also lets it read `u8` pixels directly (`tinynas_kernels::fast::conv2d`).
//! * DepthwiseConv2d, FullyConnected, MaxPool2d, GlobalAveragePool: their fast kernels, no scratch.
//! * AvgPool2d, Add, Softmax: the reference kernels (they are a small share of any model here).
//! * A `u8` model whose input is read only by convolutions needs no converted copy of its input
//!   in the arena: those convolutions gather from the caller's pixels ([`reads_raw_input`]).

use crate::ir::{InputType, Model, Op};
use tinynas_kernels::fast::im2col_scratch_bytes;
use tinynas_kernels::ConvDims;

/// True when the model's `u8` input is read only by Conv2d nodes, which then gather the raw
/// pixels themselves (so the arena holds no converted copy).
pub fn reads_raw_input(model: &Model) -> bool {
    let mut readers = model
        .nodes
        .iter()
        .filter(|n| n.inputs.contains(&0))
        .peekable();
    model.input_type == InputType::U8
        && readers.peek().is_some()
        && readers.all(|n| matches!(n.op, Op::Conv2d { .. }))
}

/// Scratch bytes node `i`'s kernel needs during its step (0 for most).
pub fn scratch_bytes(model: &Model, i: usize) -> usize {
    match model.nodes.get(i).map(|n| &n.op) {
        Some(Op::Conv2d { conv, .. }) => {
            let x = model.shape(model.nodes[i].inputs[0]);
            im2col_scratch_bytes(&ConvDims {
                in_h: x.h,
                in_w: x.w,
                in_c: x.c,
                out_h: 0,
                out_w: 0,
                out_c: 0,
                k_h: conv.kernel[0],
                k_w: conv.kernel[1],
                stride: conv.stride,
                pad_top: 0,
                pad_left: 0,
            })
        }
        _ => 0,
    }
}
