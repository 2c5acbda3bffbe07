//! Classifies the four test images in `test-images/images.bin` (Fashion-MNIST test set, not used
//! for training) with the model crate cargo-tinynas generated, and prints each class over
//! semihosting. Runs on an STM32F746 through `probe-rs run`, or under QEMU with `--features qemu`.
#![no_std]
#![no_main]

use core::panic::PanicInfo;

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use fashion_classifier_model::Model;

/// Four 28x28 grey images, one after the other.
static IMAGES: &[u8] = include_bytes!("../test-images/images.bin");

#[entry]
fn main() -> ! {
    // The model's activation memory: one buffer, its size known at compile time.
    let mut arena = [0u8; Model::ARENA_BYTES];
    let model = Model::new();
    for (i, image) in IMAGES.chunks_exact(Model::INPUT_LEN).enumerate() {
        if let Ok(image) = <&[u8; Model::INPUT_LEN]>::try_from(image) {
            let p = model.predict(image, &mut arena);
            let label = Model::LABELS.get(p.class).copied().unwrap_or("?");
            hprintln!("image {}: {}", i, label);
        }
    }
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
