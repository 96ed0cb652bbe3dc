//! The ladder's statistics of one generated city that need no run: T0 (gradient boosting from
//! the acquisition parameters, whole strips held out), each parameter's Spearman correlation
//! with ln emission, the inventory-error ceiling, Moran's I, the top-1 % share and the total.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::{Array1, Array2};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::graph::morans_i;
use crate::data::latents::{
    latents_path, Latents, ACQ_STRIP, LOG_EMISSION_PRE_ERROR, NUISANCE_PARAMETERS,
};
use crate::data::{Tile, TileGraph};
use crate::error::{Error, Result};
use crate::metrics::{r2, spearman};
use crate::models::gbdt::GbdtConfig;

/// Folds of T0's grouped cross-validation (fewer when the city has fewer strips).
pub const T0_FOLDS: usize = 5;

/// The latents the ladder reads, checked: the acquisition parameters present, each tile's
/// strip and its ln emission before the inventory's error.
pub struct LadderLatents {
    /// (name, value per tile) of each `NUISANCE_PARAMETERS` column the file holds.
    pub nuisance: Vec<(&'static str, Vec<f64>)>,
    pub strip: Vec<i64>,
    pub log_emission_pre_error: Vec<f64>,
}

impl LadderLatents {
    /// The ladder's columns of a dataset's latents.csv (in `dir`); errors name the file, and
    /// the line of a bad strip id.
    pub fn read(dir: &Path, tiles: &[Tile]) -> Result<LadderLatents> {
        let path = latents_path(dir);
        let latents = Latents::read(dir, tiles)?;
        let required = |name: &str, why: &str| {
            latents.column(name).ok_or_else(|| {
                Error::dataset(&path, Some(1), format!("has no column `{name}` ({why})"))
            })
        };
        let strip = required(ACQ_STRIP, "T0 holds out whole acquisition strips")?
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if v.is_finite() && v.fract() == 0.0 && v.abs() < 2f64.powi(53) {
                    Ok(v as i64)
                } else {
                    Err(Error::dataset(
                        &path,
                        Some(i as u64 + 2),
                        format!("`{ACQ_STRIP}` is `{v}`, expected an integer strip id"),
                    ))
                }
            })
            .collect::<Result<Vec<i64>>>()?;
        let log_emission_pre_error = required(
            LOG_EMISSION_PRE_ERROR,
            "the inventory-error ceiling predicts with it",
        )?;
        let nuisance: Vec<(&'static str, Vec<f64>)> = latents
            .present(NUISANCE_PARAMETERS)
            .into_iter()
            .map(|n| (n, latents.column(n).expect("present")))
            .collect();
        if nuisance.is_empty() {
            return Err(Error::dataset(
                &path,
                Some(1),
                format!(
                    "has none of the acquisition parameters ({}): T0 needs at least one",
                    NUISANCE_PARAMETERS.join(", ")
                ),
            ));
        }
        Ok(LadderLatents {
            nuisance,
            strip,
            log_emission_pre_error,
        })
    }
}

/// The target tiles (emission > 0) of a city and their ln emission.
pub struct Targets {
    pub tiles: Vec<usize>,
    pub log_emission: Vec<f64>,
}

impl Targets {
    pub fn of(tiles: &[Tile]) -> Targets {
        let picked: Vec<usize> = (0..tiles.len()).filter(|&t| tiles[t].is_target()).collect();
        let log_emission = picked.iter().map(|&t| tiles[t].emission.ln()).collect();
        Targets {
            tiles: picked,
            log_emission,
        }
    }
}

/// T0: out-of-fold predictions of ln emission from the acquisition parameters, whole strips
/// held out (strips shuffled by `seed`, then dealt to the folds in turn), R² over all
/// out-of-fold predictions pooled. Also the number of strips.
pub fn t0_r2(
    latents: &LadderLatents,
    targets: &Targets,
    boosting: &GbdtConfig,
    seed: u64,
) -> Result<(f64, usize)> {
    let mut strips: Vec<i64> = targets.tiles.iter().map(|&t| latents.strip[t]).collect();
    strips.sort_unstable();
    strips.dedup();
    if strips.len() < 2 {
        return Err(Error::Model(format!(
            "T0 needs target tiles in at least 2 acquisition strips, found {}",
            strips.len()
        )));
    }
    strips.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let folds = T0_FOLDS.min(strips.len());
    let fold_of: BTreeMap<i64, usize> = strips
        .iter()
        .enumerate()
        .map(|(i, &s)| (s, i % folds))
        .collect();
    let fold: Vec<usize> = targets
        .tiles
        .iter()
        .map(|&t| fold_of[&latents.strip[t]])
        .collect();
    let matrix = |rows: &[usize]| {
        let mut x = Array2::zeros((rows.len(), latents.nuisance.len()));
        for (i, &r) in rows.iter().enumerate() {
            for (k, (_, values)) in latents.nuisance.iter().enumerate() {
                x[[i, k]] = values[targets.tiles[r]];
            }
        }
        x
    };
    let mut out_of_fold = vec![f64::NAN; targets.tiles.len()];
    for k in 0..folds {
        let (held, kept): (Vec<usize>, Vec<usize>) =
            (0..targets.tiles.len()).partition(|&r| fold[r] == k);
        let y: Array1<f64> = kept.iter().map(|&r| targets.log_emission[r]).collect();
        let fitted = boosting.fit(matrix(&kept).view(), &y, seed)?;
        let predicted = fitted.predict(matrix(&held).view())?;
        for (&r, p) in held.iter().zip(predicted.iter()) {
            out_of_fold[r] = *p;
        }
    }
    Ok((r2(&targets.log_emission, &out_of_fold), strips.len()))
}

