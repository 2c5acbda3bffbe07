tinynas_runtime::model!(Net, "fixtures/bad_magic.tnas");

fn main() {}
