//! Imports an int8 TF Lite model (`.tflite`) into the cargo-tinynas model IR.
//!
//! The file is read with the `flatbuffers` crate and code generated from TF Lite's published
//! schema (`schema/`, see its README), after the flatbuffers verifier has checked every offset:
//! a damaged file is an error, never a panic. The graph is then mapped op by op onto
//! [`tinynas_model::ModelBuilder`], which infers and checks shapes; every output shape is also
//! compared with the one the file states.
//!
//! What cannot run exactly is refused with the operator's index, its name and what to do: float
//! tensors inside the graph, operators or options we have no exact kernel for, dynamic shapes,
//! batch sizes above one, several subgraphs. Never approximated.
//!
//! What TF Lite Micro loads, we load: TF Lite Micro ignores the quantisation parameters of a
//! bias tensor (it recomputes the bias scale from the input and weight scales), so a rank-1 bias
//! whose quantisation claims "per channel on dimension 3" (as in TF Lite Micro's own
//! `person_detect.tflite`, which newer TF Lite interpreters refuse) imports as it runs there.
//!
//! Besides convolutions, dense layers, pools, softmax, reshapes and ADD, the graph may hold PAD /
//! PADV2 (height and width), CONCATENATION (channels) and MEAN (over height and width, with or
//! without `keep_dims`, rounded as TF Lite's kernel rounds it).
//!
//! At the model's edges, `QUANTIZE` and `DEQUANTIZE` are folded away: a `uint8` input followed
//! by a `QUANTIZE` to int8 of the same scale becomes a `u8` model input; a `float32` input
//! followed by a `QUANTIZE` becomes an int8 input in that `QUANTIZE`'s quantisation; a final
//! `DEQUANTIZE`, or a final `QUANTIZE` to uint8 of the same scale, leaves the int8 logits as the
//! output. [`Imported::notes`] says which applied.

use std::collections::HashMap;

use tinynas_model::{
    Activation, ConvParams, InputType, Model, ModelBuilder, Op, Padding, PoolParams, QParams,
    Shape, TensorId,
};

#[allow(
    unsafe_code,
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations,
    non_camel_case_types,
    non_snake_case,
    deprecated,
    unused_imports,
    dead_code,
    unknown_lints,
    mismatched_lifetime_syntaxes
)]
mod schema_generated;

use schema_generated::tflite as fb;

/// A model read from a `.tflite` file.
#[derive(Debug, Clone)]
pub struct Imported {
    pub model: Model,
    /// For node `i` of the model, the index of the TF Lite tensor it computes (for comparing
    /// intermediate tensors with TF Lite's).
    pub tensors: Vec<usize>,
    /// The TF Lite tensor the model input is (after an input `QUANTIZE`, the quantised one).
    pub input_tensor: usize,
    /// What the import did that a user should know (edge conversions folded away, quirks).
    pub notes: Vec<String>,
    /// What the file's own output tensor holds: the model returns int8 values, which a final
    /// QUANTIZE or DEQUANTIZE (folded away) turned into uint8 or float values.
    pub output: FileOutput,
}

/// The type of a TF Lite model's output tensor, of which the imported model returns the int8
/// values before the final conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOutput {
    /// int8: what the model returns.
    Int8,
    /// uint8 after a final QUANTIZE: each value is the int8 one + 128.
    Uint8,
    /// float32 after a final DEQUANTIZE: `scale * (value - zero_point)` with the model's output
    /// quantisation.
    Float32,
}

impl FileOutput {
    /// TF Lite's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            FileOutput::Int8 => "int8",
            FileOutput::Uint8 => "uint8",
            FileOutput::Float32 => "float32",
        }
    }
}

/// Why a file cannot be imported.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum ImportError {
    /// Not a TF Lite flatbuffer at all, or one whose offsets do not hold together.
    #[error(
        "not a valid TF Lite model file: {0} (the file is damaged, cut short or not a .tflite: \
         export it again with the TF Lite converter)"
    )]
    Corrupt(String),
    /// The model as a whole cannot be imported (inputs, outputs, subgraphs).
    #[error("{0}")]
    Model(String),
    /// One operator cannot be imported exactly.
    #[error("operator {index} ({op}): {message}")]
    Op {
        index: usize,
        op: String,
        message: String,
    },
}

/// True when `bytes` carry TF Lite's file identifier (`TFL3` at offset 4).
pub fn is_tflite(bytes: &[u8]) -> bool {
    bytes.get(4..8) == Some(b"TFL3")
}

/// Reads a `.tflite` file into a model.
pub fn import(bytes: &[u8]) -> Result<Imported, ImportError> {
    if !is_tflite(bytes) {
        return Err(ImportError::Corrupt(
            "the file identifier at offset 4 is not \"TFL3\"".into(),
        ));
    }
    let opts = flatbuffers::VerifierOptions::default();
    let m = fb::root_as_model_with_opts(&opts, bytes).map_err(|e| {
        // The verifier's message runs over lines ("\n\twhile verifying ..."): one line.
        let e = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        ImportError::Corrupt(format!("the flatbuffer does not verify: {e}"))
    })?;
    Importer::new(m)?.run()
}

