//! Pretrained image-encoder weights: a torchvision ResNet state dict, converted to safetensors
//! by scripts/convert_torchvision_resnet.py (tensor names and layouts kept, `fc` and
//! `num_batches_tracked` dropped, the input normalisation in the file's metadata), loaded
//! into the `resnet` encoder (`network::ResNetEncoder`) by name:
//!
//! | torchvision | ours |
//! |---|---|
//! | `conv1.weight`, `bn1.{weight,bias,running_mean,running_var}` | `image.stem.conv.weight`, `image.stem.bn.{gamma,beta,running_mean,running_var}` |
//! | `layer<s>.<i>.conv1` / `bn1` | `image.block<k>.a.conv` / `.bn`, k = (s − 1) · blocks + i |
//! | `layer<s>.<i>.conv2` / `bn2` | `image.block<k>.b.conv` / `.bn` |
//! | `layer<s>.<i>.downsample.0` / `.1` | `image.block<k>.down.conv` / `.bn` |
//!
//! Convolution weights share PyTorch's (out, in, kh, kw) layout, so values copy as they are.
//! The projection (`image.proj`, the replaced classifier) keeps its random initialisation.

use std::path::Path;

use super::inputs::ImageNorm;
use super::network::ImageEncoder;
use crate::error::{Error, Result};
use crate::nn::device::ModelDevice;
use crate::nn::params::{load_safetensors_with_metadata, StoredTensors};
use dfdx::shapes::HasShape;

/// The metadata key of the normalisation's per-channel mean (a JSON list of 3 numbers) of
/// pixels scaled to [0, 1]; `input_std` likewise.
pub const MEAN_KEY: &str = "input_mean";
pub const STD_KEY: &str = "input_std";

/// A converted weights file: its tensors in torchvision's names and how it wants its input.
pub struct PretrainedImage {
    pub tensors: StoredTensors,
    pub(crate) norm: ImageNorm,
    /// FNV-1a 64 of the file's bytes, for the run's records.
    pub fingerprint: String,
}

/// Read a converted weights file, with its normalisation.
pub fn read(path: &Path) -> Result<PretrainedImage> {
    let (tensors, metadata, fingerprint) = load_safetensors_with_metadata(path)?;
    let triple = |key: &str| -> Result<[f32; 3]> {
        let text = metadata.get(key).ok_or_else(|| {
            Error::dataset(
                path,
                None,
                format!(
                    "has no `{key}` in its metadata: convert the weights with scripts/convert_torchvision_resnet.py"
                ),
            )
        })?;
        let values: Vec<f32> = serde_json::from_str(text).map_err(|_| {
            Error::dataset(path, None, format!("`{key}` is {text}, expected [a, b, c]"))
        })?;
        <[f32; 3]>::try_from(values).map_err(|v| {
            Error::dataset(
                path,
                None,
                format!("`{key}` holds {} values, expected 3", v.len()),
            )
        })
    };
    let (mean, std) = (triple(MEAN_KEY)?, triple(STD_KEY)?);
    if mean.iter().any(|m| !m.is_finite()) {
        return Err(Error::dataset(
            path,
            None,
            format!("`{MEAN_KEY}` is {mean:?}, expected finite numbers"),
        ));
    }
    if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(Error::dataset(
            path,
            None,
            format!("`{STD_KEY}` is {std:?}, expected positive numbers"),
        ));
    }
    Ok(PretrainedImage {
        tensors,
        norm: ImageNorm { mean, std },
        fingerprint,
    })
}

/// torchvision's name of our encoder tensor `ours` (`image.…`) for `blocks` basic blocks per
/// stage; None for the projection, which the file does not hold.
pub fn torchvision_name(ours: &str, blocks: usize) -> Option<String> {
    let rest = ours.strip_prefix("image.")?;
    let (layer, field) = rest.rsplit_once('.')?;
    let field = match field {
        "gamma" => "weight",
        "beta" => "bias",
        other => other,
    };
    let (module, part) = layer.rsplit_once('.')?; // e.g. ("block3.a", "bn")
    let torch_module = if module == "stem" {
        match part {
            "conv" => "conv1".to_string(),
            "bn" => "bn1".to_string(),
            _ => return None,
        }
    } else {
        let (block, branch) = module.split_once('.')?;
        let k: usize = block.strip_prefix("block")?.parse().ok()?;
        let (stage, i) = (k / blocks + 1, k % blocks);
        let sub = match (branch, part) {
            ("a", "conv") => "conv1",
            ("a", "bn") => "bn1",
            ("b", "conv") => "conv2",
            ("b", "bn") => "bn2",
            ("down", "conv") => "downsample.0",
            ("down", "bn") => "downsample.1",
            _ => return None,
        };
        format!("layer{stage}.{i}.{sub}")
    };
    Some(format!("{torch_module}.{field}"))
}

