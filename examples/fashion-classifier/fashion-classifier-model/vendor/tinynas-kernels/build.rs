//! Chooses the kernels' instruction-set path when the crate is compiled for its target (stable Rust
//! exposes no `target_feature` cfg for Arm targets, so the target name and the `target-cpu` /
//! `target-feature` flags cargo passes decide it here; nothing is checked on the MCU at run time).
//!
//! * `tinynas_dsp`: the Armv7E-M / Armv8-M DSP extension (SMLAD, SXTB16, ...): every `thumbv7em`
//!   target, and `thumbv8m.main` built for a core that has it (`-C target-cpu=cortex-m33`, `m35p`,
//!   `m55`, `m85`, or `-C target-feature=+dsp`).
//!
//! * `tinynas_mve`: Armv8.1-M MVE (Helium) on top of the DSP extension: `thumbv8m.main` built for
//!   `cortex-m55` or `cortex-m85` (or with `+mve`).
//! * `tinynas_v6m`: Armv6-M (`thumbv6m`: Cortex-M0, M0+, M1): its own convolution inner loop.
//!
//! Everything else (Armv7-M, RISC-V, the host) takes the portable path.
//!
//! * `tinynas_small`: the crate is built at `opt-level` `s` or `z` (the firmware asked for size):
//!   the largest depthwise paths are kept as one called copy instead of being inlined, and the
//!   loops around the inner ones use the kernels' own iterator adapters (`fast::mac::zip`, ...),
//!   whose `next` is always inlined, instead of core's.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(tinynas_dsp)");
    println!("cargo:rustc-check-cfg=cfg(tinynas_v6m)");
    println!("cargo:rustc-check-cfg=cfg(tinynas_mve)");
    println!("cargo:rustc-check-cfg=cfg(tinynas_small)");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    if matches!(std::env::var("OPT_LEVEL").as_deref(), Ok("s" | "z")) {
        println!("cargo:rustc-cfg=tinynas_small");
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let flags: Vec<&str> = flags.split('\x1f').collect();
    // `-C target-cpu=X`, `-Ctarget-cpu=X`, and the same for target-feature.
    let values = |key: &str| -> Vec<String> {
        let mut out = Vec::new();
        for (i, f) in flags.iter().enumerate() {
            let f = f.strip_prefix("-C").unwrap_or(f);
            let f = if f.is_empty() {
                flags.get(i + 1).copied().unwrap_or("")
            } else {
                f
            };
            if let Some(v) = f.strip_prefix(key).and_then(|v| v.strip_prefix('=')) {
                out.push(v.to_string());
            }
        }
        out
    };
    let cpu = values("target-cpu");
    let features = values("target-feature").join(",");
    let has = |feat: &str| features.split(',').any(|f| f == format!("+{feat}"));
    let lacks = |feat: &str| features.split(',').any(|f| f == format!("-{feat}"));
    let dsp_cpu = cpu.iter().any(|c| {
        matches!(
            c.as_str(),
            "cortex-m33" | "cortex-m35p" | "cortex-m55" | "cortex-m85"
        )
    });
    let dsp = if target.starts_with("thumbv7em") {
        !lacks("dsp")
    } else if target.starts_with("thumbv8m.main") {
        (dsp_cpu || has("dsp")) && !lacks("dsp")
    } else {
        false
    };
    if dsp {
        println!("cargo:rustc-cfg=tinynas_dsp");
    }
    let mve_cpu = cpu
        .iter()
        .any(|c| matches!(c.as_str(), "cortex-m55" | "cortex-m85"));
    if target.starts_with("thumbv8m.main")
        && (mve_cpu || has("mve") || has("mve.fp"))
        && !lacks("mve")
        && dsp
    {
        println!("cargo:rustc-cfg=tinynas_mve");
    }
    if target.starts_with("thumbv6m") {
        println!("cargo:rustc-cfg=tinynas_v6m");
    }
}
