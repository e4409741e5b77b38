//! The one-pass clamp (ReLU6, ONNX Clip) against burn's `clamp`: outputs and gradients.

mod common;

use burn::tensor::{Device, Distribution, Tensor};
use deepdream::backend::activation;

#[test]
fn clamp_matches_burn_forward_and_backward() {
    let device = Device::flex().autodiff();
    for (shape, min, max) in [
        ([2, 5, 7, 3], 0.0, 6.0),
        ([1, 1, 1, 1], -1.0, 1.0),
        ([1, 64, 70, 80], 0.0, 6.0),
    ] {
        // Burn's clamp passes the gradient at the bounds themselves, PyTorch's hardtanh (and
        // ours) does not (tested below), so no value here lies exactly on a bound.
        let x = Tensor::<4>::random(shape, Distribution::Uniform(-4.0, 10.0), &device);
        let x = x.clone().mask_fill(x.clone().equal_elem(min), min - 0.5);
        let x = x.clone().mask_fill(x.clone().equal_elem(max), max + 0.5);
        let probe = Tensor::<4>::random(shape, Distribution::Uniform(-1.0, 1.0), &device);
        let fast = common::output_and_input_grad(&x, &probe, |x| activation::clamp(x, min, max));
        let reference = common::output_and_input_grad(&x, &probe, |x| x.clamp(min, max));
        assert_eq!(fast, reference, "{shape:?}");
    }
}

#[test]
fn the_gradient_stops_at_the_bounds_as_pytorch_hardtanh() {
    let device = Device::flex().autodiff();
    let x = Tensor::<1>::from_floats([-1.0, 0.0, 3.0, 6.0, 7.0], &device).require_grad();
    let grads = activation::relu6(x.clone()).sum().backward();
    let grad: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
    assert_eq!(grad, vec![0.0, 0.0, 1.0, 0.0, 0.0]);
}
