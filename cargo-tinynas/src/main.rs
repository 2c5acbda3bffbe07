//! `cargo tinynas`: see `cargo tinynas --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cargo_tinynas::{exit_codes, inspect};
use clap::{Args, Parser, Subcommand, ValueEnum};

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
}

#[derive(Args, Debug)]
struct InspectArgs {
    /// The `.tnas` model file.
    model: PathBuf,
    /// `human` (a table on stderr) or `json` (one JSON object per line on stdout).
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum MessageFormat {
    Human,
    Json,
}

fn main() -> ExitCode {
    let Cargo::Tinynas(args) = Cargo::parse();
    match run(args) {
        Ok(()) => ExitCode::from(exit_codes::OK as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_codes::ERROR as u8)
        }
    }
}

fn run(args: Tinynas) -> anyhow::Result<()> {
    match args.command {
        Command::Inspect(a) => {
            let bytes = std::fs::read(&a.model)
                .with_context(|| format!("cannot read {}", a.model.display()))?;
            let model = tinynas_model::format::read(&bytes)
                .with_context(|| format!("{} is not a usable model", a.model.display()))?;
            let report = inspect::report(&model);
            match a.message_format {
                MessageFormat::Json => println!("{report}"),
                MessageFormat::Human => eprint!("{}", inspect::render(&model, &report)),
            }
            Ok(())
        }
    }
}
