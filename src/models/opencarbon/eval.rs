//! Applying a trained OpenCarbon: every tile of a city encoded once, neighbourhoods gathered,
//! predictions and the centre fusion's weights (used by training's validation, the final
//! predictions and `predict`).

use dfdx::prelude::*;

use super::inputs::*;
use super::network::OpenCarbonNet;
use crate::data::PreparedDataset;
use crate::models::Inputs;
use crate::nn::device::ModelDevice;
use crate::nn::layers::Tensor2;

/// What evaluation gives per target.
pub(crate) struct Evaluation {
    /// Standardised log emission.
    pub predictions: Vec<f64>,
    /// The centre fusion's modality weights [image, POI], when both modalities are on.
    pub modality_weights: Option<Vec<[f32; 2]>>,
    /// The grid embedding x_g, d values per target.
    pub grid_embeddings: Vec<Vec<f32>>,
}

/// Predict (standardised) log emission for `targets` in evaluation mode: every distinct tile
/// is encoded once (in chunks), then neighbourhoods are gathered; with the centre fusion's
/// modality weights and the grid embeddings.
pub(crate) fn evaluate<D: ModelDevice>(
    net: &mut OpenCarbonNet<D>,
    dev: &D,
    datasets: &[&PreparedDataset],
    targets: &[(usize, usize)],
    inputs: Inputs,
    norm: &ImageNorm,
) -> Evaluation {
    let lay = layout(datasets, targets, net.block_half_size());
    let chunk = 256;
    let mut xs_parts: Vec<Tensor2<D>> = Vec::new();
    let mut xp_parts: Vec<Tensor2<D>> = Vec::new();
    for tiles in lay.tiles.chunks(chunk) {
        let (img, poi) = tile_inputs(dev, datasets, tiles, inputs, norm, Dihedral(0));
        let (xs, xp) = net.encode(img, poi.as_ref(), false);
        xs_parts.extend(xs);
        xp_parts.extend(xp);
    }
    let join = |parts: Vec<Tensor2<D>>| -> Option<Tensor2<D>> {
        parts
            .into_iter()
            .reduce(|a, b| (a, b).concat_along(Axis::<0>))
    };
    let (xs, xp) = (join(xs_parts), join(xp_parts));
    let mut out = Vec::with_capacity(targets.len());
    let mut weights: Option<Vec<[f32; 2]>> = None;
    let mut embeddings: Vec<Vec<f32>> = Vec::with_capacity(targets.len());
    let step = 512;
    for start in (0..targets.len()).step_by(step) {
        let end = (start + step).min(targets.len());
        let f = net.head_from_embeddings(
            xs.clone(),
            xp.clone(),
            &lay.centres[start..end],
            &lay.blocks[start..end],
            false,
        );
        out.extend(f.prediction.as_vec().into_iter().map(|v| v as f64));
        let d = f.grid_embedding.shape().1;
        embeddings.extend(
            f.grid_embedding
                .as_vec()
                .chunks_exact(d)
                .map(<[f32]>::to_vec),
        );
        if let Some(beta) = f.modality_weights {
            let w = weights.get_or_insert_with(Vec::new);
            w.extend(beta.as_vec().chunks_exact(2).map(|b| [b[0], b[1]]));
        }
    }
    Evaluation {
        predictions: out,
        modality_weights: weights,
        grid_embeddings: embeddings,
    }
}
