//! Tests of OpenCarbon's training: determinism, gradients, masking, ablation switches,
//! normalisation from training targets only, recipes (loss, schedule, EMA, augmentation).
use super::*;
use crate::data::prepared::prepare_dataset;
use crate::data::synth::GENERATOR_VERSION;
use crate::data::{DatasetEntry, DatasetSource};
use crate::metrics::r2;
use crate::models::opencarbon::ImageEncoderKind;
use crate::nn::device::DeviceSpec;
use crate::nn::layers::Tensor2;
use crate::nn::learner;

pub(super) fn tiny(cache: &std::path::Path) -> PreparedDataset {
    let entry = DatasetEntry {
        name: "tiny".into(),
        source: DatasetSource::Preset {
            preset: "tiny".into(),
            seed: 0,
            generator: GENERATOR_VERSION,
        },
    };
    prepare_dataset(&entry, cache, 32, 32).unwrap()
}

/// The target the unit tests train on: ln e − 10.
const SCALE: TargetScale = TargetScale {
    mean: 10.0,
    std: 1.0,
};

pub(super) fn small_config(epochs: usize) -> OpenCarbonConfig {
    let mut cfg: OpenCarbonConfig = serde_yaml::from_str("{}").unwrap();
    cfg.embedding_dim = 16;
    cfg.image_widths = vec![8, 16];
    cfg.max_epochs = epochs;
    cfg.valid_every = 10;
    cfg.min_epochs = epochs;
    cfg.contrastive_epoch = 5;
    cfg.alpha = 0.01;
    cfg.batch_size = 10;
    cfg.lr = 3e-3;
    cfg.weight_decay = 0.0;
    cfg
}

/// `fit_predict` on the CPU with every input on.
pub(super) fn fit_on_cpu(
    cfg: &OpenCarbonConfig,
    seed: u64,
    ds: &PreparedDataset,
    rows: &[Row],
    run: &mut RunDir,
) -> Result<Fitted> {
    let job = JobInput {
        inputs: Inputs::default(),
        seed,
        device: DeviceSpec::Cpu,
        dataset_label: ds.entry.name.clone(),
        split_label: "test".into(),
        datasets: &[ds],
        rows,
        reads_run: None,
    };
    fit_predict(cfg, &job, run)
}

pub(super) fn rows_for(ds: &PreparedDataset, n_train: usize, n_valid: usize) -> Vec<Row> {
    let targets: Vec<usize> = (0..ds.data.tiles.len())
        .filter(|&t| ds.data.tiles[t].is_target())
        .collect();
    targets
        .iter()
        .enumerate()
        .map(|(i, &t)| Row {
            dataset: 0,
            tile: t,
            part: if i < n_train {
                SplitPart::Train
            } else {
                SplitPart::Valid
            },
        })
        .take(n_train + n_valid)
        .collect()
}

#[test]
fn a_small_model_overfits_twenty_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let ds = tiny(&dir.path().join("cache"));
    // No validation tiles: the best epoch is then the one with the lowest training loss.
    let rows = rows_for(&ds, 20, 0);
    let mut run = RunDir::begin(&dir.path().join("runs"), "overfit").unwrap();
    let mut cfg = small_config(300);
    cfg.batch_size = 20; // one batch: batch-norm running statistics settle on these tiles
    let fitted = fit_on_cpu(&cfg, 0, &ds, &rows, &mut run).unwrap();
    let (mut y, mut p) = (vec![], vec![]);
    for (r, pred) in rows.iter().zip(&fitted.predictions) {
        if r.part == SplitPart::Train {
            y.push(ds.data.tiles[r.tile].emission.ln());
            p.push(*pred);
        }
    }
    let fit = r2(&y, &p);
    eprintln!("overfit: train R² {fit:.4} on {} tiles", y.len());
    assert!(fit > 0.95, "train R² {fit}");
    assert!(run.path("best.safetensors").is_file());
}

#[test]
fn the_resnet_encoder_trains_checkpoints_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let ds = tiny(&dir.path().join("cache"));
    let rows = rows_for(&ds, 20, 8);
    let mut cfg = small_config(4);
    cfg.valid_every = 2;
    cfg.image_encoder = ImageEncoderKind::Resnet;
    cfg.image_widths = vec![4, 8];
    cfg.image_blocks = 2;
    let mut run = RunDir::begin(&dir.path().join("runs"), "resnet").unwrap();
    let fitted = fit_on_cpu(&cfg, 0, &ds, &rows, &mut run).unwrap();
    assert!(fitted.predictions.iter().all(|p| p.is_finite()));
    let stored = crate::nn::params::load_safetensors(&run.path("best.safetensors")).unwrap();
    for want in [
        "image.stem.conv.weight",
        "image.block2.down.bn.running_mean",
    ] {
        assert!(stored.contains_key(want), "{want} not in the checkpoint");
    }
}

