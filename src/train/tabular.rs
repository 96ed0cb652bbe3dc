//! Fitting a tabular baseline on the per-tile handcrafted features.

use ndarray::{Array1, Array2};

use super::PreparedDataset;
use crate::data::SplitPart;
use crate::error::Result;
use crate::models::{feature_columns, feature_matrix, Inputs, ModelConfig, Standardizer};
use crate::models::{Fitted, Row};
use crate::track::RunDir;

pub(super) fn fit_predict(
    model: &ModelConfig,
    inputs: Inputs,
    seed: u64,
    datasets: &[&PreparedDataset],
    rows: &[Row],
    run: &mut RunDir,
) -> Result<Fitted> {
    let (columns, used_names) = feature_columns(inputs, &datasets[0].features.names);
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
    let train: Vec<&Row> = rows.iter().filter(|r| r.part == SplitPart::Train).collect();
    let x_train = matrix(&train);
    let y_train: Array1<f64> = train
        .iter()
        .map(|r| datasets[r.dataset].data.tiles[r.tile].emission.ln())
        .collect();
    let scaler = Standardizer::fit(x_train.view());
    let fitted = model.fit(scaler.apply(x_train.view()).view(), &y_train, seed)?;
    run.log(&format!(
        "fitted {} on {} tiles",
        model.label(),
        train.len()
    ));
    let all: Vec<&Row> = rows.iter().collect();
    let predictions = fitted
        .predict(scaler.apply(matrix(&all).view()).view())?
        .to_vec();
    Ok(Fitted {
        predictions,
        description: fitted.describe(&used_names),
    })
}
