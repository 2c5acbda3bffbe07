//! Networks: the NanoNAS space A(k, c) (DESIGN.md section 5) built from the engine's layers, and
//! the `--arch` spec that names one.

use super::layers::{
    BatchNorm, Conv2d, Dense, DepthwiseConv2d, Dropout, GlobalAvgPool, Layer, Param, Pool, Relu,
};
use super::Tensor;
use crate::ImageShape;
use tinynas_model::Padding;

/// An architecture, as `--arch` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `nanonas:k=K,c=C`: a 3x3 conv with K filters, then C cells of [2x2 max pool, 3x3 conv].
    NanoNas { k: usize, c: usize },
    /// `blocks:...`: the wider space of the `evolve` strategy (see [`Blocks`]).
    Blocks(Blocks),
}

/// Most blocks a [`Blocks`] network has.
pub const MAX_BLOCKS: usize = 8;

/// One block of a [`Blocks`] network: a `k`x`k` convolution (3 or 5) with `stride` 1 or 2
/// (stride 2 downsamples instead of pooling) and `out` channels, + batch norm + ReLU. A
/// depthwise-separable block (`sep`) is a `k`x`k` depthwise convolution with that stride on the
/// input's channels (+ batch norm + ReLU), then a 1x1 convolution to `out` channels (+ batch
/// norm + ReLU), as in MobileNet: about `k*k + out` MACs per input channel and pixel instead of
/// `k*k*out`. A pooled block (`pool`) ends with a 2x2 max pool of stride 2, as NanoNAS's cells
/// downsample: a stride-1 convolution then the pool keeps the strongest of four responses where
/// a stride-2 convolution computes only one of them (at four times the MACs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Block {
    pub k: u8,
    pub stride: u8,
    pub out: u16,
    pub sep: bool,
    pub pool: bool,
}

/// The `evolve` space: the input resized to `res`x`res`, a stem of `blocks[0]`, then the other
/// blocks, global average pooling, dropout 0.2 and a dense layer. Written
/// `blocks:r=28,3s1x8,d5s2x16,3s1x24p` (`KsSxC` per block, `dKsSxC` for a depthwise-separable
/// one, a `p` after it for a pooled one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocks {
    pub res: u16,
    pub n: u8,
    pub blocks: [Block; MAX_BLOCKS],
}

impl Blocks {
    pub fn blocks(&self) -> &[Block] {
        &self.blocks[..usize::from(self.n).min(MAX_BLOCKS)]
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arch::NanoNas { k, c } => write!(f, "nanonas:k={k},c={c}"),
            Arch::Blocks(b) => {
                write!(f, "blocks:r={}", b.res)?;
                for x in b.blocks() {
                    let d = if x.sep { "d" } else { "" };
                    let p = if x.pool { "p" } else { "" };
                    write!(f, ",{d}{}s{}x{}{p}", x.k, x.stride, x.out)?;
                }
                Ok(())
            }
        }
    }
}

