//! `TileGraph`: the tiles of a dataset as the nodes of a petgraph graph, linked by queen
//! contiguity (the 8 surrounding tiles, the default), rook contiguity (the 4 edge-sharing
//! tiles) or k nearest tiles. Built once per dataset and shared by everything that needs
//! neighbours: the handcrafted neighbourhood features, Moran's I and the graph models.
//! Contiguity offsets come from `TileGrid`, the one definition of a tile's position.

use petgraph::graph::{NodeIndex, UnGraph};
use serde::{Deserialize, Serialize};

use super::grid::TileGrid;

/// Which tiles are linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Contiguity {
    /// The 8 tiles around (|Δx|, |Δy| ≤ 1).
    Queen,
    /// The 4 tiles sharing an edge.
    Rook,
    /// Each tile's k nearest tiles by centre distance (ties by tile order), links made
    /// symmetric, so a tile can have more than k neighbours.
    Knn(usize),
}

impl TryFrom<String> for Contiguity {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "queen" => Ok(Contiguity::Queen),
            "rook" => Ok(Contiguity::Rook),
            other => other
                .strip_prefix("knn:")
                .and_then(|k| k.parse().ok())
                .filter(|&k| k > 0)
                .map(Contiguity::Knn)
                .ok_or_else(|| {
                    format!("`{other}` is not a contiguity, expected queen, rook or knn:K (K >= 1)")
                }),
        }
    }
}

impl From<Contiguity> for String {
    fn from(c: Contiguity) -> String {
        match c {
            Contiguity::Queen => "queen".into(),
            Contiguity::Rook => "rook".into(),
            Contiguity::Knn(k) => format!("knn:{k}"),
        }
    }
}

/// Neighbour lists in compressed form: the neighbours of node i are
/// `targets[offsets[i]..offsets[i + 1]]`, ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourLists {
    pub offsets: Vec<usize>,
    pub targets: Vec<usize>,
}

