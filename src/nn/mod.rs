//! Neural-network layers with run-time shapes on dfdx tensors and its tape, for the models
//! whose sizes come from configuration (OpenCarbon, GraphSAGE). dfdx's own layer sizes are
//! const generics, and its convolution needs a nightly compiler, so the layers that need
//! their own kernels live here, behind `LayerKernels`: the device-generic interface a CUDA
//! build implements for `Cuda` without touching model code.

pub mod aggregate;
pub mod conv;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
pub mod layers;
pub mod learner;
pub mod norm;
pub mod params;
pub mod pool;
pub mod resume;

use dfdx::prelude::{
    Cpu, Device, Gradients, HasShape, PutTape, ReshapeTo, SplitTape, Storage, Tape, Tensor,
    TensorFromVec,
};

pub use aggregate::Aggregation;
pub use conv::{Conv2dGeometry, SparseBatch};

use crate::data::graph::NeighbourLists;

/// Keep freed large buffers in the heap for reuse instead of returning them to the kernel.
///
/// Every layer call allocates and frees activation and gradient buffers of several MB.
/// glibc serves those with mmap and returns them with munmap, and with worker threads each
/// munmap costs a TLB shootdown on every core: the convolution benchmark spent a quarter of
/// its time in the kernel and ran 2.3× slower (98 ms vs 42 ms per step). Raising the mmap
/// and trim thresholds makes freed buffers reusable at the cost of a higher resident size.
/// Call once at start-up, before other threads exist; a no-op off glibc.
pub fn reuse_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Run-time NCHW shape.
pub type Shape4 = (usize, usize, usize, usize);
pub type Tensor4<D, T = dfdx::prelude::NoneTape> = Tensor<Shape4, f32, D, T>;
pub type Tensor1<D, T = dfdx::prelude::NoneTape> = Tensor<(usize,), f32, D, T>;

/// Gradients of one convolution call (`x` only when asked for).
pub struct ConvGrads<D: Storage<f32>> {
    pub x: Option<Tensor4<D>>,
    pub w: Tensor4<D>,
    pub bias: Option<Tensor1<D>>,
}

/// A batch's mean and biased variance per channel, on the device (the running averages are
/// updated there too, so batch norm needs no copy to the host).
pub type BatchStats<D> = (Tensor1<D>, Tensor1<D>);

/// Running mean and variance per channel, for evaluation-mode batch norm.
pub type RunningStats<'a, D> = Option<(&'a Tensor1<D>, &'a Tensor1<D>)>;

/// Batch norm forward: output, what the backward pass needs, batch statistics (training).
pub type BatchNormForward<D> = (
    Tensor4<D>,
    <D as LayerKernels>::Saved,
    Option<BatchStats<D>>,
);

/// The batch norm op's result: output on the input's tape, batch statistics (training).
pub type Normalised<D, T> = (Tensor4<D, T>, Option<BatchStats<D>>);

/// Batch norm gradients: x, γ, β.
pub type BatchNormGrads<D> = (Tensor4<D>, Tensor1<D>, Tensor1<D>);

