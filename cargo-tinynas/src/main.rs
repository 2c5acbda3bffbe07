//! `cargo tinynas`: see `cargo tinynas --help`. The commands are in `cli/`, one file each.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod cli;

use cli::{bench::BenchArgs, generate::GenerateArgs, init::InitArgs, inspect::InspectArgs};
use cli::{import::ImportArgs, predict::PredictArgs};
use cli::{search::SearchArgs, train::TrainArgs, verify::VerifyArgs};

#[derive(Parser, Debug)]
#[command(name = "cargo", bin_name = "cargo", styles = clap::builder::Styles::plain())]
enum Cargo {
    /// Design a tiny neural network for one microcontroller and generate its inference crate.
    #[command(version)]
    Tinynas(Tinynas),
}

#[derive(Args, Debug)]
struct Tinynas {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show a model's layers, MACs, parameters and planned activation memory.
    Inspect(InspectArgs),
    /// Import an int8 TF Lite model (.tflite) as a .tnas model file. Every other command also
    /// takes a .tflite file directly; a model that cannot run bit-exactly is refused with the
    /// operator and what to do (exit 1).
    Import(ImportArgs),
    /// Run one input (an image, or a .bin file of the input tensor's bytes) through the host
    /// interpreter, the same kernels the device runs, and print its logits and class.
    Predict(PredictArgs),
    /// Measure a model on a board: latency, peak SRAM and flash, with the device's outputs checked
    /// against the host bit for bit. Exit codes: 0 ok, 3 outputs differ, 5 no board, 2 usage, 1
    /// other errors.
    Bench(BenchArgs),
    /// Train one architecture on a dataset, export it as an int8 model, and report its accuracy.
    /// Ctrl-C stops after the current batch and writes the best epoch so far (exit 130).
    Train(TrainArgs),
    /// Add a commented default [package.metadata.tinynas] section to the firmware's Cargo.toml,
    /// and show the board it measures on (the chip's, or its core's emulator) and the budgets it
    /// gives.
    Init(InitArgs),
    /// Write the model crate the firmware depends on (`<package>-model/`: Cargo.toml, src/lib.rs
    /// with `model!`, a README model card, the .tnas file) and add it to the firmware's
    /// dependencies. Files edited since they were generated are kept unless --force is given.
    Generate(GenerateArgs),
    /// Search the architecture that fits the chip: train candidates, measure each on the board
    /// (or QEMU), keep to the budgets; then retrain the winner and generate its crate.
    /// Exit codes: 0 ok, 4 the winner is over budget, 5 no board (QEMU or probe missing), 130
    /// stopped by Ctrl-C (run it again to resume), 2 usage, 1 other errors.
    Search(SearchArgs),
    /// Check the generated model crate on the board (or QEMU): the device's outputs on test
    /// images equal the host's bit for bit, and the measured figures are within the budgets.
    /// Exit codes: 0 ok, 3 outputs differ, 4 over budget, 5 no board, 2 usage, 1 other errors.
    Verify(VerifyArgs),
}

fn main() -> ExitCode {
    let Cargo::Tinynas(args) = Cargo::parse();
    match run(args) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {}", cli::error_text(&e));
            ExitCode::from(cli::exit_code(&e))
        }
    }
}

fn run(args: Tinynas) -> anyhow::Result<i32> {
    match args.command {
        Command::Inspect(a) => cli::inspect::run(a),
        Command::Import(a) => cli::import::run(a),
        Command::Predict(a) => cli::predict::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Train(a) => cli::train::run(a),
        Command::Init(a) => cli::init::run(a),
        Command::Generate(a) => cli::generate::run(a),
        Command::Verify(a) => cli::verify::run(a),
        Command::Search(a) => cli::search::run(a),
    }
}
