//! `LayerKernels` on the CPU: the layers' forward and backward passes, split across cores in
//! fixed chunks so results are identical on any core count.

use std::borrow::Cow;

use dfdx::prelude::{Cpu, HasShape, Tape, Tensor, TensorFromVec};

use super::*;
use crate::data::graph::NeighbourLists;

/// A tensor's values in row-major order: its buffer itself when that reads as the tensor
/// (every tensor the kernels and dfdx's constructors make), else a copy (a broadcast or
/// permuted view). Copying every input with `as_vec` took about 11 % of a CPU epoch.
fn host<S: dfdx::shapes::Shape, T: Tape<f32, Cpu>>(t: &Tensor<S, f32, Cpu, T>) -> Cow<'_, [f32]>
where
    S::Concrete: PartialEq,
{
    if t.is_contiguous() {
        Cow::Borrowed(&t.storage()[..])
    } else {
        Cow::Owned(t.as_vec())
    }
}

/// A layer input kept for the backward pass: the tensor itself (shared, not copied) when its
/// buffer reads as the tensor, else a copy of its values; or a buffer the forward pass made.
pub enum CpuSaved {
    Image(Tensor4<Cpu>),
    Rows(layers::Tensor2<Cpu>),
    Buffer(Vec<f32>),
}

impl CpuSaved {
    /// Keep `x`: shared (`as_shared`, e.g. `CpuSaved::Image`) when its buffer reads as the
    /// tensor, else a copy of its values.
    fn keep<S: dfdx::shapes::Shape>(
        x: &Tensor<S, f32, Cpu>,
        as_shared: fn(Tensor<S, f32, Cpu>) -> CpuSaved,
    ) -> Self
    where
        S::Concrete: PartialEq,
    {
        if x.is_contiguous() {
            as_shared(x.clone())
        } else {
            CpuSaved::Buffer(x.as_vec())
        }
    }

    fn values(&self) -> &[f32] {
        match self {
            CpuSaved::Image(t) => t.storage(),
            CpuSaved::Rows(t) => t.storage(),
            CpuSaved::Buffer(b) => b,
        }
    }
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
    type Saved = CpuSaved;

    fn conv2d_forward(
        &self,
        g: &Conv2dGeometry,
        x: &Tensor4<Self>,
        w: &Tensor4<Self>,
        bias: Option<&Tensor1<Self>>,
    ) -> Result<(Tensor4<Self>, CpuSaved), Self::Err> {
        let b = bias.map(host);
        let y = conv::conv2d_forward(g, &host(x), &host(w), b.as_deref());
        let shape = (g.batch, g.out_channels, g.out_height(), g.out_width());
        Ok((
            self.try_tensor_from_vec(y, shape)?,
            CpuSaved::keep(x, CpuSaved::Image),
        ))
    }

    fn conv2d_backward(
        &self,
        g: &Conv2dGeometry,
        x: &CpuSaved,
        w: &Tensor4<Self>,
        has_bias: bool,
        need_x: bool,
        grad_out: &Self::Vec,
    ) -> Result<ConvGrads<Self>, Self::Err> {
        let mut gx: Option<Vec<f32>> = need_x.then(|| Vec::with_capacity(g.input_len()));
        let mut gw = vec![0.0; g.weight_len()];
        let mut gb = has_bias.then(|| vec![0.0; g.out_channels]);
        conv::conv2d_backward(
            g,
            x.values(),
            &host(w),
            grad_out,
            conv::Conv2dGrads {
                x: gx
                    .as_mut()
                    .map(|v| conv::InputGrad::New(&mut v.spare_capacity_mut()[..g.input_len()])),
                w: &mut gw,
                bias: gb.as_deref_mut(),
            },
        );
        if let Some(v) = gx.as_mut() {
            // SAFETY: `InputGrad::New` asks conv2d_backward to write every value (its chunks
            // cover the whole input and each is zeroed before col2im adds into it).
            unsafe { v.set_len(g.input_len()) };
        }
        conv_grads(self, g, gx, gw, gb)
    }

    fn sparse_conv2d_forward(
        &self,
        g: &Conv2dGeometry,
        x: &SparseBatch,
        w: &Tensor4<Self>,
        bias: Option<&Tensor1<Self>>,
    ) -> Result<Tensor4<Self>, Self::Err> {
        let b = bias.map(host);
        let y = sparse_conv::sparse_conv2d_forward(g, x, &host(w), b.as_deref());
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
    ) -> Result<(Tensor4<Self>, CpuSaved), Self::Err> {
        let y = pool::max_pool2d_forward(g, &host(x));
        let shape = (g.batch, g.in_channels, g.out_height(), g.out_width());
        Ok((
            self.try_tensor_from_vec(y, shape)?,
            CpuSaved::keep(x, CpuSaved::Image),
        ))
    }

