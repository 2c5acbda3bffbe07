tinynas_runtime::model!(Net, "fixtures/corrupted.tnas");

fn main() {}
