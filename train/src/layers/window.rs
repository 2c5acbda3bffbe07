//! The window geometry of a convolution or pool over one input shape: im2col and its
//! inverse, the depthwise loops, the pool spans.

use super::*;

/// The window geometry of one convolution or pool over one input shape: im2col and its inverse,
/// the depthwise loops, the pool spans.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Window {
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) c: usize,
    pub(super) k: [usize; 2],
    pub(super) stride: usize,
    pub(super) pad: (usize, usize),
    pub(super) out: (usize, usize),
}

impl Window {
    /// A `k` window with `stride` and `padding` over the samples of `x`: output side and padding
    /// before, as the int8 runtime computes them.
    pub(super) fn of(x: &Tensor, k: [usize; 2], stride: usize, padding: Padding) -> Self {
        let (oh, pt) = geometry(x.h, k[0], stride, padding);
        let (ow, pl) = geometry(x.w, k[1], stride, padding);
        Window {
            h: x.h,
            w: x.w,
            c: x.c,
            k,
            stride,
            pad: (pt, pl),
            out: (oh, ow),
        }
    }

    pub(super) fn kdim(&self) -> usize {
        self.k[0] * self.k[1] * self.c
    }

    /// For each output position and kernel row inside the input, calls
    /// `f(col offset, input offset, len)`: a run of `len` values that is contiguous in both (the
    /// taps of one kernel row are neighbours in the input whatever the stride); taps in the
    /// padding are skipped.
    #[inline]
    pub(super) fn for_runs(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (oh, ow) = self.out;
        let kd = self.kdim();
        let c = self.c;
        for oy in 0..oh {
            for ky in 0..self.k[0] {
                let Some(iy) = (oy * self.stride + ky)
                    .checked_sub(self.pad.0)
                    .filter(|&v| v < self.h)
                else {
                    continue;
                };
                for ox in 0..ow {
                    // Taps kx in [k0, k1) fall inside the input row.
                    let left = ox * self.stride;
                    let k0 = self.pad.1.saturating_sub(left);
                    let k1 = (self.w + self.pad.1).saturating_sub(left).min(self.k[1]);
                    if k0 >= k1 {
                        continue;
                    }
                    let ix = left + k0 - self.pad.1;
                    f(
                        (oy * ow + ox) * kd + (ky * self.k[1] + k0) * c,
                        (iy * self.w + ix) * c,
                        (k1 - k0) * c,
                    );
                }
            }
        }
    }

    /// Unfolds one sample into `cols` (`oh*ow` rows of `kd`); padding taps become zeros.
    pub(super) fn im2col(&self, x: &[f32], cols: &mut [f32]) {
        // Only windows that reach into the padding need zeros; the rest is overwritten.
        let interior = |o: usize, k: usize, pad: usize, len: usize| {
            o * self.stride >= pad && o * self.stride + k <= len + pad
        };
        let kd = self.kdim();
        for oy in 0..self.out.0 {
            for ox in 0..self.out.1 {
                if !(interior(oy, self.k[0], self.pad.0, self.h)
                    && interior(ox, self.k[1], self.pad.1, self.w))
                {
                    let row = (oy * self.out.1 + ox) * kd;
                    cols[row..row + kd].fill(0.0);
                }
            }
        }
        self.for_runs(|dst, src, len| {
            for (d, s) in cols[dst..dst + len].iter_mut().zip(&x[src..src + len]) {
                *d = *s;
            }
        });
    }

    /// Adds `dcols` back onto one sample's input gradient.
    pub(super) fn col2im(&self, dcols: &[f32], dx: &mut [f32]) {
        self.for_runs(|src, dst, len| {
            for (d, s) in dx[dst..dst + len].iter_mut().zip(&dcols[src..src + len]) {
                *d += s;
            }
        });
    }
}

/// The depthwise convolution's loops (multiplier `m`).
impl Window {
    /// The outputs `[lo, hi)` (of `n`) whose kernel tap `k` falls inside an input of side `len`.
    #[inline]
    pub(super) fn outputs_inside(
        &self,
        k: usize,
        pad: usize,
        len: usize,
        n: usize,
    ) -> (usize, usize) {
        let s = self.stride;
        // o * s + k - pad must lie in [0, len).
        let lo = pad.saturating_sub(k).div_ceil(s);
        let hi = (len + pad).saturating_sub(k).div_ceil(s);
        (lo.min(n), hi.min(n))
    }

