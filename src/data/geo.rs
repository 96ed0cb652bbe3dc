//! Web Mercator slippy-map tile geometry, exactly as `dataset-format.md` defines it.

use std::f64::consts::PI;

/// Largest latitude Web Mercator can represent (the map is square).
pub const MAX_LAT: f64 = 85.051_128_779_806_59;

/// Continuous tile coordinates of a WGS84 point at `zoom`: the integer part is the tile index,
/// the fractional part the position inside the tile (0 = west / north edge).
pub fn lonlat_to_tile(lon: f64, lat: f64, zoom: u8) -> (f64, f64) {
    let n = (1u64 << zoom) as f64;
    let x = (lon + 180.0) / 360.0 * n;
    let phi = lat.to_radians();
    let y = (1.0 - phi.tan().asinh() / PI) / 2.0 * n;
    (x, y)
}

/// Longitude of the west edge of tile column `x` (fractional columns allowed).
pub fn tile_x_to_lon(x: f64, zoom: u8) -> f64 {
    let n = (1u64 << zoom) as f64;
    x / n * 360.0 - 180.0
}

/// Latitude of the north edge of tile row `y` (fractional rows allowed).
pub fn tile_y_to_lat(y: f64, zoom: u8) -> f64 {
    let n = (1u64 << zoom) as f64;
    (PI * (1.0 - 2.0 * y / n)).sinh().atan().to_degrees()
}

/// Ground area of one tile in km² (sphere of radius 6371.0088 km).
pub fn tile_area_km2(x: u32, y: u32, zoom: u8) -> f64 {
    const R: f64 = 6371.0088;
    let west = tile_x_to_lon(x as f64, zoom).to_radians();
    let east = tile_x_to_lon(x as f64 + 1.0, zoom).to_radians();
    let north = tile_y_to_lat(y as f64, zoom).to_radians();
    let south = tile_y_to_lat(y as f64 + 1.0, zoom).to_radians();
    R * R * (east - west) * (north.sin() - south.sin())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_of_tile_edges() {
        for &(lon, lat) in &[
            (-0.1276, 51.5072),
            (116.4074, 39.9042),
            (9.52, 47.14),
            (-70.0, -33.0),
        ] {
            let (x, y) = lonlat_to_tile(lon, lat, 15);
            assert!((tile_x_to_lon(x, 15) - lon).abs() < 1e-9);
            assert!((tile_y_to_lat(y, 15) - lat).abs() < 1e-9);
        }
    }

    #[test]
    fn known_tile_of_london() {
        // Trafalgar Square at zoom 15 is tile (16372, 10896) on OpenStreetMap.
        let (x, y) = lonlat_to_tile(-0.1281, 51.5080, 15);
        assert_eq!((x.floor() as u32, y.floor() as u32), (16372, 10896));
    }

    #[test]
    fn tile_area_shrinks_towards_the_poles() {
        let (_, y_eq) = lonlat_to_tile(0.0, 0.0, 15);
        let (_, y_ld) = lonlat_to_tile(0.0, 51.5, 15);
        let eq = tile_area_km2(0, y_eq as u32, 15);
        let ld = tile_area_km2(0, y_ld as u32, 15);
        assert!((eq - 1.494).abs() < 0.01, "equator tile {eq}");
        assert!((ld / eq - 51.5f64.to_radians().cos().powi(2)).abs() < 0.01);
    }
}
