//! Fixed-point arithmetic of TF Lite Micro and gemmlowp, bit for bit.

/// gemmlowp's `SaturatingRoundingDoublingHighMul`: `(a * b * 2) >> 32`, rounded half away from
/// zero; saturates the single overflowing case `i32::MIN * i32::MIN`.
#[inline]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = i64::from(a) * i64::from(b);
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // Division truncates toward zero, as in C.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp's `RoundingDivideByPOT`: `x / 2^exponent` rounded half away from zero.
/// `exponent` is clamped to `0..=31`.
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let e = exponent.clamp(0, 31) as u32;
    let mask = ((1i64 << e) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> e) + i32::from(remainder > threshold)
}

/// TF Lite's `MultiplyByQuantizedMultiplier` (the default, double-rounding build): `x * m *
/// 2^(shift - 31)`. A positive `shift` shifts left first (wrapping, where C would overflow).
#[inline]
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let left = shift.clamp(0, 31) as u32;
    let right = (-shift).clamp(0, 31);
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(x.wrapping_shl(left), multiplier),
        right,
    )
}

/// `x * m * 2^(shift - 31)` rounded once: `(x * m + 2^(30 - shift)) >> (31 - shift)` in 64 bits,
/// saturated to `i32`. TF Lite's interpreter requantises its int8 `FULLY_CONNECTED` so (the
/// single-rounding `MultiplyByQuantizedMultiplier`), where its convolutions round twice
/// ([`multiply_by_quantized_multiplier`]): the two differ by one where the first of two
/// roundings lands on a tie (8 of the 3,616 outputs of MLPerf Tiny's autoencoder). `shift` is
/// taken in `-31..=30`.
#[inline]
pub fn multiply_by_quantized_multiplier_once(x: i32, multiplier: i32, shift: i32) -> i32 {
    let p = i64::from(x).wrapping_mul(i64::from(multiplier));
    if (-31..=-1).contains(&shift) {
        // The usual right shift r = -shift: (p + 2^(30 + r)) >> (31 + r) equals
        // ((p >> 31) + 2^(r - 1)) >> r (the added term is a multiple of 2^31), and that is
        // (q >> r) plus bit r - 1 of q: 32-bit work after one 64-bit product. q = p >> 31 fits
        // i32 (|p| < 2^62 for a multiplier below 2^31).
        let (q, r) = ((p >> 31) as i32, (-shift) as u32);
        return (q >> r).wrapping_add((q >> (r - 1)) & 1);
    }
    // 1..=62. |x * m| <= 2^62, so neither the product nor the rounding term can overflow.
    let total = (31 - shift.clamp(-31, 30)) as u32;
    let v = p.wrapping_add(1i64 << (total - 1)) >> total;
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// gemmlowp's `SaturatingRoundingMultiplyByPOT` for a left shift: saturates instead of wrapping.
#[inline]
pub fn saturating_shl(x: i32, exponent: u32) -> i32 {
    let e = exponent.min(31);
    let threshold = ((1i64 << (31 - e)) - 1) as i32;
    if x > threshold {
        i32::MAX
    } else if x < -threshold {
        i32::MIN
    } else {
        x.wrapping_shl(e)
    }
}

/// gemmlowp's `exp_on_interval_between_negative_one_quarter_and_0_excl` on Q0.31.
fn exp_on_interval_between_negative_one_quarter_and_0_excl(a: i32) -> i32 {
    let mul = saturating_rounding_doubling_high_mul;
    const CONSTANT_TERM: i32 = 1_895_147_668; // exp(-1/8)
    const ONE_THIRD: i32 = 715_827_883;
    let x = a.wrapping_add(1 << 28); // a + 1/8
    let x2 = mul(x, x);
    let x3 = mul(x2, x);
    let x4 = mul(x2, x2);
    let x4_over_4 = rounding_divide_by_pot(x4, 2);
    let poly = rounding_divide_by_pot(
        mul(x4_over_4.wrapping_add(x3), ONE_THIRD).wrapping_add(x2),
        1,
    );
    CONSTANT_TERM.wrapping_add(mul(CONSTANT_TERM, x.wrapping_add(poly)))
}

/// gemmlowp's `exp_on_negative_values` for an input with 5 integer bits (Q5.26), result in Q0.31.
/// Not inlined: softmax calls it twice per value, on a handful of values, and each inlined copy
/// was about 1 KB of code at opt-level 3.
#[inline(never)]
pub fn exp_on_negative_values_q5(a: i32) -> i32 {
    const FRACTIONAL_BITS: u32 = 26;
    let one_quarter: i32 = 1 << (FRACTIONAL_BITS - 2);
    let mask = one_quarter - 1;
    let a_mod_quarter_minus_one_quarter = (a & mask).wrapping_sub(one_quarter);
    let mut result = exp_on_interval_between_negative_one_quarter_and_0_excl(saturating_shl(
        a_mod_quarter_minus_one_quarter,
        5,
    ));
    let remainder = a_mod_quarter_minus_one_quarter.wrapping_sub(a);
    // exp(-2^k) for k = -2..=4, in Q0.31.
    const BARREL: [(i32, i32); 7] = [
        (-2, 1_672_461_947),
        (-1, 1_302_514_674),
        (0, 790_015_084),
        (1, 290_630_308),
        (2, 39_332_535),
        (3, 720_401),
        (4, 242),
    ];
    for (exponent, multiplier) in BARREL {
        let bit = 1i32.wrapping_shl((FRACTIONAL_BITS as i32 + exponent) as u32);
        if remainder & bit != 0 {
            result = saturating_rounding_doubling_high_mul(result, multiplier);
        }
    }
    if a == 0 {
        i32::MAX
    } else {
        result
    }
}

/// gemmlowp's `one_over_one_plus_x_for_x_in_0_1`: Q0.31 in, Q0.31 out (Newton-Raphson in Q2.29).
pub fn one_over_one_plus_x_for_x_in_0_1(a: i32) -> i32 {
    let mul = saturating_rounding_doubling_high_mul;
    // RoundingHalfSum(a, One) with One = i32::MAX in Q0.31.
    let sum = i64::from(a) + i64::from(i32::MAX);
    let sign: i64 = if sum >= 0 { 1 } else { -1 };
    let half_denominator = ((sum + sign) / 2) as i32;
    const C48_OVER_17: i32 = 1_515_870_810;
    const CNEG32_OVER_17: i32 = -1_010_580_540;
    const ONE_Q2: i32 = 1 << 29;
    let mut x = C48_OVER_17.wrapping_add(mul(half_denominator, CNEG32_OVER_17));
    for _ in 0..3 {
        let half_denominator_times_x = mul(half_denominator, x);
        let one_minus = ONE_Q2.wrapping_sub(half_denominator_times_x);
        x = x.wrapping_add(saturating_shl(mul(x, one_minus), 2));
    }
    // ExactMulByPot<-1> then Rescale to Q0.31: a saturating left shift by 1.
    saturating_shl(x, 1)
}

/// TF Lite's `GetReciprocal`: `1 / x` for `x` with `integer_digits` integer bits, as a Q0.31
/// value and the number of bits it is over one.
pub fn reciprocal(x: i32, integer_digits: i32) -> (i32, i32) {
    let headroom_plus_one = (x as u32).leading_zeros();
    let num_bits_over_unit = integer_digits - headroom_plus_one as i32;
    let shifted_sum_minus_one =
        ((x as u32).wrapping_shl(headroom_plus_one)).wrapping_sub(1u32 << 31) as i32;
    (
        one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one),
        num_bits_over_unit,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_matches_tflite() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(4, 1), 2);
        assert_eq!(rounding_divide_by_pot(-7, 2), -2);
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        assert_eq!(
            saturating_rounding_doubling_high_mul(1 << 30, 1 << 30),
            1 << 29
        );
        // 100 * 0.5 = 50 with (2^30, 0)
        assert_eq!(multiply_by_quantized_multiplier(100, 1 << 30, 0), 50);
        // gemmlowp's nudge makes an exact negative tie round toward zero: -1.5 -> -1.
        assert_eq!(multiply_by_quantized_multiplier(-3, 1 << 30, 0), -1);
        // ... while RoundingDivideByPOT rounds ties away from zero: -6 * 2^-2 = -1.5 -> -2.
        assert_eq!(multiply_by_quantized_multiplier(-6, 1 << 30, -1), -2);
        assert_eq!(multiply_by_quantized_multiplier(3, 1 << 30, 2), 6);
    }

    #[test]
    fn rounding_once_matches_tflite_fully_connected() {
        // Two outputs of MLPerf Tiny's autoencoder's last layer (tests/fixtures/tflite): the
        // exact values are 12.4996 and 39.4997; TF Lite's interpreter gives 12 and 39, rounding
        // twice gives 13 and 40.
        assert_eq!(
            multiply_by_quantized_multiplier_once(12342, 1113548295, -9),
            12
        );
        assert_eq!(multiply_by_quantized_multiplier(12342, 1113548295, -9), 13);
        assert_eq!(
            multiply_by_quantized_multiplier_once(39732, 1093083086, -9),
            39
        );
        assert_eq!(multiply_by_quantized_multiplier(39732, 1093083086, -9), 40);
        // Ties round up (toward +infinity): -1.5 -> -1, 1.5 -> 2.
        assert_eq!(multiply_by_quantized_multiplier_once(-3, 1 << 30, 0), -1);
        assert_eq!(multiply_by_quantized_multiplier_once(3, 1 << 30, 0), 2);
        // Left shifts, and saturation instead of wrapping.
        assert_eq!(multiply_by_quantized_multiplier_once(3, 1 << 30, 2), 6);
        assert_eq!(
            multiply_by_quantized_multiplier_once(i32::MAX, i32::MAX, 30),
            i32::MAX
        );
        assert_eq!(
            multiply_by_quantized_multiplier_once(i32::MIN, i32::MAX, 30),
            i32::MIN
        );
    }

    proptest::proptest! {
        /// Rounded once: the nearest integer to `x * m * 2^(shift - 31)`, ties up, saturated.
        #[test]
        fn rounding_once_is_the_nearest_integer(x: i32, m in 0i32..=i32::MAX, shift in -31i32..=30) {
            // v = x m 2^(shift + 32), so x m 2^(shift - 31) = v / 2^63, and the nearest integer
            // (ties up) is floor((v + 2^62) / 2^63).
            let v = (i128::from(x) * i128::from(m)) << (shift + 32) as u32;
            let want = ((v + (1i128 << 62)) >> 63)
                .clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32;
            proptest::prop_assert_eq!(multiply_by_quantized_multiplier_once(x, m, shift), want);
        }
    }

    #[test]
    #[allow(clippy::float_arithmetic)]
    fn exp_is_close_to_exp() {
        for i in 0..200 {
            let a = -(i64::from(i) * (1 << 26) / 10) as i32; // -i/10 in Q5.26
            let e = exp_on_negative_values_q5(a) as f64 / 2147483648.0;
            let want = libm_exp(-(i as f64) / 10.0);
            assert!(
                (e - want).abs() < 1e-6,
                "exp({}) = {e}, want {want}",
                -(i as f64) / 10.0
            );
        }
    }

    #[allow(clippy::float_arithmetic)]
    fn libm_exp(x: f64) -> f64 {
        // Taylor series; enough terms for |x| <= 20.
        let (mut sum, mut term) = (1.0f64, 1.0f64);
        for n in 1..200 {
            term *= x / n as f64;
            sum += term;
        }
        sum
    }

    #[test]
    #[allow(clippy::float_arithmetic)]
    fn reciprocal_is_close() {
        for v in [1.0f64, 1.5, 3.0, 7.25, 100.0, 4000.0] {
            let x = (v * (1 << 19) as f64) as i32; // Q12.19
            let (r, bits) = reciprocal(x, 12);
            let got = r as f64 / 2147483648.0 / 2f64.powi(bits);
            assert!((got - 1.0 / v).abs() / (1.0 / v) < 1e-6, "1/{v}: {got}");
        }
    }
}
