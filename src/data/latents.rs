//! `latents.csv`: the true per-tile quantities a generated city was made from. It is not a
//! model input: beside tiles.csv in a generated city's directory, it is read only by the
//! `oracle` model (the visible columns, `ORACLE_VISIBLE`) and by the `ladder` command (the
//! acquisition parameters and the inventory's intermediate emissions), never by the dataset
//! reader or any other model (docs/dataset-format.md, "latents.csv — not an input").
//!
//! Layout: header `x,y,<column>...`, one row per tile in tiles.csv's order, values f64, an
//! empty cell meaning "not defined" (NaN, e.g. the log of a zero emission).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::format::Tile;
use crate::error::{Error, Result};

pub const LATENTS_FILE: &str = "latents.csv";

/// What a perfect reader of the v6 images and map could know of a tile: floor area by use
/// (m²) and traffic-weighted road length by class (vehicle-km per day) within the tile, and
/// the capacity of its power plants (electric MW) and process sites (fuel input MW), which
/// the image tells apart (cooling towers against tanks).
pub const VISIBLE_V6: &[&str] = &[
    "floor_residential_m2",
    "floor_retail_m2",
    "floor_office_m2",
    "floor_industry_m2",
    "floor_warehouse_m2",
    "floor_education_m2",
    "traffic_motorway_vkm",
    "traffic_arterial_vkm",
    "traffic_collector_vkm",
    "traffic_local_vkm",
    "facility_plant_mw",
    "facility_process_mw",
];

/// The same for the v5 generator: land-use shares of the tile's cells, mean built density of
/// its residential and commercial cells times their share, and whether a plant is drawn (0/1).
pub const VISIBLE_V5: &[&str] = &[
    "share_water",
    "share_park",
    "share_farmland",
    "share_residential",
    "share_commercial",
    "share_industrial",
    "share_road",
    "density_residential",
    "density_commercial",
    "plant_visible",
];

/// The oracle's whitelist: `VISIBLE_V6` then `VISIBLE_V5` (a test checks it is exactly their
/// union). It uses the ones a file holds.
pub const ORACLE_VISIBLE: &[&str] = &[
    "floor_residential_m2",
    "floor_retail_m2",
    "floor_office_m2",
    "floor_industry_m2",
    "floor_warehouse_m2",
    "floor_education_m2",
    "traffic_motorway_vkm",
    "traffic_arterial_vkm",
    "traffic_collector_vkm",
    "traffic_local_vkm",
    "facility_plant_mw",
    "facility_process_mw",
    "share_water",
    "share_park",
    "share_farmland",
    "share_residential",
    "share_commercial",
    "share_industrial",
    "share_road",
    "density_residential",
    "density_commercial",
    "plant_visible",
];

/// Prefix of the acquisition (nuisance) columns: how a tile was imaged, not what is on it.
pub const ACQ_PREFIX: &str = "acq_";

/// Integer id of the acquisition strip: the group of tiles imaged together, which share
/// their acquisition parameters (the ladder holds whole strips out).
pub const ACQ_STRIP: &str = "acq_strip";

/// The v6 renderer's acquisition parameters.
pub const NUISANCE_V6: &[&str] = &[
    "acq_sun_azimuth_deg",
    "acq_sun_elevation_deg",
    "acq_gain",
    "acq_offset",
    "acq_gamma",
    "acq_haze",
    "acq_white_balance_red",
    "acq_white_balance_blue",
    "acq_season",
];

/// The v5 renderer's one acquisition parameter (per-tile brightness).
pub const NUISANCE_V5: &[&str] = &["acq_brightness"];

/// Every acquisition parameter (`NUISANCE_V6` then `NUISANCE_V5`; not the strip id): the
/// inputs of the ladder's T0, which uses the ones a file holds.
pub const NUISANCE_PARAMETERS: &[&str] = &[
    "acq_sun_azimuth_deg",
    "acq_sun_elevation_deg",
    "acq_gain",
    "acq_offset",
    "acq_gamma",
    "acq_haze",
    "acq_white_balance_red",
    "acq_white_balance_blue",
    "acq_season",
    "acq_brightness",
];

/// Prefix of the hidden columns: causes of emission that no image or map shows. Any column
/// with it is hidden, whether listed below or added later.
pub const HIDDEN_PREFIX: &str = "hidden_";

/// The v6 generator's hidden columns.
pub const HIDDEN_V6: &[&str] = &[
    "hidden_building_age_years",
    "hidden_insulation",
    "hidden_coal_share",
    "hidden_occupancy",
];

