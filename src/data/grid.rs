//! `TileGrid`: the one definition of "neighbour" in the code base. Neighbours of (x, y) are the
//! tiles (x + i, y + j) with |i|, |j| <= k that are rows of the dataset; the others are missing
//! and are reported as `None`, never replaced by another tile.

use std::collections::HashMap;

use super::format::Tile;

#[derive(Debug, Clone)]
pub struct TileGrid {
    coords: Vec<(u32, u32)>,
    index: HashMap<(u32, u32), usize>,
}

impl TileGrid {
    pub fn new(tiles: &[Tile]) -> TileGrid {
        let coords: Vec<(u32, u32)> = tiles.iter().map(|t| (t.x, t.y)).collect();
        let index = coords.iter().enumerate().map(|(i, &c)| (c, i)).collect();
        TileGrid { coords, index }
    }

    pub fn len(&self) -> usize {
        self.coords.len()
    }

    pub fn is_empty(&self) -> bool {
        self.coords.is_empty()
    }

    pub fn coords(&self, tile: usize) -> (u32, u32) {
        self.coords[tile]
    }

    pub fn at(&self, x: i64, y: i64) -> Option<usize> {
        if x < 0 || y < 0 || x > u32::MAX as i64 || y > u32::MAX as i64 {
            return None;
        }
        self.index.get(&(x as u32, y as u32)).copied()
    }

    /// The (2k+1)×(2k+1) block centred on `tile`, row-major (north to south, west to east);
    /// the centre is slot `(2k+1)·k + k`.
    pub fn block(&self, tile: usize, k: usize) -> Vec<Option<usize>> {
        let (cx, cy) = self.coords[tile];
        let k = k as i64;
        let mut out = Vec::with_capacity(((2 * k + 1) * (2 * k + 1)) as usize);
        for j in -k..=k {
            for i in -k..=k {
                out.push(self.at(cx as i64 + i, cy as i64 + j));
            }
        }
        out
    }

    /// Offsets (Δx, Δy) of contiguous tiles: the 8 around (`queen`) or the 4 sharing an edge.
    pub fn offsets(&self, queen: bool) -> Vec<(i64, i64)> {
        (-1i64..=1)
            .flat_map(|j| (-1i64..=1).map(move |i| (i, j)))
            .filter(|&(i, j)| (i, j) != (0, 0) && (queen || i == 0 || j == 0))
            .collect()
    }

    /// Bounding box of the tiles: (min x, min y, max x, max y).
    /// Every tile's (x, y), in tile order.
    pub fn all_coords(&self) -> &[(u32, u32)] {
        &self.coords
    }

    pub fn bounds(&self) -> (u32, u32, u32, u32) {
        let mut b = (u32::MAX, u32::MAX, 0, 0);
        for &(x, y) in &self.coords {
            b = (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y));
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::graph::{morans_i, TileGraph};

    fn square(n: u32) -> Vec<Tile> {
        (0..n)
            .flat_map(|y| {
                (0..n).map(move |x| Tile {
                    x,
                    y,
                    emission: 1.0,
                })
            })
            .collect()
    }

    #[test]
    fn block_masks_missing_neighbours() {
        let g = TileGrid::new(&square(3));
        let corner = g.at(0, 0).unwrap();
        let b = g.block(corner, 1);
        assert_eq!(b.iter().filter(|s| s.is_none()).count(), 5);
        assert_eq!(b[4], Some(corner));
        assert_eq!(g.offsets(true).len(), 8);
        assert_eq!(g.offsets(false).len(), 4);
    }

    #[test]
    fn morans_i_of_a_gradient_is_high_and_of_stripes_negative() {
        let tiles = square(10);
        let g = TileGraph::build(&TileGrid::new(&tiles), crate::data::Contiguity::Queen);
        let grad: Vec<Option<f64>> = tiles.iter().map(|t| Some(t.x as f64)).collect();
        let stripes: Vec<Option<f64>> = tiles.iter().map(|t| Some((t.x % 2) as f64)).collect();
        assert!(morans_i(&g, &grad).unwrap() > 0.5);
        assert!(morans_i(&g, &stripes).unwrap() < -0.1);
    }

    #[test]
    fn morans_i_matches_hand_computation() {
        // 1×3 row: values 1, 2, 3; links (0,1), (1,2) both ways, W = 4, z = -1, 0, 1.
        let tiles: Vec<Tile> = (0..3)
            .map(|x| Tile {
                x,
                y: 0,
                emission: 1.0,
            })
            .collect();
        let g = TileGraph::build(&TileGrid::new(&tiles), crate::data::Contiguity::Queen);
        let v = vec![Some(1.0), Some(2.0), Some(3.0)];
        // I = n/W · Σ w z z / Σ z² = 3/4 · 0 / 2 = 0.
        assert!((morans_i(&g, &v).unwrap() - 0.0).abs() < 1e-12);
        let v = vec![Some(1.0), Some(1.0), Some(4.0)];
        // mean 2, z = -1, -1, 2; Σ w z z = 2·(1) + 2·(-2) = -2; Σ z² = 6; I = 3/4 · -2/6 = -0.25.
        assert!((morans_i(&g, &v).unwrap() + 0.25).abs() < 1e-12);
    }
}
