//! Exit codes of `cargo tinynas`, in one place.

/// Success.
pub const OK: i32 = 0;
/// The command failed (bad input file, I/O error, ...); the message says what to fix.
pub const ERROR: i32 = 1;
/// The command line is wrong (clap's usage errors use this code too).
pub const USAGE: i32 = 2;
/// The device's outputs differ from the host reference (`bench`, `verify`).
pub const MISMATCH: i32 = 3;
/// The model is over a budget (`search`'s final model, `verify`).
pub const OVER_BUDGET: i32 = 4;
/// No board to measure on: no debug probe found, or QEMU is not installed.
pub const NO_BOARD: i32 = 5;
/// Stopped by Ctrl-C (the shell's 128 + SIGINT): a stopped `search` resumes when run again.
pub const INTERRUPTED: i32 = 130;
