//! Handcrafted per-tile features for the classical baselines: log POI counts per category,
//! colour and texture statistics of the image, and the same averaged over the 3×3
//! neighbourhood (present tiles only, from the queen-contiguity `TileGraph`).

use super::graph::TileGraph;
use super::raster::{ImageStack, PoiRaster};

/// A row-major feature matrix with named columns.
#[derive(Debug, Clone)]
pub struct FeatureTable {
    pub names: Vec<String>,
    pub rows: Vec<Vec<f64>>,
}

pub const IMAGE_FEATURES: [&str; 10] = [
    "img_mean_r",
    "img_mean_g",
    "img_mean_b",
    "img_std_r",
    "img_std_g",
    "img_std_b",
    "img_edges",
    "img_green_share",
    "img_blue_share",
    "img_bright_share",
];

/// Colour and texture statistics of one HWC RGB image, each in about [0, 1].
pub fn image_stats(rgb: &[u8], size: usize) -> [f64; 10] {
    let n = (size * size) as f64;
    let mut mean = [0.0; 3];
    let mut sq = [0.0; 3];
    let (mut green, mut blue, mut bright, mut edges) = (0.0, 0.0, 0.0, 0.0);
    let grey = |i: usize| {
        (rgb[i * 3] as f64 + rgb[i * 3 + 1] as f64 + rgb[i * 3 + 2] as f64) / (3.0 * 255.0)
    };
    for i in 0..size * size {
        let px = [
            rgb[i * 3] as f64 / 255.0,
            rgb[i * 3 + 1] as f64 / 255.0,
            rgb[i * 3 + 2] as f64 / 255.0,
        ];
        for c in 0..3 {
            mean[c] += px[c];
            sq[c] += px[c] * px[c];
        }
        if px[1] > px[0] + 0.04 && px[1] > px[2] + 0.04 {
            green += 1.0;
        }
        if px[2] > px[0] + 0.12 && px[2] > px[1] + 0.04 {
            blue += 1.0;
        }
        if (px[0] + px[1] + px[2]) / 3.0 > 0.68 {
            bright += 1.0;
        }
        let (r, c) = (i / size, i % size);
        if r + 1 < size && c + 1 < size {
            edges += (grey(i) - grey(i + 1)).abs() + (grey(i) - grey(i + size)).abs();
        }
    }
    let mut out = [0.0; 10];
    for c in 0..3 {
        out[c] = mean[c] / n;
        out[3 + c] = (sq[c] / n - out[c] * out[c]).max(0.0).sqrt();
    }
    out[6] = edges / ((size - 1) * (size - 1)) as f64;
    out[7] = green / n;
    out[8] = blue / n;
    out[9] = bright / n;
    out
}

/// Build the feature table of every tile of a dataset.
pub fn tile_features(
    graph: &TileGraph,
    images: &ImageStack,
    pois: &PoiRaster,
    categories: &[String],
) -> FeatureTable {
    let own: Vec<Vec<f64>> = (0..graph.len())
        .map(|t| {
            let counts = pois.counts(t);
            let total: f64 = counts.iter().sum();
            let mut row: Vec<f64> = counts.iter().map(|c| c.ln_1p()).collect();
            row.push(total.ln_1p());
            row.extend_from_slice(&image_stats(images.tile(t), images.size));
            row
        })
        .collect();
    let mut names: Vec<String> = categories.iter().map(|c| format!("poi_{c}")).collect();
    names.push("poi_total".into());
    names.extend(IMAGE_FEATURES.iter().map(|s| s.to_string()));
    let own_names = names.clone();
    names.extend(own_names.iter().map(|n| format!("nb_{n}")));
    names.push("nb_present".into());

    let rows = (0..graph.len())
        .map(|t| {
            // The tile and its graph neighbours (queen contiguity: the present tiles of the
            // 3×3 block).
            let block: Vec<usize> = std::iter::once(t)
                .chain(graph.neighbours(t).iter().copied())
                .collect();
            let mut row = own[t].clone();
            let mut mean = vec![0.0; own[t].len()];
            for &b in &block {
                for (m, v) in mean.iter_mut().zip(&own[b]) {
                    *m += v / block.len() as f64;
                }
            }
            row.extend(mean);
            // How many of the 9 slots exist: edge tiles see fewer neighbours.
            row.push(block.len() as f64 / 9.0);
            row
        })
        .collect();
    FeatureTable { names, rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_a_flat_image() {
        let rgb: Vec<u8> = [255u8, 0, 0].repeat(16);
        let s = image_stats(&rgb, 4);
        assert_eq!(s[0], 1.0);
        assert_eq!(s[1], 0.0);
        assert_eq!(s[3], 0.0);
        assert_eq!(s[6], 0.0);
    }
}
