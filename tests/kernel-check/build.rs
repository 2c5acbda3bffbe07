//! Copies the cases and the memory layout the test chose into OUT_DIR.
fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    for (var, name) in [
        ("TINYNAS_KERNEL_CASES", "cases.bin"),
        ("TINYNAS_MEMORY_X", "memory.x"),
    ] {
        println!("cargo:rerun-if-env-changed={var}");
        let path = std::env::var_os(var).unwrap_or_else(|| panic!("set {var}"));
        println!(
            "cargo:rerun-if-changed={}",
            std::path::Path::new(&path).display()
        );
        std::fs::copy(&path, out.join(name)).unwrap();
    }
    println!("cargo:rustc-link-search={}", out.display());
}
