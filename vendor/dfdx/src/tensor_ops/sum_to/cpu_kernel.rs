use crate::{
    dtypes::{Dtype, NotMixedPrecision},
    shapes::{Axes, HasAxes, ReduceShapeTo, Shape},
    tensor::{Cpu, Tensor, Tensorlike, ZerosTensor},
    tensor_ops::utilities::reduction_utils::index_for_reductions,
};
use crate::tensor::cpu::pieces::{for_each_output_piece, for_each_piece, sum_all, trailing_block};

#[cfg(feature = "f16")]
impl super::SumKernel<crate::dtypes::AMP<crate::dtypes::f16>> for Cpu {
    fn forward<Src: Shape, Dst: Shape, Ax: Axes>(
        &self,
        dst: Dst,
        inp: &Tensor<Src, crate::dtypes::AMP<crate::dtypes::f16>, Self>,
    ) -> Result<Tensor<Dst, crate::dtypes::AMP<crate::dtypes::f16>, Self>, Self::Err>
    where
        Src: ReduceShapeTo<Dst, Ax>,
    {
        let mut out = self.try_zeros_like(&dst)?;
        if Dst::NUM_DIMS == 0 {
            debug_assert_eq!(out.data.len(), 1);

            let mut tmp = 0.0f32;
            for v in inp.buf_iter() {
                tmp += v.0.to_f32();
            }
            let scale = (inp.shape.num_elements() / inp.data.len()) as f32;
            std::sync::Arc::get_mut(&mut out.data).unwrap()[0] =
                crate::dtypes::AMP(crate::dtypes::f16::from_f32(tmp * scale));
        } else {
            let num_elems_reduced = <Src as HasAxes<Ax>>::size(&inp.shape);
            let inp_buf = inp.data.as_ref();
            let mut idx = index_for_reductions::<Src, Ax>(inp.shape, inp.strides);
            for o in out.buf_iter_mut() {
                let mut tmp = 0.0f32;
                for _ in 0..num_elems_reduced {
                    tmp += inp_buf[idx.next().unwrap()].0.to_f32();
                }
                *o = crate::dtypes::AMP(crate::dtypes::f16::from_f32(tmp));
            }
        }
        Ok(out)
    }
    fn backward<Src: Shape, Dst: Shape, Ax: Axes>(
        &self,
        _dst: Dst,
        inp: &impl Tensorlike<Src, crate::dtypes::AMP<crate::dtypes::f16>, Self>,
        grad_inp: &mut Self::Vec,
        grad_out: &Self::Vec,
    ) -> Result<(), Self::Err>
    where
        Src: ReduceShapeTo<Dst, Ax>,
    {
        if Dst::NUM_DIMS == 0 {
            debug_assert_eq!(grad_out.len(), 1);
            let v = grad_out[0].0.to_f32();
            let scale = (inp.shape().num_elements() / inp.len()) as f32;
            for i in grad_inp.iter_mut() {
                i.0 += crate::dtypes::f16::from_f32(v * scale);
            }
        } else {
            let num_elems_reduced = <Src as HasAxes<Ax>>::size(inp.shape());
            let mut idx = index_for_reductions::<Src, Ax>(*inp.shape(), inp.strides());
            for &o in grad_out.iter() {
                for _ in 0..num_elems_reduced {
                    grad_inp[idx.next().unwrap()] += o;
                }
            }
        }
        Ok(())
    }
}


/// (opencarbon) The number of values summed into each output value when a dense input is
/// summed over its trailing axes (at least one axis, not all of them), else None.
fn trailing_reduction<Src: Shape, Dst: Shape, Ax: Axes>(
    shape: &Src,
    strides: &Src::Concrete,
    buf_len: usize,
) -> Option<usize>
where
    Src: ReduceShapeTo<Dst, Ax>,
{
    let axes: std::vec::Vec<isize> = Ax::as_array().into_iter().collect();
    let d = Src::NUM_DIMS as isize;
    let trailing = !axes.is_empty()
        && (axes.len() as isize) < d
        && axes.iter().enumerate().all(|(k, &a)| a == d - axes.len() as isize + k as isize);
    let dense = trailing_block(shape, strides, buf_len) == Some(1);
    (trailing && dense).then(|| <Src as HasAxes<Ax>>::size(shape)).filter(|&r| r > 0)
}

