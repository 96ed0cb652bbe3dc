//! The oracle (`kind: oracle`): gradient boosting on the *visible* latents of a generated
//! city (`data::latents::ORACLE_VISIBLE`: floor area by use, traffic by road class, facility
//! capacity; land-use shares and densities for v5), the tile's own values and their mean over
//! its present queen neighbours. It is the ladder's T2: what a perfect reader of the images
//! and the map could reach. It reads latents.csv, which no other model may read, and never
//! its acquisition, hidden or emission columns.
//!
//! The hyperparameters are the gbdt baseline's (configs/models/gbdt.yaml) by default, checked
//! once into `ValidOracleConfig`, the only value that fits (linfa's Params → ValidParams).

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use super::gbdt::GbdtConfig;
use super::{FieldProblem, Fitted, JobInput, Model};
use crate::data::graph::TileGraph;
use crate::data::latents::{latents_path, Latents, ORACLE_VISIBLE};
use crate::data::{PreparedDataset, SplitPart};
use crate::error::{Error, Result};
use crate::track::RunDir;

/// GbdtConfig's fields, defaulting to configs/models/gbdt.yaml (a test compares them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OracleConfig {
    pub n_trees: usize,
    pub max_depth: usize,
    pub learning_rate: f64,
    pub subsample: f64,
    pub colsample_bytree: f64,
    pub l2: f64,
    pub min_child_weight: f64,
    pub gamma: f64,
    pub bins: u16,
}

impl Default for OracleConfig {
    fn default() -> Self {
        OracleConfig {
            n_trees: 300,
            max_depth: 6,
            learning_rate: 0.05,
            subsample: 0.8,
            colsample_bytree: 0.8,
            l2: 1.0,
            min_child_weight: 1.0,
            gamma: 0.0,
            bins: 256,
        }
    }
}

/// Oracle hyperparameters that passed `OracleConfig::validate`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidOracleConfig {
    boosting: GbdtConfig,
}

impl OracleConfig {
    /// The booster's settings, unchecked.
    fn boosting(&self) -> GbdtConfig {
        GbdtConfig {
            n_trees: self.n_trees,
            max_depth: self.max_depth,
            learning_rate: self.learning_rate,
            subsample: self.subsample,
            colsample_bytree: self.colsample_bytree,
            l2: self.l2,
            min_child_weight: self.min_child_weight,
            gamma: self.gamma,
            bins: self.bins,
        }
    }

    /// The checked hyperparameters, or every problem with its field.
    pub fn validate(&self) -> std::result::Result<ValidOracleConfig, Vec<FieldProblem>> {
        let boosting = self.boosting();
        let problems = boosting.check();
        if problems.is_empty() {
            Ok(ValidOracleConfig { boosting })
        } else {
            Err(problems)
        }
    }
}

impl ValidOracleConfig {
    /// The gradient boosting settings (the ladder's T0 fits with the defaults' too).
    pub fn boosting(&self) -> &GbdtConfig {
        &self.boosting
    }

    /// Fit on the job's training tiles, predict every tile of the job.
    pub fn fit(&self, job: &JobInput, run: &mut RunDir) -> Result<Fitted> {
        let latents = job
            .datasets
            .iter()
            .map(|d| read_latents(d))
            .collect::<Result<Vec<_>>>()?;
        let columns = shared_visible_columns(job.datasets, &latents)?;
        let names = feature_names(&columns, job.inputs.neighborhood);
        run.log(&format!(
            "oracle: {} visible latent columns{}: {}",
            columns.len(),
            if job.inputs.neighborhood {
                ", own and neighbour mean"
            } else {
                ", own only"
            },
            columns.join(" ")
        ));
        let tables: Vec<Vec<Vec<f64>>> = job
            .datasets
            .iter()
            .zip(&latents)
            .map(|(d, l)| oracle_features(l, &d.graph, &columns, job.inputs.neighborhood))
            .collect();
        let matrix = |rows: &mut dyn Iterator<Item = &super::Row>| -> Array2<f64> {
            let picked: Vec<&Vec<f64>> = rows.map(|r| &tables[r.dataset][r.tile]).collect();
            let mut x = Array2::zeros((picked.len(), names.len()));
            for (i, row) in picked.iter().enumerate() {
                for (k, v) in row.iter().enumerate() {
                    x[[i, k]] = *v;
                }
            }
            x
        };
        let train = || job.rows.iter().filter(|r| r.part == SplitPart::Train);
        let x_train = matrix(&mut train());
        let y_train: Array1<f64> = train()
            .map(|r| job.datasets[r.dataset].data.tiles[r.tile].emission.ln())
            .collect();
        // Trees split on order, so the latents go in unscaled; NaN (not defined) is forust's
        // missing value.
        let fitted = self.boosting.fit(x_train.view(), &y_train, job.seed)?;
        run.log(&format!("fitted the oracle on {} tiles", y_train.len()));
        let predictions = fitted
            .predict(matrix(&mut job.rows.iter()).view())?
            .to_vec();
        let mut description = fitted.describe(&names);
        description["features"] = serde_json::json!(names);
        // Which latents the oracle saw: the file is no part of the dataset's fingerprint.
        description["latents"] = serde_json::Value::Array(
            job.datasets
                .iter()
                .map(|d| {
                    let path = latents_path(&d.path);
                    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
                    Ok(serde_json::json!({
                        "dataset": d.entry.name,
                        "content_hash": crate::track::content_hash(&bytes),
                    }))
                })
                .collect::<Result<Vec<_>>>()?,
        );
        Ok(Fitted {
            predictions,
            description,
        })
    }
}

