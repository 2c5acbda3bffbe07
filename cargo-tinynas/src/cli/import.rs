//! `cargo tinynas import`: an int8 TF Lite model as a `.tnas` model file.

use std::path::PathBuf;

use super::MessageFormat;
use anyhow::{bail, Context};
use cargo_tinynas::exit_codes;
use clap::Args;

#[derive(Args, Debug)]
pub(crate) struct ImportArgs {
    /// The int8 TF Lite model (`.tflite`).
    pub(crate) model: PathBuf,
    /// Where to write the `.tnas` file (default: beside the model, with the extension `.tnas`).
    #[arg(short = 'o', long)]
    pub(crate) output: Option<PathBuf>,
    /// Class names, comma-separated, one per output value (a `.tflite` file carries none).
    #[arg(long, value_delimiter = ',')]
    pub(crate) labels: Vec<String>,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub(crate) force: bool,
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    pub(crate) message_format: MessageFormat,
}

pub(crate) fn run(a: ImportArgs) -> anyhow::Result<i32> {
    let bytes =
        std::fs::read(&a.model).with_context(|| format!("cannot read {}", a.model.display()))?;
    if !tinynas_tflite::is_tflite(&bytes) {
        bail!(
            "{} is not a TF Lite model (no \"TFL3\" identifier at offset 4); `import` reads .tflite files",
            a.model.display()
        );
    }
    let imported = tinynas_tflite::import(&bytes)
        .with_context(|| format!("cannot import {}", a.model.display()))?;
    let mut model = imported.model;
    if !a.labels.is_empty() {
        super::set_labels(&mut model, &a.labels)?;
    }
    let out = a
        .output
        .clone()
        .unwrap_or_else(|| a.model.with_extension("tnas"));
    if out.exists() && !a.force {
        bail!(
            "{} exists; give another --output, or --force to overwrite it",
            out.display()
        );
    }
    let tnas = tinynas_model::format::to_bytes(&model);
    cargo_tinynas::fsutil::write_atomic(&out, &tnas)
        .with_context(|| format!("cannot write {}", out.display()))?;
    match a.message_format {
        MessageFormat::Json => out!(
            "{}",
            serde_json::json!({
                "reason": "imported",
                "model": a.model.display().to_string(),
                "output": out.display().to_string(),
                "nodes": model.nodes.len(),
                "macs": model.macs(),
                "params": model.params(),
                "notes": imported.notes,
            })
        ),
        MessageFormat::Human => {
            for n in &imported.notes {
                eprintln!("note: {n}");
            }
            eprintln!(
                "imported {} ({} layers, {} MACs, {} parameters) to {}",
                a.model.display(),
                model.nodes.len(),
                model.macs(),
                model.params(),
                out.display()
            );
        }
    }
    Ok(exit_codes::OK)
}
