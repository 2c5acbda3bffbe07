//! The one call of the `gemm` crate (its raw-pointer API): every index checked first.

/// `c[m x n] = a[m x k] * b[k x n] + beta * c` (beta 0 or 1), with explicit row and column
/// strides.
///
/// The one place the engine calls the `gemm` crate's raw-pointer API: every index the call can
/// touch is checked against the slice lengths first. (`gemm` measured 2-3x faster than
/// `matrixmultiply` on these tall, narrow products: 15 against 5 GMAC/s for the first layer.)
///
/// The same bits on every machine: `gemm` adds each output's products in depth blocks whose
/// length its general path takes from the L1 cache's size and ways (512 on a 32 KiB 8-way L1,
/// 1024 on a 48 KiB 12-way one), so the same seed trained a slightly different network on
/// another processor. Here the depth is cut into the blocks `gemm` uses on a 32 KiB 8-way L1
/// ([`depth_blocks`]), one call each, none longer than `gemm`'s shortest block: the sums are those
/// of this machine's kind on every x86-64 processor with FMA. (Its other paths, for small or
/// one-row products, block by the shape alone.)
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
    (rsc, csc): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| {
        (rows.saturating_sub(1)) * rs + (cols.saturating_sub(1)) * cs
    };
    assert!(
        k == 0 || (last(m, k, rsa, csa) < a.len() && last(k, n, rsb, csb) < b.len()),
        "gemm operand out of bounds"
    );
    assert!(last(m, n, rsc, csc) < c.len(), "gemm output out of bounds");
    if k == 0 {
        if beta == 0.0 {
            for i in 0..m {
                for j in 0..n {
                    c[i * rsc + j * csc] = 0.0;
                }
            }
        }
        return;
    }
    let s = |v: usize| v as isize;
    let mut start = 0;
    for (i, len) in depth_blocks((m, k, n), (rsa, csa), (rsb, csb), (rsc, csc)).enumerate() {
        let first = i == 0;
        #[allow(unsafe_code)]
        // SAFETY: the asserts above keep every element the call reads or writes inside the
        // slices (depth `start..start + len` lies in `0..k`); `c` does not alias `a` or `b` (it is
        // a distinct `&mut`); no parallelism inside the call.
        unsafe {
            gemm::gemm(
                m,
                n,
                len,
                c.as_mut_ptr(),
                s(csc),
                s(rsc),
                !first || beta != 0.0,
                a.as_ptr().add(start * csa),
                s(csa),
                s(rsa),
                b.as_ptr().add(start * rsb),
                s(csb),
                s(rsb),
                if first { beta } else { 1.0 },
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        start += len;
    }
}

/// The depth blocks of one product, as lengths: where `gemm` 0.18's general path would cut the
/// depth `k` by the L1 cache (`m` or `n` above 64, and none of its other paths: not `k` at most 2,
/// not a vector product, nor, on x86 with FMA, a dot-product kernel's at most 256 outputs), blocks
/// of equal length (to one) of at most 512, as `gemm` cuts them on a 32 KiB 8-way L1; else the
/// whole depth, which `gemm` blocks by the shape alone.
fn depth_blocks(
    (m, k, n): (usize, usize, usize),
    (rsa, csa): (usize, usize),
    (rsb, csb): (usize, usize),
    (rsc, csc): (usize, usize),
) -> impl Iterator<Item = usize> {
    const LONGEST: usize = 512;
    let dot = cfg!(any(target_arch = "x86", target_arch = "x86_64"))
        && csa == 1
        && rsb == 1
        && m * n <= 256;
    let vector = (n <= 1 && ((rsa == 1 && rsc == 1) || (csa == 1 && rsb == 1)))
        || (m <= 1 && ((csb == 1 && csc == 1) || (rsb == 1 && csa == 1)));
    let by_cache = (m > 64 || n > 64) && k > 2 && !dot && !vector;
    let parts = if by_cache { k.div_ceil(LONGEST) } else { 1 };
    let len = k.div_ceil(parts);
    (0..parts).map(move |i| len.min(k - i * len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A product whose depth `gemm` would cut by the L1 cache: every output is the sum of three
    /// fused multiply-add chains over depths 0..434, 434..868 and 868..1300 (as on a 32 KiB
    /// 8-way L1), added in that order, whatever this processor's L1. Only where `gemm` uses FMA
    /// (x86-64 with FMA, aarch64), whose chains `f32::mul_add` rounds the same way.
    #[test]
    fn a_deep_product_sums_in_the_same_blocks_on_every_machine() {
        #[cfg(target_arch = "x86_64")]
        if !std::arch::is_x86_feature_detected!("fma") {
            eprintln!("no FMA: gemm rounds each product on its own here; not checked");
            return;
        }
        if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            return;
        }
        let (m, k, n) = (70, 1300, 9);
        let mut state = 0x9e37_79b9u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
        let mut c = vec![0.0f32; m * n];
        gemm(m, k, n, &a, (k, 1), &b, (n, 1), 0.0, &mut c, (n, 1));
        for i in 0..m {
            for j in 0..n {
                let chain = |r: std::ops::Range<usize>| {
                    r.fold(0.0f32, |acc, d| a[i * k + d].mul_add(b[d * n + j], acc))
                };
                let want = chain(0..434) + chain(434..868) + chain(868..1300);
                assert_eq!(c[i * n + j].to_bits(), want.to_bits(), "output ({i}, {j})");
            }
        }
        // And with `beta` 1: the first block adds to what is there.
        let mut c2 = vec![1.0f32; m * n];
        gemm(m, k, n, &a, (k, 1), &b, (n, 1), 1.0, &mut c2, (n, 1));
        let chain =
            |r: std::ops::Range<usize>| r.fold(0.0f32, |acc, d| a[d].mul_add(b[d * n], acc));
        let want = 1.0 + chain(0..434) + chain(434..868) + chain(868..1300);
        assert_eq!(c2[0].to_bits(), want.to_bits());
    }

    #[test]
    fn depth_blocks_cut_like_gemm_on_a_32_kib_l1() {
        let blocks = |m, k, n, a, b, c| depth_blocks((m, k, n), a, b, c).collect::<Vec<_>>();
        let row = |cols| (cols, 1);
        assert_eq!(
            blocks(70, 1300, 9, row(1300), row(9), row(9)),
            [434, 434, 432]
        );
        assert_eq!(blocks(70, 1024, 9, row(1024), row(9), row(9)), [512, 512]);
        assert_eq!(blocks(70, 512, 9, row(512), row(9), row(9)), [512]);
        assert_eq!(blocks(70, 513, 9, row(513), row(9), row(9)), [257, 256]);
        // Small products: `gemm` blocks them by the shape.
        assert_eq!(blocks(64, 1300, 64, row(1300), row(64), row(64)), [1300]);
        // One output column read along `a`'s rows: a vector product.
        assert_eq!(blocks(70, 1300, 1, row(1300), row(1), row(1)), [1300]);
    }
}
