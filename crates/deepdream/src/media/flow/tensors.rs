//! Where the flow kernels meet burn: a grey image's values in, a flow tensor out.

use burn::tensor::{Device, Tensor};

/// The values of a grey image (`[1, 1, H, W]`), row by row: what the flow kernels read.
pub(super) fn grey_values(image: &Tensor<4>) -> Vec<f32> {
    image
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .expect("grey images hold floats")
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