/// The v5 generator's hidden columns.
pub const HIDDEN_V5: &[&str] = &["hidden_energy_intensity", "hidden_vibrancy"];

/// ln of the tile's true emission, before the inventory.
pub const LOG_EMISSION_PHYSICAL: &str = "log_emission_physical";

/// ln of the tile's emission after the inventory's regridding and spreading, before its
/// log-normal error: tiles.csv's emission is this times that error.
pub const LOG_EMISSION_PRE_ERROR: &str = "log_emission_pre_error";

/// The latents of every tile of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Latents {
    /// Column names after `x,y`.
    pub columns: Vec<String>,
    /// Each row's tile, in tiles.csv's order.
    pub xy: Vec<(u32, u32)>,
    /// One row per tile, one value per column; NaN where not defined.
    pub rows: Vec<Vec<f64>>,
}

/// Where a dataset directory's latents are.
pub fn latents_path(dir: &Path) -> PathBuf {
    dir.join(LATENTS_FILE)
}

impl Latents {
    /// Write `<dir>/latents.csv` through a temporary name and a rename. NaN is written as an
    /// empty cell; an infinite value or a row of the wrong length is refused.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = latents_path(dir);
        let bad = |m: String| Error::Internal(format!("{}: {m}", path.display()));
        check_column_names(&self.columns).map_err(bad)?;
        if self.rows.len() != self.xy.len() {
            return Err(bad(format!(
                "{} rows for {} tiles",
                self.rows.len(),
                self.xy.len()
            )));
        }
        let mut out = String::from("x,y");
        for c in &self.columns {
            out.push(',');
            out.push_str(c);
        }
        out.push('\n');
        for (&(x, y), row) in self.xy.iter().zip(&self.rows) {
            if row.len() != self.columns.len() {
                return Err(bad(format!(
                    "tile ({x}, {y}) has {} values for {} columns",
                    row.len(),
                    self.columns.len()
                )));
            }
            out.push_str(&format!("{x},{y}"));
            for (c, v) in self.columns.iter().zip(row) {
                out.push(',');
                if v.is_infinite() {
                    return Err(bad(format!("tile ({x}, {y}): `{c}` is {v}")));
                }
                if !v.is_nan() {
                    // Rust's shortest representation reads back to the same f64.
                    out.push_str(&v.to_string());
                }
            }
            out.push('\n');
        }
        crate::track::atomic_write(&path, out.as_bytes())
    }

    /// Read `<dir>/latents.csv` and check it against the dataset's tiles: one row per tile,
    /// the same x, y in the same order. Errors name the file, the line and the column.
    pub fn read(dir: &Path, tiles: &[Tile]) -> Result<Latents> {
        let path = latents_path(dir);
        let err = |line: Option<u64>, m: String| Error::dataset(&path, line, m);
        let text = super::read_capped_string(&path, super::InputLimit::Dataset)
            .map_err(|m| err(None, m))?;
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes());
        let csv_error = |e: csv::Error| {
            let line = e.position().map(|p| p.line());
            err(line, format!("malformed CSV: {e}"))
        };
        let header: Vec<String> = rdr
            .headers()
            .map_err(csv_error)?
            .iter()
            .map(|s| s.trim().to_string())
            .collect();
        if header.len() < 2 || header[0] != "x" || header[1] != "y" {
            return Err(err(
                Some(1),
                format!(
                    "header is `{}`, expected `x,y` then the latent columns",
                    header.join(",")
                ),
            ));
        }
        let columns = header[2..].to_vec();
        check_column_names(&columns).map_err(|m| err(Some(1), m))?;
        let (mut xy, mut rows) = (Vec::with_capacity(tiles.len()), Vec::new());
        for rec in rdr.records() {
            let rec = rec.map_err(csv_error)?;
            let line = rec.position().map(|p| p.line());
            let k = xy.len();
            let Some(tile) = tiles.get(k) else {
                return Err(err(
                    line,
                    format!(
                        "row {} is one more than tiles.csv's {} tiles",
                        k + 1,
                        tiles.len()
                    ),
                ));
            };
            let coordinate = |i: usize, name: &str| -> Result<u32> {
                let raw = rec.get(i).unwrap_or("").trim();
                raw.parse().map_err(|_| {
                    err(
                        line,
                        format!("{name} `{raw}` is not a tile index (integer >= 0)"),
                    )
                })
            };
            let (x, y) = (coordinate(0, "x")?, coordinate(1, "y")?);
            if (x, y) != (tile.x, tile.y) {
                return Err(err(
                    line,
                    format!(
                        "tile ({x}, {y}), but row {} of tiles.csv is ({}, {}): latents.csv \
                         lists the tiles of tiles.csv in the same order",
                        k + 1,
                        tile.x,
                        tile.y
                    ),
                ));
            }
            let mut row = Vec::with_capacity(columns.len());
            for (c, name) in columns.iter().enumerate() {
                let raw = rec.get(c + 2).unwrap_or("").trim();
                let v = if raw.is_empty() {
                    f64::NAN
                } else {
                    raw.parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| {
                            err(
                                line,
                                format!(
                                    "column `{name}` is `{raw}`, expected a finite number or \
                                     an empty cell (not defined)"
                                ),
                            )
                        })?
                };
                row.push(v);
            }
            xy.push((x, y));
            rows.push(row);
        }
        if xy.len() != tiles.len() {
            return Err(err(
                None,
                format!(
                    "has {} rows, expected one per tile of tiles.csv ({})",
                    xy.len(),
                    tiles.len()
                ),
            ));
        }
        Ok(Latents { columns, xy, rows })
    }

    /// The values of column `name`, one per tile; None when the file has no such column.
    pub fn column(&self, name: &str) -> Option<Vec<f64>> {
        let c = self.columns.iter().position(|n| n == name)?;
        Some(self.rows.iter().map(|r| r[c]).collect())
    }

    /// The names of `wanted` that this file holds, in `wanted`'s order.
    pub fn present<'a>(&self, wanted: &[&'a str]) -> Vec<&'a str> {
        wanted
            .iter()
            .copied()
            .filter(|w| self.columns.iter().any(|c| c == w))
            .collect()
    }
}

