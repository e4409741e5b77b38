//! Farnebäck optical flow against OpenCV's implementation on real video frames
//! (fixtures written by scripts/make_flow_reference.py).

use std::path::PathBuf;

use burn::tensor::Tensor;
use deepdream::Device;
use deepdream::media::flow::{FarnebackParams, farneback, grey_tensor, warp};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/flow")
        .join(name)
}

fn grey(name: &str, device: &Device) -> Tensor<4> {
    let image = image::open(fixture(name)).unwrap().to_luma8();
    grey_tensor(&image, device)
}

/// OpenCV's flow as `[1, 2, H, W]`.
fn opencv_flow(pair: usize, h: usize, w: usize, device: &Device) -> Tensor<4> {
    let bytes = std::fs::read(fixture(&format!("pair{pair}_flow.f32"))).unwrap();
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(values.len(), h * w * 2);
    Tensor::<1>::from_floats(values.as_slice(), device)
        .reshape([1, h, w, 2])
        .permute([0, 3, 1, 2])
}

fn mean(t: Tensor<4>) -> f32 {
    t.mean().into_scalar()
}

fn endpoint_error(a: &Tensor<4>, b: &Tensor<4>) -> f32 {
    mean(a.clone().sub(b.clone()).powi_scalar(2).sum_dim(1).sqrt())
}

#[test]
fn farneback_matches_opencv_on_real_frames() {
    let device = Device::flex();
    for pair in 0..3 {
        let a = grey(&format!("pair{pair}_a.png"), &device);
        let b = grey(&format!("pair{pair}_b.png"), &device);
        let [_, _, h, w] = a.dims();
        let reference = opencv_flow(pair, h, w, &device);
        let ours = farneback(&a, &b, &FarnebackParams::default());
        let epe = endpoint_error(&ours, &reference);
        let magnitude = mean(reference.clone().powi_scalar(2).sum_dim(1).sqrt());
        // How well each flow explains the motion: a(p) against b(p + flow(p)).
        let warp_error = |flow: &Tensor<4>| mean(warp(b.clone(), flow).sub(a.clone()).abs());
        let (ours_warp, opencv_warp, still) = (
            warp_error(&ours),
            warp_error(&reference),
            mean(b.clone().sub(a.clone()).abs()),
        );
        eprintln!(
            "pair {pair}: mean |flow| {magnitude:.3} px, endpoint error vs OpenCV {epe:.4} px; \
             warp error ours {ours_warp:.3}, OpenCV {opencv_warp:.3}, no motion {still:.3}"
        );
        assert!(epe < 0.5, "pair {pair}: endpoint error {epe} px");
        // Far closer to OpenCV's flow than no flow at all is.
        assert!(
            epe < 0.05 * magnitude.max(0.5),
            "pair {pair}: endpoint error {epe} px vs |flow| {magnitude}"
        );
        assert!(
            ours_warp <= opencv_warp * 1.02 + 0.01,
            "pair {pair}: warp error {ours_warp} vs {opencv_warp}"
        );
    }
}