fn parse_blocks(args: &str) -> Result<Arch, String> {
    let usage = "expected blocks:r=RES,KsSxC,... e.g. blocks:r=28,3s1x8,5s2x16 \
                 (dKsSxC: a depthwise-separable block, e.g. d3s2x16; KsSxCp: a block ending in a \
                 2x2 max pool, e.g. 3s1x16p)";
    let mut parts = args.split(',');
    let res: u16 = parts
        .next()
        .and_then(|r| r.trim().strip_prefix("r="))
        .and_then(|r| r.parse().ok())
        .filter(|r| (4..=512).contains(r))
        .ok_or_else(|| format!("{args:?}: {usage} (r from 4 to 512)"))?;
    let mut b = Blocks {
        res,
        n: 0,
        blocks: [Block::default(); MAX_BLOCKS],
    };
    for p in parts {
        let bad = || format!("block {p:?}: {usage} (K 3 or 5, S 1 or 2, C 1 to 512)");
        let (sep, p1) = match p.trim().strip_prefix('d') {
            Some(rest) => (true, rest),
            None => (false, p.trim()),
        };
        let (pool, p1) = match p1.strip_suffix('p') {
            Some(rest) => (true, rest),
            None => (false, p1),
        };
        let (k, rest) = p1.split_once('s').ok_or_else(bad)?;
        let (stride, out) = rest.split_once('x').ok_or_else(bad)?;
        let block = Block {
            k: k.parse()
                .ok()
                .filter(|k| *k == 3 || *k == 5)
                .ok_or_else(bad)?,
            stride: stride
                .parse()
                .ok()
                .filter(|s| *s == 1 || *s == 2)
                .ok_or_else(bad)?,
            out: out
                .parse()
                .ok()
                .filter(|c| (1..=512).contains(c))
                .ok_or_else(bad)?,
            sep,
            pool,
        };
        if usize::from(b.n) == MAX_BLOCKS {
            return Err(format!("at most {MAX_BLOCKS} blocks"));
        }
        b.blocks[usize::from(b.n)] = block;
        b.n += 1;
    }
    if b.n == 0 {
        return Err(format!("{args:?} has no blocks: {usage}"));
    }
    Ok(Arch::Blocks(b))
}

impl std::str::FromStr for Arch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "expected an architecture like nanonas:k=4,c=2 or blocks:r=28,3s1x8,5s2x16";
        let (space, args) = s.split_once(':').ok_or_else(|| format!("{s:?}: {usage}"))?;
        if space == "blocks" {
            return parse_blocks(args);
        }
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

/// A (depthwise) convolution with `out` channels, its batch norm and ReLU. The network's first
/// layer takes no input gradient (its input is the image: the gradient would be thrown away).
fn push_with_bn_relu<L: Layer + InputGrad + 'static>(
    layers: &mut Vec<Box<dyn Layer>>,
    mut conv: L,
    out: usize,
) {
    conv.set_input_grad(!layers.is_empty());
    layers.push(Box::new(conv));
    layers.push(Box::new(BatchNorm::new(out)));
    layers.push(Box::new(Relu::new(None)));
}

/// Layers that can skip their input gradient.
trait InputGrad {
    fn set_input_grad(&mut self, on: bool);
}

impl InputGrad for Conv2d {
    fn set_input_grad(&mut self, on: bool) {
        self.input_grad = on;
    }
}

impl InputGrad for DepthwiseConv2d {
    fn set_input_grad(&mut self, on: bool) {
        self.input_grad = on;
    }
}

/// A sequential network of layers.
#[derive(Debug)]
pub struct Net {
    pub arch: Arch,
    pub input: ImageShape,
    pub classes: usize,
    pub layers: Vec<Box<dyn Layer>>,
    /// When set, forward and backward add each layer's wall time (seconds) here.
    pub timing: Option<Vec<[f64; 2]>>,
}

/// Why an architecture cannot be built for an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchError {
    #[error("{arch} has too many cells for a {}x{} input: cell {cell} would pool a {}x{} map", input.h, input.w, map.0, map.1)]
    TooManyCells {
        arch: Arch,
        input: ImageShape,
        cell: usize,
        map: (usize, usize),
    },
    #[error("{arch} takes {res}x{res} images, the data is {}x{}", input.h, input.w)]
    WrongInput {
        arch: Arch,
        res: u16,
        input: ImageShape,
    },
    #[error("{arch}: block {block} would downsample a {side}x{side} map")]
    Downsamples {
        arch: Arch,
        block: usize,
        side: usize,
    },
}