/// Each acquisition parameter's Spearman correlation with ln emission over the target tiles
/// where it is defined; NaN for a parameter that is constant there (it cannot tell anything).
pub fn spearman_by_parameter(latents: &LadderLatents, targets: &Targets) -> BTreeMap<String, f64> {
    latents
        .nuisance
        .iter()
        .map(|(name, values)| {
            let (v, y): (Vec<f64>, Vec<f64>) = targets
                .tiles
                .iter()
                .zip(&targets.log_emission)
                .map(|(&t, &y)| (values[t], y))
                .filter(|(v, _)| !v.is_nan())
                .unzip();
            let rho = if v.len() < 3 {
                f64::NAN
            } else {
                spearman(&v, &y)
            };
            (name.to_string(), rho)
        })
        .collect()
}

/// R² of observed ln emission predicted by the ln emission before the inventory's error (no
/// fit), over the target tiles `rows` (indices into `targets`) where it is defined.
pub fn inventory_ceiling(latents: &LadderLatents, targets: &Targets, rows: &[usize]) -> f64 {
    let (y, p): (Vec<f64>, Vec<f64>) = rows
        .iter()
        .map(|&r| {
            (
                targets.log_emission[r],
                latents.log_emission_pre_error[targets.tiles[r]],
            )
        })
        .filter(|(_, p)| !p.is_nan())
        .unzip();
    if y.is_empty() {
        f64::NAN
    } else {
        r2(&y, &p)
    }
}

/// Moran's I of ln emission over the target tiles (queen contiguity).
pub fn morans_i_of_log_emission(graph: &TileGraph, tiles: &[Tile]) -> f64 {
    let values: Vec<Option<f64>> = tiles
        .iter()
        .map(|t| t.is_target().then(|| t.emission.ln()))
        .collect();
    morans_i(graph, &values).unwrap_or(f64::NAN)
}

/// Share of the city's total emission held by its top 1 % of tiles (all tiles counted, at
/// least one tile, 1 % rounded to the nearest tile).
pub fn top1_share(tiles: &[Tile]) -> f64 {
    let mut e: Vec<f64> = tiles.iter().map(|t| t.emission).collect();
    e.sort_by(|a, b| b.total_cmp(a));
    let total: f64 = e.iter().sum();
    let k = ((e.len() as f64 * 0.01).round() as usize).max(1);
    if total > 0.0 {
        e[..k].iter().sum::<f64>() / total
    } else {
        f64::NAN
    }
}

