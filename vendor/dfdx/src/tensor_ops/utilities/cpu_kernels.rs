use std::borrow::Cow;

use super::ops::{BinaryKernel, UnaryKernel};
use crate::tensor::cpu::pieces::{for_each_block_piece, for_each_piece, trailing_block};
use crate::{
    shapes::{Dtype, Shape},
    tensor::{
        cpu::{Cpu, LendingIterator, NdIndex},
        unique_id, Tensor, Tensorlike, ZerosTensor,
    },
};

pub trait UnaryDerivative<E> {
    /// Whether the [UnaryDerivative::df] function can re-use the output
    /// from [UnaryDerivative::f].
    const DF_USES_FX: bool;
    /// Whether the derivative of this op can be computed without
    /// any data.
    const HAS_CONST_DF: bool;

    fn f(&self, x: &E) -> E;

    /// Receives `f(x)` if [UnaryDerivative::DF_USES_FX] is true,
    /// otherwise `x`.
    fn df(&self, x: &E) -> E;

    fn const_df(&self) -> E {
        unimplemented!()
    }
}

pub trait BinaryDerivative<E>: std::fmt::Debug {
    /// Whether the derivative of this op can be computed without
    /// any data.
    const HAS_CONST_DF: bool;
    fn f(&self, x: &E, y: &E) -> E;
    fn dfdx(&self, x: &E, y: &E) -> E;
    fn dfdy(&self, x: &E, y: &E) -> E;
    fn const_dfdx(&self) -> E {
        unimplemented!()
    }
    fn const_dfdy(&self) -> E {
        unimplemented!()
    }
}

/// How value i of a tensor lies in its buffer, if at i / block (`pieces::trailing_block`:
/// dense for block 1, else broadcast over trailing axes).
fn block_of<S: Shape, E: Dtype>(t: &impl Tensorlike<S, E, Cpu>) -> Option<usize> {
    trailing_block(t.shape(), &t.strides(), t.len())
}

/// Gradients of a binary op whose `dense` operand has a value per output and whose
/// `blocked` operand one per `b` consecutive outputs: `d(i, j)` gives the two derivatives at
/// output i (j = i / b). Each blocked value's sum is made by one call, in order.
fn blocked_backward<E: Dtype>(
    dense: &mut [E],
    blocked: &mut [E],
    b: usize,
    go: &[E],
    d: impl Fn(usize, usize) -> (E, E) + Sync,
) {
    for_each_block_piece(dense, blocked, b, go.len(), |j0, dense, blocked| {
        for (jj, db) in blocked.iter_mut().enumerate() {
            let j = j0 + jj;
            for t in 0..b {
                let i = j * b + t;
                let (a, c) = d(i, j);
                dense[jj * b + t] += a * go[i];
                *db += c * go[i];
            }
        }
    });
}

/// `own[k] = f(own[k], value start + k of the other operand)` (a buffer with its block).
fn map_in_place<E: Dtype>(own: &mut [E], start: usize, (other, b): (&[E], usize), f: impl Fn(&E, &E) -> E) {
    let mut k = 0;
    while k < own.len() {
        let j = (start + k) / b;
        let end = ((j + 1) * b - start).min(own.len());
        if b == 1 {
            // Dense: one run for the whole piece.
            for (o, v) in own.iter_mut().zip(&other[start..]) {
                *o = f(o, v);
            }
            return;
        }
        for o in &mut own[k..end] {
            *o = f(o, &other[j]);
        }
        k = end;
    }
}