impl Net {
    /// A freshly initialised network (seeded).
    pub fn new(
        arch: Arch,
        input: ImageShape,
        classes: usize,
        seed: u64,
    ) -> Result<Self, ArchError> {
        let (k, c) = match arch {
            Arch::NanoNas { k, c } => (k, c),
            Arch::Blocks(b) => return Self::blocks(arch, b, input, classes, seed),
        };
        let channels = tinynas_model::random::nanonas_channels(k, c);
        let (mut h, mut w) = (input.h, input.w);
        let mut layers: Vec<Box<dyn Layer>> = Vec::new();
        let mut in_c = input.c;
        for (i, &oc) in channels.iter().enumerate() {
            if i > 0 {
                if h < 2 || w < 2 {
                    return Err(ArchError::TooManyCells {
                        arch,
                        input,
                        cell: i,
                        map: (h, w),
                    });
                }
                layers.push(Box::new(Pool::new(true, [2, 2], 2, Padding::Valid)));
                h /= 2;
                w /= 2;
            }
            let conv = Conv2d::new(
                in_c,
                oc,
                [3, 3],
                1,
                Padding::Same,
                seed.wrapping_add(i as u64),
            );
            push_with_bn_relu(&mut layers, conv, oc);
            in_c = oc;
        }
        Ok(Self::with_head(
            arch, input, classes, layers, in_c, 0.5, seed,
        ))
    }

    /// The classifier head (global average pooling, dropout, dense) after `layers`.
    fn with_head(
        arch: Arch,
        input: ImageShape,
        classes: usize,
        mut layers: Vec<Box<dyn Layer>>,
        features: usize,
        dropout: f32,
        seed: u64,
    ) -> Self {
        layers.push(Box::new(GlobalAvgPool::default()));
        layers.push(Box::new(Dropout::new(dropout, seed ^ 0xD50)));
        layers.push(Box::new(Dense::new(features, classes, seed ^ 0xDE)));
        Net {
            arch,
            input,
            classes,
            layers,
            timing: None,
        }
    }

    fn blocks(
        arch: Arch,
        b: Blocks,
        input: ImageShape,
        classes: usize,
        seed: u64,
    ) -> Result<Self, ArchError> {
        if (input.h, input.w) != (usize::from(b.res), usize::from(b.res)) {
            return Err(ArchError::WrongInput {
                arch,
                res: b.res,
                input,
            });
        }
        let mut layers: Vec<Box<dyn Layer>> = Vec::new();
        let (mut h, mut in_c) = (input.h, input.c);
        for (i, blk) in b.blocks().iter().enumerate() {
            let (k, stride, out) = (
                usize::from(blk.k),
                usize::from(blk.stride),
                usize::from(blk.out),
            );
            if h < stride * 2 {
                return Err(ArchError::Downsamples {
                    arch,
                    block: i,
                    side: h,
                });
            }
            let seed = seed.wrapping_add(i as u64);
            if blk.sep {
                let dw = DepthwiseConv2d::new(in_c, 1, [k, k], stride, Padding::Same, seed);
                push_with_bn_relu(&mut layers, dw, in_c);
                let pw = Conv2d::new(in_c, out, [1, 1], 1, Padding::Same, seed ^ 0x9E37);
                push_with_bn_relu(&mut layers, pw, out);
            } else {
                let conv = Conv2d::new(in_c, out, [k, k], stride, Padding::Same, seed);
                push_with_bn_relu(&mut layers, conv, out);
            }
            h = h.div_ceil(stride);
            if blk.pool {
                // The pooled map is 2x2 at least, as a stride-2 block's is.
                if h < 4 {
                    return Err(ArchError::Downsamples {
                        arch,
                        block: i,
                        side: h,
                    });
                }
                layers.push(Box::new(Pool::new(true, [2, 2], 2, Padding::Valid)));
                h /= 2;
            }
            in_c = out;
        }
        Ok(Self::with_head(
            arch, input, classes, layers, in_c, 0.2, seed,
        ))
    }

    /// The input the architecture takes for data of `channels` channels at `data_res`.
    pub fn input_of(arch: Arch, data: ImageShape) -> ImageShape {
        match arch {
            Arch::NanoNas { .. } => data,
            Arch::Blocks(b) => ImageShape {
                h: usize::from(b.res),
                w: usize::from(b.res),
                c: data.c,
            },
        }
    }

