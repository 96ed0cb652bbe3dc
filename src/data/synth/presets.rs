//! The synthetic cities' presets: London, Beijing and Yinchuan at the paper's sizes, and a
//! 64-tile test city. Each describes a city's shape and story (centres, river, parks,
//! industrial zones, ring roads, sector mix), never a model's score.

/// A centre of activity: position in units of the city's half-extent, strength, radius (tiles).
#[derive(Debug, Clone, Copy)]
pub(super) struct Centre {
    pub(super) u: f64,
    pub(super) v: f64,
    pub(super) strength: f64,
    pub(super) radius: f64,
}

/// Emission factors per sector (t CO2 / year per unit of the sector's driver).
#[derive(Debug, Clone, Copy)]
pub(super) struct SectorMix {
    pub(super) residential: f64,
    pub(super) commercial: f64,
    pub(super) industry: f64,
    pub(super) road: f64,
    /// Median of one point source, and their count.
    pub(super) point_source: f64,
    pub(super) point_sources: usize,
    /// Log-scale noise of the whole tile (measurement and unmodelled activity).
    pub(super) noise_sigma: f64,
}

#[derive(Debug, Clone)]
pub struct Preset {
    pub name: &'static str,
    pub description: &'static str,
    pub(super) lon: f64,
    pub(super) lat: f64,
    pub(super) tiles: usize,
    pub(super) aspect: f64,
    pub(super) centres: &'static [Centre],
    /// River: amplitude and wavelength (tiles), offset of its axis (half-extents), width (cells),
    /// and whether it runs north-south instead of west-east.
    pub(super) river: Option<(f64, f64, f64, f64, bool)>,
    pub(super) lake_share: f64,
    pub(super) park_share: f64,
    /// The continuous built-up area: radius (half-extents) and the density it adds.
    pub(super) urban_extent: (f64, f64),
    /// Industrial zones: (u, v, radius in tiles).
    pub(super) industrial_zones: &'static [(f64, f64, f64)],
    /// Ring roads at these radii (tiles); square rings when `square_rings`.
    pub(super) rings: &'static [f64],
    pub(super) square_rings: bool,
    pub(super) radials: usize,
    pub(super) mix: SectorMix,
    pub(super) roof: [u8; 3],
    /// POIs per unit of activity (data-source coverage differs between cities).
    pub(super) poi_rate: f64,
}

const LONDON_CENTRES: [Centre; 5] = [
    Centre {
        u: 0.05,
        v: -0.05,
        strength: 0.9,
        radius: 6.0,
    },
    Centre {
        u: 0.35,
        v: 0.05,
        strength: 0.35,
        radius: 3.0,
    },
    Centre {
        u: -0.45,
        v: -0.3,
        strength: 0.3,
        radius: 3.5,
    },
    Centre {
        u: -0.2,
        v: 0.5,
        strength: 0.25,
        radius: 3.5,
    },
    Centre {
        u: 0.5,
        v: -0.55,
        strength: 0.25,
        radius: 3.0,
    },
];
const BEIJING_CENTRES: [Centre; 6] = [
    Centre {
        u: 0.0,
        v: 0.0,
        strength: 0.7,
        radius: 5.0,
    },
    Centre {
        u: 0.3,
        v: 0.05,
        strength: 0.7,
        radius: 3.5,
    },
    Centre {
        u: -0.35,
        v: -0.35,
        strength: 0.6,
        radius: 4.0,
    },
    Centre {
        u: 0.3,
        v: -0.45,
        strength: 0.5,
        radius: 3.5,
    },
    Centre {
        u: -0.1,
        v: 0.55,
        strength: 0.45,
        radius: 4.0,
    },
    Centre {
        u: 0.55,
        v: 0.5,
        strength: 0.4,
        radius: 3.5,
    },
];
const YINCHUAN_CENTRES: [Centre; 3] = [
    Centre {
        u: 0.35,
        v: 0.0,
        strength: 0.7,
        radius: 3.5,
    },
    Centre {
        u: -0.35,
        v: 0.05,
        strength: 0.6,
        radius: 3.5,
    },
    Centre {
        u: 0.0,
        v: -0.55,
        strength: 0.3,
        radius: 2.5,
    },
];

