//! One training epoch of OpenCarbon's CPU configuration (configs/models/opencarbon_cpu.yaml)
//! on the london preset at the ablation experiment's input sizes (32 px images, 64 px POI
//! rasters), 60 % of the target tiles for training: prints training tiles per second.
//! Run: `cargo bench --bench epoch [-- --epochs N] [--config F --image-size S --tiles N]`
//! (e.g. `--config configs/models/opencarbon_paper.yaml --image-size 256 --tiles 64` times
//! the ResNet-18 configuration on the first 64 training tiles); compare with
//! `scripts/bench_epoch_torch.py` (a straightforward PyTorch implementation of the same
//! configuration that encodes every neighbourhood tile separately), which prints its own
//! tiles/s. `--device cuda[:N]` times it on a GPU (a `--features cuda` build; see
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
use opencarbon::train::{prepare_dataset, PreparedDataset};

fn main() {
    opencarbon::nn::reuse_large_allocations();
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
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
    let Ok(ModelConfig::OpenCarbon(cfg)) = ModelConfig::from_yaml("opencarbon", body.into()) else {
        panic!("configs/models/opencarbon_cpu.yaml is not a valid opencarbon model");
    };
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
}

impl OnDevice for Epochs<'_> {
    type Output = ();

    fn run<D: ModelDevice>(self, dev: D) -> opencarbon::error::Result<()> {
        let Epochs {
            cfg,
            ds,
            train,
            epochs,
        } = self;
        let datasets = [ds];
        let scale = TargetScale {
            mean: 10.0,
            std: 1.0,
        }; // ln e − 10
        let mut trainer = Trainer::new(cfg, Inputs::default(), 0, dev, &datasets, train, scale);
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
        }
        Ok(())
    }
}
