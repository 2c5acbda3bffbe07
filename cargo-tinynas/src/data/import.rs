//! Importers for the packaged datasets we test with.
//!
//! * IDX (`*-idx3-ubyte`, `*-idx1-ubyte`, gzipped or not): MNIST and Fashion-MNIST, e.g. Debian's
//!   `dataset-fashion-mnist` in `/usr/share/datasets/fashion-mnist/`.
//! * `.npy` (NumPy's format, C order, `u1`/`f4`/`f8`): e.g. `skimage/data/lfw_subset.npy` inside the
//!   scikit-image wheel. Floats are read as values in [0, 1] and scaled to 0..=255.

use std::io::Read;
use std::path::Path;

use super::cache::{Assigned, Cache, Writer};
use super::{io, DataError, ImageShape};

/// An n-dimensional array of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(io(format!("cannot read {}", path.display())))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::Format {
                path: path.to_path_buf(),
                message: format!("bad gzip data: {e}"),
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Reads an IDX file of unsigned bytes.
pub fn read_idx(path: &Path) -> Result<Array, DataError> {
    let b = read_maybe_gz(path)?;
    parse_idx(&b).map_err(|message| DataError::Format {
        path: path.to_path_buf(),
        message,
    })
}

/// Parses IDX bytes: magic `00 00 08 <dims>`, big-endian u32 sizes, then the data.
pub fn parse_idx(b: &[u8]) -> Result<Array, String> {
    if b.len() < 4 || b[0] != 0 || b[1] != 0 {
        return Err("not an IDX file (bad magic)".into());
    }
    if b[2] != 0x08 {
        return Err(format!(
            "IDX element type {:#04x} is not unsigned bytes (0x08)",
            b[2]
        ));
    }
    let dims = b[3] as usize;
    let header = 4 + 4 * dims;
    if dims == 0 || b.len() < header {
        return Err("truncated IDX header".into());
    }
    let shape: Vec<usize> = (0..dims)
        .map(|i| {
            u32::from_be_bytes([b[4 + 4 * i], b[5 + 4 * i], b[6 + 4 * i], b[7 + 4 * i]]) as usize
        })
        .collect();
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("IDX sizes overflow")?;
    if b.len() != header + n {
        return Err(format!(
            "IDX data has {} bytes, the header says {n}",
            b.len() - header
        ));
    }
    Ok(Array {
        shape,
        data: b[header..].to_vec(),
    })
}

/// Reads a `.npy` file (C order; `|u1`, `<f4` or `<f8`; floats in [0, 1] scaled to bytes).
pub fn read_npy(path: &Path) -> Result<Array, DataError> {
    let b = std::fs::read(path).map_err(io(format!("cannot read {}", path.display())))?;
    parse_npy(&b).map_err(|message| DataError::Format {
        path: path.to_path_buf(),
        message,
    })
}

pub fn parse_npy(b: &[u8]) -> Result<Array, String> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let (hlen, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!(".npy version {v} is not supported")),
    };
    let header = std::str::from_utf8(b.get(start..start + hlen).ok_or("truncated .npy header")?)
        .map_err(|_| "bad .npy header")?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))?;
        Some(
            header[i + key.len() + 2..]
                .trim_start()
                .trim_start_matches(':')
                .trim_start(),
        )
    };
    let descr = field("descr")
        .and_then(|s| s.split('\'').nth(1))
        .ok_or("no descr in .npy header")?;
    if field("fortran_order").is_some_and(|s| s.starts_with("True")) {
        return Err("Fortran-order .npy arrays are not supported; save with order='C'".into());
    }
    let shape_text = field("shape")
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.split(')').next())
        .ok_or("no shape in .npy header")?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| format!("bad .npy shape {shape_text:?}"))
        })
        .collect::<Result<_, _>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or(".npy sizes overflow")?;
    let data = &b[start + hlen..];
    let to_byte = |v: f64| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let out: Vec<u8> = match descr {
        "|u1" | "<u1" => data.get(..n).ok_or("truncated .npy data")?.to_vec(),
        "<f8" => data
            .get(..n * 8)
            .ok_or("truncated .npy data")?
            .chunks_exact(8)
            .map(|c| to_byte(f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))))
            .collect(),
        "<f4" => data
            .get(..n * 4)
            .ok_or("truncated .npy data")?
            .chunks_exact(4)
            .map(|c| {
                to_byte(f64::from(f32::from_le_bytes(
                    c.try_into().unwrap_or([0; 4]),
                )))
            })
            .collect(),
        d => {
            return Err(format!(
                ".npy element type {d:?} is not supported (u1, f4 or f8)"
            ))
        }
    };
    Ok(Array { shape, data: out })
}