/// The kernels our own layers need from a device.
pub trait LayerKernels: Storage<f32> + Clone + 'static {
    /// A layer input kept by the forward pass for the backward pass, in whatever form the
    /// device reads fastest (the CPU keeps the host copy it already made).
    type Saved: 'static;

    fn conv2d_forward(
        &self,
        g: &Conv2dGeometry,
        x: &Tensor4<Self>,
        w: &Tensor4<Self>,
        bias: Option<&Tensor1<Self>>,
    ) -> Result<(Tensor4<Self>, Self::Saved), Self::Err>;

    /// `grad_out` is the output's gradient buffer, read in place.
    fn conv2d_backward(
        &self,
        g: &Conv2dGeometry,
        x: &Self::Saved,
        w: &Tensor4<Self>,
        has_bias: bool,
        need_x: bool,
        grad_out: &Self::Vec,
    ) -> Result<ConvGrads<Self>, Self::Err>;

    /// Convolution of a sparse input (data, so no input gradient).
    fn sparse_conv2d_forward(
        &self,
        g: &Conv2dGeometry,
        x: &SparseBatch,
        w: &Tensor4<Self>,
        bias: Option<&Tensor1<Self>>,
    ) -> Result<Tensor4<Self>, Self::Err>;

    /// Weight (and bias) gradients of `sparse_conv2d_forward`.
    fn sparse_conv2d_backward(
        &self,
        g: &Conv2dGeometry,
        x: &SparseBatch,
        has_bias: bool,
        grad_out: &Self::Vec,
    ) -> Result<ConvGrads<Self>, Self::Err>;

    /// Max pooling (`g.out_channels == g.in_channels`).
    fn max_pool2d_forward(
        &self,
        g: &Conv2dGeometry,
        x: &Tensor4<Self>,
    ) -> Result<(Tensor4<Self>, Self::Saved), Self::Err>;

    /// Input gradient of `max_pool2d_forward`.
    fn max_pool2d_backward(
        &self,
        g: &Conv2dGeometry,
        x: &Self::Saved,
        grad_out: &Self::Vec,
    ) -> Result<Tensor4<Self>, Self::Err>;

    /// Batch norm over axes N, H, W: with `running` statistics (evaluation) or the batch's
    /// (training; their mean and biased variance per channel are returned as well).
    fn batch_norm_forward(
        &self,
        x: &Tensor4<Self>,
        gamma: &Tensor1<Self>,
        beta: &Tensor1<Self>,
        running: RunningStats<'_, Self>,
        eps: f32,
    ) -> Result<BatchNormForward<Self>, Self::Err>;

    /// Gradients (x, γ, β) of `batch_norm_forward`.
    fn batch_norm_backward(
        &self,
        shape: Shape4,
        saved: &Self::Saved,
        gamma: &Tensor1<Self>,
        train: bool,
        grad_out: &Self::Vec,
    ) -> Result<BatchNormGrads<Self>, Self::Err>;

    /// Per node, the mean or maximum of its neighbours' rows of `h` [nodes, F].
    fn aggregate_forward(
        &self,
        lists: &NeighbourLists,
        h: &layers::Tensor2<Self>,
        how: Aggregation,
    ) -> Result<(layers::Tensor2<Self>, Self::Saved), Self::Err>;

    /// Gradient of `aggregate_forward` with respect to `h`.
    fn aggregate_backward(
        &self,
        lists: &NeighbourLists,
        h: &Self::Saved,
        shape: (usize, usize),
        how: Aggregation,
        grad_out: &Self::Vec,
    ) -> Result<layers::Tensor2<Self>, Self::Err>;

    /// dst += src, elementwise (dst is a gradient buffer of the same length).
    fn accumulate<S: dfdx::shapes::Shape>(&self, dst: &mut Self::Vec, src: &Tensor<S, f32, Self>);

    /// One Adam update of the parameter buffer `w` in place (see `AdamStep::apply`), with
    /// gradient `g` and moments `m`, `v`; Σ g² (in f64) is added to `norm2` if given.
    fn adam_update(
        &self,
        w: &mut Self::Vec,
        g: &Self::Vec,
        m: &mut Self::Vec,
        v: &mut Self::Vec,
        step: &params::AdamStep,
        norm2: Option<&mut f64>,
    ) -> Result<(), Self::Err>;
}

/// Host gradient buffers of a convolution as tensors of their shapes.
fn conv_grads(
    dev: &Cpu,
    g: &Conv2dGeometry,
    gx: Option<Vec<f32>>,
    gw: Vec<f32>,
    gb: Option<Vec<f32>>,
) -> Result<ConvGrads<Cpu>, dfdx::prelude::CpuError> {
    Ok(ConvGrads {
        x: gx
            .map(|gx| dev.try_tensor_from_vec(gx, (g.batch, g.in_channels, g.height, g.width)))
            .transpose()?,
        w: dev.try_tensor_from_vec(gw, (g.out_channels, g.in_channels, g.kernel, g.kernel))?,
        bias: gb
            .map(|b| dev.try_tensor_from_vec(b, (g.out_channels,)))
            .transpose()?,
    })
}

