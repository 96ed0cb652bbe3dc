//! `opencarbon predict`: apply a trained OpenCarbon run to any dataset in the format (a new
//! city), writing per-tile predicted emission (log and raw units) and an emission map PNG.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::eval::evaluate;
use super::inputs::ImageNorm;
use super::network::OpenCarbonNet;
use super::{OpenCarbonConfig, OpenCarbonRecord};
use crate::data::{DatasetEntry, DatasetSource, PreparedDataset};
use crate::error::{Error, Result};
use crate::models::{Inputs, ModelConfig, ModelSpec};
use crate::nn::device::{on_device, DeviceSpec, ModelDevice, OnDevice};
use crate::nn::params::{load_safetensors, restore, restore_running_stats};
use crate::track::{atomic_write, records};

/// Prepares a dataset entry at (image size, POI raster size): the job runner's
/// `prepare_dataset`, handed in by the caller.
pub type Prepare<'a> = &'a dyn Fn(&DatasetEntry, usize, usize) -> Result<PreparedDataset>;

/// What `predict` wrote.
pub struct PredictOutput {
    pub csv: PathBuf,
    pub map: PathBuf,
    pub tiles: usize,
}

/// What `predict` reads of a run's resolved job (config.yaml).
#[derive(serde::Deserialize)]
struct TrainedJob {
    model: ModelSpec,
    image_size: usize,
    poi_raster_size: usize,
}

/// Predict every tile of the dataset in `dataset_dir` with the OpenCarbon run in `run_dir`,
/// on `device`.
pub fn run_predict(
    run_dir: &Path,
    dataset_dir: &Path,
    out: Option<&Path>,
    prepare: Prepare<'_>,
    device: DeviceSpec,
) -> Result<PredictOutput> {
    if !crate::track::is_done(run_dir) {
        return Err(Error::Usage(format!(
            "{} is not a finished run (no DONE marker, or a record is missing): predict needs a run that completed",
            run_dir.display()
        )));
    }
    let job = records::read_config::<TrainedJob>(run_dir)?.job;
    let spec = job.model;
    let ModelConfig::OpenCarbon(cfg) = &spec.model else {
        return Err(Error::Usage(format!(
            "{} is a `{}` run; predict needs an OpenCarbon run (with best.safetensors)",
            run_dir.display(),
            spec.model.kind()
        )));
    };
    let (image_size, poi_raster_size) = (job.image_size, job.poi_raster_size);
    let description: OpenCarbonRecord = records::read_json(run_dir, "model.json")?;
    let norm = description.image_norm.clone();
    let (y_mean, y_std) = (description.target_norm.mean, description.target_norm.std);

    let entry = DatasetEntry {
        name: "predict".into(),
        source: DatasetSource::Path {
            path: dataset_dir.to_path_buf(),
        },
    };
    let ds = prepare(&entry, image_size, poi_raster_size)?;
    // The network's POI channels are the training categories in their order.
    let trained = training_categories(run_dir, &description)?;
    if trained != ds.data.meta.poi_categories {
        return Err(Error::dataset(
            dataset_dir.join("dataset.yaml"),
            None,
            format!(
                "poi_categories are [{}]; the run was trained with [{}] and needs the same categories in the same order",
                ds.data.meta.poi_categories.join(", "),
                trained.join(", ")
            ),
        ));
    }
    let ckpt_path = run_dir.join("best.safetensors");
    if !ckpt_path.is_file() {
        return Err(Error::dataset(
            &ckpt_path,
            None,
            "the run's checkpoint is missing",
        ));
    }
    let work = Restored {
        cfg,
        inputs: spec.inputs,
        ckpt_path: ckpt_path.clone(),
        ds: &ds,
        norm: &norm,
    };
    // The checkpoint fixes the parameters: the generator's seed does not matter.
    let log_pred: Vec<f64> = on_device(device, 0, work)?
        .into_iter()
        .map(|p| p * y_std + y_mean)
        .collect();

    let bad = log_pred.iter().filter(|p| !p.is_finite()).count();
    if bad > 0 {
        return Err(Error::dataset(
            &ckpt_path,
            None,
            format!(
                "the checkpoint's weights give a non-finite prediction for {bad} of {} tiles",
                log_pred.len()
            ),
        ));
    }
    let csv_path = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| run_dir.join(format!("predict-{}.csv", ds.data.meta.name)));
    let mut csv = format!(
        "x,y,log_emission_pred,emission_pred,emission_true ({})\n",
        ds.data.meta.target.unit
    );
    for (t, p) in ds.data.tiles.iter().zip(&log_pred) {
        writeln!(
            csv,
            "{},{},{:.6},{:.6},{}",
            t.x,
            t.y,
            p,
            p.exp(),
            t.emission
        )
        .unwrap();
    }
    atomic_write(&csv_path, csv.as_bytes())?;
    let map_path = csv_path.with_extension("png");
    atomic_write(&map_path, &emission_map(&ds.grid, &log_pred)?)?;
    Ok(PredictOutput {
        csv: csv_path,
        map: map_path,
        tiles: log_pred.len(),
    })
}