    fn max_pool2d_backward(
        &self,
        g: &Conv2dGeometry,
        x: &CpuSaved,
        grad_out: &Self::Vec,
    ) -> Result<Tensor4<Self>, Self::Err> {
        let gx = pool::max_pool2d_backward(g, x.values(), grad_out);
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
        let running = running.map(|(m, v)| (host(m), host(v)));
        let (y, saved, stats) = norm::batch_norm_forward(
            shape,
            &host(x),
            &host(gamma),
            &host(beta),
            running.as_ref().map(|(m, v)| (&m[..], &v[..])),
            eps,
        );
        let saved = CpuSaved::Buffer(saved);
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
        saved: &CpuSaved,
        gamma: &Tensor1<Self>,
        train: bool,
        grad_out: &Self::Vec,
    ) -> Result<BatchNormGrads<Self>, Self::Err> {
        let (gx, gg, gb) =
            norm::batch_norm_backward(shape, saved.values(), &host(gamma), train, grad_out);
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
    ) -> Result<(layers::Tensor2<Self>, CpuSaved), Self::Err> {
        let shape = *h.shape();
        let y = aggregate::aggregate_forward(lists, &host(h), shape.1, how);
        // The mean's backward pass does not read h.
        let saved = if how == Aggregation::Max {
            CpuSaved::keep(h, CpuSaved::Rows)
        } else {
            CpuSaved::Buffer(Vec::new())
        };
        Ok((self.try_tensor_from_vec(y, shape)?, saved))
    }

    fn aggregate_backward(
        &self,
        lists: &NeighbourLists,
        h: &CpuSaved,
        shape: (usize, usize),
        how: Aggregation,
        grad_out: &Self::Vec,
    ) -> Result<layers::Tensor2<Self>, Self::Err> {
        let gh = aggregate::aggregate_backward(lists, h.values(), shape.1, how, grad_out);
        self.try_tensor_from_vec(gh, shape)
    }

    fn accumulate<S: dfdx::shapes::Shape>(&self, dst: &mut Self::Vec, src: &Tensor<S, f32, Self>) {
        // Each value's own sum, so splitting across threads changes no result; large input
        // gradients were the calling thread's largest pass in a two-thread epoch.
        const PART: usize = 1 << 15;
        let src = host(src);
        let add = |(d, s): (&mut [f32], &[f32])| {
            for (d, s) in d.iter_mut().zip(s) {
                *d += s;
            }
        };
        if dst.len() >= 4 * PART {
            use rayon::prelude::*;
            dst.par_chunks_mut(PART)
                .zip(src.par_chunks(PART))
                .for_each(add);
        } else {
            add((&mut dst[..], &src[..]));
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

#[cfg(test)]
mod tests {
    use super::*;
    use dfdx::prelude::*;

    /// A broadcast view's buffer is not the tensor: the kernels read its values (a copy), and
    /// give exactly what they give on a contiguous copy of it; contiguous inputs are read and
    /// kept in place.
    #[test]
    fn views_are_read_as_their_values_and_contiguous_tensors_in_place() {
        let dev = Cpu::seed_from_u64(1);
        let base: Tensor<(usize, usize, usize), f32, Cpu> = dev.sample_normal_like(&(2, 5, 5));
        let view: Tensor4<Cpu> = base.broadcast_like::<_, Axis<0>>(&(3, 2, 5, 5));
        let copy: Tensor4<Cpu> = dev.tensor_from_vec(view.as_vec(), (3, 2, 5, 5));
        assert!(!view.is_contiguous() && copy.is_contiguous());
        assert_eq!(view.storage().len(), 50);
        assert_eq!(host(&view).as_ref(), host(&copy).as_ref());
        assert!(matches!(host(&copy), Cow::Borrowed(_)));
        let g = Conv2dGeometry {
            batch: 3,
            in_channels: 2,
            height: 5,
            width: 5,
            out_channels: 4,
            kernel: 3,
            stride: 1,
            padding: 1,
        };
        let w: Tensor4<Cpu> = dev.sample_normal_like(&(4, 2, 3, 3));
        let (y_view, saved_view) = dev.conv2d_forward(&g, &view, &w, None).unwrap();
        let (y_copy, saved_copy) = dev.conv2d_forward(&g, &copy, &w, None).unwrap();
        assert_eq!(y_view.as_vec(), y_copy.as_vec());
        assert_eq!(saved_view.values(), saved_copy.values());
        assert!(matches!(saved_copy, CpuSaved::Image(_)));
        assert!(matches!(saved_view, CpuSaved::Buffer(_)));
    }
}
