//! `LayerKernels` on the CPU: the layers' forward and backward passes, split across cores in
//! fixed chunks so results are identical on any core count.

use dfdx::prelude::{Cpu, HasShape, Tensor, TensorFromVec};

use super::*;
use crate::data::graph::NeighbourLists;

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
        let y = sparse_conv::sparse_conv2d_forward(g, x, &w.as_vec(), b.as_deref());
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
        sparse_conv::sparse_conv2d_backward(g, x, grad_out, &mut gw, gb.as_deref_mut());
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