pub fn presets() -> Vec<Preset> {
    vec![
        Preset {
            name: "london",
            description: "monocentric, meandering river west-east, docklands industry east, large parks, orbital ring; heating and commercial heavy",
            lon: -0.1278,
            lat: 51.5074,
            tiles: 1300,
            aspect: 1.25,
            centres: &LONDON_CENTRES,
            river: Some((1.6, 19.0, 0.05, 3.0, false)),
            lake_share: 0.0,
            park_share: 0.14,
            urban_extent: (0.8, 0.4),
            industrial_zones: &[(0.75, 0.15, 4.5), (-0.7, 0.45, 2.5)],
            rings: &[6.0, 15.0],
            square_rings: false,
            radials: 10,
            mix: SectorMix {
                residential: 27000.0,
                commercial: 78000.0,
                industry: 45000.0,
                road: 21000.0,
                point_source: 120_000.0,
                point_sources: 3,
                noise_sigma: 0.25,
            },
            roof: [150, 95, 80],
            poi_rate: 2.5,
        },
        Preset {
            name: "beijing",
            description: "polycentric, square ring roads, lakes instead of a river, industrial belt south-east and a steel works west; industry and traffic heavy",
            lon: 116.4074,
            lat: 39.9042,
            tiles: 1560,
            aspect: 1.0,
            centres: &BEIJING_CENTRES,
            river: None,
            lake_share: 0.025,
            park_share: 0.10,
            urban_extent: (0.75, 0.38),
            industrial_zones: &[(0.6, -0.65, 5.0), (-0.8, -0.1, 3.0), (0.7, 0.7, 2.5)],
            rings: &[4.0, 8.0, 12.5, 17.0],
            square_rings: true,
            radials: 8,
            mix: SectorMix {
                residential: 33000.0,
                commercial: 48000.0,
                industry: 105000.0,
                road: 36000.0,
                point_source: 400_000.0,
                point_sources: 5,
                noise_sigma: 0.3,
            },
            roof: [128, 132, 138],
            poi_rate: 2.0,
        },
        Preset {
            name: "yinchuan",
            description: "small twin-centred city elongated west-east, Yellow River north-south on the east edge, industrial park north, farmland; industry and point sources dominate",
            lon: 106.2309,
            lat: 38.4872,
            tiles: 540,
            aspect: 1.7,
            centres: &YINCHUAN_CENTRES,
            river: Some((1.2, 16.0, 0.7, 4.0, true)),
            lake_share: 0.015,
            park_share: 0.07,
            urban_extent: (0.55, 0.3),
            industrial_zones: &[(0.0, 0.75, 4.0), (-0.75, -0.5, 2.5)],
            rings: &[9.0],
            square_rings: false,
            radials: 6,
            mix: SectorMix {
                residential: 30000.0,
                commercial: 27000.0,
                industry: 150000.0,
                road: 27000.0,
                point_source: 600_000.0,
                point_sources: 4,
                noise_sigma: 0.3,
            },
            roof: [112, 124, 150],
            poi_rate: 1.4,
        },
        Preset {
            name: "tiny",
            description: "a 64-tile test city with every land use, for fast tests",
            lon: 9.52,
            lat: 47.14,
            tiles: 64,
            aspect: 1.0,
            centres: &[Centre { u: 0.0, v: 0.0, strength: 0.9, radius: 2.0 }],
            river: Some((0.8, 5.0, 0.5, 2.0, false)),
            lake_share: 0.0,
            park_share: 0.1,
            urban_extent: (0.7, 0.35),
            industrial_zones: &[(-0.6, -0.6, 1.5)],
            rings: &[2.5],
            square_rings: false,
            radials: 4,
            mix: SectorMix {
                residential: 27000.0,
                commercial: 60000.0,
                industry: 75000.0,
                road: 24000.0,
                point_source: 100_000.0,
                point_sources: 1,
                noise_sigma: 0.3,
            },
            roof: [140, 100, 90],
            poi_rate: 2.5,
        },
    ]
}

impl Preset {
    /// The same city scaled to `tiles` tiles (e.g. a 50 000-tile city for memory tests); the
    /// land-use story and its proportions stay the preset's.
    pub fn with_tiles(mut self, tiles: usize) -> Preset {
        self.tiles = tiles;
        self
    }
}

pub fn preset(name: &str) -> Option<Preset> {
    presets().into_iter().find(|p| p.name == name)
}
