//! North-up GeoTIFF rasters in geographic coordinates (EPSG:4326), such as ODIAC's monthly
//! emission files, read with the pure-Rust `tiff` crate: one band of 32- or 64-bit floats (or
//! integers), any compression, predictor, strip or tile layout the crate decodes. The grid
//! comes from ModelPixelScale + ModelTiepoint; nodata from GDAL's GDAL_NODATA tag (42113).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::tags::Tag;

use crate::error::{Error, Result};

const MODEL_PIXEL_SCALE: u16 = 33550;
const MODEL_TIEPOINT: u16 = 33922;
const MODEL_TRANSFORMATION: u16 = 34264;
const GEO_KEY_DIRECTORY: u16 = 34735;
const GDAL_NODATA: u16 = 42113;
/// GeoKeys: raster type (1 PixelIsArea, 2 PixelIsPoint), geographic CRS code.
const GT_RASTER_TYPE: u16 = 1025;
const GEOGRAPHIC_TYPE: u16 = 2048;
const PROJECTED_CS_TYPE: u16 = 3072;

/// A raster on a regular lon/lat grid: cell (row i, column j) spans lon
/// [west + j·dx, west + (j+1)·dx] and lat [north − (i+1)·dy, north − i·dy].
#[derive(Debug, Clone)]
pub struct GeoRaster {
    pub width: usize,
    pub height: usize,
    pub west: f64,
    pub north: f64,
    pub dx: f64,
    pub dy: f64,
    /// Row-major, widened to f64.
    pub values: Vec<f64>,
    pub nodata: Option<f64>,
}

impl GeoRaster {
    /// The value of a cell, or None for nodata (the nodata value, or any NaN).
    pub fn value(&self, row: usize, col: usize) -> Option<f64> {
        let v = self.values[row * self.width + col];
        if v.is_nan() || self.nodata.is_some_and(|n| v == n) {
            None
        } else {
            Some(v)
        }
    }

    pub fn east(&self) -> f64 {
        self.west + self.width as f64 * self.dx
    }

    pub fn south(&self) -> f64 {
        self.north - self.height as f64 * self.dy
    }

    /// Sum of the valid cells.
    pub fn total(&self) -> f64 {
        (0..self.height)
            .flat_map(|i| (0..self.width).map(move |j| (i, j)))
            .filter_map(|(i, j)| self.value(i, j))
            .sum()
    }
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::dataset(path, None, message.into())
}

/// GeoKey value of `key`, if the directory has it as a short.
fn geo_key(directory: &[u16], key: u16) -> Option<u16> {
    // Header of 4 shorts, then (key, location, count, value) per key; location 0 = inline.
    directory
        .get(4..)?
        .chunks_exact(4)
        .find(|k| k[0] == key && k[1] == 0)
        .map(|k| k[3])
}