/// The POI categories a run was trained with: `model.json`'s `poi_categories`, or, for runs
/// written before it was recorded there, the training dataset's `dataset.yaml` named in the
/// manifest.
fn training_categories(run_dir: &Path, description: &OpenCarbonRecord) -> Result<Vec<String>> {
    if let Some(c) = &description.poi_categories {
        return Ok(c.clone());
    }
    let manifest: records::Manifest = records::read_json(run_dir, "manifest.json")?;
    let from_dataset = manifest.datasets.first().and_then(|d| {
        let text = std::fs::read_to_string(Path::new(&d.path).join("dataset.yaml")).ok()?;
        let meta: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
        meta["poi_categories"]
            .as_sequence()?
            .iter()
            .map(|c| c.as_str().map(str::to_string))
            .collect()
    });
    from_dataset.ok_or_else(|| {
        Error::Usage(format!(
            "{}: cannot tell which POI categories the run was trained with (model.json has no poi_categories and the training dataset is gone)",
            run_dir.display()
        ))
    })
}

/// The trained network restored from a checkpoint on the device `on_device` opens, and the
/// tiles to predict: every tile, the zero-emission ones too (they have inputs, only no log
/// target). Gives the standardised log emission per tile.
struct Restored<'a> {
    cfg: &'a OpenCarbonConfig,
    inputs: Inputs,
    ckpt_path: PathBuf,
    ds: &'a PreparedDataset,
    norm: &'a ImageNorm,
}

impl OnDevice for Restored<'_> {
    type Output = Vec<f64>;

    fn run<D: ModelDevice>(self, dev: D) -> Result<Vec<f64>> {
        let Restored {
            cfg,
            inputs,
            ckpt_path,
            ds,
            norm,
        } = self;
        let mut net = OpenCarbonNet::new(&dev, cfg, inputs, ds.pois.channels, ds.pois.size);
        let stored = load_safetensors(&ckpt_path)?;
        {
            let mut ps = Vec::new();
            net.params(&mut ps);
            restore(&ckpt_path, &mut ps, &stored)?;
        }
        restore_running_stats(&ckpt_path, &mut net.running_stats(), &stored)?;
        let targets: Vec<(usize, usize)> = (0..ds.data.tiles.len()).map(|t| (0, t)).collect();
        Ok(evaluate(&mut net, &dev, &[ds], &targets, inputs, norm).predictions)
    }
}

/// The emission map PNG `predict` writes: predicted log emission per tile, 8 px per tile.
pub fn emission_map(grid: &crate::data::TileGrid, log_values: &[f64]) -> Result<Vec<u8>> {
    use crate::track::render::{robust_range, tile_map};
    let (lo, hi) = robust_range(log_values.iter().copied());
    let values: Vec<Option<f64>> = log_values.iter().map(|v| Some(*v)).collect();
    tile_map(grid.all_coords(), &values, lo, hi, 8).png()
}
