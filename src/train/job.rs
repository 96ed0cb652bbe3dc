//! One job, whatever its model: assign the split, get a prediction for every assigned tile
//! from the model, and write split.csv, predictions.csv, model.json and metrics.json.

use std::fmt::Write as _;
use std::time::Instant;

use super::{tabular, PreparedDataset, RunMetrics};
use crate::config::{DeviceSpec, Job};
use crate::data::split::{self, part_counts};
use crate::data::SplitPart;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::models::ModelConfig;
use crate::track::tensorboard::HParam;
use crate::track::RunDir;

pub use crate::models::{Fitted, Row};

/// The scalar tags of a run's final metrics (step 0), which the HPARAMS tab shows per run.
pub const FINAL_METRIC_TAGS: [(&str, &str); 8] = [
    ("metrics/test_r2", "test r2"),
    ("metrics/test_rmse", "test rmse"),
    ("metrics/test_mae", "test mae"),
    ("metrics/test_mape", "test mape"),
    ("metrics/valid_r2", "valid r2"),
    ("metrics/valid_rmse", "valid rmse"),
    ("metrics/train_r2", "train r2"),
    ("metrics/train_rmse", "train rmse"),
];

/// Hyperparameters of a job for the HPARAMS tab: the model's fields (flattened), its kind and
/// input switches, the dataset, split and seed.
fn hparams_of(job: &Job) -> Vec<(String, HParam)> {
    let mut out = vec![
        ("model".to_string(), HParam::Text(job.config.model.label())),
        (
            "kind".into(),
            HParam::Text(job.config.model.model.kind().into()),
        ),
        ("dataset".into(), HParam::Text(job.dataset_label())),
        ("split".into(), HParam::Text(job.config.split.label())),
        ("seed".into(), HParam::Number(job.config.seed as f64)),
        (
            "image_size".into(),
            HParam::Number(job.config.image_size as f64),
        ),
    ];
    for (name, on) in [
        ("input_image", job.config.model.inputs.image),
        ("input_poi", job.config.model.inputs.poi),
        ("input_neighborhood", job.config.model.inputs.neighborhood),
    ] {
        out.push((name.into(), HParam::Flag(on)));
    }
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&job.config.model.model) {
        for (k, v) in fields {
            let value = match v {
                serde_json::Value::Number(n) => n.as_f64().map(HParam::Number),
                serde_json::Value::Bool(b) => Some(HParam::Flag(b)),
                serde_json::Value::String(s) => Some(HParam::Text(s)),
                serde_json::Value::Null => None,
                other => Some(HParam::Text(other.to_string())),
            };
            if let Some(value) = value {
                out.push((format!("model.{k}"), value));
            }
        }
    }
    out
}

/// End-of-run TensorBoard records: the resolved job as text, the final metrics as scalars
/// and HParams, the true and predicted emission maps side by side (one per dataset, tiles
/// outside the job grey) and the predicted-vs-true scatter of the test tiles.
fn board_summary(
    job: &Job,
    datasets: &[&PreparedDataset],
    rows: &[Row],
    predictions: &[f64],
    metrics: &[Option<Metrics>; 3],
    run: &mut RunDir,
) -> Result<()> {
    use crate::track::render::{robust_range, scatter, tile_map};
    let yaml = serde_yaml::to_string(&job.config).map_err(|e| Error::Internal(e.to_string()))?;
    let board = run.board();
    board.text(
        "config",
        &format!("run `{}`\n\n```yaml\n{yaml}```", job.run_id),
        0,
    );
    let value = |part: usize, m: &str| {
        metrics[part].as_ref().map(|x| match m {
            "r2" => x.r2,
            "rmse" => x.rmse,
            "mae" => x.mae,
            _ => x.mape,
        })
    };
    for (tag, _) in FINAL_METRIC_TAGS {
        let (part, m) = tag["metrics/".len()..].split_once('_').unwrap();
        let part = match part {
            "train" => 0,
            "valid" => 1,
            _ => 2,
        };
        if let Some(v) = value(part, m) {
            board.scalar(tag, v, 0);
        }
    }
    let tags: Vec<&str> = FINAL_METRIC_TAGS.iter().map(|(t, _)| *t).collect();
    board.hparams(&hparams_of(job), &tags, &job.config.model.label());

    for (d, ds) in datasets.iter().enumerate() {
        let n = ds.data.tiles.len();
        let (mut truth, mut pred) = (vec![None; n], vec![None; n]);
        for (r, p) in rows.iter().zip(predictions) {
            if r.dataset == d {
                truth[r.tile] = Some(ds.data.tiles[r.tile].emission.ln());
                pred[r.tile] = Some(*p);
            }
        }
        if truth.iter().all(Option::is_none) {
            continue;
        }
        let (lo, hi) = robust_range(truth.iter().flatten().copied());
        let px = (512 / (ds.grid.bounds().2 - ds.grid.bounds().0 + 1) as usize).clamp(2, 8);
        let pic =
            tile_map(&ds.grid, &truth, lo, hi, px).beside(&tile_map(&ds.grid, &pred, lo, hi, px));
        board.image_png(
            &format!("maps/{}_true_vs_predicted_log_emission", ds.entry.name),
            pic.png()?,
            pic.width,
            pic.height,
            0,
        );
    }
    let (t, p): (Vec<f64>, Vec<f64>) = rows
        .iter()
        .zip(predictions)
        .filter(|(r, _)| r.part == SplitPart::Test)
        .map(|(r, p)| (datasets[r.dataset].data.tiles[r.tile].emission.ln(), *p))
        .unzip();
    if !t.is_empty() {
        let pic = scatter(&t, &p, 320);
        board.image_png(
            "scatter/test_predicted_vs_true_log_emission",
            pic.png()?,
            pic.width,
            pic.height,
            0,
        );
    }
    board.flush();
    Ok(())
}