/// The int8 output shape: `[1, h, w, c]`, `[1, w, c]`, `[1, c]` or `[c]`.
fn to_shape(dims: &[i32]) -> Result<Shape, String> {
    if dims.iter().any(|&d| d <= 0) {
        return Err(format!(
            "shape {dims:?} has a dynamic or empty dimension; give the model static shapes (convert it with a fixed input size)"
        ));
    }
    let d: Vec<usize> = dims.iter().map(|&v| v as usize).collect();
    let batch_one = |b: usize| {
        if b == 1 {
            Ok(())
        } else {
            Err(format!(
                "shape {dims:?} has batch {b}; only batch 1 runs on a microcontroller: convert the model with batch size 1"
            ))
        }
    };
    match d.as_slice() {
        [c] => Ok(Shape::new(1, 1, *c)),
        [b, c] => batch_one(*b).map(|_| Shape::new(1, 1, *c)),
        [b, w, c] => batch_one(*b).map(|_| Shape::new(1, *w, *c)),
        [b, h, w, c] => batch_one(*b).map(|_| Shape::new(*h, *w, *c)),
        _ => Err(format!(
            "shape {dims:?} has rank {}; ranks 1 to 4 (NHWC) are supported",
            d.len()
        )),
    }
}

fn type_name(t: fb::TensorType) -> String {
    t.variant_name()
        .map_or_else(|| format!("type {}", t.0), |s| s.to_string())
}

/// The name TF Lite gives a builtin operator.
fn op_name(code: fb::BuiltinOperator) -> String {
    code.variant_name()
        .map_or_else(|| format!("BUILTIN_{}", code.0), |s| s.to_string())
}

struct Importer<'a> {
    buffers: Vec<Option<&'a [u8]>>,
    codes: Vec<(fb::BuiltinOperator, Option<&'a str>)>,
    graph: fb::SubGraph<'a>,
    tensors: Vec<fb::Tensor<'a>>,
}

