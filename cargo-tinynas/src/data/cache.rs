//! The cache file: every sample decoded to `u8` at the model's input shape, with its label.
//!
//! ```text
//! "TNDS" | u32 version | u64 source fingerprint | u32 h | u32 w | u32 c | u32 samples
//! u32 classes | classes x (u16 length + UTF-8 name)
//! samples x u16 label | samples x u8 split (0 unassigned, 1 train, 2 val, 3 test: from split folders)
//! samples x h*w*c u8 pixels (HWC)
//! ```
//! Written to a temporary file and renamed, so a killed run never leaves a half-written cache.
//! Samples are read one by one from the file: memory stays flat however large the dataset is.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{io, DataError, ImageShape};

const MAGIC: &[u8; 4] = b"TNDS";
const VERSION: u32 = 1;

/// Which split a sample was given by the user's folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assigned {
    Unassigned = 0,
    Train = 1,
    Val = 2,
    Test = 3,
}

/// Writes a cache file sample by sample.
pub struct Writer {
    tmp: PathBuf,
    path: PathBuf,
    out: BufWriter<File>,
    shape: ImageShape,
    labels: Vec<u16>,
    assigned: Vec<u8>,
    fingerprint: u64,
    classes: Vec<String>,
    pixels: Option<BufWriter<File>>,
    pixels_path: PathBuf,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("path", &self.path)
            .field("samples", &self.labels.len())
            .finish()
    }
}

impl Writer {
    /// Starts a cache at `path` (written at `path` + `.tmp`, renamed by [`Writer::finish`]).
    pub fn create(
        path: &Path,
        shape: ImageShape,
        classes: Vec<String>,
        fingerprint: u64,
    ) -> Result<Self, DataError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
            // What killed runs left behind (the temporaries of a failed one go with it: `Drop`).
            crate::fsutil::remove_stale_temps(dir);
        }
        let tmp = crate::fsutil::temp_path(path);
        let pixels_path = crate::fsutil::temp_path(&path.with_extension("pixels"));
        let out = BufWriter::new(
            File::create(&tmp).map_err(io(format!("cannot write {}", tmp.display())))?,
        );
        let pixels = Some(BufWriter::new(
            File::create(&pixels_path)
                .map_err(io(format!("cannot write {}", pixels_path.display())))?,
        ));
        Ok(Writer {
            tmp,
            path: path.to_path_buf(),
            out,
            shape,
            labels: Vec::new(),
            assigned: Vec::new(),
            fingerprint,
            classes,
            pixels,
            pixels_path,
        })
    }

    /// Appends one sample (`shape.len()` bytes).
    pub fn push(
        &mut self,
        pixels: &[u8],
        label: usize,
        assigned: Assigned,
    ) -> Result<(), DataError> {
        debug_assert_eq!(pixels.len(), self.shape.len());
        if let Some(p) = self.pixels.as_mut() {
            p.write_all(pixels).map_err(io("cannot write the cache"))?;
        }
        self.labels.push(label as u16);
        self.assigned.push(assigned as u8);
        Ok(())
    }

    /// Writes the header and the pixels into place and renames the file.
    pub fn finish(mut self) -> Result<Cache, DataError> {
        let w = &mut self.out;
        let e = |r: std::io::Result<()>| r.map_err(io("cannot write the cache"));
        e(w.write_all(MAGIC))?;
        e(w.write_all(&VERSION.to_le_bytes()))?;
        e(w.write_all(&self.fingerprint.to_le_bytes()))?;
        for v in [
            self.shape.h,
            self.shape.w,
            self.shape.c,
            self.labels.len(),
            self.classes.len(),
        ] {
            e(w.write_all(&(v as u32).to_le_bytes()))?;
        }
        for c in &self.classes {
            let b = c.as_bytes();
            e(w.write_all(&(b.len() as u16).to_le_bytes()))?;
            e(w.write_all(b))?;
        }
        for l in &self.labels {
            e(w.write_all(&l.to_le_bytes()))?;
        }
        e(w.write_all(&self.assigned))?;
        if let Some(mut p) = self.pixels.take() {
            e(p.flush())?;
        }
        let mut px = File::open(&self.pixels_path).map_err(io("cannot reopen the cache pixels"))?;
        e(std::io::copy(&mut px, w).map(|_| ()))?;
        e(w.flush())?;
        drop(px);
        let _ = std::fs::remove_file(&self.pixels_path);
        std::fs::rename(&self.tmp, &self.path)
            .map_err(io(format!("cannot write {}", self.path.display())))?;
        Cache::open(&self.path)
    }
}

/// A cache that was not finished (a failed load, an error while writing) leaves no temporary
/// files behind; after [`Writer::finish`] there are none left to remove.
impl Drop for Writer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
        let _ = std::fs::remove_file(&self.pixels_path);
    }
}

/// An open cache file.
#[derive(Debug)]
pub struct Cache {
    pub path: PathBuf,
    pub fingerprint: u64,
    pub shape: ImageShape,
    pub classes: Vec<String>,
    pub labels: Vec<u16>,
    pub assigned: Vec<Assigned>,
    data_offset: u64,
    file: File,
}

