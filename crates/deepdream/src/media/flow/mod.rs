//! Dense optical flow between frames, by two methods: Farnebäck's polynomial expansion
//! ([`farneback`], smooth: films) and DIS, dense inverse search ([`dis`], built for speed:
//! live feeds), both CPU kernels on the frames' values. Also here: warping an image by a flow and the
//! forward–backward consistency mask used to hide occlusions.

pub mod dis;
pub mod farneback;
#[cfg(feature = "cuda")]
pub mod gpu;
mod tensors;
mod warp;

use burn::tensor::{Device, Tensor};
use image::{GrayImage, RgbImage};

pub use dis::{DisParams, dis};
pub use farneback::{FarnebackParams, farneback, farneback_both};
pub use warp::{add_carried_difference, consistency_mask, mean_warp_difference, resample, warp};

use crate::error::{Error, Result};

/// How the flow between two frames is estimated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FlowMethod {
    /// Farnebäck's method: smooth and accurate; about 12 ms a 320x240 pair on 2 CPU cores.
    Farneback(FarnebackParams),
    /// Dense inverse search: about 3 ms a 320x240 pair on 2 CPU cores.
    Dis(DisParams),
}

impl FlowMethod {
    /// The method's command-line name: `farneback` or `dis`.
    pub fn name(&self) -> &'static str {
        match self {
            FlowMethod::Farneback(_) => "farneback",
            FlowMethod::Dis(_) => "dis",
        }
    }

    /// The method named `name` (`farneback` or `dis`), with its default settings.
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "farneback" => Ok(FlowMethod::Farneback(FarnebackParams::default())),
            "dis" => Ok(FlowMethod::Dis(DisParams::default())),
            other => Err(Error::InvalidParameter(format!(
                "unknown optical flow method `{other}` (use dis or farneback)"
            ))),
        }
    }

    /// The flow from `prev` to `next` (grey images `[1, 1, H, W]`, 0–255) as `[1, 2, H, W]`
    /// (x then y displacement, in pixels), such that `prev(p) ≈ next(p + flow(p))`.
    pub fn estimate(&self, prev: &Tensor<4>, next: &Tensor<4>) -> Tensor<4> {
        match self {
            FlowMethod::Farneback(params) => farneback(prev, next, params),
            FlowMethod::Dis(params) => dis(prev, next, params),
        }
    }

    /// The flows both ways, `(a → b, b → a)`, each as [`FlowMethod::estimate`] gives it, side
    /// by side (Farnebäck expands each frame once for both).
    pub fn estimate_both(&self, a: &Tensor<4>, b: &Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        self.estimate_both_on(a, b, None)
    }

    /// [`FlowMethod::estimate_both`], Farnebäck's on `device` where there is one (DIS runs on
    /// the CPU). Where the device fails, the flows are computed on the CPU, and the first
    /// failure is said once.
    pub fn estimate_both_on(
        &self,
        a: &Tensor<4>,
        b: &Tensor<4>,
        device: Option<&dyn FlowDevice>,
    ) -> (Tensor<4>, Tensor<4>) {
        match (self, device) {
            (FlowMethod::Farneback(params), Some(device)) => {
                device.farneback_both(a, b, params).unwrap_or_else(|error| {
                    static ONCE: std::sync::Once = std::sync::Once::new();
                    ONCE.call_once(|| {
                        eprintln!("deepdream: the optical flow runs on the CPU ({error})")
                    });
                    farneback_both(a, b, params)
                })
            }
            (FlowMethod::Farneback(params), None) => farneback_both(a, b, params),
            (FlowMethod::Dis(params), _) => rayon::join(|| dis(a, b, params), || dis(b, a, params)),
        }
    }
}

/// A device that computes Farnebäck's flows itself (an NVIDIA GPU: [`gpu::GpuFlow`]).
pub trait FlowDevice: Sync {
    /// The flows both ways between two grey frames (`[1, 1, H, W]`, 0–255), as
    /// [`farneback_both`] gives them.
    fn farneback_both(
        &self,
        a: &Tensor<4>,
        b: &Tensor<4>,
        params: &FarnebackParams,
    ) -> Result<(Tensor<4>, Tensor<4>)>;
}

impl Default for FlowMethod {
    /// Farnebäck with OpenCV's usual settings.
    fn default() -> Self {
        FlowMethod::Farneback(FarnebackParams::default())
    }
}

/// A grey image (`[1, 1, H, W]`, values 0–255) from an 8-bit grey image.
pub fn grey_tensor(image: &GrayImage, device: &Device) -> Tensor<4> {
    let (w, h) = image.dimensions();
    let values: Vec<f32> = image.as_raw().iter().map(|&v| v as f32).collect();
    Tensor::<1>::from_floats(values.as_slice(), device).reshape([1, 1, h as usize, w as usize])
}

/// The luma of an RGB image, rounded to 8 bits exactly as OpenCV's `RGB2GRAY` does
/// (BT.601 weights in 14-bit fixed point).
pub fn luma(image: &RgbImage) -> GrayImage {
    let (w, h) = image.dimensions();
    let data = image
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0.map(u32::from);
            ((r * 4899 + g * 9617 + b * 1868 + (1 << 13)) >> 14) as u8
        })
        .collect();
    GrayImage::from_raw(w, h, data).expect("one value per pixel")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_by_name() {
        assert_eq!(FlowMethod::parse("DIS").unwrap().name(), "dis");
        assert_eq!(FlowMethod::parse("farneback").unwrap().name(), "farneback");
        let error = FlowMethod::parse("lucas-kanade").unwrap_err().to_string();
        assert!(error.contains("dis or farneback"), "{error}");
    }
}
