//! Per-tile emission from a lon/lat raster (the import rule of dataset-format.md): each valid
//! cell's value is spread uniformly over its area on the sphere, so a tile receives
//! value · (longitude overlap fraction) · (overlap fraction in sin(lat)) from every cell it
//! overlaps, and the total over a region that covers the raster equals the raster's total.

use std::f64::consts::PI;

use super::geotiff::GeoRaster;
use crate::data::geo::lonlat_to_tile;

/// An inclusive rectangle of slippy-map tiles at one zoom level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRange {
    pub zoom: u8,
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

impl TileRange {
    /// The tiles of a lon/lat box: from the tile of the north-west corner to the tile of the
    /// south-east corner.
    pub fn of_bbox(west: f64, south: f64, east: f64, north: f64, zoom: u8) -> TileRange {
        let (x0, y0) = lonlat_to_tile(west, north, zoom);
        let (x1, y1) = lonlat_to_tile(east, south, zoom);
        let last = (1u64 << zoom) as f64 - 1.0;
        let clamp = |v: f64| v.floor().clamp(0.0, last) as u32;
        TileRange {
            zoom,
            x0: clamp(x0),
            y0: clamp(y0),
            x1: clamp(x1),
            y1: clamp(y1),
        }
    }

    /// Every tile that overlaps the raster's extent with positive area.
    pub fn covering(r: &GeoRaster, zoom: u8) -> TileRange {
        let (x0, y0) = lonlat_to_tile(r.west, r.north, zoom);
        let (x1, y1) = lonlat_to_tile(r.east(), r.south(), zoom);
        let last = (1u64 << zoom) as f64 - 1.0;
        let lo = |v: f64| v.floor().clamp(0.0, last) as u32;
        let hi = |v: f64| (v.ceil() - 1.0).clamp(0.0, last) as u32;
        TileRange {
            zoom,
            x0: lo(x0),
            y0: lo(y0),
            x1: hi(x1),
            y1: hi(y1),
        }
    }

    pub fn intersect(&self, o: &TileRange) -> Option<TileRange> {
        let r = TileRange {
            zoom: self.zoom,
            x0: self.x0.max(o.x0),
            y0: self.y0.max(o.y0),
            x1: self.x1.min(o.x1),
            y1: self.y1.min(o.y1),
        };
        (r.x0 <= r.x1 && r.y0 <= r.y1).then_some(r)
    }

    pub fn contains(&self, x: u32, y: u32) -> bool {
        (self.x0..=self.x1).contains(&x) && (self.y0..=self.y1).contains(&y)
    }

    pub fn width(&self) -> usize {
        (self.x1 - self.x0 + 1) as usize
    }

