//! The latency predictor of the `evolve` strategy: a per-board table of layer latencies measured
//! on that board (every measured candidate adds its per-layer figures), and for each kind of layer
//! a least-squares fit `latency = a * MACs + b * output values + c` (without `c` from two rows, a
//! cost per MAC from one). A model's predicted latency is
//! the sum over its kernel calls. The table is kept in the cache folder, one file per board and
//! bench-firmware version (its sources' id), so later searches on the same board start from it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tinynas_model::Model;

/// One measured kernel call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub kind: String,
    /// The kernel's multiply-accumulates, padded taps included (`kernel_macs`).
    pub macs: u64,
    pub outputs: u64,
    pub latency: u64,
}

/// The table of one board.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Table {
    pub board: String,
    pub rows: Vec<Row>,
}

/// The kind of a kernel call, for the fit: the op, and the kernel size and stride of a
/// (depthwise) convolution.
fn kind_of(model: &Model, node: Option<usize>) -> String {
    use tinynas_model::Op;
    match node.and_then(|n| model.nodes.get(n)) {
        None => "input".into(),
        Some(n) => match &n.op {
            Op::Conv2d { conv, .. } => {
                format!("conv{}x{}s{}", conv.kernel[0], conv.kernel[1], conv.stride)
            }
            Op::DepthwiseConv2d { conv, .. } => {
                format!("dw{}x{}s{}", conv.kernel[0], conv.kernel[1], conv.stride)
            }
            op => op.kind().to_string(),
        },
    }
}

/// The multiply-accumulates a kernel does for a node: a (depthwise) convolution's taps over the
/// padding too (the kernels multiply the zero point there), so a 3x3 layer at 2x2 pixels costs
/// 9 taps per output value, not the 4 in bounds that [`tinynas_model::Node::macs`] counts.
fn kernel_macs(node: &tinynas_model::Node) -> u64 {
    use tinynas_model::Op;
    match &node.op {
        Op::Conv2d { conv, .. } | Op::DepthwiseConv2d { conv, .. } if !conv.bias.is_empty() => {
            node.shape.elements() as u64 * (conv.weights.len() / conv.bias.len()) as u64
        }
        _ => node.macs,
    }
}

/// The kernel calls of a model: kind, the kernel's MACs (`kernel_macs`) and output values of
/// each (in program order).
pub fn calls(model: &Model) -> Result<Vec<(String, u64, u64)>, tinynas_model::Error> {
    let program = tinynas_model::lower::lower(model)?;
    Ok(program
        .steps
        .iter()
        .map(|st| {
            let (macs, outputs) = match st.node.and_then(|n| model.nodes.get(n)) {
                Some(n) => (kernel_macs(n), n.shape.elements() as u64),
                None => (0, model.input_shape.elements() as u64),
            };
            (kind_of(model, st.node), macs, outputs)
        })
        .collect())
}

/// Solves the 3x3 system `m x = v` (Gaussian elimination with partial pivoting).
fn solve3(mut m: [[f64; 3]; 3], mut v: [f64; 3]) -> Option<[f64; 3]> {
    for c in 0..3 {
        let p = (c..3).max_by(|&a, &b| m[a][c].abs().total_cmp(&m[b][c].abs()))?;
        if m[p][c].abs() < 1e-12 {
            return None;
        }
        m.swap(c, p);
        v.swap(c, p);
        for r in 0..3 {
            if r != c {
                let f = m[r][c] / m[c][c];
                let pivot = m[c];
                for (x, p) in m[r].iter_mut().zip(pivot) {
                    *x -= f * p;
                }
                v[r] -= f * v[c];
            }
        }
    }
    Some([v[0] / m[0][0], v[1] / m[1][1], v[2] / m[2][2]])
}

impl Table {
    /// The table file of `board` in `cache`.
    pub fn path(cache: &Path, board: &str) -> PathBuf {
        // `taps`: rows count the kernel's MACs, padded taps included (older tables counted
        // MACs in bounds only, and are not mixed in). The firmware sources' id: other kernels
        // take other times (say, a depthwise layer's last channels in a group of four).
        cache.join("latency").join(format!(
            "{board}-report{}-taps-{}-{}.json",
            crate::report::VERSION,
            env!("CARGO_PKG_VERSION"),
            env!("TINYNAS_FIRMWARE_SOURCES")
        ))
    }

    /// Reads the board's table from the cache (empty if there is none or it cannot be read).
    pub fn load(cache: &Path, board: &str) -> Self {
        Self::read(&Self::path(cache, board))
            .filter(|t| t.board == board)
            .unwrap_or(Table {
                board: board.to_string(),
                rows: Vec::new(),
            })
    }

    /// Adds rows to the board's table in the cache.
    pub fn merge_into_cache(cache: &Path, board: &str, rows: &[Row]) -> std::io::Result<()> {
        let mut t = Self::load(cache, board);
        t.extend(rows);
        t.write(&Self::path(cache, board))
    }

