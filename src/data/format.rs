//! Reader and writer of the city dataset format, version 1 (`dataset-format.md`).
//!
//! `CityDataset::open` accepts every valid dataset and rejects every invalid one with an error
//! that names the file, the line and what was expected. Images are only checked for presence
//! here; decoding happens in `raster`, with the same file-naming errors.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::geo;
use crate::error::{Error, Result};
use crate::track::atomic_write;

pub const FORMAT_TAG: &str = "opencarbon-city/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetMeta {
    pub name: String,
    pub unit: String,
}

/// The contents of `dataset.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetMeta {
    pub format: String,
    pub name: String,
    pub zoom: u8,
    pub target: TargetMeta,
    pub poi_categories: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One row of `tiles.csv`: a slippy-map tile and its raw (not logged) emission.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tile {
    pub x: u32,
    pub y: u32,
    pub emission: f64,
}

impl Tile {
    /// Only tiles with positive emission are targets: the models learn log(emission).
    pub fn is_target(&self) -> bool {
        self.emission > 0.0
    }
}

/// One POI, already assigned to the tile that contains it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Poi {
    pub lon: f64,
    pub lat: f64,
    pub category: u16,
    pub weight: f32,
    /// Index into `CityDataset::tiles`.
    pub tile: u32,
}

/// A POI as a data source produces it, before it is assigned to a tile.
#[derive(Debug, Clone, PartialEq)]
pub struct PoiRecord {
    pub lon: f64,
    pub lat: f64,
    pub category: String,
    pub weight: f32,
}

/// Which split a tile belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitPart {
    Train,
    Valid,
    Test,
}

impl SplitPart {
    pub const ALL: [SplitPart; 3] = [SplitPart::Train, SplitPart::Valid, SplitPart::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            SplitPart::Train => "train",
            SplitPart::Valid => "valid",
            SplitPart::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<SplitPart> {
        match s {
            "train" => Some(SplitPart::Train),
            "valid" => Some(SplitPart::Valid),
            "test" => Some(SplitPart::Test),
            _ => None,
        }
    }
}

/// A validated dataset in memory (everything but the decoded images).
#[derive(Debug, Clone)]
pub struct CityDataset {
    pub root: PathBuf,
    pub meta: DatasetMeta,
    pub tiles: Vec<Tile>,
    pub pois: Vec<Poi>,
    /// Names of the files under `splits/`, without `.csv`.
    pub split_names: Vec<String>,
    /// Non-fatal findings (extra images, POIs outside every tile), for the log.
    pub warnings: Vec<String>,
    index: HashMap<(u32, u32), usize>,
}

fn line_of(record: &csv::StringRecord) -> Option<u64> {
    record.position().map(|p| p.line())
}

fn csv_error(file: &Path, e: csv::Error) -> Error {
    let line = e.position().map(|p| p.line());
    Error::dataset(file, line, format!("malformed CSV: {e}"))
}

/// Open a CSV file and check that its header is one of `allowed` (exact column names and order).
fn open_csv(file: &Path, allowed: &[&[&str]]) -> Result<(csv::Reader<fs::File>, usize)> {
    super::check_dataset_input(file)?;
    let f = fs::File::open(file)
        .map_err(|e| Error::dataset(file, None, format!("cannot read: {e}")))?;
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(f);
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| csv_error(file, e))?
        .iter()
        .map(|s| s.trim().to_string())
        .collect();
    for (i, cols) in allowed.iter().enumerate() {
        if header.len() == cols.len() && header.iter().zip(cols.iter()).all(|(a, b)| a == b) {
            return Ok((rdr, i));
        }
    }
    let expected: Vec<String> = allowed
        .iter()
        .map(|c| format!("`{}`", c.join(",")))
        .collect();
    Err(Error::dataset(
        file,
        Some(1),
        format!(
            "header is `{}`, expected {}",
            header.join(","),
            expected.join(" or ")
        ),
    ))
}

fn parse_field<T: std::str::FromStr>(
    file: &Path,
    record: &csv::StringRecord,
    col: usize,
    name: &str,
    what: &str,
) -> Result<T> {
    let raw = record.get(col).unwrap_or("").trim();
    raw.parse::<T>().map_err(|_| {
        Error::dataset(
            file,
            line_of(record),
            format!("{name} `{raw}` is not {what}"),
        )
    })
}

