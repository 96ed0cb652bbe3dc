//! The road network of a v6 city: a warped street lattice whose lines are arterials,
//! collectors or local streets, motorways along the story's rings and radials, the network's
//! edge betweenness (Brandes' algorithm from a seeded sample of sources) and the traffic it
//! carries. Traffic is a driver of emission that spans tiles: a road's place in the network,
//! not what stands beside it, decides most of it. It is never drawn.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::f64::consts::PI;

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::super::{fbm, hash01};
use super::geometry::Rect;
use super::presets::{Preset6, RoadClass};
use super::World;

#[derive(Debug, Clone, Copy)]
pub struct Edge {
    pub a: usize,
    pub b: usize,
    pub class: RoadClass,
    /// Annual average daily traffic, vehicles per day.
    pub aadt: f64,
}

pub struct Roads {
    /// Node positions in metres from the frame's north-west corner (x east, y south).
    pub nodes: Vec<[f64; 2]>,
    pub edges: Vec<Edge>,
    /// The street lattice's size (nodes per row and rows); lattice node (a, b) is
    /// `nodes[b * lattice.0 + a]`. Motorway nodes follow.
    pub lattice: (usize, usize),
}

impl Roads {
    pub fn length(&self, e: &Edge) -> f64 {
        let (p, q) = (self.nodes[e.a], self.nodes[e.b]);
        ((q[0] - p[0]).powi(2) + (q[1] - p[1]).powi(2)).sqrt()
    }

    /// Calls `visit(x, y, metres)` for pieces of at most `step` metres along edge `k`.
    pub fn along(&self, k: usize, step: f64, mut visit: impl FnMut(f64, f64, f64)) {
        let e = self.edges[k];
        let (p, q) = (self.nodes[e.a], self.nodes[e.b]);
        let len = self.length(&e);
        let n = (len / step).ceil().max(1.0) as usize;
        for i in 0..n {
            let t = (i as f64 + 0.5) / n as f64;
            visit(
                p[0] + t * (q[0] - p[0]),
                p[1] + t * (q[1] - p[1]),
                len / n as f64,
            );
        }
    }

