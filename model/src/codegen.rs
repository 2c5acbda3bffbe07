//! Rust code generation: a [`Program`] becomes one type with constants and a straight-line
//! `predict` that calls the runtime's kernels through `::tinynas_runtime::__private`, with weights
//! as statics (in flash) and every arena offset a constant.

use crate::error::Error;
use crate::ir::{InputType, Model};
use crate::lower::{lower, ConvDims, Kernel, OutputQuant, Program, Step, Weights};
use crate::plan::Location;
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, ToTokens};
use tinynas_kernels::fast;
use tinynas_kernels::fast::dw_groups::groups_take;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Name of the generated type.
    pub name: Ident,
    /// Path of the runtime crate, `::tinynas_runtime` unless the caller renames it.
    pub runtime: TokenStream,
    /// A file to `include_bytes!` so that cargo rebuilds when it changes.
    pub track_file: Option<String>,
}

impl Options {
    /// Options for a type called `name` (which must be a valid identifier).
    pub fn new(name: Ident) -> Self {
        Options {
            name,
            runtime: default_runtime(),
            track_file: None,
        }
    }
}

/// The runtime crate's path in the code [`source`] writes.
fn default_runtime() -> TokenStream {
    quote!(::tinynas_runtime)
}

fn lit(v: usize) -> Literal {
    Literal::usize_unsuffixed(v)
}

