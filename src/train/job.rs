//! One job, whatever its model: assign the split, get a prediction for every assigned tile
//! from the model, and write split.csv, predictions.csv, model.json and metrics.json.

use std::fmt::Write as _;
use std::time::Instant;

use super::{tabular, PreparedDataset, RunMetrics};
use crate::config::Job;
use crate::data::split::{self, part_counts};
use crate::data::SplitPart;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::models::ModelConfig;
use crate::track::RunDir;

/// One labelled tile of a job: which dataset, which tile, which part.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub dataset: usize,
    pub tile: usize,
    pub part: SplitPart,
}

/// What a model hands back: a prediction (log emission) per row, and what it learned.
pub struct Fitted {
    pub predictions: Vec<f64>,
    pub description: serde_json::Value,
}

pub(super) fn fit_and_evaluate(
    job: &Job,
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
