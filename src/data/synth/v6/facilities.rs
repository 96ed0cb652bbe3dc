//! Facilities of a v6 city: power plants and process sites on heavy-industry blocks, the
//! heavy tail of its emission. What the image shows of a facility (cooling towers or tanks,
//! stacks and their shadows) grows with its capacity.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};

use super::geometry::Rect;
use super::presets::Preset6;

/// A large point source (power plant or process site): what the image shows of it is its
/// cooling towers or tanks and its stacks, sized by capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Facility {
    pub c: [f64; 2],
    /// A power plant's electric capacity, or a process site's fuel input (boilers, kilns,
    /// furnaces), MW.
    pub capacity_mw: f64,
    /// A process site (tanks and short stacks) rather than a power plant (cooling towers).
    pub process: bool,
    /// Cooling towers (or tanks): centre and radius.
    pub towers: [([f64; 2], f64); 4],
    pub tower_count: usize,
    /// Stacks: centre, radius and height.
    pub stacks: [([f64; 2], f64, f64); 3],
    pub stack_count: usize,
}

/// The city's facilities on its heavy-industry blocks (`heavy`, in block order), capacities
/// log-normal around the preset's median: a heavy tail.
pub(super) fn place_facilities(p: &Preset6, heavy: &[Rect], rng: &mut ChaCha8Rng) -> Vec<Facility> {
    let mut out = Vec::new();
    let (count, median, sigma) = p.facilities;
    let capacity = LogNormal::new(median.ln(), sigma).expect("valid lognormal");
    let mut free: Vec<usize> = (0..heavy.len()).collect();
    for _ in 0..count {
        if free.is_empty() {
            break;
        }
        let lot = heavy[free.swap_remove(rng.gen_range(0..free.len()))];
        let mw: f64 = capacity.sample(rng);
        // Cooling towers ~ 40-60 m across for a few hundred MW; more towers for more capacity.
        let towers = (1 + (mw / 500.0) as usize).min(4);
        // Capped to fit the block: a narrow block holds smaller towers.
        let r = (14.0 * (mw / 300.0).sqrt())
            .clamp(10.0, 32.0)
            .min(0.3 * lot.half[0].min(lot.half[1]));
        let mut f = Facility {
            c: lot.c,
            capacity_mw: mw,
            process: false,
            towers: [([0.0; 2], 0.0); 4],
            tower_count: towers,
            stacks: [([0.0; 2], 0.0, 0.0); 3],
            stack_count: (1 + (mw / 700.0) as usize).min(3),
        };
        for k in 0..towers {
            let along = -lot.half[0] + (k as f64 + 0.5) * 2.0 * lot.half[0] / towers as f64;
            f.towers[k] = (
                lot.at(
                    along.clamp(-(lot.half[0] - r), lot.half[0] - r),
                    lot.half[1] - r,
                ),
                r,
            );
        }
        for k in 0..f.stack_count {
            f.stacks[k] = (
                lot.at(-lot.half[0] * 0.3 + 18.0 * k as f64, lot.half[1] * 0.05),
                3.5,
                120.0 + 60.0 * rng.gen::<f64>(),
            );
        }
        out.push(f);
    }
    // Every other heavy-industry block is a process site: boilers, kilns or furnaces whose
    // fuel input is log-normal around 20 MW with a log spread of 1 (a modelling choice: a heavy
    // tail of mid-sized sites below the plants), shown by its tanks and stacks, more and larger
    // for more capacity.
    let site = LogNormal::new(20f64.ln(), 1.0).expect("valid lognormal");
    free.sort_unstable();
    for k in free {
        let lot = heavy[k];
        let mw: f64 = site.sample(rng);
        let tanks = (1 + (mw / 25.0) as usize).min(4);
        let r = (5.0 * (mw / 10.0).sqrt()).clamp(4.0, 16.0);
        let mut f = Facility {
            c: lot.c,
            capacity_mw: mw,
            process: true,
            towers: [([0.0; 2], 0.0); 4],
            tower_count: tanks,
            stacks: [([0.0; 2], 0.0, 0.0); 3],
            stack_count: 1 + (mw > 40.0) as usize,
        };
        for t in 0..tanks {
            let along = lot.half[0] * (0.15 + 0.2 * t as f64);
            f.towers[t] = (lot.at(along.min(lot.half[0] - r), lot.half[1] * 0.5), r);
        }
        for t in 0..f.stack_count {
            let height = 25.0 + 12.0 * mw.ln().max(0.0) + 10.0 * rng.gen::<f64>();
            f.stacks[t] = (
                lot.at(-lot.half[0] * 0.6 + 12.0 * t as f64, lot.half[1] * 0.3),
                2.0,
                height,
            );
        }
        out.push(f);
    }
    out
}
