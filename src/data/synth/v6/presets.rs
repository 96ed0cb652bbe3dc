//! The v6 presets: the v5 cities' stories (centres, river, lakes, parks, industrial zones,
//! ring roads: `super::super::presets`) with what v6 adds: a street pattern, building
//! typologies, a roof palette, heating fuels, facilities and POI coverage. Every emission
//! constant is in `EmissionFactors`, with its source in docs/v6-sources.md; the story's
//! constants describe the real cities (docs/synthetic-cities.md), never a model's score.

use super::super::presets::{preset as story, Preset};

/// A building typology: what a footprint, its height and its use look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Typology {
    Detached,
    Terrace,
    Slab,
    Tower,
    OfficeTower,
    OfficeBlock,
    RetailBox,
    Warehouse,
    Factory,
    HeavyIndustry,
    School,
    Barn,
}

/// What a building's floors are used for (the emission sectors and POI categories follow it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Use {
    Residential,
    Retail,
    Office,
    Industry,
    Warehouse,
    Education,
}

impl Use {
    pub const ALL: [Use; 6] = [
        Use::Residential,
        Use::Retail,
        Use::Office,
        Use::Industry,
        Use::Warehouse,
        Use::Education,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Use::Residential => "residential",
            Use::Retail => "retail",
            Use::Office => "office",
            Use::Industry => "industry",
            Use::Warehouse => "warehouse",
            Use::Education => "education",
        }
    }

    pub fn index(self) -> usize {
        Use::ALL.iter().position(|&u| u == self).expect("listed")
    }
}

/// Road classes, from the motorway down to the local street.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RoadClass {
    Motorway,
    Arterial,
    Collector,
    Local,
}

