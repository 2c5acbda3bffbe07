//! Data movement without arithmetic: spatial padding and channel concatenation (TF Lite's `PAD`
//! / `PADV2` and `CONCATENATION`). Output quantisation equals the inputs', so values are copied
//! unchanged. Both are plain copies, fast enough as written: generated code calls them directly.

/// Spatial padding of an NHWC tensor: `pad_top` rows above, `pad_left` columns before; the rest of
/// the `out_h x out_w` output is filled with `value` (TF Lite pads with the zero point, or with
/// PADV2's constant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PadDims {
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub value: i8,
}

/// Pads `input` into `output` (see [`PadDims`]).
pub fn pad(input: &[i8], output: &mut [i8], d: &PadDims) {
    let n = d.out_h * d.out_w * d.channels;
    if let Some(y) = output.get_mut(..n) {
        y.fill(d.value);
    }
    let row = d.in_w * d.channels;
    if row == 0 {
        return;
    }
    for (iy, src) in input.chunks_exact(row).take(d.in_h).enumerate() {
        let start = ((iy + d.pad_top) * d.out_w + d.pad_left) * d.channels;
        if let Some(dst) = output.get_mut(start..start + row) {
            for (o, &v) in dst.iter_mut().zip(src) {
                *o = v;
            }
        }
    }
}

/// Concatenates NHWC tensors of one height and width along channels: input `i` has
/// `channels[i]` channels, the output their sum. `inputs` and `channels` have one entry per input.
pub fn concat_channels(inputs: &[&[i8]], channels: &[usize], output: &mut [i8]) {
    let total: usize = channels.iter().sum();
    if total == 0 {
        return;
    }
    for (p, px) in output.chunks_exact_mut(total).enumerate() {
        let mut at = 0;
        for (x, &c) in inputs.iter().zip(channels) {
            if let (Some(src), Some(dst)) = (x.get(p * c..p * c + c), px.get_mut(at..at + c)) {
                for (o, &v) in dst.iter_mut().zip(src) {
                    *o = v;
                }
            }
            at += c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_rows_and_columns_with_the_value() {
        // 2x2x1 input, one row above, two below, one column left, none right: 5x3.
        let x = [1i8, 2, 3, 4];
        let d = PadDims {
            in_h: 2,
            in_w: 2,
            channels: 1,
            out_h: 5,
            out_w: 3,
            pad_top: 1,
            pad_left: 1,
            value: -7,
        };
        let mut y = [0i8; 15];
        pad(&x, &mut y, &d);
        assert_eq!(y, [-7, -7, -7, -7, 1, 2, -7, 3, 4, -7, -7, -7, -7, -7, -7]);
    }

    #[test]
    fn concatenates_channels_per_pixel() {
        let a = [1i8, 2, 3, 4]; // 2 pixels x 2 channels
        let b = [9i8, 8]; // 2 pixels x 1 channel
        let mut y = [0i8; 8];
        concat_channels(&[&a, &b, &b], &[2, 1, 1], &mut y);
        assert_eq!(y, [1, 2, 9, 9, 3, 4, 8, 8]);
    }

    #[test]
    fn short_slices_give_wrong_values_not_panics() {
        let mut y = [0i8; 3];
        concat_channels(&[&[1, 2]], &[4], &mut y);
        pad(
            &[1; 3],
            &mut y,
            &PadDims {
                in_h: 9,
                in_w: 9,
                channels: 9,
                out_h: 99,
                out_w: 99,
                pad_top: 50,
                pad_left: 50,
                value: 0,
            },
        );
    }
}
