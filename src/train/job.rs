//! One job, whatever its model: assign the split, get a prediction for every assigned tile
//! from the model, and write split.csv, predictions.csv, model.json and metrics.json.

use std::time::Instant;

use super::plan::Job;
use super::{PreparedDataset, RunMetrics};
use crate::data::split::{self, part_counts};
use crate::data::SplitPart;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::models::JobInput;
use crate::nn::device::DeviceSpec;
use crate::track::records::{self, PredictionRow, SplitRow};
use crate::track::RunDir;

pub use crate::models::{Fitted, Row};

use crate::track::tensorboard::{BEST_CHECKPOINT_TAGS, FINAL_METRIC_TAGS};

/// TensorBoard's maps (true beside predicted, tiles outside the job grey) and test scatter
/// without a font: pictures only, no axes or labels.
fn unlabelled_images(
    datasets: &[&PreparedDataset],
    rows: &[Row],
    predictions: &[f64],
    board: &mut crate::track::tensorboard::Board,
) -> Result<()> {
    use crate::track::render::{robust_range, scatter, tile_map};
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
        let pic = tile_map(ds.grid.all_coords(), &truth, lo, hi, px).beside(&tile_map(
            ds.grid.all_coords(),
            &pred,
            lo,
            hi,
            px,
        ));
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
    Ok(())
}

/// End-of-run TensorBoard records: the resolved job as text, the final metrics as scalars
/// and HParams, the true and predicted emission maps side by side (one per dataset, tiles
/// outside the job grey) and the predicted-vs-true scatter of the test tiles.
// The job, its data, the model's output and the run: each is needed, none groups the others.
#[allow(clippy::too_many_arguments)]
fn board_summary(
    job: &Job,
    params: &[(String, crate::track::tensorboard::HParam)],
    datasets: &[&PreparedDataset],
    rows: &[Row],
    fitted: &crate::models::Fitted,
    predicted: &[PredictionRow],
    result: &RunMetrics,
    run: &mut RunDir,
) -> Result<()> {
    let description = &fitted.description;
    let metrics = [result.train, result.valid, result.test];
    // The resolved configuration as a person reads it: every field, defaults included, and
    // the model's kind as YAML names it.
    let mut shown =
        serde_json::to_value(&job.config).map_err(|e| Error::Internal(e.to_string()))?;
    shown["model"]["model"] = job.config.model.model.resolved_json();
    let yaml = serde_yaml::to_string(&shown).map_err(|e| Error::Internal(e.to_string()))?;
    let board = run.board();
    board.text(
        "config",
        &format!("run `{}`\n\n```yaml\n{yaml}```", job.run_id),
        0,
    );
    for (tag, _) in FINAL_METRIC_TAGS {
        let (part, m) = tag["metrics/".len()..].split_once('_').unwrap();
        let part = SplitPart::ALL.iter().position(|p| p.as_str() == part);
        if let Some(v) = part
            .and_then(|p| metrics[p].as_ref())
            .and_then(|x| x.get(m))
        {
            board.scalar(tag, v, 0);
        }
    }
    for (tag, key) in BEST_CHECKPOINT_TAGS {
        if let Some(v) = description.get(key).and_then(|v| v.as_f64()) {
            board.scalar(tag, v, 0);
        }
    }
    board.hparams_session(&records::viewer_params(params), &job.run_id);

    // The model part of the run's short name as far as one run tells it (kind and ablation
    // tags; the fields that vary within the experiment are only known to `report`).
    let facts = result.facts();
    let name = crate::track::names::model_names(&[crate::track::names::Nameable {
        run_id: &job.run_id,
        params: &[],
        facts: &facts,
    }])
    .remove(0);
    if crate::track::plot::font_ready() {
        // The same maps and scatter as `report`'s figures: axes, units and colour bars.
        for ds in datasets {
            let city = &ds.entry.name;
            let mine: Vec<&PredictionRow> =
                predicted.iter().filter(|r| &r.dataset == city).collect();
            if mine.is_empty() {
                continue;
            }
            let unit = Some(ds.data.meta.target.unit.as_str());
            let what = format!(
                "{city}: {name} (seed {}, run {})",
                job.config.seed, job.run_id
            );
            let maps = crate::track::plot::maps(&what, &mine, unit)?;
            board.image_png(
                &format!("maps/{city}_true_predicted_error_log_emission"),
                maps.png()?,
                maps.width,
                maps.height,
                0,
            );
            if let Some(scatter) = crate::track::plot::scatter(&what, &mine, unit)? {
                board.image_png(
                    &format!("scatter/{city}_test_predicted_vs_true_log_emission"),
                    scatter.png()?,
                    scatter.width,
                    scatter.height,
                    0,
                );
            }
        }
    } else {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            crate::track::progress::warn(
                "no TrueType font found (DejaVu Sans or $OPENCARBON_FONT): TensorBoard's maps and scatter without axes or labels",
            )
        });
        unlabelled_images(datasets, rows, &fitted.predictions, board)?;
    }
    board.flush()?;
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
    let split_row = |r: &Row| {
        let (dataset, x, y) = r.place(datasets);
        SplitRow {
            dataset,
            x,
            y,
            split: r.part.as_str().into(),
        }
    };
    let split_rows: Vec<SplitRow> = rows.iter().map(split_row).collect();
    run.write("split.csv", &records::csv_text(&split_rows)?)?;
    let target = |r: &Row| datasets[r.dataset].data.tiles[r.tile].emission.ln();
    if rows.iter().filter(|r| r.part == SplitPart::Train).count() < 2 {
        return Err(Error::Model("fewer than 2 training tiles".into()));
    }

    let t = Instant::now();
    let input = JobInput {
        inputs: job.config.model.inputs,
        seed: job.config.seed,
        device,
        dataset_label: job.dataset_label(),
        split_label: job.config.split.label(),
        datasets,
        rows: &rows,
        reads_run: job.config.reads_run.as_deref(),
    };
    let fitted = job.config.model.model.fit(&input, run)?;
    let fit_seconds = t.elapsed().as_secs_f64();
    if fitted.predictions.iter().any(|v| !v.is_finite()) {
        return Err(Error::Model(format!(
            "{} predicted a non-finite value",
            job.config.model.label()
        )));
    }

    let mut metrics: [Option<Metrics>; 3] = [None, None, None];
    let mut predictions: Vec<PredictionRow> = Vec::with_capacity(rows.len());
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
            let s = split_row(&rows[i]);
            predictions.push(PredictionRow {
                dataset: s.dataset,
                x: s.x,
                y: s.y,
                split: s.split,
                target: y[k],
                prediction: p[k],
            });
        }
    }
    run.write("predictions.csv", &records::csv_text(&predictions)?)?;
    run.write_json("model.json", &fitted.description)?;
    let [train, valid, test] = metrics;
    let job_json = serde_json::to_value(&job.config).map_err(|e| Error::Internal(e.to_string()))?;
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
        facts: Some(records::ModelFacts::of_job(
            job.config.model.model.kind(),
            &job_json,
        )),
    };
    let params = records::run_params(&result, &job_json);
    board_summary(
        job,
        &params,
        datasets,
        &rows,
        &fitted,
        &predictions,
        &result,
        run,
    )?;
    run.write_json("metrics.json", &result)?;
    Ok(result)
}