impl RoadClass {
    pub const ALL: [RoadClass; 4] = [
        RoadClass::Motorway,
        RoadClass::Arterial,
        RoadClass::Collector,
        RoadClass::Local,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RoadClass::Motorway => "motorway",
            RoadClass::Arterial => "arterial",
            RoadClass::Collector => "collector",
            RoadClass::Local => "local",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Carriageway width in metres (lanes × 3.5 m plus shoulders or parking).
    pub fn width_m(self) -> f64 {
        match self {
            RoadClass::Motorway => 32.0,
            RoadClass::Arterial => 20.0,
            RoadClass::Collector => 12.0,
            RoadClass::Local => 7.0,
        }
    }

    /// Free-flow speed in km/h, the edge weight of the shortest paths (urban speed limits).
    pub fn speed_kmh(self) -> f64 {
        match self {
            RoadClass::Motorway => 90.0,
            RoadClass::Arterial => 50.0,
            RoadClass::Collector => 40.0,
            RoadClass::Local => 30.0,
        }
    }
}

/// A city's street pattern.
#[derive(Debug, Clone, Copy)]
pub struct Streets {
    /// Spacing of the street lattice, in metres (one block edge).
    pub spacing_m: f64,
    /// Every `arterial_every`-th lattice line is an arterial, every `collector_every`-th a
    /// collector (the rest are local streets).
    pub arterial_every: usize,
    pub collector_every: usize,
    /// How far the lattice's nodes wander, in spacings: organic (London) to planned grids.
    pub warp: f64,
    /// Share of local streets missing inside arterial cells (gated compounds, superblocks).
    pub superblock_drop: f64,
    /// Share of residential streets lined with trees.
    pub street_trees: f64,
}

/// Residential typology by built density: detached below `detached`, `low_rise` (terraces or
/// low slabs) below `low`, mid-rise slabs below `mid`, towers above; storeys per typology.
#[derive(Debug, Clone, Copy)]
pub struct Housing {
    pub detached: f64,
    pub low: f64,
    pub mid: f64,
    /// Whether the low-rise form is the terrace (London) or a low slab (walk-up blocks).
    pub terraces: bool,
    pub slab_storeys: (u32, u32),
    pub tower_storeys: (u32, u32),
    pub office_storeys: (u32, u32),
    /// Distance between parallel slabs as a multiple of their height (sunlight spacing).
    pub slab_spacing: f64,
    /// Floor-to-floor height of dwellings, metres (3.1 m; Chinese code 2.8 m) [7].
    pub floor_m: f64,
}

/// Where a tile's CO2 comes from, per unit of its physical driver. Only fuel burnt on the spot
/// counts (an inventory like ODIAC puts electricity's CO2 at the power plants). Every value's
/// source is in docs/v6-sources.md (section in brackets).
#[derive(Debug, Clone, Copy)]
pub struct EmissionFactors {
    /// On-site fuel (primary energy for district heat), kWh per m² of floor area per year, by
    /// `Use` [1]. Retail here is the small shop (CIBSE TM46 general retail: no fossil fuel).
    pub heat_kwh_m2: [f64; 6],
    /// The large retail box (TM46 large non-food shop) [1].
    pub retail_box_kwh_m2: f64,
    /// Old buildings use more heat than new ones: the factor between the oldest and the newest
    /// stock (1.20 for dwellings built before 1967 against 2005-2021) [1].
    pub age_factor: f64,
    /// kg CO2 per kWh of fuel: natural gas and coal [2].
    pub gas_kg_kwh: f64,
    pub coal_kg_kwh: f64,
    /// Vehicles: kg CO2 per vehicle-km and share of vehicle-km of cars, vans, heavy goods
    /// vehicles and buses [3].
    pub vehicle_kg_km: [f64; 4],
    pub vehicle_share: [f64; 4],
    /// Annual average daily traffic (vehicles/day) of a typical road of each class [3].
    pub aadt: [f64; 4],
    /// Facilities: t CO2 per MWh generated and the capacity factor [4].
    pub plant_t_mwh: f64,
    pub capacity_factor: f64,
}

impl EmissionFactors {
    /// kg CO2 per vehicle-km of the traffic mix.
    pub fn fleet_kg_km(&self) -> f64 {
        self.vehicle_kg_km
            .iter()
            .zip(&self.vehicle_share)
            .map(|(k, s)| k * s)
            .sum()
    }
}

/// The inventory's operator (ODIAC-like) [6].
#[derive(Debug, Clone, Copy)]
pub struct InventoryModel {
    /// Edge of the inventory's grid cells, metres.
    pub grid_m: f64,
    /// Standard deviation of the night-light blooming, metres.
    pub bloom_m: f64,
    /// Log-scale standard deviation of the per-tile error.
    pub log_sigma: f64,
}

#[derive(Debug, Clone)]
pub struct Preset6 {
    pub name: &'static str,
    pub description: &'static str,
    /// The city's story (shape, river, parks, industrial zones, ring roads) as in v5.
    pub story: Preset,
    pub streets: Streets,
    pub housing: Housing,
    /// Roof materials of the city (RGB), drawn independently of use and height.
    pub roofs: &'static [[u8; 3]],
    /// Bare ground and paving colours.
    pub ground: [u8; 3],
    /// Mean share of coal (the rest gas) in heating fuel, and its spread between districts.
    pub coal_share: (f64, f64),
    /// Median building age (years) in the centre and at the edge.
    pub age_years: (f64, f64),
    /// Large facilities (power plants, heavy industry): count, median capacity (MW) and the
    /// log-scale spread of capacities.
    pub facilities: (usize, f64, f64),
    /// POI data-source coverage (a share of the POIs that exist).
    pub poi_coverage: f64,
    pub factors: EmissionFactors,
    pub inventory: InventoryModel,
}

/// UK non-domestic benchmarks (CIBSE TM46), UK dwellings (112 kWh/m², the Irish D band used
/// for want of a UK per-m² figure), IPCC 2006 fuel factors, UK fleet and traffic [1-4].
const FACTORS_UK: EmissionFactors = EmissionFactors {
    heat_kwh_m2: [112.0, 0.0, 120.0, 180.0, 160.0, 150.0],
    retail_box_kwh_m2: 170.0,
    age_factor: 1.20,
    gas_kg_kwh: 0.202,
    coal_kg_kwh: 0.341,
    vehicle_kg_km: [0.18, 0.25, 0.9, 0.87],
    vehicle_share: [0.78, 0.15, 0.05, 0.02],
    aadt: [81_700.0, 14_000.0, 1_400.0, 1_400.0],
    // London's plants burn gas (combined cycle) [2, 4].
    plant_t_mwh: 0.34,
    capacity_factor: 0.53,
};

/// Northern China: dwellings heated by district heat at 177 kWh/m² of primary fuel [1]; the
/// other constants as in the UK for want of Chinese sources found (docs/v6-sources.md).
const FACTORS_NORTH_CHINA: EmissionFactors = EmissionFactors {
    heat_kwh_m2: [177.0, 0.0, 120.0, 180.0, 160.0, 150.0],
    // Coal-fired plants, as in Ningxia (coal 87 % of energy) [2, 4].
    plant_t_mwh: 0.90,
    ..FACTORS_UK
};

/// Beijing replaced its coal units by gas (13th five-year plan: > 2.7 GW of coal retired,
/// > 7.2 GW of gas added) [2]: its plants are combined-cycle gas [4].
const FACTORS_BEIJING: EmissionFactors = EmissionFactors {
    plant_t_mwh: 0.34,
    ..FACTORS_NORTH_CHINA
};

/// ODIAC's 1 km grid [6]; the blooming's reach (a modelling choice: VIIRS lights bloom over a
/// few hundred metres, unverified [6]); the per-tile error: city totals of ODIAC differ from
/// city inventories by 10-60 % (Beijing +40 %) [6], so a 1 km cell's error is taken as
/// ln(1.5) = 0.4 on the log scale.
const INVENTORY: InventoryModel = InventoryModel {
    grid_m: 1000.0,
    bloom_m: 600.0,
    log_sigma: 0.4,
};

const LONDON_ROOFS: [[u8; 3]; 6] = [
    [150, 86, 70],
    [96, 96, 104],
    [70, 68, 72],
    [178, 176, 170],
    [128, 112, 98],
    [110, 120, 128],
];
const BEIJING_ROOFS: [[u8; 3]; 6] = [
    [128, 132, 138],
    [96, 108, 124],
    [170, 170, 166],
    [84, 120, 112],
    [150, 96, 84],
    [190, 188, 180],
];
const YINCHUAN_ROOFS: [[u8; 3]; 5] = [
    [112, 124, 150],
    [160, 158, 150],
    [140, 104, 90],
    [92, 98, 104],
    [186, 182, 170],
];

fn based_on(name: &str) -> Preset {
    story(name).expect("v5 story exists")
}

pub fn presets() -> Vec<Preset6> {
    let london = Preset6 {
        name: "london6",
        description: "London's story (v5) as a vector city: organic streets, terraces and mansion blocks, a towered core, docklands industry; gas heating",
        story: based_on("london"),
        streets: Streets {
            spacing_m: 110.0,
            arterial_every: 8,
            collector_every: 4,
            warp: 0.35,
            superblock_drop: 0.0,
            street_trees: 0.6,
        },
        housing: Housing {
            detached: 0.3,
            low: 0.62,
            mid: 0.85,
            terraces: true,
            slab_storeys: (4, 8),
            tower_storeys: (12, 30),
            office_storeys: (6, 40),
            slab_spacing: 1.0,
            floor_m: 3.1,
        },
        roofs: &LONDON_ROOFS,
        ground: [150, 146, 138],
        coal_share: (0.0, 0.0),
        age_years: (110.0, 50.0),
        facilities: (3, 400.0, 0.8),
        poi_coverage: 1.0,
        factors: FACTORS_UK,
        inventory: INVENTORY,
    };
    let beijing = Preset6 {
        name: "beijing6",
        description: "Beijing's story (v5) as a vector city: a planned grid of superblocks, slab compounds and towers, square ring roads, a heavy industrial belt; coal and gas heating",
        story: based_on("beijing"),
        streets: Streets {
            spacing_m: 160.0,
            arterial_every: 6,
            collector_every: 3,
            warp: 0.04,
            superblock_drop: 0.6,
            street_trees: 0.8,
        },
        housing: Housing {
            detached: 0.18,
            low: 0.4,
            mid: 0.75,
            terraces: false,
            slab_storeys: (6, 12),
            tower_storeys: (18, 32),
            office_storeys: (10, 50),
            slab_spacing: 1.7,
            floor_m: 2.8,
        },
        roofs: &BEIJING_ROOFS,
        ground: [160, 156, 146],
        coal_share: (0.05, 0.05),
        age_years: (40.0, 15.0),
        facilities: (5, 800.0, 0.8),
        poi_coverage: 0.8,
        factors: FACTORS_BEIJING,
        inventory: INVENTORY,
    };
    let yinchuan = Preset6 {
        name: "yinchuan6",
        description: "Yinchuan's story (v5) as a vector city: a wide regular grid, low slabs, farmland, an industrial park with large coal plants; coal heating",
        story: based_on("yinchuan"),
        streets: Streets {
            spacing_m: 140.0,
            arterial_every: 7,
            collector_every: 3,
            warp: 0.06,
            superblock_drop: 0.4,
            street_trees: 0.5,
        },
        housing: Housing {
            detached: 0.2,
            low: 0.45,
            mid: 0.8,
            terraces: false,
            slab_storeys: (5, 11),
            tower_storeys: (16, 28),
            office_storeys: (8, 30),
            slab_spacing: 1.7,
            floor_m: 2.8,
        },
        roofs: &YINCHUAN_ROOFS,
        ground: [176, 164, 140],
        coal_share: (0.85, 0.1),
        age_years: (30.0, 10.0),
        facilities: (4, 1200.0, 0.8),
        poi_coverage: 0.55,
        factors: FACTORS_NORTH_CHINA,
        inventory: INVENTORY,
    };
    let tiny = Preset6 {
        name: "tiny6",
        description: "a 64-tile test city with every typology, for fast tests",
        story: based_on("tiny"),
        ..london.clone()
    };
    vec![london, beijing, yinchuan, tiny]
}

impl Preset6 {
    /// The same city scaled to `tiles` tiles.
    pub fn with_tiles(mut self, tiles: usize) -> Preset6 {
        self.story = self.story.with_tiles(tiles);
        self
    }
}

pub fn preset(name: &str) -> Option<Preset6> {
    presets().into_iter().find(|p| p.name == name)
}
