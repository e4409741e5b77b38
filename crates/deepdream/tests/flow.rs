//! Optical flow (Farnebäck and DIS) against OpenCV's implementations on real video frames
//! (fixtures written by scripts/make_flow_reference.py).

use std::path::PathBuf;

use burn::tensor::Tensor;
use deepdream::Device;
use deepdream::media::flow::{DisParams, FarnebackParams, dis, farneback, grey_tensor, warp};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/flow")
        .join(name)
}

fn grey(name: &str, device: &Device) -> Tensor<4> {
    let image = image::open(fixture(name)).unwrap().to_luma8();
    grey_tensor(&image, device)
}

/// OpenCV's flow (fixture `name`) as `[1, 2, H, W]`.
fn opencv_flow(name: &str, h: usize, w: usize, device: &Device) -> Tensor<4> {
    let bytes = std::fs::read(fixture(name)).unwrap();
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
        let reference = opencv_flow(&format!("pair{pair}_flow.f32"), h, w, &device);
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
            "pair {pair}: mean |flow| {magnitude:.3} px, endpoint error vs OpenCV {epe:.6} px; \
             warp error ours {ours_warp:.3}, OpenCV {opencv_warp:.3}, no motion {still:.3}"
        );
        // OpenCV's flow to within float rounding.
        assert!(epe < 1e-3, "pair {pair}: endpoint error {epe} px");
        assert!(
            ours_warp <= opencv_warp * 1.02 + 0.01,
            "pair {pair}: warp error {ours_warp} vs {opencv_warp}"
        );
    }
}

/// `image` twice as large, each pixel repeated twice in each direction.
fn doubled(image: &Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = image.dims();
    image
        .clone()
        .reshape([1, 1, h, 1, w, 1])
        .repeat_dim(3, 2)
        .repeat_dim(5, 2)
        .reshape([1, 1, 2 * h, 2 * w])
}

#[test]
fn dis_matches_opencv_on_real_frames() {
    let device = Device::flex();
    for pair in 0..3 {
        let a = grey(&format!("pair{pair}_a.png"), &device);
        let b = grey(&format!("pair{pair}_b.png"), &device);
        let [_, _, h, w] = a.dims();
        let magnitude = |flow: &Tensor<4>| mean(flow.clone().powi_scalar(2).sum_dim(1).sqrt());
        // As they are (one pyramid level), and doubled (three levels; OpenCV's flow kept at
        // every second pixel).
        let reference = opencv_flow(&format!("pair{pair}_dis.f32"), h, w, &device);
        let ours = dis(&a, &b, &DisParams::default());
        let epe = endpoint_error(&ours, &reference);
        let reference2x = opencv_flow(&format!("pair{pair}_dis2x.f32"), h, w, &device);
        let ours2x = dis(&doubled(&a), &doubled(&b), &DisParams::default());
        let ours2x = ours2x
            .reshape([1, 2, h, 2, w, 2])
            .narrow(3, 0, 1)
            .narrow(5, 0, 1)
            .reshape([1, 2, h, w]);
        let epe2x = endpoint_error(&ours2x, &reference2x);
        let warp_error = |flow: &Tensor<4>| mean(warp(b.clone(), flow).sub(a.clone()).abs());
        eprintln!(
            "pair {pair}: mean |flow| {:.3} px (doubled {:.3}), endpoint error vs OpenCV's DIS \
             {epe:.6} px (doubled {epe2x:.6}); warp error ours {:.3}, OpenCV {:.3}, \
             no motion {:.3}",
            magnitude(&reference),
            magnitude(&reference2x),
            warp_error(&ours),
            warp_error(&reference),
            mean(b.clone().sub(a.clone()).abs()),
        );
        // The same computation as OpenCV's: only float rounding may differ.
        assert!(epe < 0.01, "pair {pair}: endpoint error {epe} px");
        assert!(
            epe2x < 0.01,
            "pair {pair} doubled: endpoint error {epe2x} px"
        );
    }
}

/// Both flows of a pair at once (Farnebäck sharing each frame's polynomials, DIS side by
/// side) are exactly the flows computed one at a time.
#[test]
fn both_flows_at_once_are_the_flows_one_at_a_time() {
    use deepdream::media::flow::FlowMethod;
    let device = Device::flex();
    let (a, b) = (grey("pair1_a.png", &device), grey("pair1_b.png", &device));
    let values = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
    for method in [
        FlowMethod::Farneback(FarnebackParams::default()),
        FlowMethod::Dis(DisParams::default()),
    ] {
        let (forward, backward) = method.estimate_both(&a, &b);
        assert_eq!(
            values(forward),
            values(method.estimate(&a, &b)),
            "{}",
            method.name()
        );
        assert_eq!(
            values(backward),
            values(method.estimate(&b, &a)),
            "{}",
            method.name()
        );
    }
}
