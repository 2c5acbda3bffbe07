//! Which fast kernel runs each node, decided on the host from the node's shape (never on the
//! device), and what that choice needs from the memory planner: scratch bytes during the node's
//! step, and whether the model's raw `u8` input can be read in place.
//!
//! * Conv2d (any kernel, 1x1 included): blocks of four im2col columns gathered into scratch, which
//!   also lets it read `u8` pixels directly (`tinynas_kernels::fast::conv2d`).
//! * DepthwiseConv2d: `tinynas_kernels::fast::depthwise_conv2d_rows` with the padded rows'
//!   scratch where the planner has room for it without raising the arena (DSP: each group's rows
//!   where short rows make that pay off, [`tinynas_kernels::fast::dw_groups::rows_pay_off`];
//!   Armv6-M: a strip of a window's rows; elsewhere, the portable path's ring of one channel's
//!   padded rows, `tinynas_kernels::fast::dw_channel`), else `depthwise_conv2d`; a layer the
//!   group path takes ([`tinynas_kernels::fast::dw_groups::groups_take`]) through
//!   `depthwise_conv2d_groups` instead, the same with less code (the generator's choice, in
//!   `codegen`). A narrow 3x3 Conv2d over one channel: `conv2d_one_channel`; a pointwise one
//!   that [`tinynas_kernels::fast::pointwise_takes`]: `conv2d_pointwise` (the same scratch).
//! * FullyConnected, MaxPool2d, GlobalAveragePool: their fast kernels, no scratch.
//! * AvgPool2d, Add, Softmax: the reference kernels (they are a small share of any model here).
//! * A `u8` model whose input is read only by convolutions needs no converted copy of its input
//!   in the arena: those convolutions gather from the caller's pixels ([`reads_raw_input`]).

use crate::ir::{InputType, Model, Op};
use tinynas_kernels::fast::dw_channel;
use tinynas_kernels::fast::dw_groups::{rows_pay_off, rows_scratch_bytes};
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

/// The geometry of node `i`, a (depthwise) convolution, as the kernels take it (the kernel cut
/// to the taps that read the input, [`crate::lower::crop`]).
fn conv_dims(model: &Model, i: usize, conv: &crate::ir::ConvParams) -> ConvDims {
    crate::lower::crop(&crate::lower::conv_dims(model, i, conv))
}

/// Scratch bytes node `i`'s kernel needs during its step (0 for most).
pub fn scratch_bytes(model: &Model, i: usize) -> usize {
    match model.nodes.get(i).map(|n| &n.op) {
        Some(Op::Conv2d { conv, .. }) => im2col_scratch_bytes(&conv_dims(model, i, conv)),
        _ => 0,
    }
}

/// Scratch bytes node `i` can use if the memory planner has room for them without raising the
/// liveness floor (0 for most): a depthwise layer whose output rows are short enough that the
/// padded-rows kernel pays off (`tinynas_kernels::fast::depthwise_conv2d_rows`), else the
/// portable channel path's smaller ring where that path takes the layer (the DSP and Armv6-M
/// paths run such a layer as without scratch).
pub fn optional_scratch_bytes(model: &Model, i: usize) -> usize {
    let Some(Op::DepthwiseConv2d { conv, .. }) = model.nodes.get(i).map(|n| &n.op) else {
        return 0;
    };
    let d = conv_dims(model, i, conv);
    if rows_pay_off(&d) {
        rows_scratch_bytes(&d)
    } else {
        dw_channel::scratch_bytes(&d).unwrap_or(0)
    }
}
