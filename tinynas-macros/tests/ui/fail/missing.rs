tinynas_runtime::model!(Net, "fixtures/does_not_exist.tnas");

fn main() {}