impl Cache {
    /// Opens and checks a cache file.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let bad = |m: &str| DataError::Format {
            path: path.to_path_buf(),
            message: format!("not a usable dataset cache ({m}); delete it to rebuild"),
        };
        let mut file = File::open(path).map_err(io(format!("cannot open {}", path.display())))?;
        let file_len = file.metadata().map_err(io("cannot stat the cache"))?.len();
        let mut r = std::io::BufReader::new(&mut file);
        let mut b4 = [0u8; 4];
        let mut b8 = [0u8; 8];
        let mut u32_ = |r: &mut dyn Read| -> Result<u32, DataError> {
            r.read_exact(&mut b4).map_err(|_| bad("truncated"))?;
            Ok(u32::from_le_bytes(b4))
        };
        let mut magic = [0u8; 4];
        r.read_exact(&mut magic).map_err(|_| bad("truncated"))?;
        if &magic != MAGIC {
            return Err(bad("bad magic"));
        }
        if u32_(&mut r)? != VERSION {
            return Err(bad("old version"));
        }
        r.read_exact(&mut b8).map_err(|_| bad("truncated"))?;
        let fingerprint = u64::from_le_bytes(b8);
        let (h, w, c, n, k) = (
            u32_(&mut r)? as usize,
            u32_(&mut r)? as usize,
            u32_(&mut r)? as usize,
            u32_(&mut r)? as usize,
            u32_(&mut r)? as usize,
        );
        if k > 65_535 || n > 1 << 28 || h * w * c == 0 || h * w * c > 1 << 24 {
            return Err(bad("implausible sizes"));
        }
        // Nothing is allocated for a header that claims more than the file holds.
        if (n as u64) * (3 + (h * w * c) as u64) > file_len {
            return Err(bad("size does not match its header"));
        }
        let mut classes = Vec::with_capacity(k);
        let mut header = 4 + 4 + 8 + 20;
        for _ in 0..k {
            let mut l = [0u8; 2];
            r.read_exact(&mut l).map_err(|_| bad("truncated"))?;
            let mut s = vec![0u8; u16::from_le_bytes(l) as usize];
            r.read_exact(&mut s).map_err(|_| bad("truncated"))?;
            header += 2 + s.len();
            classes.push(String::from_utf8(s).map_err(|_| bad("class name is not UTF-8"))?);
        }
        let mut lb = vec![0u8; n * 2];
        r.read_exact(&mut lb).map_err(|_| bad("truncated"))?;
        let labels: Vec<u16> = lb
            .chunks_exact(2)
            .map(|x| u16::from_le_bytes([x[0], x[1]]))
            .collect();
        let mut ab = vec![0u8; n];
        r.read_exact(&mut ab).map_err(|_| bad("truncated"))?;
        let assigned = ab
            .iter()
            .map(|&a| match a {
                1 => Assigned::Train,
                2 => Assigned::Val,
                3 => Assigned::Test,
                _ => Assigned::Unassigned,
            })
            .collect();
        if labels.iter().any(|&l| l as usize >= k) {
            return Err(bad("label out of range"));
        }
        drop(r);
        let data_offset = (header + n * 3) as u64;
        let shape = ImageShape { h, w, c };
        if file_len != data_offset + (n * shape.len()) as u64 {
            return Err(bad("size does not match its header"));
        }
        Ok(Cache {
            path: path.to_path_buf(),
            fingerprint,
            shape,
            classes,
            labels,
            assigned,
            data_offset,
            file,
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// A fingerprint of what the cache holds (shape, classes, labels, split folders, pixels),
    /// unlike [`Cache::fingerprint`], which is of the source files' names, sizes and times and so
    /// changes with every fresh checkout of the same images. Names a data set in model cards and
    /// search journals; reads the whole file once.
    pub fn content_fingerprint(&mut self) -> Result<u64, DataError> {
        let mut f = crate::hash::Fingerprint::new();
        let s = self.shape;
        f.field(format!("content v1 {}x{}x{}", s.h, s.w, s.c).as_bytes());
        for c in &self.classes {
            f.field(c.as_bytes());
        }
        let labels: Vec<u8> = self.labels.iter().flat_map(|l| l.to_le_bytes()).collect();
        f.field(&labels);
        let assigned: Vec<u8> = self.assigned.iter().map(|&a| a as u8).collect();
        f.field(&assigned);
        self.file
            .seek(SeekFrom::Start(self.data_offset))
            .map_err(io("cannot read the cache"))?;
        let mut left = (self.len() * s.len()) as u64;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            self.file
                .read_exact(&mut buf[..n])
                .map_err(io("cannot read the cache"))?;
            f.bytes(&buf[..n]);
            left -= n as u64;
        }
        Ok(f.finish())
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Reads samples `indices` into `out` (`indices.len() * shape.len()` bytes, HWC each).
    pub fn read_batch(&mut self, indices: &[usize], out: &mut Vec<u8>) -> Result<(), DataError> {
        let n = self.shape.len();
        out.resize(indices.len() * n, 0);
        for (k, &i) in indices.iter().enumerate() {
            self.file
                .seek(SeekFrom::Start(self.data_offset + (i * n) as u64))
                .map_err(io("cannot read the cache"))?;
            self.file
                .read_exact(&mut out[k * n..(k + 1) * n])
                .map_err(io("cannot read the cache"))?;
        }
        Ok(())
    }
}

/// The training engine reads its images from the cache.
impl tinynas_train::Samples for Cache {
    fn shape(&self) -> ImageShape {
        self.shape
    }

    fn label(&self, i: usize) -> usize {
        usize::from(self.labels[i])
    }

    fn read_batch(
        &mut self,
        indices: &[usize],
        out: &mut Vec<u8>,
    ) -> Result<(), tinynas_train::ReadError> {
        Cache::read_batch(self, indices, out).map_err(|e| tinynas_train::ReadError(Box::new(e)))
    }
}
