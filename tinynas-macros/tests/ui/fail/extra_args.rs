tinynas_runtime::model!(Net, "fixtures/valid.tnas", extra);

fn main() {}
