//! The latency predictor of the `evolve` strategy: a per-board table of layer latencies measured
//! on that board (every measured candidate adds its per-layer figures), and for each kind of layer
//! a least-squares fit `latency = a * MACs + b * output values + c` with no cost negative (where
//! the plain fit has one, the best fit with one or two of them at 0; without `c` from two rows, a
//! cost per MAC from one). A model's predicted latency is
//! the sum over its kernel calls. The table is kept in the cache folder, one file per board,
//! bench-firmware version (its sources' id) and opt-level, so later searches on the same board
//! start from it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tinynas_model::lower::{Kernel, Program, Step};
use tinynas_model::Model;

use crate::firmware::Profile;

/// One measured kernel call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub kind: String,
    /// The kernel's multiply-accumulates, padded taps included (`kernel_macs`).
    pub macs: u64,
    pub outputs: u64,
    pub latency: u64,
}

/// What one measured bench firmware took besides its model's parameter bytes and arena: in flash
/// the code of its kernels and of the bench harness, in SRAM the stack and the statics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    /// The kernel families its model called ([`families`]): what decides which kernel code is
    /// linked.
    pub families: Vec<String>,
    pub param_bytes: u64,
    pub arena_bytes: u64,
    /// Flash without the bench's input images.
    pub flash_bytes: u64,
    pub peak_sram_bytes: u64,
}

impl Sizes {
    /// Flash besides the parameters, SRAM besides the arena.
    fn overhead(&self) -> Overhead {
        Overhead {
            flash_bytes: self.flash_bytes.saturating_sub(self.param_bytes),
            sram_bytes: self.peak_sram_bytes.saturating_sub(self.arena_bytes),
        }
    }
}

/// Bytes a firmware is predicted to take besides a model's parameters (flash) and arena (SRAM).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overhead {
    pub flash_bytes: u64,
    pub sram_bytes: u64,
}

/// The table of one board.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Table {
    pub board: String,
    pub rows: Vec<Row>,
    /// The firmware sizes measured on the board (tables written before there were none).
    #[serde(default)]
    pub sizes: Vec<Sizes>,
}

/// The kind of a kernel call, for the fit: the op, and the kernel size and stride of a
/// (depthwise) convolution as the kernels run it (cut to the taps that read the input,
/// `tinynas_model::lower::crop`: a 5x5 layer on a 2x2 map runs as a 3x3 one).
fn kind_of(model: &Model, step: &Step) -> String {
    match (&step.kernel, step.node.and_then(|n| model.nodes.get(n))) {
        (_, None) => "input".into(),
        (Kernel::Conv2d { dims, .. }, _) => {
            format!("conv{}x{}s{}", dims.k_h, dims.k_w, dims.stride)
        }
        (Kernel::DepthwiseConv2d { dims, .. }, _) => {
            format!("dw{}x{}s{}", dims.k_h, dims.k_w, dims.stride)
        }
        (_, Some(n)) => n.op.kind().to_string(),
    }
}

/// The multiply-accumulates a kernel call does: a (depthwise) convolution's taps over the padding
/// too (the kernels multiply the zero point there), so a 3x3 layer at 2x2 pixels costs 9 taps per
/// output value, not the 4 in bounds that [`tinynas_model::Node::macs`] counts; the taps of the
/// kernel as cut by the lowering, not the model's.
fn kernel_macs(step: &Step, node: &tinynas_model::Node) -> u64 {
    match &step.kernel {
        Kernel::Conv2d { dims, .. } => {
            node.shape.elements() as u64 * (dims.k_h * dims.k_w * dims.in_c) as u64
        }
        Kernel::DepthwiseConv2d { dims, .. } => {
            node.shape.elements() as u64 * (dims.k_h * dims.k_w) as u64
        }
        _ => node.macs,
    }
}

/// The kernel calls of a model: kind, the kernel's MACs (`kernel_macs`) and output values of
/// each (in program order).
pub fn calls(model: &Model) -> Result<Vec<(String, u64, u64)>, tinynas_model::Error> {
    Ok(calls_of(model, &tinynas_model::lower::lower(model)?))
}

/// [`calls`] of the model's lowered `program`.
fn calls_of(model: &Model, program: &Program) -> Vec<(String, u64, u64)> {
    program
        .steps
        .iter()
        .map(|st| {
            let (macs, outputs) = match st.node.and_then(|n| model.nodes.get(n)) {
                Some(n) => (kernel_macs(st, n), n.shape.elements() as u64),
                None => (0, model.input_shape.elements() as u64),
            };
            (kind_of(model, st), macs, outputs)
        })
        .collect()
}

