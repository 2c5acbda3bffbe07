tinynas_runtime::model!(Net, "fixtures/valid.tnas");

fn main() {
    let mut arena = [0u8; Net::ARENA_BYTES];
    // The model takes u8 pixels; an i8 image is a type error, not a run-time surprise.
    let image = [0i8; Net::INPUT_LEN];
    let _ = Net::new().predict(&image, &mut arena);
}
