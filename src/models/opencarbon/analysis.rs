//! What a trained OpenCarbon says about itself: the POI categories' importance through the
//! SE block, the grid embeddings (embeddings.csv, for GraphSAGE), the POI weight by decile of
//! true emission.

use dfdx::prelude::*;

use super::inputs::*;
use super::network::OpenCarbonNet;
use crate::data::PreparedDataset;
use crate::error::Result;
use crate::models::Inputs;
use crate::nn::device::ModelDevice;
use crate::track::records::EmbeddingTable;
use crate::track::RunDir;

/// What the first SE block says about the POI categories: its mean channel gate over every
/// tile, and per category the gate-weighted share of the first convolution's weight mass
/// that reads the category (Σ_o gate_o · Σ|W1[o, c, ·, ·]|, normalised to sum 1). The SE
/// block weighs convolution channels, not categories (the convolution mixes categories), so
/// this is the per-category reading of it.
pub(crate) fn se_category_importance<D: ModelDevice>(
    net: &mut OpenCarbonNet<D>,
    dev: &D,
    datasets: &[&PreparedDataset],
    tiles: &[(usize, usize)],
    inputs: Inputs,
    norm: &ImageNorm,
) -> Option<(Vec<f64>, Vec<f64>)> {
    let (mut sum, mut n) = (Vec::<f64>::new(), 0usize);
    for chunk in tiles.chunks(256) {
        let (_, poi) = tile_inputs(dev, datasets, chunk, inputs, norm, Dihedral(0));
        let gates = net.poi.as_mut()?.first_se_gates(poi.as_ref()?)?;
        let c = gates.len() / chunk.len();
        sum.resize(c, 0.0);
        for row in gates.chunks_exact(c) {
            for (s, g) in sum.iter_mut().zip(row) {
                *s += *g as f64;
            }
        }
        n += chunk.len();
    }
    let gate: Vec<f64> = sum.iter().map(|s| s / n.max(1) as f64).collect();
    let w = net.poi.as_ref()?.c1.conv.weight.as_vec();
    let (o, c, k, _) = *net.poi.as_ref()?.c1.conv.weight.shape();
    let mut importance = vec![0.0f64; c];
    for (oi, g) in gate.iter().enumerate().take(o) {
        for (ci, imp) in importance.iter_mut().enumerate() {
            let base = (oi * c + ci) * k * k;
            *imp += g * w[base..base + k * k]
                .iter()
                .map(|v| v.abs() as f64)
                .sum::<f64>();
        }
    }
    let total: f64 = importance.iter().sum::<f64>().max(1e-12);
    Some((gate, importance.into_iter().map(|v| v / total).collect()))
}

/// `embeddings.csv`: dataset, x, y and the d values of the grid embedding of every tile.
pub(crate) fn write_embeddings(
    run: &RunDir,
    datasets: &[&PreparedDataset],
    tiles: &[(usize, usize)],
    embeddings: &[Vec<f32>],
) -> Result<()> {
    let table = EmbeddingTable {
        rows: tiles
            .iter()
            .zip(embeddings)
            .map(|(&(ds, t), e)| {
                let tile = datasets[ds].data.tiles[t];
                (
                    datasets[ds].entry.name.clone(),
                    tile.x,
                    tile.y,
                    e.iter().map(|v| *v as f64).collect(),
                )
            })
            .collect(),
    };
    run.write("embeddings.csv", &table.csv_text()?)
}

/// Mean POI weight of the centre fusion per decile of true log emission: the paper's claim
/// is that POIs matter more where emissions are high.
pub(crate) fn poi_weight_by_decile(
    log_emission: &[f64],
    weights: &[[f32; 2]],
) -> Vec<serde_json::Value> {
    let mut order: Vec<usize> = (0..log_emission.len()).collect();
    order.sort_by(|&a, &b| log_emission[a].total_cmp(&log_emission[b]));
    let n = order.len();
    (0..10)
        .filter_map(|d| {
            let part = &order[d * n / 10..(d + 1) * n / 10];
            (!part.is_empty()).then(|| {
                let mean =
                    part.iter().map(|&i| weights[i][1] as f64).sum::<f64>() / part.len() as f64;
                serde_json::json!({ "decile": d + 1, "tiles": part.len(), "mean_poi_weight": mean })
            })
        })
        .collect()
}