/// A dataset's latents.csv, with the oracle's own message when the dataset has none.
fn read_latents(d: &PreparedDataset) -> Result<Latents> {
    let path = latents_path(&d.path);
    if std::fs::symlink_metadata(&path).is_err() {
        return Err(Error::dataset(
            &path,
            None,
            format!(
                "dataset `{}` has no latents.csv: the oracle runs only on generated cities",
                d.entry.name
            ),
        ));
    }
    Latents::read(&d.path, &d.data.tiles)
}

/// The `ORACLE_VISIBLE` columns every dataset of the job holds; an error naming the first
/// dataset that holds none of the others' columns.
fn shared_visible_columns(
    datasets: &[&PreparedDataset],
    latents: &[Latents],
) -> Result<Vec<&'static str>> {
    let mut columns: Vec<&'static str> = ORACLE_VISIBLE.to_vec();
    for (d, l) in datasets.iter().zip(latents) {
        columns.retain(|c| l.columns.iter().any(|h| h == c));
        if columns.is_empty() {
            return Err(Error::dataset(
                latents_path(&d.path),
                Some(1),
                format!(
                    "has none of the oracle's visible columns{} (expected some of {})",
                    if datasets.len() > 1 {
                        " that the job's other datasets hold"
                    } else {
                        ""
                    },
                    ORACLE_VISIBLE.join(", ")
                ),
            ));
        }
    }
    Ok(columns)
}

/// The oracle's feature names: each visible column, then `nb_<column>`, the mean over the
/// tile's present queen neighbours (without `neighborhood`, the own values only).
pub fn feature_names(columns: &[&str], neighborhood: bool) -> Vec<String> {
    let own = columns.iter().map(|c| c.to_string());
    let nb = columns.iter().map(|c| format!("nb_{c}"));
    if neighborhood {
        own.chain(nb).collect()
    } else {
        own.collect()
    }
}

/// The oracle's features of every tile, as `feature_names` lists them. A neighbour mean
/// skips neighbours where the column is not defined and is itself not defined (NaN) when no
/// neighbour has a value: a missing neighbour is never replaced by another tile.
pub fn oracle_features(
    latents: &Latents,
    graph: &TileGraph,
    columns: &[&str],
    neighborhood: bool,
) -> Vec<Vec<f64>> {
    let values: Vec<Vec<f64>> = columns
        .iter()
        .map(|c| latents.column(c).expect("only the file's own columns"))
        .collect();
    (0..latents.rows.len())
        .map(|t| {
            let mut row: Vec<f64> = values.iter().map(|v| v[t]).collect();
            if neighborhood {
                for v in &values {
                    let present: Vec<f64> = graph
                        .neighbours(t)
                        .iter()
                        .map(|&u| v[u])
                        .filter(|x| !x.is_nan())
                        .collect();
                    row.push(if present.is_empty() {
                        f64::NAN
                    } else {
                        present.iter().sum::<f64>() / present.len() as f64
                    });
                }
            }
            row
        })
        .collect()
}

impl Model for OracleConfig {
    const KIND: &'static str = "oracle";

    fn label(&self) -> String {
        format!(
            "oracle(t={},d={},lr={})",
            self.n_trees, self.max_depth, self.learning_rate
        )
    }

    fn check(&self) -> Vec<FieldProblem> {
        self.validate().err().unwrap_or_default()
    }

    /// Every dataset must have a readable latents.csv with a visible column, before any job
    /// starts (exit 2).
    fn check_datasets(&self, datasets: &[&PreparedDataset]) -> Result<()> {
        let latents = datasets
            .iter()
            .map(|d| read_latents(d))
            .collect::<Result<Vec<_>>>()?;
        shared_visible_columns(datasets, &latents).map(|_| ())
    }