/// Column names must be non-empty, unique and not `x` or `y`.
fn check_column_names(columns: &[String]) -> std::result::Result<(), String> {
    let mut seen = HashSet::new();
    for c in columns {
        if c.is_empty() || c == "x" || c == "y" {
            return Err(format!(
                "column name `{c}` is empty or repeats x or y, expected a latent's name"
            ));
        }
        if !seen.insert(c.as_str()) {
            return Err(format!("column `{c}` appears twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiles() -> Vec<Tile> {
        [(3, 4, 1.0), (4, 4, 0.0), (3, 5, 2.5)]
            .iter()
            .map(|&(x, y, emission)| Tile { x, y, emission })
            .collect()
    }

    fn sample() -> Latents {
        Latents {
            columns: vec!["floor_office_m2".into(), LOG_EMISSION_PHYSICAL.into()],
            xy: vec![(3, 4), (4, 4), (3, 5)],
            rows: vec![
                vec![120.5, 0.0],
                vec![0.1 + 0.2, f64::NAN],
                vec![1e-300, 0.9162907318741551],
            ],
        }
    }

    /// Bit-for-bit equality, NaN included.
    fn same(a: &Latents, b: &Latents) -> bool {
        a.columns == b.columns
            && a.xy == b.xy
            && a.rows.len() == b.rows.len()
            && a.rows.iter().zip(&b.rows).all(|(r, s)| {
                r.len() == s.len() && r.iter().zip(s).all(|(u, v)| u.to_bits() == v.to_bits())
            })
    }

    #[test]
    fn the_column_groups_are_pinned() {
        assert_eq!(
            ORACLE_VISIBLE,
            [
                "floor_residential_m2",
                "floor_retail_m2",
                "floor_office_m2",
                "floor_industry_m2",
                "floor_warehouse_m2",
                "floor_education_m2",
                "traffic_motorway_vkm",
                "traffic_arterial_vkm",
                "traffic_collector_vkm",
                "traffic_local_vkm",
                "facility_plant_mw",
                "facility_process_mw",
                "share_water",
                "share_park",
                "share_farmland",
                "share_residential",
                "share_commercial",
                "share_industrial",
                "share_road",
                "density_residential",
                "density_commercial",
                "plant_visible",
            ]
        );
        let union: Vec<&str> = VISIBLE_V6.iter().chain(VISIBLE_V5).copied().collect();
        assert_eq!(ORACLE_VISIBLE, union.as_slice());
        for name in ORACLE_VISIBLE {
            assert!(
                !name.starts_with(ACQ_PREFIX)
                    && !name.starts_with(HIDDEN_PREFIX)
                    && !name.contains("log_emission")
                    && !name.contains("emission"),
                "{name} may not be visible to the oracle"
            );
        }
        let nuisance: Vec<&str> = NUISANCE_V6.iter().chain(NUISANCE_V5).copied().collect();
        assert_eq!(NUISANCE_PARAMETERS, nuisance.as_slice());
        assert!(NUISANCE_PARAMETERS
            .iter()
            .all(|n| n.starts_with(ACQ_PREFIX) && *n != ACQ_STRIP));
        assert!(HIDDEN_V6
            .iter()
            .chain(HIDDEN_V5)
            .all(|n| n.starts_with(HIDDEN_PREFIX)));
        let all: Vec<&str> = ORACLE_VISIBLE
            .iter()
            .chain(NUISANCE_PARAMETERS)
            .chain(HIDDEN_V6)
            .chain(HIDDEN_V5)
            .chain(&[ACQ_STRIP, LOG_EMISSION_PHYSICAL, LOG_EMISSION_PRE_ERROR])
            .copied()
            .collect();
        assert_eq!(
            all.iter().collect::<HashSet<_>>().len(),
            all.len(),
            "no name is in two groups"
        );
    }

    #[test]
    fn write_then_read_gives_the_same_values() {
        let dir = tempfile::tempdir().unwrap();
        let l = sample();
        l.write(dir.path()).unwrap();
        let text = std::fs::read_to_string(latents_path(dir.path())).unwrap();
        assert_eq!(
            text.lines().nth(2).unwrap(),
            "4,4,0.30000000000000004,",
            "NaN is an empty cell"
        );
        let back = Latents::read(dir.path(), &tiles()).unwrap();
        assert!(same(&back, &l), "{back:?}");
        assert_eq!(back.column("floor_office_m2").unwrap()[0], 120.5);
        assert!(back.column("floor_retail_m2").is_none());
        assert_eq!(
            back.present(ORACLE_VISIBLE),
            ["floor_office_m2"],
            "only the visible columns the file holds"
        );
        // Nothing is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_refuses_what_it_could_not_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = sample();
        l.rows[1][0] = f64::INFINITY;
        assert!(l.write(dir.path()).is_err());
        let mut l = sample();
        l.rows[2].pop();
        assert!(l.write(dir.path()).is_err());
        let mut l = sample();
        l.columns[1] = "floor_office_m2".into();
        assert!(l.write(dir.path()).is_err());
        assert!(!latents_path(dir.path()).exists());
    }

    /// Each bad file fails with the file, the line and what was expected.
    #[test]
    fn bad_files_are_named_with_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "x,y\n",
                "has 0 rows, expected one per tile of tiles.csv (3)",
            ),
            ("y,x,a\n", ":1: header is `y,x,a`, expected `x,y`"),
            ("x,y,a,a\n", ":1: column `a` appears twice"),
            (
                "x,y,a\n3,4,1\n3,5,1\n4,4,1\n",
                ":3: tile (3, 5), but row 2 of tiles.csv is (4, 4)",
            ),
            ("x,y,a\n3,4,1\n4,4,abc\n3,5,\n", ":3: column `a` is `abc`"),
            ("x,y,a\n3,4,1\n4,4,inf\n3,5,\n", ":3: column `a` is `inf`"),
            ("x,y,a\n3,4,1\n4,4,1\n", "has 2 rows, expected one per tile"),
            (
                "x,y,a\n3,4,1\n4,4,1\n3,5,1\n9,9,1\n",
                ":5: row 4 is one more than tiles.csv's 3 tiles",
            ),
            ("x,y,a\n3,4,1,7\n", ":2: malformed CSV"),
            ("x,y,a\n-3,4,1\n", ":2: x `-3` is not a tile index"),
        ];
        for (text, expected) in cases {
            std::fs::write(latents_path(dir.path()), text).unwrap();
            let e = Latents::read(dir.path(), &tiles()).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let msg = e.to_string();
            assert!(
                msg.contains("latents.csv") && msg.contains(expected),
                "{text:?}: {msg}"
            );
        }
        std::fs::remove_file(latents_path(dir.path())).unwrap();
        std::fs::create_dir(latents_path(dir.path())).unwrap();
        let e = Latents::read(dir.path(), &tiles()).unwrap_err().to_string();
        assert!(e.contains("is not a regular file"), "{e}");
    }
}
