//! The `.tnas` model file: one little-endian file holding the graph, quantisation and weights.
//!
//! ```text
//! header (16 bytes)
//!   magic "TNAS" | u16 version (1) | u16 flags (0) | u32 payload length | u32 CRC-32 of the payload
//! payload
//!   input:  u8 type (0 = u8, 1 = i8) | u32 h | u32 w | u32 c | f32 scale | i32 zero point
//!   labels: u32 count | count x string
//!   nodes:  u32 count | count x node
//! node
//!   string name | u8 op | u8 input count | u32 inputs... | f32 scale | i32 zero point | op fields
//! string: u16 byte length | UTF-8 bytes
//! ```
//! Op fields:
//! * Conv2d: u32 out channels, conv; DepthwiseConv2d: u32 multiplier, conv.
//!   conv = u8 k_h | u8 k_w | u8 stride | u8 padding | u8 activation | u32 n + n x i8 weights |
//!   u32 n + n x f32 scales | u32 n + n x i32 bias
//! * pools: u8 size_h | u8 size_w | u8 stride | u8 padding
//! * FullyConnected: u32 outputs | u8 activation | weights, scales, bias as above
//! * Add: u8 activation; Reshape: u32 h | u32 w | u32 c; Softmax: f32 beta
//! * Pad: u32 top | u32 bottom | u32 left | u32 right | i8 value; Concat and Mean: nothing
//!   (a Concat's inputs are the node's, up to [`MAX_INPUTS`])
//!
//! Every value the reader takes is checked (lengths against the bytes
//! left before anything is allocated, enums, UTF-8, the checksum), and the graph is then rebuilt
//! through [`ModelBuilder`], so a file that reads is a model that passed every check a built one
//! passes. Any byte string gives `Ok` or an [`Error`], never a panic.

use crate::error::Error;
use crate::ir::{
    Activation, ConvParams, InputType, Model, ModelBuilder, Op, Padding, PoolParams, QParams,
    Shape, MAX_INPUTS, MAX_NODES, MAX_TENSOR_ELEMENTS,
};

pub const MAGIC: [u8; 4] = *b"TNAS";
pub const VERSION: u16 = 1;
const HEADER: usize = 16;

/// Serialises a model.
pub fn to_bytes(model: &Model) -> Vec<u8> {
    let mut p = Vec::new();
    p.push(match model.input_type {
        InputType::U8 => 0,
        InputType::I8 => 1,
    });
    for v in [
        model.input_shape.h,
        model.input_shape.w,
        model.input_shape.c,
    ] {
        put_u32(&mut p, v);
    }
    p.extend_from_slice(&model.input_quant.scale.to_le_bytes());
    p.extend_from_slice(&model.input_quant.zero_point.to_le_bytes());
    put_u32(&mut p, model.labels.len());
    for l in &model.labels {
        put_str(&mut p, l);
    }
    put_u32(&mut p, model.nodes.len());
    for n in &model.nodes {
        put_str(&mut p, &n.name);
        p.push(op_tag(&n.op));
        p.push(n.inputs.len() as u8);
        for &i in &n.inputs {
            put_u32(&mut p, i);
        }
        p.extend_from_slice(&n.quant.scale.to_le_bytes());
        p.extend_from_slice(&n.quant.zero_point.to_le_bytes());
        write_op(&mut p, &n.op);
    }
    let mut out = Vec::with_capacity(HEADER + p.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&p).to_le_bytes());
    out.extend_from_slice(&p);
    out
}

fn put_u32(p: &mut Vec<u8>, v: usize) {
    p.extend_from_slice(&(v as u32).to_le_bytes());
}

fn put_str(p: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    p.extend_from_slice(&(b.len() as u16).to_le_bytes());
    p.extend_from_slice(b);
}

fn op_tag(op: &Op) -> u8 {
    match op {
        Op::Conv2d { .. } => 1,
        Op::DepthwiseConv2d { .. } => 2,
        Op::MaxPool2d(_) => 3,
        Op::AvgPool2d(_) => 4,
        Op::GlobalAveragePool => 5,
        Op::FullyConnected { .. } => 6,
        Op::Add { .. } => 7,
        Op::Reshape { .. } => 8,
        Op::Softmax { .. } => 9,
        Op::Pad { .. } => 10,
        Op::Concat => 11,
        Op::Mean => 12,
    }
}

