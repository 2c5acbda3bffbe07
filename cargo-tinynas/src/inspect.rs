//! `cargo tinynas inspect`: what a model costs, layer by layer, from the IR and the planner alone.

use tinynas_model::plan::{plan, Location};
use tinynas_model::{InputType, Model};

/// A report of a model's costs: rendered as a table for people or as JSON for machines.
pub fn report(model: &Model) -> serde_json::Value {
    let p = plan(model);
    let layers: Vec<serde_json::Value> = model
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let (offset, bytes) = match p.locations[i + 1] {
                Location::Arena { offset, len } => (Some(offset), len),
                Location::Input => (None, 0),
            };
            serde_json::json!({
                "index": i,
                "name": n.name,
                "op": n.op.kind(),
                "output_shape": [n.shape.h, n.shape.w, n.shape.c],
                "macs": n.macs,
                "params": n.params(),
                "param_bytes": model.node_param_bytes(i),
                "activation_bytes": bytes,
                "arena_offset": offset,
                "aliases_input": matches!(n.op, tinynas_model::Op::Reshape { .. }),
            })
        })
        .collect();
    serde_json::json!({
        "reason": "model-report",
        "input": {
            "type": match model.input_type { InputType::U8 => "u8", InputType::I8 => "i8" },
            "shape": [model.input_shape.h, model.input_shape.w, model.input_shape.c],
            "scale": model.input_quant.scale,
            "zero_point": model.input_quant.zero_point,
        },
        "classes": model.classes(),
        "labels": model.labels,
        "layers": layers,
        "totals": {
            "macs": model.macs(),
            "params": model.params(),
            "param_bytes": model.param_bytes(),
            "arena_bytes": p.arena_bytes,
            "live_peak_bytes": p.live_peak_bytes,
            "naive_activation_bytes": p.naive_bytes,
        }
    })
}

/// The report as a table.
pub fn render(model: &Model, r: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let shape = |v: &serde_json::Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join("x")
            })
            .unwrap_or_default()
    };
    let _ = writeln!(
        s,
        "input: {} {}  ->  {} outputs",
        r["input"]["type"].as_str().unwrap_or(""),
        shape(&r["input"]["shape"]),
        model.classes()
    );
    let _ = writeln!(
        s,
        "{:>3}  {:<28} {:<18} {:>10} {:>12} {:>8} {:>10} {:>8}",
        "#", "name", "op", "output", "MACs", "params", "act bytes", "offset"
    );
    for l in r["layers"].as_array().into_iter().flatten() {
        let offset = l["arena_offset"]
            .as_u64()
            .map_or("-".to_string(), |o| o.to_string());
        let _ = writeln!(
            s,
            "{:>3}  {:<28} {:<18} {:>10} {:>12} {:>8} {:>10} {:>8}",
            l["index"].to_string(),
            fit_name(l["name"].as_str().unwrap_or(""), NAME_WIDTH),
            l["op"].as_str().unwrap_or(""),
            shape(&l["output_shape"]),
            l["macs"].to_string(),
            l["params"].to_string(),
            l["activation_bytes"].to_string(),
            offset
        );
    }
    let t = &r["totals"];
    let _ = writeln!(s, "MACs:                    {}", t["macs"]);
    let _ = writeln!(
        s,
        "parameters:              {} ({} bytes in flash with biases and requantisation constants)",
        t["params"], t["param_bytes"]
    );
    let _ = writeln!(s, "arena (planned peak):    {} bytes", t["arena_bytes"]);
    let _ = writeln!(s, "  live lower bound:      {} bytes", t["live_peak_bytes"]);
    let _ = writeln!(
        s,
        "  sum of activations:    {} bytes (what a planner without reuse needs)",
        t["naive_activation_bytes"]
    );
    s
}

/// Width of the name column in the human tables (JSON keeps whole names).
pub const NAME_WIDTH: usize = 28;

/// A layer name cut to `width` characters for a table column, keeping its end (the most specific
/// part of a TF Lite name such as `MobilenetV1/MobilenetV1/Conv2d_13_pointwise/Relu6`) behind `…`.
pub fn fit_name(name: &str, width: usize) -> String {
    let n = name.chars().count();
    if n <= width {
        return name.to_string();
    }
    let tail: String = name.chars().skip(n - width.saturating_sub(1)).collect();
    format!("…{tail}")
}

#[cfg(test)]
mod fit_tests {
    use super::fit_name;

    #[test]
    fn long_names_keep_their_end_and_the_width() {
        assert_eq!(fit_name("conv1", 28), "conv1");
        let long = "MobilenetV1/MobilenetV1/Conv2d_13_pointwise/Relu6";
        let cut = fit_name(long, 28);
        assert_eq!(cut.chars().count(), 28);
        assert!(cut.starts_with('…') && cut.ends_with("Conv2d_13_pointwise/Relu6"));
        assert_eq!(fit_name("ä".repeat(30).as_str(), 10).chars().count(), 10);
    }
}
