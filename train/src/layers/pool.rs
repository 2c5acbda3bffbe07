//! [`Pool`] (max and average) and [`GlobalAvgPool`].

use super::*;

/// Max or average pooling (average excludes padding, as the int8 runtime).
#[derive(Debug, Clone)]
pub struct Pool {
    pub max: bool,
    pub k: [usize; 2],
    pub stride: usize,
    pub padding: Padding,
    /// Max pooling: per output element, the winner's index within its sample.
    pub(super) winners: Vec<u32>,
    /// The last input's batch size and window geometry.
    n: usize,
    win: Window,
}

impl Pool {
    pub fn new(max: bool, k: [usize; 2], stride: usize, padding: Padding) -> Self {
        Pool {
            max,
            k,
            stride,
            padding,
            winners: Vec::new(),
            n: 0,
            win: Window::default(),
        }
    }

    /// The input rows and columns of output `(oy, ox)`'s window, clipped to the input.
    fn span(&self, oy: usize, ox: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let Window { h, w, pad, .. } = self.win;
        let clip = |o: usize, k: usize, pad: usize, len: usize| {
            let lo = (o * self.stride).saturating_sub(pad);
            let hi = (o * self.stride + k).saturating_sub(pad).min(len);
            lo..hi.max(lo)
        };
        (clip(oy, self.k[0], pad.0, h), clip(ox, self.k[1], pad.1, w))
    }
}

impl Layer for Pool {
    fn view(&self) -> View<'_> {
        View::Pool(self)
    }

    fn forward(&mut self, x: &Tensor, _train: bool) -> Tensor {
        let win = Window::of(x, self.k, self.stride, self.padding);
        (self.n, self.win) = (x.n, win);
        let ((oh, ow), (pt, pl)) = (win.out, win.pad);
        let mut y = Tensor::zeros(x.n, oh, ow, x.c);
        let (c, sl, ol) = (x.c, x.sample_len(), oh * ow * x.c);
        if ol == 0 || sl == 0 {
            return y;
        }
        let mut winners = std::mem::take(&mut self.winners);
        winners.resize(if self.max { y.data.len() } else { 0 }, 0);
        if self.max && self.k == [2, 2] && self.stride == 2 && (pt, pl) == (0, 0) {
            let w = x.w;
            y.data
                .par_chunks_mut(ol)
                .zip(winners.par_chunks_mut(ol))
                .zip(x.data.par_chunks(sl))
                .for_each(|((ys, win), xs)| max_pool_2x2(xs, w, c, oh, ow, ys, win));
            self.winners = winners;
            return y;
        }
        let this = &*self;
        let kernel = |ys: &mut [f32], win: &mut [u32], xs: &[f32]| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (rows, cols) = this.span(oy, ox);
                    let o = (oy * ow + ox) * c;
                    let out = &mut ys[o..o + c];
                    let taps = rows.len() * cols.len();
                    if taps == 0 {
                        continue;
                    }
                    let mut first = true;
                    for iy in rows {
                        for ix in cols.clone() {
                            let i = (iy * x.w + ix) * c;
                            let px = &xs[i..i + c];
                            if this.max {
                                let at = &mut win[o..o + c];
                                for ch in 0..c {
                                    if first || px[ch] > out[ch] {
                                        out[ch] = px[ch];
                                        at[ch] = (i + ch) as u32;
                                    }
                                }
                            } else {
                                add_into(out, px);
                            }
                            first = false;
                        }
                    }
                    if !this.max {
                        out.iter_mut().for_each(|v| *v /= taps as f32);
                    }
                }
            }
        };
        if self.max {
            y.data
                .par_chunks_mut(ol)
                .zip(winners.par_chunks_mut(ol))
                .zip(x.data.par_chunks(sl))
                .for_each(|((ys, win), xs)| kernel(ys, win, xs));
        } else {
            y.data
                .par_chunks_mut(ol)
                .zip(x.data.par_chunks(sl))
                .for_each(|(ys, xs)| kernel(ys, &mut [], xs));
        }
        self.winners = winners;
        y
    }

    fn backward(&mut self, dy: &Tensor) -> Tensor {
        let Window {
            h,
            w,
            c,
            out: (oh, ow),
            ..
        } = self.win;
        let n = self.n;
        let mut dx = Tensor::zeros(n, h, w, c);
        let (sl, ol) = (h * w * c, oh * ow * c);
        if ol == 0 || sl == 0 {
            return dx;
        }
        if self.max {
            dx.data
                .par_chunks_mut(sl)
                .zip(dy.data.par_chunks(ol))
                .zip(self.winners.par_chunks(ol))
                .for_each(|((dxs, dys), win)| {
                    for (&d, &i) in dys.iter().zip(win) {
                        if let Some(v) = dxs.get_mut(i as usize) {
                            *v += d;
                        }
                    }
                });
        } else {
            let this = &*self;
            dx.data
                .par_chunks_mut(sl)
                .zip(dy.data.par_chunks(ol))
                .for_each(|(dxs, dys)| {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let (rows, cols) = this.span(oy, ox);
                            let taps = (rows.len() * cols.len()) as f32;
                            if taps == 0.0 {
                                continue;
                            }
                            for iy in rows {
                                for ix in cols.clone() {
                                    for ch in 0..c {
                                        dxs[(iy * w + ix) * c + ch] +=
                                            dys[(oy * ow + ox) * c + ch] / taps;
                                    }
                                }
                            }
                        }
                    }
                });
        }
        dx
    }
}

