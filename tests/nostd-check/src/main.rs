//! A firmware-shaped binary that runs five generated models, for the panic-never link check
//! (the depthwise-separable one takes the depthwise kernels' group and padded-rows paths; the two
//! converter-built TF Lite models hold PAD, CONCATENATION, MEAN and a uint8 input).
#![no_std]
#![no_main]

tinynas_runtime::model!(Sample, "../fixtures/nanonas-k8-c3.tnas");
tinynas_runtime::model!(AllOps, "../fixtures/all-ops.tnas");
tinynas_runtime::model!(Evolve, "../fixtures/evolve-dw.tnas");
tinynas_runtime::model!(TfliteOps, "../fixtures/tflite/ops_int8.tflite");
tinynas_runtime::model!(TfliteU8, "../fixtures/tflite/ops_uint8_per_tensor.tflite");

/// The entry point the linker keeps; everything reachable from it is checked.
#[no_mangle]
pub extern "C" fn _start() -> ! {
    let image = core::hint::black_box([0u8; Sample::INPUT_LEN]);
    let mut arena = [0u8; Sample::ARENA_BYTES];
    core::hint::black_box(Sample::new().predict(&image, &mut arena));

    let input = core::hint::black_box([0i8; AllOps::INPUT_LEN]);
    let mut arena = [0u8; AllOps::ARENA_BYTES];
    core::hint::black_box(AllOps::new().predict(&input, &mut arena));

    let image = core::hint::black_box([0u8; Evolve::INPUT_LEN]);
    let mut arena = [0u8; Evolve::ARENA_BYTES];
    core::hint::black_box(Evolve::new().predict(&image, &mut arena));

    let input = core::hint::black_box([0i8; TfliteOps::INPUT_LEN]);
    let mut arena = [0u8; TfliteOps::ARENA_BYTES];
    core::hint::black_box(TfliteOps::new().predict(&input, &mut arena));

    let image = core::hint::black_box([0u8; TfliteU8::INPUT_LEN]);
    let mut arena = [0u8; TfliteU8::ARENA_BYTES];
    core::hint::black_box(TfliteU8::new().predict(&image, &mut arena));

    #[cfg(feature = "deliberate-panic")]
    {
        let v = core::hint::black_box([1u8, 2, 3]);
        let i = core::hint::black_box(7usize);
        core::hint::black_box(v[i]);
    }
    #[allow(clippy::empty_loop)]
    loop {}
}

/// Any panic path left in the binary references this undefined symbol, and the link fails.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    extern "Rust" {
        fn __tinynas_panic_path_detected_see_tests_nostd_check() -> !;
    }
    unsafe { __tinynas_panic_path_detected_see_tests_nostd_check() }
}
