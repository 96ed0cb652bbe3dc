//! `opencarbon import`: a dataset in the format (dataset-format.md) from raw open data: an
//! emission raster (ODIAC-style GeoTIFFs, one or several months summed), a slippy-map tile
//! cache for the imagery and POIs from CSV files and/or OpenStreetMap extracts, over a region
//! given as a lon/lat box or a tile range. Tiles without imagery are reported by name and left
//! out (the format needs an image per tile); every POI dropped is counted by reason.

pub mod emissions;
pub mod geotiff;
pub mod pois;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use emissions::{tile_emissions, TileRange};
use pois::{PoiHarvest, PoiMapping};

use crate::data::format::{DatasetMeta, PoiRecord, TargetMeta, Tile, FORMAT_TAG};
use crate::data::geo::lonlat_to_tile;
use crate::data::CityDataset;
use crate::error::{Error, Result};

/// Carbon to CO2: molar masses 44 / 12.
pub const CARBON_TO_CO2: f64 = 44.0 / 12.0;

/// The area to import.
#[derive(Debug, Clone, Copy)]
pub enum Region {
    /// west, south, east, north in degrees.
    Bbox([f64; 4]),
    /// An inclusive tile range x0, y0, x1, y1 at the import's zoom.
    Tiles([u32; 4]),
}

/// Everything `import` needs.
#[derive(Debug, Clone)]
pub struct ImportSpec {
    pub out: PathBuf,
    pub name: String,
    pub zoom: u8,
    /// None: the tiles the emission rasters cover.
    pub region: Option<Region>,
    /// Emission rasters, summed tile by tile (e.g. the 12 monthly ODIAC files of a year).
    pub emissions: Vec<PathBuf>,
    /// Multiply by 44/12 (the rasters hold tonnes of carbon; the dataset tonnes of CO2).
    pub co2: bool,
    /// `target.unit` of the dataset; default from the files and `co2`.
    pub unit: Option<String>,
    /// Slippy-map tile cache `<dir>/<zoom>/<x>/<y>.png|jpg|jpeg`.
    pub images: PathBuf,
    pub pois_csv: Vec<PathBuf>,
    pub osm: Vec<PathBuf>,
    pub mapping: PathBuf,
    pub source: Option<String>,
}

/// What an import did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ImportSummary {
    pub tiles_in_region: usize,
    pub tiles_written: usize,
    /// Tiles of the region left out for lack of imagery, as "x,y".
    pub tiles_without_imagery: Vec<String>,
    pub emission_unit: String,
    pub emission_in_region: f64,
    pub emission_outside_region: f64,
    pub emission_on_tiles_without_imagery: f64,
    pub pois_kept: BTreeMap<String, usize>,
    pub pois_dropped: BTreeMap<String, usize>,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "tiles: {} in the region, {} written, {} without imagery",
            self.tiles_in_region,
            self.tiles_written,
            self.tiles_without_imagery.len()
        )?;
        if !self.tiles_without_imagery.is_empty() {
            let shown: Vec<&str> = self
                .tiles_without_imagery
                .iter()
                .take(8)
                .map(String::as_str)
                .collect();
            writeln!(
                f,
                "  without imagery (left out): {}{}",
                shown.join(" "),
                if self.tiles_without_imagery.len() > 8 {
                    " …"
                } else {
                    ""
                }
            )?;
        }
        writeln!(
            f,
            "emission ({}): {:.6e} in the region ({:.6e} of it on tiles without imagery), {:.6e} outside",
            self.emission_unit,
            self.emission_in_region,
            self.emission_on_tiles_without_imagery,
            self.emission_outside_region
        )?;
        let kept: usize = self.pois_kept.values().sum();
        let listed: Vec<String> = self
            .pois_kept
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(f, "POIs kept: {kept} ({})", listed.join(", "))?;
        let dropped: Vec<String> = self
            .pois_dropped
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        write!(
            f,
            "POIs dropped: {}",
            if dropped.is_empty() {
                "none".into()
            } else {
                dropped.join(", ")
            }
        )
    }
}

