//! Fitting a tabular baseline on the per-tile handcrafted features.

use ndarray::{Array1, Array2};

use super::job::{Fitted, Row};
use super::PreparedDataset;
use crate::data::SplitPart;
use crate::error::Result;
use crate::models::{Inputs, ModelConfig, Standardizer};
use crate::track::RunDir;

pub(super) fn fit_predict(
    model: &ModelConfig,
    inputs: Inputs,
    seed: u64,
    datasets: &[&PreparedDataset],
    rows: &[Row],
    run: &mut RunDir,
) -> Result<Fitted> {
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
    let matrix = |sel: &[&Row]| -> Array2<f64> {
        let mut x = Array2::zeros((sel.len(), columns.len()));
        for (i, r) in sel.iter().enumerate() {
            let features = &datasets[r.dataset].features.rows[r.tile];
            for (k, &c) in columns.iter().enumerate() {
                x[[i, k]] = features[c];
            }
        }
        x
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
