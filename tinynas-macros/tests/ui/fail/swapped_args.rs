tinynas_runtime::model!("fixtures/valid.tnas", Net);

fn main() {}
