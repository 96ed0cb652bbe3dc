//! The kernel interface every device implements (`LayerKernels`: convolution, pooling,
//! batch norm, aggregation, forward and backward), and the shapes it speaks in.

use dfdx::prelude::{Storage, Tensor};

use crate::data::graph::NeighbourLists;

use super::{layers, params, Aggregation, Conv2dGeometry, SparseBatch};

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