/// Training losses of the first `epochs` epochs of the small configuration on `dev`.
#[cfg(feature = "cuda")]
fn epoch_losses<D: ModelDevice>(dev: D, ds: &PreparedDataset, epochs: usize) -> Vec<f64> {
    let cfg = small_config(epochs);
    let datasets = [ds];
    let train: Vec<(usize, usize)> = rows_for(ds, 20, 0)
        .iter()
        .map(|r| (r.dataset, r.tile))
        .collect();
    let mut trainer = Trainer::new(&cfg, Inputs::default(), 0, dev, &datasets, train, SCALE);
    (0..epochs)
        .map(|e| trainer.epoch(e).unwrap().loss_per_tile)
        .collect()
}

/// The same seed on the CPU and on a GPU: the same initial parameters and batches, so the
/// same losses up to float summation order (which compounds over the epochs).
#[cfg(feature = "cuda")]
#[test]
fn training_on_the_gpu_follows_the_cpu() {
    let Some(gpu) = crate::nn::cuda::tests::gpu_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ds = tiny(&dir.path().join("cache"));
    let cpu = epoch_losses(Cpu::seed_from_u64(0), &ds, 6);
    drop(gpu);
    let gpu = epoch_losses(crate::nn::cuda::open(0, 0).unwrap(), &ds, 6);
    eprintln!("losses per epoch, CPU {cpu:?}, GPU {gpu:?}");
    assert!((cpu[0] - gpu[0]).abs() <= 1e-4 * cpu[0].abs().max(1.0));
    for (c, g) in cpu.iter().zip(&gpu) {
        assert!(
            (c - g).abs() <= 2e-2 * c.abs().max(1.0),
            "CPU {c} vs GPU {g}"
        );
    }
}

#[test]
fn the_same_seed_gives_identical_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let ds = tiny(&dir.path().join("cache"));
    let rows = rows_for(&ds, 20, 8);
    let go = |seed: u64, name: &str| {
        let mut run = RunDir::begin(&dir.path().join("runs"), name).unwrap();
        fit_on_cpu(&small_config(10), seed, &ds, &rows, &mut run)
            .unwrap()
            .predictions
    };
    let a = go(3, "a");
    assert_eq!(a, go(3, "b"));
    assert_ne!(a, go(4, "c"));
}

#[test]
fn every_parameter_gets_a_gradient_in_every_variant() {
    let dir = tempfile::tempdir().unwrap();
    let ds = tiny(&dir.path().join("cache"));
    let targets: Vec<(usize, usize)> = (0..ds.data.tiles.len())
        .filter(|&t| ds.data.tiles[t].is_target())
        .take(12)
        .map(|t| (0, t))
        .collect();
    let norm = image_norm(&[&ds], &targets);
    let full = Inputs::default();
    for (inputs, se, resnet) in [
        (full, true, false),
        (full, false, false),
        (full, true, true),
        (
            Inputs {
                image: false,
                ..full
            },
            true,
            false,
        ),
        (Inputs { poi: false, ..full }, true, false),
        (
            Inputs {
                neighborhood: false,
                ..full
            },
            true,
            false,
        ),
    ] {
        let dev = Cpu::seed_from_u64(5);
        let mut cfg = small_config(1);
        cfg.se = se;
        if resnet {
            cfg.image_encoder = ImageEncoderKind::Resnet;
            cfg.image_widths = vec![4, 8];
            cfg.image_blocks = 1;
        }
        let mut net = OpenCarbonNet::new(&dev, &cfg, inputs, ds.pois.channels, ds.pois.size);
        let lay = layout(&[&ds], &targets, net.block_half_size());
        let (img, poi) = tile_inputs(&dev, &[&ds], &lay.tiles, inputs, &norm, Dihedral(0));
        let img = img.map(|i| i.traced(Gradients::leaky()));
        let (xs, xp) = net.encode(img, poi.as_ref(), true);
        let f = net.head_from_embeddings(xs, xp, &lay.centres, &lay.blocks, true);
        let mut loss = f.prediction.square().sum();
        if let Some((s, p)) = f.centre_pair {
            loss = loss + info_nce(s, p, 0.07);
        }
        let mut grads = loss.backward();
        let mut ps = Vec::new();
        net.params(&mut ps);
        for (name, p) in &ps {
            let g = p.grad(&mut grads).unwrap();
            assert!(
                g.iter().any(|v| *v != 0.0),
                "{inputs:?} se={se} resnet={resnet}: `{name}` got no gradient"
            );
        }
    }
}