/// How many Mt CO2 / yr one unit of `target.unit` is: t, kt, Mt or Gt of CO2 per year
/// (spaces, case and `₂` ignored; `/year`, `/yr` or `/a`). None for any other unit.
pub fn megatonnes_per_unit(unit: &str) -> Option<f64> {
    let u: String = unit
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase()
        .replace('₂', "2");
    let mass = ["/year", "/yr", "/a"]
        .iter()
        .find_map(|per| u.strip_suffix(per))?
        .strip_suffix("co2")?;
    match mass {
        "t" => Some(1e-6),
        "kt" => Some(1e-3),
        "mt" => Some(1.0),
        "gt" => Some(1e3),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Contiguity, TileGrid};

    fn row(emissions: &[f64]) -> Vec<Tile> {
        emissions
            .iter()
            .enumerate()
            .map(|(i, &emission)| Tile {
                x: i as u32,
                y: 0,
                emission,
            })
            .collect()
    }

    #[test]
    fn units_convert_to_megatonnes() {
        assert_eq!(megatonnes_per_unit("t CO2 / year"), Some(1e-6));
        assert_eq!(megatonnes_per_unit("kt CO₂/yr"), Some(1e-3));
        assert_eq!(megatonnes_per_unit("Mt CO2 / a"), Some(1.0));
        assert_eq!(megatonnes_per_unit("t C / year"), None);
        assert_eq!(megatonnes_per_unit("t CO2 / month"), None);
    }

    #[test]
    fn top_one_percent_share_counts_every_tile() {
        // 200 tiles: the top 1 % is 2 tiles, 50 + 30 of a total of 80 + 198.
        let mut e = vec![1.0; 198];
        e.extend([50.0, 30.0]);
        assert!((top1_share(&row(&e)) - 80.0 / 278.0).abs() < 1e-12);
        // Fewer than 100 tiles: the single largest.
        assert_eq!(top1_share(&row(&[1.0, 3.0, 0.0])), 0.75);
        assert!(top1_share(&row(&[0.0, 0.0])).is_nan());
    }

    fn ladder_latents(strip: Vec<i64>, nuisance: Vec<f64>, pre: Vec<f64>) -> LadderLatents {
        LadderLatents {
            nuisance: vec![("acq_gain", nuisance)],
            strip,
            log_emission_pre_error: pre,
        }
    }

    #[test]
    fn the_ceiling_is_the_r2_of_the_pre_error_emission_as_a_prediction() {
        let tiles = row(&[1.0, 0.0, 2.0, 4.0]);
        let targets = Targets::of(&tiles);
        assert_eq!(targets.tiles, [0, 2, 3]);
        let exact: Vec<f64> = tiles.iter().map(|t| t.emission.ln()).collect();
        let l = ladder_latents(vec![0; 4], vec![0.0; 4], exact);
        assert_eq!(inventory_ceiling(&l, &targets, &[0, 1, 2]), 1.0);
        let l = ladder_latents(vec![0; 4], vec![0.0; 4], vec![0.0, f64::NAN, 0.0, 0.0]);
        let y = &targets.log_emission;
        let expected = crate::metrics::r2(y, &[0.0; 3]);
        assert_eq!(inventory_ceiling(&l, &targets, &[0, 1, 2]), expected);
        assert!(expected < 0.0);
    }

    /// 40 strips of 10 tiles; ln emission is the strip's block of 4 strips. A parameter that
    /// is ln emission itself is learned whatever is held out; a random offset per strip tells
    /// nothing about a strip held out whole, but everything when each tile is its own strip
    /// (the strip's other tiles are then in training).
    #[test]
    fn t0_holds_out_whole_strips_and_pools_the_folds() {
        let n = 400;
        let tiles: Vec<Tile> = (0..n)
            .map(|i| Tile {
                x: i as u32,
                y: 0,
                emission: ((i / 40) as f64).exp(),
            })
            .collect();
        let targets = Targets::of(&tiles);
        let strip: Vec<i64> = (0..n as i64).map(|i| i / 10).collect();
        let boosting = GbdtConfig {
            n_trees: 60,
            ..GbdtConfig::default()
        };
        let level: Vec<f64> = (0..n).map(|i| (i / 40) as f64).collect();
        let (high, strips) = t0_r2(
            &ladder_latents(strip.clone(), level, vec![0.0; n]),
            &targets,
            &boosting,
            1,
        )
        .unwrap();
        assert_eq!(strips, 40);
        assert!(high > 0.9, "{high}");
        let offset: Vec<f64> = (0..n)
            .map(|i| ((i / 10) as f64 * 7.31).sin() * 1000.0)
            .collect();
        let (low, _) = t0_r2(
            &ladder_latents(strip.clone(), offset.clone(), vec![0.0; n]),
            &targets,
            &boosting,
            1,
        )
        .unwrap();
        assert!(low < 0.3, "{low}");
        let own: Vec<i64> = (0..n as i64).collect();
        let (leaky, _) = t0_r2(
            &ladder_latents(own, offset, vec![0.0; n]),
            &targets,
            &boosting,
            1,
        )
        .unwrap();
        assert!(leaky > 0.9, "{leaky}");
        let one = ladder_latents(vec![3; n], vec![0.0; n], vec![0.0; n]);
        assert!(t0_r2(&one, &targets, &boosting, 1).is_err());
    }

    #[test]
    fn spearman_skips_undefined_values_and_moran_sees_structure() {
        let tiles = row(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        let targets = Targets::of(&tiles);
        let l = ladder_latents(
            vec![0; 5],
            vec![10.0, f64::NAN, 30.0, 40.0, 50.0],
            vec![0.0; 5],
        );
        assert_eq!(spearman_by_parameter(&l, &targets)["acq_gain"], 1.0);
        let constant = ladder_latents(vec![0; 5], vec![2.0; 5], vec![0.0; 5]);
        assert!(spearman_by_parameter(&constant, &targets)["acq_gain"].is_nan());
        let graph = TileGraph::build(&TileGrid::new(&tiles), Contiguity::Queen);
        assert!(morans_i_of_log_emission(&graph, &tiles) > 0.0);
    }
}