/// Op fields:
/// * Conv2d: u32 out channels, conv; DepthwiseConv2d: u32 multiplier, conv.
///   conv = u8 k_h | u8 k_w | u8 stride | u8 padding | u8 activation | u32 n + n x i8 weights |
///   u32 n + n x f32 scales | u32 n + n x i32 bias
/// * pools: u8 size_h | u8 size_w | u8 stride | u8 padding
/// * FullyConnected: u32 outputs | u8 activation | weights, scales, bias as above
/// * Add: u8 activation; Reshape: u32 h | u32 w | u32 c; Softmax: f32 beta
/// * Pad: u32 top | u32 bottom | u32 left | u32 right | i8 value; Concat and Mean: nothing
fn write_op(p: &mut Vec<u8>, op: &Op) {
    let act = |a: Activation| match a {
        Activation::None => 0u8,
        Activation::Relu => 1,
        Activation::Relu6 => 2,
    };
    let pad = |x: Padding| match x {
        Padding::Same => 0u8,
        Padding::Valid => 1,
    };
    let tensors = |p: &mut Vec<u8>, w: &[i8], s: &[f32], b: &[i32]| {
        put_u32(p, w.len());
        p.extend(w.iter().map(|&v| v as u8));
        put_u32(p, s.len());
        s.iter().for_each(|v| p.extend_from_slice(&v.to_le_bytes()));
        put_u32(p, b.len());
        b.iter().for_each(|v| p.extend_from_slice(&v.to_le_bytes()));
    };
    match op {
        Op::Conv2d {
            out_channels: n,
            conv,
        }
        | Op::DepthwiseConv2d {
            multiplier: n,
            conv,
        } => {
            put_u32(p, *n);
            p.extend_from_slice(&[
                conv.kernel[0] as u8,
                conv.kernel[1] as u8,
                conv.stride as u8,
                pad(conv.padding),
                act(conv.activation),
            ]);
            tensors(p, &conv.weights, &conv.weight_scales, &conv.bias);
        }
        Op::MaxPool2d(q) | Op::AvgPool2d(q) => {
            p.extend_from_slice(&[
                q.size[0] as u8,
                q.size[1] as u8,
                q.stride as u8,
                pad(q.padding),
            ]);
        }
        Op::GlobalAveragePool => {}
        Op::FullyConnected {
            out_features,
            activation,
            weights,
            weight_scales,
            bias,
        } => {
            put_u32(p, *out_features);
            p.push(act(*activation));
            tensors(p, weights, weight_scales, bias);
        }
        Op::Add { activation } => p.push(act(*activation)),
        Op::Reshape { shape } => {
            for v in [shape.h, shape.w, shape.c] {
                put_u32(p, v);
            }
        }
        Op::Softmax { beta } => p.extend_from_slice(&beta.to_le_bytes()),
        Op::Pad {
            top,
            bottom,
            left,
            right,
            value,
        } => {
            for v in [top, bottom, left, right] {
                put_u32(p, *v);
            }
            p.push(*value as u8);
        }
        Op::Concat | Op::Mean => {}
    }
}

/// Reads and validates a `.tnas` file.
pub fn read(bytes: &[u8]) -> Result<Model, Error> {
    let mut r = Reader { bytes, pos: 0 };
    let magic: [u8; 4] = r.array("magic")?;
    if magic != MAGIC {
        return Err(Error::BadMagic(magic));
    }
    let version = u16::from_le_bytes(r.array("version")?);
    if version != VERSION {
        return Err(Error::Version {
            found: version,
            supported: VERSION,
        });
    }
    let flags = u16::from_le_bytes(r.array("flags")?);
    if flags != 0 {
        return Err(r.invalid(format!("unknown flags {flags:#06x}")));
    }
    let len = r.u32("payload length")? as usize;
    let stored = r.u32("checksum")?;
    let payload = r.take(len, "payload")?;
    if r.pos != bytes.len() {
        return Err(r.invalid(format!(
            "{} unexpected bytes after the payload",
            bytes.len() - r.pos
        )));
    }
    let found = crc32fast::hash(payload);
    if found != stored {
        return Err(Error::Checksum { stored, found });
    }
    let mut r = Reader { bytes, pos: HEADER };
    read_payload(&mut r)
}

fn read_payload(r: &mut Reader<'_>) -> Result<Model, Error> {
    let input_type = match r.u8("input type")? {
        0 => InputType::U8,
        1 => InputType::I8,
        t => return Err(r.invalid(format!("input type {t} is not 0 (u8) or 1 (i8)"))),
    };
    let shape = r.shape("input shape")?;
    let quant = r.qparams()?;
    let mut b = ModelBuilder::new(input_type, shape, quant)?;
    let n_labels = r.count("labels", MAX_TENSOR_ELEMENTS, 2)?;
    let mut labels = Vec::with_capacity(n_labels);
    for _ in 0..n_labels {
        labels.push(r.string("label")?);
    }
    let n_nodes = r.count("nodes", MAX_NODES, 10)?;
    for _ in 0..n_nodes {
        let name = r.string("node name")?;
        let tag = r.u8("op")?;
        let n_in = r.u8("input count")? as usize;
        if n_in > MAX_INPUTS {
            return Err(r.invalid(format!("{n_in} inputs; no op takes more than {MAX_INPUTS}")));
        }
        let mut inputs = Vec::with_capacity(n_in);
        for _ in 0..n_in {
            inputs.push(r.u32("input tensor")? as usize);
        }
        let q = r.qparams()?;
        let op = read_op(r, tag)?;
        b.add(name, op, &inputs, q)?;
    }
    b.labels(labels);
    if r.pos != r.bytes.len() {
        return Err(r.invalid("bytes left over after the last node".into()));
    }
    b.finish()
}

