//! The graph: NHWC tensors of batch 1, nodes in topological order, shapes and costs inferred as
//! nodes are added.

use crate::error::Error;

/// Largest number of elements in one tensor (16 Mi): beyond any microcontroller, and small enough
/// that every index computation fits in `u32`.
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 24;
/// Largest number of nodes in a model.
pub const MAX_NODES: usize = 4096;
/// Largest kernel side of a convolution (odd or even: TF Lite's SAME padding puts the odd pad
/// at the bottom and right, as [`window_output`] does).
pub const MAX_KERNEL: usize = 15;
/// Largest pool window side: a pool over a whole feature map is the usual global average pool of
/// TF Lite models (MLPerf Tiny's DS-CNN: 25x5); the `.tnas` format keeps a side in one byte.
pub const MAX_POOL: usize = 255;
/// Largest stride.
pub const MAX_STRIDE: usize = 8;
/// Largest number of inputs of one node (a channel concatenation's).
pub const MAX_INPUTS: usize = 64;

/// A tensor: index 0 is the model input (as int8), index `i + 1` the output of node `i`.
pub type TensorId = usize;

/// Height, width and channels of an NHWC tensor with batch 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Shape {
    pub const fn new(h: usize, w: usize, c: usize) -> Self {
        Shape { h, w, c }
    }

    /// Number of elements (and of bytes, at int8).
    pub fn elements(&self) -> usize {
        self.h * self.w * self.c
    }

    fn checked_elements(&self) -> Option<usize> {
        self.h.checked_mul(self.w)?.checked_mul(self.c)
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.h, self.w, self.c)
    }
}

/// Per-tensor affine quantisation of an int8 activation: `real = scale * (q - zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QParams {
    pub scale: f32,
    pub zero_point: i32,
}

/// The element type of the model input as the firmware passes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputType {
    /// Raw `u8` pixels; converted to int8 on the device by subtracting 128 (TF Lite's `QUANTIZE`
    /// from uint8 to int8 at equal scale), so the zero point moves by -128.
    U8,
    /// `i8` values in the model's quantisation.
    I8,
}

/// A fused activation, applied as a clamp in the quantised domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    None,
    Relu,
    Relu6,
}

/// Padding of convolutions and pools (TF Lite's semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Padding {
    /// Output `ceil(in / stride)`; the padding is split with the smaller half before.
    Same,
    /// No padding: output `(in - k) / stride + 1`.
    Valid,
}

/// Kernel, stride, padding, activation and the quantised weights of a (depthwise) convolution.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvParams {
    /// Kernel height and width, each 1 to [`MAX_KERNEL`].
    pub kernel: [usize; 2],
    pub stride: usize,
    pub padding: Padding,
    pub activation: Activation,
    /// Conv2d: `[out_c][k_h][k_w][in_c]`; depthwise: `[k_h][k_w][in_c * multiplier]`.
    pub weights: Vec<i8>,
    /// One symmetric scale per output channel (zero point 0).
    pub weight_scales: Vec<f32>,
    /// One int32 bias per output channel, at scale `input_scale * weight_scale`.
    pub bias: Vec<i32>,
}

/// Window of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolParams {
    pub size: [usize; 2],
    pub stride: usize,
    pub padding: Padding,
}

