//! Putting a loaded network where the job runs: as it is on a burn device, wrapped to run
//! its gradients on the GPU for the CUDA device.

use crate::backend::device::Placement;
use crate::error::Result;
use crate::networks::network::Network;

/// `network` ready to run on `target`.
pub fn place(network: Box<dyn Network>, target: &Placement) -> Result<Box<dyn Network>> {
    match target {
        Placement::Burn(_) => Ok(network),
        #[cfg(feature = "cuda")]
        Placement::Cuda(gpu, precision) => Ok(Box::new(crate::networks::cuda::CudaNetwork::new(
            network,
            gpu.clone(),
            *precision,
        )?)),
    }
}
