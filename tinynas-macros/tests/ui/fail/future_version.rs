tinynas_runtime::model!(Net, "fixtures/future_version.tnas");

fn main() {}
