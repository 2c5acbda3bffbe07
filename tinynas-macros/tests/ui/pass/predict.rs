tinynas_runtime::model!(Net, "fixtures/valid.tnas");
tinynas_runtime::model!(SignedNet, "fixtures/i8_input.tnas",);

fn main() {
    let mut arena = [0u8; Net::ARENA_BYTES];
    let image = [200u8; Net::INPUT_LEN];
    let p = Net::new().predict(&image, &mut arena);
    assert!(p.class < Net::CLASSES);
    assert_eq!(Net::INPUT_SHAPE, [8, 8, 1]);
    assert!(Net::MACS > 0 && Net::PARAMS > 0);

    // An i8 model takes an i8 image.
    let mut arena = [0u8; SignedNet::ARENA_BYTES];
    let image = [-3i8; SignedNet::INPUT_LEN];
    let q = SignedNet::new().predict(&image, &mut arena);
    assert_eq!(q.logits.len(), SignedNet::CLASSES);
}
