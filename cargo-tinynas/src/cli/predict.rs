//! `cargo tinynas predict`: one input through the host interpreter (the kernels the device runs),
//! its logits and class.

use std::path::PathBuf;

use super::MessageFormat;
use anyhow::Context;
use cargo_tinynas::exit_codes;
use clap::Args;
use tinynas_model::host::{HostModel, Input};
use tinynas_model::InputType;

#[derive(Args, Debug)]
pub(crate) struct PredictArgs {
    /// The model file: `.tnas`, or an int8 TF Lite `.tflite`.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// The input: an image (PNG, JPEG, BMP, PGM/PPM), read as grey or RGB and resized to the
    /// model's input as the data set loader does; for an int8 model each pixel p becomes p - 128.
    /// Or a `.bin` file holding exactly the input tensor's bytes (NHWC, u8 or i8 as the model
    /// takes).
    #[arg(long)]
    pub(crate) input: PathBuf,
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    pub(crate) message_format: MessageFormat,
}

pub(crate) fn run(a: PredictArgs) -> anyhow::Result<i32> {
    let loaded = cargo_tinynas::modelfile::load(&a.model)
        .with_context(|| format!("{} is not a usable model", a.model.display()))?;
    let model = &loaded.model;
    let bytes =
        cargo_tinynas::modelfile::input_bytes(model, &a.input).map_err(anyhow::Error::msg)?;
    let host = HostModel::new(model)?;
    let logits = match model.input_type {
        InputType::U8 => host.run(Input::U8(&bytes))?,
        InputType::I8 => {
            let x: Vec<i8> = bytes.iter().map(|&b| b as i8).collect();
            host.run(Input::I8(&x))?
        }
    };
    // The first of the largest, as the generated `predict` picks.
    let class = logits
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > logits[best] { i } else { best });
    let label = model.labels.get(class).cloned();
    // A TF Lite model whose output is uint8 or float: its values as TF Lite gives them too.
    let file_values = loaded.file_values(&logits);
    match a.message_format {
        MessageFormat::Json => out!(
            "{}",
            serde_json::json!({
                "reason": "prediction",
                "model": a.model.display().to_string(),
                "input": a.input.display().to_string(),
                "logits": logits,
                "class": class,
                "label": label,
                "file_output": file_values.as_ref().map(|v| serde_json::json!({
                    "dtype": loaded.file_output.name(),
                    "values": v,
                })),
            })
        ),
        MessageFormat::Human => {
            for n in &loaded.notes {
                eprintln!("note: {n}");
            }
            let name = |i: usize| {
                model
                    .labels
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| i.to_string())
            };
            if file_values.is_some() {
                eprintln!(
                    "  {:>12}  {:>4}  {:>12}",
                    "class",
                    "int8",
                    format!("{} (file)", loaded.file_output.name())
                );
            }
            for (i, v) in logits.iter().enumerate() {
                let mark = if i == class { "  <- class" } else { "" };
                match file_values.as_ref().and_then(|f| f.get(i)) {
                    Some(f) => eprintln!("  {:>12}  {v:>4}  {:>12}{mark}", name(i), f.to_string()),
                    None => eprintln!("  {:>12}  {v:>4}{mark}", name(i)),
                }
            }
            out!("{}", name(class));
        }
    }
    Ok(exit_codes::OK)
}