/// The first target tile with a missing neighbour, and the first with all 8.
fn edge_and_inner(ds: &PreparedDataset) -> (usize, usize) {
    let target = |t: &usize| ds.data.tiles[*t].is_target();
    let missing = |t: usize| ds.grid.block(t, 1).iter().filter(|s| s.is_none()).count();
    let edge = (0..ds.data.tiles.len())
        .filter(target)
        .find(|&t| missing(t) > 0)
        .unwrap();
    let inner = (0..ds.data.tiles.len())
        .filter(target)
        .find(|&t| missing(t) == 0)
        .unwrap();
    (edge, inner)
}

/// `ds` with the image and POIs of tile `t` replaced (white pixels, no POIs).
fn with_tile_changed(ds: &PreparedDataset, t: usize) -> PreparedDataset {
    let mut changed = ds.clone();
    let n = changed.images.size * changed.images.size * 3;
    changed.images.data[t * n..(t + 1) * n].fill(255);
    changed.pois.cells[t].clear();
    changed
}

#[test]
fn missing_neighbours_are_zero_slots_and_present_neighbours_count() {
    let dir = tempfile::tempdir().unwrap();
    let ds = tiny(&dir.path().join("cache"));
    let dev = Cpu::seed_from_u64(1);
    let cfg = small_config(1);
    let full = Inputs::default();
    let mut net = OpenCarbonNet::new(&dev, &cfg, full, ds.pois.channels, ds.pois.size);
    let (edge, inner) = edge_and_inner(&ds);
    let norm = image_norm(&[&ds], &[(0, edge), (0, inner)]);
    let predict_one = |net: &mut OpenCarbonNet<Cpu>, ds: &PreparedDataset, t: usize| {
        evaluate(net, &dev, &[ds], &[(0, t)], full, &norm).predictions[0]
    };
    let before = predict_one(&mut net, &ds, edge);
    assert!(before.is_finite());

    // The explicit computation: encode the block's present tiles, append a row of zeros to
    // each embedding matrix and point every missing slot at it. A missing slot filled with
    // any tile's data (the reference fills it with tile 0's; our centre is local index 0)
    // would differ.
    let block = ds.grid.block(edge, 1);
    let present: Vec<(usize, usize)> = block.iter().flatten().map(|&t| (0, t)).collect();
    let (img, poi) = tile_inputs(&dev, &[&ds], &present, full, &norm, Dihedral(0));
    let (xs, xp) = net.encode::<NoneTape>(img, poi.as_ref(), false);
    let zero_row = |x: Tensor2<Cpu>| {
        let d = x.shape().1;
        (x, dev.zeros_like(&(1, d))).concat_along(Axis::<0>)
    };
    let (xs, xp) = (xs.map(zero_row), xp.map(zero_row));
    let zero_slot = present.len();
    let mut next = 0;
    let slots: Vec<Option<usize>> = block
        .iter()
        .map(|s| {
            Some(match s {
                Some(_) => {
                    next += 1;
                    next - 1
                }
                None => zero_slot,
            })
        })
        .collect();
    let centre = slots[block.len() / 2].unwrap();
    let explicit = net
        .head_from_embeddings(xs, xp, &[centre], &[slots], false)
        .prediction
        .as_vec()[0] as f64;
    assert!(
        (explicit - before).abs() <= 1e-5 * before.abs().max(1.0),
        "masked {before} vs explicit zero slots {explicit}"
    );

    // Changing a present neighbour moves the prediction; changing every tile outside the
    // block does not.
    let neighbour = block
        .iter()
        .flatten()
        .copied()
        .find(|&t| t != edge)
        .unwrap();
    let moved = predict_one(&mut net, &with_tile_changed(&ds, neighbour), edge);
    assert_ne!(
        before, moved,
        "a present neighbour did not change the prediction"
    );
    let mut outside = ds.clone();
    let inside: Vec<usize> = block.iter().flatten().copied().collect();
    for t in 0..outside.data.tiles.len() {
        if !inside.contains(&t) {
            outside = with_tile_changed(&outside, t);
        }
    }
    assert_eq!(before, predict_one(&mut net, &outside, edge));

    // A tile with no neighbours at all still gets a finite prediction.
    let mut only = ds.clone();
    only.grid = crate::data::TileGrid::new(&[ds.data.tiles[edge]]);
    only.images.data = ds.images.tile(edge).to_vec().into();
    only.pois.cells = vec![ds.pois.cells[edge].clone()];
    only.data.tiles = vec![ds.data.tiles[edge]];
    assert!(predict_one(&mut net, &only, 0).is_finite());
}

