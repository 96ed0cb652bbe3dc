//! Pretrained image-encoder weights (`pretrained`): torchvision's own features from the same
//! weights, refusals of files that do not fit, and what `frozen` and `image_lr` train.

use std::collections::HashMap;
use std::path::Path;

use dfdx::prelude::*;

use super::tests::{fit_on_cpu, rows_for, small_config, tiny};
use super::*;
use crate::models::opencarbon::pretrained::{self, torchvision_name};
use crate::models::opencarbon::{EncoderTraining, ImageEncoderKind};

/// Write `tensors` (name, shape, values) as safetensors with `metadata`.
fn write_weights(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: HashMap<String, String>,
) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, ::safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            let view =
                ::safetensors::tensor::TensorView::new(::safetensors::Dtype::F32, shape.clone(), b)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    std::fs::write(
        path,
        ::safetensors::serialize(views, &Some(metadata)).unwrap(),
    )
    .unwrap();
}

/// The formulas of scripts/make_resnet_fixture.py for tensor `t` (sorted name order).
fn formula(name: &str, shape: &[usize], t: usize) -> Vec<f32> {
    let n: usize = shape.iter().product();
    (0..n)
        .map(|i| {
            let (x, t) = (i as f64, t as f64);
            let v = if name.ends_with("running_mean") {
                0.1 * (0.9 * x + t).sin()
            } else if name.ends_with("running_var") {
                1.0 + 0.5 * (1.1 * x + t).sin().powi(2)
            } else if shape.len() == 4 {
                let fan_in = (shape[1] * shape[2] * shape[3]) as f64;
                let hashed = (i as u64 * 2654435761 + 40503 * t as u64) % (1u64 << 32);
                (24.0 / fan_in).sqrt() * (hashed as f64 / 2f64.powi(32) - 0.5)
            } else if name.ends_with("weight") {
                1.0 + 0.2 * (0.3 * x + t).sin()
            } else {
                0.1 * (0.5 * x + t).cos()
            };
            v as f32
        })
        .collect()
}

fn resnet_config(widths: Vec<usize>, blocks: usize) -> OpenCarbonConfig {
    let mut cfg = small_config(2);
    cfg.image_encoder = ImageEncoderKind::Resnet;
    cfg.image_widths = widths;
    cfg.image_blocks = blocks;
    cfg
}

/// A ResNet-18 given torchvision's weights through the converted file gives torchvision's
/// pooled features (tests/fixtures/resnet18, scripts/make_resnet_fixture.py) to 1e-5.
#[test]
fn torchvision_resnet18_weights_give_torchvisions_features() {
    let text = include_str!("../../../tests/fixtures/resnet18/fixture.json");
    let fixture: serde_json::Value = serde_json::from_str(text).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = fixture["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(t, entry)| {
            let name = entry[0].as_str().unwrap().to_string();
            let shape: Vec<usize> = serde_json::from_value(entry[1].clone()).unwrap();
            let values = formula(&name, &shape, t);
            (name, shape, values)
        })
        .collect();
    let metadata: HashMap<String, String> =
        serde_json::from_value(fixture["metadata"].clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet18.safetensors");
    write_weights(&path, &tensors, metadata);

    let cfg = resnet_config(vec![64, 128, 256, 512], 2);
    let dev = Cpu::seed_from_u64(0);
    let mut net = OpenCarbonNet::new(&dev, &cfg, Inputs::default(), 4, 32);
    let weights = pretrained::read(&path).unwrap();
    pretrained::load(net.image.as_mut().unwrap(), &path, &weights, 2).unwrap();

    let (batch, size) = (2usize, 64usize);
    let mut x = vec![0f32; batch * 3 * size * size];
    for b in 0..batch {
        for c in 0..3 {
            for h in 0..size {
                for w in 0..size {
                    let p = (37 * (64 * h + w) + 101 * c + 53 * b + (h * w) % 17) % 256;
                    x[((b * 3 + c) * size + h) * size + w] =
                        (p as f32 / 255.0 - weights.norm.mean[c]) / weights.norm.std[c];
                }
            }
        }
    }
    let x: Tensor<(usize, usize, usize, usize), f32, Cpu> =
        dev.tensor_from_vec(x, (batch, 3, size, size));
    let ours = net.image.as_mut().unwrap().features(x, false).as_vec();
    let theirs: Vec<f32> = serde_json::from_value(fixture["features"]["data"].clone()).unwrap();
    assert_eq!(ours.len(), theirs.len());
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let spread = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
    eprintln!("features: max |ours − torchvision| {worst:.2e}, max |torchvision| {spread:.3}");
    assert!(worst < 1e-5, "max difference {worst}");
    assert!(spread > 0.1, "the features are not all zero");
}