/// Writes images `[n, h, w]` or `[n, h, w, c]` with labels into a cache at `shape` (bilinear resize
/// and grey/RGB conversion as for folders).
#[allow(clippy::too_many_arguments)]
pub fn to_cache(
    images: &Array,
    labels: &[u16],
    classes: Vec<String>,
    assigned: Assigned,
    shape: ImageShape,
    out: &Path,
    more: Option<(&Array, &[u16], Assigned)>,
) -> Result<Cache, DataError> {
    let bad = |m: String| DataError::Format {
        path: out.to_path_buf(),
        message: m,
    };
    let mut w = Writer::create(out, shape, classes.clone(), 0)?;
    for (arr, labs, a) in std::iter::once((images, labels, assigned)).chain(more) {
        let (n, h, wd, c) = match arr.shape[..] {
            [n, h, w] => (n, h, w, 1),
            [n, h, w, c] if c == 1 || c == 3 => (n, h, w, c),
            _ => {
                return Err(bad(format!(
                    "images must be [n, h, w] or [n, h, w, 1|3], got {:?}",
                    arr.shape
                )))
            }
        };
        if labs.len() != n {
            return Err(bad(format!("{} labels for {n} images", labs.len())));
        }
        if let Some(&l) = labs.iter().find(|&&l| l as usize >= classes.len()) {
            return Err(bad(format!("label {l} for {} classes", classes.len())));
        }
        let size = h * wd * c;
        for (i, &label) in labs.iter().enumerate() {
            let px = &arr.data[i * size..(i + 1) * size];
            let img: image::DynamicImage = if c == 1 {
                image::GrayImage::from_raw(wd as u32, h as u32, px.to_vec()).map(Into::into)
            } else {
                image::RgbImage::from_raw(wd as u32, h as u32, px.to_vec()).map(Into::into)
            }
            .ok_or_else(|| bad("image buffer size".into()))?;
            let resized = img.resize_exact(
                shape.w as u32,
                shape.h as u32,
                image::imageops::FilterType::Triangle,
            );
            let bytes = if shape.c == 1 {
                resized.to_luma8().into_raw()
            } else {
                resized.to_rgb8().into_raw()
            };
            w.push(&bytes, label as usize, a)?;
        }
    }
    w.finish()
}

/// Fashion-MNIST's class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
];

/// Where Debian's `dataset-fashion-mnist` puts the files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Imports Fashion-MNIST (or MNIST: the classes are named `0`..`9` unless the folder's path says
/// "fashion") from a folder of the four IDX files (train and t10k) into a cache: the training
/// images as `train`, the test images as `test`.
pub fn fashion_mnist(dir: &Path, shape: ImageShape, out: &Path) -> Result<Cache, DataError> {
    let labels = |name: &str| -> Result<Vec<u16>, DataError> {
        Ok(read_idx(&dir.join(name))?
            .data
            .iter()
            .map(|&l| u16::from(l))
            .collect())
    };
    let train = read_idx(&dir.join("train-images-idx3-ubyte.gz"))?;
    let train_l = labels("train-labels-idx1-ubyte.gz")?;
    let test = read_idx(&dir.join("t10k-images-idx3-ubyte.gz"))?;
    let test_l = labels("t10k-labels-idx1-ubyte.gz")?;
    let classes = FASHION_MNIST_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    to_cache(
        &train,
        &train_l,
        classes,
        Assigned::Train,
        shape,
        out,
        Some((&test, &test_l, Assigned::Test)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idx_round_trip_and_errors() {
        let mut b = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        b.extend(0..12u8);
        let a = parse_idx(&b).unwrap();
        assert_eq!(a.shape, vec![2, 2, 3]);
        assert_eq!(a.data.len(), 12);
        assert!(parse_idx(&b[..15]).unwrap_err().contains("truncated"));
        assert!(parse_idx(&b[..20]).unwrap_err().contains("bytes"));
        let mut f = b.clone();
        f[2] = 0x0d;
        assert!(parse_idx(&f).unwrap_err().contains("unsigned bytes"));
        for n in 0..b.len() {
            let _ = parse_idx(&b[..n]);
        }
    }

    #[test]
    fn npy_u8_and_f64() {
        let mk = |descr: &str, shape: &str, data: &[u8]| {
            let mut h =
                format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
            while (10 + h.len() + 1) % 64 != 0 {
                h.push(' ');
            }
            h.push('\n');
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend_from_slice(&(h.len() as u16).to_le_bytes());
            b.extend_from_slice(h.as_bytes());
            b.extend_from_slice(data);
            b
        };
        let a = parse_npy(&mk("|u1", "(2, 3)", &[1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!((a.shape, a.data), (vec![2, 3], vec![1, 2, 3, 4, 5, 6]));
        let f: Vec<u8> = [0.0f64, 0.5, 1.0, 2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let a = parse_npy(&mk("<f8", "(4,)", &f)).unwrap();
        assert_eq!(a.data, vec![0, 128, 255, 255]);
        assert!(parse_npy(&mk("<i8", "(1,)", &[0; 8]))
            .unwrap_err()
            .contains("not supported"));
        assert!(parse_npy(b"PK\x03\x04 not numpy").is_err());
    }
}
