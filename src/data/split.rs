//! `SplitPlan`: which tiles train, validate and test a job. Zero-emission tiles are never
//! assigned (they are not targets), but stay in the dataset as neighbours.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::format::{CityDataset, SplitPart};
use crate::error::Result;

/// A validated split specification (see `config` for the YAML form).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SplitSpec {
    /// Tiles drawn at random; `seed` fixes the split across job seeds when given.
    Random {
        fractions: [f64; 3],
        seed: Option<u64>,
    },
    /// Square blocks of `block_tiles`×`block_tiles` tiles go whole to one part.
    Block {
        block_tiles: u32,
        fractions: [f64; 3],
        seed: Option<u64>,
    },
    /// A published split from the dataset's `splits/<name>.csv`.
    Predefined { file: String },
    /// Train (and validate) on some cities, test on others. `target_train_fraction` of each
    /// test city's tiles may be moved into training (few-shot transfer).
    CrossCity {
        train: Vec<String>,
        test: Vec<String>,
        valid_fraction: f64,
        target_train_fraction: f64,
        seed: Option<u64>,
    },
}

impl SplitSpec {
    /// Short label used in run tables (`random`, `block4`, `predefined:fengtai`, `london>beijing`).
    pub fn label(&self) -> String {
        match self {
            SplitSpec::Random { .. } => "random".into(),
            SplitSpec::Block { block_tiles, .. } => format!("block{block_tiles}"),
            SplitSpec::Predefined { file } => format!("predefined:{file}"),
            // One table for all pairs: the pair is the dataset column (`pair_label`).
            SplitSpec::CrossCity {
                target_train_fraction,
                ..
            } => {
                if *target_train_fraction > 0.0 {
                    format!("transfer+{}pct", (target_train_fraction * 100.0).round())
                } else {
                    "transfer".into()
                }
            }
        }
    }

    /// `train>test` cities of a cross-city split (`None` for single-city splits).
    pub fn pair_label(&self) -> Option<String> {
        match self {
            SplitSpec::CrossCity { train, test, .. } => {
                Some(format!("{}>{}", train.join("+"), test.join("+")))
            }
            _ => None,
        }
    }
}

/// The part of every tile of one dataset (`None`: unused).
pub type Assignment = Vec<Option<SplitPart>>;

fn shuffled<T>(mut v: Vec<T>, rng: &mut ChaCha8Rng) -> Vec<T> {
    v.shuffle(rng);
    v
}

/// Cut `items` (already shuffled) into train/valid/test by `fractions`, rounding so the counts
/// add up to the total.
fn cut(items: &[usize], fractions: [f64; 3], out: &mut Assignment) {
    let n = items.len();
    let n_train = (fractions[0] * n as f64).round() as usize;
    let n_valid = ((fractions[1] * n as f64).round() as usize).min(n - n_train);
    for (k, &i) in items.iter().enumerate() {
        out[i] = Some(if k < n_train {
            SplitPart::Train
        } else if k < n_train + n_valid {
            SplitPart::Valid
        } else {
            SplitPart::Test
        });
    }
}

fn targets(ds: &CityDataset) -> Vec<usize> {
    (0..ds.tiles.len())
        .filter(|&i| ds.tiles[i].is_target())
        .collect()
}

/// Random split of one dataset's target tiles.
pub fn random_split(ds: &CityDataset, fractions: [f64; 3], seed: u64) -> Assignment {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = vec![None; ds.tiles.len()];
    cut(&shuffled(targets(ds), &mut rng), fractions, &mut out);
    out
}

