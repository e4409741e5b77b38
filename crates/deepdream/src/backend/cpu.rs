//! Helpers shared by the CPU kernels: borrowing a tensor's values, telling the CPU device
//! apart, and compiling a loop for the SIMD instructions the CPU has.

use std::borrow::Cow;

use burn::tensor::Device;
use burn_flex::FlexTensor;

/// The tensor's values as contiguous `f32`, copied only when its layout is not contiguous.
pub(crate) fn floats(tensor: &FlexTensor) -> Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(values) => Cow::Borrowed(values),
        None => Cow::Owned(
            tensor
                .to_contiguous()
                .as_slice::<f32>()
                .expect("f32")
                .to_vec(),
        ),
    }
}

/// Runs `f` on one of rayon's worker threads while the calling thread waits. The CPU
/// kernels' parallel loops inside `f` then share out their work among the workers directly;
/// called from outside the pool, every loop hands its work over and sleeps until it is done,
/// which cost 6 % of an Inception v3 gradient at 512x512 (3.5 % of VGG16's, 12 % of
/// EfficientNet-Lite0's).
pub(crate) fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// Whether `device` is burn's CPU backend (with or without autodiff).
pub(crate) fn on_cpu(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// Runs `f` compiled for AVX2 where the CPU has it (for loops written so that the compiler
/// vectorises them; AVX-512 measured no faster for the Winograd transforms). `f` must be
/// inlined into the compiled function to profit: mark a closure `#[inline(always)]`.
#[inline(always)]
pub(crate) fn with_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { with_avx2(f) };
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
