//! `cargo tinynas init`: the default `[package.metadata.tinynas]` section.

use cargo_tinynas::exit_codes;
use clap::Args;

#[derive(Args, Debug)]
pub(crate) struct InitArgs {
    #[command(flatten)]
    pub(crate) project: super::ProjectArgs,
}

pub(crate) fn run(a: InitArgs) -> anyhow::Result<i32> {
    use cargo_tinynas::project;
    let p = a.project.project()?;
    let section = project::init(&p.manifest_path, &p.name, p.chip().as_deref())?;
    eprintln!("added to {}:{section}", p.manifest_path.display());
    if let Some(chip) = p.chip() {
        eprintln!(
            "chip {chip} (from {})",
            p.cargo
                .path
                .as_ref()
                .map_or("the manifest".into(), |x| x.display().to_string())
        );
    }
    if let Some(m) = &p.memory_x {
        eprintln!(
            "memory.x: RAM {} bytes at {:#x}, flash {} bytes at {:#x}",
            m.ram_length, m.ram_origin, m.flash_length, m.flash_origin
        );
    }
    // The budgets the section gives, from the chip's memory (or memory.x) or the board's.
    let p = a.project.project()?;
    let memory = match p.board() {
        cargo_tinynas::board::BoardChoice::Chip(c) => {
            let f = cargo_tinynas::board::probe::chip_facts(&c)?;
            eprintln!(
                "measured on: {} ({}) through a debug probe, or, with none connected, {} under QEMU",
                f.name,
                f.core,
                cargo_tinynas::board::probe::emulated_board_for(&f)
            );
            Some(f.memory)
        }
        cargo_tinynas::board::BoardChoice::Emulated { board, .. } => {
            cargo_tinynas::board::qemu::machine(&board).map(|m| {
                eprintln!("measured on: {board} ({}) under QEMU", m.core);
                cargo_tinynas::chip::MemoryLayout {
                    flash_origin: m.flash.0,
                    flash_length: m.flash.1,
                    ram_origin: m.ram.0,
                    ram_length: m.ram.1,
                    source: format!("QEMU machine {}", m.machine),
                }
            })
        }
    };
    if let Some(m) = memory {
        for line in p.budgets(&m)?.explain {
            eprintln!("budget: {line}");
        }
    }
    if let Some(h) = p.kernel_hint() {
        eprintln!("note: {h}");
    }
    if let Some(n) = p.link_note() {
        eprintln!("note: {n}");
    }
    eprintln!(
        "next: put a folder per class under {}, then run `cargo tinynas search`; or, with a model of your own, set `input` to its input and run `cargo tinynas generate --model MODEL.tflite`",
        p.data_dir().display()
    );
    Ok(exit_codes::OK)
}
