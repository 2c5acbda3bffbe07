tinynas_runtime::model!(Net);

fn main() {}