impl<E: Dtype + NotMixedPrecision> super::SumKernel<E> for Cpu {
    fn forward<Src: Shape, Dst: Shape, Ax: Axes>(
        &self,
        dst: Dst,
        inp: &Tensor<Src, E, Self>,
    ) -> Result<Tensor<Dst, E, Self>, Self::Err>
    where
        Src: ReduceShapeTo<Dst, Ax>,
    {
        // (opencarbon) A dense input summed over its trailing axes: each output value is the
        // sum of one block of consecutive values, from zero in order as below, so the blocks
        // are split across rayon's pool (`pieces`) without changing a bit.
        if let Some(r) = trailing_reduction::<Src, Dst, Ax>(&inp.shape, &inp.strides, inp.data.len()) {
            let src: &[E] = &inp.data;
            let mut data = self.try_alloc_elem::<E>(dst.num_elements(), Default::default())?;
            for_each_output_piece(data.data.as_mut_slice(), r, |j0, piece| {
                for (jj, o) in piece.iter_mut().enumerate() {
                    let mut tmp: E = Default::default();
                    for v in &src[(j0 + jj) * r..][..r] {
                        tmp += *v;
                    }
                    *o = tmp;
                }
            });
            return Ok(Tensor {
                id: crate::tensor::unique_id(),
                data: std::sync::Arc::new(data),
                shape: dst,
                strides: dst.strides(),
                device: self.clone(),
                tape: Default::default(),
            });
        }
        let mut out = self.try_zeros_like(&dst)?;
        if Dst::NUM_DIMS == 0 {
            debug_assert_eq!(out.data.len(), 1);
            let scale = E::from_usize(inp.shape.num_elements() / inp.data.len()).unwrap();
            // (opencarbon) Large buffers in pieces on rayon's pool (`pieces::sum_all`).
            let tmp = sum_all(inp.data.as_slice());
            std::sync::Arc::get_mut(&mut out.data).unwrap()[0] = tmp * scale;
        } else {
            let num_elems_reduced = <Src as HasAxes<Ax>>::size(&inp.shape);
            let inp_buf = inp.data.as_ref();
            let mut idx = index_for_reductions::<Src, Ax>(inp.shape, inp.strides);
            for o in out.buf_iter_mut() {
                let mut tmp: E = Default::default();
                for _ in 0..num_elems_reduced {
                    tmp += inp_buf[idx.next().unwrap()];
                }
                *o = tmp;
            }
        }
        Ok(out)
    }
    fn backward<Src: Shape, Dst: Shape, Ax: Axes>(
        &self,
        _dst: Dst,
        inp: &impl Tensorlike<Src, E, Self>,
        grad_inp: &mut Self::Vec,
        grad_out: &Self::Vec,
    ) -> Result<(), Self::Err>
    where
        Src: ReduceShapeTo<Dst, Ax>,
    {
        if let Some(r) = trailing_reduction::<Src, Dst, Ax>(inp.shape(), &inp.strides(), inp.len()) {
            // Value i of the input gets output value i / r's gradient (one addition each).
            let go: &[E] = grad_out;
            for_each_piece(grad_inp.as_mut_slice(), |start, piece| {
                for (k, g) in piece.iter_mut().enumerate() {
                    *g += go[(start + k) / r];
                }
            });
            return Ok(());
        }
        if Dst::NUM_DIMS == 0 {
            debug_assert_eq!(grad_out.len(), 1);
            let v = grad_out[0];
            let scale = E::from_usize(inp.shape().num_elements() / inp.len()).unwrap();
            for_each_piece(grad_inp.as_mut_slice(), |_, piece| {
                for i in piece.iter_mut() {
                    *i += v * scale;
                }
            });
        } else {
            let num_elems_reduced = <Src as HasAxes<Ax>>::size(inp.shape());
            let mut idx = index_for_reductions::<Src, Ax>(*inp.shape(), inp.strides());
            for &o in grad_out.iter() {
                for _ in 0..num_elems_reduced {
                    grad_inp[idx.next().unwrap()] += o;
                }
            }
        }
        Ok(())
    }
}