impl NeighbourLists {
    pub fn nodes(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn of(&self, node: usize) -> &[usize] {
        &self.targets[self.offsets[node]..self.offsets[node + 1]]
    }

    /// Several graphs side by side (e.g. the cities of a cross-city job): node numbers of
    /// each part are shifted past the nodes of the parts before it.
    pub fn disjoint_union(parts: &[&NeighbourLists]) -> NeighbourLists {
        let mut out = NeighbourLists {
            offsets: vec![0],
            targets: Vec::new(),
        };
        let mut base = 0;
        for p in parts {
            for i in 0..p.nodes() {
                out.targets.extend(p.of(i).iter().map(|t| t + base));
                out.offsets.push(out.targets.len());
            }
            base += p.nodes();
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct TileGraph {
    pub contiguity: Contiguity,
    pub graph: UnGraph<(), ()>,
    lists: NeighbourLists,
}

impl TileGraph {
    /// Node i is tile i of the grid.
    pub fn build(grid: &TileGrid, contiguity: Contiguity) -> TileGraph {
        let n = grid.len();
        let mut graph = UnGraph::<(), ()>::with_capacity(n, 4 * n);
        for _ in 0..n {
            graph.add_node(());
        }
        let mut link = |a: usize, b: usize| {
            if a != b
                && graph
                    .find_edge(NodeIndex::new(a), NodeIndex::new(b))
                    .is_none()
            {
                graph.add_edge(NodeIndex::new(a), NodeIndex::new(b), ());
            }
        };
        match contiguity {
            Contiguity::Queen | Contiguity::Rook => {
                let offsets = grid.offsets(contiguity == Contiguity::Queen);
                for t in 0..n {
                    let (x, y) = grid.coords(t);
                    for &(i, j) in &offsets {
                        if let Some(u) = grid.at(x as i64 + i, y as i64 + j) {
                            link(t, u);
                        }
                    }
                }
            }
            Contiguity::Knn(k) => {
                for t in 0..n {
                    let (x, y) = grid.coords(t);
                    let mut others: Vec<(i64, usize)> = (0..n)
                        .filter(|&u| u != t)
                        .map(|u| {
                            let (ux, uy) = grid.coords(u);
                            let (dx, dy) = (ux as i64 - x as i64, uy as i64 - y as i64);
                            (dx * dx + dy * dy, u)
                        })
                        .collect();
                    others.sort_unstable();
                    for &(_, u) in others.iter().take(k) {
                        link(t, u);
                    }
                }
            }
        }
        let mut lists = NeighbourLists {
            offsets: vec![0],
            targets: Vec::with_capacity(2 * graph.edge_count()),
        };
        for t in 0..n {
            let mut nb: Vec<usize> = graph
                .neighbors(NodeIndex::new(t))
                .map(|i| i.index())
                .collect();
            nb.sort_unstable();
            lists.targets.extend(nb);
            lists.offsets.push(lists.targets.len());
        }
        TileGraph {
            contiguity,
            graph,
            lists,
        }
    }

    /// The neighbours of `tile`, ascending (not the tile itself).
    pub fn neighbours(&self, tile: usize) -> &[usize] {
        self.lists.of(tile)
    }

    pub fn lists(&self) -> &NeighbourLists {
        &self.lists
    }

    pub fn len(&self) -> usize {
        self.lists.nodes()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Moran's I of `values` over the graph's links with binary weights, using only tiles where
/// `values` is `Some` (both ends of a link must have a value). `None` when undefined.
pub fn morans_i(graph: &TileGraph, values: &[Option<f64>]) -> Option<f64> {
    let present: Vec<usize> = (0..graph.len()).filter(|&i| values[i].is_some()).collect();
    let n = present.len();
    if n < 3 {
        return None;
    }
    let mean = present.iter().map(|&i| values[i].unwrap()).sum::<f64>() / n as f64;
    let z = |i: usize| values[i].map(|v| v - mean);
    let denom: f64 = present.iter().map(|&i| z(i).unwrap().powi(2)).sum();
    let (mut num, mut w_sum) = (0.0, 0.0);
    for &i in &present {
        let zi = z(i).unwrap();
        for &j in graph.neighbours(i) {
            if let Some(zj) = z(j) {
                num += zi * zj;
                w_sum += 1.0;
            }
        }
    }
    if w_sum == 0.0 || denom == 0.0 {
        return None;
    }
    Some(n as f64 / w_sum * num / denom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Tile;

    fn grid(coords: &[(u32, u32)]) -> TileGrid {
        let tiles: Vec<Tile> = coords
            .iter()
            .map(|&(x, y)| Tile {
                x,
                y,
                emission: 1.0,
            })
            .collect();
        TileGrid::new(&tiles)
    }

    fn square(n: u32) -> TileGrid {
        grid(
            &(0..n)
                .flat_map(|y| (0..n).map(move |x| (x, y)))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn queen_and_rook_contiguity_on_a_square() {
        let g = square(3);
        let queen = TileGraph::build(&g, Contiguity::Queen);
        let rook = TileGraph::build(&g, Contiguity::Rook);
        // Centre (1, 1) is tile 4; corner (0, 0) is tile 0.
        assert_eq!(queen.neighbours(4), &[0, 1, 2, 3, 5, 6, 7, 8]);
        assert_eq!(queen.neighbours(0), &[1, 3, 4]);
        assert_eq!(rook.neighbours(4), &[1, 3, 5, 7]);
        assert_eq!(rook.neighbours(0), &[1, 3]);
        // Undirected, no self loops: 3×3 queen grid has 20 links, rook 12.
        assert_eq!(queen.graph.edge_count(), 20);
        assert_eq!(rook.graph.edge_count(), 12);
    }

    #[test]
    fn missing_tiles_are_not_neighbours_and_knn_links_are_symmetric() {
        let g = grid(&[(0, 0), (1, 0), (5, 5), (9, 9)]);
        let queen = TileGraph::build(&g, Contiguity::Queen);
        assert_eq!(queen.neighbours(2), &[] as &[usize]);
        let knn = TileGraph::build(&g, Contiguity::Knn(1));
        // Nearest: (0,0)↔(1,0), (5,5)↔(9,9).
        assert_eq!(knn.neighbours(0), &[1]);
        assert_eq!(knn.neighbours(3), &[2]);
        // A link made by one side only still appears on both: (3,0)'s nearest is (1,0), whose
        // own nearest is (0,0), so (1,0) ends up with two neighbours.
        let line = TileGraph::build(&grid(&[(0, 0), (1, 0), (3, 0)]), Contiguity::Knn(1));
        assert_eq!(line.neighbours(1), &[0, 2]);
        assert_eq!(line.neighbours(2), &[1]);
        for t in 0..4 {
            for &u in knn.neighbours(t) {
                assert!(knn.neighbours(u).contains(&t));
            }
        }
    }

    #[test]
    fn contiguity_round_trips_through_yaml() {
        for text in ["queen", "rook", "knn:6"] {
            let c: Contiguity = serde_yaml::from_str(text).unwrap();
            assert_eq!(serde_yaml::to_string(&c).unwrap().trim(), text);
        }
        assert!(serde_yaml::from_str::<Contiguity>("knn:0").is_err());
        assert!(serde_yaml::from_str::<Contiguity>("hex").is_err());
    }

    #[test]
    fn disjoint_union_shifts_node_numbers() {
        let a = TileGraph::build(&square(2), Contiguity::Rook);
        let u = NeighbourLists::disjoint_union(&[a.lists(), a.lists()]);
        assert_eq!(u.nodes(), 8);
        assert_eq!(u.of(4), &[5, 6]);
    }
}
