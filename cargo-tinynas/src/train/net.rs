//! Networks: the NanoNAS space A(k, c) (DESIGN.md section 5) built from the engine's layers, and
//! the `--arch` spec that names one.

use super::layers::{BatchNorm, Conv2d, Dense, Dropout, GlobalAvgPool, Layer, Param, Pool, Relu};
use super::Tensor;
use crate::data::ImageShape;
use tinynas_model::Padding;

/// An architecture, as `--arch` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `nanonas:k=K,c=C`: a 3x3 conv with K filters, then C cells of [2x2 max pool, 3x3 conv].
    NanoNas { k: usize, c: usize },
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arch::NanoNas { k, c } => write!(f, "nanonas:k={k},c={c}"),
        }
    }
}

impl std::str::FromStr for Arch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "expected an architecture like nanonas:k=4,c=2";
        let (space, args) = s.split_once(':').ok_or_else(|| format!("{s:?}: {usage}"))?;
        if space != "nanonas" {
            return Err(format!("unknown architecture space {space:?}: {usage}"));
        }
        let (mut k, mut c) = (None, None);
        for kv in args.split(',') {
            let (key, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("{kv:?}: {usage}"))?;
            let v: usize = v
                .trim()
                .parse()
                .map_err(|_| format!("{key}={v:?} is not a whole number"))?;
            match key.trim() {
                "k" if (1..=256).contains(&v) => k = Some(v),
                "c" if v <= 8 => c = Some(v),
                "k" | "c" => return Err(format!("{key}={v} is out of range (k 1..=256, c 0..=8)")),
                other => return Err(format!("unknown parameter {other:?}: {usage}")),
            }
        }
        match (k, c) {
            (Some(k), Some(c)) => Ok(Arch::NanoNas { k, c }),
            _ => Err(format!("{s:?} needs both k and c: {usage}")),
        }
    }
}

/// A sequential network of layers.
#[derive(Debug)]
pub struct Net {
    pub arch: Arch,
    pub input: ImageShape,
    pub classes: usize,
    pub layers: Vec<Box<dyn Layer>>,
}

impl Net {
    /// A freshly initialised network (seeded).
    pub fn new(arch: Arch, input: ImageShape, classes: usize, seed: u64) -> Result<Self, String> {
        let Arch::NanoNas { k, c } = arch;
        let channels = tinynas_model::random::nanonas_channels(k, c);
        let (mut h, mut w) = (input.h, input.w);
        let mut layers: Vec<Box<dyn Layer>> = Vec::new();
        let mut in_c = input.c;
        for (i, &oc) in channels.iter().enumerate() {
            if i > 0 {
                if h < 2 || w < 2 {
                    return Err(format!("{arch} has too many cells for a {}x{} input: cell {i} would pool a {h}x{w} map", input.h, input.w));
                }
                layers.push(Box::new(Pool::new(true, [2, 2], 2, Padding::Valid)));
                h /= 2;
                w /= 2;
            }
            layers.push(Box::new(Conv2d::new(
                in_c,
                oc,
                [3, 3],
                1,
                Padding::Same,
                seed.wrapping_add(i as u64),
            )));
            layers.push(Box::new(BatchNorm::new(oc)));
            layers.push(Box::new(Relu::new(None)));
            in_c = oc;
        }
        layers.push(Box::new(GlobalAvgPool::default()));
        layers.push(Box::new(Dropout::new(0.5, seed ^ 0xD50)));
        layers.push(Box::new(Dense::new(in_c, classes, seed ^ 0xDE)));
        Ok(Net {
            arch,
            input,
            classes,
            layers,
        })
    }

    pub fn forward(&mut self, x: &Tensor, train: bool) -> Tensor {
        let mut t = x.clone();
        for l in &mut self.layers {
            t = l.forward(&t, train);
        }
        t
    }

    pub fn backward(&mut self, dy: &Tensor) {
        let mut g = dy.clone();
        for l in self.layers.iter_mut().rev() {
            g = l.backward(&g);
        }
    }

    pub fn params(&mut self) -> Vec<&mut Param> {
        self.layers.iter_mut().flat_map(|l| l.params()).collect()
    }

    /// A copy of the network and its weights.
    pub fn snapshot(&self) -> Net {
        Net {
            arch: self.arch,
            input: self.input,
            classes: self.classes,
            layers: self.layers.iter().map(|l| l.boxed_clone()).collect(),
        }
    }

    /// Number of trainable values.
    pub fn param_count(&mut self) -> usize {
        self.params().iter().map(|p| p.value.len()).sum()
    }
}

/// Adam (Kingma & Ba), with bias correction.
#[derive(Debug, Clone)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    t: i32,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl Adam {
    pub fn new(lr: f32) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
            t: 0,
            m: Vec::new(),
            v: Vec::new(),
        }
    }

    /// Applies and clears the accumulated gradients.
    pub fn step(&mut self, params: Vec<&mut Param>) {
        if self.m.len() != params.len() {
            self.m = params.iter().map(|p| vec![0.0; p.value.len()]).collect();
            self.v = self.m.clone();
        }
        self.t += 1;
        let c1 = 1.0 - self.beta1.powi(self.t);
        let c2 = 1.0 - self.beta2.powi(self.t);
        for ((p, m), v) in params.into_iter().zip(&mut self.m).zip(&mut self.v) {
            for i in 0..p.value.len() {
                let g = p.grad[i];
                m[i] = self.beta1 * m[i] + (1.0 - self.beta1) * g;
                v[i] = self.beta2 * v[i] + (1.0 - self.beta2) * g * g;
                p.value[i] -= self.lr * (m[i] / c1) / ((v[i] / c2).sqrt() + self.eps);
                p.grad[i] = 0.0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_specs() {
        assert_eq!(
            "nanonas:k=4,c=2".parse::<Arch>(),
            Ok(Arch::NanoNas { k: 4, c: 2 })
        );
        assert!("nanonas:k=4"
            .parse::<Arch>()
            .unwrap_err()
            .contains("needs both"));
        assert!("mobilenet:k=4,c=2"
            .parse::<Arch>()
            .unwrap_err()
            .contains("unknown architecture space"));
        assert!("nanonas:k=x,c=2"
            .parse::<Arch>()
            .unwrap_err()
            .contains("whole number"));
        let e = Net::new(
            Arch::NanoNas { k: 2, c: 6 },
            ImageShape { h: 28, w: 28, c: 1 },
            10,
            1,
        )
        .unwrap_err();
        assert!(e.contains("too many cells"), "{e}");
    }
}
