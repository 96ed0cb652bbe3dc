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

/// `Model` and `TabularModel` for a tabular model's config from its inherent `label`, `check`
/// and `fit(x, y, seed)` (`unseeded`: `fit(x, y)`, a deterministic model): one line per model.
macro_rules! tabular_model {
    ($ty:ty, $kind:literal $(, $unseeded:ident)?) => {
        impl $crate::models::Model for $ty {
            const KIND: &'static str = $kind;

            fn label(&self) -> String {
                <$ty>::label(self)
            }

            fn check(&self) -> Vec<$crate::models::FieldProblem> {
                <$ty>::check(self)
            }

            fn fit(
                &self,
                job: &$crate::models::JobInput,
                run: &mut $crate::track::RunDir,
            ) -> $crate::error::Result<$crate::models::Fitted> {
                $crate::models::tabular::fit_job(self, job, run)
            }
        }

        impl $crate::models::TabularModel for $ty {
            fn fit_table(
                &self,
                x: ndarray::ArrayView2<f64>,
                y: &ndarray::Array1<f64>,
                seed: u64,
            ) -> $crate::error::Result<Box<dyn $crate::models::FittedModel>> {
                $crate::models::tabular::tabular_model!(@fit $ty, self, x, y, seed $(, $unseeded)?)
            }
        }
    };
    (@fit $ty:ty, $model:ident, $x:ident, $y:ident, $seed:ident, unseeded) => {{
        let _ = $seed;
        <$ty>::fit($model, $x, $y)
    }};
    (@fit $ty:ty, $model:ident, $x:ident, $y:ident, $seed:ident) => {
        <$ty>::fit($model, $x, $y, $seed)
    };
}
pub(crate) use tabular_model;
