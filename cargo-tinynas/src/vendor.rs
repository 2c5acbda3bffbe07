//! The runtime crates a generated crate carries with it, so that a firmware project builds on any
//! machine: `tinynas-runtime` and what it needs (`tinynas-kernels`, `tinynas-macros`,
//! `tinynas-model`), embedded in the tool when it is built from its repository (`build.rs`) and
//! written into the generated crate's `vendor/` folder. Each vendored manifest names the others
//! by relative path and by version, as crates.io wants them, so the same crates publish as they
//! are. A tool built outside its repository embeds nothing; its generated crates depend on the
//! published `tinynas-runtime` by version.

include!(concat!(env!("OUT_DIR"), "/vendored.rs"));

/// The folder of the generated crate that holds the vendored crates.
pub const FOLDER: &str = "vendor";

/// The runtime's version: the workspace's, which every runtime crate shares.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The generated crate's `tinynas-runtime` dependency, as TOML: the vendored copy (with its
/// version) where the tool carries one, else the published crate.
pub fn runtime_dependency() -> String {
    if FILES.is_empty() {
        format!("\"{VERSION}\"")
    } else {
        format!("{{ version = \"{VERSION}\", path = \"{FOLDER}/tinynas-runtime\" }}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_runtime_crate_is_vendored_with_a_standalone_manifest() {
        for name in [
            "tinynas-kernels",
            "tinynas-model",
            "tinynas-macros",
            "tinynas-runtime",
        ] {
            let manifest = FILES
                .iter()
                .find(|(p, _)| *p == format!("{name}/Cargo.toml"))
                .map(|(_, b)| std::str::from_utf8(b).unwrap())
                .unwrap_or_else(|| panic!("{name} is not vendored"));
            let m: toml::Table = manifest.parse().unwrap();
            assert_eq!(m["package"]["name"].as_str(), Some(name));
            assert_eq!(m["package"]["version"].as_str(), Some(VERSION));
            assert!(m["package"]["license"].is_str(), "{manifest}");
            assert!(!manifest.contains("workspace = true"), "{manifest}");
            assert!(!manifest.contains("dev-dependencies"), "{manifest}");
            assert!(
                FILES
                    .iter()
                    .any(|(p, _)| *p == format!("{name}/src/lib.rs")),
                "{name}'s lib.rs"
            );
            // Sibling runtime crates by relative path and version; nothing else by path.
            for (dep, v) in m["dependencies"].as_table().unwrap() {
                match v.get("path").and_then(|p| p.as_str()) {
                    Some(p) => {
                        assert_eq!(p, format!("../{dep}"));
                        assert_eq!(v["version"].as_str(), Some(VERSION));
                    }
                    None => assert!(!dep.starts_with("tinynas-"), "{dep} in {manifest}"),
                }
            }
        }
        assert_eq!(
            runtime_dependency(),
            format!("{{ version = \"{VERSION}\", path = \"vendor/tinynas-runtime\" }}")
        );
    }
}