    fn fit(&self, job: &JobInput, run: &mut RunDir) -> Result<Fitted> {
        let valid = self.validate().map_err(|problems| {
            let listed: Vec<String> = problems.iter().map(|(f, m)| format!("{f}: {m}")).collect();
            Error::Model(format!("oracle: {}", listed.join("; ")))
        })?;
        valid.fit(job, run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::latents::{
        ACQ_STRIP, HIDDEN_V6, LOG_EMISSION_PHYSICAL, LOG_EMISSION_PRE_ERROR, NUISANCE_PARAMETERS,
    };
    use crate::data::{Contiguity, DatasetEntry, DatasetSource, Tile, TileGrid};
    use crate::models::{Inputs, Row};

    #[test]
    fn defaults_are_the_gbdt_baselines() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/models/gbdt.yaml");
        let mut yaml: serde_yaml::Mapping =
            serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        yaml.remove("kind");
        let from_file: OracleConfig = serde_yaml::from_value(yaml.into()).unwrap();
        assert_eq!(from_file, OracleConfig::default());
        assert!(OracleConfig::default().validate().is_ok());
    }

    #[test]
    fn bad_hyperparameters_never_become_valid() {
        let c: OracleConfig = serde_yaml::from_str("{n_trees: 0, subsample: 1.5}").unwrap();
        let fields: Vec<&str> = c.validate().unwrap_err().iter().map(|p| p.0).collect();
        assert_eq!(fields, ["n_trees", "subsample"]);
        assert!(serde_yaml::from_str::<OracleConfig>("{columns: [hidden_coal_share]}").is_err());
    }

    /// Whatever the file holds, the oracle's features are the visible columns and their
    /// neighbour means, nothing else.
    #[test]
    fn features_come_only_from_the_visible_whitelist() {
        let tiles: Vec<Tile> = (0..4)
            .map(|i| Tile {
                x: i % 2,
                y: i / 2,
                emission: 1.0 + i as f64,
            })
            .collect();
        let mut columns: Vec<String> = vec![ACQ_STRIP.into(), LOG_EMISSION_PHYSICAL.into()];
        columns.extend(NUISANCE_PARAMETERS.iter().map(|s| s.to_string()));
        columns.extend(HIDDEN_V6.iter().map(|s| s.to_string()));
        columns.push(LOG_EMISSION_PRE_ERROR.into());
        columns.push("share_road".into());
        columns.push("facility_plant_mw".into());
        columns.push("hidden_added_later".into());
        let latents = Latents {
            rows: vec![vec![1.0; columns.len()]; 4],
            columns,
            xy: tiles.iter().map(|t| (t.x, t.y)).collect(),
        };
        let picked = latents.present(ORACLE_VISIBLE);
        assert_eq!(picked, ["facility_plant_mw", "share_road"]);
        for neighborhood in [true, false] {
            for name in feature_names(&picked, neighborhood) {
                let base = name.strip_prefix("nb_").unwrap_or(&name);
                assert!(ORACLE_VISIBLE.contains(&base), "{name}");
            }
        }
        assert_eq!(
            feature_names(&picked, true),
            [
                "facility_plant_mw",
                "share_road",
                "nb_facility_plant_mw",
                "nb_share_road"
            ]
        );
    }

    #[test]
    fn neighbour_means_skip_missing_tiles_and_undefined_values() {
        // An L of three tiles, (0,0) (1,0) (0,1), and (5,5) alone.
        let tiles: Vec<Tile> = [(0, 0), (1, 0), (0, 1), (5, 5)]
            .iter()
            .map(|&(x, y)| Tile {
                x,
                y,
                emission: 1.0,
            })
            .collect();
        let graph = TileGraph::build(&TileGrid::new(&tiles), Contiguity::Queen);
        let latents = Latents {
            columns: vec!["share_park".into()],
            xy: tiles.iter().map(|t| (t.x, t.y)).collect(),
            rows: vec![vec![1.0], vec![f64::NAN], vec![4.0], vec![9.0]],
        };
        let f = oracle_features(&latents, &graph, &["share_park"], true);
        assert_eq!(f[0], [1.0, 4.0], "(1,0) is not defined and is skipped");
        assert_eq!(f[1][1], 2.5, "(0,1) is a queen neighbour of (1,0)");
        assert!(f[1][0].is_nan());
        assert!(f[3][1].is_nan(), "no neighbour: not defined");
        assert_eq!(
            oracle_features(&latents, &graph, &["share_park"], false)[2],
            [4.0]
        );
    }

    /// The tiny generated city with a latents.csv of the given columns, `value(tile, column)`.
    fn tiny_with_latents(
        columns: &[&str],
        value: impl Fn(&Tile, usize, &str) -> f64,
    ) -> (tempfile::TempDir, PreparedDataset) {
        let dir = tempfile::tempdir().unwrap();
        let city = dir.path().join("city");
        let p = crate::data::synth::preset("tiny").unwrap();
        crate::data::synth::SynthCity::generate(&p, 2)
            .write(&city)
            .unwrap();
        let data = crate::data::CityDataset::open(&city).unwrap();
        Latents {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            xy: data.tiles.iter().map(|t| (t.x, t.y)).collect(),
            rows: data
                .tiles
                .iter()
                .enumerate()
                .map(|(i, t)| columns.iter().map(|c| value(t, i, c)).collect())
                .collect(),
        }
        .write(&city)
        .unwrap();
        let entry = DatasetEntry {
            name: "tiny".into(),
            source: DatasetSource::Path { path: city },
        };
        let ds = crate::data::prepared::prepare_dataset(&entry, &dir.path().join("cache"), 16, 16)
            .unwrap();
        (dir, ds)
    }

    /// The oracle's test R² on a block split of the city.
    fn oracle_test_r2(ds: &PreparedDataset) -> Result<f64> {
        let split = crate::data::split::block_split(&ds.data, 2, [0.6, 0.2, 0.2], 0);
        let rows: Vec<Row> = split
            .iter()
            .enumerate()
            .filter_map(|(tile, part)| {
                part.map(|part| Row {
                    dataset: 0,
                    tile,
                    part,
                })
            })
            .collect();
        let exp = tempfile::tempdir().unwrap();
        let mut run = RunDir::begin(exp.path(), "00000abcde")?;
        let job = JobInput {
            inputs: Inputs::default(),
            seed: 0,
            device: crate::nn::device::DeviceSpec::Cpu,
            dataset_label: "tiny".into(),
            split_label: "block2".into(),
            datasets: &[ds],
            rows: &rows,
            reads_run: None,
        };
        let config = OracleConfig::default();
        config.check_datasets(&[ds])?;
        let fitted = Model::fit(&config, &job, &mut run)?;
        let (y, p): (Vec<f64>, Vec<f64>) = rows
            .iter()
            .zip(&fitted.predictions)
            .filter(|(r, _)| r.part == SplitPart::Test)
            .map(|(r, p)| (ds.data.tiles[r.tile].emission.ln(), *p))
            .unzip();
        assert!(y.len() >= 8, "{} test tiles", y.len());
        Ok(crate::metrics::r2(&y, &p))
    }

    /// A deterministic value in [0, 1) that has nothing to do with the tile's emission.
    fn noise(i: usize, salt: u64) -> f64 {
        let h = (i as u64 ^ salt)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
        (h.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The leaked columns hold the exact target; the visible one holds `visible(tile, i)`.
    fn leaky_city(visible: impl Fn(&Tile, usize) -> f64) -> (tempfile::TempDir, PreparedDataset) {
        let leaks = [
            LOG_EMISSION_PHYSICAL,
            LOG_EMISSION_PRE_ERROR,
            "hidden_occupancy",
            "acq_gain",
        ];
        let mut columns = vec!["floor_office_m2"];
        columns.extend(leaks);
        tiny_with_latents(&columns, |t, i, c| {
            if c == "floor_office_m2" {
                visible(t, i)
            } else if t.is_target() {
                t.emission.ln()
            } else {
                f64::NAN
            }
        })
    }

    #[test]
    fn a_visible_column_that_determines_the_target_is_learned() {
        let (_dir, ds) = leaky_city(|t, _| 250.0 * t.emission);
        let r2 = oracle_test_r2(&ds).unwrap();
        assert!(r2 > 0.8, "test R² {r2}");
    }

    /// The same city with noise in the visible column: the target sits in the emission,
    /// hidden and acquisition columns, which the oracle must not read.
    #[test]
    fn the_emission_hidden_and_acquisition_columns_are_never_read() {
        let (_dir, ds) = leaky_city(|_, i| noise(i, 7));
        let r2 = oracle_test_r2(&ds).unwrap();
        assert!(r2 < 0.5, "test R² {r2}: the oracle saw a leaked column");
    }

    #[test]
    fn a_dataset_without_visible_latents_is_an_input_error() {
        let (_dir, ds) = tiny_with_latents(&["hidden_coal_share", ACQ_STRIP], |_, i, _| i as f64);
        let e = OracleConfig::default().check_datasets(&[&ds]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string()
                .contains("has none of the oracle's visible columns"),
            "{e}"
        );
        std::fs::remove_file(latents_path(&ds.path)).unwrap();
        let e = OracleConfig::default().check_datasets(&[&ds]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().ends_with(
                "dataset `tiny` has no latents.csv: the oracle runs only on generated cities"
            ),
            "{e}"
        );
    }
}
