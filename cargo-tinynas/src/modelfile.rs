//! A model file as the commands read it: a `.tnas` file, or an int8 TF Lite `.tflite` file
//! imported on the way (`tinynas_tflite`). Which one is told by the content, not the name.
//!
//! An imported model continues as `.tnas` bytes ([`Loaded::tnas`]): the bench firmware and the
//! generated crate always carry a `.tnas` file, so neither needs the TF Lite reader.

use std::path::Path;

use tinynas_model::Model;

/// A model read from a file.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub model: Model,
    /// The model as a `.tnas` file (the file's own bytes when it was one).
    pub tnas: Vec<u8>,
    /// `"tnas"` or `"tflite"`.
    pub format: &'static str,
    /// What the TF Lite import folded away or worked around (empty for `.tnas`).
    pub notes: Vec<String>,
    /// For an imported model: the TF Lite tensor each node computes.
    pub tflite_tensors: Vec<usize>,
    /// What the file's own output tensor holds (int8 for `.tnas`): a TF Lite model's final
    /// QUANTIZE to uint8 or DEQUANTIZE is folded away, and the model returns int8 values.
    pub file_output: tinynas_tflite::FileOutput,
}

impl Loaded {
    /// `logits` (the model's int8 output) as the file's own output tensor holds them: TF Lite's
    /// values for a model whose last operator is a QUANTIZE to uint8 (`value + 128`) or a
    /// DEQUANTIZE (`scale * (value - zero_point)`, computed as TF Lite's reference kernel does:
    /// in double, then rounded to float). `None` where the file's output is int8.
    pub fn file_values(&self, logits: &[i8]) -> Option<Vec<serde_json::Value>> {
        let q = self.model.quant(self.model.output());
        match self.file_output {
            tinynas_tflite::FileOutput::Int8 => None,
            tinynas_tflite::FileOutput::Uint8 => Some(
                logits
                    .iter()
                    .map(|&v| serde_json::Value::from(i32::from(v) + 128))
                    .collect(),
            ),
            tinynas_tflite::FileOutput::Float32 => Some(
                logits
                    .iter()
                    .map(|&v| {
                        let x =
                            (f64::from(q.scale) * f64::from(i32::from(v) - q.zero_point)) as f32;
                        serde_json::Value::from(x)
                    })
                    .collect(),
            ),
        }
    }
}

/// Why a model file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tnas(#[from] tinynas_model::Error),
    #[error("{0}")]
    Tflite(#[from] tinynas_tflite::ImportError),
    #[error("neither a .tnas model nor a TF Lite model (the file starts with {0:02x?}); give a model written by `cargo tinynas train`/`search`, or an int8 .tflite file")]
    Neither(Vec<u8>),
}

/// Reads a model from bytes.
pub fn load_bytes(bytes: &[u8]) -> Result<Loaded, LoadError> {
    if tinynas_tflite::is_tflite(bytes) {
        let imported = tinynas_tflite::import(bytes)?;
        let tnas = tinynas_model::format::to_bytes(&imported.model);
        return Ok(Loaded {
            model: imported.model,
            tnas,
            format: "tflite",
            notes: imported.notes,
            tflite_tensors: imported.tensors,
            file_output: imported.output,
        });
    }
    if bytes.len() >= 4 && &bytes[..4] != b"TNAS" {
        return Err(LoadError::Neither(bytes[..bytes.len().min(8)].to_vec()));
    }
    let model = tinynas_model::format::read(bytes)?;
    Ok(Loaded {
        model,
        tnas: bytes.to_vec(),
        format: "tnas",
        notes: Vec::new(),
        tflite_tensors: Vec::new(),
        file_output: tinynas_tflite::FileOutput::Int8,
    })
}

/// Reads a model file.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load_bytes(&bytes)
}

/// An input file as the model's input tensor bytes: a `.bin` file holding exactly them (NHWC, as
/// `u8` or `i8` as the model takes), or an image (PNG, JPEG, BMP, PGM/PPM) read as grey or RGB and
/// resized as the data set loader does, each pixel p becoming p - 128 for an `i8` model. The
/// error says what is wrong with the file.
pub fn input_bytes(model: &Model, path: &Path) -> Result<Vec<u8>, String> {
    let s = model.input_shape;
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("bin"))
    {
        let b = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if b.len() != s.elements() {
            return Err(format!(
                "{} holds {} bytes; the model's input is {}x{}x{} = {} bytes",
                path.display(),
                b.len(),
                s.h,
                s.w,
                s.c,
                s.elements()
            ));
        }
        return Ok(b);
    }
    let shape = crate::data::ImageShape {
        h: s.h,
        w: s.w,
        c: s.c,
    };
    let px = crate::data::folder::decode(path, shape).map_err(|e| {
        let or_bin = if e == crate::data::folder::NOT_AN_IMAGE {
            format!(
                ", nor a .bin file (the input tensor's {} bytes, named *.bin)",
                s.elements()
            )
        } else {
            String::new()
        };
        format!("{}: {e}{or_bin}", path.display())
    })?;
    Ok(match model.input_type {
        tinynas_model::InputType::U8 => px,
        tinynas_model::InputType::I8 => px.iter().map(|&p| p ^ 0x80).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neither_format_is_named() {
        let e = load_bytes(b"PK\x03\x04 a zip file").unwrap_err();
        assert!(
            e.to_string()
                .contains("neither a .tnas model nor a TF Lite model"),
            "{e}"
        );
    }

    /// An input file that is neither an image nor a `.bin` of the right length: the error says
    /// what an input can be, with the tensor's size.
    #[test]
    fn a_bad_input_file_says_what_an_input_is() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/tflite/person_detect.tflite"
        );
        let model = load(Path::new(path)).unwrap().model;
        let dir = std::env::temp_dir().join(format!("tinynas-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("notes.txt");
        std::fs::write(&text, "hello").unwrap();
        let e = input_bytes(&model, &text).unwrap_err();
        assert!(e.contains("PNG, JPEG, BMP, PGM/PPM"), "{e}");
        assert!(e.contains("9216 bytes, named *.bin"), "{e}");
        let short = dir.join("x.bin");
        std::fs::write(&short, [0u8; 100]).unwrap();
        let e = input_bytes(&model, &short).unwrap_err();
        assert!(
            e.contains("holds 100 bytes") && e.contains("= 9216 bytes"),
            "{e}"
        );
        std::fs::write(&short, [0x81u8; 9216]).unwrap();
        assert_eq!(input_bytes(&model, &short).unwrap(), vec![0x81u8; 9216]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_tnas_file_keeps_its_bytes() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/all-ops.tnas"
        );
        let bytes = std::fs::read(path).unwrap();
        let l = load_bytes(&bytes).unwrap();
        assert_eq!(l.format, "tnas");
        assert_eq!(l.tnas, bytes);
    }

    #[test]
    fn a_tflite_file_becomes_the_same_model_as_tnas() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/tflite/person_detect.tflite"
        );
        let l = load(Path::new(path)).unwrap();
        assert_eq!(l.format, "tflite");
        assert_eq!(tinynas_model::format::read(&l.tnas).unwrap(), l.model);
        assert_eq!(l.tflite_tensors.len(), l.model.nodes.len());
    }
}