/// The kernel families a model calls, sorted, each once: the kinds of its calls, except that every
/// convolution is `conv` (one copy of the kernel serves every kernel size and stride, where the
/// depthwise paths have a copy per kernel size and stride: on qemu-m0-an385 a network with a
/// stride-1 depthwise layer took about 10 KB more code than one with stride-2 ones only); and
/// `conv3x3-one-channel` where a 3x3 convolution reads one channel (a grey image's first layer: the
/// kernels' own copy for it, 3.8 KB on qemu-m4), so that searches on grey and on colour images
/// share a board's table without mixing their code.
pub fn families(model: &Model) -> Result<Vec<String>, tinynas_model::Error> {
    let program = tinynas_model::lower::lower(model)?;
    let mut f: Vec<String> = calls_of(model, &program)
        .into_iter()
        .map(|(kind, ..)| match kind.strip_prefix("conv") {
            Some(_) => "conv".to_string(),
            None => kind,
        })
        .collect();
    let one_channel = program.steps.iter().any(|st| match &st.kernel {
        Kernel::Conv2d { dims, .. } => (dims.k_h, dims.k_w, dims.in_c) == (3, 3, 1),
        _ => false,
    });
    if one_channel {
        f.push("conv3x3-one-channel".to_string());
    }
    f.sort();
    f.dedup();
    Ok(f)
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

/// The least-squares fit of `latency ~ [macs, outputs, 1]` over `rows` under `x >= 0` where the
/// unconstrained fit has a negative cost: the optimum then has one or two of the costs at 0, so
/// it is the best (smallest squared error) of the fits of two of them and of one, among those
/// that come out non-negative (`m`, `v`: the normal equations of all three, the slopes' ridge
/// applied). `None` where none does.
fn nonnegative_face(rows: &[&Row], m: &[[f64; 3]; 3], v: &[f64; 3]) -> Option<[f64; 3]> {
    let error = |x: &[f64; 3]| -> f64 {
        rows.iter()
            .map(|r| {
                let e = x[0] * r.macs as f64 + x[1] * r.outputs as f64 + x[2] - r.latency as f64;
                e * e
            })
            .sum()
    };
    let mut faces: Vec<[f64; 3]> = Vec::new();
    for (i, j) in [(0, 1), (0, 2), (1, 2)] {
        let det = m[i][i] * m[j][j] - m[i][j] * m[j][i];
        if det.abs() <= 1e-12 * (m[i][i] * m[j][j]).abs() {
            continue;
        }
        let mut x = [0.0; 3];
        x[i] = (v[i] * m[j][j] - m[i][j] * v[j]) / det;
        x[j] = (m[i][i] * v[j] - m[j][i] * v[i]) / det;
        faces.push(x);
    }
    for i in 0..3 {
        if m[i][i] > 0.0 {
            let mut x = [0.0; 3];
            x[i] = v[i] / m[i][i];
            faces.push(x);
        }
    }
    faces
        .into_iter()
        .filter(|x| x.iter().all(|&c| c >= 0.0 && c.is_finite()))
        .map(|x| (error(&x), x))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, x)| x)
}

impl Table {
    /// The table file of `board` in `cache`, for firmware built with `profile`.
    pub fn path(cache: &Path, board: &str, profile: Profile) -> PathBuf {
        // `taps`: rows count the kernel's MACs, padded taps included (older tables counted
        // MACs in bounds only, and are not mixed in). The firmware sources' id: other kernels
        // take other times (say, a depthwise layer's last channels in a group of four). The
        // profile (but opt-level 3 with full debug info, whose name predates it): at `s` the same
        // kernels take other times and less code (person_detect on qemu-m4: 10 % more
        // instructions, 10 KB less code), and LLVM emits slightly other code without debug info.
        cache.join("latency").join(format!(
            "{board}-report{}-taps-{}-{}{}.json",
            crate::report::VERSION,
            env!("CARGO_PKG_VERSION"),
            env!("TINYNAS_FIRMWARE_SOURCES"),
            profile.suffix()
        ))
    }