/// The operators. All work on int8 NHWC tensors with batch 1.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Conv2d {
        out_channels: usize,
        conv: ConvParams,
    },
    DepthwiseConv2d {
        multiplier: usize,
        conv: ConvParams,
    },
    /// Output quantisation must equal the input's (as in TF Lite).
    MaxPool2d(PoolParams),
    /// Output quantisation must equal the input's; padding is excluded from the average.
    AvgPool2d(PoolParams),
    /// Mean over height and width, requantised: output `1x1xC`.
    GlobalAveragePool,
    /// Dense layer over the flattened input. Weights `[out][in]`.
    FullyConnected {
        out_features: usize,
        activation: Activation,
        weights: Vec<i8>,
        weight_scales: Vec<f32>,
        bias: Vec<i32>,
    },
    /// Element-wise sum of two tensors of the same shape (residual connections).
    Add {
        activation: Activation,
    },
    /// Same data, another shape (Flatten is `Reshape` to `1x1xN`); output quantisation equals the
    /// input's. Costs no memory: the output aliases the input.
    Reshape {
        shape: Shape,
    },
    /// Softmax over channels; output quantisation must be scale 1/256, zero point -128.
    Softmax {
        beta: f32,
    },
    /// Spatial padding with a constant (TF Lite's `PAD` / `PADV2` on height and width): `top`
    /// rows above, `bottom` below, `left` and `right` columns. Output quantisation equals the
    /// input's.
    Pad {
        top: usize,
        bottom: usize,
        left: usize,
        right: usize,
        value: i8,
    },
    /// Concatenation along channels of 1 to [`MAX_INPUTS`] tensors of one height and width; every
    /// input's quantisation equals the output's (as TF Lite requires for int8).
    Concat,
    /// TF Lite's int8 `MEAN` over height and width (output `1x1xC`): a global average pool whose
    /// fixed-point multiplier is derived as TF Lite derives it
    /// ([`crate::quant::tflite_mean_multiplier`]), so it rounds as TF Lite's kernel does.
    Mean,
}

impl Op {
    /// A short name for reports and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv2d { .. } => "Conv2d",
            Op::DepthwiseConv2d { .. } => "DepthwiseConv2d",
            Op::MaxPool2d(_) => "MaxPool2d",
            Op::AvgPool2d(_) => "AvgPool2d",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::FullyConnected { .. } => "FullyConnected",
            Op::Add { .. } => "Add",
            Op::Reshape { .. } => "Reshape",
            Op::Softmax { .. } => "Softmax",
            Op::Pad { .. } => "Pad",
            Op::Concat => "Concat",
            Op::Mean => "Mean",
        }
    }

    /// How many inputs the op takes.
    fn arity(&self) -> std::ops::RangeInclusive<usize> {
        match self {
            Op::Add { .. } => 2..=2,
            Op::Concat => 1..=MAX_INPUTS,
            _ => 1..=1,
        }
    }
}

/// One node: an operator, its input tensors and its output.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<TensorId>,
    /// Quantisation of the output tensor.
    pub quant: QParams,
    /// Inferred output shape.
    pub shape: Shape,
    /// Inferred multiply-accumulates (exact: padding taps are not counted).
    pub macs: u64,
}

impl Node {
    /// Parameter bytes of this node with its whole kernel (int8 weights + int32 biases + the
    /// per-channel multipliers and shifts the generated code keeps); what flash holds is
    /// [`Model::node_param_bytes`] (a kernel larger than its input is cut).
    pub fn param_bytes(&self) -> usize {
        match &self.op {
            Op::Conv2d { conv, .. } | Op::DepthwiseConv2d { conv, .. } => {
                conv.weights.len() + conv.bias.len() * 4 + conv.weight_scales.len() * 8
            }
            Op::FullyConnected {
                weights,
                bias,
                weight_scales,
                ..
            } => weights.len() + bias.len() * 4 + weight_scales.len() * 8,
            _ => 0,
        }
    }

    /// Number of trainable parameters (weights + biases).
    pub fn params(&self) -> usize {
        match &self.op {
            Op::Conv2d { conv, .. } | Op::DepthwiseConv2d { conv, .. } => {
                conv.weights.len() + conv.bias.len()
            }
            Op::FullyConnected { weights, bias, .. } => weights.len() + bias.len(),
            _ => 0,
        }
    }
}