/// Parameter names of a freshly built network.
fn parameter_names(cfg: &OpenCarbonConfig, inputs: Inputs, ds: &PreparedDataset) -> Vec<String> {
    let dev = Cpu::seed_from_u64(0);
    let mut net = OpenCarbonNet::new(&dev, cfg, inputs, ds.pois.channels, ds.pois.size);
    let mut ps = Vec::new();
    net.params(&mut ps);
    ps.into_iter().map(|(n, _)| n).collect()
}

#[test]
fn each_ablation_switch_removes_its_module() {
    let dir = tempfile::tempdir().unwrap();
    let ds = tiny(&dir.path().join("cache"));
    let cfg = small_config(1);
    let full = Inputs::default();
    let all = parameter_names(&cfg, full, &ds);
    let has = |names: &[String], prefix: &str| names.iter().any(|n| n.starts_with(prefix));
    for prefix in [
        "image.",
        "poi.",
        "poi.se1",
        "nb_image.",
        "nb_poi.",
        "attn_c.",
        "fuse_centre.",
    ] {
        assert!(has(&all, prefix), "full model lacks {prefix}");
    }
    let no_image = parameter_names(
        &cfg,
        Inputs {
            image: false,
            ..full
        },
        &ds,
    );
    assert!(!has(&no_image, "image.") && !has(&no_image, "nb_image."));
    assert!(!has(&no_image, "fuse_centre.") && has(&no_image, "poi."));
    let no_poi = parameter_names(&cfg, Inputs { poi: false, ..full }, &ds);
    assert!(!has(&no_poi, "poi.") && !has(&no_poi, "nb_poi.") && has(&no_poi, "image."));
    let no_nb = parameter_names(
        &cfg,
        Inputs {
            neighborhood: false,
            ..full
        },
        &ds,
    );
    for prefix in [
        "nb_image.",
        "nb_poi.",
        "fuse_nb.",
        "attn_g.",
        "attn_n.",
        "attn_c.",
    ] {
        assert!(!has(&no_nb, prefix), "no-nb keeps {prefix}");
    }
    let no_se = parameter_names(
        &OpenCarbonConfig {
            se: false,
            ..cfg.clone()
        },
        full,
        &ds,
    );
    assert!(!has(&no_se, "poi.se1") && !has(&no_se, "poi.se2") && has(&no_se, "poi.c1."));

    // Without the neighbourhood module only the targets are encoded.
    let dev = Cpu::seed_from_u64(0);
    let targets: Vec<(usize, usize)> = (0..ds.data.tiles.len())
        .filter(|&t| ds.data.tiles[t].is_target())
        .take(10)
        .map(|t| (0, t))
        .collect();
    let mut net = OpenCarbonNet::new(
        &dev,
        &cfg,
        Inputs {
            neighborhood: false,
            ..full
        },
        ds.pois.channels,
        ds.pois.size,
    );
    assert_eq!(
        layout(&[&ds], &targets, net.block_half_size()).tiles.len(),
        10
    );
    net.inputs.neighborhood = true;
    assert!(layout(&[&ds], &targets, net.block_half_size()).tiles.len() > 10);
}

