//! Neighbour aggregation for graph layers (GraphSAGE), CPU kernels: per node, the mean or the
//! per-feature maximum of its neighbours' rows. A node without neighbours gets a zero row, as
//! in PyTorch Geometric. The backward pass of the maximum recomputes the winners (first
//! neighbour in list order on ties) instead of storing indices.

use crate::data::graph::NeighbourLists;

/// How neighbour rows are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    Mean,
    Max,
}

/// For node `i` and feature `f`, the neighbour whose row wins the maximum.
fn argmax(lists: &NeighbourLists, h: &[f32], width: usize, i: usize, f: usize) -> Option<usize> {
    let mut best: Option<(f32, usize)> = None;
    for &j in lists.of(i) {
        let v = h[j * width + f];
        if best.is_none_or(|(b, _)| v > b) {
            best = Some((v, j));
        }
    }
    best.map(|(_, j)| j)
}

/// `h` is [nodes, width] row-major; returns the aggregated [nodes, width].
pub fn aggregate_forward(
    lists: &NeighbourLists,
    h: &[f32],
    width: usize,
    how: Aggregation,
) -> Vec<f32> {
    let n = lists.nodes();
    assert_eq!(
        h.len(),
        n * width,
        "aggregate: {} values for {n} nodes × {width}",
        h.len()
    );
    let mut y = vec![0.0f32; n * width];
    for i in 0..n {
        let nb = lists.of(i);
        if nb.is_empty() {
            continue;
        }
        let out = &mut y[i * width..(i + 1) * width];
        match how {
            Aggregation::Mean => {
                for &j in nb {
                    for (o, v) in out.iter_mut().zip(&h[j * width..(j + 1) * width]) {
                        *o += v;
                    }
                }
                let inv = 1.0 / nb.len() as f32;
                out.iter_mut().for_each(|o| *o *= inv);
            }
            Aggregation::Max => {
                for (f, o) in out.iter_mut().enumerate() {
                    let j = argmax(lists, h, width, i, f).expect("node has neighbours");
                    *o = h[j * width + f];
                }
            }
        }
    }
    y
}

/// Gradient with respect to `h` of `aggregate_forward`, from the output gradient `gy`.
pub fn aggregate_backward(
    lists: &NeighbourLists,
    h: &[f32],
    width: usize,
    how: Aggregation,
    gy: &[f32],
) -> Vec<f32> {
    let n = lists.nodes();
    let mut gh = vec![0.0f32; n * width];
    for i in 0..n {
        let nb = lists.of(i);
        if nb.is_empty() {
            continue;
        }
        let g = &gy[i * width..(i + 1) * width];
        match how {
            Aggregation::Mean => {
                let inv = 1.0 / nb.len() as f32;
                for &j in nb {
                    for (d, v) in gh[j * width..(j + 1) * width].iter_mut().zip(g) {
                        *d += v * inv;
                    }
                }
            }
            Aggregation::Max => {
                for (f, v) in g.iter().enumerate() {
                    let j = argmax(lists, h, width, i, f).expect("node has neighbours");
                    gh[j * width + f] += v;
                }
            }
        }
    }
    gh
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn gradients_match_finite_differences() {
        // 0 - 1 - 2 path, node 3 isolated, node 2 also linked to 0.
        let lists = NeighbourLists {
            offsets: vec![0, 2, 4, 6, 6],
            targets: vec![1, 2, 0, 2, 0, 1],
        };
        let width = 3;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        // Distinct values so that no maximum is tied within ±eps.
        let mut h: Vec<f32> = (0..12).map(|i| i as f32 * 0.37).collect();
        for i in (1..h.len()).rev() {
            h.swap(i, rng.gen_range(0..=i));
        }
        let up: Vec<f32> = (0..12).map(|_| rng.gen_range(-1.0..1.0)).collect();
        for how in [Aggregation::Mean, Aggregation::Max] {
            let y = aggregate_forward(&lists, &h, width, how);
            assert!(y[9..].iter().all(|v| *v == 0.0), "isolated node gets zeros");
            let loss = |h: &[f32]| -> f64 {
                aggregate_forward(&lists, h, width, how)
                    .iter()
                    .zip(&up)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum()
            };
            let g = aggregate_backward(&lists, &h, width, how, &up);
            for i in 0..h.len() {
                let (mut hp, mut hm) = (h.clone(), h.clone());
                hp[i] += 0.01;
                hm[i] -= 0.01;
                let num = (loss(&hp) - loss(&hm)) / 0.02;
                assert!(
                    (num - g[i] as f64).abs() < 1e-3,
                    "{how:?} [{i}]: {} vs {num}",
                    g[i]
                );
            }
        }
    }
}
