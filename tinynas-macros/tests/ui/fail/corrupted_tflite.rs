tinynas_runtime::model!(Net, "fixtures/corrupted.tflite");

fn main() {}