    pub fn forward(&mut self, x: &Tensor, train: bool) -> Tensor {
        let mut t: Option<Tensor> = None;
        for (i, l) in self.layers.iter_mut().enumerate() {
            let start = self.timing.is_some().then(std::time::Instant::now);
            t = Some(l.forward(t.as_ref().unwrap_or(x), train));
            if let (Some(s), Some(tm)) = (start, self.timing.as_mut()) {
                tm.resize(tm.len().max(i + 1), [0.0; 2]);
                tm[i][0] += s.elapsed().as_secs_f64();
            }
        }
        t.unwrap_or_else(|| x.clone())
    }

    pub fn backward(&mut self, dy: &Tensor) {
        let mut g: Option<Tensor> = None;
        for (i, l) in self.layers.iter_mut().enumerate().rev() {
            let start = self.timing.is_some().then(std::time::Instant::now);
            g = Some(l.backward(g.as_ref().unwrap_or(dy)));
            if let (Some(s), Some(tm)) = (start, self.timing.as_mut()) {
                tm.resize(tm.len().max(i + 1), [0.0; 2]);
                tm[i][1] += s.elapsed().as_secs_f64();
            }
        }
    }

    /// A short name of each layer, for tables.
    pub fn layer_names(&self) -> Vec<String> {
        use super::layers::View;
        self.layers
            .iter()
            .map(|l| match l.view() {
                View::Conv(c) => format!("conv {}x{} {}->{}", c.k[0], c.k[1], c.in_c, c.out_c),
                View::Depthwise(d) => format!("depthwise {}x{} x{}", d.k[0], d.k[1], d.multiplier),
                View::BatchNorm(_) => "batch norm".into(),
                View::Relu(r) if r.cap.is_some() => "relu6".into(),
                View::Relu(_) => "relu".into(),
                View::Pool(p) if p.max => format!("max pool {}x{}", p.k[0], p.k[1]),
                View::Pool(p) => format!("avg pool {}x{}", p.k[0], p.k[1]),
                View::GlobalAvgPool => "global avg pool".into(),
                View::Dropout => "dropout".into(),
                View::Dense(d) => format!("dense {}->{}", d.in_f, d.out_f),
                View::FakeQuant(_) => "fake quant".into(),
            })
            .collect()
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
            timing: None,
        }
    }

    /// Multiply-accumulates of one forward pass of one image (convolutions and dense layers).
    pub fn forward_macs(&self) -> u64 {
        use super::layers::View;
        let (mut h, mut w) = (self.input.h, self.input.w);
        let mut macs = 0u64;
        for l in &self.layers {
            match l.view() {
                View::Conv(c) => {
                    let (oh, _) = tinynas_model::ir::window_output(h, c.k[0], c.stride, c.padding)
                        .unwrap_or((0, 0));
                    let (ow, _) = tinynas_model::ir::window_output(w, c.k[1], c.stride, c.padding)
                        .unwrap_or((0, 0));
                    (h, w) = (oh, ow);
                    macs += (oh * ow * c.k[0] * c.k[1] * c.in_c * c.out_c) as u64;
                }
                View::Depthwise(d) => {
                    let (oh, _) = tinynas_model::ir::window_output(h, d.k[0], d.stride, d.padding)
                        .unwrap_or((0, 0));
                    let (ow, _) = tinynas_model::ir::window_output(w, d.k[1], d.stride, d.padding)
                        .unwrap_or((0, 0));
                    (h, w) = (oh, ow);
                    macs += (oh * ow * d.k[0] * d.k[1] * d.in_c * d.multiplier) as u64;
                }
                View::Pool(p) => {
                    h = tinynas_model::ir::window_output(h, p.k[0], p.stride, p.padding)
                        .map_or(0, |v| v.0);
                    w = tinynas_model::ir::window_output(w, p.k[1], p.stride, p.padding)
                        .map_or(0, |v| v.0);
                }
                View::GlobalAvgPool => (h, w) = (1, 1),
                View::Dense(d) => macs += (d.in_f * d.out_f) as u64,
                View::BatchNorm(_) | View::Relu(_) | View::Dropout | View::FakeQuant(_) => {}
            }
        }
        macs
    }

    /// Number of trainable values.
    pub fn param_count(&mut self) -> usize {
        self.params().iter().map(|p| p.value.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_specs() {
        let a: Arch = "blocks:r=28,3s1x8,5s2x16".parse().unwrap();
        assert_eq!(a.to_string(), "blocks:r=28,3s1x8,5s2x16");
        let mut n = Net::new(a, ImageShape { h: 28, w: 28, c: 1 }, 10, 1).unwrap();
        assert_eq!(
            n.forward_macs(),
            28 * 28 * 9 * 8 + 14 * 14 * 25 * 8 * 16 + 16 * 10
        );
        assert!(n.param_count() > 0);
        for bad in [
            "blocks:r=28",
            "blocks:r=28,4s1x8",
            "blocks:r=28,3s3x8",
            "blocks:28,3s1x8",
        ] {
            assert!(bad.parse::<Arch>().is_err(), "{bad}");
        }
        let e = Net::new(a, ImageShape { h: 32, w: 32, c: 1 }, 10, 1).unwrap_err();
        assert!(matches!(e, ArchError::WrongInput { res: 28, .. }), "{e}");
        assert!(e.to_string().contains("takes 28x28"), "{e}");
        // A depthwise-separable block: 5x5 depthwise stride 2 on 8 channels, then 1x1 to 16.
        let a: Arch = "blocks:r=28,3s1x8,d5s2x16".parse().unwrap();
        assert_eq!(a.to_string(), "blocks:r=28,3s1x8,d5s2x16");
        let n = Net::new(a, ImageShape { h: 28, w: 28, c: 1 }, 10, 1).unwrap();
        assert_eq!(
            n.forward_macs(),
            28 * 28 * 9 * 8 + 14 * 14 * 25 * 8 + 14 * 14 * 8 * 16 + 16 * 10
        );
        assert_eq!(
            n.layer_names()[3..9],
            [
                "depthwise 5x5 x1",
                "batch norm",
                "relu",
                "conv 1x1 8->16",
                "batch norm",
                "relu"
            ]
        );
        assert!("blocks:r=28,3s1x8,x5s2x16".parse::<Arch>().is_err());
        assert!("blocks:r=28,3s1x8,d4s2x16".parse::<Arch>().is_err());
        // Pooled blocks: NanoNAS's cell (a stride-1 convolution, then a 2x2 max pool) as a block,
        // so A(4,1) is `3s1x4p,3s1x8` up to the pool's place.
        let a: Arch = "blocks:r=28,3s1x4p,d3s1x8p".parse().unwrap();
        assert_eq!(a.to_string(), "blocks:r=28,3s1x4p,d3s1x8p");
        let n = Net::new(a, ImageShape { h: 28, w: 28, c: 1 }, 10, 1).unwrap();
        assert_eq!(
            n.forward_macs(),
            28 * 28 * 9 * 4 + 14 * 14 * 9 * 4 + 14 * 14 * 4 * 8 + 8 * 10
        );
        assert_eq!(n.layer_names()[3], "max pool 2x2");
        assert!("blocks:r=28,3s1x8pp".parse::<Arch>().is_err());
        assert!("blocks:r=28,3s1xp".parse::<Arch>().is_err());
        // A pool that would leave less than 2x2: 8 -> 4 (stride 2) -> 2 -> 1.
        let a: Arch = "blocks:r=8,3s2x4p,3s1x4p".parse().unwrap();
        let e = Net::new(a, ImageShape { h: 8, w: 8, c: 1 }, 10, 1).unwrap_err();
        assert!(matches!(e, ArchError::Downsamples { block: 1, .. }), "{e}");
    }

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
        assert!(matches!(e, ArchError::TooManyCells { .. }), "{e}");
        assert!(e.to_string().contains("too many cells"), "{e}");
    }
}
