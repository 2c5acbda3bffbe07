tinynas_runtime::model!(Net, "fixtures/truncated.tnas");

fn main() {}