    /// The rows of a measured model (`per_step`: latency of each kernel call, program order).
    pub fn rows_of(model: &Model, per_step: &[u64]) -> Result<Vec<Row>, tinynas_model::Error> {
        Ok(calls(model)?
            .into_iter()
            .zip(per_step)
            .map(|((kind, macs, outputs), &latency)| Row {
                kind,
                macs,
                outputs,
                latency,
            })
            .collect())
    }

    /// Whether a kind of kernel call has been measured.
    pub fn knows(&self, kind: &str) -> bool {
        self.rows.iter().any(|r| r.kind == kind)
    }

    /// Adds rows not in the table yet.
    pub fn extend(&mut self, rows: &[Row]) {
        for r in rows {
            if !self.rows.contains(r) {
                self.rows.push(r.clone());
            }
        }
    }

    /// Reads a table file.
    pub fn read(path: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// Writes a table file (temporary file, then rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        crate::fsutil::write_atomic(path, &bytes)
    }

    /// The fitted `(a, b, c)` of a kind, or a fallback from fewer rows.
    fn fit(&self, kind: &str) -> Option<[f64; 3]> {
        let rows: Vec<&Row> = self.rows.iter().filter(|r| r.kind == kind).collect();
        if rows.is_empty() {
            return None;
        }
        // Normal equations of latency ~ [macs, outputs, 1].
        let mut m = [[0.0f64; 3]; 3];
        let mut v = [0.0f64; 3];
        for r in &rows {
            let x = [r.macs as f64, r.outputs as f64, 1.0];
            for i in 0..3 {
                for j in 0..3 {
                    m[i][j] += x[i] * x[j];
                }
                v[i] += x[i] * r.latency as f64;
            }
        }
        if rows.len() >= 3 {
            // A little ridge on the slopes keeps the fit defined when the rows share a shape.
            let mut m = m;
            m[0][0] *= 1.0 + 1e-9;
            m[1][1] *= 1.0 + 1e-9;
            if let Some(x) = solve3(m, v) {
                return Some(x);
            }
        }
        // Two shapes (say a 3-channel stem and a 16-channel convolution): a cost per MAC and a
        // cost per output value, without the constant; kept only when both costs are positive.
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        if rows.len() >= 2 && det.abs() > 1e-9 * m[0][0] * m[1][1] {
            let a = (v[0] * m[1][1] - m[0][1] * v[1]) / det;
            let b = (m[0][0] * v[1] - m[1][0] * v[0]) / det;
            if a > 0.0 && b > 0.0 {
                return Some([a, b, 0.0]);
            }
        }
        // Fewer rows: latency per MAC (or per output value when there are no MACs).
        let (lat, macs, outs): (f64, f64, f64) = rows.iter().fold((0.0, 0.0, 0.0), |a, r| {
            (
                a.0 + r.latency as f64,
                a.1 + r.macs as f64,
                a.2 + r.outputs as f64,
            )
        });
        Some(if macs > 0.0 {
            [lat / macs, 0.0, 0.0]
        } else {
            [0.0, lat / outs.max(1.0), 0.0]
        })
    }

    /// Predicted latency of a model; `None` when a kind of layer has never been measured.
    pub fn predict(&self, model: &Model) -> Option<u64> {
        let mut total = 0.0f64;
        for (kind, macs, outputs) in calls(model).ok()? {
            let [a, b, c] = self.fit(&kind)?;
            total += (a * macs as f64 + b * outputs as f64 + c).max(0.0);
        }
        Some(total.round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_linear_cost_exactly() {
        let mut t = Table::default();
        for (macs, outs) in [(1000u64, 100u64), (5000, 300), (20000, 800), (7000, 50)] {
            t.rows.push(Row {
                kind: "conv3x3s1".into(),
                macs,
                outputs: outs,
                latency: 3 * macs + 7 * outs + 500,
            });
        }
        let [a, b, c] = t.fit("conv3x3s1").unwrap();
        assert!((a - 3.0).abs() < 1e-6 && (b - 7.0).abs() < 1e-6 && (c - 500.0).abs() < 1e-3);
        assert!(t.fit("conv5x5s2").is_none());
        // Two rows of different shapes: the cost per MAC and per output value, exactly.
        t.rows.retain(|r| r.macs != 1000 && r.macs != 7000);
        let [a, b, c] = t.fit("conv3x3s1").unwrap();
        let lat = |m: f64, o: f64| 3.0 * m + 7.0 * o + 500.0;
        let (m1, o1, m2, o2) = (5000.0, 300.0, 20000.0, 800.0);
        assert!(c == 0.0 && a > 0.0 && b > 0.0);
        assert!((a * m1 + b * o1 - lat(m1, o1)).abs() < 1e-6 * lat(m1, o1));
        assert!((a * m2 + b * o2 - lat(m2, o2)).abs() < 1e-6 * lat(m2, o2));
        // Two rows that would need a negative cost: latency per MAC.
        t.rows[1].latency = t.rows[0].latency;
        let [a, b, _] = t.fit("conv3x3s1").unwrap();
        assert_eq!(b, 0.0);
        assert!((a - 2.0 * lat(m1, o1) / (m1 + m2)).abs() < 1e-9);
        assert_eq!(
            solve3(
                [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
                [1.0; 3]
            ),
            None
        );
    }
}
