//! Fitting a tabular baseline on the per-tile handcrafted features: the columns its inputs
//! allow, standardised with the training rows' mean and deviation. A tabular model's
//! `Model::fit` is `fit_job(self, job, run)`.

use ndarray::{Array1, Array2};

use super::TabularModel;
use super::{feature_columns, feature_matrix, Fitted, JobInput, Model, Row, Standardizer};
use crate::data::SplitPart;
use crate::error::Result;
use crate::track::RunDir;

pub fn fit_job<M: TabularModel + Model>(
    model: &M,
    job: &JobInput,
    run: &mut RunDir,
) -> Result<Fitted> {
    let datasets = job.datasets;
    let (columns, used_names) = feature_columns(job.inputs, &datasets[0].features.names);
    run.log(&format!(
        "{} of {} features: {}",
        columns.len(),
        datasets[0].features.names.len(),
        used_names.join(" ")
    ));
    let matrix = |sel: &[&Row]| -> Array2<f64> {
        let tiles: Vec<(usize, usize)> = sel.iter().map(|r| (r.dataset, r.tile)).collect();
        feature_matrix(datasets, &tiles, &columns)
    };
    let train: Vec<&Row> = job
        .rows
        .iter()
        .filter(|r| r.part == SplitPart::Train)
        .collect();
    let x_train = matrix(&train);
    let y_train: Array1<f64> = train
        .iter()
        .map(|r| datasets[r.dataset].data.tiles[r.tile].emission.ln())
        .collect();
    let scaler = Standardizer::fit(x_train.view());
    let fitted = model.fit_table(scaler.apply(x_train.view()).view(), &y_train, job.seed)?;
    run.log(&format!(
        "fitted {} on {} tiles",
        model.label(),
        train.len()
    ));
    let all: Vec<&Row> = job.rows.iter().collect();
    let predictions = fitted
        .predict(scaler.apply(matrix(&all).view()).view())?
        .to_vec();
    Ok(Fitted {
        predictions,
        description: fitted.describe(&used_names),
    })
}