impl LayerKernels for Cpu {
    type Saved = Vec<f32>;

    fn conv2d_forward(
        &self,
        g: &Conv2dGeometry,
        x: &Tensor4<Self>,
        w: &Tensor4<Self>,
        bias: Option<&Tensor1<Self>>,
    ) -> Result<(Tensor4<Self>, Vec<f32>), Self::Err> {
        let b = bias.map(|b| b.as_vec());
        let x = x.as_vec();
        let y = conv::conv2d_forward(g, &x, &w.as_vec(), b.as_deref());
        let shape = (g.batch, g.out_channels, g.out_height(), g.out_width());
        Ok((self.try_tensor_from_vec(y, shape)?, x))
    }

    fn conv2d_backward(
        &self,
        g: &Conv2dGeometry,
        x: &Vec<f32>,
        w: &Tensor4<Self>,
        has_bias: bool,
        need_x: bool,
        grad_out: &Self::Vec,
    ) -> Result<ConvGrads<Self>, Self::Err> {
        let mut gx = need_x.then(|| vec![0.0; g.input_len()]);
        let mut gw = vec![0.0; g.weight_len()];
        let mut gb = has_bias.then(|| vec![0.0; g.out_channels]);
        conv::conv2d_backward(
            g,
            x,
            &w.as_vec(),
            grad_out,
            conv::Conv2dGrads {
                x: gx.as_deref_mut(),
                w: &mut gw,
                bias: gb.as_deref_mut(),
            },
        );
        conv_grads(self, g, gx, gw, gb)
    }

    fn sparse_conv2d_forward(
        &self,
        g: &Conv2dGeometry,
        x: &SparseBatch,
        w: &Tensor4<Self>,
        bias: Option<&Tensor1<Self>>,
    ) -> Result<Tensor4<Self>, Self::Err> {
        let b = bias.map(|b| b.as_vec());
        let y = conv::sparse_conv2d_forward(g, x, &w.as_vec(), b.as_deref());
        self.try_tensor_from_vec(y, (g.batch, g.out_channels, g.out_height(), g.out_width()))
    }

    fn sparse_conv2d_backward(
        &self,
        g: &Conv2dGeometry,
        x: &SparseBatch,
        has_bias: bool,
        grad_out: &Self::Vec,
    ) -> Result<ConvGrads<Self>, Self::Err> {
        let mut gw = vec![0.0; g.weight_len()];
        let mut gb = has_bias.then(|| vec![0.0; g.out_channels]);
        conv::sparse_conv2d_backward(g, x, grad_out, &mut gw, gb.as_deref_mut());
        conv_grads(self, g, None, gw, gb)
    }

    fn max_pool2d_forward(
        &self,
        g: &Conv2dGeometry,
        x: &Tensor4<Self>,
    ) -> Result<(Tensor4<Self>, Vec<f32>), Self::Err> {
        let x = x.as_vec();
        let y = pool::max_pool2d_forward(g, &x);
        let shape = (g.batch, g.in_channels, g.out_height(), g.out_width());
        Ok((self.try_tensor_from_vec(y, shape)?, x))
    }

    fn max_pool2d_backward(
        &self,
        g: &Conv2dGeometry,
        x: &Vec<f32>,
        grad_out: &Self::Vec,
    ) -> Result<Tensor4<Self>, Self::Err> {
        let gx = pool::max_pool2d_backward(g, x, grad_out);
        self.try_tensor_from_vec(gx, (g.batch, g.in_channels, g.height, g.width))
    }

    fn batch_norm_forward(
        &self,
        x: &Tensor4<Self>,
        gamma: &Tensor1<Self>,
        beta: &Tensor1<Self>,
        running: RunningStats<'_, Self>,
        eps: f32,
    ) -> Result<BatchNormForward<Self>, Self::Err> {
        let shape = *x.shape();
        let running = running.map(|(m, v)| (m.as_vec(), v.as_vec()));
        let (y, saved, stats) = norm::batch_norm_forward(
            shape,
            &x.as_vec(),
            &gamma.as_vec(),
            &beta.as_vec(),
            running.as_ref().map(|(m, v)| (&m[..], &v[..])),
            eps,
        );
        let stats = match stats {
            Some((m, v)) => Some((
                self.try_tensor_from_vec(m, (shape.1,))?,
                self.try_tensor_from_vec(v, (shape.1,))?,
            )),
            None => None,
        };
        Ok((self.try_tensor_from_vec(y, shape)?, saved, stats))
    }

