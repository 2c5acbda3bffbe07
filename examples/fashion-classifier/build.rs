//! memory.x (the STM32F746's) is found by the linker in this folder. With `--features qemu` the
//! same image runs on QEMU's `netduinoplus2` (an STM32F405: flash at 0x0800_0000 as here, but
//! 128 KiB of SRAM), so the stack starts at the top of those 128 KiB instead.

fn main() {
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_QEMU").is_some() {
        println!("cargo:rustc-link-arg=--defsym=_stack_start=0x20020000");
    }
}