fn parse_nonneg_finite(
    file: &Path,
    record: &csv::StringRecord,
    col: usize,
    name: &str,
) -> Result<f64> {
    let v: f64 = parse_field(file, record, col, name, "a number")?;
    if !v.is_finite() || v < 0.0 {
        return Err(Error::dataset(
            file,
            line_of(record),
            format!("{name} is {v}, expected a finite number >= 0"),
        ));
    }
    Ok(v)
}

fn validate_meta(file: &Path, meta: &DatasetMeta) -> Result<()> {
    let bad =
        |field: &str, msg: String| Error::dataset(file, None, format!("field `{field}`: {msg}"));
    if meta.format != FORMAT_TAG {
        return Err(bad(
            "format",
            format!("is `{}`, expected `{FORMAT_TAG}`", meta.format),
        ));
    }
    if meta.name.is_empty()
        || !meta
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(bad(
            "name",
            format!("is `{}`, expected [a-z0-9_-]+", meta.name),
        ));
    }
    if !(1..=22).contains(&meta.zoom) {
        return Err(bad("zoom", format!("is {}, expected 1..22", meta.zoom)));
    }
    if meta.poi_categories.is_empty() {
        return Err(bad(
            "poi_categories",
            "is empty, expected at least one category".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for c in &meta.poi_categories {
        if c.is_empty() || !seen.insert(c.as_str()) {
            return Err(bad(
                "poi_categories",
                format!("category `{c}` is empty or repeated"),
            ));
        }
    }
    if meta.poi_categories.len() > u16::MAX as usize {
        return Err(bad("poi_categories", "has too many categories".into()));
    }
    Ok(())
}

impl CityDataset {
    /// Read and validate a dataset directory.
    pub fn open(root: impl AsRef<Path>) -> Result<CityDataset> {
        let root = root.as_ref().to_path_buf();
        if !root.is_dir() {
            return Err(Error::dataset(&root, None, "is not a dataset directory"));
        }
        let meta_path = root.join("dataset.yaml");
        // dataset.yaml is a few lines; a megabyte is already far too much.
        let text = super::read_capped_string(&meta_path, super::InputLimit::Fixed(1 << 20))
            .map_err(|m| Error::dataset(&meta_path, None, m))?;
        let meta: DatasetMeta = serde_yaml::from_str(&text).map_err(|e| {
            let line = e.location().map(|l| l.line() as u64);
            Error::dataset(&meta_path, line, e.to_string())
        })?;
        validate_meta(&meta_path, &meta)?;

        let tiles_path = root.join("tiles.csv");
        let tiles = read_tiles(&tiles_path, meta.zoom)?;
        let index: HashMap<(u32, u32), usize> = tiles
            .iter()
            .enumerate()
            .map(|(i, t)| ((t.x, t.y), i))
            .collect();

        let mut warnings = Vec::new();
        let images_dir = root.join("images");
        let mut missing = Vec::new();
        for t in &tiles {
            let path = image_path(&root, t.x, t.y);
            if std::fs::symlink_metadata(&path).is_err() {
                missing.push(format!("{}_{}.png", t.x, t.y));
            } else {
                // There is something by that name: a directory, a device, a dangling link are
                // named as what they are, not as a missing image.
                super::check_dataset_input(&path)?;
            }
        }
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(3).map(|s| s.as_str()).collect();
            return Err(Error::dataset(
                &images_dir,
                None,
                format!(
                    "{} tile(s) of tiles.csv have no image (e.g. {})",
                    missing.len(),
                    shown.join(", ")
                ),
            ));
        }
        let extra = count_extra_images(&images_dir, &index)?;
        if extra > 0 {
            warnings.push(format!(
                "{}: {extra} image(s) have no row in tiles.csv and are ignored",
                images_dir.display()
            ));
        }

        let pois_path = root.join("pois.csv");
        let (pois, outside) = read_pois(&pois_path, &meta, &index)?;
        if outside > 0 {
            warnings.push(format!(
                "{}: {outside} POI(s) fall outside every listed tile and are ignored",
                pois_path.display()
            ));
        }

        let split_names = list_splits(&root, &index)?;
        Ok(CityDataset {
            root,
            meta,
            tiles,
            pois,
            split_names,
            warnings,
            index,
        })
    }

    pub fn name(&self) -> &str {
        &self.meta.name
    }

    pub fn tile_index(&self, x: u32, y: u32) -> Option<usize> {
        self.index.get(&(x, y)).copied()
    }

    pub fn image_path(&self, tile: usize) -> PathBuf {
        let t = self.tiles[tile];
        image_path(&self.root, t.x, t.y)
    }

    /// Read `splits/<name>.csv`: the part of every tile it lists.
    pub fn read_split(&self, name: &str) -> Result<HashMap<usize, SplitPart>> {
        read_split_file(
            &self.root.join("splits").join(format!("{name}.csv")),
            &self.index,
        )
    }

    /// Write a dataset directory. `image_png(i)` returns the encoded PNG of tile `i`.
    pub fn write(
        root: &Path,
        meta: &DatasetMeta,
        tiles: &[Tile],
        pois: &[PoiRecord],
        mut image_png: impl FnMut(usize) -> Result<Vec<u8>>,
    ) -> Result<()> {
        validate_meta(&root.join("dataset.yaml"), meta)?;
        let images = root.join("images");
        fs::create_dir_all(&images).map_err(|e| Error::io(&images, e))?;
        let yaml = serde_yaml::to_string(meta).map_err(|e| Error::Internal(e.to_string()))?;
        atomic_write(&root.join("dataset.yaml"), yaml.as_bytes())?;

        let mut out = String::from("x,y,emission\n");
        for t in tiles {
            out.push_str(&format!("{},{},{}\n", t.x, t.y, t.emission));
        }
        atomic_write(&root.join("tiles.csv"), out.as_bytes())?;

        let weighted = pois.iter().any(|p| p.weight != 1.0);
        let mut out = String::from(if weighted {
            "lon,lat,category,weight\n"
        } else {
            "lon,lat,category\n"
        });
        for p in pois {
            if weighted {
                out.push_str(&format!(
                    "{:.7},{:.7},{},{}\n",
                    p.lon, p.lat, p.category, p.weight
                ));
            } else {
                out.push_str(&format!("{:.7},{:.7},{}\n", p.lon, p.lat, p.category));
            }
        }
        atomic_write(&root.join("pois.csv"), out.as_bytes())?;

        for (i, t) in tiles.iter().enumerate() {
            let png = image_png(i)?;
            atomic_write(&image_path(root, t.x, t.y), &png)?;
        }
        Ok(())
    }
}

pub fn image_path(root: &Path, x: u32, y: u32) -> PathBuf {
    root.join("images").join(format!("{x}_{y}.png"))
}

fn read_tiles(file: &Path, zoom: u8) -> Result<Vec<Tile>> {
    let (mut rdr, _) = open_csv(file, &[&["x", "y", "emission"]])?;
    let n = 1u64 << zoom;
    let mut tiles = Vec::new();
    let mut seen: HashMap<(u32, u32), u64> = HashMap::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| csv_error(file, e))?;
        let line = line_of(&rec);
        let x: u32 = parse_field(file, &rec, 0, "x", "a tile index (integer >= 0)")?;
        let y: u32 = parse_field(file, &rec, 1, "y", "a tile index (integer >= 0)")?;
        if x as u64 >= n || y as u64 >= n {
            return Err(Error::dataset(
                file,
                line,
                format!("tile ({x}, {y}) is outside the zoom-{zoom} grid (0 <= x, y < {n})"),
            ));
        }
        let emission = parse_nonneg_finite(file, &rec, 2, "emission")?;
        if let Some(first) = seen.insert((x, y), line.unwrap_or(0)) {
            return Err(Error::dataset(
                file,
                line,
                format!("duplicate tile ({x}, {y}), first listed on line {first}"),
            ));
        }
        tiles.push(Tile { x, y, emission });
    }
    if tiles.is_empty() {
        return Err(Error::dataset(
            file,
            None,
            "has no tiles (a header only), expected at least one row",
        ));
    }
    Ok(tiles)
}

