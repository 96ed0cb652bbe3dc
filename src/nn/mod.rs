//! Neural-network layers with run-time shapes on dfdx tensors and its tape, for the models
//! whose sizes come from configuration (OpenCarbon, GraphSAGE). dfdx's own layer sizes are
//! const generics, and its convolution needs a nightly compiler, so the layers that need
//! their own kernels live here, behind `LayerKernels`: the device-generic interface a CUDA
//! build implements for `Cuda` without touching model code.

pub mod aggregate;
pub mod conv;
mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
#[cfg(test)]
mod elementwise_tests;
pub mod kernels;
pub mod layers;
pub mod learner;
pub mod norm;
mod ops;
mod parallel;
pub mod params;
pub mod pool;
pub mod resume;
pub mod schedule;
pub mod sparse_conv;

pub use aggregate::Aggregation;
pub use conv::Conv2dGeometry;
pub use kernels::*;
pub use ops::*;
pub use sparse_conv::SparseBatch;

/// Size rayon's global pool, which runs dfdx's GEMMs, to the thread setting
/// (`track::provenance::threads`), after checking it. Call once at start-up.
pub fn use_thread_setting() -> crate::error::Result<()> {
    let threads = crate::track::provenance::thread_setting()?;
    // Fails only when the pool already exists (a second call): it keeps its size then.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
    Ok(())
}

/// Keep freed large buffers in the heap for reuse instead of returning them to the kernel.
///
/// Every layer call allocates and frees activation and gradient buffers of several MB.
/// glibc serves those with mmap and returns them with munmap, and with worker threads each
/// munmap costs a TLB shootdown on every core: the convolution benchmark spent a quarter of
/// its time in the kernel and ran 2.3× slower (98 ms vs 42 ms per step). Raising the mmap
/// threshold to 1 GiB and turning trimming off makes freed buffers reusable: with a 1 GiB
/// trim threshold a 256 px ResNet-18 step (4.7 GB at its peak) still handed memory back and
/// faulted it in again, 1.9 GB of page faults per step. The cost is a resident size that
/// stays at the program's peak. Worker threads' allocations come from their own arenas,
/// whose heaps glibc unmaps when empty whatever the settings: kernels keep large buffers
/// out of workers (`parallel::scratch`, buffers allocated by the calling thread). Call once
/// at start-up, before other threads exist; a no-op off glibc.
pub fn reuse_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        // -1: never trim (mallopt(3)).
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}

#[cfg(test)]
pub(crate) mod torch_fixture {
    //! Reader of the PyTorch fixtures written by scripts/make_torch_fixtures.py.
    use std::path::Path;

    pub struct Array {
        pub shape: Vec<usize>,
        pub data: Vec<f32>,
    }

    pub fn load(name: &str) -> serde_json::Value {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/torch")
            .join(name);
        serde_json::from_str(
            &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        )
        .unwrap()
    }

    pub fn array(v: &serde_json::Value) -> Array {
        Array {
            shape: v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect(),
            data: v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_f64().unwrap() as f32)
                .collect(),
        }
    }

    pub fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len(), "{name}: length");
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= tol * (1.0 + b.abs()),
                "{name}[{i}]: {a} vs PyTorch {b}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::torch_fixture::{array, assert_close, load};
    use super::*;
    use dfdx::prelude::*;

    fn shape4(s: &[usize]) -> Shape4 {
        (s[0], s[1], s[2], s[3])
    }

    #[test]
    fn conv2d_matches_pytorch_outputs_and_gradients() {
        let dev = Cpu::default();
        for name in [
            "conv2d_k3s2p1.json",
            "conv2d_k7s3p3.json",
            "conv2d_k3s1p1.json",
            "conv2d_k3s3p1_nobias.json",
        ] {
            let f = load(name);
            let (stride, padding) = (
                f["stride"].as_u64().unwrap() as usize,
                f["padding"].as_u64().unwrap() as usize,
            );
            let x = array(&f["inputs"]["x"]);
            let w = array(&f["params"]["weight"]);
            let xt = dev.tensor_from_vec(x.data.clone(), shape4(&x.shape));
            let wt = dev.tensor_from_vec(w.data.clone(), shape4(&w.shape));
            let bt = f["params"].get("bias").map(|b| {
                let b = array(b);
                dev.tensor_from_vec(b.data, (b.shape[0],))
            });
            let y = conv2d(xt.leaky_trace(), &wt, bt.as_ref(), stride, padding, true).unwrap();
            assert_close(
                &format!("{name} y"),
                &y.as_vec(),
                &array(&f["output"]).data,
                1e-5,
            );
            let r = array(&f["upstream"]);
            let rt = dev.tensor_from_vec(r.data, *y.shape());
            let grads = (y * rt).sum().backward();
            assert_close(
                &format!("{name} grad x"),
                &grads.get(&xt).as_vec(),
                &array(&f["grads"]["x"]).data,
                1e-4,
            );
            assert_close(
                &format!("{name} grad w"),
                &grads.get(&wt).as_vec(),
                &array(&f["grads"]["weight"]).data,
                1e-4,
            );
            if let Some(bt) = &bt {
                assert_close(
                    &format!("{name} grad b"),
                    &grads.get(bt).as_vec(),
                    &array(&f["grads"]["bias"]).data,
                    1e-4,
                );
            }
        }
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;
    use dfdx::prelude::*;

    /// A permuted (non-contiguous) input: gradients must come back in the source's layout.
    #[test]
    fn convolution_of_a_permuted_view_gets_its_gradient_in_the_right_places() {
        let dev = Cpu::default();
        let nhwc: Vec<f32> = (0..2 * 3 * 3 * 4)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let w = dev.tensor_from_vec(
            (0..5 * 4 * 3 * 3)
                .map(|i| (i as f32 * 0.11).cos())
                .collect(),
            (5, 4, 3, 3),
        );
        let grad_of = |contiguous: bool| {
            let x = dev.tensor_from_vec(nhwc.clone(), (2, 3, 3, 4));
            let view = x.leaky_trace().permute::<_, Axes4<0, 3, 1, 2>>();
            let view = if contiguous { view.contiguous() } else { view };
            let y = conv2d(view, &w, None, 1, 1, true).unwrap();
            let (out, grads) = (y.as_vec(), y.square().sum().backward());
            (out, grads.get(&x).as_vec())
        };
        let (y_view, g_view) = grad_of(false);
        let (y_copy, g_copy) = grad_of(true);
        assert_eq!(y_view, y_copy, "outputs");
        assert_eq!(g_view, g_copy, "input gradients");
    }
}
