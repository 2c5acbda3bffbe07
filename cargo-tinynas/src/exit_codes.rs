//! Exit codes of `cargo tinynas`, in one place.

/// Success.
pub const OK: i32 = 0;
/// The command failed (bad input file, I/O error, ...); the message says what to fix.
pub const ERROR: i32 = 1;
/// The command line is wrong (clap's usage errors use this code too).
pub const USAGE: i32 = 2;