/// Per-epoch losses (prediction and contrastive) and final parameters of a few epochs of
/// training on `train` targets of `ds`.
fn train_trace(
    cfg: &OpenCarbonConfig,
    ds: &PreparedDataset,
    train: &[(usize, usize)],
    epochs: usize,
) -> (Vec<(f64, f64)>, Vec<Vec<f32>>) {
    let datasets = [ds];
    let mut trainer = Trainer::new(
        cfg,
        Inputs::default(),
        0,
        Cpu::seed_from_u64(0),
        &datasets,
        train.to_vec(),
        SCALE,
    );
    let losses = (0..epochs)
        .map(|e| {
            let s = trainer.epoch(e).unwrap();
            (s.prediction_loss_per_tile, s.contrastive_loss_per_tile)
        })
        .collect();
    let mut ps = Vec::new();
    trainer.net.params(&mut ps);
    (losses, ps.iter().map(|(_, p)| p.values()).collect())
}

#[test]
fn the_contrastive_switch_shows_in_the_logged_loss() {
    let dir = tempfile::tempdir().unwrap();
    let ds = tiny(&dir.path().join("cache"));
    let train: Vec<(usize, usize)> = rows_for(&ds, 20, 0).iter().map(|r| (0, r.tile)).collect();
    let mut cfg = small_config(3);
    cfg.contrastive_epoch = 1;
    let (on, _) = train_trace(&cfg, &ds, &train, 3);
    assert_eq!(on[0].1, 0.0, "InfoNCE before its first epoch");
    assert!(on[1].1 > 0.0 && on[2].1 > 0.0, "{on:?}");
    cfg.contrastive = false;
    let (off, _) = train_trace(&cfg, &ds, &train, 3);
    assert!(off.iter().all(|(_, c)| *c == 0.0), "{off:?}");
}

#[test]
fn training_never_reads_tiles_outside_the_training_neighbourhoods() {
    let dir = tempfile::tempdir().unwrap();
    let ds = tiny(&dir.path().join("cache"));
    let train: Vec<(usize, usize)> = rows_for(&ds, 20, 0).iter().map(|r| (0, r.tile)).collect();
    let reach: std::collections::HashSet<usize> = train
        .iter()
        .flat_map(|&(_, t)| ds.grid.block(t, 1).into_iter().flatten())
        .collect();
    let mut changed = ds.clone();
    let mut outside = 0;
    for t in 0..ds.data.tiles.len() {
        if !reach.contains(&t) {
            changed = with_tile_changed(&changed, t);
            outside += 1;
        }
    }
    assert!(outside > 0);
    let mut cfg = small_config(3);
    cfg.contrastive_epoch = 1;
    cfg.augment = true;
    cfg.ema = 0.9;
    let a = train_trace(&cfg, &ds, &train, 3);
    let b = train_trace(&cfg, &changed, &train, 3);
    assert_eq!(
        a.0, b.0,
        "losses moved with tiles no training step may read"
    );
    assert_eq!(
        a.1, b.1,
        "parameters moved with tiles no training step may read"
    );
    // And the image statistics really are the training targets': changing a training
    // target's neighbour (an input, not a statistic) moves training.
    let neighbour = *reach.iter().find(|t| !train.contains(&(0, **t))).unwrap();
    let c = train_trace(&cfg, &with_tile_changed(&ds, neighbour), &train, 3);
    assert_ne!(a.0, c.0);
}

#[test]
fn dihedral_transforms_move_pixels_and_neighbourhoods_alike() {
    // A 3×3 picture whose pixel values are the slot numbers: transforming the picture and
    // transforming the block of slots must give the same arrangement, for all 8 elements,
    // and the 8 arrangements must differ.
    let block: Vec<Option<usize>> = (0..9).map(Some).collect();
    let mut seen = std::collections::HashSet::new();
    for g in 0..8u8 {
        let t = Dihedral(g);
        let moved_block = t.block(&block);
        let mut moved_picture = [0usize; 9];
        for (i, v) in block.iter().enumerate() {
            let (r, c) = t.apply(3, i / 3, i % 3);
            moved_picture[r * 3 + c] = v.unwrap();
        }
        let as_slots: Vec<Option<usize>> = moved_picture.iter().map(|&v| Some(v)).collect();
        assert_eq!(moved_block, as_slots, "transform {g}");
        assert_eq!(moved_block[4], Some(4), "the centre stays the centre");
        seen.insert(moved_block);
    }
    assert_eq!(seen.len(), 8);
    // A rotation by 90°: transpose then flip columns sends (0, 0) to (0, 2).
    assert_eq!(Dihedral(6).apply(3, 0, 0), (0, 2));
}

