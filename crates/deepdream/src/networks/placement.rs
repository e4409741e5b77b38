//! Putting a loaded network where the job runs: as it is on a burn device, wrapped to run
//! its gradients on the GPU for the CUDA device.

use std::sync::Arc;

use crate::backend::device::Placement;
use crate::error::Result;
use crate::networks::network::Network;
use crate::networks::{models, weights};

/// The named model (`vgg16`, …) loaded, its weights fetched first if they are not cached,
/// and placed on `target`.
pub fn load_named(name: &str, target: &Placement) -> Result<Arc<dyn Network>> {
    let spec = models::find(name)?;
    let path = weights::ensure(spec, |_| {})?;
    let network = place((spec.load)(&path, &target.tensors())?, target)?;
    Ok(Arc::from(network))
}

/// `network` ready to run on `target`.
pub fn place(network: Box<dyn Network>, target: &Placement) -> Result<Box<dyn Network>> {
    match target {
        Placement::Burn(_) => Ok(network),
        #[cfg(feature = "cuda")]
        Placement::Cuda(gpu, precision) => Ok(Box::new(crate::networks::cuda::CudaNetwork::new(
            network,
            gpu.gpu()?,
            *precision,
        )?)),
    }
}