/// `out[k] = f(l value start + k, r value start + k)` for the operands' values
/// (buffers with their blocks), in runs over which a broadcast value is constant.
fn map2<E: Dtype>(
    out: &mut [E],
    start: usize,
    (l, bl): (&[E], usize),
    (r, br): (&[E], usize),
    f: impl Fn(&E, &E) -> E,
) {
    match (bl, br) {
        (1, 1) => {
            for (o, (a, b)) in out.iter_mut().zip(l[start..].iter().zip(&r[start..])) {
                *o = f(a, b);
            }
        }
        (1, b) | (b, 1) => {
            let mut k = 0;
            while k < out.len() {
                let j = (start + k) / b;
                let end = ((j + 1) * b - start).min(out.len());
                for t in k..end {
                    let i = start + t;
                    out[t] = if bl == 1 { f(&l[i], &r[j]) } else { f(&l[j], &r[i]) };
                }
                k = end;
            }
        }
        _ => {
            for (k, o) in out.iter_mut().enumerate() {
                let i = start + k;
                *o = f(&l[i / bl], &r[i / br]);
            }
        }
    }
}

// (opencarbon) The element-wise kernels below run on rayon's pool in pieces of a fixed
// length (`pieces`) when every operand is dense; each value is the same expression as in the
// serial loops, so the bits do not change. Broadcast operands keep dfdx's serial loops: their
// gradients are sums whose order those loops fix.
impl<E: Dtype, Op: UnaryDerivative<E> + Sync> UnaryKernel<Op, E> for Cpu {
    const BACKWARD_WITHOUT_INP: bool = Op::DF_USES_FX;
    const BACKWARD_WITHOUT_DATA: bool = Op::HAS_CONST_DF;

    fn forward<S: Shape>(
        &self,
        op: Op,
        inp: Cow<Tensor<S, E, Self>>,
    ) -> Result<Tensor<S, E, Self>, Self::Err> {
        // The whole buffer is mapped: the output keeps the input's strides.
        match inp {
            Cow::Borrowed(inp) => {
                // A new buffer written from the input's (dfdx copied the input, then mapped
                // the copy in place).
                let src: &[E] = &inp.data;
                let data = self.try_alloc_filled(src.len(), |start, piece| {
                    for (o, x) in piece.iter_mut().zip(&src[start..]) {
                        *o = op.f(x);
                    }
                })?;
                Ok(Tensor {
                    id: unique_id(),
                    data: std::sync::Arc::new(data),
                    shape: inp.shape,
                    strides: inp.strides,
                    device: self.clone(),
                    tape: Default::default(),
                })
            }
            Cow::Owned(mut inp) => {
                // re-use the data buffer
                inp.id = unique_id();
                let buf = std::sync::Arc::make_mut(&mut inp.data).data.as_mut_slice();
                for_each_piece(buf, |_, piece| {
                    for x in piece.iter_mut() {
                        *x = op.f(x);
                    }
                });
                Ok(inp)
            }
        }
    }
    fn backward<S: Shape>(
        &self,
        op: Op,
        inp: &impl Tensorlike<S, E, Self>,
        grad_inp: &mut Self::Vec,
        out: &impl Tensorlike<S, E, Self>,
        grad_out: &Self::Vec,
    ) -> Result<(), Self::Err> {
        let go: &[E] = grad_out;
        let grad_inp = grad_inp.as_mut_slice();
        match (inp.data(), out.data()) {
            (None, None) => {
                let df = op.const_df();
                for_each_piece(grad_inp, |start, piece| {
                    for (x, g) in piece.iter_mut().zip(&go[start..]) {
                        *x += df * *g;
                    }
                });
            }
            (None, Some(data)) | (Some(data), None) => {
                let data: &[E] = data;
                for_each_piece(grad_inp, |start, piece| {
                    for ((x, d), g) in piece.iter_mut().zip(&data[start..]).zip(&go[start..]) {
                        *x += op.df(d) * *g;
                    }
                });
            }
            _ => unreachable!(),
        }
        Ok(())
    }
}

