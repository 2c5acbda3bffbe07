//! What the engine reads its images through.

/// Height, width and channels (1 = grey, 3 = RGB) images are converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageShape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl ImageShape {
    pub fn len(&self) -> usize {
        self.h * self.w * self.c
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Labelled images, addressed by index: cargo-tinynas's data set cache implements it; a test
/// can implement it over a `Vec`.
pub trait Samples {
    /// The shape every image has.
    fn shape(&self) -> ImageShape;
    /// The class of image `i` (`0..classes`).
    fn label(&self, i: usize) -> usize;
    /// Reads images `indices` into `out`: `indices.len() * shape().len()` bytes, HWC each, 0-255.
    fn read_batch(&mut self, indices: &[usize], out: &mut Vec<u8>) -> Result<(), ReadError>;
}

/// Images that could not be read, with the data set's own error (its message says what to fix).
#[derive(Debug)]
pub struct ReadError(pub Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