/// A random `resnet` encoder's body saved under torchvision's names, with the metadata the
/// converter writes: the weights `image_weights` reads.
fn saved_encoder(
    cfg: &OpenCarbonConfig,
    path: &Path,
    seed: u64,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let dev = Cpu::seed_from_u64(seed);
    let mut net = OpenCarbonNet::new(&dev, cfg, Inputs::default(), 4, 32);
    let mut tensors = Vec::new();
    let mut ps = Vec::new();
    net.params(&mut ps);
    for (name, p) in ps.iter().filter(|(n, _)| pretrained::is_encoder_body(n)) {
        tensors.push((
            torchvision_name(name, cfg.image_blocks).unwrap(),
            p.shape(),
            p.values(),
        ));
    }
    drop(ps);
    for (name, bn) in net
        .running_stats()
        .into_iter()
        .filter(|(n, _)| n.starts_with("image."))
    {
        // Statistics other than the initial ones, so that loading them is seen.
        let n = bn.running_mean.shape().0;
        for (suffix, values) in [
            (
                "running_mean",
                (0..n).map(|i| 0.01 * i as f32).collect::<Vec<_>>(),
            ),
            (
                "running_var",
                (0..n).map(|i| 1.0 + 0.02 * i as f32).collect(),
            ),
        ] {
            let ours = format!("{name}.{suffix}");
            tensors.push((
                torchvision_name(&ours, cfg.image_blocks).unwrap(),
                vec![n],
                values,
            ));
        }
    }
    let metadata = HashMap::from([
        (
            pretrained::MEAN_KEY.to_string(),
            "[0.5, 0.4, 0.3]".to_string(),
        ),
        (
            pretrained::STD_KEY.to_string(),
            "[0.2, 0.25, 0.3]".to_string(),
        ),
    ]);
    write_weights(path, &tensors, metadata);
    tensors
}

/// A file made for another block count, one missing a tensor or its normalisation, and a
/// pretrained small encoder are refused, naming what does not fit.
#[test]
fn weights_that_do_not_fit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let two_blocks = resnet_config(vec![4, 8], 2);
    let tensors = saved_encoder(&two_blocks, &path, 1);
    let dev = Cpu::seed_from_u64(0);
    let weights = pretrained::read(&path).unwrap();
    let mut one_block = OpenCarbonNet::new(
        &dev,
        &resnet_config(vec![4, 8], 1),
        Inputs::default(),
        4,
        32,
    );
    let e = pretrained::load(one_block.image.as_mut().unwrap(), &path, &weights, 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("holds `layer1.1.bn1.bias` and ") && e.contains("no place for"),
        "{e}"
    );
    let mut wider = OpenCarbonNet::new(
        &dev,
        &resnet_config(vec![4, 16], 2),
        Inputs::default(),
        4,
        32,
    );
    let e = pretrained::load(wider.image.as_mut().unwrap(), &path, &weights, 2)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`layer2.0.conv1.weight` has shape [8, 4, 3, 3], the encoder's `image.block2.a.conv.weight` is [16, 4, 3, 3]"),
        "{e}"
    );

    let short: Vec<_> = tensors
        .iter()
        .filter(|t| t.0 != "layer2.1.bn2.running_var")
        .cloned()
        .collect();
    write_weights(
        &path,
        &short,
        HashMap::from([
            (pretrained::MEAN_KEY.into(), "[0.5, 0.4, 0.3]".into()),
            (pretrained::STD_KEY.into(), "[0.2, 0.25, 0.3]".into()),
        ]),
    );
    let weights = pretrained::read(&path).unwrap();
    let mut net = OpenCarbonNet::new(&dev, &two_blocks, Inputs::default(), 4, 32);
    let e = pretrained::load(net.image.as_mut().unwrap(), &path, &weights, 2)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("has no tensor `layer2.1.bn2.running_var`"),
        "{e}"
    );
    write_weights(&path, &tensors, HashMap::new());
    let e = pretrained::read(&path).map(|_| ()).unwrap_err().to_string();
    assert!(
        e.contains("input_mean") && e.contains("convert_torchvision_resnet.py"),
        "{e}"
    );

    let mut small = small_config(2);
    small.image_weights = Some("w.safetensors".into());
    assert!(small
        .check()
        .iter()
        .any(|(f, m)| *f == "image_weights" && m.contains("resnet")));
    let mut frozen_lr = resnet_config(vec![4, 8], 2);
    frozen_lr.image_training = EncoderTraining::Frozen;
    frozen_lr.image_lr = Some(1e-4);
    assert!(frozen_lr.check().iter().any(|(f, _)| *f == "image_lr"));
}

