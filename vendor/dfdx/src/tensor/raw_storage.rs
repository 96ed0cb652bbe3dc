//! PATCH (opencarbon): public access to a tensor's storage and to the CUDA handles, so that a
//! downstream crate can run its own kernels on dfdx tensors without copying them to the host.
//! dfdx 0.13 keeps `Tensor::data`, `Cuda::dev` and `Cuda::build_tensor` crate-private; this
//! file is the whole patch (plus its `mod` line in tensor/mod.rs), see vendor/README.md.

use std::sync::Arc;

use crate::shapes::Shape;
use crate::tensor::{Storage, Tensor};

impl<S: Shape, E, D: Storage<E>, T> Tensor<S, E, D, T> {
    /// The device buffer behind this tensor (contiguous for tensors made by constructors).
    pub fn storage(&self) -> &D::Vec {
        self.data.as_ref()
    }

    /// Whether the buffer holds exactly this tensor's values in row-major order (not a
    /// broadcast, permuted or sliced view of it), so `storage()` reads as the tensor itself.
    pub fn is_contiguous(&self) -> bool
    where
        S::Concrete: PartialEq,
    {
        self.strides == self.shape.strides()
            && self.device.len(&self.data) == self.shape.num_elements()
    }

    /// The device buffer behind this tensor, for writing; copied first if shared.
    pub fn storage_mut(&mut self) -> &mut D::Vec {
        Arc::make_mut(&mut self.data)
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::sync::Arc;

    use cudarc::cublas::CudaBlas;
    use cudarc::driver::{CudaDevice, CudaSlice, DeviceSlice};

    use crate::shapes::{Shape, Unit};
    use crate::tensor::{Cuda, Tensor};

    impl Cuda {
        /// The cudarc device (context, default stream, loaded modules).
        pub fn cuda_device(&self) -> &Arc<CudaDevice> {
            &self.dev
        }

        /// The cuBLAS handle bound to the device's default stream.
        pub fn cublas(&self) -> &Arc<CudaBlas> {
            &self.blas
        }

        /// A tensor of `shape` that takes ownership of `slice` (its length must match).
        pub fn tensor_from_cuda_slice<S: Shape, E: Unit>(
            &self,
            slice: CudaSlice<E>,
            shape: S,
        ) -> Tensor<S, E, Self> {
            assert_eq!(
                slice.len(),
                shape.num_elements(),
                "tensor_from_cuda_slice: buffer length does not match the shape"
            );
            self.build_tensor(shape, shape.strides(), slice)
        }
    }
}