/// A validated model. Build one with [`ModelBuilder`] or read one with [`crate::format::read`].
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub input_type: InputType,
    pub input_shape: Shape,
    /// Quantisation of the input as the firmware passes it (for `U8`: the zero point in 0..=255).
    pub input_quant: QParams,
    pub nodes: Vec<Node>,
    /// Optional class names, one per output element.
    pub labels: Vec<String>,
}

impl Model {
    /// Shape of tensor `t`.
    pub fn shape(&self, t: TensorId) -> Shape {
        if t == 0 {
            self.input_shape
        } else {
            self.nodes[t - 1].shape
        }
    }

    /// Quantisation of tensor `t` in the int8 domain (tensor 0 of a `U8` model has its zero
    /// point moved by -128).
    pub fn quant(&self, t: TensorId) -> QParams {
        if t == 0 {
            int8_input_quant(self.input_type, self.input_quant)
        } else {
            self.nodes[t - 1].quant
        }
    }

    /// The output tensor (the last node's).
    pub fn output(&self) -> TensorId {
        self.nodes.len()
    }

    /// Number of output values (the logits, one per class).
    pub fn classes(&self) -> usize {
        self.shape(self.output()).elements()
    }

    pub fn macs(&self) -> u64 {
        self.nodes.iter().map(|n| n.macs).sum()
    }

    pub fn params(&self) -> usize {
        self.nodes.iter().map(Node::params).sum()
    }

    /// Parameter bytes the generated code stores in flash.
    pub fn param_bytes(&self) -> usize {
        (0..self.nodes.len())
            .map(|i| self.node_param_bytes(i))
            .sum()
    }

    /// Parameter bytes the generated code stores in flash for node `i`: [`Node::param_bytes`]
    /// less the weights of the taps that read only padding, which the lowering cuts away
    /// ([`crate::lower::crop`]).
    pub fn node_param_bytes(&self, i: usize) -> usize {
        let Some(node) = self.nodes.get(i) else {
            return 0;
        };
        let (Op::Conv2d { conv, .. } | Op::DepthwiseConv2d { conv, .. }) = &node.op else {
            return node.param_bytes();
        };
        let full = crate::lower::conv_dims(self, i, conv);
        let cut = crate::lower::crop(&full);
        let taps = |d: &tinynas_kernels::ConvDims| d.k_h * d.k_w;
        let per_tap = conv.weights.len() / taps(&full).max(1);
        node.param_bytes() - (taps(&full) - taps(&cut)) * per_tap
    }
}

fn int8_input_quant(ty: InputType, q: QParams) -> QParams {
    match ty {
        InputType::I8 => q,
        InputType::U8 => QParams {
            scale: q.scale,
            zero_point: q.zero_point - 128,
        },
    }
}

/// Output side and padding before, TF Lite's `ComputePaddingHeightWidth` for one axis.
pub fn window_output(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
) -> Option<(usize, usize)> {
    if stride == 0 || kernel == 0 {
        return None;
    }
    match padding {
        Padding::Same => {
            let out = input.div_ceil(stride);
            let needed = ((out.checked_sub(1)?) * stride + kernel).saturating_sub(input);
            Some((out, needed / 2))
        }
        Padding::Valid => {
            let span = input.checked_sub(kernel)?;
            Some((span / stride + 1, 0))
        }
    }
}

/// Number of kernel taps that land inside the input, summed over all output positions of one axis.
fn taps(input: usize, kernel: usize, stride: usize, padding: Padding) -> u64 {
    let Some((out, pad)) = window_output(input, kernel, stride, padding) else {
        return 0;
    };
    let mut n = 0u64;
    for o in 0..out {
        let start = (o * stride) as i64 - pad as i64;
        for k in 0..kernel as i64 {
            let i = start + k;
            if i >= 0 && (i as usize) < input {
                n += 1;
            }
        }
    }
    n
}

/// Adds nodes one by one, inferring and checking shapes, costs and quantisation.
#[derive(Debug, Clone)]
pub struct ModelBuilder {
    model: Model,
}

