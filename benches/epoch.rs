//! One training epoch of OpenCarbon's CPU configuration (configs/models/opencarbon_cpu.yaml)
//! on the london preset at the ablation experiment's input sizes (32 px images, 64 px POI
//! rasters), 60 % of the target tiles for training: prints training tiles per second.
//! Run: `cargo bench --bench epoch [-- --epochs N] [--config F --image-size S --tiles N
//! --patch-tiles P --batches-out F.json]` (e.g. `--config configs/models/opencarbon_paper.yaml
//! --image-size 256 --tiles 64` times the ResNet-18 configuration on the first 64 training
//! tiles; `--patch-tiles 0` random batches). `OPENCARBON_THREADS=N` sets the threads.
//! `--batches-out` writes every epoch's batches (tile indices of the london dataset) and the
//! parameter count, so that `scripts/bench_epoch_torch.py --same-algorithm --batches F.json`
//! runs exactly the same steps; `scripts/bench_speed.py` drives both, interleaved. The last
//! line is JSON with the last epoch's time (the first warms the allocator and caches up).
//! `--device cuda[:N]` times it on a GPU (a `--features cuda` build; see
//! scripts/gpu_check.sh). The london city is generated into .cache/ on first use, as the
//! CLI does.

use std::path::Path;
use std::time::Instant;

use opencarbon::config::{DatasetEntry, DatasetSource, DeviceSpec};
use opencarbon::data::split::random_split;
use opencarbon::data::synth::GENERATOR_VERSION;
use opencarbon::data::SplitPart;
use opencarbon::models::opencarbon::train::{TargetScale, Trainer};
use opencarbon::models::opencarbon::OpenCarbonConfig;
use opencarbon::models::{Inputs, ModelConfig};
use opencarbon::nn::device::{on_device, ModelDevice, OnDevice};
use opencarbon::nn::learner::TrainSteps;
use opencarbon::train::{prepare_dataset, PreparedDataset};

mod common;
use common::arg;

fn main() {
    opencarbon::nn::reuse_large_allocations();
    opencarbon::nn::use_thread_setting().expect("OPENCARBON_THREADS");
    let number = |name: &str, default: usize| {
        arg(name).map_or(default, |v| v.parse().expect("a whole number"))
    };
    let epochs = number("--epochs", 3);
    let device = DeviceSpec::parse(&arg("--device").unwrap_or("cpu".into())).unwrap();
    let image_size = number("--image-size", 32);
    let config = arg("--config").unwrap_or("configs/models/opencarbon_cpu.yaml".into());
    let text = std::fs::read_to_string(&config).unwrap();
    let mut body: serde_yaml::Mapping = serde_yaml::from_str(&text).unwrap();
    body.remove("kind");
    let Ok(ModelConfig::OpenCarbon(mut cfg)) = ModelConfig::from_yaml("opencarbon", body.into())
    else {
        panic!("configs/models/opencarbon_cpu.yaml is not a valid opencarbon model");
    };
    if let Some(p) = arg("--patch-tiles") {
        cfg.patch_tiles = p.parse().expect("--patch-tiles: a whole number");
    }
    let entry = DatasetEntry {
        name: "london".into(),
        source: DatasetSource::Preset {
            preset: "london".into(),
            seed: 0,
            generator: GENERATOR_VERSION,
        },
    };
    let ds = prepare_dataset(&entry, Path::new(".cache"), image_size, 64).unwrap();
    let split = random_split(&ds.data, [0.6, 0.2, 0.2], 0);
    let mut train: Vec<(usize, usize)> = (0..ds.data.tiles.len())
        .filter(|&t| split[t] == Some(SplitPart::Train))
        .map(|t| (0, t))
        .collect();
    train.truncate(number("--tiles", train.len()));
    println!(
        "{config} on {device}, london at {image_size} px, {} training tiles, batch {}, patch_tiles {}, contrastive from epoch {}",
        train.len(),
        cfg.batch_size,
        cfg.patch_tiles,
        cfg.contrastive_epoch
    );
    let timed = Epochs {
        cfg: &cfg,
        ds: &ds,
        train,
        epochs,
        batches_out: arg("--batches-out"),
        image_size,
    };
    if let Err(e) = on_device(device, 0, timed) {
        eprintln!("{e}");
        std::process::exit(2);
    }
}

/// The timed epochs, on whichever device `on_device` opens.
struct Epochs<'a> {
    cfg: &'a OpenCarbonConfig,
    ds: &'a PreparedDataset,
    train: Vec<(usize, usize)>,
    epochs: usize,
    batches_out: Option<String>,
    image_size: usize,
}

impl OnDevice for Epochs<'_> {
    type Output = ();

    fn run<D: ModelDevice>(self, dev: D) -> opencarbon::error::Result<()> {
        let Epochs {
            cfg,
            ds,
            train,
            epochs,
            batches_out,
            image_size,
        } = self;
        let datasets = [ds];
        let scale = TargetScale {
            mean: 10.0,
            std: 1.0,
        }; // ln e − 10
        let new_trainer = || {
            Trainer::new(
                cfg,
                Inputs::default(),
                0,
                dev.clone(),
                &datasets,
                train.clone(),
                scale,
            )
        };
        let mut trainer = new_trainer();
        let mut params = Vec::new();
        trainer.params(&mut params);
        let param_values: usize = params.iter().map(|(_, p)| p.values().len()).sum();
        let param_tensors = params.len();
        drop(params);
        if let Some(file) = &batches_out {
            // A second trainer with the same seed draws the same batches (nothing else draws
            // from its stream without augmentation), without disturbing the timed one.
            let mut twin = new_trainer();
            let all: Vec<Vec<Vec<usize>>> = (0..epochs)
                .map(|e| {
                    let batches = twin.batches(e + cfg.contrastive_epoch);
                    batches
                        .iter()
                        .filter(|b| twin.trains_on(b))
                        .map(|b| b.iter().map(|&(_, t)| t).collect())
                        .collect()
                })
                .collect();
            let doc = serde_json::json!({
                "batches": all,
                "param_tensors": param_tensors,
                "param_values": param_values,
                "image_size": image_size,
            });
            std::fs::write(file, doc.to_string()).expect("writing --batches-out");
        }
        let mut last = (0.0, 0);
        for epoch in 0..epochs {
            // Epochs from the contrastive warm-up on, so the InfoNCE term is part of the timing.
            let e = epoch + cfg.contrastive_epoch;
            let t = Instant::now();
            let stats = trainer.epoch(e)?;
            let s = t.elapsed().as_secs_f64();
            println!(
                "epoch {}: {:.2} s, {:.1} training tiles/s (loss/tile {:.3})",
                epoch + 1,
                s,
                stats.tiles as f64 / s,
                stats.loss_per_tile
            );
            last = (s, stats.tiles);
        }
        println!(
            "{}",
            serde_json::json!({
                "impl": "opencarbon",
                "epoch_s": last.0,
                "timed_tiles": last.1,
                "threads": opencarbon::track::provenance::threads(),
                "param_tensors": param_tensors,
                "param_values": param_values,
                "patch_tiles": cfg.patch_tiles,
                "image_size": image_size,
            })
        );
        Ok(())
    }
}
