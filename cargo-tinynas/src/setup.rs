//! What a fresh machine lacks, found before any work starts: the Rust target a bench firmware is
//! built for (installed with `rustup target add` when rustup manages the toolchain, as cargo
//! itself would need it), and QEMU for the emulated boards (not installed for the user: a system
//! package, so the error names the one command that installs it).

use std::path::Path;
use std::process::{Command, Stdio};

/// Why the machine cannot build or run a bench firmware.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the Rust target {target} is not installed and `rustup target add {target}` failed ({status}): run it yourself{detail}")]
    TargetAdd {
        target: String,
        status: String,
        detail: String,
    },
    #[error("the Rust target {0} is not installed and this toolchain is not managed by rustup: install the target's standard library for your rustc")]
    TargetMissing(String),
}

/// Whether the standard library of `target` is installed for the `rustc` cargo uses: its
/// `target-libdir` holds a `libcore`. `None` when `rustc` cannot say (then the build reports it).
pub fn target_installed(target: &str) -> Option<bool> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", target])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let has_core = std::fs::read_dir(Path::new(&dir))
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
        })
        .unwrap_or(false);
    Some(has_core)
}

/// Makes sure `target` can be built for: nothing when it is installed, else `rustup target add`
/// with one line on stderr saying so.
pub fn ensure_target(target: &str) -> Result<(), SetupError> {
    if target_installed(target) != Some(false) {
        return Ok(());
    }
    let rustup = std::env::var_os("RUSTUP").unwrap_or_else(|| "rustup".into());
    eprintln!("  installing the Rust target {target} (rustup target add {target}), once");
    match Command::new(rustup)
        .args(["target", "add", target])
        .stdout(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let last = err.lines().rev().find(|l| !l.trim().is_empty());
            Err(SetupError::TargetAdd {
                target: target.into(),
                status: o.status.to_string(),
                detail: last
                    .map(|l| format!("; rustup said: {}", l.trim()))
                    .unwrap_or_default(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(SetupError::TargetMissing(target.into()))
        }
        Err(e) => Err(SetupError::TargetAdd {
            target: target.into(),
            status: e.to_string(),
            detail: String::new(),
        }),
    }
}

/// Whether `qemu-system-arm` runs (`--version`).
pub fn qemu_installed() -> bool {
    Command::new("qemu-system-arm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_target_is_installed_and_a_made_up_one_is_not() {
        // The test binary's own target has its standard library, by construction.
        let host = env!("TINYNAS_HOST_TARGET");
        assert_eq!(target_installed(host), Some(true));
        // rustc knows no such target, so it cannot say where its library would be.
        assert_ne!(target_installed("thumbv99-none-eabi"), Some(true));
    }
}