pub fn read_geotiff(path: &Path) -> Result<GeoRaster> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut dec = Decoder::new(BufReader::new(file))
        .map_err(|e| bad(path, format!("not a readable TIFF: {e}")))?
        .with_limits(Limits::unlimited());
    let tiff_err = |e: tiff::TiffError| bad(path, e.to_string());
    let (w, h) = dec.dimensions().map_err(tiff_err)?;
    let samples = dec
        .find_tag_unsigned::<u16>(Tag::SamplesPerPixel)
        .map_err(tiff_err)?
        .unwrap_or(1);
    if samples != 1 {
        return Err(bad(
            path,
            format!("has {samples} bands per pixel, expected one (an emission grid)"),
        ));
    }
    if dec
        .find_tag(Tag::Unknown(MODEL_TRANSFORMATION))
        .map_err(tiff_err)?
        .is_some()
    {
        return Err(bad(
            path,
            "is georeferenced by a ModelTransformation matrix (rotated or sheared); expected a north-up grid (ModelPixelScale + ModelTiepoint)",
        ));
    }
    let scale = dec
        .find_tag(Tag::Unknown(MODEL_PIXEL_SCALE))
        .map_err(tiff_err)?
        .ok_or_else(|| bad(path, "has no ModelPixelScale tag: not a GeoTIFF"))?
        .into_f64_vec()
        .map_err(tiff_err)?;
    let tie = dec
        .find_tag(Tag::Unknown(MODEL_TIEPOINT))
        .map_err(tiff_err)?
        .ok_or_else(|| bad(path, "has no ModelTiepoint tag: not a GeoTIFF"))?
        .into_f64_vec()
        .map_err(tiff_err)?;
    if scale.len() < 2 || tie.len() < 6 {
        return Err(bad(
            path,
            "has malformed ModelPixelScale / ModelTiepoint tags",
        ));
    }
    let keys: Vec<u16> = match dec
        .find_tag(Tag::Unknown(GEO_KEY_DIRECTORY))
        .map_err(tiff_err)?
    {
        Some(v) => v.into_u16_vec().map_err(tiff_err)?,
        None => Vec::new(),
    };
    if geo_key(&keys, PROJECTED_CS_TYPE).is_some() {
        return Err(bad(
            path,
            "is in a projected coordinate system; expected geographic lon/lat (EPSG:4326, as ODIAC)",
        ));
    }
    if let Some(code) = geo_key(&keys, GEOGRAPHIC_TYPE) {
        if code != 4326 && code != 32767 {
            return Err(bad(
                path,
                format!("is in geographic CRS EPSG:{code}; expected EPSG:4326 (WGS 84)"),
            ));
        }
    }
    let (dx, dy) = (scale[0], scale[1]);
    if !(dx > 0.0 && dy > 0.0) {
        return Err(bad(
            path,
            format!("has pixel scale ({dx}, {dy}); expected positive (north-up)"),
        ));
    }
    // The tiepoint maps raster point (I, J) to (lon, lat). PixelIsPoint rasters place it at
    // the cell centre: shift by half a cell to get the corner.
    let half = if geo_key(&keys, GT_RASTER_TYPE) == Some(2) {
        0.5
    } else {
        0.0
    };
    let west = tie[3] - (tie[0] + half) * dx;
    let north = tie[4] + (tie[1] + half) * dy;
    if !(-180.0 - 1e-9..=180.0 + 1e-9).contains(&west)
        || !(-90.0 - 1e-9..=90.0 + 1e-9).contains(&north)
    {
        return Err(bad(
            path,
            format!("origin ({west}, {north}) is not a lon/lat position; expected EPSG:4326"),
        ));
    }
    let nodata = match dec.find_tag(Tag::Unknown(GDAL_NODATA)).map_err(tiff_err)? {
        Some(v) => {
            let text = v.into_string().map_err(tiff_err)?;
            let text = text.trim_matches(char::from(0)).trim();
            Some(
                text.parse::<f64>()
                    .map_err(|_| bad(path, format!("GDAL_NODATA `{text}` is not a number")))?,
            )
        }
        None => None,
    };
    let values: Vec<f64> = match dec.read_image().map_err(tiff_err)? {
        DecodingResult::F32(v) => v.into_iter().map(f64::from).collect(),
        DecodingResult::F64(v) => v,
        DecodingResult::U8(v) => v.into_iter().map(f64::from).collect(),
        DecodingResult::U16(v) => v.into_iter().map(f64::from).collect(),
        DecodingResult::U32(v) => v.into_iter().map(f64::from).collect(),
        DecodingResult::I16(v) => v.into_iter().map(f64::from).collect(),
        DecodingResult::I32(v) => v.into_iter().map(f64::from).collect(),
        _ => {
            return Err(bad(
                path,
                "has a sample type this importer does not read (expected float or integer)",
            ))
        }
    };
    let (width, height) = (w as usize, h as usize);
    if values.len() != width * height {
        return Err(bad(
            path,
            format!(
                "decoded {} values for a {width}×{height} grid",
                values.len()
            ),
        ));
    }
    Ok(GeoRaster {
        width,
        height,
        west,
        north,
        dx,
        dy,
        values,
        nodata: nodata.filter(|n| !n.is_nan()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/geotiff")
            .join(name)
    }

    #[test]
    fn every_layout_decodes_to_the_same_grid() {
        let reference = read_geotiff(&fixture("odiac_strip_none.tif")).unwrap();
        assert_eq!((reference.width, reference.height), (20, 18));
        assert!((reference.west - 9.5).abs() < 1e-12 && (reference.north - 47.15).abs() < 1e-12);
        assert!((reference.dx - 1.0 / 120.0).abs() < 1e-15);
        let valid = |r: &GeoRaster| -> Vec<Option<f64>> {
            (0..r.height)
                .flat_map(|i| (0..r.width).map(move |j| (i, j)))
                .map(|(i, j)| r.value(i, j))
                .collect()
        };
        let want = valid(&reference);
        assert_eq!(want.iter().filter(|v| v.is_none()).count(), 12);
        for name in [
            "odiac_strip_deflate.tif",
            "odiac_strip_lzw.tif",
            "odiac_tiled16_deflate.tif",
            "odiac_strip_deflate_pred3.tif",
            "odiac_strip_lzw_pred2.tif",
            "odiac_strip_none_bigendian.tif",
            "odiac_strip_none_planar2.tif",
            "odiac_nan_nodata.tif",
            "odiac_month01.tif",
        ] {
            let r = read_geotiff(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(valid(&r), want, "{name}");
        }
    }

    #[test]
    fn a_file_that_is_not_a_geotiff_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.tif");
        std::fs::write(&p, b"not a tiff").unwrap();
        let e = read_geotiff(&p).unwrap_err().to_string();
        assert!(e.contains("x.tif") && e.contains("TIFF"), "{e}");
    }
}