impl ModelBuilder {
    /// Starts a model with the given input.
    pub fn new(
        input_type: InputType,
        input_shape: Shape,
        input_quant: QParams,
    ) -> Result<Self, Error> {
        let bad = |m: String| Err(Error::Model(m));
        match input_shape.checked_elements() {
            Some(n) if n > 0 && n <= MAX_TENSOR_ELEMENTS => {}
            _ => return bad(format!("input shape {input_shape} is empty or too large")),
        }
        check_scale(input_quant.scale).map_err(|m| Error::Model(format!("input {m}")))?;
        let zp_range = match input_type {
            InputType::U8 => 0..=255,
            InputType::I8 => -128..=127,
        };
        if !zp_range.contains(&input_quant.zero_point) {
            return bad(format!(
                "input zero point {} is outside {:?} for {:?} input",
                input_quant.zero_point, zp_range, input_type
            ));
        }
        Ok(ModelBuilder {
            model: Model {
                input_type,
                input_shape,
                input_quant,
                nodes: Vec::new(),
                labels: Vec::new(),
            },
        })
    }

    /// Shape of an existing tensor, for callers that build networks programmatically.
    pub fn shape(&self, t: TensorId) -> Option<Shape> {
        (t <= self.model.nodes.len()).then(|| self.model.shape(t))
    }

    /// Quantisation of an existing tensor (int8 domain).
    pub fn quant(&self, t: TensorId) -> Option<QParams> {
        (t <= self.model.nodes.len()).then(|| self.model.quant(t))
    }

    /// The most recently added tensor.
    pub fn last(&self) -> TensorId {
        self.model.nodes.len()
    }

