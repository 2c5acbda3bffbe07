//! The host interpreter: a lowered model run through `tinynas_kernels`' kernels, step for step
//! as the generated code runs it, over one arena of the planned size.

use crate::lower::{Kernel, Program, Weights};
use crate::plan::Location;
use crate::{InputType, Model};
use tinynas_kernels as k;

/// A model input as the firmware passes it.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    U8(&'a [u8]),
    I8(&'a [i8]),
}

/// Why a model cannot run on an input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RunError {
    #[error("the model takes {expected} {ty} input values, got {got}")]
    InputLength {
        expected: usize,
        got: usize,
        ty: &'static str,
    },
    #[error("the model takes {expected} input, got {got}")]
    InputType {
        expected: &'static str,
        got: &'static str,
    },
}

/// A model ready to run on the host.
#[derive(Debug, Clone)]
pub struct HostModel {
    input_type: InputType,
    input_len: usize,
    program: Program,
    /// Each node's first input tensor (what a `Reshape` node's output equals).
    first_inputs: Vec<usize>,
}

impl HostModel {
    pub fn new(model: &Model) -> Result<Self, crate::Error> {
        Ok(HostModel {
            input_type: model.input_type,
            input_len: model.input_shape.elements(),
            program: crate::lower::lower(model)?,
            first_inputs: model.nodes.iter().map(|n| n.inputs[0]).collect(),
        })
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Runs one inference and returns the output tensor (the logits).
    pub fn run(&self, input: Input<'_>) -> Result<Vec<i8>, RunError> {
        self.run_with(input, |_, _| {})
    }

    /// Runs one inference and returns the tensor each kernel call wrote, in the order of
    /// [`Program::steps`] (what the generated code's `predict_observed` sees).
    pub fn run_steps(&self, input: Input<'_>) -> Result<Vec<Vec<i8>>, RunError> {
        let mut out = Vec::with_capacity(self.program.steps.len());
        self.run_with(input, |_, y| out.push(y.to_vec()))?;
        Ok(out)
    }

    /// Runs one inference and returns every node's output tensor, in node order (a `Reshape`
    /// node's is its input's values), for comparing intermediate tensors with another runtime.
    pub fn run_all(&self, input: Input<'_>) -> Result<Vec<Vec<i8>>, RunError> {
        let mut seen: Vec<Option<Vec<i8>>> = vec![None; self.first_inputs.len()];
        let mut converted = None;
        self.run_with(input, |node, y| match node {
            Some(i) => {
                if let Some(s) = seen.get_mut(i) {
                    *s = Some(y.to_vec());
                }
            }
            None => converted = Some(y.to_vec()),
        })?;
        let x: Vec<i8> = match (converted, input) {
            (Some(c), _) => c,
            (None, Input::I8(v)) => v.to_vec(),
            (None, Input::U8(v)) => v.iter().map(|&b| (b ^ 0x80) as i8).collect(),
        };
        let mut out: Vec<Vec<i8>> = Vec::with_capacity(seen.len());
        for (i, s) in seen.into_iter().enumerate() {
            let v = match s {
                Some(v) => v,
                None => match self.first_inputs[i] {
                    0 => x.clone(),
                    t => out[t - 1].clone(),
                },
            };
            out.push(v);
        }
        Ok(out)
    }

    /// Runs one inference, calling `after(node, output)` after each kernel call.
    fn run_with(
        &self,
        input: Input<'_>,
        mut after: impl FnMut(Option<usize>, &[i8]),
    ) -> Result<Vec<i8>, RunError> {
        let x: Vec<i8> = match (self.input_type, input) {
            (InputType::U8, Input::U8(v)) => v.iter().map(|&b| b as i8).collect(),
            (InputType::I8, Input::I8(v)) => v.to_vec(),
            (InputType::U8, Input::I8(_)) => {
                return Err(RunError::InputType {
                    expected: "u8",
                    got: "i8",
                })
            }
            (InputType::I8, Input::U8(_)) => {
                return Err(RunError::InputType {
                    expected: "i8",
                    got: "u8",
                })
            }
        };
        if x.len() != self.input_len {
            let ty = if self.input_type == InputType::U8 {
                "u8"
            } else {
                "i8"
            };
            return Err(RunError::InputLength {
                expected: self.input_len,
                got: x.len(),
                ty,
            });
        }
        // What kernels other than the conversion see of a `u8` input they read in place: the int8
        // values `x - 128` (the fast convolutions convert while they gather).
        let converted: Vec<i8> = match self.input_type {
            InputType::U8 => x.iter().map(|&b| ((b as u8) ^ 0x80) as i8).collect(),
            InputType::I8 => x.clone(),
        };
        let mut arena = vec![0i8; self.program.plan.arena_bytes];
        for step in &self.program.steps {
            let raw = matches!(step.kernel, Kernel::QuantizeU8);
            let read = |loc: &Location, arena: &[i8]| -> Vec<i8> {
                match *loc {
                    Location::Input if raw => x.clone(),
                    Location::Input => converted.clone(),
                    Location::Arena { offset, len } => arena[offset..offset + len].to_vec(),
                }
            };
            let inputs: Vec<Vec<i8>> = step.inputs.iter().map(|l| read(l, &arena)).collect();
            let (off, len) = step.output;
            let y = &mut arena[off..off + len];
            let a = inputs.first().map_or(&[][..], |v| &v[..]);
            match &step.kernel {
                Kernel::QuantizeU8 => {
                    let raw: Vec<u8> = a.iter().map(|&b| b as u8).collect();
                    k::quantize_u8(&raw, y);
                }
                Kernel::Conv2d { dims, w } => k::conv2d(a, y, &conv(dims, w)),
                Kernel::DepthwiseConv2d { dims, w } => k::depthwise_conv2d(a, y, &conv(dims, w)),
                Kernel::FullyConnected {
                    in_features,
                    out_features,
                    w,
                } => k::fully_connected(
                    a,
                    y,
                    &k::Dense {
                        weights: &w.weights,
                        bias: &w.bias,
                        multiplier: &w.multiplier,
                        shift: &w.shift,
                        in_features: *in_features,
                        out_features: *out_features,
                        quant: w.quant,
                    },
                ),
                Kernel::MaxPool2d(d) => k::max_pool2d(a, y, d),
                Kernel::AvgPool2d(d) => k::avg_pool2d(a, y, d),
                Kernel::GlobalAveragePool(m) => k::global_average_pool(a, y, m),
                Kernel::Add(p) => {
                    let b = inputs.get(1).map_or(&[][..], |v| &v[..]);
                    k::add(a, b, y, p)
                }
                Kernel::Softmax(s) => k::softmax(a, y, s),
                Kernel::Pad(d) => k::pad(a, y, d),
                Kernel::Concat { channels } => {
                    let xs: Vec<&[i8]> = inputs.iter().map(|v| &v[..]).collect();
                    k::concat_channels(&xs, channels, y)
                }
            }
            after(step.node, y);
        }
        Ok(match self.program.output {
            Location::Input => x,
            Location::Arena { offset, len } => arena[offset..offset + len].to_vec(),
        })
    }
}

/// The kernel's view of a lowered conv layer (weights borrowed from the program).
pub fn conv<'a>(dims: &crate::lower::ConvDims, w: &'a Weights) -> k::Conv<'a> {
    k::Conv {
        weights: &w.weights,
        bias: &w.bias,
        multiplier: &w.multiplier,
        shift: &w.shift,
        dims: *dims,
        quant: w.quant,
    }
}
