//! Moving pictures along a flow, and where a flow can be trusted.

use burn::tensor::ops::{GridSampleOptions, GridSamplePaddingMode, InterpolateMode};
use burn::tensor::{Int, Tensor};
use image::RgbImage;
use rayon::prelude::*;

use super::tensors::plane_values;

/// `image` (`[N, C, H, W]`) sampled at `p + flow(p)` for every pixel `p` (bilinear, edges
/// repeated): with the flow from frame B to frame A, this brings A onto B.
pub fn warp(image: Tensor<4>, flow: &Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = flow.dims();
    let (x, y) = sample_positions(flow);
    let normalise = |v: Tensor<4>, side: usize| {
        if side > 1 {
            v.mul_scalar(2.0 / (side - 1) as f32).sub_scalar(1.0)
        } else {
            v.zeros_like()
        }
    };
    let grid = Tensor::cat(vec![normalise(x, w), normalise(y, h)], 1).permute([0, 2, 3, 1]);
    image.grid_sample_2d(
        grid,
        GridSampleOptions::new(InterpolateMode::Bilinear)
            .with_padding_mode(GridSamplePaddingMode::Border)
            .with_align_corners(true),
    )
}

/// Where a flow (`[1, 2, H, W]`'s values) samples each pixel of a `width` x `height` plane:
/// the four pixels around `p + flow(p)` and their bilinear shares, edges repeated, as
/// [`warp`] samples.
struct Along<'a> {
    flow: &'a [f32],
    width: usize,
    height: usize,
}

impl Along<'_> {
    /// The pixels (as indices into a plane) and shares that pixel `p` samples.
    fn corners(&self, p: usize) -> [(usize, f32); 4] {
        let (w, h) = (self.width, self.height);
        let (row, col) = (p / w, p % w);
        corners_at(
            col as f32 + self.flow[p],
            row as f32 + self.flow[w * h + p],
            w,
            h,
        )
    }
}

