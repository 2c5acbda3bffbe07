//! The one call of the `gemm` crate (its raw-pointer API): every index checked first.

/// `c[m x n] = a[m x k] * b[k x n] + beta * c` (beta 0 or 1), with explicit row and column
/// strides.
///
/// The one place the engine calls the `gemm` crate's raw-pointer API: every index the call can
/// touch is checked against the slice lengths first. (`gemm` measured 2-3x faster than
/// `matrixmultiply` on these tall, narrow products: 15 against 5 GMAC/s for the first layer.)
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
    #[allow(unsafe_code)]
    // SAFETY: the asserts above keep every element the call reads or writes inside the slices;
    // `c` does not alias `a` or `b` (it is a distinct `&mut`); no parallelism inside the call.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            s(csc),
            s(rsc),
            beta != 0.0,
            a.as_ptr(),
            s(csa),
            s(rsa),
            b.as_ptr(),
            s(csb),
            s(rsb),
            beta,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
