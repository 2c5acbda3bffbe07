//! cargo-tinynas as a library: what the `cargo tinynas` subcommand is made of.
//!
//! * [`host`]: runs a model on the host through the runtime's own kernels (the code that runs on
//!   the microcontroller), for int8 accuracy and as the reference a device's outputs must equal.
//! * [`inspect`]: a model's costs from the IR and the planner.
//! * [`exit_codes`]: the documented exit codes.

pub mod bench;
pub mod board;
pub mod chip;
pub mod data;
pub mod elf;
pub mod exit_codes;
pub mod firmware;
pub mod fsutil;
pub mod generate;
pub mod hash;
pub mod host;
pub mod inspect;
pub mod kernel_bench;
pub mod project;
pub mod report;
pub mod search;
pub mod train;