fn count_extra_images(dir: &Path, index: &HashMap<(u32, u32), usize>) -> Result<usize> {
    let mut extra = 0;
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let known = name
            .strip_suffix(".png")
            .and_then(|s| s.split_once('_'))
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
            .is_some_and(|k| index.contains_key(&k));
        if !known {
            extra += 1;
        }
    }
    Ok(extra)
}

fn read_pois(
    file: &Path,
    meta: &DatasetMeta,
    index: &HashMap<(u32, u32), usize>,
) -> Result<(Vec<Poi>, usize)> {
    let (mut rdr, variant) = open_csv(
        file,
        &[
            &["lon", "lat", "category"],
            &["lon", "lat", "category", "weight"],
        ],
    )?;
    let categories: HashMap<&str, u16> = meta
        .poi_categories
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as u16))
        .collect();
    let mut pois = Vec::new();
    let mut outside = 0;
    for rec in rdr.records() {
        let rec = rec.map_err(|e| csv_error(file, e))?;
        let line = line_of(&rec);
        let lon: f64 = parse_field(file, &rec, 0, "lon", "a longitude in degrees")?;
        let lat: f64 = parse_field(file, &rec, 1, "lat", "a latitude in degrees")?;
        if !(-180.0..=180.0).contains(&lon) || !(-geo::MAX_LAT..=geo::MAX_LAT).contains(&lat) {
            return Err(Error::dataset(
                file,
                line,
                format!("({lon}, {lat}) is not a WGS84 lon/lat inside the Web Mercator range"),
            ));
        }
        let cat = rec.get(2).unwrap_or("").trim();
        let category = *categories.get(cat).ok_or_else(|| {
            Error::dataset(
                file,
                line,
                format!(
                    "unknown POI category `{cat}`, expected one of dataset.yaml's poi_categories"
                ),
            )
        })?;
        let weight = if variant == 1 {
            parse_nonneg_finite(file, &rec, 3, "weight")? as f32
        } else {
            1.0
        };
        let (fx, fy) = geo::lonlat_to_tile(lon, lat, meta.zoom);
        match index.get(&(fx.floor() as u32, fy.floor() as u32)) {
            Some(&tile) if fx >= 0.0 && fy >= 0.0 => pois.push(Poi {
                lon,
                lat,
                category,
                weight,
                tile: tile as u32,
            }),
            _ => outside += 1,
        }
    }
    Ok((pois, outside))
}