    /// Adds a node and returns its output tensor.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: &[TensorId],
        quant: QParams,
    ) -> Result<TensorId, Error> {
        let name = name.into();
        let index = self.model.nodes.len();
        let err = |m: String| Error::node(index, &name, m);
        if index >= MAX_NODES {
            return Err(err(format!("a model has at most {MAX_NODES} nodes")));
        }
        let arity = op.arity();
        if !arity.contains(&inputs.len()) {
            let takes = if arity.start() == arity.end() {
                arity.start().to_string()
            } else {
                format!("{} to {}", arity.start(), arity.end())
            };
            return Err(err(format!(
                "{} takes {takes} input(s), got {}",
                op.kind(),
                inputs.len()
            )));
        }
        for &t in inputs {
            if t > index {
                return Err(err(format!(
                    "input tensor {t} does not exist yet (inputs must come from earlier nodes)"
                )));
            }
        }
        check_scale(quant.scale).map_err(|m| err(format!("output {m}")))?;
        if !(-128..=127).contains(&quant.zero_point) {
            return Err(err(format!(
                "output zero point {} is outside -128..=127",
                quant.zero_point
            )));
        }
        let x = self.model.shape(inputs[0]);
        let xq = self.model.quant(inputs[0]);
        let same_quant = |what: &str| -> Result<(), Error> {
            if quant != xq {
                return Err(err(format!(
                    "{what} must keep its input's quantisation (scale {}, zero point {}), got scale {}, zero point {}",
                    xq.scale, xq.zero_point, quant.scale, quant.zero_point
                )));
            }
            Ok(())
        };
        let (shape, macs) = match &op {
            Op::Conv2d { out_channels, conv } => {
                let (oh, ow) = conv_geometry(x, conv).map_err(err)?;
                let oc = *out_channels;
                check_channels(oc, conv, oc * conv.kernel[0] * conv.kernel[1] * x.c)
                    .map_err(err)?;
                let taps = taps(x.h, conv.kernel[0], conv.stride, conv.padding)
                    * taps(x.w, conv.kernel[1], conv.stride, conv.padding);
                (Shape::new(oh, ow, oc), taps * (x.c * oc) as u64)
            }
            Op::DepthwiseConv2d { multiplier, conv } => {
                let (oh, ow) = conv_geometry(x, conv).map_err(err)?;
                if *multiplier == 0 || *multiplier > 64 {
                    return Err(err(format!(
                        "depth multiplier {multiplier} is outside 1..=64"
                    )));
                }
                let oc = x.c * multiplier;
                check_channels(oc, conv, oc * conv.kernel[0] * conv.kernel[1]).map_err(err)?;
                let taps = taps(x.h, conv.kernel[0], conv.stride, conv.padding)
                    * taps(x.w, conv.kernel[1], conv.stride, conv.padding);
                (Shape::new(oh, ow, oc), taps * oc as u64)
            }
            Op::MaxPool2d(p) | Op::AvgPool2d(p) => {
                same_quant(op.kind())?;
                if p.size.iter().any(|&k| k == 0 || k > MAX_POOL)
                    || p.stride == 0
                    || p.stride > MAX_STRIDE
                {
                    return Err(err(format!(
                        "pool size {:?} / stride {} out of range (size 1..={}, stride 1..={MAX_STRIDE})",
                        p.size, p.stride, MAX_POOL
                    )));
                }
                let (oh, _) =
                    window_output(x.h, p.size[0], p.stride, p.padding).ok_or_else(|| {
                        err(format!(
                            "pool window {:?} is larger than the {x} input with valid padding",
                            p.size
                        ))
                    })?;
                let (ow, _) =
                    window_output(x.w, p.size[1], p.stride, p.padding).ok_or_else(|| {
                        err(format!(
                            "pool window {:?} is larger than the {x} input with valid padding",
                            p.size
                        ))
                    })?;
                (Shape::new(oh, ow, x.c), 0)
            }
            Op::GlobalAveragePool => (Shape::new(1, 1, x.c), 0),
            Op::FullyConnected {
                out_features,
                activation: _,
                weights,
                weight_scales,
                bias,
            } => {
                let n = x.elements();
                let o = *out_features;
                if o == 0 {
                    return Err(err("a dense layer needs at least one output".into()));
                }
                let expect = o.checked_mul(n).filter(|&v| v <= MAX_TENSOR_ELEMENTS);
                if expect != Some(weights.len()) {
                    return Err(err(format!(
                        "weights have {} values, expected {o} outputs x {n} inputs",
                        weights.len()
                    )));
                }
                check_per_channel(o, weight_scales, bias).map_err(err)?;
                (Shape::new(1, 1, o), (n * o) as u64)
            }
            Op::Add { .. } => {
                let y = self.model.shape(inputs[1]);
                if x != y {
                    return Err(err(format!(
                        "Add needs two inputs of one shape, got {x} and {y}"
                    )));
                }
                (x, 0)
            }
            Op::Reshape { shape } => {
                same_quant("Reshape")?;
                if shape.checked_elements() != Some(x.elements()) {
                    return Err(err(format!(
                        "cannot reshape {x} ({} values) to {shape}",
                        x.elements()
                    )));
                }
                (*shape, 0)
            }
            Op::Softmax { beta } => {
                if !(beta.is_finite() && *beta > 0.0) {
                    return Err(err(format!(
                        "softmax beta {beta} must be finite and positive"
                    )));
                }
                if quant
                    != (QParams {
                        scale: 1.0 / 256.0,
                        zero_point: -128,
                    })
                {
                    return Err(err(
                        "int8 softmax output must have scale 1/256 and zero point -128".into(),
                    ));
                }
                if crate::quant::softmax_params(*beta, xq).is_none() {
                    return Err(err(format!(
                        "softmax beta {beta} x input scale {} is too small to represent",
                        xq.scale
                    )));
                }
                (x, 0)
            }
            Op::Pad {
                top,
                bottom,
                left,
                right,
                value: _,
            } => {
                same_quant("Pad")?;
                let grow = |a: usize, b: usize, c: usize| a.checked_add(b)?.checked_add(c);
                match (grow(x.h, *top, *bottom), grow(x.w, *left, *right)) {
                    (Some(h), Some(w)) => (Shape::new(h, w, x.c), 0),
                    _ => return Err(err("padding is too large".into())),
                }
            }
            Op::Concat => {
                let mut c = 0usize;
                for &t in inputs {
                    let (s, q) = (self.model.shape(t), self.model.quant(t));
                    if (s.h, s.w) != (x.h, x.w) {
                        return Err(err(format!(
                            "Concat joins channels of tensors of one height and width, got {x} and {s}"
                        )));
                    }
                    if q != quant {
                        return Err(err(format!(
                            "Concat needs every input in the output's quantisation (scale {}, zero point {}); tensor {t} has scale {}, zero point {}",
                            quant.scale, quant.zero_point, q.scale, q.zero_point
                        )));
                    }
                    c = c.saturating_add(s.c);
                }
                (Shape::new(x.h, x.w, c), 0)
            }
            Op::Mean => {
                crate::quant::tflite_mean_multiplier(xq, quant, x.h * x.w).map_err(err)?;
                (Shape::new(1, 1, x.c), 0)
            }
        };
        match shape.checked_elements() {
            Some(n) if n > 0 && n <= MAX_TENSOR_ELEMENTS => {}
            _ => return Err(err(format!("output shape {shape} is empty or too large"))),
        }
        self.model.nodes.push(Node {
            name,
            op,
            inputs: inputs.to_vec(),
            quant,
            shape,
            macs,
        });
        Ok(index + 1)
    }

    /// Sets class names (one per output value; checked in [`ModelBuilder::finish`]).
    pub fn labels(&mut self, labels: Vec<String>) -> &mut Self {
        self.model.labels = labels;
        self
    }

    /// Checks the whole graph and returns the model.
    pub fn finish(self) -> Result<Model, Error> {
        let m = self.model;
        if m.nodes.is_empty() {
            return Err(Error::Model("a model needs at least one node".into()));
        }
        if !m.labels.is_empty() && m.labels.len() != m.classes() {
            return Err(Error::Model(format!(
                "{} labels given for {} outputs",
                m.labels.len(),
                m.classes()
            )));
        }
        Ok(m)
    }
}

