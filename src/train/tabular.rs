//! Fitting a tabular baseline on the per-tile features and writing its results.

use std::fmt::Write as _;
use std::time::Instant;

use ndarray::{Array1, Array2};

use super::{PreparedDataset, RunMetrics};
use crate::config::Job;
use crate::data::split::{self, part_counts};
use crate::data::SplitPart;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::models::Standardizer;
use crate::track::RunDir;

/// One labelled tile of a job: which dataset, which tile, which part.
struct Row {
    dataset: usize,
    tile: usize,
    part: SplitPart,
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

    let inputs = job.config.model.inputs;
    let names = &datasets[0].features.names;
    let columns: Vec<usize> = (0..names.len())
        .filter(|&c| inputs.allows_feature(&names[c]))
        .collect();
    let used_names: Vec<String> = columns.iter().map(|&c| names[c].clone()).collect();
    run.log(&format!(
        "{} of {} features: {}",
        columns.len(),
        names.len(),
        used_names.join(" ")
    ));
    let matrix = |part: SplitPart| -> (Array2<f64>, Array1<f64>) {
        let sel: Vec<&Row> = rows.iter().filter(|r| r.part == part).collect();
        let mut x = Array2::zeros((sel.len(), columns.len()));
        let mut y = Array1::zeros(sel.len());
        for (i, r) in sel.iter().enumerate() {
            let d = datasets[r.dataset];
            let features = &d.features.rows[r.tile];
            for (k, &c) in columns.iter().enumerate() {
                x[[i, k]] = features[c];
            }
            y[i] = d.data.tiles[r.tile].emission.ln();
        }
        (x, y)
    };
    let (x_train, y_train) = matrix(SplitPart::Train);
    if x_train.nrows() < 2 {
        return Err(Error::Model(format!(
            "only {} training tiles",
            x_train.nrows()
        )));
    }
    let scaler = Standardizer::fit(x_train.view());
    let t = Instant::now();
    let model = job.config.model.model.fit(
        scaler.apply(x_train.view()).view(),
        &y_train,
        job.config.seed,
    )?;
    let fit_seconds = t.elapsed().as_secs_f64();
    run.log(&format!(
        "fitted {} on {} tiles in {fit_seconds:.2} s",
        job.config.model.label(),
        x_train.nrows()
    ));

    let mut metrics: [Option<Metrics>; 3] = [None, None, None];
    let mut predictions = String::from("dataset,x,y,split,target,prediction\n");
    for part in SplitPart::ALL {
        let (x, y) = matrix(part);
        if x.nrows() == 0 {
            continue;
        }
        let pred = model.predict(scaler.apply(x.view()).view())?;
        if pred.iter().any(|v| !v.is_finite()) {
            return Err(Error::Model(format!(
                "{} predicted a non-finite value",
                job.config.model.label()
            )));
        }
        let m = Metrics::compute(y.as_slice().unwrap(), pred.as_slice().unwrap());
        run.log(&format!(
            "{}: n={} R²={:.4} RMSE={:.4} MAE={:.4}",
            part.as_str(),
            m.n,
            m.r2,
            m.rmse,
            m.mae
        ));
        metrics[part as usize] = Some(m);
        for (i, r) in rows.iter().filter(|r| r.part == part).enumerate() {
            writeln!(
                predictions,
                "{},{},{:.6},{:.6}",
                key(r),
                part.as_str(),
                y[i],
                pred[i]
            )
            .unwrap();
        }
    }
    run.write("predictions.csv", predictions.as_bytes())?;
    run.write_json("model.json", &model.describe(&used_names))?;
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
