//! The device a neural model trains on. Model code is generic over `ModelDevice` (dfdx's
//! tensor ops plus our `LayerKernels`); `on_device` opens the device an experiment names and
//! runs the model's generic training function on it, so the CPU/CUDA choice is made once.

use dfdx::prelude::{Cpu, Device, TensorToArray};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::nn::LayerKernels;

/// What a model needs from a device.
pub trait ModelDevice: Device<f32> + LayerKernels + TensorToArray<(), f32, Array = f32> {}

impl<D> ModelDevice for D where D: Device<f32> + LayerKernels + TensorToArray<(), f32, Array = f32> {}

/// A computation written once for every device (a model's training function with its
/// arguments); `on_device` picks the device.
pub trait OnDevice {
    type Output;
    fn run<D: ModelDevice>(self, dev: D) -> Result<Self::Output>;
}

/// Open the device `spec` names, with dfdx's generator (parameter initialisation, dropout)
/// seeded by `seed`, and run `work` on it. The generator draws on the host for both devices,
/// so a model starts from the same parameters on the CPU and on a GPU.
pub fn on_device<W: OnDevice>(spec: DeviceSpec, seed: u64, work: W) -> Result<W::Output> {
    match spec {
        DeviceSpec::Cpu => work.run(Cpu::seed_from_u64(seed)),
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(n) => work.run(crate::nn::cuda::open(n, seed).map_err(Error::Usage)?),
        #[cfg(not(feature = "cuda"))]
        DeviceSpec::Cuda(_) => Err(no_cuda_build()),
    }
}

/// The error for a CUDA request to a build without the `cuda` feature.
pub fn no_cuda_build() -> Error {
    Error::Usage(
        "this opencarbon was built without CUDA support: rebuild with `--features cuda` (README, Run on a GPU)".into(),
    )
}

/// Why the device cannot be used from this build on this machine, if it cannot: CUDA opens
/// the device once (driver, device number, our kernels compiled and loaded).
pub fn check_available(spec: DeviceSpec) -> Result<()> {
    match spec {
        DeviceSpec::Cpu => Ok(()),
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(n) => crate::nn::cuda::open(n, 0).map(drop).map_err(Error::Usage),
        #[cfg(not(feature = "cuda"))]
        DeviceSpec::Cuda(_) => Err(no_cuda_build()),
    }
}

/// Where the neural models train: `device: cpu | cuda | cuda:N` in an experiment, or
/// `run --device`. Not part of a job's identity (run id): the same job on another device is
/// the same job; the manifest records where it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl DeviceSpec {
    pub fn parse(text: &str) -> std::result::Result<DeviceSpec, String> {
        match text.trim() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            t => t
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("`{t}` is not a device, expected cpu, cuda or cuda:N")),
        }
    }

    pub fn is_cuda(self) -> bool {
        matches!(self, DeviceSpec::Cuda(_))
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}