fn check_scale(scale: f32) -> Result<(), String> {
    if scale.is_finite() && scale > 1e-30 && scale < 1e30 {
        Ok(())
    } else {
        Err(format!("scale {scale} must be a finite positive number"))
    }
}

fn conv_geometry(x: Shape, conv: &ConvParams) -> Result<(usize, usize), String> {
    let [kh, kw] = conv.kernel;
    for k in [kh, kw] {
        if k == 0 || k > MAX_KERNEL {
            return Err(format!("kernel {kh}x{kw}: sides must be 1 to {MAX_KERNEL}"));
        }
    }
    if conv.stride == 0 || conv.stride > MAX_STRIDE {
        return Err(format!(
            "stride {} is outside 1..={MAX_STRIDE}",
            conv.stride
        ));
    }
    let too_big = || format!("kernel {kh}x{kw} is larger than the {x} input with valid padding");
    let (oh, _) = window_output(x.h, kh, conv.stride, conv.padding).ok_or_else(too_big)?;
    let (ow, _) = window_output(x.w, kw, conv.stride, conv.padding).ok_or_else(too_big)?;
    Ok((oh, ow))
}

fn check_channels(oc: usize, conv: &ConvParams, weights: usize) -> Result<(), String> {
    if oc == 0 {
        return Err("a convolution needs at least one output channel".into());
    }
    if weights > MAX_TENSOR_ELEMENTS || conv.weights.len() != weights {
        return Err(format!(
            "weights have {} values, expected {weights}",
            conv.weights.len()
        ));
    }
    check_per_channel(oc, &conv.weight_scales, &conv.bias)
}

