//! cargo-tinynas as a library: what the `cargo tinynas` subcommand is made of.
//!
//! * [`inspect`]: a model's costs from the IR and the planner.
//! * [`exit_codes`]: the documented exit codes.
//! * [`train`]: the `train` command over the training engine (the `tinynas-train` crate).
//! * [`search`], [`generate`], [`bench`](mod@bench), [`board`], [`project`], [`data`]: the search, the
//!   generated crate, measurements on a board, the firmware project, data sets.
//!
//! The host interpreter is `tinynas_model::host`; the training engine is `tinynas_train`.

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
pub mod host_memory;
pub mod inspect;
pub mod kernel_bench;
pub mod modelfile;
pub mod project;
pub mod report;
pub mod search;
pub mod setup;
pub mod train;
pub mod vendor;