    pub fn len(&self) -> usize {
        self.width() * (self.y1 - self.y0 + 1) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tiles, north to south, west to east.
    pub fn tiles(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        (self.y0..=self.y1).flat_map(move |y| (self.x0..=self.x1).map(move |x| (x, y)))
    }

    /// Position of (x, y) in `tiles()`.
    pub fn index(&self, x: u32, y: u32) -> usize {
        (y - self.y0) as usize * self.width() + (x - self.x0) as usize
    }
}

/// For an interval [a, b] of a coordinate and tile edges e(k) (increasing in k over
/// `first..=last`), the tiles k with positive overlap and the overlap's share of [a, b].
fn overlaps(a: f64, b: f64, first: i64, last: i64, edge: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
    (first..=last)
        .filter_map(|k| {
            let lo = a.max(edge(k));
            let hi = b.min(edge(k + 1));
            (hi > lo).then(|| (k, (hi - lo) / (b - a)))
        })
        .collect()
}

/// Emission of every tile of `range` (row-major over `range.tiles()`, zero where no valid
/// cell overlaps), and the part of the raster's total that falls outside `range`.
pub fn tile_emissions(r: &GeoRaster, range: &TileRange) -> (Vec<f64>, f64) {
    let zoom = range.zoom;
    let n = (1u64 << zoom) as f64;
    let lon_edge = |x: i64| x as f64 / n * 360.0 - 180.0;
    // sin of a tile's north edge: sin(atan(sinh(t))) = tanh(t), t = π(1 − 2y/n).
    let sin_edge = |y: i64| (PI * (1.0 - 2.0 * y as f64 / n)).tanh();
    // Tile columns per cell column, tile rows per cell row (only those inside the range).
    let cols: Vec<Vec<(usize, f64)>> = (0..r.width)
        .map(|j| {
            let (w, e) = (r.west + j as f64 * r.dx, r.west + (j + 1) as f64 * r.dx);
            let (tx0, _) = lonlat_to_tile(w, 0.0, zoom);
            let (tx1, _) = lonlat_to_tile(e, 0.0, zoom);
            overlaps(w, e, tx0.floor() as i64, tx1.ceil() as i64, lon_edge)
                .into_iter()
                .filter(|&(x, _)| x >= range.x0 as i64 && x <= range.x1 as i64)
                .map(|(x, f)| ((x - range.x0 as i64) as usize, f))
                .collect()
        })
        .collect();
    let rows: Vec<Vec<(usize, f64)>> = (0..r.height)
        .map(|i| {
            let (north, south) = (r.north - i as f64 * r.dy, r.north - (i + 1) as f64 * r.dy);
            let (_, ty0) = lonlat_to_tile(0.0, north, zoom);
            let (_, ty1) = lonlat_to_tile(0.0, south, zoom);
            let (s_lo, s_hi) = (south.to_radians().sin(), north.to_radians().sin());
            // Tile rows run north to south, so sin(lat) decreases with y: overlap on the
            // negated axis keeps the helper's increasing-edge convention.
            overlaps(-s_hi, -s_lo, ty0.floor() as i64, ty1.ceil() as i64, |y| {
                -sin_edge(y)
            })
            .into_iter()
            .filter(|&(y, _)| y >= range.y0 as i64 && y <= range.y1 as i64)
            .map(|(y, f)| ((y - range.y0 as i64) as usize, f))
            .collect()
        })
        .collect();
    let mut out = vec![0.0f64; range.len()];
    let mut outside = 0.0;
    for (i, row_tiles) in rows.iter().enumerate() {
        for (j, col_tiles) in cols.iter().enumerate() {
            let Some(v) = r.value(i, j) else {
                continue;
            };
            let mut placed = 0.0;
            for &(ty, fy) in row_tiles {
                for &(tx, fx) in col_tiles {
                    out[ty * range.width() + tx] += v * fx * fy;
                    placed += fx * fy;
                }
            }
            outside += v * (1.0 - placed);
        }
    }
    (out, outside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::import::geotiff::read_geotiff;
    use std::path::Path;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/geotiff")
            .join(name)
    }

    fn expected(name: &str) -> Vec<(u32, u32, f64)> {
        std::fs::read_to_string(fixture(name))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let c: Vec<&str> = l.split(',').collect();
                (
                    c[0].parse().unwrap(),
                    c[1].parse().unwrap(),
                    c[2].parse().unwrap(),
                )
            })
            .collect()
    }

    fn assert_matches(got: &[f64], range: &TileRange, want: &[(u32, u32, f64)]) {
        assert_eq!(got.len(), want.len());
        for &(x, y, e) in want {
            let g = got[range.index(x, y)];
            if e == 0.0 {
                assert_eq!(g, 0.0, "tile {x},{y}");
            } else {
                assert!(
                    (g - e).abs() <= 1e-9 * e.abs().max(1.0),
                    "tile {x},{y}: {g} vs {e}"
                );
            }
        }
    }

    /// rasterio-written fixture, expected values from an independent Python computation
    /// (scripts/make_import_fixtures.py).
    #[test]
    fn per_tile_sums_match_the_python_oracle_and_conserve_the_total() {
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap())
                .unwrap();
        let r = read_geotiff(&fixture("odiac_strip_deflate.tif")).unwrap();
        let range = TileRange::covering(&r, 15);
        assert_eq!(
            (range.x0, range.x1, range.y0, range.y1),
            (17248, 17263, 11505, 11525)
        );
        let (tiles, outside) = tile_emissions(&r, &range);
        assert_matches(&tiles, &range, &expected("expected_z15.csv"));
        let total = meta["total_month01_tC"].as_f64().unwrap();
        let sum: f64 = tiles.iter().sum();
        assert!((sum - total).abs() < 1e-9 * total, "{sum} vs {total}");
        assert!(outside.abs() < 1e-9 * total);

        // A region: the box maps to the fixture's tile range; in + out = total.
        let b = &meta["region"]["bbox_lon_lat"];
        let f = |k: &str| b[k].as_f64().unwrap();
        let region = TileRange::of_bbox(f("min_lon"), f("min_lat"), f("max_lon"), f("max_lat"), 15);
        assert_eq!(
            (region.x0, region.x1, region.y0, region.y1),
            (17252, 17257, 11510, 11517)
        );
        let (inside, outside) = tile_emissions(&r, &region);
        assert_matches(&inside, &region, &expected("expected_z15_region.csv"));
        let want_in = meta["region"]["inside_month01_tC"].as_f64().unwrap();
        let got_in: f64 = inside.iter().sum();
        assert!(
            (got_in - want_in).abs() < 1e-9 * want_in,
            "{got_in} vs {want_in}"
        );
        assert!((got_in + outside - total).abs() < 1e-9 * total);
    }
}