fn check_per_channel(oc: usize, scales: &[f32], bias: &[i32]) -> Result<(), String> {
    if scales.len() != oc {
        return Err(format!(
            "{} weight scales for {oc} output channels",
            scales.len()
        ));
    }
    if bias.len() != oc {
        return Err(format!("{} biases for {oc} output channels", bias.len()));
    }
    for (c, &s) in scales.iter().enumerate() {
        check_scale(s).map_err(|m| format!("weight scale of channel {c}: {m}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> QParams {
        QParams {
            scale: 0.1,
            zero_point: 0,
        }
    }

    fn conv(k: usize, stride: usize, padding: Padding, ic: usize, oc: usize) -> Op {
        Op::Conv2d {
            out_channels: oc,
            conv: ConvParams {
                kernel: [k, k],
                stride,
                padding,
                activation: Activation::Relu,
                weights: vec![1; oc * k * k * ic],
                weight_scales: vec![0.01; oc],
                bias: vec![0; oc],
            },
        }
    }

    #[test]
    fn shapes_and_macs() {
        let mut b = ModelBuilder::new(
            InputType::U8,
            Shape::new(8, 8, 3),
            QParams {
                scale: 1.0,
                zero_point: 0,
            },
        )
        .unwrap();
        let t = b
            .add("c", conv(3, 1, Padding::Same, 3, 4), &[0], q())
            .unwrap();
        assert_eq!(b.shape(t), Some(Shape::new(8, 8, 4)));
        // Per axis: 8 outputs, 3 taps each, minus the 2 taps off the edges.
        assert_eq!(b.model.nodes[0].macs, 22 * 22 * 12);
        let t = b
            .add("s", conv(3, 2, Padding::Valid, 4, 2), &[t], q())
            .unwrap();
        assert_eq!(b.shape(t), Some(Shape::new(3, 3, 2)));
        assert_eq!(b.model.nodes[1].macs, 9 * 9 * 8);
    }

    #[test]
    fn wrong_graphs_name_the_node() {
        let mut b = ModelBuilder::new(InputType::I8, Shape::new(4, 4, 3), q()).unwrap();
        let e = b
            .add("first", conv(3, 1, Padding::Same, 2, 4), &[0], q())
            .unwrap_err();
        assert!(e.to_string().contains("node 0 (first)"), "{e}");
        let e = b
            .add("big", conv(5, 1, Padding::Valid, 3, 4), &[0], q())
            .unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        let e = b
            .add("wide", conv(16, 1, Padding::Same, 3, 4), &[0], q())
            .unwrap_err();
        assert!(e.to_string().contains("sides must be 1 to 15"), "{e}");
        // An even kernel is a kernel (MLPerf Tiny's DS-CNN starts with a 10x4 one): SAME padding
        // puts the odd pad row and column after the input, as TF Lite does.
        let mut even = ModelBuilder::new(InputType::I8, Shape::new(5, 4, 3), q()).unwrap();
        let t = even
            .add("even", conv(2, 2, Padding::Same, 3, 4), &[0], q())
            .unwrap();
        assert_eq!(even.shape(t), Some(Shape::new(3, 2, 4)));
        assert_eq!(window_output(5, 2, 2, Padding::Same), Some((3, 0)));
        assert_eq!(window_output(4, 10, 2, Padding::Same), Some((2, 4)));
        let e = b
            .add("future", Op::GlobalAveragePool, &[3], q())
            .unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e = b
            .add(
                "pool",
                Op::MaxPool2d(PoolParams {
                    size: [2, 2],
                    stride: 2,
                    padding: Padding::Valid,
                }),
                &[0],
                QParams {
                    scale: 0.2,
                    zero_point: 0,
                },
            )
            .unwrap_err();
        assert!(e.to_string().contains("quantisation"), "{e}");
    }
}