impl<E: Dtype, Op: BinaryDerivative<E> + Sync> BinaryKernel<Op, E> for Cpu {
    const BACKWARD_WITHOUT_DATA: bool = Op::HAS_CONST_DF;
    fn forward<S: Shape>(
        &self,
        op: Op,
        lhs: Cow<Tensor<S, E, Self>>,
        rhs: Cow<Tensor<S, E, Self>>,
    ) -> Result<Tensor<S, E, Self>, Self::Err> {
        match (lhs, rhs) {
            (Cow::Borrowed(lhs), Cow::Borrowed(rhs))
                if block_of(lhs).is_some() && block_of(rhs).is_some() =>
            {
                let l = (lhs.data.as_slice(), block_of(lhs).unwrap());
                let r = (rhs.data.as_slice(), block_of(rhs).unwrap());
                let data = self.try_alloc_filled(lhs.shape.num_elements(), |start, piece| {
                    map2(piece, start, l, r, |a, b| op.f(a, b))
                })?;
                Ok(Tensor {
                    id: unique_id(),
                    data: std::sync::Arc::new(data),
                    shape: lhs.shape,
                    strides: lhs.shape.strides(),
                    device: self.clone(),
                    tape: Default::default(),
                })
            }
            (Cow::Borrowed(lhs), Cow::Borrowed(rhs)) => {
                let mut out = self.try_zeros_like(&lhs.shape)?;
                let mut lhs_iter = lhs.iter();
                let mut rhs_iter = rhs.iter();
                for o in out.buf_iter_mut() {
                    let l = lhs_iter.next().unwrap();
                    let r = rhs_iter.next().unwrap();
                    *o = op.f(l, r);
                }
                Ok(out)
            }
            (Cow::Owned(mut lhs), Cow::Owned(mut rhs)) => {
                let lhs_valid = lhs.strides == lhs.shape.strides();
                let rhs_valid = rhs.strides == rhs.shape.strides();
                if lhs_valid || rhs_valid {
                    let lhs_count = std::sync::Arc::strong_count(&lhs.data);
                    let rhs_count = std::sync::Arc::strong_count(&rhs.data);
                    if rhs_valid && (rhs_count == 1 || !lhs_valid || lhs_count != 1) {
                        rhs.id = unique_id();
                        if let Some(bl) = block_of(&lhs) {
                            let l: &[E] = &lhs.data;
                            let buf = std::sync::Arc::make_mut(&mut rhs.data).data.as_mut_slice();
                            for_each_piece(buf, |start, piece| {
                                map_in_place(piece, start, (l, bl), |own, other| op.f(other, own))
                            });
                            return Ok(rhs);
                        }
                        let mut lhs_idx = NdIndex::new(lhs.shape, lhs.strides);
                        for r in rhs.buf_iter_mut() {
                            *r = op.f(&lhs.data[lhs_idx.next().unwrap()], r);
                        }
                        Ok(rhs)
                    } else {
                        lhs.id = unique_id();
                        if let Some(br) = block_of(&rhs) {
                            let r: &[E] = &rhs.data;
                            let buf = std::sync::Arc::make_mut(&mut lhs.data).data.as_mut_slice();
                            for_each_piece(buf, |start, piece| {
                                map_in_place(piece, start, (r, br), |own, other| op.f(own, other))
                            });
                            return Ok(lhs);
                        }
                        let mut rhs_idx = NdIndex::new(rhs.shape, rhs.strides);
                        for l in lhs.buf_iter_mut() {
                            *l = op.f(l, &rhs.data[rhs_idx.next().unwrap()]);
                        }
                        Ok(lhs)
                    }
                } else {
                    <Self as BinaryKernel<Op, E>>::forward(
                        self,
                        op,
                        Cow::Borrowed(&lhs),
                        Cow::Borrowed(&rhs),
                    )
                }
            }
            _ => unreachable!(),
        }
    }
    fn backward<S: Shape>(
        &self,
        op: Op,
        lhs: &impl Tensorlike<S, E, Self>,
        grad_lhs: &mut Self::Vec,
        rhs: &impl Tensorlike<S, E, Self>,
        grad_rhs: &mut Self::Vec,
        grad_out: &Self::Vec,
    ) -> Result<(), Self::Err> {
        let go: &[E] = grad_out;
        let n = go.len();
        let (bl, br) = (block_of(lhs), block_of(rhs));
        let fits = |block: Option<usize>, grad: &Self::Vec| {
            block.filter(|&b| grad.len() * b == n)
        };
        let (bl, br) = (fits(bl, grad_lhs), fits(br, grad_rhs));
        let (lbuf, rbuf) = (lhs.data(), rhs.data());
        if lbuf.is_some() != rbuf.is_some() {
            unreachable!();
        }
        // The derivatives at value i, from the operands' values (l, r) or constant.
        let (dx, dy) = match lbuf {
            None => (op.const_dfdx(), op.const_dfdy()),
            Some(_) => (E::default(), E::default()),
        };
        let deriv = |li: usize, ri: usize| match (lbuf, rbuf) {
            (Some(l), Some(r)) => (op.dfdx(&l[li], &r[ri]), op.dfdy(&l[li], &r[ri])),
            _ => (dx, dy),
        };
        match (bl, br) {
            (Some(1), Some(1)) => {
                let (gl, gr) = (grad_lhs.as_mut_slice(), grad_rhs.as_mut_slice());
                for_each_block_piece(gl, gr, 1, n, |start, gl, gr| {
                    for (k, (dl, dr)) in gl.iter_mut().zip(gr.iter_mut()).enumerate() {
                        let i = start + k;
                        let (a, b) = deriv(i, i);
                        *dl += a * go[i];
                        *dr += b * go[i];
                    }
                });
                return Ok(());
            }
            // One operand dense, the other broadcast over trailing axes: the broadcast
            // operand's gradient value j is the sum over its block, in order, made by one
            // call (as dfdx's loop below adds it).
            (Some(1), Some(b)) => {
                let (gl, gr) = (grad_lhs.as_mut_slice(), grad_rhs.as_mut_slice());
                blocked_backward(gl, gr, b, go, |i, j| deriv(i, j));
                return Ok(());
            }
            (Some(b), Some(1)) => {
                let (gl, gr) = (grad_lhs.as_mut_slice(), grad_rhs.as_mut_slice());
                blocked_backward(gr, gl, b, go, |i, j| {
                    let (dl, dr) = deriv(j, i);
                    (dr, dl)
                });
                return Ok(());
            }
            _ => {}
        }
        match (lbuf, rbuf) {
            (Some(lhs_buf), Some(rhs_buf)) => {
                let mut lhs_idx = NdIndex::new(*lhs.shape(), lhs.strides());
                let mut rhs_idx = NdIndex::new(*rhs.shape(), rhs.strides());
                // NOTE: we can use .buf_iter() here because we know the outcome of this op is
                // contiguous from forward
                for &go in grad_out.iter() {
                    let lhs_i = lhs_idx.next().unwrap();
                    let rhs_i = rhs_idx.next().unwrap();
                    let l = &lhs_buf[lhs_i];
                    let r = &rhs_buf[rhs_i];
                    grad_lhs[lhs_i] += op.dfdx(l, r) * go;
                    grad_rhs[rhs_i] += op.dfdy(l, r) * go;
                }
            }
            (None, None) => {
                assert!(Op::HAS_CONST_DF);
                let mut lhs_idx = NdIndex::new(*lhs.shape(), lhs.strides());
                let mut rhs_idx = NdIndex::new(*rhs.shape(), rhs.strides());
                let dx = op.const_dfdx();
                let dy = op.const_dfdy();
                for &go in grad_out.iter() {
                    let lhs_i = lhs_idx.next().unwrap();
                    let rhs_i = rhs_idx.next().unwrap();
                    grad_lhs[lhs_i] += dx * go;
                    grad_rhs[rhs_i] += dy * go;
                }
            }
            _ => unreachable!(),
        }
        Ok(())
    }
}
