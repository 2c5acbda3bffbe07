//! A float32 NHWC batch, and the pool its buffers come from.
//!
//! Every training step allocates the same buffers in the same order; taking them from the
//! allocator each time costs page faults (large blocks come fresh from the kernel, zeroed page by
//! page): with glibc told to keep freed memory (`GLIBC_TUNABLES`), A(6,4) at 50x50x3, batch 16,
//! went from 745 to 1,026 images/s on one thread. Dropped tensors return their buffers to a small
//! process-wide pool instead, and `zeros` takes the smallest one that fits.

use std::sync::Mutex;

/// At most this many spare buffers are kept.
const POOL_BUFFERS: usize = 64;

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// A zeroed buffer of `len` values, reusing a pooled one when one is large enough.
pub fn take_zeroed(len: usize) -> Vec<f32> {
    let mut v = take_any(len);
    v.fill(0.0);
    v
}

/// A buffer of `len` values with unspecified (stale but initialised) contents, for callers that
/// overwrite every element.
pub fn take_any(len: usize) -> Vec<f32> {
    let reused = POOL.lock().ok().and_then(|mut pool| {
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len && v.capacity() <= len.saturating_mul(2) + 4096)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i)?;
        Some(pool.swap_remove(best))
    });
    match reused {
        Some(mut v) => {
            v.truncate(len);
            v.resize(len, 0.0);
            v
        }
        None => {
            vec![0.0; len]
        }
    }
}

/// Returns a buffer to the pool (dropped if the pool is full).
pub fn give(v: Vec<f32>) {
    if v.capacity() < 1024 {
        return;
    }
    if let Ok(mut pool) = POOL.lock() {
        if pool.len() < POOL_BUFFERS {
            pool.push(v);
        }
    }
}

/// Frees the pooled spare buffers. The pool lives as long as the process: after a training it
/// holds the buffers of that network's shapes (in a search that trained many networks, 19 to 64 MB
/// of them were still held while the next bench firmware was built). Call when no training runs
/// for a while; the next one refills it.
pub fn release_pool() {
    if let Ok(mut pool) = POOL.lock() {
        *pool = Vec::new();
    }
}

/// Bytes the pool holds in spare buffers (their capacities).
pub fn pooled_bytes() -> usize {
    POOL.lock().map_or(0, |pool| {
        pool.iter()
            .map(|v| v.capacity() * std::mem::size_of::<f32>())
            .sum()
    })
}

/// `n` samples of `h x w x c`, stored NHWC.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn zeros(n: usize, h: usize, w: usize, c: usize) -> Self {
        Tensor {
            n,
            h,
            w,
            c,
            data: take_zeroed(n * h * w * c),
        }
    }

    /// A tensor whose contents are unspecified, for outputs that are written in full.
    pub fn scratch(n: usize, h: usize, w: usize, c: usize) -> Self {
        Tensor {
            n,
            h,
            w,
            c,
            data: take_any(n * h * w * c),
        }
    }

    pub fn from(n: usize, h: usize, w: usize, c: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), n * h * w * c, "tensor data length");
        Tensor { n, h, w, c, data }
    }

    /// Elements per sample.
    pub fn sample_len(&self) -> usize {
        self.h * self.w * self.c
    }

    pub fn same_shape(&self) -> Self {
        Tensor::zeros(self.n, self.h, self.w, self.c)
    }

    /// [`Tensor::scratch`] of this shape.
    pub fn scratch_like(&self) -> Self {
        Tensor::scratch(self.n, self.h, self.w, self.c)
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.data));
    }
}