fn read_op(r: &mut Reader<'_>, tag: u8) -> Result<Op, Error> {
    Ok(match tag {
        1 | 2 => {
            let n = r.u32("channels")? as usize;
            let kernel = [r.u8("kernel")? as usize, r.u8("kernel")? as usize];
            let stride = r.u8("stride")? as usize;
            let padding = r.padding()?;
            let activation = r.activation()?;
            let (weights, weight_scales, bias) = r.tensors()?;
            let conv = ConvParams {
                kernel,
                stride,
                padding,
                activation,
                weights,
                weight_scales,
                bias,
            };
            if tag == 1 {
                Op::Conv2d {
                    out_channels: n,
                    conv,
                }
            } else {
                Op::DepthwiseConv2d {
                    multiplier: n,
                    conv,
                }
            }
        }
        3 | 4 => {
            let size = [r.u8("pool size")? as usize, r.u8("pool size")? as usize];
            let stride = r.u8("stride")? as usize;
            let p = PoolParams {
                size,
                stride,
                padding: r.padding()?,
            };
            if tag == 3 {
                Op::MaxPool2d(p)
            } else {
                Op::AvgPool2d(p)
            }
        }
        5 => Op::GlobalAveragePool,
        6 => {
            let out_features = r.u32("outputs")? as usize;
            let activation = r.activation()?;
            let (weights, weight_scales, bias) = r.tensors()?;
            Op::FullyConnected {
                out_features,
                activation,
                weights,
                weight_scales,
                bias,
            }
        }
        7 => Op::Add {
            activation: r.activation()?,
        },
        8 => Op::Reshape {
            shape: r.shape("reshape")?,
        },
        9 => Op::Softmax {
            beta: r.f32("beta")?,
        },
        10 => Op::Pad {
            top: r.u32("pad")? as usize,
            bottom: r.u32("pad")? as usize,
            left: r.u32("pad")? as usize,
            right: r.u32("pad")? as usize,
            value: r.u8("pad value")? as i8,
        },
        11 => Op::Concat,
        12 => Op::Mean,
        t => return Err(r.invalid(format!("unknown op {t}"))),
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn invalid(&self, message: String) -> Error {
        Error::Invalid {
            offset: self.pos,
            message,
        }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(Error::Truncated {
                offset: self.pos,
                needed: n - left,
                what,
            });
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn f32(&mut self, what: &'static str) -> Result<f32, Error> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }

    /// A count, checked against a limit and against the bytes left (each item takes at least
    /// `min_item` bytes), so nothing is allocated for a count the file cannot hold.
    fn count(&mut self, what: &'static str, limit: usize, min_item: usize) -> Result<usize, Error> {
        let n = self.u32(what)? as usize;
        if n > limit {
            return Err(self.invalid(format!("{n} {what} is over the limit of {limit}")));
        }
        let left = self.bytes.len() - self.pos;
        if n.saturating_mul(min_item) > left {
            return Err(Error::Truncated {
                offset: self.pos,
                needed: n * min_item - left,
                what,
            });
        }
        Ok(n)
    }

    fn string(&mut self, what: &'static str) -> Result<String, Error> {
        let n = u16::from_le_bytes(self.array(what)?) as usize;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| self.invalid(format!("{what} is not UTF-8")))
    }

    fn shape(&mut self, what: &'static str) -> Result<Shape, Error> {
        let (h, w, c) = (self.u32(what)?, self.u32(what)?, self.u32(what)?);
        let n = u64::from(h)
            .checked_mul(u64::from(w))
            .and_then(|n| n.checked_mul(u64::from(c)));
        if !n.is_some_and(|n| n > 0 && n <= MAX_TENSOR_ELEMENTS as u64) {
            return Err(self.invalid(format!("{what} {h}x{w}x{c} is empty or too large")));
        }
        Ok(Shape::new(h as usize, w as usize, c as usize))
    }

    fn qparams(&mut self) -> Result<QParams, Error> {
        Ok(QParams {
            scale: self.f32("scale")?,
            zero_point: i32::from_le_bytes(self.array("zero point")?),
        })
    }

    fn padding(&mut self) -> Result<Padding, Error> {
        match self.u8("padding")? {
            0 => Ok(Padding::Same),
            1 => Ok(Padding::Valid),
            p => Err(self.invalid(format!("padding {p} is not 0 (same) or 1 (valid)"))),
        }
    }

    fn activation(&mut self) -> Result<Activation, Error> {
        match self.u8("activation")? {
            0 => Ok(Activation::None),
            1 => Ok(Activation::Relu),
            2 => Ok(Activation::Relu6),
            a => Err(self.invalid(format!(
                "activation {a} is not 0 (none), 1 (relu) or 2 (relu6)"
            ))),
        }
    }

    #[allow(clippy::type_complexity)]
    fn tensors(&mut self) -> Result<(Vec<i8>, Vec<f32>, Vec<i32>), Error> {
        let n = self.count("weights", MAX_TENSOR_ELEMENTS, 1)?;
        let w = self.take(n, "weights")?.iter().map(|&b| b as i8).collect();
        let n = self.count("weight scales", MAX_TENSOR_ELEMENTS, 4)?;
        let s = self.take(n * 4, "weight scales")?;
        let s = s
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let n = self.count("biases", MAX_TENSOR_ELEMENTS, 4)?;
        let b = self.take(n * 4, "biases")?;
        let b = b
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((w, s, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::{Source, SplitMix};

    fn sample() -> Vec<u8> {
        let mut rng = SplitMix(7);
        to_bytes(&crate::random::network(
            &mut rng,
            &crate::random::Config::default(),
        ))
    }

    #[test]
    fn round_trip() {
        let mut rng = SplitMix(1);
        for _ in 0..50 {
            let m = crate::random::network(&mut rng, &crate::random::Config::default());
            let back = read(&to_bytes(&m)).unwrap();
            assert_eq!(back, m);
        }
    }

    #[test]
    fn typed_errors() {
        let good = sample();
        assert!(matches!(read(&good[..10]), Err(Error::Truncated { .. })));
        assert!(matches!(
            read(b"PK\x03\x04aaaaaaaaaaaaaaaa"),
            Err(Error::BadMagic(_))
        ));
        let mut v = good.clone();
        v[4] = 9;
        assert!(matches!(read(&v), Err(Error::Version { found: 9, .. })));
        let mut v = good.clone();
        let last = v.len() - 1;
        v[last] ^= 0x55;
        assert!(matches!(read(&v), Err(Error::Checksum { .. })));
        let mut v = good.clone();
        v.push(0);
        assert!(matches!(read(&v), Err(Error::Invalid { .. })));
    }

    /// A hostile file with a correct checksum: the structure is still checked.
    #[test]
    fn hostile_payload_with_valid_checksum() {
        let good = sample();
        let mut rng = SplitMix(99);
        let mut errors = 0;
        for _ in 0..2000 {
            let mut p = good[HEADER..].to_vec();
            for _ in 0..rng.int(1, 3) {
                let i = rng.int(0, p.len() as i64 - 1) as usize;
                p[i] = rng.next_u64() as u8;
            }
            if rng.chance(0.2) {
                p.truncate(rng.int(0, p.len() as i64 - 1) as usize);
            }
            let mut f = good[..HEADER].to_vec();
            f[8..12].copy_from_slice(&(p.len() as u32).to_le_bytes());
            f[12..16].copy_from_slice(&crc32fast::hash(&p).to_le_bytes());
            f.extend_from_slice(&p);
            if read(&f).is_err() {
                errors += 1;
            }
        }
        // Weight bytes can change freely and still make a valid model; structure bytes cannot.
        assert!(
            errors > 100,
            "only {errors} of 2000 hostile files were rejected"
        );
    }

    /// At least 1,000 random mutations of a valid file: none panics, each is an error.
    #[test]
    fn random_mutations_never_panic() {
        let good = sample();
        let mut rng = SplitMix(2024);
        for i in 0..5000 {
            let mut v = good.clone();
            match i % 4 {
                0 => {
                    let n = rng.int(0, v.len() as i64 - 1) as usize;
                    v.truncate(n);
                }
                1 => {
                    for _ in 0..rng.int(1, 7) {
                        let j = rng.int(0, v.len() as i64 - 1) as usize;
                        v[j] = rng.next_u64() as u8;
                    }
                }
                2 => {
                    let j = rng.int(0, v.len() as i64 - 1) as usize;
                    v[j] ^= 1 << rng.int(0, 7);
                }
                _ => {
                    let j = rng.int(0, v.len() as i64 - 1) as usize;
                    let extra: Vec<u8> =
                        (0..rng.int(1, 15)).map(|_| rng.next_u64() as u8).collect();
                    v.splice(j..j, extra);
                }
            }
            assert!(read(&v).is_err(), "mutation {i} was accepted");
        }
    }
}
