//! Datasets: labelled images decoded once into a compact `u8` cache file and read in batches from
//! it, so memory does not grow with the dataset.
//!
//! * [`folder`]: a folder per class (PNG, JPEG, BMP, PGM/PPM), or `train/`, `val/`, `test/` split
//!   folders each holding class folders; resized (bilinear) to the model's input, RGB or grey.
//! * [`import`]: the packaged sets we test with: IDX (Fashion-MNIST, gzipped or not) and `.npy`.
//! * [`cache`]: the cache file format.
//! * [`split`]: a deterministic stratified train/validation/test split from a seed.
//! * [`load`]: the one call that opens a dataset (either kind) for every command.

pub mod cache;
pub mod folder;
pub mod import;
pub mod split;

pub use cache::Cache;

/// Loads a dataset, the one way every command does (`train`, `search`, `verify`): a folder of
/// Fashion-MNIST's IDX files (imported once into the tool's cache, default shape 28x28x1), or
/// image folders ([`folder`], default shape 32x32x3), decoded into a [`Cache`]; with the files
/// skipped (unreadable, or `strict` makes them errors).
pub fn load(
    data: &std::path::Path,
    input: Option<ImageShape>,
    strict: bool,
) -> Result<(Cache, Vec<Skipped>), DataError> {
    if is_idx(data) {
        let shape = input.unwrap_or(ImageShape { h: 28, w: 28, c: 1 });
        let h = crate::hash::fnv1a(data.to_string_lossy().as_bytes());
        let out = crate::firmware::cache_dir().join("datasets").join(format!(
            "idx-{h:016x}-{}x{}x{}.tnds",
            shape.h, shape.w, shape.c
        ));
        let cache = match Cache::open(&out) {
            Ok(c) if c.shape == shape => c,
            _ => import::fashion_mnist(data, shape, &out)?,
        };
        return Ok((cache, Vec::new()));
    }
    let shape = input.unwrap_or(ImageShape { h: 32, w: 32, c: 3 });
    let l = folder::load(data, folder::Options { shape, strict })?;
    Ok((l.cache, l.skipped))
}

/// Whether `dir` holds Fashion-MNIST's IDX training images.
fn is_idx(dir: &std::path::Path) -> bool {
    ["train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"]
        .iter()
        .any(|f| dir.join(f).is_file())
}

/// Height, width and channels (1 = grey, 3 = RGB) images are converted to; the training engine's
/// type, which the cache feeds through [`tinynas_train::Samples`].
pub use tinynas_train::ImageShape;

/// A file that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: std::path::PathBuf,
    pub reason: String,
}

/// What went wrong with a dataset; each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{0} does not exist or is not a folder: give --data a folder with one sub-folder of images per class")]
    NotAFolder(std::path::PathBuf),
    #[error("{0} has {1} class folder(s): at least two classes are needed (one sub-folder of images per class)")]
    TooFewClasses(std::path::PathBuf, usize),
    #[error("class {class:?} has no readable images (in {path}): add images or remove the folder")]
    EmptyClass {
        class: String,
        path: std::path::PathBuf,
    },
    #[error("{count} file(s) could not be used (--strict):\n{list}")]
    Strict { count: usize, list: String },
    #[error("{path}: {message}")]
    Format {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DataError {
    let context = context.into();
    move |source| DataError::Io { context, source }
}
