//! `no_std`, no-alloc, integer-only int8 kernels of cargo-tinynas, and their parameter types.
//!
//! Reference kernels, one per op: readable loops that follow TF Lite Micro's reference kernels
//! step for step. Tensors are NHWC with batch 1, passed as slices with a small dims struct. The
//! parameter types are shared with `tinynas-model`, which computes them on the host (its lowering
//! step), so the code generator, the host interpreter and the device use one definition.
//!
//! Every kernel is total: it reads with `get` and writes with `get_mut`, so no input can make it
//! panic (a slice shorter than the dims say yields wrong values, not a fault). Arithmetic that
//! could overflow on hostile parameters wraps, where C would be undefined.
//!
//! The reference kernels are the oracle and stay as readable as TF Lite's. What generated code
//! runs is in [`fast`]: kernels chosen per layer by the generator, with per-instruction-set inner
//! loops chosen when this crate is compiled for its target (`build.rs`; never at run time). The
//! only `unsafe` is in `isa_dsp.rs`, `isa_mve.rs` and `isa_v6m.rs` (`asm!`), each block with its
//! SAFETY note.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![deny(clippy::float_arithmetic)]

mod conv;
mod elementwise;
pub mod fast;
pub mod fixed;
#[cfg(any(tinynas_dsp, test))]
mod isa_dsp;
#[cfg(any(tinynas_mve, test))]
mod isa_mve;
#[cfg(any(tinynas_v6m, test))]
mod isa_v6m;
mod layout;
mod pool;

pub use conv::{conv2d, depthwise_conv2d, fully_connected, Conv, ConvDims, Dense};
pub use elementwise::{add, quantize_u8, softmax, AddParams, SoftmaxParams};
pub use layout::{concat_channels, pad, PadDims};
pub use pool::{avg_pool2d, global_average_pool, max_pool2d, MeanParams, PoolDims};

/// Offsets and clamp of a requantised int8 output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputQuant {
    /// The negated input zero point.
    pub input_offset: i32,
    /// The output zero point.
    pub output_offset: i32,
    /// Clamp range (the fused activation), within `-128..=127`.
    pub act_min: i32,
    pub act_max: i32,
}

#[inline]
fn clamp_i8(v: i32, min: i32, max: i32) -> i8 {
    v.max(min).min(max).clamp(-128, 127) as i8
}

#[inline]
fn at(input: &[i8], index: usize) -> i32 {
    i32::from(input.get(index).copied().unwrap_or(0))
}

#[inline]
fn put(output: &mut [i8], index: usize, v: i8) {
    if let Some(o) = output.get_mut(index) {
        *o = v;
    }
}