fn progress(step: &str) {
    crate::track::progress::info(&format!("import: {step}"));
}

/// Find the cached image of a tile.
fn cached_image(dir: &Path, zoom: u8, x: u32, y: u32) -> Option<PathBuf> {
    ["png", "jpg", "jpeg"]
        .iter()
        .map(|ext| {
            dir.join(zoom.to_string())
                .join(x.to_string())
                .join(format!("{y}.{ext}"))
        })
        .find(|p| p.is_file())
}

/// Decode an image file of the tile cache and re-encode it as an RGB PNG.
fn image_as_png(path: &Path) -> Result<Vec<u8>> {
    let img = image::open(path)
        .map_err(|e| Error::dataset(path, None, format!("not a readable image: {e}")))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    if w != h || w == 0 {
        return Err(Error::dataset(
            path,
            None,
            format!("is {w}×{h} px; slippy-map tiles are square"),
        ));
    }
    crate::data::raster::encode_png(img.as_raw(), w as usize, h as usize)
}

pub fn run(spec: &ImportSpec) -> Result<ImportSummary> {
    if spec.emissions.is_empty() {
        return Err(Error::Usage("give at least one --emissions raster".into()));
    }
    if !(1..=22).contains(&spec.zoom) {
        return Err(Error::Usage(format!(
            "--zoom {} is out of range 1..22",
            spec.zoom
        )));
    }
    crate::track::check_new_dir(&spec.out)?;
    let mut summary = ImportSummary::default();

    // Emissions: every raster over the region, summed per tile.
    let mut rasters = Vec::new();
    for p in &spec.emissions {
        progress(&format!("reading {}", p.display()));
        rasters.push(geotiff::read_geotiff(p)?);
    }
    let range = match spec.region {
        Some(Region::Bbox([w, s, e, n])) => {
            if !(w < e && s < n) {
                return Err(Error::Usage(format!(
                    "--bbox {w},{s},{e},{n}: expected west < east and south < north"
                )));
            }
            TileRange::of_bbox(w, s, e, n, spec.zoom)
        }
        Some(Region::Tiles([x0, y0, x1, y1])) => {
            if x0 > x1
                || y0 > y1
                || x1 as u64 >= 1u64 << spec.zoom
                || y1 as u64 >= 1u64 << spec.zoom
            {
                return Err(Error::Usage(format!(
                    "--tiles {x0},{y0},{x1},{y1}: expected x0 <= x1 and y0 <= y1 within zoom {}",
                    spec.zoom
                )));
            }
            TileRange {
                zoom: spec.zoom,
                x0,
                y0,
                x1,
                y1,
            }
        }
        None => rasters
            .iter()
            .map(|r| TileRange::covering(r, spec.zoom))
            .reduce(|a, b| TileRange {
                zoom: a.zoom,
                x0: a.x0.min(b.x0),
                y0: a.y0.min(b.y0),
                x1: a.x1.max(b.x1),
                y1: a.y1.max(b.y1),
            })
            .expect("at least one raster"),
    };
    let factor = if spec.co2 { CARBON_TO_CO2 } else { 1.0 };
    let mut emission = vec![0.0f64; range.len()];
    for (r, p) in rasters.iter().zip(&spec.emissions) {
        progress(&format!(
            "distributing {} over {} tiles",
            p.display(),
            range.len()
        ));
        let (tiles, outside) = tile_emissions(r, &range);
        for (e, v) in emission.iter_mut().zip(tiles) {
            *e += v * factor;
        }
        summary.emission_outside_region += outside * factor;
    }
    summary.tiles_in_region = range.len();
    summary.emission_in_region = emission.iter().sum();
    summary.emission_unit = spec.unit.clone().unwrap_or_else(|| {
        let mass = if spec.co2 { "t CO2" } else { "t C" };
        match spec.emissions.len() {
            1 => format!("{mass} per raster period (one file)"),
            n => format!("{mass} per {n} raster periods (files summed)"),
        }
    });

    // Imagery: tiles without an image are reported and left out.
    progress(&format!(
        "looking up {} tiles in {}",
        range.len(),
        spec.images.display()
    ));
    let mut tiles = Vec::new();
    let mut images = Vec::new();
    for (x, y) in range.tiles() {
        let e = emission[range.index(x, y)];
        match cached_image(&spec.images, spec.zoom, x, y) {
            Some(path) => {
                tiles.push(Tile { x, y, emission: e });
                images.push(path);
            }
            None => {
                summary.tiles_without_imagery.push(format!("{x},{y}"));
                summary.emission_on_tiles_without_imagery += e;
            }
        }
    }
    if tiles.is_empty() {
        return Err(Error::Usage(format!(
            "no tile of the region x {}..{}, y {}..{} at zoom {} has an image under {}",
            range.x0,
            range.x1,
            range.y0,
            range.y1,
            spec.zoom,
            spec.images.display()
        )));
    }

    // POIs.
    let mapping = PoiMapping::load(&spec.mapping)?;
    let mut harvest = PoiHarvest::default();
    for p in &spec.pois_csv {
        progress(&format!("reading POIs from {}", p.display()));
        merge(&mut harvest, pois::read_csv(p, &mapping)?);
    }
    for p in &spec.osm {
        progress(&format!("reading OpenStreetMap extract {}", p.display()));
        merge(&mut harvest, pois::read_osm(p, &mapping)?);
    }
    let written: std::collections::HashSet<(u32, u32)> = tiles.iter().map(|t| (t.x, t.y)).collect();
    let mut kept: Vec<PoiRecord> = Vec::new();
    for p in harvest.pois {
        let (tx, ty) = lonlat_to_tile(p.lon, p.lat, spec.zoom);
        let (tx, ty) = (tx.floor(), ty.floor());
        let inside = tx >= 0.0 && ty >= 0.0 && range.contains(tx as u32, ty as u32);
        if !inside {
            *harvest.dropped.entry("outside_region").or_default() += 1;
        } else if !written.contains(&(tx as u32, ty as u32)) {
            *harvest
                .dropped
                .entry("on_tile_without_imagery")
                .or_default() += 1;
        } else {
            *summary.pois_kept.entry(p.category.clone()).or_default() += 1;
            kept.push(p);
        }
    }
    summary.pois_dropped = harvest
        .dropped
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();

    let meta = DatasetMeta {
        format: FORMAT_TAG.into(),
        name: spec.name.clone(),
        zoom: spec.zoom,
        target: TargetMeta {
            name: if spec.co2 { "co2" } else { "carbon" }.into(),
            unit: summary.emission_unit.clone(),
        },
        poi_categories: mapping.categories.clone(),
        source: Some(spec.source.clone().unwrap_or_else(|| {
            let names = |v: &[PathBuf]| {
                v.iter()
                    .filter_map(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "opencarbon import: emissions {}; imagery {}; POIs {} {}",
                names(&spec.emissions),
                spec.images.display(),
                names(&spec.pois_csv),
                names(&spec.osm)
            )
        })),
    };
    progress(&format!(
        "writing {} tiles to {}",
        tiles.len(),
        spec.out.display()
    ));
    let step = (images.len() / 10).max(1);
    summary.tiles_written = tiles.len();
    // Written beside `out` and renamed into place once whole and valid: a killed or failed
    // import leaves nothing where the dataset was asked for.
    crate::track::write_dir_atomically(&spec.out, |dir| {
        CityDataset::write(dir, &meta, &tiles, &kept, |i| {
            if i > 0 && i % step == 0 {
                progress(&format!("  {i}/{} images", images.len()));
            }
            image_as_png(&images[i])
        })?;
        let report =
            serde_json::to_string_pretty(&summary).map_err(|e| Error::Internal(e.to_string()))?;
        crate::track::atomic_write(&dir.join("import_report.json"), report.as_bytes())?;
        // The result must read back as a valid dataset.
        CityDataset::open(dir).map(|_| ())
    })?;
    Ok(summary)
}

fn merge(into: &mut PoiHarvest, from: PoiHarvest) {
    into.pois.extend(from.pois);
    for (k, v) in from.dropped {
        *into.dropped.entry(k).or_default() += v;
    }
}