/// Spatial block hold-out: blocks are shuffled and each goes whole to the part whose share of
/// target tiles is furthest below its fraction, so the parts come close to the fractions
/// while no block straddles two parts.
pub fn block_split(
    ds: &CityDataset,
    block_tiles: u32,
    fractions: [f64; 3],
    seed: u64,
) -> Assignment {
    let mut blocks: BTreeMap<(u32, u32), Vec<usize>> = BTreeMap::new();
    for i in targets(ds) {
        let t = ds.tiles[i];
        blocks
            .entry((t.x / block_tiles, t.y / block_tiles))
            .or_default()
            .push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let blocks = shuffled(blocks.into_values().collect::<Vec<_>>(), &mut rng);
    let total: usize = blocks.iter().map(|b| b.len()).sum();
    let mut counts = [0usize; 3];
    let mut out = vec![None; ds.tiles.len()];
    for b in blocks {
        let part = (0..3)
            .filter(|&p| fractions[p] > 0.0)
            .max_by(|&a, &c| {
                let deficit = |p: usize| fractions[p] * total as f64 - counts[p] as f64;
                deficit(a).total_cmp(&deficit(c))
            })
            .unwrap_or(0);
        counts[part] += b.len();
        for i in b {
            out[i] = Some(SplitPart::ALL[part]);
        }
    }
    out
}

/// Assignments for every dataset a job reads (one for single-city splits).
pub fn assign(spec: &SplitSpec, datasets: &[&CityDataset], seed: u64) -> Result<Vec<Assignment>> {
    match spec {
        SplitSpec::Random { fractions, seed: s } => Ok(vec![random_split(
            datasets[0],
            *fractions,
            s.unwrap_or(seed),
        )]),
        SplitSpec::Block {
            block_tiles,
            fractions,
            seed: s,
        } => Ok(vec![block_split(
            datasets[0],
            *block_tiles,
            *fractions,
            s.unwrap_or(seed),
        )]),
        SplitSpec::Predefined { file } => {
            let ds = datasets[0];
            let parts = ds.read_split(file)?;
            Ok(vec![(0..ds.tiles.len())
                .map(|i| parts.get(&i).copied().filter(|_| ds.tiles[i].is_target()))
                .collect()])
        }
        SplitSpec::CrossCity {
            train,
            valid_fraction,
            target_train_fraction,
            seed: s,
            ..
        } => {
            let mut rng = ChaCha8Rng::seed_from_u64(s.unwrap_or(seed));
            Ok(datasets
                .iter()
                .map(|ds| {
                    let mut out = vec![None; ds.tiles.len()];
                    let t = shuffled(targets(ds), &mut rng);
                    if train.iter().any(|n| n == ds.name()) {
                        cut(&t, [1.0 - valid_fraction, *valid_fraction, 0.0], &mut out);
                    } else {
                        cut(
                            &t,
                            [*target_train_fraction, 0.0, 1.0 - target_train_fraction],
                            &mut out,
                        );
                    }
                    out
                })
                .collect())
        }
    }
}

/// Tiles per part, for logs and tests.
pub fn part_counts(a: &Assignment) -> [usize; 3] {
    let mut c = [0; 3];
    for p in a.iter().flatten() {
        c[*p as usize] += 1;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::{preset, SynthCity};

    fn tiny() -> (tempfile::TempDir, CityDataset) {
        let dir = tempfile::tempdir().unwrap();
        SynthCity::generate(&preset("tiny").unwrap(), 1)
            .write(dir.path())
            .unwrap();
        let ds = CityDataset::open(dir.path()).unwrap();
        (dir, ds)
    }

    #[test]
    fn random_split_covers_every_target_once_with_the_right_shares() {
        let (_d, ds) = tiny();
        let a = random_split(&ds, [0.6, 0.2, 0.2], 5);
        let targets = ds.tiles.iter().filter(|t| t.is_target()).count();
        let [tr, va, te] = part_counts(&a);
        assert_eq!(tr + va + te, targets);
        assert_eq!(tr, (0.6 * targets as f64).round() as usize);
        for (t, p) in ds.tiles.iter().zip(&a) {
            assert_eq!(p.is_some(), t.is_target());
        }
        assert_eq!(
            a,
            random_split(&ds, [0.6, 0.2, 0.2], 5),
            "same seed, same split"
        );
        assert_ne!(a, random_split(&ds, [0.6, 0.2, 0.2], 6));
    }

    #[test]
    fn block_split_never_cuts_a_block() {
        let (_d, ds) = tiny();
        let a = block_split(&ds, 2, [0.6, 0.2, 0.2], 3);
        let mut block_part = std::collections::HashMap::new();
        for (t, p) in ds.tiles.iter().zip(&a) {
            if let Some(p) = p {
                let prev = block_part.insert((t.x / 2, t.y / 2), *p);
                assert!(
                    prev.is_none() || prev == Some(*p),
                    "block ({}, {}) is cut",
                    t.x / 2,
                    t.y / 2
                );
            }
        }
        let [tr, va, te] = part_counts(&a);
        let n = (tr + va + te) as f64;
        // Whole blocks of up to 4 tiles: shares within a block or two of the target.
        assert!(
            (tr as f64 / n - 0.6).abs() < 0.1 && te > 0 && va > 0,
            "{tr} {va} {te}"
        );
    }

    #[test]
    fn cross_city_tests_on_the_other_city_and_can_lend_it_to_training() {
        let (_d, ds) = tiny();
        let mut other = ds.clone();
        other.meta.name = "other".into();
        let spec = SplitSpec::CrossCity {
            train: vec!["tiny".into()],
            test: vec!["other".into()],
            valid_fraction: 0.2,
            target_train_fraction: 0.1,
            seed: None,
        };
        let a = assign(&spec, &[&ds, &other], 0).unwrap();
        let [tr0, va0, te0] = part_counts(&a[0]);
        let [tr1, va1, te1] = part_counts(&a[1]);
        assert!(tr0 > 0 && va0 > 0 && te0 == 0);
        assert!(va1 == 0 && te1 > 0);
        assert_eq!(tr1, (0.1 * (tr1 + te1) as f64).round() as usize);
        assert_eq!(spec.label(), "transfer+10pct");
        assert_eq!(spec.pair_label().as_deref(), Some("tiny>other"));
    }
}
