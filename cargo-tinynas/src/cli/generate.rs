//! `cargo tinynas generate`: the model crate the firmware depends on.

use std::path::PathBuf;

use super::MessageFormat;
use anyhow::Context;
use cargo_tinynas::exit_codes;
use clap::Args;

#[derive(Args, Debug)]
pub(crate) struct GenerateArgs {
    /// The .tnas model file.
    #[arg(long)]
    pub(crate) model: PathBuf,
    #[command(flatten)]
    pub(crate) project: super::ProjectArgs,
    /// Architecture named on the model card.
    #[arg(long)]
    pub(crate) arch: Option<String>,
    /// Overwrite files edited since they were generated.
    #[arg(long)]
    pub(crate) force: bool,
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    pub(crate) message_format: MessageFormat,
}

pub(crate) fn run(a: GenerateArgs) -> anyhow::Result<i32> {
    use cargo_tinynas::generate::{self, Card};
    let p = a.project.project()?;
    let loaded = cargo_tinynas::modelfile::load(&a.model)
        .with_context(|| format!("{} is not a usable model", a.model.display()))?;
    for n in &loaded.notes {
        eprintln!("note: {n}");
    }
    let (model, bytes) = (loaded.model, loaded.tnas);
    p.check_model(&model, &a.model.display().to_string())?;
    let name = p.crate_name();
    let card = Card {
        arch: a.arch.clone(),
        notes: loaded.notes,
        ..Card::default()
    };
    let g = generate::generate(
        &p.dir.join(&name),
        &name,
        &bytes,
        &card,
        Some(&p.manifest_path),
        a.force,
    )?;
    let hint = p.kernel_hint();
    if a.message_format == MessageFormat::Json {
        out!(
            "{}",
            serde_json::json!({"reason": "generated", "crate": name, "dir": g.dir, "files": g.files, "dependency_added": g.dependency_added, "discarded": g.discarded, "hint": hint})
        );
    } else {
        if let Some(h) = &hint {
            eprintln!("note: {h}");
        }
        if !g.discarded.is_empty() {
            eprintln!(
                "--force replaced what had changed since the crate was generated:\n  {}",
                g.discarded.join("\n  ")
            );
        }
        eprintln!("wrote {} ({})", g.dir.display(), g.files.join(", "));
        if g.dependency_added {
            eprintln!(
                "added {name} to [dependencies] of {}",
                p.manifest_path.display()
            );
        }
    }
    Ok(exit_codes::OK)
}
