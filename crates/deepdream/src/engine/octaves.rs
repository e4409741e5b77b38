//! The octave pyramid of the 2015 algorithm: the image at several scales, the smallest
//! dreamed first, and the detail each octave adds carried up to the next (the dream's loop
//! is `Dreamer::dream_watched`'s).

use burn::tensor::Tensor;

use crate::engine::transform;

/// The sizes `(height, width)` of the octaves of a `width`x`height` image, smallest first:
/// up to `octaves` of them, each `scale` times smaller than the next (rounded as
/// `scipy.ndimage.zoom` rounds), none with a side under `min_side`. `None` when the image
/// itself is smaller than `min_side`.
pub fn sizes(
    width: usize,
    height: usize,
    octaves: usize,
    scale: f32,
    min_side: usize,
) -> Option<Vec<(usize, usize)>> {
    let (mut h, mut w) = (height, width);
    if h.min(w) < min_side {
        return None;
    }
    let mut sizes = vec![(h, w)];
    for _ in 1..octaves {
        // scipy.ndimage.zoom's output size: round(size * zoom).
        let (previous_h, previous_w) = (h, w);
        h = (h as f64 / scale as f64).round() as usize;
        w = (w as f64 / scale as f64).round() as usize;
        // Rounding stops shrinking small sizes (5 / 1.1 rounds to 5 again).
        if h.min(w) < min_side || (h, w) == (previous_h, previous_w) {
            break;
        }
        sizes.push((h, w));
    }
    sizes.reverse();
    Some(sizes)
}

/// The octaves' bases of `image` at `sizes` (smallest first, the last `image`'s own size):
/// each one the next larger one scaled down.
pub fn bases(image: Tensor<4>, sizes: &[(usize, usize)]) -> Vec<Tensor<4>> {
    let mut bases = vec![image];
    for &(h, w) in sizes.iter().rev().skip(1) {
        let previous = bases.last().expect("at least one octave").clone();
        bases.push(resize(previous, h, w));
    }
    bases.reverse();
    bases
}

/// An octave's start: its `base`, plus the detail the octave before added (`before`: that
/// octave's dream and its base; the dream less the base) scaled up to it.
pub fn start(base: &Tensor<4>, before: Option<(&Tensor<4>, &Tensor<4>)>) -> Tensor<4> {
    match before {
        Some((dreamed, previous_base)) => {
            let [_, _, h, w] = base.dims();
            let detail = dreamed.clone().sub(previous_base.clone());
            base.clone().add(resize(detail, h, w))
        }
        None => base.clone(),
    }
}

/// Bilinear resize with aligned corners, as `scipy.ndimage.zoom(order=1)` does.
fn resize(tensor: Tensor<4>, height: usize, width: usize) -> Tensor<4> {
    transform::resize(tensor, height, width, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn resize_aligns_corners_like_scipy_zoom() {
        let device = Device::flex();
        let row = Tensor::<1>::from_floats([0.0, 10.0], &device).reshape([1, 1, 1, 2]);
        let resized: Vec<f32> = resize(row, 1, 3).into_data().try_to_vec().unwrap();
        // scipy.ndimage.zoom([[0, 10]], (1, 1.5), order=1) == [[0, 5, 10]]
        assert_eq!(resized, vec![0.0, 5.0, 10.0]);
    }

    #[test]
    fn sizes_shrink_by_the_scale_and_stop_at_the_smallest_side() {
        assert_eq!(
            sizes(100, 50, 4, 2.0, 10),
            Some(vec![(13, 25), (25, 50), (50, 100)])
        );
        // Sizes that rounding keeps from shrinking end the list.
        assert_eq!(sizes(5, 5, 100, 1.1, 1), Some(vec![(5, 5)]));
        assert_eq!(sizes(8, 8, 3, 1.4, 9), None);
    }

    #[test]
    fn each_octave_starts_from_its_base_plus_the_detail_so_far() {
        let device = Device::flex();
        let image = Tensor::<1>::from_floats([4.0, 8.0, 0.0, 4.0], &device).reshape([1, 1, 2, 2]);
        let sizes = [(1, 1), (2, 2)];
        let bases = bases(image, &sizes);
        let values = |t: &Tensor<4>| t.clone().into_data().try_to_vec::<f32>().unwrap();
        // The smaller base is the picture scaled down (corners aligned: its first pixel).
        assert_eq!(values(&bases[0]), vec![4.0]);
        // Octave 0 starts from its base alone.
        assert_eq!(values(&start(&bases[0], None)), vec![4.0]);
        // Its dream added 1; the detail is carried up to octave 1's base.
        let dreamed = bases[0].clone().add_scalar(1.0);
        assert_eq!(
            values(&start(&bases[1], Some((&dreamed, &bases[0])))),
            vec![5.0, 9.0, 1.0, 5.0]
        );
    }
}
