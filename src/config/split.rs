//! The `splits:` section: each split kind's fields, their defaults and their checks, turned
//! into a `SplitSpec` (the type itself lives with the split code in `data::split`).

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use super::yaml::{join_path, typed, Problems};
use crate::data::split::SplitSpec;

fn default_valid_fraction() -> f64 {
    0.2
}

/// Train, validation and test shares when a split gives none.
const DEFAULT_FRACTIONS: [f64; 3] = [0.6, 0.2, 0.2];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRandomSplit {
    fractions: [f64; 3],
    seed: Option<u64>,
}

impl Default for RawRandomSplit {
    fn default() -> Self {
        RawRandomSplit {
            fractions: DEFAULT_FRACTIONS,
            seed: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBlockSplit {
    block_tiles: u32,
    fractions: [f64; 3],
    seed: Option<u64>,
}

impl Default for RawBlockSplit {
    fn default() -> Self {
        RawBlockSplit {
            block_tiles: 4,
            fractions: DEFAULT_FRACTIONS,
            seed: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPredefinedSplit {
    file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCrossCitySplit {
    train: Vec<String>,
    test: Vec<String>,
    #[serde(default = "default_valid_fraction")]
    valid_fraction: f64,
    #[serde(default)]
    target_train_fraction: f64,
    #[serde(default)]
    seed: Option<u64>,
}

fn check_fractions(f: &[f64; 3], path: &str, problems: &mut Problems) {
    if f.iter().any(|v| !v.is_finite() || *v < 0.0) {
        problems.add(
            join_path(path, "fractions"),
            format!("{f:?} has a negative or non-finite share"),
        );
    } else if (f.iter().sum::<f64>() - 1.0).abs() > 1e-6 {
        problems.add(
            join_path(path, "fractions"),
            format!("{f:?} sums to {}, expected 1", f.iter().sum::<f64>()),
        );
    } else if f[0] <= 0.0 || f[2] <= 0.0 {
        problems.add(
            join_path(path, "fractions"),
            "train and test shares must be > 0",
        );
    }
}

pub(super) fn parse_split_spec(
    mut map: Mapping,
    path: &str,
    names: &BTreeSet<String>,
    problems: &mut Problems,
) -> Option<SplitSpec> {
    let kind = match map.remove("kind") {
        Some(Value::String(k)) => k,
        _ => {
            problems.add(
                join_path(path, "kind"),
                "expected one of random, block, predefined, cross_city",
            );
            return None;
        }
    };
    let body = Value::Mapping(map);
    match kind.as_str() {
        "random" => {
            let r: RawRandomSplit = typed(body, path, problems)?;
            check_fractions(&r.fractions, path, problems);
            Some(SplitSpec::Random {
                fractions: r.fractions,
                seed: r.seed,
            })
        }
        "block" => {
            let r: RawBlockSplit = typed(body, path, problems)?;
            check_fractions(&r.fractions, path, problems);
            if r.block_tiles == 0 {
                problems.add(join_path(path, "block_tiles"), "is 0, expected at least 1");
            }
            Some(SplitSpec::Block {
                block_tiles: r.block_tiles,
                fractions: r.fractions,
                seed: r.seed,
            })
        }
        "predefined" => {
            let r: RawPredefinedSplit = typed(body, path, problems)?;
            Some(SplitSpec::Predefined { file: r.file })
        }
        "cross_city" => {
            let r: RawCrossCitySplit = typed(body, path, problems)?;
            for (field, list) in [("train", &r.train), ("test", &r.test)] {
                if list.is_empty() {
                    problems.add(
                        join_path(path, field),
                        "is empty, expected at least one dataset name",
                    );
                }
                for (i, n) in list.iter().enumerate() {
                    if !names.contains(n) {
                        problems.add(
                            format!("{}[{i}]", join_path(path, field)),
                            format!(
                                "`{n}` is not one of this experiment's datasets ({})",
                                names.iter().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        );
                    }
                }
            }
            if r.train.iter().any(|n| r.test.contains(n)) {
                problems.add(path, "a dataset is both in train and test");
            }
            if !(0.0..1.0).contains(&r.valid_fraction) {
                problems.add(
                    join_path(path, "valid_fraction"),
                    format!("is {}, expected 0 <= share < 1", r.valid_fraction),
                );
            }
            if !(0.0..1.0).contains(&r.target_train_fraction) {
                problems.add(
                    join_path(path, "target_train_fraction"),
                    format!("is {}, expected 0 <= share < 1", r.target_train_fraction),
                );
            }
            Some(SplitSpec::CrossCity {
                train: r.train,
                test: r.test,
                valid_fraction: r.valid_fraction,
                target_train_fraction: r.target_train_fraction,
                seed: r.seed,
            })
        }
        other => {
            problems.add(
                join_path(path, "kind"),
                format!("unknown split `{other}`, expected one of random, block, predefined, cross_city"),
            );
            None
        }
    }
}