fn list_splits(root: &Path, index: &HashMap<(u32, u32), usize>) -> Result<Vec<String>> {
    let dir = root.join("splits");
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "csv") {
            // Validate now so a bad split file is reported when the dataset is opened.
            read_split_file(&path, index)?;
            names.push(
                path.file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    names.sort();
    Ok(names)
}

fn read_split_file(
    file: &Path,
    index: &HashMap<(u32, u32), usize>,
) -> Result<HashMap<usize, SplitPart>> {
    let (mut rdr, _) = open_csv(file, &[&["x", "y", "split"]])?;
    let mut parts = HashMap::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| csv_error(file, e))?;
        let line = line_of(&rec);
        let x: u32 = parse_field(file, &rec, 0, "x", "a tile index (integer >= 0)")?;
        let y: u32 = parse_field(file, &rec, 1, "y", "a tile index (integer >= 0)")?;
        let raw = rec.get(2).unwrap_or("").trim();
        let part = SplitPart::parse(raw).ok_or_else(|| {
            Error::dataset(
                file,
                line,
                format!("split `{raw}` is not one of train, valid, test"),
            )
        })?;
        let tile = *index.get(&(x, y)).ok_or_else(|| {
            Error::dataset(
                file,
                line,
                format!("tile ({x}, {y}) is not a row of tiles.csv"),
            )
        })?;
        if parts.insert(tile, part).is_some() {
            return Err(Error::dataset(
                file,
                line,
                format!("tile ({x}, {y}) is listed twice"),
            ));
        }
    }
    Ok(parts)
}

/// A sorted list of (relative path, file size) pairs plus a content hash of the small files;
/// used as the cache key of everything derived from a dataset.
pub fn content_fingerprint(ds: &CityDataset) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for name in ["dataset.yaml", "tiles.csv", "pois.csv"] {
        let p = ds.root.join(name);
        h.update(name.as_bytes());
        h.update(fs::read(&p).map_err(|e| Error::io(&p, e))?);
    }
    for i in 0..ds.tiles.len() {
        let p = ds.image_path(i);
        h.update(fs::read(&p).map_err(|e| Error::io(&p, e))?);
    }
    let mut splits: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for s in &ds.split_names {
        let p = ds.root.join("splits").join(format!("{s}.csv"));
        splits.insert(s.clone(), fs::read(&p).map_err(|e| Error::io(&p, e))?);
    }
    for (k, v) in splits {
        h.update(k.as_bytes());
        h.update(v);
    }
    Ok(hex(&h.finalize()[..12]))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
