tinynas_runtime::model!(Net, "fixtures/invalid_graph.tnas");

fn main() {}