/// Whether parameter `name` belongs to the image encoder's body (not its projection).
pub fn is_encoder_body(name: &str) -> bool {
    name.starts_with("image.") && !name.starts_with("image.proj.")
}

/// `weights` renamed to ours, for the encoder's body parameters `params` and batch norms
/// `stats` (named `image.….bn`, each giving `.running_mean` and `.running_var`), each with
/// the shape the encoder expects. Every tensor of the file must find its place, with that
/// shape, and every place its tensor: a file made for other widths or block counts is
/// refused, naming the first tensor that does not fit.
pub fn renamed(
    path: &Path,
    weights: &PretrainedImage,
    blocks: usize,
    params: &[(String, Vec<usize>)],
    stats: &[(String, usize)],
) -> Result<StoredTensors> {
    let mut out = StoredTensors::new();
    let mut used = std::collections::BTreeSet::new();
    let wanted = params
        .iter()
        .cloned()
        .chain(stats.iter().flat_map(|(name, channels)| {
            ["running_mean", "running_var"]
                .map(|suffix| (format!("{name}.{suffix}"), vec![*channels]))
        }));
    for (ours, shape) in wanted {
        let theirs = torchvision_name(&ours, blocks)
            .ok_or_else(|| Error::Internal(format!("no torchvision name for `{ours}`")))?;
        let another = "weights of another architecture? (image_widths, image_blocks)";
        let tensor = weights.tensors.get(&theirs).ok_or_else(|| {
            Error::dataset(
                path,
                None,
                format!("has no tensor `{theirs}` (for `{ours}`): {another}"),
            )
        })?;
        if tensor.0 != shape {
            return Err(Error::dataset(
                path,
                None,
                format!(
                    "`{theirs}` has shape {:?}, the encoder's `{ours}` is {shape:?}: {another}",
                    tensor.0
                ),
            ));
        }
        out.insert(ours, tensor.clone());
        used.insert(theirs);
    }
    let mut extra: Vec<&String> = weights
        .tensors
        .keys()
        .filter(|k| !used.contains(*k))
        .collect();
    extra.sort();
    if let Some(first) = extra.first() {
        return Err(Error::dataset(
            path,
            None,
            format!(
                "holds `{first}` and {} more tensor(s) the encoder has no place for: weights of another architecture? (image_widths, image_blocks)",
                extra.len() - 1
            ),
        ));
    }
    Ok(out)
}

/// Set an image encoder's body and batch-norm statistics from converted torchvision weights
/// (`pretrained`).
pub fn load<D: ModelDevice>(
    encoder: &mut ImageEncoder<D>,
    path: &Path,
    weights: &PretrainedImage,
    blocks: usize,
) -> Result<()> {
    use crate::nn::params::{restore_param, restore_running_stats};
    let mut params = Vec::new();
    encoder.params(&mut params);
    params.retain(|(name, _)| is_encoder_body(name));
    let param_shapes: Vec<(String, Vec<usize>)> =
        params.iter().map(|(n, p)| (n.clone(), p.shape())).collect();
    drop(params);
    let mut stats = Vec::new();
    encoder.running_stats(&mut stats);
    let stat_channels: Vec<(String, usize)> = stats
        .iter()
        .map(|(n, bn)| (n.clone(), bn.running_mean.shape().0))
        .collect();
    drop(stats);
    let stored = renamed(path, weights, blocks, &param_shapes, &stat_channels)?;
    let mut params = Vec::new();
    encoder.params(&mut params);
    for (name, p) in params.iter_mut().filter(|(n, _)| is_encoder_body(n)) {
        restore_param(path, name, p, &stored)?;
    }
    drop(params);
    let mut stats = Vec::new();
    encoder.running_stats(&mut stats);
    restore_running_stats(path, &mut stats, &stored)
}

/// Before any job starts (exit 2 on a problem): `cfg`'s `image_weights`, if any, reads and
/// fits its encoder (loaded into a throw-away copy on the CPU).
pub fn check_file(cfg: &super::OpenCarbonConfig) -> Result<()> {
    let Some(path) = &cfg.image_weights else {
        return Ok(());
    };
    let path = Path::new(path);
    let weights = read(path)?;
    let dev: dfdx::prelude::Cpu = Default::default();
    let mut encoder = ImageEncoder::new(&dev, cfg);
    load(&mut encoder, path, &weights, cfg.image_blocks)
}