/// (largest change of the encoder body's weights, largest change of its batch-norm
/// statistics) between the loaded file and the trained checkpoint, after two epochs with
/// `image_weights` under `training` and `image_lr`.
fn trained_changes(training: EncoderTraining, image_lr: Option<f64>) -> (f32, f32) {
    let dir = tempfile::tempdir().unwrap();
    let ds = tiny(&dir.path().join("cache"));
    let rows = rows_for(&ds, 20, 8);
    let mut cfg = resnet_config(vec![4, 8], 1);
    let path = dir.path().join("w.safetensors");
    let saved = saved_encoder(&cfg, &path, 7);
    cfg.image_weights = Some(path.display().to_string());
    cfg.image_training = training;
    cfg.image_lr = image_lr;
    // With a moving average of the weights, which must leave a frozen body as loaded too.
    cfg.ema = 0.9;
    let mut run = RunDir::begin(&dir.path().join("runs"), "pretrained").unwrap();
    fit_on_cpu(&cfg, 3, &ds, &rows, &mut run).unwrap();
    let stored = crate::nn::params::load_safetensors(&run.path("best.safetensors")).unwrap();
    let loaded: HashMap<&str, &Vec<f32>> = saved.iter().map(|(n, _, v)| (n.as_str(), v)).collect();
    let (mut body, mut stats, mut compared) = (0f32, 0f32, 0);
    for (ours, (_, values)) in &stored {
        if !ours.starts_with("image.") || ours.starts_with("image.proj.") {
            continue;
        }
        let theirs = torchvision_name(ours, 1).unwrap();
        let change = values
            .iter()
            .zip(loaded[theirs.as_str()].iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        compared += 1;
        if ours.contains("running_") {
            stats = stats.max(change);
        } else {
            body = body.max(change);
        }
    }
    assert_eq!(
        compared,
        saved.len(),
        "every loaded tensor is in the checkpoint"
    );
    (body, stats)
}

/// Frozen: the body's weights and batch-norm statistics stay as loaded, bit for bit, moving
/// average of the weights included.
/// Fine-tuned: the body trains, and with `image_lr` a million times below `lr` it barely
/// moves (its statistics still follow the data: they are no learning-rate matter).
#[test]
fn frozen_and_own_rate_encoders_train_what_they_say() {
    let (body, stats) = trained_changes(EncoderTraining::Frozen, None);
    assert_eq!((body, stats), (0.0, 0.0), "a frozen encoder changed");
    let (body, stats) = trained_changes(EncoderTraining::FineTune, None);
    assert!(
        body > 1e-4 && stats > 1e-4,
        "fine-tuning left the body ({body}, {stats})"
    );
    let (slow, _) = trained_changes(EncoderTraining::FineTune, Some(3e-9));
    assert!(
        slow < 1e-6 && slow < body / 100.0,
        "image_lr ignored: {slow} vs {body}"
    );
}
