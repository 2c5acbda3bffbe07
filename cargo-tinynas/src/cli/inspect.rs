//! `cargo tinynas inspect`: a model's layers, MACs, parameters and planned memory.

use std::path::PathBuf;

use super::MessageFormat;
use anyhow::Context;
use cargo_tinynas::{exit_codes, inspect};
use clap::Args;

#[derive(Args, Debug)]
pub(crate) struct InspectArgs {
    /// The model file: `.tnas`, or an int8 TF Lite `.tflite`.
    pub(crate) model: PathBuf,
    /// `human` (a table on stderr) or `json` (one JSON object per line on stdout).
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    pub(crate) message_format: MessageFormat,
}

pub(crate) fn run(a: InspectArgs) -> anyhow::Result<i32> {
    let loaded = cargo_tinynas::modelfile::load(&a.model)
        .with_context(|| format!("{} is not a usable model", a.model.display()))?;
    let model = loaded.model;
    if a.message_format == MessageFormat::Human {
        for n in &loaded.notes {
            eprintln!("note: {n}");
        }
    }
    let report = inspect::report(&model);
    match a.message_format {
        MessageFormat::Json => out!("{report}"),
        MessageFormat::Human => eprint!("{}", inspect::render(&model, &report)),
    }
    Ok(exit_codes::OK)
}
