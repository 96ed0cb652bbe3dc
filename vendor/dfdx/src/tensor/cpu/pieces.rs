//! (opencarbon) Element-wise work and reductions along trailing axes, split across rayon's
//! pool in pieces of a fixed length.
//!
//! The split depends on the buffers' shapes alone, never on the number of threads; every
//! value is computed by one call, with the same expression and, for sums, the same terms in
//! the same order as dfdx's serial loops. So results are the same bits at any thread count
//! and equal to those loops'.

use rayon::prelude::*;

use crate::shapes::Shape;

/// Values per piece.
pub(crate) const PIECE: usize = 1 << 14;

/// Below this many values the work stays on the calling thread (a rayon call costs more).
pub(crate) const PARALLEL_MIN: usize = 1 << 15;

/// `f(start, piece)` for consecutive pieces of `buf`, `start` being the piece's offset.
pub(crate) fn for_each_piece<T: Send>(buf: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    if buf.len() < PARALLEL_MIN {
        f(0, buf);
    } else {
        buf.par_chunks_mut(PIECE)
            .enumerate()
            .for_each(|(i, piece)| f(i * PIECE, piece));
    }
}

/// `f(first_block, a_piece, b_piece)` over pieces of whole blocks: `a` holds blocks of
/// `block` values, `b` one value per block (a reduction's output, or a broadcast operand's
/// gradient), so that each value of `b` is computed by one call. `work` (values touched in
/// all) decides whether to go parallel.
pub(crate) fn for_each_block_piece<T: Send, U: Send>(
    a: &mut [T],
    b: &mut [U],
    block: usize,
    work: usize,
    f: impl Fn(usize, &mut [T], &mut [U]) + Sync,
) {
    assert!(block > 0 && a.len() == b.len() * block);
    if work < PARALLEL_MIN {
        f(0, a, b);
    } else {
        let per = (PIECE / block).max(1);
        a.par_chunks_mut(per * block)
            .zip(b.par_chunks_mut(per))
            .enumerate()
            .for_each(|(i, (pa, pb))| f(i * per, pa, pb));
    }
}

/// Σ values of a buffer, from zero: in one running sum below `PARALLEL_MIN` values (dfdx's
/// order), else one running sum per piece on rayon's pool and the pieces' sums added in
/// order (an order fixed by the length alone).
pub(crate) fn sum_all<E: crate::dtypes::Dtype>(buf: &[E]) -> E {
    let run = |part: &[E]| {
        let mut tmp: E = Default::default();
        for v in part {
            tmp += *v;
        }
        tmp
    };
    if buf.len() < PARALLEL_MIN {
        return run(buf);
    }
    let sums: std::vec::Vec<E> = buf.par_chunks(PIECE).map(run).collect();
    run(&sums)
}

/// `f(first, piece)` over pieces of `out`, each of whose values stands for `block` values of
/// work (a reduction's output), with pieces of about `PIECE` values of work; parallel when
/// the whole is at least `PARALLEL_MIN` values of work.
pub(crate) fn for_each_output_piece<T: Send>(
    out: &mut [T],
    block: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    if out.len() * block < PARALLEL_MIN {
        f(0, out);
    } else {
        let per = (PIECE / block.max(1)).max(1);
        out.par_chunks_mut(per)
            .enumerate()
            .for_each(|(i, piece)| f(i * per, piece));
    }
}

/// How value i of a `shape`-shaped operand stored with `strides` lies in its buffer, if it
/// lies at i / block: the operand is row-major over its leading axes and broadcast over its
/// trailing ones (strides 0), and `block` is the number of trailing values that share one
/// buffer value (1: the operand is dense).
pub(crate) fn trailing_block<S: Shape>(shape: &S, strides: &S::Concrete, buf_len: usize) -> Option<usize> {
    let dims = shape.concrete();
    let (dims, strides) = (dims.as_ref(), strides.as_ref());
    let mut d = dims.len();
    let mut block = 1;
    while d > 0 && strides[d - 1] == 0 {
        block *= dims[d - 1];
        d -= 1;
    }
    let mut expect = 1;
    for k in (0..d).rev() {
        if dims[k] != 1 && strides[k] != expect {
            return None;
        }
        expect *= dims[k];
    }
    (block > 0 && expect == buf_len).then_some(block)
}