fn i32s(v: &[i32]) -> TokenStream {
    let items = v.iter().map(|&x| Literal::i32_unsuffixed(x));
    quote!([#(#items),*])
}

/// `bytes` as a Rust byte-string literal (`b"..."`), for generated source that holds data.
pub fn byte_string(bytes: &[u8]) -> String {
    Literal::byte_string(bytes).to_string()
}

/// `bytes` as an int8 array expression for source beside [`source`]'s (a bench firmware's int8
/// inputs): the call to the runtime's `i8s` that the weights are made with.
pub fn i8s_source(bytes: &[u8]) -> String {
    let rt = default_runtime();
    let v: Vec<i8> = bytes.iter().map(|&b| b as i8).collect();
    i8s(&quote!(#rt::__private), &v).to_string()
}

/// An int8 array as one byte-string literal that the runtime's `const fn i8s` turns into
/// `[i8; N]` at compile time. A list `[65, -12, ...]` is an expression per value that rustc
/// parses, types and checks: a bench firmware of a 92,347-parameter model peaked at 208.5 MiB of
/// rustc (one literal a layer: 185.9 MiB), person_detect's at 238.2 MiB (173.9 MiB). The bytes in
/// flash are the same.
fn i8s(p: &TokenStream, v: &[i8]) -> TokenStream {
    let bytes: Vec<u8> = v.iter().map(|&x| x as u8).collect();
    let lit = Literal::byte_string(&bytes);
    quote!(#p::i8s(#lit))
}

/// A struct literal `path { field: value, ... }` from a Debug-free list of fields.
fn fields(path: TokenStream, items: &[(&str, TokenStream)]) -> TokenStream {
    let f = items.iter().map(|(n, v)| {
        let n = Ident::new(n, Span::call_site());
        quote!(#n: #v)
    });
    quote!(#path { #(#f),* })
}

fn u(v: usize) -> TokenStream {
    lit(v).into_token_stream()
}

fn i(v: i32) -> TokenStream {
    Literal::i32_unsuffixed(v).into_token_stream()
}

fn conv_dims(p: &TokenStream, d: &ConvDims) -> TokenStream {
    fields(
        quote!(#p::ConvDims),
        &[
            ("in_h", u(d.in_h)),
            ("in_w", u(d.in_w)),
            ("in_c", u(d.in_c)),
            ("out_h", u(d.out_h)),
            ("out_w", u(d.out_w)),
            ("out_c", u(d.out_c)),
            ("k_h", u(d.k_h)),
            ("k_w", u(d.k_w)),
            ("stride", u(d.stride)),
            ("pad_top", u(d.pad_top)),
            ("pad_left", u(d.pad_left)),
        ],
    )
}

fn output_quant(p: &TokenStream, q: &OutputQuant) -> TokenStream {
    fields(
        quote!(#p::OutputQuant),
        &[
            ("input_offset", i(q.input_offset)),
            ("output_offset", i(q.output_offset)),
            ("act_min", i(q.act_min)),
            ("act_max", i(q.act_max)),
        ],
    )
}

/// Statics for a layer's weights; returns the four static names.
fn weight_statics(out: &mut TokenStream, p: &TokenStream, n: usize, w: &Weights) -> [Ident; 4] {
    let names = [
        format_ident!("W{}", n),
        format_ident!("B{}", n),
        format_ident!("M{}", n),
        format_ident!("S{}", n),
    ];
    let [wn, bn, mn, sn] = &names;
    let (nw, nc) = (lit(w.kernel_weights.len()), lit(w.bias.len()));
    let (wv, bv, mv, sv) = (
        i8s(p, &w.kernel_weights),
        i32s(&w.folded_bias),
        i32s(&w.multiplier),
        i32s(&w.shift),
    );
    out.extend(quote! {
        // `i8s` runs at compile time; a tensor of 2 million weights takes long enough there
        // (about 2 s) for rustc's deny-by-default lint, 1 million does not.
        #[allow(long_running_const_eval)]
        static #wn: [i8; #nw] = #wv;
        static #bn: [i32; #nc] = #bv;
        static #mn: [i32; #nc] = #mv;
        static #sn: [i32; #nc] = #sv;
    });
    names
}

/// Splits the arena for one step: `y` (the output) and `scratch` (if the kernel has any) as
/// mutable slices, the bytes between them as read-only gaps `g0`, `g1`, ...; returns the `let`s and
/// each input's slice expression (inside one gap: the planner keeps inputs apart from the output
/// and the scratch). Every offset is a constant, so no bound is checked at run time.
fn split_arena(step: &Step, arena: usize) -> (TokenStream, Vec<TokenStream>) {
    let mut muts = vec![(step.output.0, step.output.1, format_ident!("y"))];
    if let Some((offset, len)) = step.scratch {
        muts.push((offset, len, format_ident!("scratch")));
    }
    muts.sort_by_key(|m| m.0);
    let mut lets = TokenStream::new();
    let mut gaps = Vec::new(); // (start, end, name)
    let mut at = 0usize;
    lets.extend(quote!(let rest: &mut [i8] = &mut arena[..];));
    for (k, (offset, len, name)) in muts.iter().enumerate() {
        let g = format_ident!("g{}", k);
        let (gap, l) = (lit(offset.saturating_sub(at)), lit(*len));
        lets.extend(quote! {
            let (#g, rest) = rest.split_at_mut(#gap);
            let (#name, rest) = rest.split_at_mut(#l);
        });
        gaps.push((at, *offset, g));
        at = offset + len;
    }
    let g = format_ident!("g{}", muts.len());
    lets.extend(quote!(let #g = rest;));
    gaps.push((at, arena, g));
    let names: Vec<&Ident> = gaps.iter().map(|g| &g.2).collect();
    lets.extend(quote!(let (#(#names),*) = (#(&*#names),*);));
    let srcs = step
        .inputs
        .iter()
        .map(|&loc| match loc {
            Location::Input => quote!(&input[..]),
            Location::Arena { offset, len } => {
                let (start, _, g) = gaps
                    .iter()
                    .find(|(s, e, _)| *s <= offset && offset + len <= *e)
                    .unwrap_or(&gaps[0]);
                let (a, b) = (lit(offset - start), lit(offset - start + len));
                quote!(&#g[#a..#b])
            }
        })
        .collect();
    (lets, srcs)
}

/// What `model!(name, "...")` expands to, as Rust source for a file that `include!`s it: the
/// bench firmware gets its model this way, so that it builds no proc macro (no `syn`, no model
/// crate for the host). `name` is a Rust identifier.
pub fn source(model: &Model, name: &str) -> Result<String, Error> {
    let ident = type_ident(name)?;
    Ok(expand(model, &Options::new(ident))?.to_string())
}

/// `name` as an identifier, or an error (never `Ident::new`'s panic).
fn type_ident(name: &str) -> Result<Ident, Error> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
        && name != "_";
    if !ok {
        return Err(Error::Model(format!("{name:?} is not a Rust identifier")));
    }
    Ok(Ident::new(name, Span::call_site()))
}

/// Generates the model type.
pub fn expand(model: &Model, opts: &Options) -> Result<TokenStream, Error> {
    let program = lower(model)?;
    Ok(emit(model, &program, opts))
}

fn emit(model: &Model, program: &Program, opts: &Options) -> TokenStream {
    let rt = &opts.runtime;
    let p = quote!(#rt::__private);
    let name = &opts.name;
    let arena_bytes = program.plan.arena_bytes;
    let mut statics = TokenStream::new();
    let mut steps = TokenStream::new();

    for (n, step) in program.steps.iter().enumerate() {
        let (split, srcs) = split_arena(step, program.plan.arena_bytes);
        let x = srcs.first().cloned().unwrap_or_else(|| quote!(&[]));
        let layer = format_ident!("L{}", n);
        let call = match &step.kernel {
            Kernel::QuantizeU8 => quote!(#p::quantize_u8(&input[..], y);),
            Kernel::Conv2d { dims, w } | Kernel::DepthwiseConv2d { dims, w } => {
                let [wn, bn, mn, sn] = weight_statics(&mut statics, &p, n, w);
                let (d, q, narrow) = (conv_dims(&p, dims), output_quant(&p, &w.quant), w.narrow);
                let bound = w.acc_bound;
                statics.extend(quote! {
                    static #layer: #p::fast::FastConv<'static> = #p::fast::FastConv {
                        weights: &#wn, bias: &#bn, multiplier: &#mn, shift: &#sn, dims: #d, quant: #q,
                        narrow: #narrow, acc_bound: #bound,
                    };
                });
                match &step.kernel {
                    Kernel::Conv2d { .. } => {
                        let raw = step.inputs.first() == Some(&Location::Input)
                            && model.input_type == InputType::U8;
                        // A narrow 3x3 layer over one channel: the kernels' own copy for it.
                        let one = fast::one_channel_takes(dims) && narrow;
                        // A pointwise layer: the entry without the general path.
                        let pointwise = fast::pointwise_takes(&w.fast(*dims));
                        let f = match (raw, one, pointwise) {
                            (true, true, _) => quote!(conv2d_u8_one_channel),
                            (true, false, _) => quote!(conv2d_u8),
                            (false, true, _) => quote!(conv2d_one_channel),
                            (false, false, true) => quote!(conv2d_pointwise),
                            (false, false, false) => quote!(conv2d),
                        };
                        quote!(#p::fast::#f(#x, y, scratch, &#layer);)
                    }
                    // The narrowest entry that takes the layer: what is called is what is compiled.
                    _ => match (groups_take(dims), step.scratch.is_some()) {
                        (true, true) => {
                            quote!(#p::fast::depthwise_conv2d_groups(#x, y, scratch, &#layer);)
                        }
                        (true, false) => {
                            quote!(#p::fast::depthwise_conv2d_groups(#x, y, &mut [], &#layer);)
                        }
                        (false, true) => {
                            quote!(#p::fast::depthwise_conv2d_rows(#x, y, scratch, &#layer);)
                        }
                        (false, false) => quote!(#p::fast::depthwise_conv2d(#x, y, &#layer);),
                    },
                }
            }
            Kernel::FullyConnected {
                in_features,
                out_features,
                w,
            } => {
                let [wn, bn, mn, sn] = weight_statics(&mut statics, &p, n, w);
                let q = output_quant(&p, &w.quant);
                let (fi, fo) = (lit(*in_features), lit(*out_features));
                statics.extend(quote! {
                    static #layer: #p::fast::FastDense<'static> = #p::fast::FastDense {
                        weights: &#wn, bias: &#bn, multiplier: &#mn, shift: &#sn,
                        in_features: #fi, out_features: #fo, quant: #q,
                    };
                });
                quote!(#p::fast::fully_connected(#x, y, &#layer);)
            }
            Kernel::MaxPool2d(d) | Kernel::AvgPool2d(d) => {
                let dims = fields(
                    quote!(#p::PoolDims),
                    &[
                        ("in_h", u(d.in_h)),
                        ("in_w", u(d.in_w)),
                        ("channels", u(d.channels)),
                        ("out_h", u(d.out_h)),
                        ("out_w", u(d.out_w)),
                        ("k_h", u(d.k_h)),
                        ("k_w", u(d.k_w)),
                        ("stride", u(d.stride)),
                        ("pad_top", u(d.pad_top)),
                        ("pad_left", u(d.pad_left)),
                    ],
                );
                let f = if matches!(step.kernel, Kernel::MaxPool2d(_)) {
                    quote!(fast::max_pool2d)
                } else {
                    quote!(fast::avg_pool2d)
                };
                quote!(#p::#f(#x, y, &#dims);)
            }
            Kernel::GlobalAveragePool(m) => {
                let params = fields(
                    quote!(#p::MeanParams),
                    &[
                        ("h", u(m.h)),
                        ("w", u(m.w)),
                        ("channels", u(m.channels)),
                        ("multiplier", i(m.multiplier)),
                        ("shift", i(m.shift)),
                        ("input_offset", i(m.input_offset)),
                        ("output_offset", i(m.output_offset)),
                    ],
                );
                quote!(#p::fast::global_average_pool(#x, y, &#params);)
            }
            Kernel::Add(a) => {
                let b = srcs.get(1).cloned().unwrap_or_else(|| quote!(&[]));
                let params = fields(
                    quote!(#p::AddParams),
                    &[
                        ("input1_offset", i(a.input1_offset)),
                        ("input2_offset", i(a.input2_offset)),
                        ("output_offset", i(a.output_offset)),
                        ("left_shift", i(a.left_shift)),
                        ("input1_multiplier", i(a.input1_multiplier)),
                        ("input1_shift", i(a.input1_shift)),
                        ("input2_multiplier", i(a.input2_multiplier)),
                        ("input2_shift", i(a.input2_shift)),
                        ("output_multiplier", i(a.output_multiplier)),
                        ("output_shift", i(a.output_shift)),
                        ("act_min", i(a.act_min)),
                        ("act_max", i(a.act_max)),
                    ],
                );
                quote!(#p::add(#x, #b, y, &#params);)
            }
            Kernel::Softmax(s) => {
                let params = fields(
                    quote!(#p::SoftmaxParams),
                    &[
                        ("depth", u(s.depth)),
                        ("rows", u(s.rows)),
                        ("input_multiplier", i(s.input_multiplier)),
                        ("input_left_shift", i(s.input_left_shift)),
                        ("diff_min", i(s.diff_min)),
                    ],
                );
                quote!(#p::softmax(#x, y, &#params);)
            }
            Kernel::Pad(d) => {
                let dims = fields(
                    quote!(#p::PadDims),
                    &[
                        ("in_h", u(d.in_h)),
                        ("in_w", u(d.in_w)),
                        ("channels", u(d.channels)),
                        ("out_h", u(d.out_h)),
                        ("out_w", u(d.out_w)),
                        ("pad_top", u(d.pad_top)),
                        ("pad_left", u(d.pad_left)),
                        ("value", Literal::i8_unsuffixed(d.value).into_token_stream()),
                    ],
                );
                quote!(#p::pad(#x, y, &#dims);)
            }
            Kernel::Concat { channels } => {
                let c = channels.iter().map(|&v| lit(v));
                quote!(#p::concat_channels(&[#(#srcs),*], &[#(#c),*], y);)
            }
        };
        let (o0, o1) = (lit(step.output.0), lit(step.output.0 + step.output.1));
        steps.extend(quote! {
            {
                #split
                #call
            }
            observe(#n, &arena[#o0..#o1]);
        });
    }

    let output = match program.output {
        Location::Input => quote!(&input[..]),
        Location::Arena { offset, len } => {
            let (a, b) = (lit(offset), lit(offset + len));
            quote!(&arena[#a..#b])
        }
    };
    let input_ty = match model.input_type {
        InputType::U8 => quote!(u8),
        InputType::I8 => quote!(i8),
    };
    let classes = model.classes();
    let [ih, iw, ic] = [
        model.input_shape.h,
        model.input_shape.w,
        model.input_shape.c,
    ]
    .map(lit);
    let (input_len, classes_l, arena_l) = (
        lit(model.input_shape.elements()),
        lit(classes),
        lit(arena_bytes),
    );
    let macs = Literal::u64_unsuffixed(model.macs());
    let (params, param_bytes) = (lit(model.params()), lit(model.param_bytes()));
    let out_q = model.quant(model.output());
    let (out_scale, out_zp) = (Literal::f32_suffixed(out_q.scale), out_q.zero_point);
    let (in_scale, in_zp) = (
        Literal::f32_suffixed(model.input_quant.scale),
        model.input_quant.zero_point,
    );
    let labels = (!model.labels.is_empty()).then(|| {
        let l = model.labels.iter();
        quote! {
            /// Class names, one per output value.
            pub const LABELS: [&'static str; #classes_l] = [#(#l),*];
        }
    });
    let track = opts.track_file.as_ref().map(|f| {
        quote!(
            const _: &[u8] = include_bytes!(#f);
        )
    });
    let doc = doc_summary(model, arena_bytes);
    let n_steps = lit(program.steps.len());

    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct #name;

        #track

        impl #name {
            /// Input height, width and channels (NHWC, batch 1).
            pub const INPUT_SHAPE: [usize; 3] = [#ih, #iw, #ic];
            /// Number of input values.
            pub const INPUT_LEN: usize = #input_len;
            /// Quantisation of the input: `real = scale * (x - zero_point)`.
            pub const INPUT_SCALE: f32 = #in_scale;
            /// Zero point of the input.
            pub const INPUT_ZERO_POINT: i32 = #in_zp;
            /// Number of output values (logits).
            pub const CLASSES: usize = #classes_l;
            /// Scale of the logits.
            pub const OUTPUT_SCALE: f32 = #out_scale;
            /// Zero point of the logits.
            pub const OUTPUT_ZERO_POINT: i32 = #out_zp;
            /// Bytes of the activation arena the caller passes to `predict` (the planned peak).
            pub const ARENA_BYTES: usize = #arena_l;
            /// Multiply-accumulates of one inference.
            pub const MACS: u64 = #macs;
            /// Trainable parameters (weights and biases).
            pub const PARAMS: usize = #params;
            /// Kernel calls of one inference (what `predict_observed` reports, in order).
            pub const STEPS: usize = #n_steps;
            /// Bytes of weights, biases and requantisation constants in flash.
            pub const PARAM_BYTES: usize = #param_bytes;
            #labels

            /// The model. It holds no state: weights are in flash, activations in the arena.
            pub const fn new() -> Self {
                #name
            }

            /// Runs one inference. `arena` is scratch space owned by the caller (a static, a stack
            /// buffer, an RTIC or embassy resource); its contents before and after do not matter.
            #[inline]
            pub fn predict(
                &self,
                input: &[#input_ty; #input_len],
                arena: &mut [u8; #arena_l],
            ) -> #p::Prediction<#classes_l> {
                self.predict_observed(input, arena, |_, _| {})
            }

            /// Like [`Self::predict`], and calls `observe(step, output)` after each of the
            /// [`Self::STEPS`] kernel calls with the tensor it wrote: for per-layer profiling and
            /// for checking intermediate tensors. With an empty closure it compiles to the same
            /// code as `predict`.
            #[allow(unused_variables, clippy::identity_op, clippy::erasing_op, clippy::too_many_lines)]
            pub fn predict_observed<F: FnMut(usize, &[i8])>(
                &self,
                input: &[#input_ty; #input_len],
                arena: &mut [u8; #arena_l],
                mut observe: F,
            ) -> #p::Prediction<#classes_l> {
                #statics
                let arena: &mut [i8; #arena_l] = #p::arena_i8(arena);
                #steps
                #p::Prediction::from_output(#output)
            }
        }
    }
}

fn doc_summary(model: &Model, arena: usize) -> String {
    let ty = match model.input_type {
        InputType::U8 => "u8",
        InputType::I8 => "i8",
    };
    let mut s = format!(
        " A cargo-tinynas model: {ty} input {} -> {} outputs; {} MACs, {} parameters, {} arena bytes.\n\n",
        model.input_shape,
        model.classes(),
        model.macs(),
        model.params(),
        arena
    );
    s.push_str(" | # | op | output | MACs |\n |---|---|---|---|\n");
    for (i, n) in model.nodes.iter().enumerate() {
        s.push_str(&format!(
            " | {i} | {} | {} | {} |\n",
            n.op.kind(),
            n.shape,
            n.macs
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::{network, Config, SplitMix};

    /// The source the bench firmware includes is the macro's expansion; a name that is no
    /// identifier is an error, not a panic.
    #[test]
    fn source_is_the_expansion_and_checks_the_name() {
        let m = network(&mut SplitMix(3), &Config::default());
        let ident = Ident::new("Net", Span::call_site());
        let want = expand(&m, &Options::new(ident)).unwrap().to_string();
        assert_eq!(source(&m, "Net").unwrap(), want);
        for bad in ["", "_", "1x", "a-b", "ü"] {
            assert!(source(&m, bad).is_err(), "{bad:?}");
        }
    }

    /// Every layer's int8 weights are one byte-string literal of exactly its bytes (a list of
    /// values costs rustc far more memory); no int8 list is left in the source.
    #[test]
    fn weights_are_byte_strings() {
        let mut rng = SplitMix(5);
        for _ in 0..20 {
            let m = network(&mut rng, &Config::default());
            let src = source(&m, "Net").unwrap();
            let program = crate::lower::lower(&m).unwrap();
            let mut layers = 0;
            for step in &program.steps {
                let (Kernel::Conv2d { w, .. }
                | Kernel::DepthwiseConv2d { w, .. }
                | Kernel::FullyConnected { w, .. }) = &step.kernel
                else {
                    continue;
                };
                let bytes: Vec<u8> = w.kernel_weights.iter().map(|&x| x as u8).collect();
                let lit = byte_string(&bytes);
                assert!(src.contains(&format!("i8s ({lit})")), "{lit}");
                layers += 1;
            }
            assert!(layers > 0);
            // Each `static X : [i8 ; N] = ...` is initialised by `i8s`, which may run long.
            for (at, _) in src.match_indices(": [i8 ;") {
                let before = src[..at].rsplit_once("static").map_or("", |(b, _)| b);
                assert!(before.ends_with("# [allow (long_running_const_eval)] "));
                let rest = &src[at..];
                let init = rest.find("] = ").map(|i| &rest[i + 4..]).unwrap_or("");
                assert!(
                    init.starts_with(":: tinynas_runtime :: __private :: i8s"),
                    "{rest:.80}"
                );
            }
        }
    }

    #[test]
    fn expands_random_networks_to_parseable_tokens() {
        let mut rng = SplitMix(3);
        for _ in 0..50 {
            let m = network(&mut rng, &Config::default());
            let ts = expand(&m, &Options::new(Ident::new("Net", Span::call_site()))).unwrap();
            let s = ts.to_string();
            assert!(s.contains("pub struct Net"));
            assert!(s.contains("fn predict"));
        }
    }
}