/// 2x2 max pooling with stride 2 and no padding over one sample (`w` wide, `c` channels):
/// first the larger of each pair of rows, then of each pair of columns. Ties keep the first
/// element in row-major order, as the general path.
fn max_pool_2x2(
    xs: &[f32],
    w: usize,
    c: usize,
    oh: usize,
    ow: usize,
    ys: &mut [f32],
    win: &mut [u32],
) {
    let span = 2 * ow * c;
    let mut best = vec![0.0f32; span];
    let mut lower = vec![false; span];
    for oy in 0..oh {
        let r0 = &xs[2 * oy * w * c..][..span];
        let r1 = &xs[(2 * oy + 1) * w * c..][..span];
        for i in 0..span {
            let down = r1[i] > r0[i];
            lower[i] = down;
            best[i] = if down { r1[i] } else { r0[i] };
        }
        let out = &mut ys[oy * ow * c..][..ow * c];
        let at = &mut win[oy * ow * c..][..ow * c];
        for ox in 0..ow {
            for ch in 0..c {
                let (l, r) = (2 * ox * c + ch, (2 * ox + 1) * c + ch);
                // Row-major order of the window: (0,0) (0,1) (1,0) (1,1).
                // On a tie the right one wins only if it is from the upper row and the left one
                // from the lower (it comes first in row-major order). Written without branches:
                // the comparisons are random, and mispredicted branches cost more than the work.
                let (a, b) = (best[l], best[r]);
                let pick_right = (b > a) | ((b == a) & lower[l] & !lower[r]);
                let (v, col, row_down) = if pick_right {
                    (b, 2 * ox + 1, lower[r])
                } else {
                    (a, 2 * ox, lower[l])
                };
                out[ox * c + ch] = v;
                at[ox * c + ch] = (((2 * oy + usize::from(row_down)) * w + col) * c + ch) as u32;
            }
        }
    }
}

/// Global average pooling: `n x h x w x c` to `n x 1 x 1 x c`.
#[derive(Debug, Clone, Default)]
pub struct GlobalAvgPool {
    x_shape: (usize, usize, usize, usize),
}

impl Layer for GlobalAvgPool {
    fn view(&self) -> View<'_> {
        View::GlobalAvgPool
    }

    fn forward(&mut self, x: &Tensor, _train: bool) -> Tensor {
        self.x_shape = (x.n, x.h, x.w, x.c);
        let hw = (x.h * x.w) as f32;
        let mut y = Tensor::zeros(x.n, 1, 1, x.c);
        if x.c == 0 || hw == 0.0 {
            return y;
        }
        for (ys, xs) in y
            .data
            .chunks_exact_mut(x.c)
            .zip(x.data.chunks_exact(x.sample_len()))
        {
            for row in xs.chunks_exact(x.c) {
                add_into(ys, row);
            }
            ys.iter_mut().for_each(|v| *v /= hw);
        }
        y
    }

    fn backward(&mut self, dy: &Tensor) -> Tensor {
        let (n, h, w, c) = self.x_shape;
        let hw = (h * w) as f32;
        let mut dx = Tensor::zeros(n, h, w, c);
        if c == 0 || hw == 0.0 {
            return dx;
        }
        for (dxs, dys) in dx
            .data
            .chunks_exact_mut(h * w * c)
            .zip(dy.data.chunks_exact(c))
        {
            for row in dxs.chunks_exact_mut(c) {
                for (d, g) in row.iter_mut().zip(dys) {
                    *d = g / hw;
                }
            }
        }
        dx
    }
}
