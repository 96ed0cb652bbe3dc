//! What OpenCarbon's network sees of a tile: image statistics of the training targets, the
//! dihedral augmentations, the inputs of a batch's distinct tiles, and the layout that maps a
//! batch's neighbourhoods onto them.

use std::collections::HashMap;

use crate::data::PreparedDataset;
use crate::models::Inputs;
use crate::nn::device::ModelDevice;
use crate::nn::{SparseBatch, Tensor4};

/// Per-channel image statistics of the training targets (for normalisation).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ImageNorm {
    pub(crate) mean: [f32; 3],
    pub(crate) std: [f32; 3],
}

/// Pixel mean and deviation per channel over the images of `train` (dataset, tile) only: no
/// statistic sees a validation or test tile, nor a training target's neighbour.
pub(crate) fn image_norm(datasets: &[&PreparedDataset], train: &[(usize, usize)]) -> ImageNorm {
    let (mut sum, mut sq, mut n) = ([0f64; 3], [0f64; 3], 0f64);
    for &(d, t) in train {
        for px in datasets[d].images.tile(t).chunks_exact(3) {
            for c in 0..3 {
                let v = px[c] as f64 / 255.0;
                sum[c] += v;
                sq[c] += v * v;
            }
            n += 1.0;
        }
    }
    let mut norm = ImageNorm {
        mean: [0.0; 3],
        std: [1.0; 3],
    };
    for c in 0..3 {
        let m = sum[c] / n;
        norm.mean[c] = m as f32;
        norm.std[c] = ((sq[c] / n - m * m).max(1e-8)).sqrt() as f32;
    }
    norm
}

/// One of the 8 symmetries of a square grid (the dihedral group D4): bit 0 flips rows,
/// bit 1 flips columns, bit 2 transposes first. Identity is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Dihedral(pub(crate) u8);

impl Dihedral {
    /// Where cell (row, col) of an n×n grid goes.
    pub(crate) fn apply(self, n: usize, row: usize, col: usize) -> (usize, usize) {
        let (mut r, mut c) = if self.0 & 4 != 0 {
            (col, row)
        } else {
            (row, col)
        };
        if self.0 & 1 != 0 {
            r = n - 1 - r;
        }
        if self.0 & 2 != 0 {
            c = n - 1 - c;
        }
        (r, c)
    }

    /// A neighbourhood block (M×M slots, row-major: dy outer, dx inner, as
    /// `TileGrid::block` lays it out) with its slots moved as the pixels move.
    pub(crate) fn block(self, block: &[Option<usize>]) -> Vec<Option<usize>> {
        let m = (block.len() as f64).sqrt().round() as usize;
        let mut out = vec![None; block.len()];
        for (i, slot) in block.iter().enumerate() {
            let (r, c) = self.apply(m, i / m, i % m);
            out[r * m + c] = *slot;
        }
        out
    }
}

/// The inputs of a set of tiles (dataset, tile): images (U, 3, S, S), normalised, and POI
/// rasters (U, C, R, R) as log1p of the counts, sparse; each only if its modality is on, and
/// each moved by `transform` (the identity outside augmented training).
pub(crate) fn tile_inputs<D: ModelDevice>(
    dev: &D,
    datasets: &[&PreparedDataset],
    tiles: &[(usize, usize)],
    inputs: Inputs,
    norm: &ImageNorm,
    transform: Dihedral,
) -> (Option<Tensor4<D>>, Option<SparseBatch>) {
    let images = inputs.image.then(|| {
        let s = datasets[0].images.size;
        let plane = s * s;
        let mut data = vec![0f32; tiles.len() * 3 * plane];
        for (n, &(d, t)) in tiles.iter().enumerate() {
            let img = datasets[d].images.tile(t);
            let out = &mut data[n * 3 * plane..(n + 1) * 3 * plane];
            for (p, px) in img.chunks_exact(3).enumerate() {
                let at = if transform.0 == 0 {
                    p
                } else {
                    let (r, c) = transform.apply(s, p / s, p % s);
                    r * s + c
                };
                for c in 0..3 {
                    out[c * plane + at] = (px[c] as f32 / 255.0 - norm.mean[c]) / norm.std[c];
                }
            }
        }
        dev.tensor_from_vec(data, (tiles.len(), 3, s, s))
    });
    let pois = inputs.poi.then(|| {
        let r = &datasets[0].pois;
        let mut batch = SparseBatch {
            batch: tiles.len(),
            channels: r.channels,
            size: r.size,
            entries: Vec::new(),
        };
        for (n, &(d, t)) in tiles.iter().enumerate() {
            // Cells are already merged per tile (PoiRaster::build), so each is one entry.
            batch
                .entries
                .extend(datasets[d].pois.cells[t].iter().map(|c| {
                    let (row, col) = transform.apply(r.size, c.row as usize, c.col as usize);
                    (
                        n as u32,
                        c.channel,
                        row as u16,
                        col as u16,
                        c.weight.ln_1p(),
                    )
                }));
        }
        batch
    });
    (images, pois)
}

/// A batch of targets laid out for the network: distinct tiles, centres and blocks.
pub(crate) struct Layout {
    pub(crate) tiles: Vec<(usize, usize)>,
    pub(crate) centres: Vec<usize>,
    pub(crate) blocks: Vec<Vec<Option<usize>>>,
}

pub(crate) fn layout(
    datasets: &[&PreparedDataset],
    targets: &[(usize, usize)],
    k: usize,
) -> Layout {
    let mut local: HashMap<(usize, usize), usize> = HashMap::new();
    let mut tiles = Vec::new();
    let mut id = |key: (usize, usize), tiles: &mut Vec<(usize, usize)>| {
        *local.entry(key).or_insert_with(|| {
            tiles.push(key);
            tiles.len() - 1
        })
    };
    let mut centres = Vec::with_capacity(targets.len());
    let mut blocks = Vec::with_capacity(targets.len());
    for &(d, t) in targets {
        centres.push(id((d, t), &mut tiles));
        let block = datasets[d].grid.block(t, k);
        blocks.push(
            block
                .into_iter()
                .map(|s| s.map(|n| id((d, n), &mut tiles)))
                .collect(),
        );
    }
    Layout {
        tiles,
        centres,
        blocks,
    }
}