impl<'a> Importer<'a> {
    fn new(m: fb::Model<'a>) -> Result<Self, ImportError> {
        let bad = |s: &str| ImportError::Model(s.to_string());
        let graphs = m
            .subgraphs()
            .ok_or_else(|| bad("the model has no subgraph"))?;
        if graphs.len() != 1 {
            return Err(ImportError::Model(format!(
                "the model has {} subgraphs (control flow such as WHILE or IF); only single-graph models are supported",
                graphs.len()
            )));
        }
        let graph = graphs.get(0);
        let buffers = m
            .buffers()
            .map(|v| {
                v.iter()
                    .map(|b| b.data().map(|d| d.bytes()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let codes = m
            .operator_codes()
            .map(|v| {
                v.iter()
                    .map(|c| {
                        // Schema 3a: the larger of the two fields is the operator.
                        let old = fb::BuiltinOperator(i32::from(c.deprecated_builtin_code()));
                        let new = c.builtin_code();
                        (if new.0 > old.0 { new } else { old }, c.custom_code())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let tensors = graph
            .tensors()
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        Ok(Importer {
            buffers,
            codes,
            graph,
            tensors,
        })
    }

    fn tensor(&self, i: i32) -> Result<fb::Tensor<'a>, String> {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.tensors.get(i).copied())
            .ok_or_else(|| format!("refers to tensor {i}, which does not exist"))
    }

    fn dims(&self, i: i32) -> Result<Vec<i32>, String> {
        let t = self.tensor(i)?;
        if let Some(sig) = t.shape_signature() {
            if sig.iter().any(|d| d < 0) {
                return Err(format!(
                    "tensor {i} ({}) has a dynamic shape {:?}; convert the model with a fixed input size",
                    t.name().unwrap_or("?"),
                    sig.iter().collect::<Vec<_>>()
                ));
            }
        }
        Ok(t.shape().map(|s| s.iter().collect()).unwrap_or_default())
    }

    /// The constant data of tensor `i`, if it has any.
    fn data(&self, i: i32) -> Result<Option<&'a [u8]>, String> {
        let t = self.tensor(i)?;
        let b = t.buffer() as usize;
        if b == 0 {
            return Ok(None);
        }
        match self.buffers.get(b) {
            Some(Some(d)) if !d.is_empty() => Ok(Some(d)),
            Some(_) => Ok(None),
            None => Err(format!(
                "tensor {i} refers to buffer {b}, which does not exist"
            )),
        }
    }

    /// Per-tensor quantisation of an int8 (or uint8) activation tensor.
    fn act_quant(&self, i: i32) -> Result<QParams, String> {
        let t = self.tensor(i)?;
        let name = t.name().unwrap_or("?");
        let q = t.quantization().ok_or_else(|| {
            format!("tensor {i} ({name}) has no quantisation parameters; only fully int8-quantised models can run (convert with full integer quantisation)")
        })?;
        let (scales, zps) = (q.scale(), q.zero_point());
        match (scales, zps) {
            (Some(s), Some(z)) if s.len() == 1 && z.len() == 1 => {
                let zp = z.get(0);
                Ok(QParams {
                    scale: s.get(0),
                    zero_point: i32::try_from(zp)
                        .map_err(|_| format!("tensor {i} ({name}): zero point {zp} is out of range"))?,
                })
            }
            (Some(s), _) if s.len() > 1 => Err(format!(
                "tensor {i} ({name}) is quantised per channel; activations must be quantised per tensor"
            )),
            _ => Err(format!(
                "tensor {i} ({name}) has no scale and zero point; only fully int8-quantised models can run"
            )),
        }
    }

    fn expect_type(&self, i: i32, want: fb::TensorType, role: &str) -> Result<(), String> {
        let t = self.tensor(i)?;
        if t.type_() != want {
            let hint = if t.type_() == fb::TensorType::FLOAT32 {
                "; this is a float model: convert it with full integer quantisation (int8)"
            } else {
                ""
            };
            return Err(format!(
                "{role} tensor {i} ({}) is {}, expected {}{hint}",
                t.name().unwrap_or("?"),
                type_name(t.type_()),
                type_name(want)
            ));
        }
        Ok(())
    }

    /// Weights of a conv or dense layer: int8, symmetric, per tensor or per channel on `axis`.
    fn weights(&self, i: i32, channels: usize, axis: i32) -> Result<(Vec<i8>, Vec<f32>), String> {
        self.expect_type(i, fb::TensorType::INT8, "weight")?;
        let dims = self.dims(i)?;
        let n: usize = dims.iter().map(|&d| d.max(0) as usize).product();
        let data = self.data(i)?.ok_or_else(|| {
            format!("weight tensor {i} is not a constant; weights must be stored in the model")
        })?;
        if data.len() != n {
            return Err(format!(
                "weight tensor {i} holds {} bytes for shape {dims:?} ({n} values)",
                data.len()
            ));
        }
        let t = self.tensor(i)?;
        let q = t
            .quantization()
            .ok_or_else(|| format!("weight tensor {i} has no quantisation parameters"))?;
        let scales: Vec<f32> = q.scale().map(|s| s.iter().collect()).unwrap_or_default();
        let zps: Vec<i64> = q
            .zero_point()
            .map(|z| z.iter().collect())
            .unwrap_or_default();
        if zps.iter().any(|&z| z != 0) {
            return Err(format!(
                "weight tensor {i} has a non-zero zero point; int8 weights must be symmetric (TF Lite's default)"
            ));
        }
        let scales = match scales.len() {
            1 => vec![scales[0]; channels],
            c if c == channels => {
                if q.quantized_dimension() != axis {
                    return Err(format!(
                        "weight tensor {i} is quantised per channel on dimension {}, expected dimension {axis}",
                        q.quantized_dimension()
                    ));
                }
                scales
            }
            c => {
                return Err(format!(
                    "weight tensor {i} has {c} scales for {channels} output channels"
                ))
            }
        };
        Ok((data.iter().map(|&b| b as i8).collect(), scales))
    }

    /// The values of a constant INT32 or INT64 tensor (paddings, axes).
    fn ints(&self, i: i32, role: &str) -> Result<Vec<i64>, String> {
        let t = self.tensor(i)?;
        let data = self.data(i)?.ok_or_else(|| {
            format!("the {role} (tensor {i}) is not a constant; it must be stored in the model")
        })?;
        match t.type_() {
            fb::TensorType::INT32 => Ok(data
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect()),
            fb::TensorType::INT64 => Ok(data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect()),
            ty => Err(format!(
                "the {role} (tensor {i}) is {}, expected INT32 or INT64",
                type_name(ty)
            )),
        }
    }

    /// An int32 bias of `channels` values (zeros when the operator has none). Its quantisation
    /// parameters are ignored, as TF Lite Micro ignores them.
    fn bias(&self, i: Option<i32>, channels: usize) -> Result<Vec<i32>, String> {
        let Some(i) = i.filter(|&i| i >= 0) else {
            return Ok(vec![0; channels]);
        };
        let t = self.tensor(i)?;
        if t.type_() != fb::TensorType::INT32 {
            return Err(format!(
                "bias tensor {i} is {}, expected INT32 (int8 activations)",
                type_name(t.type_())
            ));
        }
        let data = self
            .data(i)?
            .ok_or_else(|| format!("bias tensor {i} is not a constant"))?;
        if data.len() != channels * 4 {
            return Err(format!(
                "bias tensor {i} holds {} bytes for {channels} channels",
                data.len()
            ));
        }
        Ok(data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn run(self) -> Result<Imported, ImportError> {
        let g = &self.graph;
        let model_err = |s: String| ImportError::Model(s);
        let inputs: Vec<i32> = g.inputs().map(|v| v.iter().collect()).unwrap_or_default();
        let outputs: Vec<i32> = g.outputs().map(|v| v.iter().collect()).unwrap_or_default();
        if inputs.len() != 1 || outputs.len() != 1 {
            return Err(model_err(format!(
                "the model has {} inputs and {} outputs; one input and one output are supported",
                inputs.len(),
                outputs.len()
            )));
        }
        let ops: Vec<fb::Operator<'_>> = g
            .operators()
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        let mut notes = Vec::new();

        // The input, with an edge QUANTIZE folded in.
        let mut input_id = inputs[0];
        let input_t = self.tensor(input_id).map_err(model_err)?;
        let mut skip = vec![false; ops.len()];
        let first_quantize = ops.iter().position(|op| {
            self.code(op).0 == fb::BuiltinOperator::QUANTIZE
                && op
                    .inputs()
                    .is_some_and(|v| v.len() == 1 && v.get(0) == input_id)
        });
        let (input_type, input_quant) = match input_t.type_() {
            fb::TensorType::INT8 => (InputType::I8, self.act_quant(input_id).map_err(model_err)?),
            fb::TensorType::UINT8 => {
                let q = self.act_quant(input_id).map_err(model_err)?;
                let Some(j) = first_quantize else {
                    return Err(model_err("the uint8 input is not followed by a QUANTIZE to int8; convert with int8 activations".into()));
                };
                let out = ops[j].outputs().map(|v| v.get(0)).unwrap_or(-1);
                let oq = self.act_quant(out).map_err(model_err)?;
                if !exact_u8_edge(q, oq) {
                    return Err(ImportError::Op {
                        index: j,
                        op: "QUANTIZE".into(),
                        message: format!(
                            "converts the uint8 input (scale {}, zero point {}) to int8 with scale {}, zero point {}; only the exact conversion (same scale, zero point - 128) is supported",
                            q.scale, q.zero_point, oq.scale, oq.zero_point
                        ),
                    });
                }
                skip[j] = true;
                input_id = out;
                notes.push(format!(
                    "the uint8 input and its QUANTIZE (operator {j}) become the model's u8 input"
                ));
                (InputType::U8, q)
            }
            fb::TensorType::FLOAT32 => {
                let Some(j) = first_quantize else {
                    return Err(model_err("the model's input is float32 and not quantised: this is a float model; convert it with full integer quantisation (int8)".into()));
                };
                let out = ops[j].outputs().map(|v| v.get(0)).unwrap_or(-1);
                self.expect_type(out, fb::TensorType::INT8, "QUANTIZE output")
                    .map_err(model_err)?;
                skip[j] = true;
                input_id = out;
                notes.push(format!(
                    "the float32 input's QUANTIZE (operator {j}) is left to the caller: the model takes the int8 values it would produce"
                ));
                (InputType::I8, self.act_quant(out).map_err(model_err)?)
            }
            t => {
                return Err(model_err(format!(
                    "the model input is {}; int8 or uint8 input is supported",
                    type_name(t)
                )))
            }
        };
        let input_shape = to_shape(&self.dims(input_id).map_err(model_err)?)
            .map_err(|m| model_err(format!("model input: {m}")))?;
        let mut b = ModelBuilder::new(input_type, input_shape, input_quant)
            .map_err(|e| model_err(e.to_string()))?;
        // The builder's tensor for each TF Lite tensor computed so far.
        let mut known: HashMap<i32, TensorId> = HashMap::new();
        known.insert(input_id, 0);
        let mut node_tensors = Vec::new();

        // The output, with an edge DEQUANTIZE folded away.
        let mut output_id = outputs[0];
        let mut file_output = FileOutput::Int8;
        if let Some(j) = ops.iter().position(|op| {
            self.code(op).0 == fb::BuiltinOperator::DEQUANTIZE
                && op
                    .outputs()
                    .is_some_and(|v| v.len() == 1 && v.get(0) == output_id)
        }) {
            let src = ops[j].inputs().map(|v| v.get(0)).unwrap_or(-1);
            skip[j] = true;
            output_id = src;
            file_output = FileOutput::Float32;
            notes.push(format!(
                "the final DEQUANTIZE (operator {j}) is left to the caller: the model returns the int8 values it reads"
            ));
        } else if let Some(j) = ops.iter().position(|op| {
            self.code(op).0 == fb::BuiltinOperator::QUANTIZE
                && op
                    .outputs()
                    .is_some_and(|v| v.len() == 1 && v.get(0) == output_id)
        }) {
            // A uint8 output (the converter's `inference_output_type = tf.uint8`): the same
            // scale, the zero point + 128, so TF Lite's uint8 value is the int8 one + 128.
            let src = ops[j].inputs().map(|v| v.get(0)).unwrap_or(-1);
            let op_err = |message: String| ImportError::Op {
                index: j,
                op: "QUANTIZE".into(),
                message,
            };
            self.expect_type(output_id, fb::TensorType::UINT8, "the model output")
                .map_err(op_err)?;
            self.expect_type(src, fb::TensorType::INT8, "the final QUANTIZE's input")
                .map_err(op_err)?;
            let (q, oq) = (
                self.act_quant(src).map_err(op_err)?,
                self.act_quant(output_id).map_err(op_err)?,
            );
            if !exact_u8_edge(oq, q) {
                return Err(op_err(format!(
                    "converts the int8 output (scale {}, zero point {}) to uint8 with scale {}, zero point {}; only the exact conversion (same scale, zero point + 128) is supported at the output; convert with int8 output (`inference_output_type = tf.int8`)",
                    q.scale, q.zero_point, oq.scale, oq.zero_point
                )));
            }
            skip[j] = true;
            output_id = src;
            file_output = FileOutput::Uint8;
            notes.push(format!(
                "the final QUANTIZE to uint8 (operator {j}) is left to the caller: the model returns the int8 values it reads (TF Lite's uint8 output is each value + 128)"
            ));
        }

        for (index, op) in ops.iter().enumerate() {
            if skip[index] {
                continue;
            }
            let (code, custom) = self.code(op);
            let name = if code == fb::BuiltinOperator::CUSTOM {
                format!("CUSTOM {:?}", custom.unwrap_or(""))
            } else {
                op_name(code)
            };
            let fail = |message: String| ImportError::Op {
                index,
                op: name.clone(),
                message,
            };
            let ins: Vec<i32> = op.inputs().map(|v| v.iter().collect()).unwrap_or_default();
            let outs: Vec<i32> = op.outputs().map(|v| v.iter().collect()).unwrap_or_default();
            if outs.len() != 1 {
                return Err(fail(format!(
                    "has {} outputs; one is supported",
                    outs.len()
                )));
            }
            let out = outs[0];
            let act_in = |k: usize| -> Result<TensorId, ImportError> {
                let t = *ins
                    .get(k)
                    .ok_or_else(|| fail(format!("has no input {k}")))?;
                match known.get(&t) {
                    Some(id) => Ok(*id),
                    None => {
                        let constant = self.data(t).ok().flatten().is_some();
                        Err(fail(if constant {
                            format!("input {k} (tensor {t}) is a constant; constant operands are not supported for this operator")
                        } else {
                            format!("input {k} (tensor {t}) is not computed before this operator (a graph input other than the model's, or operators out of order)")
                        }))
                    }
                }
            };
            self.expect_type(out, fb::TensorType::INT8, "output")
                .map_err(&fail)?;
            let oq = self.act_quant(out).map_err(&fail)?;
            let oshape = to_shape(&self.dims(out).map_err(&fail)?).map_err(&fail)?;
            let tname = self
                .tensor(out)
                .ok()
                .and_then(|t| t.name())
                .unwrap_or("")
                .to_string();
            let node_name = if tname.is_empty() {
                format!("{name} {index}")
            } else {
                tname
            };
            let (op_ir, inputs): (Op, Vec<TensorId>) = match code {
                fb::BuiltinOperator::CONV_2D | fb::BuiltinOperator::DEPTHWISE_CONV_2D => {
                    let x = act_in(0)?;
                    self.expect_type(ins[0], fb::TensorType::INT8, "input").map_err(&fail)?;
                    let filter = *ins.get(1).ok_or_else(|| fail("has no filter".into()))?;
                    let fdims = self.dims(filter).map_err(&fail)?;
                    let [f0, kh, kw, f3] = fdims[..] else {
                        return Err(fail(format!("filter shape {fdims:?} is not rank 4")));
                    };
                    let (kh, kw) = (kh.max(0) as usize, kw.max(0) as usize);
                    let xs = b.shape(x).unwrap_or(input_shape);
                    let depthwise = code == fb::BuiltinOperator::DEPTHWISE_CONV_2D;
                    let (padding, stride, dil, act) = if depthwise {
                        let o = op.builtin_options_as_depthwise_conv_2_doptions().ok_or_else(|| fail("has no DepthwiseConv2DOptions".into()))?;
                        (o.padding(), (o.stride_h(), o.stride_w()), (o.dilation_h_factor(), o.dilation_w_factor()), o.fused_activation_function())
                    } else {
                        let o = op.builtin_options_as_conv_2_doptions().ok_or_else(|| fail("has no Conv2DOptions".into()))?;
                        (o.padding(), (o.stride_h(), o.stride_w()), (o.dilation_h_factor(), o.dilation_w_factor()), o.fused_activation_function())
                    };
                    let padding = padding_of(padding).map_err(&fail)?;
                    let stride = one_stride(stride, xs, [kh, kw], padding).map_err(&fail)?;
                    if dil != (1, 1) {
                        return Err(fail(format!("has dilation {}x{}; only dilation 1 is supported", dil.0, dil.1)));
                    }
                    let activation = activation_of(act).map_err(&fail)?;
                    let oc = if depthwise { f3.max(0) as usize } else { f0.max(0) as usize };
                    let (weights, weight_scales) = self
                        .weights(filter, oc, if depthwise { 3 } else { 0 })
                        .map_err(&fail)?;
                    let bias = self.bias(ins.get(2).copied(), oc).map_err(&fail)?;
                    let conv = ConvParams {
                        kernel: [kh, kw],
                        stride,
                        padding,
                        activation,
                        weights,
                        weight_scales,
                        bias,
                    };
                    if depthwise {
                        if f0 != 1 || xs.c == 0 || oc % xs.c != 0 {
                            return Err(fail(format!("filter shape {fdims:?} does not fit an input of {} channels", xs.c)));
                        }
                        if xs.c == 1 {
                            // One input channel: output channel `o` is the sum over the window
                            // of `x * w[ky][kx][o]`, which is a convolution's arithmetic (the
                            // same sums, bias and per-channel requantisation, so the same
                            // values), and the convolution kernels run it several times
                            // faster. Filter `[1][kh][kw][oc]` becomes `[oc][kh][kw][1]`.
                            let taps = kh * kw;
                            let mut conv = conv;
                            conv.weights = (0..oc * taps)
                                .map(|i| conv.weights[(i % taps) * oc + i / taps])
                                .collect();
                            notes.push(format!(
                                "operator {index} (DEPTHWISE_CONV_2D) reads one channel: imported as a convolution with {oc} output channels (the same values; the convolution kernels are faster)"
                            ));
                            (Op::Conv2d { out_channels: oc, conv }, vec![x])
                        } else {
                            (Op::DepthwiseConv2d { multiplier: oc / xs.c, conv }, vec![x])
                        }
                    } else {
                        if f3.max(0) as usize != xs.c {
                            return Err(fail(format!(
                                "filter shape {fdims:?} reads {f3} channels from an input of {}; grouped convolutions are not supported",
                                xs.c
                            )));
                        }
                        (Op::Conv2d { out_channels: oc, conv }, vec![x])
                    }
                }
                fb::BuiltinOperator::FULLY_CONNECTED => {
                    let x = act_in(0)?;
                    self.expect_type(ins[0], fb::TensorType::INT8, "input").map_err(&fail)?;
                    let o = op.builtin_options_as_fully_connected_options().ok_or_else(|| fail("has no FullyConnectedOptions".into()))?;
                    if o.weights_format() != fb::FullyConnectedOptionsWeightsFormat::DEFAULT {
                        return Err(fail("uses shuffled weights; only the default weight format is supported".into()));
                    }
                    let activation = activation_of(o.fused_activation_function()).map_err(&fail)?;
                    let filter = *ins.get(1).ok_or_else(|| fail("has no weights".into()))?;
                    let fdims = self.dims(filter).map_err(&fail)?;
                    let [out_f, in_f] = fdims[..] else {
                        return Err(fail(format!("weight shape {fdims:?} is not rank 2")));
                    };
                    let n = b.shape(x).map_or(0, |s| s.elements());
                    if in_f.max(0) as usize != n {
                        return Err(fail(format!("weights take {in_f} inputs, the input has {n} values")));
                    }
                    let out_features = out_f.max(0) as usize;
                    let (weights, weight_scales) = self.weights(filter, out_features, 0).map_err(&fail)?;
                    let bias = self.bias(ins.get(2).copied(), out_features).map_err(&fail)?;
                    (
                        Op::FullyConnected { out_features, activation, weights, weight_scales, bias },
                        vec![x],
                    )
                }
                fb::BuiltinOperator::AVERAGE_POOL_2D | fb::BuiltinOperator::MAX_POOL_2D => {
                    let x = act_in(0)?;
                    let o = op.builtin_options_as_pool_2_doptions().ok_or_else(|| fail("has no Pool2DOptions".into()))?;
                    if activation_of(o.fused_activation_function()).map_err(&fail)? != Activation::None {
                        return Err(fail("has a fused activation; pools with a fused activation are not supported".into()));
                    }
                    let size = [o.filter_height().max(0) as usize, o.filter_width().max(0) as usize];
                    let padding = padding_of(o.padding()).map_err(&fail)?;
                    let xs = b.shape(x).unwrap_or(input_shape);
                    let p = PoolParams {
                        size,
                        stride: one_stride((o.stride_h(), o.stride_w()), xs, size, padding).map_err(&fail)?,
                        padding,
                    };
                    let op_ir = if code == fb::BuiltinOperator::MAX_POOL_2D {
                        Op::MaxPool2d(p)
                    } else {
                        Op::AvgPool2d(p)
                    };
                    (op_ir, vec![x])
                }
                fb::BuiltinOperator::RESHAPE | fb::BuiltinOperator::SQUEEZE => {
                    let x = act_in(0)?;
                    (Op::Reshape { shape: oshape }, vec![x])
                }
                fb::BuiltinOperator::SOFTMAX => {
                    let x = act_in(0)?;
                    let o = op.builtin_options_as_softmax_options().ok_or_else(|| fail("has no SoftmaxOptions".into()))?;
                    (Op::Softmax { beta: o.beta() }, vec![x])
                }
                fb::BuiltinOperator::ADD => {
                    let (x, y) = (act_in(0)?, act_in(1)?);
                    let o = op.builtin_options_as_add_options().ok_or_else(|| fail("has no AddOptions".into()))?;
                    let activation = activation_of(o.fused_activation_function()).map_err(&fail)?;
                    let (xs, ys) = (b.shape(x), b.shape(y));
                    if xs != ys {
                        return Err(fail("adds tensors of different shapes; broadcasting is not supported".into()));
                    }
                    (Op::Add { activation }, vec![x, y])
                }
                fb::BuiltinOperator::PAD | fb::BuiltinOperator::PADV2 => {
                    let x = act_in(0)?;
                    let rank = self.dims(ins[0]).map_err(&fail)?.len();
                    let pt = *ins.get(1).ok_or_else(|| fail("has no paddings".into()))?;
                    let p = self.ints(pt, "paddings").map_err(&fail)?;
                    if rank != 4 || p.len() != 8 {
                        return Err(fail(format!("pads a rank-{rank} tensor with {} values; rank-4 NHWC tensors are supported", p.len())));
                    }
                    if p[0] != 0 || p[1] != 0 || p[6] != 0 || p[7] != 0 {
                        return Err(fail(format!("pads the batch or channel dimension (paddings {p:?}); only height and width padding is supported")));
                    }
                    if p[2..6].iter().any(|&v| !(0..=1 << 16).contains(&v)) {
                        return Err(fail(format!("has paddings {p:?}; they must be between 0 and 65536")));
                    }
                    let value = match ins.get(2).filter(|&&t| t >= 0) {
                        None => i8::try_from(oq.zero_point).map_err(|_| fail("has an output zero point outside int8".into()))?,
                        Some(&t) => {
                            self.expect_type(t, fb::TensorType::INT8, "constant value").map_err(&fail)?;
                            match self.data(t).map_err(&fail)? {
                                Some(&[v]) => v as i8,
                                _ => return Err(fail(format!("constant value (tensor {t}) is not one stored int8 value"))),
                            }
                        }
                    };
                    let u = |v: i64| v as usize;
                    (Op::Pad { top: u(p[2]), bottom: u(p[3]), left: u(p[4]), right: u(p[5]), value }, vec![x])
                }
                fb::BuiltinOperator::CONCATENATION => {
                    let o = op.builtin_options_as_concatenation_options().ok_or_else(|| fail("has no ConcatenationOptions".into()))?;
                    if activation_of(o.fused_activation_function()).map_err(&fail)? != Activation::None {
                        return Err(fail("has a fused activation; a concatenation with one is not supported".into()));
                    }
                    let rank = self.dims(out).map_err(&fail)?.len() as i32;
                    let axis = if o.axis() < 0 { o.axis() + rank } else { o.axis() };
                    if axis != rank - 1 {
                        return Err(fail(format!("joins along axis {} of a rank-{rank} tensor; only the last (channel) axis is supported", o.axis())));
                    }
                    let xs = (0..ins.len()).map(&act_in).collect::<Result<Vec<_>, _>>()?;
                    (Op::Concat, xs)
                }
                fb::BuiltinOperator::MEAN => {
                    let x = act_in(0)?;
                    let rank = self.dims(ins[0]).map_err(&fail)?.len() as i64;
                    let at = *ins.get(1).ok_or_else(|| fail("has no axes".into()))?;
                    let mut axes: Vec<i64> = self
                        .ints(at, "axes")
                        .map_err(&fail)?
                        .into_iter()
                        .map(|a| if a < 0 { a + rank } else { a })
                        .collect();
                    axes.sort_unstable();
                    axes.dedup();
                    if rank != 4 || axes != [1, 2] {
                        return Err(fail(format!("averages over axes {axes:?} of a rank-{rank} tensor; only the mean over height and width (axes 1 and 2 of NHWC) is supported")));
                    }
                    // keep_dims changes only the stated output shape (checked below).
                    (Op::Mean, vec![x])
                }
                fb::BuiltinOperator::QUANTIZE | fb::BuiltinOperator::DEQUANTIZE => {
                    return Err(fail("appears inside the graph; QUANTIZE and DEQUANTIZE are supported only at the model's input and output".into()));
                }
                _ => {
                    return Err(fail(
                        "is not supported; supported: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE_POOL_2D, MAX_POOL_2D, RESHAPE, SQUEEZE, SOFTMAX, ADD, PAD, PADV2, CONCATENATION, MEAN, and QUANTIZE / DEQUANTIZE at the edges. Replace the operator in the model, or open an issue with the model".into(),
                    ))
                }
            };
            let id = b
                .add(node_name, op_ir, &inputs, oq)
                .map_err(|e| fail(strip_node_prefix(&e.to_string())))?;
            let got = b.shape(id).unwrap_or(oshape);
            if got != oshape {
                return Err(fail(format!(
                    "computes a {got} output, but the file says its output tensor {out} is {oshape}"
                )));
            }
            known.insert(out, id);
            node_tensors.push(out as usize);
        }
        match known.get(&output_id) {
            Some(id) if *id == b.last() && *id > 0 => {}
            Some(_) => {
                return Err(model_err(format!(
                    "the model output (tensor {output_id}) is not computed by the last operator; models whose last operators do not lead to the output are not supported"
                )))
            }
            None => {
                return Err(model_err(format!(
                    "the model output (tensor {output_id}) is computed by no operator"
                )))
            }
        }
        let model = b.finish().map_err(|e| model_err(e.to_string()))?;
        Ok(Imported {
            model,
            tensors: node_tensors,
            input_tensor: input_id as usize,
            notes,
            output: file_output,
        })
    }

    fn code(&self, op: &fb::Operator<'_>) -> (fb::BuiltinOperator, Option<&'a str>) {
        self.codes
            .get(op.opcode_index() as usize)
            .copied()
            .unwrap_or((fb::BuiltinOperator(-1), None))
    }
}

/// The builder names the node by its IR index; the import error names the operator instead.
fn strip_node_prefix(s: &str) -> String {
    match s.split_once("): ") {
        Some((head, rest)) if head.starts_with("node ") => rest.to_string(),
        _ => s.to_string(),
    }
}

fn padding_of(p: fb::Padding) -> Result<Padding, String> {
    match p {
        fb::Padding::SAME => Ok(Padding::Same),
        fb::Padding::VALID => Ok(Padding::Valid),
        p => Err(format!("has padding {}; SAME or VALID are supported", p.0)),
    }
}

/// True when a uint8 tensor quantised `u8` and an int8 tensor quantised `i8` hold the same real
/// values (the same scale, the zero point 128 apart): the only QUANTIZE at the model's edges
/// that folds away exactly, `uint8 = int8 + 128`.
fn exact_u8_edge(u8: QParams, i8: QParams) -> bool {
    u8.scale == i8.scale && i8.zero_point.checked_add(128) == Some(u8.zero_point)
}

/// One stride for both axes of a window over `x`: the stride itself where they are equal, else
/// the smallest stride that gives both axes the windows (count and padding) their own strides give. An
/// axis with a single window has no use for its stride: Keras's pools default to a stride equal
/// to the window, so a pool over a whole non-square map (MLPerf Tiny's DS-CNN: 25x5) says 25x5.
fn one_stride(
    (h, w): (i32, i32),
    x: Shape,
    [kh, kw]: [usize; 2],
    padding: Padding,
) -> Result<usize, String> {
    let err = || {
        format!("has stride {h}x{w}; only equal, positive strides are supported (or strides that do not matter: one window along an axis)")
    };
    if h <= 0 || w <= 0 {
        return Err(err());
    }
    let (h, w) = (h as usize, w as usize);
    if h == w {
        return Ok(h);
    }
    let windows = |sh: usize, sw: usize| {
        (
            tinynas_model::ir::window_output(x.h, kh, sh, padding),
            tinynas_model::ir::window_output(x.w, kw, sw, padding),
        )
    };
    let want = windows(h, w);
    // The smallest that does (our strides go up to 8).
    [1, h.min(w), h.max(w)]
        .into_iter()
        .find(|&s| want.0.is_some() && want.1.is_some() && windows(s, s) == want)
        .ok_or_else(err)
}

fn activation_of(a: fb::ActivationFunctionType) -> Result<Activation, String> {
    match a {
        fb::ActivationFunctionType::NONE => Ok(Activation::None),
        fb::ActivationFunctionType::RELU => Ok(Activation::Relu),
        fb::ActivationFunctionType::RELU6 => Ok(Activation::Relu6),
        a => Err(format!(
            "has the fused activation {}; NONE, RELU and RELU6 are supported",
            a.variant_name().unwrap_or("?")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_stride_takes_a_stride_no_second_window_uses() {
        let s = |h, w, c| Shape::new(h, w, c);
        assert_eq!(one_stride((2, 2), s(8, 8, 1), [3, 3], Padding::Same), Ok(2));
        // A pool over the whole 25x5 map with Keras's stride 25x5 (MLPerf Tiny's DS-CNN).
        assert_eq!(
            one_stride((25, 5), s(25, 5, 64), [25, 5], Padding::Valid),
            Ok(1)
        );
        // A 3x1 pool with stride 3x1 over a map one column wide (TF Lite Micro's magic_wand).
        assert_eq!(
            one_stride((3, 1), s(42, 1, 16), [3, 1], Padding::Same),
            Ok(3)
        );
        // Two windows along each axis at different strides: refused.
        let e = one_stride((2, 1), s(4, 4, 1), [2, 2], Padding::Valid).unwrap_err();
        assert!(e.contains("only equal, positive strides"), "{e}");
        assert!(one_stride((0, 0), s(4, 4, 1), [1, 1], Padding::Valid).is_err());
    }
}
