//! The layers as tape operations: forward through the device's kernels, with the backward
//! pass registered on the tape (convolution, max pooling, batch norm, neighbour
//! aggregation, sparse first-layer convolution).

use dfdx::prelude::{Device, Gradients, HasShape, PutTape, ReshapeTo, SplitTape, Tape};
use dfdx::tensor::Tensorlike;

use super::*;
use crate::data::graph::NeighbourLists;

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
        let ConvGrads {
            x: gx,
            w: gw,
            bias: gb,
        } = gr;
        if let Some(gx) = gx {
            add_grad(&dev, grads, &x_ghost, gx)?;
        }
        add_param_grads(&dev, grads, &w_param, b_param.as_ref(), gw, gb)
    });
    Ok(y.put_tape(tape))
}

/// Adds a layer's gradient `g` to `t`'s, taking `g`'s buffer as it when `t` has none yet
/// (no zeroed buffer to allocate and add to).
fn add_grad<D: LayerKernels, S: dfdx::shapes::Shape>(
    dev: &D,
    grads: &mut Gradients<f32, D>,
    t: &impl Tensorlike<S, f32, D>,
    g: dfdx::prelude::Tensor<S, f32, D>,
) -> Result<(), D::Err> {
    grads.add_or_insert(t, g, |dst, src| dev.accumulate(dst, src))
}

fn add_param_grads<D: LayerKernels>(
    dev: &D,
    grads: &mut Gradients<f32, D>,
    w: &Tensor4<D>,
    bias: Option<&Tensor1<D>>,
    gw: Tensor4<D>,
    gb: Option<Tensor1<D>>,
) -> Result<(), D::Err> {
    add_grad(dev, grads, w, gw)?;
    if let (Some(b), Some(gb)) = (bias, gb) {
        add_grad(dev, grads, b, gb)?;
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
        add_grad(&dev, grads, &x_ghost, gx)
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
        add_grad(&dev, grads, &x_ghost, gx)?;
        add_grad(&dev, grads, &g_param, gg)?;
        add_grad(&dev, grads, &b_param, gb)
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
        add_grad(&dev, grads, &h_ghost, gh)
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
        add_param_grads(&dev, grads, &w_param, b_param.as_ref(), gr.w, gr.bias)
    });
    Ok(y.put_tape(tape))
}
