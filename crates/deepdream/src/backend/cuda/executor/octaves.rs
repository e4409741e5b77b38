//! A picture's octave pyramid on the GPU ([`Pyramid`]): the bases made there from the
//! picture, and each octave's start there from the octave before, so that a dream's picture
//! crosses to the GPU once and the GPU never waits for the host between octaves.

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::buffers::{address, alloc, driver, upload};
use crate::backend::cuda::gpu::Handles;
use crate::backend::cuda::kernels::elementwise;
use crate::backend::graph::Shape;
use crate::error::Result;

/// The octaves' bases of a picture on the GPU, smallest first, each the next larger one
/// scaled down (as [`octaves::bases`](crate::engine::octaves::bases) makes them).
pub(super) struct Pyramid {
    bases: Vec<CudaSlice<f32>>,
    shapes: Vec<Shape>,
}

impl Pyramid {
    /// `image`, of the last of `shapes` (smallest first), put on the GPU with the smaller
    /// octaves' bases made from it.
    pub(super) fn upload(handles: &Handles, image: &[f32], shapes: Vec<Shape>) -> Result<Pyramid> {
        let mut bases = vec![upload(&handles.stream, image)?];
        for pair in shapes.windows(2).rev() {
            let [smaller, larger] = [pair[0], pair[1]];
            let mut base = alloc(&handles.stream, smaller.len())?;
            let next = bases.last().expect("the picture");
            resize(handles, &mut base, smaller, next, larger, None, None)?;
            bases.push(base);
        }
        bases.reverse();
        Ok(Pyramid { bases, shapes })
    }

    /// How many octaves there are.
    pub(super) fn len(&self) -> usize {
        self.shapes.len()
    }

    /// Octave `octave`'s shape.
    pub(super) fn shape(&self, octave: usize) -> Shape {
        self.shapes[octave]
    }

    /// Octave `octave`'s start (as [`octaves::start`](crate::engine::octaves::start) makes
    /// it): its base, plus the detail that the octave before added, scaled up: `dreamed`, that
    /// octave's picture, less its base.
    pub(super) fn start(
        &self,
        handles: &Handles,
        octave: usize,
        dreamed: Option<&CudaSlice<f32>>,
    ) -> Result<CudaSlice<f32>> {
        let (base, shape) = (&self.bases[octave], self.shapes[octave]);
        let mut start = alloc(&handles.stream, shape.len())?;
        match (octave.checked_sub(1), dreamed) {
            (Some(before), Some(dreamed)) => resize(
                handles,
                &mut start,
                shape,
                dreamed,
                self.shapes[before],
                Some(&self.bases[before]),
                Some(base),
            )?,
            _ => handles
                .stream
                .memcpy_dtod(base, &mut start)
                .map_err(driver("copy an octave's base"))?,
        }
        Ok(start)
    }
}

/// Queues `y = plus + (x - minus)`, `x` of shape `from` scaled bilinearly (corners aligned)
/// to `y`'s shape `to` (`minus` of `x`'s shape, `plus` of `y`'s, each or none).
fn resize(
    handles: &Handles,
    y: &mut CudaSlice<f32>,
    to: Shape,
    x: &CudaSlice<f32>,
    from: Shape,
    minus: Option<&CudaSlice<f32>>,
    plus: Option<&CudaSlice<f32>>,
) -> Result<()> {
    let stream = &handles.stream;
    let optional = |buffer: Option<&CudaSlice<f32>>| buffer.map_or(0, |b| address(b, stream));
    let (minus, plus) = (optional(minus), optional(plus));
    let geometry = [from.height, from.width, to.height, to.width, to.len()].map(|v| v as u64);
    let mut launch = stream.launch_builder(&handles.kernels.resize);
    launch.arg(y).arg(x).arg(&minus).arg(&plus);
    for value in &geometry {
        launch.arg(value);
    }
    // SAFETY: `resize` takes these arguments; `x` and `minus` hold `from`'s values, `y` and
    // `plus` `to`'s, and it touches no others.
    unsafe { launch.launch(elementwise(to.len())) }
        .map(|_| ())
        .map_err(driver("resize an octave"))
}
