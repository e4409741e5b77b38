//! Moving pictures along a flow, and where a flow can be trusted.

use burn::tensor::ops::{GridSampleOptions, GridSamplePaddingMode, InterpolateMode};
use burn::tensor::{Int, Tensor};

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
/// not (occluded or newly revealed pixels), as `[1, 1, H, W]` on frame B's pixels.
pub fn consistency_mask(forward: &Tensor<4>, backward: &Tensor<4>) -> Tensor<4> {
    let forward_there = warp(forward.clone(), backward);
    let round_trip = forward_there.clone().add(backward.clone());
    let squared = |t: Tensor<4>| t.powi_scalar(2).sum_dim(1);
    let error = squared(round_trip);
    let tolerance = squared(forward_there)
        .add(squared(backward.clone()))
        .mul_scalar(0.01)
        .add_scalar(0.5);
    error.lower_equal(tolerance).float()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

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
