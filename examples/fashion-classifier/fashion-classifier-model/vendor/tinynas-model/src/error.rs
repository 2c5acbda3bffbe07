use std::fmt;

/// Everything that can be wrong with a model, from building it or from reading a `.tnas` file.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A node that cannot be added to the graph as given.
    #[error("node {index} ({name}): {message}")]
    Node {
        index: usize,
        name: String,
        message: String,
    },
    /// The graph as a whole is not usable (no nodes, bad input, ...).
    #[error("model: {0}")]
    Model(String),
    /// A `.tnas` file ended before the data it announces.
    #[error("model file is truncated: needed {needed} more bytes at offset {offset} while reading {what}")]
    Truncated {
        offset: usize,
        needed: usize,
        what: &'static str,
    },
    /// The first bytes are not `TNAS`.
    #[error("not a .tnas model file (the first four bytes are {0:02x?}, expected \"TNAS\")")]
    BadMagic([u8; 4]),
    /// A version this build cannot read.
    #[error("model file version {found} is not supported by this tinynas-model (it reads version {supported}); regenerate the model or update cargo-tinynas")]
    Version { found: u16, supported: u16 },
    /// The payload checksum does not match: the file was altered or damaged.
    #[error(
        "model file is corrupted: checksum {found:08x} does not match the stored {stored:08x}"
    )]
    Checksum { stored: u32, found: u32 },
    /// A field holds a value outside what the format allows.
    #[error("model file is invalid at offset {offset}: {message}")]
    Invalid { offset: usize, message: String },
}

impl Error {
    pub(crate) fn node(index: usize, name: &str, message: impl fmt::Display) -> Self {
        Error::Node {
            index,
            name: name.to_string(),
            message: message.to_string(),
        }
    }
}