/// The pixels (as indices into a `w` x `h` plane) around position `(x, y)` and their
/// bilinear shares, positions past the edge moved onto it.
fn corners_at(x: f32, y: f32, w: usize, h: usize) -> [(usize, f32); 4] {
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    // Not negative after the clamp: truncation is the floor.
    let (x0, y0) = (x as usize, y as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    [
        (y0 * w + x0, (1.0 - fx) * (1.0 - fy)),
        (y0 * w + x1, fx * (1.0 - fy)),
        (y1 * w + x0, (1.0 - fx) * fy),
        (y1 * w + x1, fx * fy),
    ]
}

/// `image` resampled: output pixel `(x, y)` shows the input at `source(x, y)` (bilinear,
/// edges repeated, rounded to 8 bits), in one pass over the pixels.
pub fn resample(image: &RgbImage, source: impl Fn(f32, f32) -> (f32, f32) + Sync) -> RgbImage {
    let (width, height) = image.dimensions();
    let (w, h) = (width as usize, height as usize);
    let input = image.as_raw();
    rgb_pixels(width, height, |col, row| {
        let (x, y) = source(col as f32, row as f32);
        let corners = corners_at(x, y, w, h);
        [0, 1, 2].map(|c| sample(&corners, |at| input[3 * at + c] as f32))
    })
}

/// A `width` x `height` picture whose pixel at `(column, row)` is `pixel(column, row)`,
/// rounded and clamped to 8 bits, the rows made in parallel.
fn rgb_pixels(
    width: u32,
    height: u32,
    pixel: impl Fn(usize, usize) -> [f32; 3] + Sync,
) -> RgbImage {
    let w = width as usize;
    let mut out = vec![0u8; 3 * w * height as usize];
    out.par_chunks_mut(3 * w)
        .enumerate()
        .for_each(|(row, out)| {
            for (col, out) in out.chunks_exact_mut(3).enumerate() {
                for (out, value) in out.iter_mut().zip(pixel(col, row)) {
                    *out = value.round().clamp(0.0, 255.0) as u8;
                }
            }
        });
    RgbImage::from_raw(width, height, out).expect("three values per pixel")
}

/// A plane's value (through `value`, by index) interpolated from `corners` (see
/// [`Along::corners`]).
fn sample(corners: &[(usize, f32); 4], value: impl Fn(usize) -> f32) -> f32 {
    corners.iter().map(|&(at, share)| value(at) * share).sum()
}

/// `base(p) + scale · weight(p) · (a − b)(p + flow(p))` for every pixel `p` and channel,
/// rounded and clamped to 8 bits: the difference of two pictures of `base`'s size carried
/// along `flow` (`[1, 2, H, W]`, sampled as [`warp`] samples: bilinear, edges repeated) and
/// weighted by `weight` (`[1, 1, H, W]`), added to `base`, in one pass over the pixels with
/// no tensor in between (what a film does between two frames' dreams).
pub fn add_carried_difference(
    base: &RgbImage,
    (a, b): (&RgbImage, &RgbImage),
    flow: &Tensor<4>,
    weight: &Tensor<4>,
    scale: f32,
) -> RgbImage {
    let (width, height) = base.dimensions();
    let w = width as usize;
    let (flow, weight) = (plane_values(flow), plane_values(weight));
    let along = Along {
        flow: &flow,
        width: w,
        height: height as usize,
    };
    let (a, b, base) = (a.as_raw(), b.as_raw(), base.as_raw());
    rgb_pixels(width, height, |col, row| {
        let p = row * w + col;
        let factor = scale * weight[p];
        let corners = along.corners(p);
        [0, 1, 2].map(|c| {
            let difference = sample(&corners, |at| a[3 * at + c] as f32 - b[3 * at + c] as f32);
            base[3 * p + c] as f32 + difference * factor
        })
    })
}

/// The mean absolute difference between `current` and `previous` sampled along `flow` (grey
/// images `[1, 1, H, W]` and a flow from `current`'s pixels to `previous`'s): how well the
/// flow explains the change between two frames, in one pass over the pixels.
pub fn mean_warp_difference(previous: &Tensor<4>, current: &Tensor<4>, flow: &Tensor<4>) -> f32 {
    let [_, _, height, width] = flow.dims();
    let (previous, current, flow) = (
        plane_values(previous),
        plane_values(current),
        plane_values(flow),
    );
    let along = Along {
        flow: &flow,
        width,
        height,
    };
    let total: f64 = (0..width * height)
        .into_par_iter()
        .map(|p| (sample(&along.corners(p), |at| previous[at]) - current[p]).abs() as f64)
        .sum();
    (total / (width * height) as f64) as f32
}

/// Where each pixel's flow lands: `(x + u, y + v)` as two `[1, 1, H, W]` tensors.
pub(super) fn sample_positions(flow: &Tensor<4>) -> (Tensor<4>, Tensor<4>) {
    let [_, _, h, w] = flow.dims();
    let device = flow.device();
    let xs = Tensor::<1, Int>::arange(0..w as i64, &device)
        .float()
        .reshape([1, 1, 1, w]);
    let ys = Tensor::<1, Int>::arange(0..h as i64, &device)
        .float()
        .reshape([1, 1, h, 1]);
    (
        flow.clone().narrow(1, 0, 1).add(xs),
        flow.clone().narrow(1, 1, 1).add(ys),
    )
}

/// Forward–backward consistency (Sundaram et al. 2010): 1 where following `backward` (from
/// frame B to frame A) and then `forward` (A to B) comes back to the start, 0 where it does
/// not (occluded or newly revealed pixels), as `[1, 1, H, W]` on frame B's pixels; in one
/// pass over the pixels.
pub fn consistency_mask(forward: &Tensor<4>, backward: &Tensor<4>) -> Tensor<4> {
    let [_, _, height, width] = backward.dims();
    let plane = width * height;
    let (forward, backward_values) = (plane_values(forward), plane_values(backward));
    let along = Along {
        flow: &backward_values,
        width,
        height,
    };
    let mask: Vec<f32> = (0..plane)
        .into_par_iter()
        .map(|p| {
            let corners = along.corners(p);
            let there = [0, plane].map(|offset| sample(&corners, |at| forward[offset + at]));
            let back = [backward_values[p], backward_values[plane + p]];
            let squared = |v: [f32; 2]| v[0] * v[0] + v[1] * v[1];
            let error = squared([there[0] + back[0], there[1] + back[1]]);
            let tolerance = (squared(there) + squared(back)) * 0.01 + 0.5;
            f32::from(error <= tolerance)
        })
        .collect();
    Tensor::<1>::from_floats(mask.as_slice(), &backward.device()).reshape([1, 1, height, width])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    /// The one-pass carry gives what the same sum of tensors gives (the pictures as tensors,
    /// their difference warped, weighted and added, rounded back to 8 bits), to within a
    /// level where float rounding lands on the other side of a half; flows reach past every
    /// edge.
    #[test]
    fn the_carried_difference_is_the_tensors_sum() {
        use crate::networks::network::Preprocess;
        let device = Device::flex();
        let (w, h) = (37u32, 23u32);
        let picture = |seed: u32| {
            RgbImage::from_fn(w, h, |x, y| {
                let v = |k: u32| ((x * 31 + y * 17 + k * 7 + seed * 13) % 256) as u8;
                image::Rgb([v(0), v(1), v(2)])
            })
        };
        let (base, a, b) = (picture(1), picture(2), picture(3));
        let flow = test_flow(h as usize, w as usize, 0, &device);
        let weights: Vec<f32> = (0..w * h).map(|i| (i % 5) as f32 / 4.0).collect();
        let weight = Tensor::<1>::from_floats(weights.as_slice(), &device)
            .reshape([1, 1, h as usize, w as usize]);
        let fast = add_carried_difference(&base, (&a, &b), &flow, &weight, 0.8);
        let pixels = |image: &RgbImage| Preprocess::PIXELS.apply(image, &device);
        let difference = pixels(&a).sub(pixels(&b));
        let summed = pixels(&base).add(warp(difference, &flow).mul(weight).mul_scalar(0.8));
        let reference = Preprocess::PIXELS.invert(summed).unwrap();
        assert_within_a_level(&fast, &reference);
    }

    /// `fast` and `reference` at most a level apart, and at most 0.5 % of their values apart
    /// at all (where float rounding lands on the other side of a half).
    fn assert_within_a_level(fast: &RgbImage, reference: &RgbImage) {
        let off: Vec<i32> = fast
            .as_raw()
            .iter()
            .zip(reference.as_raw())
            .map(|(f, r)| (*f as i32 - *r as i32).abs())
            .collect();
        assert!(off.iter().all(|&d| d <= 1), "at most a level apart");
        let apart = off.iter().filter(|&&d| d > 0).count();
        assert!(
            apart * 200 <= off.len(),
            "{apart} of {} values a level apart",
            off.len()
        );
    }

    /// A flow of `[1, 2, h, w]` reaching past every edge, deterministic.
    fn test_flow(h: usize, w: usize, seed: usize, device: &Device) -> Tensor<4> {
        let values: Vec<f32> = (0..2 * w * h)
            .map(|i| (((i + seed) * 7919 % 997) as f32 / 997.0 - 0.5) * 12.0)
            .collect();
        Tensor::<1>::from_floats(values.as_slice(), device).reshape([1, 2, h, w])
    }

    /// Resampling a picture gives what [`warp`] gives its tensor along the same flow, to
    /// within a level where float rounding lands on the other side of a half.
    #[test]
    fn resampling_is_warping() {
        use crate::networks::network::Preprocess;
        let device = Device::flex();
        let (w, h) = (31usize, 19usize);
        let image = RgbImage::from_fn(w as u32, h as u32, |x, y| {
            image::Rgb([(x * 8) as u8, (y * 13) as u8, ((x * y) % 256) as u8])
        });
        let flow = test_flow(h, w, 3, &device);
        let values: Vec<f32> = flow.clone().into_data().try_to_vec().unwrap();
        let fast = resample(&image, |x, y| {
            let p = y as usize * w + x as usize;
            (x + values[p], y + values[w * h + p])
        });
        let warped = warp(Preprocess::PIXELS.apply(&image, &device), &flow);
        let reference = Preprocess::PIXELS.invert(warped).unwrap();
        assert_within_a_level(&fast, &reference);
    }

    /// The one-pass mask and warp difference give what the same tensors give through
    /// [`warp`] (the mask to within the rare pixel whose round trip lands on its
    /// tolerance under float rounding).
    #[test]
    fn the_mask_and_the_difference_are_the_tensors() {
        let device = Device::flex();
        let (h, w) = (29, 41);
        let forward = test_flow(h, w, 1, &device);
        // Half the pixels consistent: the backward flow the forward one's opposite there.
        let backward = forward
            .clone()
            .neg()
            .add(test_flow(h, w, 2, &device).mul_scalar(0.05));
        let squared = |t: Tensor<4>| t.powi_scalar(2).sum_dim(1);
        let there = warp(forward.clone(), &backward);
        let error = squared(there.clone().add(backward.clone()));
        let tolerance = squared(there)
            .add(squared(backward.clone()))
            .mul_scalar(0.01)
            .add_scalar(0.5);
        let reference: Vec<f32> = error
            .lower_equal(tolerance)
            .float()
            .into_data()
            .try_to_vec()
            .unwrap();
        let mask: Vec<f32> = consistency_mask(&forward, &backward)
            .into_data()
            .try_to_vec()
            .unwrap();
        let apart = mask.iter().zip(&reference).filter(|(a, b)| a != b).count();
        let consistent = reference.iter().filter(|&&m| m == 1.0).count();
        assert!(
            consistent > mask.len() / 10 && consistent < mask.len(),
            "{consistent}"
        );
        assert!(
            apart * 200 <= mask.len(),
            "{apart} of {} pixels apart",
            mask.len()
        );

        let grey = |seed: usize| {
            let values: Vec<f32> = (0..w * h)
                .map(|i| ((i * 31 + seed * 17) % 256) as f32)
                .collect();
            Tensor::<1>::from_floats(values.as_slice(), &device).reshape([1, 1, h, w])
        };
        let (previous, current) = (grey(1), grey(2));
        let reference: f32 = warp(previous.clone(), &backward)
            .sub(current.clone())
            .abs()
            .mean()
            .into_scalar();
        let difference = mean_warp_difference(&previous, &current, &backward);
        assert!(
            (difference - reference).abs() <= 1e-4 * reference,
            "{difference} against {reference}"
        );
    }

    #[test]
    fn warp_by_a_constant_flow_shifts_the_image() {
        let device = Device::flex();
        let values: Vec<f32> = (0..20).map(|v| v as f32).collect();
        let image = Tensor::<1>::from_floats(values.as_slice(), &device).reshape([1, 1, 4, 5]);
        let flow = Tensor::<4>::ones([1, 2, 4, 5], &device);
        let warped: Vec<f32> = warp(image, &flow).into_data().try_to_vec().unwrap();
        // Pixel (0, 0) samples (1, 1); the last row and column repeat the edge.
        assert_eq!(warped[0], 6.0);
        assert_eq!(warped[4], 9.0);
        assert_eq!(warped[19], 19.0);
    }
}