    fn batch_norm_backward(
        &self,
        shape: Shape4,
        saved: &Vec<f32>,
        gamma: &Tensor1<Self>,
        train: bool,
        grad_out: &Self::Vec,
    ) -> Result<BatchNormGrads<Self>, Self::Err> {
        let (gx, gg, gb) =
            norm::batch_norm_backward(shape, saved, &gamma.as_vec(), train, grad_out);
        Ok((
            self.try_tensor_from_vec(gx, shape)?,
            self.try_tensor_from_vec(gg, (shape.1,))?,
            self.try_tensor_from_vec(gb, (shape.1,))?,
        ))
    }

    fn aggregate_forward(
        &self,
        lists: &NeighbourLists,
        h: &layers::Tensor2<Self>,
        how: Aggregation,
    ) -> Result<(layers::Tensor2<Self>, Vec<f32>), Self::Err> {
        let shape = *h.shape();
        let h = h.as_vec();
        let y = aggregate::aggregate_forward(lists, &h, shape.1, how);
        // The mean's backward pass does not read h.
        let saved = if how == Aggregation::Max {
            h
        } else {
            Vec::new()
        };
        Ok((self.try_tensor_from_vec(y, shape)?, saved))
    }

    fn aggregate_backward(
        &self,
        lists: &NeighbourLists,
        h: &Vec<f32>,
        shape: (usize, usize),
        how: Aggregation,
        grad_out: &Self::Vec,
    ) -> Result<layers::Tensor2<Self>, Self::Err> {
        let gh = aggregate::aggregate_backward(lists, h, shape.1, how, grad_out);
        self.try_tensor_from_vec(gh, shape)
    }

    fn accumulate<S: dfdx::shapes::Shape>(&self, dst: &mut Self::Vec, src: &Tensor<S, f32, Self>) {
        for (d, s) in dst.iter_mut().zip(src.as_vec()) {
            *d += s;
        }
    }

    fn adam_update(
        &self,
        w: &mut Self::Vec,
        g: &Self::Vec,
        m: &mut Self::Vec,
        v: &mut Self::Vec,
        step: &params::AdamStep,
        norm2: Option<&mut f64>,
    ) -> Result<(), Self::Err> {
        step.apply(w, g, m, v, norm2);
        Ok(())
    }
}

/// 2-D convolution of `x` [N, C, H, W] with `w` [out, C, k, k] and an optional bias, recorded
/// on `x`'s tape; `w` and `bias` receive gradients by their ids (they are parameters).
/// `input_grad: false` skips the input gradient (for a first layer, whose input is data).
pub fn conv2d<D: LayerKernels + Device<f32>, T: Tape<f32, D>>(
    x: Tensor4<D, T>,
    w: &Tensor4<D>,
    bias: Option<&Tensor1<D>>,
    stride: usize,
    padding: usize,
    input_grad: bool,
) -> Result<Tensor4<D, T>, D::Err> {
    let (n, c, h, wd) = *x.shape();
    let (o, ci, k, k2) = *w.shape();
    assert_eq!(
        (c, k),
        (ci, k2),
        "conv2d: input has {c} channels, weight expects {ci}; kernel must be square"
    );
    let g = Conv2dGeometry {
        batch: n,
        in_channels: c,
        height: h,
        width: wd,
        out_channels: o,
        kernel: k,
        stride,
        padding,
    };
    if let Err(e) = g.check() {
        panic!("conv2d: {e}");
    }
    // The kernels read buffers in standard layout; a view (e.g. permuted) is copied first,
    // through dfdx's tape-aware reshape, so that its gradient lands in the source's layout.
    let (x, mut tape) = x.contiguous().split_tape();
    let dev = x.device().clone();
    let (y, saved) = dev.conv2d_forward(&g, &x, w, bias)?;
    let (x_ghost, y_ghost, w_param, b_param) = (x.ghost(), y.ghost(), w.clone(), bias.cloned());
    drop(x);
    tape.add_backward_op(move |grads: &mut Gradients<f32, D>| {
        let grad_out = grads.get_or_alloc_mut(&y_ghost)?;
        let gr = dev.conv2d_backward(
            &g,
            &saved,
            &w_param,
            b_param.is_some(),
            input_grad,
            grad_out,
        )?;
        if let Some(gx) = &gr.x {
            dev.accumulate(grads.get_or_alloc_mut(&x_ghost)?, gx);
        }
        add_param_grads(&dev, grads, &w_param, b_param.as_ref(), &gr)
    });
    Ok(y.put_tape(tape))
}