    /// For each output row `oy` and each kernel tap `(ky, kx)` inside the input, calls
    /// `f(tap, first output pixel, first input pixel, count)`: `count` outputs in a row, output
    /// pixel `o + j` reading input pixel `i + j * stride`. Whole runs instead of single taps keep
    /// the index arithmetic out of the inner loops.
    #[inline]
    pub(super) fn for_tap_runs(&self, mut f: impl FnMut(usize, usize, usize, usize)) {
        let (oh, ow) = self.out;
        let xr: Vec<(usize, usize)> = (0..self.k[1])
            .map(|kx| self.outputs_inside(kx, self.pad.1, self.w, ow))
            .collect();
        for oy in 0..oh {
            for ky in 0..self.k[0] {
                let Some(iy) = (oy * self.stride + ky)
                    .checked_sub(self.pad.0)
                    .filter(|&v| v < self.h)
                else {
                    continue;
                };
                for (kx, &(ox0, ox1)) in xr.iter().enumerate() {
                    if ox0 < ox1 {
                        let ix0 = ox0 * self.stride + kx - self.pad.1;
                        f(
                            ky * self.k[1] + kx,
                            oy * ow + ox0,
                            iy * self.w + ix0,
                            ox1 - ox0,
                        );
                    }
                }
            }
        }
    }

    /// One sample: `y = bias + depthwise(x, w)`.
    pub(super) fn depthwise(&self, m: usize, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
        let (c, s) = (self.c, self.stride);
        let oc = c * m;
        for row in y.chunks_exact_mut(oc) {
            row.copy_from_slice(bias);
        }
        self.for_tap_runs(|t, o, i, n| {
            let wr = &w[t * oc..(t + 1) * oc];
            let ys = y[o * oc..(o + n) * oc].chunks_exact_mut(oc);
            let xs = x[i * c..].chunks(c).step_by(s);
            for (yr, xr) in ys.zip(xs) {
                if m == 1 {
                    for ((y, x), w) in yr.iter_mut().zip(xr).zip(wr) {
                        *y += x * w;
                    }
                } else {
                    for ((ys, ws), x) in yr.chunks_exact_mut(m).zip(wr.chunks_exact(m)).zip(xr) {
                        for (y, w) in ys.iter_mut().zip(ws) {
                            *y += x * w;
                        }
                    }
                }
            }
        });
    }

    /// One sample's depthwise gradients: adds into `dw`, and into `dx` when given.
    pub(super) fn depthwise_backward(
        &self,
        m: usize,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        dw: &mut [f32],
        mut dx: Option<&mut [f32]>,
    ) {
        let (c, s) = (self.c, self.stride);
        let oc = c * m;
        self.for_tap_runs(|t, o, i, n| {
            let (wr, dwr) = (&w[t * oc..(t + 1) * oc], &mut dw[t * oc..(t + 1) * oc]);
            let dys = dy[o * oc..(o + n) * oc].chunks_exact(oc);
            for (dyr, xr) in dys.clone().zip(x[i * c..].chunks(c).step_by(s)) {
                if m == 1 {
                    for ((g, x), d) in dwr.iter_mut().zip(xr).zip(dyr) {
                        *g += x * d;
                    }
                } else {
                    for ((gs, ds), x) in dwr.chunks_exact_mut(m).zip(dyr.chunks_exact(m)).zip(xr) {
                        for (g, d) in gs.iter_mut().zip(ds) {
                            *g += x * d;
                        }
                    }
                }
            }
            if let Some(dx) = dx.as_deref_mut() {
                for (dyr, dxr) in dys.zip(dx[i * c..].chunks_mut(c).step_by(s)) {
                    if m == 1 {
                        for ((g, w), d) in dxr.iter_mut().zip(wr).zip(dyr) {
                            *g += w * d;
                        }
                    } else {
                        for ((g, ws), ds) in dxr
                            .iter_mut()
                            .zip(wr.chunks_exact(m))
                            .zip(dyr.chunks_exact(m))
                        {
                            *g += ws.iter().zip(ds).map(|(w, d)| w * d).sum::<f32>();
                        }
                    }
                }
            }
        });
    }
}
