//! Helpers shared by the end-to-end tests (each test file that starts the CLI has `mod common;`).

use std::process::Command;

/// `cargo tinynas` as a user runs it: the built binary and its `tinynas` subcommand word.
pub fn tinynas() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cargo-tinynas"));
    c.arg("tinynas");
    c
}