    /// Whether a motorway's carriageway (with a 16 m verge) crosses a rectangle: that land is
    /// the road's, not a block's.
    pub fn motorway_crossing(&self) -> impl Fn(&Rect) -> bool + '_ {
        let roads = self;
        let cell = 200.0;
        let key = move |x: f64, y: f64| ((x / cell).floor() as i64, (y / cell).floor() as i64);
        let mut cells: std::collections::BTreeMap<(i64, i64), Vec<usize>> = Default::default();
        for (k, e) in roads.edges.iter().enumerate() {
            if e.class != RoadClass::Motorway {
                continue;
            }
            roads.along(k, 20.0, |x, y, _| {
                let list = cells.entry(key(x, y)).or_default();
                if list.last() != Some(&k) {
                    list.push(k);
                }
            });
        }
        let reach = RoadClass::Motorway.width_m() / 2.0 + 16.0;
        move |r: &Rect| {
            let grown = Rect {
                half: [r.half[0] + reach, r.half[1] + reach],
                ..*r
            };
            let b = grown.bbox_half();
            let (lo, hi) = (
                key(r.c[0] - b[0], r.c[1] - b[1]),
                key(r.c[0] + b[0], r.c[1] + b[1]),
            );
            for i in lo.0..=hi.0 {
                for j in lo.1..=hi.1 {
                    for &k in cells.get(&(i, j)).map(Vec::as_slice).unwrap_or(&[]) {
                        let e = roads.edges[k];
                        let (p, q) = (roads.nodes[e.a], roads.nodes[e.b]);
                        let len = roads.length(&e);
                        let dir = [(q[0] - p[0]) / len, (q[1] - p[1]) / len];
                        if grown.meets_segment(p, dir, len) {
                            return true;
                        }
                    }
                }
            }
            false
        }
    }

    /// The lattice node (a, b).
    pub fn lattice_node(&self, a: usize, b: usize) -> [f64; 2] {
        self.nodes[b * self.lattice.0 + a]
    }

    /// The class of lattice line `k` (a row or a column of the lattice).
    pub fn line_class(p: &Preset6, k: usize) -> RoadClass {
        if k % p.streets.arterial_every == p.streets.arterial_every / 2 {
            RoadClass::Arterial
        } else if k.is_multiple_of(p.streets.collector_every) {
            RoadClass::Collector
        } else {
            RoadClass::Local
        }
    }

    /// Build the network on a world (its fields decide where streets run). AADT is left at 0
    /// until `assign_traffic`.
    pub fn build(p: &Preset6, world: &World, seed: u64) -> Roads {
        let s = &p.streets;
        let nx = (world.width_m / s.spacing_m).ceil() as usize + 1;
        let ny = (world.height_m / s.spacing_m).ceil() as usize + 1;
        let mut nodes = Vec::with_capacity(nx * ny);
        for b in 0..ny {
            for a in 0..nx {
                // Organic streets wander; planned grids stay straight.
                let wx = fbm(a as f64, b as f64, 6.0, seed ^ 0x31) * s.warp * s.spacing_m;
                let wy = fbm(a as f64, b as f64, 6.0, seed ^ 0x32) * s.warp * s.spacing_m;
                nodes.push([a as f64 * s.spacing_m + wx, b as f64 * s.spacing_m + wy]);
            }
        }
        let mut edges = Vec::new();
        let mut consider = |ia: usize, ib: usize, line: usize, cross: usize, nodes: &[[f64; 2]]| {
            let class = Roads::line_class(p, line);
            let (pa, pb) = (nodes[ia], nodes[ib]);
            let mid = [(pa[0] + pb[0]) / 2.0, (pa[1] + pb[1]) / 2.0];
            let site = world.site_m(mid[0], mid[1]);
            let keep = match class {
                // Arterials cross rivers on bridges and run through everything.
                RoadClass::Arterial => true,
                RoadClass::Collector => !site.water && (!site.park || site.density > 0.5),
                RoadClass::Local => {
                    let inside_cell = line % s.arterial_every != s.arterial_every / 2
                        && cross % s.arterial_every != s.arterial_every / 2;
                    let dropped = inside_cell
                        && hash01(line as i64, cross as i64, seed ^ 0x33) < s.superblock_drop;
                    !site.water && !site.park && site.density >= world.farm_density(mid) && !dropped
                }
                RoadClass::Motorway => unreachable!("lattice lines are not motorways"),
            };
            if keep {
                edges.push(Edge {
                    a: ia,
                    b: ib,
                    class,
                    aadt: 0.0,
                });
            }
        };
        for b in 0..ny {
            for a in 0..nx {
                if a + 1 < nx {
                    consider(b * nx + a, b * nx + a + 1, b, a, &nodes);
                }
                if b + 1 < ny {
                    consider(b * nx + a, (b + 1) * nx + a, a, b, &nodes);
                }
            }
        }
        let mut roads = Roads {
            nodes,
            edges,
            lattice: (nx, ny),
        };
        roads.add_motorways(p, world);
        roads
    }

    /// Motorways along the story's rings and radials (v5's road geometry, in metres), joined
    /// to the lattice where they meet an arterial line.
    fn add_motorways(&mut self, p: &Preset6, world: &World) {
        let story = &p.story;
        let tile = world.tile_m;
        let (cx, cy) = (world.width_m / 2.0, world.height_m / 2.0);
        let step = 250.0;
        // (points, closed): rings close on themselves, radials start at the first ring.
        let mut lines: Vec<(Vec<[f64; 2]>, bool)> = Vec::new();
        for &ring in story.rings {
            let r = ring * tile;
            let mut pts = Vec::new();
            if story.square_rings {
                let n = (8.0 * r / step).ceil() as usize;
                for k in 0..=n {
                    let t = k as f64 / n as f64 * 8.0 * r;
                    let (x, y) = match (t / (2.0 * r)) as usize {
                        0 => (-r + t, -r),
                        1 => (r, -r + (t - 2.0 * r)),
                        2 => (r - (t - 4.0 * r), r),
                        _ => (-r, r - (t - 6.0 * r)),
                    };
                    pts.push([cx + x, cy + y]);
                }
            } else {
                let n = (2.0 * PI * r / step).ceil() as usize;
                for k in 0..=n {
                    let a = k as f64 / n as f64 * 2.0 * PI;
                    pts.push([cx + r * a.cos(), cy + r * a.sin()]);
                }
            }
            // The last point repeats the first: the ring closes there instead.
            pts.pop();
            lines.push((pts, true));
        }
        let start = story.rings.first().copied().unwrap_or(2.0) * tile;
        let reach = world.width_m.max(world.height_m);
        for k in 0..story.radials {
            let a = k as f64 * 2.0 * PI / story.radials as f64 + 0.3;
            let mut pts = Vec::new();
            let mut d = start;
            while d < reach {
                let (x, y) = (cx + d * a.cos(), cy + d * a.sin());
                if x < 0.0 || y < 0.0 || x > world.width_m || y > world.height_m {
                    break;
                }
                pts.push([x, y]);
                d += step;
            }
            lines.push((pts, false));
        }
        let (nx, ny) = self.lattice;
        let sp = p.streets.spacing_m;
        let mut first_ring: Option<std::ops::Range<usize>> = None;
        for (pts, closed) in lines {
            let first = self.nodes.len();
            self.nodes.extend(&pts);
            let link = |a: usize, b: usize, edges: &mut Vec<Edge>| {
                edges.push(Edge {
                    a,
                    b,
                    class: RoadClass::Motorway,
                    aadt: 0.0,
                })
            };
            for k in 1..pts.len() {
                link(first + k - 1, first + k, &mut self.edges);
            }
            if closed && pts.len() > 2 {
                link(first + pts.len() - 1, first, &mut self.edges);
                first_ring.get_or_insert(first..first + pts.len());
            } else if let (false, Some(ring), false) = (closed, &first_ring, pts.is_empty()) {
                // A radial joins the innermost ring at its nearest node.
                let q = pts[0];
                let nearest = ring
                    .clone()
                    .min_by(|&i, &j| {
                        let d = |n: usize| {
                            (self.nodes[n][0] - q[0]).powi(2) + (self.nodes[n][1] - q[1]).powi(2)
                        };
                        d(i).total_cmp(&d(j)).then(i.cmp(&j))
                    })
                    .expect("a ring has nodes");
                link(first, nearest, &mut self.edges);
            }
            // Junctions: where the motorway passes an arterial lattice node.
            for (k, q) in pts.iter().enumerate() {
                let a = ((q[0] / sp).round() as usize).min(nx - 1);
                let b = ((q[1] / sp).round() as usize).min(ny - 1);
                let arterial = |line: usize| Roads::line_class(p, line) == RoadClass::Arterial;
                if !(arterial(a) || arterial(b)) {
                    continue;
                }
                let node = b * nx + a;
                let n = self.nodes[node];
                if ((n[0] - q[0]).powi(2) + (n[1] - q[1]).powi(2)).sqrt() < 0.5 * sp {
                    // A ramp: part of the motorway's flow, not an arterial of its own.
                    self.edges.push(Edge {
                        a: first + k,
                        b: node,
                        class: RoadClass::Motorway,
                        aadt: 0.0,
                    });
                }
            }
        }
    }

    /// Edge betweenness on travel time, estimated from `sources` source nodes drawn among the
    /// nodes inside the city (Brandes 2001; sampled sources as in Brandes & Pich 2007), scaled
    /// to the number of nodes inside the city.
    pub fn betweenness(&self, inside: &[bool], sources: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
        let n = self.nodes.len();
        let mut adjacency: Vec<Vec<(usize, usize, f64)>> = vec![Vec::new(); n];
        for (k, e) in self.edges.iter().enumerate() {
            let t = self.length(e) / (e.class.speed_kmh() / 3.6);
            adjacency[e.a].push((e.b, k, t));
            adjacency[e.b].push((e.a, k, t));
        }
        let mut candidates: Vec<usize> = (0..n)
            .filter(|&v| inside[v] && !adjacency[v].is_empty())
            .collect();
        candidates.shuffle(rng);
        candidates.truncate(sources);
        candidates.sort_unstable();
        let per_source: Vec<Vec<f64>> = candidates
            .par_iter()
            .map(|&s| single_source(&adjacency, self.edges.len(), s))
            .collect();
        let inside_nodes = inside.iter().filter(|&&i| i).count().max(1);
        let scale = inside_nodes as f64 / candidates.len().max(1) as f64;
        let mut total = vec![0.0; self.edges.len()];
        for b in &per_source {
            for (t, v) in total.iter_mut().zip(b) {
                *t += v;
            }
        }
        total.iter_mut().for_each(|t| *t *= scale);
        total
    }
}