fn add_param_grads<D: LayerKernels>(
    dev: &D,
    grads: &mut Gradients<f32, D>,
    w: &Tensor4<D>,
    bias: Option<&Tensor1<D>>,
    gr: &ConvGrads<D>,
) -> Result<(), D::Err> {
    dev.accumulate(grads.get_or_alloc_mut(w)?, &gr.w);
    if let (Some(b), Some(gb)) = (bias, &gr.bias) {
        dev.accumulate(grads.get_or_alloc_mut(b)?, gb);
    }
    Ok(())
}

/// Max pooling of `x` [N, C, H, W] over k×k windows, recorded on `x`'s tape. Padding must
/// be at most k/2 (as in PyTorch), so every window holds at least one input value.
pub fn max_pool2d<D: LayerKernels + Device<f32>, T: Tape<f32, D>>(
    x: Tensor4<D, T>,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor4<D, T>, D::Err> {
    let (n, c, h, w) = *x.shape();
    let g = Conv2dGeometry {
        batch: n,
        in_channels: c,
        height: h,
        width: w,
        out_channels: c,
        kernel,
        stride,
        padding,
    };
    if let Err(e) = g.check() {
        panic!("max_pool2d: {e}");
    }
    assert!(
        2 * padding <= kernel,
        "max_pool2d: padding {padding} exceeds half the kernel {kernel}"
    );
    // The kernels read buffers in standard layout; a view (e.g. permuted) is copied first,
    // through dfdx's tape-aware reshape, so that its gradient lands in the source's layout.
    let (x, mut tape) = x.contiguous().split_tape();
    let dev = x.device().clone();
    let (y, saved) = dev.max_pool2d_forward(&g, &x)?;
    let (x_ghost, y_ghost) = (x.ghost(), y.ghost());
    drop(x);
    tape.add_backward_op(move |grads: &mut Gradients<f32, D>| {
        let grad_out = grads.get_or_alloc_mut(&y_ghost)?;
        let gx = dev.max_pool2d_backward(&g, &saved, grad_out)?;
        dev.accumulate(grads.get_or_alloc_mut(&x_ghost)?, &gx);
        Ok(())
    });
    Ok(y.put_tape(tape))
}

/// Batch normalisation of `x` [N, C, H, W] over N, H and W, recorded on `x`'s tape; γ and β
/// receive gradients by their ids (they are parameters). `running`: the statistics to use
/// (evaluation), or None to use the batch's, which are then returned (mean, biased variance)
/// for the running averages.
pub fn batch_norm<D: LayerKernels + Device<f32>, T: Tape<f32, D>>(
    x: Tensor4<D, T>,
    gamma: &Tensor1<D>,
    beta: &Tensor1<D>,
    running: RunningStats<'_, D>,
    eps: f32,
) -> Result<Normalised<D, T>, D::Err> {
    let shape = *x.shape();
    assert_eq!(
        (shape.1, shape.1),
        (gamma.shape().0, beta.shape().0),
        "batch_norm: {} channels, γ and β must match",
        shape.1
    );
    let train = running.is_none();
    // The kernels read buffers in standard layout; a view (e.g. permuted) is copied first,
    // through dfdx's tape-aware reshape, so that its gradient lands in the source's layout.
    let (x, mut tape) = x.contiguous().split_tape();
    let dev = x.device().clone();
    let (y, saved, stats) = dev.batch_norm_forward(&x, gamma, beta, running, eps)?;
    let (x_ghost, y_ghost, g_param, b_param) = (x.ghost(), y.ghost(), gamma.clone(), beta.clone());
    drop(x);
    tape.add_backward_op(move |grads: &mut Gradients<f32, D>| {
        let grad_out = grads.get_or_alloc_mut(&y_ghost)?;
        let (gx, gg, gb) = dev.batch_norm_backward(shape, &saved, &g_param, train, grad_out)?;
        dev.accumulate(grads.get_or_alloc_mut(&x_ghost)?, &gx);
        dev.accumulate(grads.get_or_alloc_mut(&g_param)?, &gg);
        dev.accumulate(grads.get_or_alloc_mut(&b_param)?, &gb);
        Ok(())
    });
    Ok((y.put_tape(tape), stats))
}

/// Neighbour aggregation of node rows `h` [nodes, F] over `lists` (mean, or per-feature
/// maximum), recorded on `h`'s tape; nodes without neighbours get zero rows.
pub fn aggregate<D: LayerKernels + Device<f32>, T: Tape<f32, D>>(
    h: layers::Tensor2<D, T>,
    lists: &std::sync::Arc<NeighbourLists>,
    how: Aggregation,
) -> Result<layers::Tensor2<D, T>, D::Err> {
    let shape = *h.shape();
    assert_eq!(
        shape.0,
        lists.nodes(),
        "aggregate: {} rows for a graph of {} nodes",
        shape.0,
        lists.nodes()
    );
    let (h, mut tape) = h.contiguous().split_tape();
    let dev = h.device().clone();
    let (y, saved) = dev.aggregate_forward(lists, &h, how)?;
    let (h_ghost, y_ghost, lists) = (h.ghost(), y.ghost(), lists.clone());
    drop(h);
    tape.add_backward_op(move |grads: &mut Gradients<f32, D>| {
        let grad_out = grads.get_or_alloc_mut(&y_ghost)?;
        let gh = dev.aggregate_backward(&lists, &saved, shape, how, grad_out)?;
        dev.accumulate(grads.get_or_alloc_mut(&h_ghost)?, &gh);
        Ok(())
    });
    Ok(y.put_tape(tape))
}

/// Convolution of sparse input data (e.g. POI rasters), starting a new tape of type `T`
/// (merged with the other branches' tapes downstream); only `w` and `bias` get gradients.
pub fn sparse_conv2d<D: LayerKernels, T: Tape<f32, D>>(
    x: &SparseBatch,
    w: &Tensor4<D>,
    bias: Option<&Tensor1<D>>,
    stride: usize,
    padding: usize,
) -> Result<Tensor4<D, T>, D::Err> {
    let (o, ci, k, _) = *w.shape();
    assert_eq!(
        x.channels, ci,
        "sparse_conv2d: input has {} channels, weight expects {ci}",
        x.channels
    );
    let g = Conv2dGeometry {
        batch: x.batch,
        in_channels: x.channels,
        height: x.size,
        width: x.size,
        out_channels: o,
        kernel: k,
        stride,
        padding,
    };
    if let Err(e) = g.check() {
        panic!("sparse_conv2d: {e}");
    }
    let dev = w.device().clone();
    let y = dev.sparse_conv2d_forward(&g, x, w, bias)?;
    let mut tape = T::default();
    let (y_ghost, w_param, b_param, x) = (y.ghost(), w.clone(), bias.cloned(), x.clone());
    tape.add_backward_op(move |grads: &mut Gradients<f32, D>| {
        let grad_out = grads.get_or_alloc_mut(&y_ghost)?;
        let gr = dev.sparse_conv2d_backward(&g, &x, b_param.is_some(), grad_out)?;
        add_param_grads(&dev, grads, &w_param, b_param.as_ref(), &gr)
    });
    Ok(y.put_tape(tape))
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