#[test]
fn recipes_train_and_differ() {
    // Each recipe switch changes the training it claims to change, and keeps it finite.
    let dir = tempfile::tempdir().unwrap();
    let ds = tiny(&dir.path().join("cache"));
    let train: Vec<(usize, usize)> = rows_for(&ds, 20, 0).iter().map(|r| (0, r.tile)).collect();
    let base = small_config(3);
    let (_, reference) = train_trace(&base, &ds, &train, 3);
    let variants: Vec<OpenCarbonConfig> = vec![
        OpenCarbonConfig {
            loss: LossKind::Huber,
            ..base.clone()
        },
        OpenCarbonConfig {
            loss: LossKind::Mse,
            ..base.clone()
        },
        OpenCarbonConfig {
            schedule: super::super::Schedule::Cosine,
            warmup_epochs: 1,
            ..base.clone()
        },
        OpenCarbonConfig {
            augment: true,
            ..base.clone()
        },
    ];
    for cfg in variants {
        let (losses, params) = train_trace(&cfg, &ds, &train, 3);
        assert!(losses.iter().all(|(l, _)| l.is_finite()));
        assert!(params.iter().flatten().all(|v| v.is_finite()));
        assert_ne!(params, reference, "{} trained like the base", cfg.label());
    }
}

#[test]
fn losses_have_their_values_and_gradients() {
    let dev = Cpu::seed_from_u64(0);
    let r = [-2.0f32, -0.5, 0.0, 0.3, 1.5];
    let cases: [(LossKind, f32, [f32; 5]); 3] = [
        (LossKind::L1, 4.3, [-1.0, -1.0, 0.0, 1.0, 1.0]),
        (
            LossKind::Mse,
            4.0 + 0.25 + 0.09 + 2.25,
            [-4.0, -1.0, 0.0, 0.6, 3.0],
        ),
        // ½r² inside [-1, 1], |r| − ½ outside.
        (
            LossKind::Huber,
            1.5 + 0.125 + 0.045 + 1.0,
            [-1.0, -0.5, 0.0, 0.3, 1.0],
        ),
    ];
    for (kind, value, grad) in cases {
        let x: Tensor<(usize,), f32, Cpu> = dev.tensor_from_vec(r.to_vec(), (5,));
        let loss = prediction_loss(x.clone().leaky_traced(), kind);
        assert!(
            (loss.array() - value).abs() < 1e-5,
            "{kind:?}: {}",
            loss.array()
        );
        let g = loss.backward();
        let got = g.get(&x).as_vec();
        for (a, b) in got.iter().zip(grad) {
            assert!((a - b).abs() < 1e-5, "{kind:?}: gradient {got:?}");
        }
    }
}

#[test]
fn the_moving_average_blends_the_model_and_puts_training_weights_back() {
    let dir = tempfile::tempdir().unwrap();
    let ds = tiny(&dir.path().join("cache"));
    let train: Vec<(usize, usize)> = rows_for(&ds, 20, 0).iter().map(|r| (0, r.tile)).collect();
    let mut cfg = small_config(2);
    cfg.batch_size = 20; // one step
    let datasets = [&ds];
    let mut trainer = Trainer::new(
        &cfg,
        Inputs::default(),
        0,
        Cpu::seed_from_u64(0),
        &datasets,
        train,
        SCALE,
    );
    let mut ema = learner::Ema {
        decay: 0.5,
        average: learner::Snapshot::capture(&mut trainer),
        steps: 0,
    };
    let initial = ema.average.clone();
    trainer.epoch(0).unwrap();
    ema.update(&mut trainer);
    let live = learner::Snapshot::capture(&mut trainer);
    let seen = ema.with_average(&mut trainer, learner::Snapshot::capture);
    assert_eq!(
        learner::Snapshot::capture(&mut trainer),
        live,
        "training weights put back"
    );
    // One step with decay min(0.5, (1 + 0) / (10 + 0)) = 0.1, parameters and batch-norm
    // running statistics alike.
    assert_ne!(seen, live);
    let flat = |s: &learner::Snapshot| -> Vec<f32> {
        s.params
            .iter()
            .flatten()
            .chain(s.running.iter().flat_map(|(m, v)| m.iter().chain(v)))
            .copied()
            .collect()
    };
    for ((a, l), i) in flat(&seen).iter().zip(flat(&live)).zip(flat(&initial)) {
        let want = 0.1 * i + 0.9 * l;
        assert!(
            (a - want).abs() <= 1e-6 * want.abs().max(1.0),
            "{a} vs {want}"
        );
    }
}