#[derive(PartialEq)]
struct Queued {
    time: f64,
    node: usize,
}

impl Eq for Queued {}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        // A min-heap on time, ties broken by node index so the order is fixed.
        other
            .time
            .total_cmp(&self.time)
            .then(other.node.cmp(&self.node))
    }
}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One source's contribution to every edge's betweenness (Brandes' dependency accumulation).
fn single_source(adjacency: &[Vec<(usize, usize, f64)>], edges: usize, s: usize) -> Vec<f64> {
    let n = adjacency.len();
    let mut dist = vec![f64::INFINITY; n];
    let mut sigma = vec![0.0f64; n];
    let mut preds: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    let mut order = Vec::new();
    let mut done = vec![false; n];
    let mut heap = BinaryHeap::new();
    dist[s] = 0.0;
    sigma[s] = 1.0;
    heap.push(Queued { time: 0.0, node: s });
    while let Some(Queued { time, node }) = heap.pop() {
        if done[node] {
            continue;
        }
        done[node] = true;
        order.push(node);
        for &(w, e, t) in &adjacency[node] {
            let d = time + t;
            if d < dist[w] {
                dist[w] = d;
                sigma[w] = sigma[node];
                preds[w].clear();
                preds[w].push((node, e));
                heap.push(Queued { time: d, node: w });
            } else if d == dist[w] && !done[w] {
                sigma[w] += sigma[node];
                preds[w].push((node, e));
            }
        }
    }
    let mut delta = vec![0.0f64; n];
    let mut out = vec![0.0; edges];
    for &w in order.iter().rev() {
        for &(v, e) in &preds[w] {
            let c = sigma[v] / sigma[w] * (1.0 + delta[w]);
            out[e] += c;
            delta[v] += c;
        }
    }
    out
}

/// Traffic of each edge: its class's typical AADT, scaled by how much through traffic the
/// network routes over it (betweenness relative to its class's mean) and by the floor area it
/// serves (relative to the mean), in equal parts; bounded to [0.05, 6] times the class's
/// typical flow. `served[k]` is the floor area around edge k; the means are over the edges
/// inside the city (`in_city`), so a typical city road carries its class's typical flow.
pub fn assign_traffic(
    roads: &mut Roads,
    betweenness: &[f64],
    served: &[f64],
    in_city: &[bool],
    aadt: &[f64; 4],
) {
    let mut class_mean = [0.0; 4];
    let mut class_count = [0usize; 4];
    let (mut served_sum, mut served_count) = (0.0, 0usize);
    for (k, e) in roads.edges.iter().enumerate() {
        if in_city[k] {
            class_mean[e.class.index()] += betweenness[k];
            class_count[e.class.index()] += 1;
            served_sum += served[k];
            served_count += 1;
        }
    }
    for c in 0..4 {
        class_mean[c] /= class_count[c].max(1) as f64;
    }
    let served_mean = served_sum / served_count.max(1) as f64;
    for (k, e) in roads.edges.iter_mut().enumerate() {
        let c = e.class.index();
        let through = if class_mean[c] > 0.0 {
            betweenness[k] / class_mean[c]
        } else {
            1.0
        };
        let local = if served_mean > 0.0 {
            served[k] / served_mean
        } else {
            1.0
        };
        e.aadt = aadt[c] * (0.5 * through + 0.5 * local).clamp(0.05, 6.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Betweenness on a path a - b - c - d: the middle edge carries the most shortest paths.
    #[test]
    fn brandes_counts_shortest_paths_through_each_edge() {
        let adjacency = vec![
            vec![(1, 0, 1.0)],
            vec![(0, 0, 1.0), (2, 1, 1.0)],
            vec![(1, 1, 1.0), (3, 2, 1.0)],
            vec![(2, 2, 1.0)],
        ];
        let mut total = vec![0.0; 3];
        for s in 0..4 {
            for (t, v) in total.iter_mut().zip(single_source(&adjacency, 3, s)) {
                *t += v;
            }
        }
        // Ordered pairs through each edge: 0-1 carries 3 pairs each way, 1-2 carries 4.
        assert_eq!(total, vec![6.0, 8.0, 6.0]);
    }

    /// Two equal routes share the flow: a square 0-1-2, 0-3-2.
    #[test]
    fn equal_paths_split_the_dependency() {
        let adjacency = vec![
            vec![(1, 0, 1.0), (3, 3, 1.0)],
            vec![(0, 0, 1.0), (2, 1, 1.0)],
            vec![(1, 1, 1.0), (3, 2, 1.0)],
            vec![(2, 2, 1.0), (0, 3, 1.0)],
        ];
        let from0 = single_source(&adjacency, 4, 0);
        // 0 -> 2 splits half over each side; 0 -> 1 and 0 -> 3 use their own edge.
        assert_eq!(from0, vec![1.5, 0.5, 0.5, 1.5]);
    }
}
