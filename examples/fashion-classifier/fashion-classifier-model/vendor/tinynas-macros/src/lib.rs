//! `model!(Name, "path/to/model.tnas")`: expands a model file (`.tnas`, or with the default
//! `tflite` feature an int8 TF Lite `.tflite` file) into a type with straight-line inference
//! code. Use it through `tinynas_runtime::model!`.
//!
//! The path is relative to the invoking crate's `CARGO_MANIFEST_DIR` (or absolute). Errors (a
//! missing, truncated or invalid file) become a `compile_error!` at the path literal. All logic
//! lives in `tinynas_model`; this crate only reads the file and reports.

use proc_macro::TokenStream;

/// Expands a `.tnas` model file into a model type. See the `tinynas_runtime` crate docs.
#[proc_macro]
pub fn model(input: TokenStream) -> TokenStream {
    expand(input.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

struct Args {
    name: syn::Ident,
    path: syn::LitStr,
}

impl syn::parse::Parse for Args {
    fn parse(input: syn::parse::ParseStream<'_>) -> syn::Result<Self> {
        const USAGE: &str = "expected `model!(TypeName, \"path/to/model.tnas\")`";
        let name: syn::Ident = input
            .parse()
            .map_err(|e| syn::Error::new(e.span(), USAGE))?;
        if input.is_empty() {
            return Err(syn::Error::new(
                name.span(),
                format!("{USAGE}: the model file path is missing"),
            ));
        }
        input.parse::<syn::Token![,]>()?;
        let path = input.parse()?;
        if input.peek(syn::Token![,]) {
            input.parse::<syn::Token![,]>()?;
        }
        if !input.is_empty() {
            return Err(input.error(USAGE));
        }
        Ok(Args { name, path })
    }
}

fn expand(input: proc_macro2::TokenStream) -> syn::Result<proc_macro2::TokenStream> {
    let Args { name, path } = syn::parse2(input)?;
    let rel = path.value();
    let full = match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(dir) if !std::path::Path::new(&rel).is_absolute() => {
            std::path::Path::new(&dir).join(&rel)
        }
        _ => std::path::PathBuf::from(&rel),
    };
    let bytes = std::fs::read(&full).map_err(|e| {
        syn::Error::new(
            path.span(),
            format!(
                "cannot read model file {rel:?} (looked at {}): {e}",
                full.display()
            ),
        )
    })?;
    let model = read_model(&bytes)
        .map_err(|e| syn::Error::new(path.span(), format!("invalid model file {rel:?}: {e}")))?;
    let mut opts = tinynas_model::codegen::Options::new(name);
    opts.track_file = Some(full.to_string_lossy().into_owned());
    tinynas_model::codegen::expand(&model, &opts)
        .map_err(|e| syn::Error::new(path.span(), e.to_string()))
}

/// A `.tnas` file, or (feature `tflite`) a TF Lite file imported.
fn read_model(bytes: &[u8]) -> Result<tinynas_model::Model, String> {
    #[cfg(feature = "tflite")]
    if tinynas_tflite::is_tflite(bytes) {
        return tinynas_tflite::import(bytes)
            .map(|i| i.model)
            .map_err(|e| e.to_string());
    }
    #[cfg(not(feature = "tflite"))]
    if bytes.get(4..8) == Some(b"TFL3") {
        return Err("this is a TF Lite model, and this build of tinynas-macros reads only .tnas files (its `tflite` feature is off): convert it with `cargo tinynas import`".into());
    }
    tinynas_model::format::read(bytes).map_err(|e| e.to_string())
}
