//! Where the flow kernels meet burn: a grey image's values in, a flow tensor out.

use burn::tensor::{Device, Tensor};

/// The values of a `[1, C, H, W]` tensor (a grey image, a flow, a weight), plane after
/// plane, row by row: what the flow kernels read.
pub(super) fn plane_values(tensor: &Tensor<4>) -> Vec<f32> {
    tensor
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .expect("grey images, flows and weights hold floats")
}

/// A flow as a `[1, 2, H, W]` tensor on `device`, from its horizontal then its vertical
/// displacements (`height * width` values each, row by row).
pub(super) fn flow_tensor(
    mut horizontal: Vec<f32>,
    vertical: Vec<f32>,
    height: usize,
    width: usize,
    device: &Device,
) -> Tensor<4> {
    horizontal.extend(vertical);
    Tensor::<1>::from_floats(horizontal.as_slice(), device).reshape([1, 2, height, width])
}