pub(super) fn fit_and_evaluate(
    job: &Job,
    device: DeviceSpec,
    datasets: &[&PreparedDataset],
    run: &mut RunDir,
) -> Result<RunMetrics> {
    let refs: Vec<&crate::data::CityDataset> = datasets.iter().map(|d| &d.data).collect();
    let assignments = split::assign(&job.config.split, &refs, job.config.seed)?;
    let mut rows = Vec::new();
    for (d, a) in assignments.iter().enumerate() {
        let [tr, va, te] = part_counts(a);
        run.log(&format!(
            "{}: {tr} train, {va} valid, {te} test tiles",
            datasets[d].entry.name
        ));
        for (tile, part) in a.iter().enumerate() {
            if let Some(part) = part {
                rows.push(Row {
                    dataset: d,
                    tile,
                    part: *part,
                });
            }
        }
    }
    // "dataset,x,y" of a row: the key columns of split.csv and predictions.csv.
    let key = |r: &Row| {
        let t = datasets[r.dataset].data.tiles[r.tile];
        format!("{},{},{}", datasets[r.dataset].entry.name, t.x, t.y)
    };
    let mut split_csv = String::from("dataset,x,y,split\n");
    for r in &rows {
        writeln!(split_csv, "{},{}", key(r), r.part.as_str()).unwrap();
    }
    run.write("split.csv", split_csv.as_bytes())?;
    let target = |r: &Row| datasets[r.dataset].data.tiles[r.tile].emission.ln();
    if rows.iter().filter(|r| r.part == SplitPart::Train).count() < 2 {
        return Err(Error::Model("fewer than 2 training tiles".into()));
    }

    let t = Instant::now();
    let fitted = match &job.config.model.model {
        ModelConfig::OpenCarbon(cfg) => crate::models::opencarbon::train::fit_predict(
            cfg,
            job.config.model.inputs,
            job.config.seed,
            device,
            datasets,
            &rows,
            run,
        )?,
        ModelConfig::GraphSage(cfg) => crate::models::graphsage::fit_predict(
            &cfg.spec(),
            cfg.contiguity,
            job.config.model.inputs,
            cfg.embeddings_from
                .as_ref()
                .map(|dir| {
                    crate::models::graphsage::find_opencarbon_run(
                        dir,
                        &job.dataset_label(),
                        &job.config.split.label(),
                        job.config.seed,
                    )
                    .map(|r| r.join("embeddings.csv"))
                })
                .transpose()?
                .as_deref(),
            job.config.seed,
            device,
            datasets,
            &rows,
            run,
        )?,
        ModelConfig::Mlp(cfg) => crate::models::graphsage::fit_predict(
            &cfg.spec(),
            crate::data::Contiguity::Queen, // unused: an MLP has no neighbour term
            job.config.model.inputs,
            None,
            job.config.seed,
            device,
            datasets,
            &rows,
            run,
        )?,
        model => tabular::fit_predict(
            model,
            job.config.model.inputs,
            job.config.seed,
            datasets,
            &rows,
            run,
        )?,
    };
    let fit_seconds = t.elapsed().as_secs_f64();
    if fitted.predictions.iter().any(|v| !v.is_finite()) {
        return Err(Error::Model(format!(
            "{} predicted a non-finite value",
            job.config.model.label()
        )));
    }

    let mut metrics: [Option<Metrics>; 3] = [None, None, None];
    let mut predictions = String::from("dataset,x,y,split,target,prediction\n");
    for part in SplitPart::ALL {
        let idx: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].part == part).collect();
        if idx.is_empty() {
            continue;
        }
        let y: Vec<f64> = idx.iter().map(|&i| target(&rows[i])).collect();
        let p: Vec<f64> = idx.iter().map(|&i| fitted.predictions[i]).collect();
        let m = Metrics::compute(&y, &p);
        run.log(&format!(
            "{}: n={} R²={:.4} RMSE={:.4} MAE={:.4}",
            part.as_str(),
            m.n,
            m.r2,
            m.rmse,
            m.mae
        ));
        metrics[part as usize] = Some(m);
        for (k, &i) in idx.iter().enumerate() {
            writeln!(
                predictions,
                "{},{},{:.6},{:.6}",
                key(&rows[i]),
                part.as_str(),
                y[k],
                p[k]
            )
            .unwrap();
        }
    }
    run.write("predictions.csv", predictions.as_bytes())?;
    run.write_json("model.json", &fitted.description)?;
    board_summary(job, datasets, &rows, &fitted.predictions, &metrics, run)?;
    let [train, valid, test] = metrics;
    let result = RunMetrics {
        run_id: job.run_id.clone(),
        job_index: job.index,
        dataset: job.dataset_label(),
        model: job.config.model.label(),
        model_kind: job.config.model.model.kind().into(),
        split: job.config.split.label(),
        seed: job.config.seed,
        train,
        valid,
        test,
        fit_seconds,
    };
    run.write_json("metrics.json", &result)?;
    Ok(result)
}