    /// Reads the board's table for firmware built with `profile` from the cache (empty if there
    /// is none or it cannot be read).
    pub fn load(cache: &Path, board: &str, profile: Profile) -> Self {
        Self::read(&Self::path(cache, board, profile))
            .filter(|t| t.board == board)
            .unwrap_or(Table {
                board: board.to_string(),
                ..Table::default()
            })
    }

    /// Adds rows and a firmware's sizes to the board's table (for firmware built with `profile`)
    /// in the cache.
    pub fn merge_into_cache(
        cache: &Path,
        board: &str,
        profile: Profile,
        rows: &[Row],
        sizes: Option<&Sizes>,
    ) -> std::io::Result<()> {
        let mut t = Self::load(cache, board, profile);
        t.extend(rows);
        if let Some(z) = sizes {
            t.add_sizes(z.clone());
        }
        t.write(&Self::path(cache, board, profile))
    }

    /// Adds a measured firmware's sizes, unless the table has them already.
    pub fn add_sizes(&mut self, z: Sizes) {
        if !self.sizes.contains(&z) {
            self.sizes.push(z);
        }
    }

    /// What a firmware of a model calling these kernel `families` is predicted to take besides
    /// its parameters and arena, from the firmware measured on the board: the median of those
    /// that called the same families (they differ by up to a few KB: a layer's call more or
    /// less, a kernel's second copy for wide accumulators, which training decides); else the
    /// smallest of those that called more (their code holds this one's); else the largest of
    /// all; nothing before anything was measured. Replayed over the STM32L010 search without
    /// probes (`search::tests::replay_sizes`), half its candidates' flash came within 1 % of
    /// this and two thirds within 5 %; the first network of a family set, predicted from others,
    /// up to 62 % over.
    pub fn overhead(&self, families: &[String]) -> Overhead {
        let of = |keep: &dyn Fn(&Sizes) -> bool| -> (Vec<u64>, Vec<u64>) {
            let (mut f, mut s): (Vec<u64>, Vec<u64>) = self
                .sizes
                .iter()
                .filter(|z| keep(z))
                .map(|z| (z.overhead().flash_bytes, z.overhead().sram_bytes))
                .unzip();
            f.sort_unstable();
            s.sort_unstable();
            (f, s)
        };
        let pick = |(f, s): (Vec<u64>, Vec<u64>), at: fn(usize) -> usize| {
            Some(Overhead {
                flash_bytes: *f.get(at(f.len()))?,
                sram_bytes: *s.get(at(s.len()))?,
            })
        };
        let median = |n: usize| n / 2;
        let first = |_: usize| 0;
        let last = |n: usize| n.saturating_sub(1);
        pick(of(&|z| z.families == families), median)
            .or_else(|| {
                let more = |z: &Sizes| families.iter().all(|f| z.families.contains(f));
                pick(of(&more), first)
            })
            .or_else(|| pick(of(&|_| true), last))
            .unwrap_or_default()
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
                if x.iter().all(|&c| c >= 0.0) {
                    return Some(x);
                }
                // A negative cost fits these rows but not a layer of another shape: the probes
                // of a first generation (two rows of one shape, one of another) once gave a 3x3
                // convolution -103 instructions per output value and 1.6 M per call, and a
                // network measured at 1.25 M was predicted at 2.6 M. Then the best fit with
                // every cost non-negative.
                if let Some(x) = nonnegative_face(&rows, &m, &v) {
                    return Some(x);
                }
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

    /// A layer's kind and MACs are those of the kernel the lowering runs: a 5x5 layer on a 2x2 map
    /// is cut to its middle 3x3 taps (`tinynas_model::lower::crop`), and predicted as one.
    #[test]
    fn calls_are_the_kernels_the_lowering_runs() {
        let arch = "blocks:r=4,5s1x8p,5s1x6".parse().unwrap();
        let shape = tinynas_train::ImageShape { h: 4, w: 4, c: 3 };
        let net = tinynas_train::net::Net::new(arch, shape, 10, 1).unwrap();
        let model = tinynas_train::export::shape_model(&net, vec![String::new(); 10]).unwrap();
        let c: Vec<_> = calls(&model)
            .unwrap()
            .into_iter()
            .filter(|c| c.0.starts_with("conv"))
            .collect();
        // On the 4x4 map every tap of the 5x5 kernel reads the input for some output; on the
        // 2x2 map after the pool only the middle 3x3 ones do.
        assert_eq!(
            c,
            [
                ("conv5x5s1".to_string(), 16 * 25 * 3 * 8, 16 * 8),
                ("conv3x3s1".to_string(), 4 * 9 * 8 * 6, 4 * 6)
            ]
        );
    }

    /// The rows a first generation's table held for 3x3 stride-1 convolutions on qemu-m0-an385
    /// (the probes: two of one shape, one of another; the STM32L010 search of issue 14), and a
    /// layer of that kind measured in that search. The plain least-squares fit through them costs
    /// -103 instructions per output value and 1.6 M per call, and predicted that layer at 1.95 M.
    #[test]
    fn keeps_every_cost_non_negative() {
        let mut t = Table::default();
        for (macs, outputs, latency) in [
            (221_184u64, 8192u64, 1_472_080u64),
            (589_824, 4096, 3_047_400),
            (221_184, 8192, 1_475_600),
        ] {
            t.rows.push(Row {
                kind: "conv3x3s1".into(),
                macs,
                outputs,
                latency,
            });
        }
        let x = t.fit("conv3x3s1").unwrap();
        assert!(x.iter().all(|&c| c >= 0.0), "{x:?}");
        let (macs, outputs, measured) = (124_416.0, 576.0, 593_800.0);
        let predicted = x[0] * macs + x[1] * outputs + x[2];
        assert!(
            (predicted - measured).abs() < 0.1 * measured,
            "{predicted} against {measured} ({x:?})"
        );
        // (Where the plain fit has no negative cost it is the fit: `fits_a_linear_cost_exactly`.)
        // Random rows: never a negative cost.
        let mut seed = 12345u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..500 {
            let mut t = Table::default();
            for _ in 0..3 + next(5) {
                t.rows.push(Row {
                    kind: "k".into(),
                    macs: next(1_000_000),
                    outputs: 1 + next(10_000),
                    latency: next(5_000_000),
                });
            }
            let x = t.fit("k").unwrap();
            assert!(
                x.iter().all(|&c| c >= 0.0 && c.is_finite()),
                "{x:?} {:?}",
                t.rows
            );
        }
    }

    /// Firmware built at another opt-level or debug info takes other times and other code: each
    /// has a table file of its own in the cache, 3's with full debug info under the name it had
    /// before.
    #[test]
    fn each_opt_level_has_its_own_table() {
        use crate::firmware::{DebugInfo, OptLevel};
        let dir = std::env::temp_dir().join(format!("tinynas-table-{}", std::process::id()));
        let row = |latency| Row {
            kind: "conv3x3s1".into(),
            macs: 1000,
            outputs: 100,
            latency,
        };
        let at = |opt_level, debug| Profile {
            opt_level,
            debug,
            packages: Default::default(),
        };
        let full = |o| at(o, DebugInfo::Full);
        Table::merge_into_cache(&dir, "qemu-m4", full(OptLevel::O3), &[row(3000)], None).unwrap();
        Table::merge_into_cache(&dir, "qemu-m4", full(OptLevel::S), &[row(3300)], None).unwrap();
        let none = at(OptLevel::O3, DebugInfo::None);
        Table::merge_into_cache(&dir, "qemu-m4", none, &[row(2990)], None).unwrap();
        let rows = |o| Table::load(&dir, "qemu-m4", full(o)).rows;
        assert_eq!(rows(OptLevel::O3), vec![row(3000)]);
        assert_eq!(rows(OptLevel::S), vec![row(3300)]);
        assert!(rows(OptLevel::Z).is_empty());
        // Without debug info the same kernels are other code: a table of its own.
        assert_eq!(Table::load(&dir, "qemu-m4", none).rows, vec![row(2990)]);
        let name = |o| {
            let p = Table::path(&dir, "qemu-m4", full(o));
            p.file_name().unwrap().to_string_lossy().into_owned()
        };
        let p = Table::path(&dir, "qemu-m4", at(OptLevel::S, DebugInfo::LineTablesOnly));
        assert!(p.ends_with(format!(
            "latency/qemu-m4-report{}-taps-{}-{}-opts-debug-line-tables-only.json",
            crate::report::VERSION,
            env!("CARGO_PKG_VERSION"),
            env!("TINYNAS_FIRMWARE_SOURCES")
        )));
        assert!(name(OptLevel::O3).ends_with(&format!("{}.json", env!("TINYNAS_FIRMWARE_SOURCES"))));
        assert!(
            name(OptLevel::S).ends_with("-opts.json"),
            "{}",
            name(OptLevel::S)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The flash and SRAM a firmware takes besides its model: the median of the firmware measured
    /// with the same kernel families, else the smallest of those with more, else the largest.
    #[test]
    fn overhead_comes_from_firmware_with_the_same_kernels() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let z = |families: &[&str], code: u64, stack: u64| Sizes {
            families: f(families),
            param_bytes: 10_000,
            arena_bytes: 4_000,
            flash_bytes: 10_000 + code,
            peak_sram_bytes: 4_000 + stack,
        };
        let mut t = Table::default();
        assert_eq!(
            t.overhead(&f(&["conv"])),
            Overhead::default(),
            "nothing measured yet"
        );
        t.add_sizes(z(&["conv", "dw3x3s1"], 40_000, 2_000));
        // Nothing with the same families or more: the largest measured.
        assert_eq!(t.overhead(&f(&["conv", "dw5x5s2"])).flash_bytes, 40_000);
        t.add_sizes(z(&["conv", "dw3x3s1", "dw5x5s2"], 50_000, 2_500));
        t.add_sizes(z(&["conv", "dw3x3s1", "dw5x5s2"], 45_000, 2_400));
        // More families: the smallest of those (their code holds this one's); the first
        // firmware lacks `dw5x5s2`.
        assert_eq!(
            t.overhead(&f(&["conv", "dw5x5s2"])),
            Overhead {
                flash_bytes: 45_000,
                sram_bytes: 2_400
            }
        );
        t.add_sizes(z(&["conv"], 20_000, 1_500));
        t.add_sizes(z(&["conv"], 26_000, 1_600));
        t.add_sizes(z(&["conv"], 21_000, 1_700));
        // The same families: their median, each figure on its own.
        assert_eq!(
            t.overhead(&f(&["conv"])),
            Overhead {
                flash_bytes: 21_000,
                sram_bytes: 1_600
            }
        );
        // A firmware measured twice counts once.
        t.add_sizes(z(&["conv"], 20_000, 1_500));
        assert_eq!(t.sizes.len(), 6);
        // Tables written before sizes were kept still read.
        let old: Table = serde_json::from_str(r#"{"board":"qemu-m4","rows":[]}"#).unwrap();
        assert!(old.sizes.is_empty());
    }

    /// Replays a search's latency predictions with this fit: each measured candidate of its
    /// journal predicted from the table as it stood before it (the table the search started
    /// from, `table-start.json`, plus the layer rows of the candidates measured before), next to
    /// what the search itself predicted. A tool for changing the fit, not a check:
    /// `TINYNAS_REPLAY=<project>/.tinynas/search/<id> cargo test -p cargo-tinynas --lib replay -- --ignored --nocapture`
    #[test]
    #[ignore = "needs a search's folder in TINYNAS_REPLAY"]
    fn replay() {
        let dir = std::path::PathBuf::from(std::env::var("TINYNAS_REPLAY").unwrap());
        let mut table = Table::read(&dir.join("table-start.json")).unwrap();
        let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
        let (mut now, mut then) = (Vec::new(), Vec::new());
        for line in journal.lines() {
            let j: serde_json::Value = serde_json::from_str(line).unwrap();
            let (Some(measured), Some(layers)) = (
                j["measured"]["latency"].as_f64(),
                j["layers"].as_array().filter(|_| j["kind"] == "candidate"),
            ) else {
                continue;
            };
            let rows: Vec<Row> = serde_json::from_value(layers.clone().into()).unwrap();
            let predicted: Option<f64> = rows
                .iter()
                .map(|r| {
                    let [a, b, c] = table.fit(&r.kind)?;
                    Some((a * r.macs as f64 + b * r.outputs as f64 + c).max(0.0))
                })
                .sum();
            if let (Some(p), Some(q)) = (predicted, j["predicted_latency"].as_f64()) {
                now.push(((p.round() - measured) / measured).abs());
                then.push(((q - measured) / measured).abs());
            }
            table.extend(&rows);
        }
        let show = |e: &[f64]| {
            let mean = e.iter().sum::<f64>() / e.len().max(1) as f64;
            let max = e.iter().copied().fold(0.0, f64::max);
            format!("mean {:.1} %, largest {:.1} %", 100.0 * mean, 100.0 * max)
        };
        println!("{} candidates predicted", now.len());
        println!("the search's own predictions: {}", show(&then));
        println!("this fit's: {}", show(&now));
    }
}
