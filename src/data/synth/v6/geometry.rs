//! Oriented rectangles: footprints, lots and the blocks they are cut from.

/// An oriented rectangle: centre, unit axis along its length, half length and half width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub c: [f64; 2],
    pub axis: [f64; 2],
    pub half: [f64; 2],
}

impl Rect {
    /// The point's coordinates in the rectangle's frame (along, across).
    pub fn local(&self, p: [f64; 2]) -> [f64; 2] {
        let d = [p[0] - self.c[0], p[1] - self.c[1]];
        [
            d[0] * self.axis[0] + d[1] * self.axis[1],
            -d[0] * self.axis[1] + d[1] * self.axis[0],
        ]
    }

    pub fn contains(&self, p: [f64; 2]) -> bool {
        let l = self.local(p);
        l[0].abs() <= self.half[0] && l[1].abs() <= self.half[1]
    }

    /// Half extents of the axis-aligned bounding box.
    pub fn bbox_half(&self) -> [f64; 2] {
        let (ax, ay) = (self.axis[0].abs(), self.axis[1].abs());
        [
            self.half[0] * ax + self.half[1] * ay,
            self.half[0] * ay + self.half[1] * ax,
        ]
    }

    pub fn area(&self) -> f64 {
        4.0 * self.half[0] * self.half[1]
    }

    /// The point at (along, across) in the rectangle's frame.
    pub fn at(&self, along: f64, across: f64) -> [f64; 2] {
        [
            self.c[0] + along * self.axis[0] - across * self.axis[1],
            self.c[1] + along * self.axis[1] + across * self.axis[0],
        ]
    }

    pub fn sub(&self, along: f64, across: f64, half: [f64; 2]) -> Rect {
        Rect {
            c: self.at(along, across),
            axis: self.axis,
            half,
        }
    }

    /// Whether the segment from `p` to `p + len·dir` meets the rectangle (slab method in the
    /// rectangle's frame): e.g. the point is in the shadow of a prism on it.
    pub fn meets_segment(&self, p: [f64; 2], dir: [f64; 2], len: f64) -> bool {
        let r = self;
        let l = r.local(p);
        let d = [
            dir[0] * r.axis[0] + dir[1] * r.axis[1],
            -dir[0] * r.axis[1] + dir[1] * r.axis[0],
        ];
        let (mut t0, mut t1) = (0.0f64, len);
        for k in 0..2 {
            if d[k].abs() < 1e-12 {
                if l[k].abs() > r.half[k] {
                    return false;
                }
            } else {
                let (a, b) = ((-r.half[k] - l[k]) / d[k], (r.half[k] - l[k]) / d[k]);
                let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                t0 = t0.max(lo);
                t1 = t1.min(hi);
                if t0 > t1 {
                    return false;
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_meets_a_rectangle_only_when_it_reaches_it() {
        let r = Rect {
            c: [0.0, 0.0],
            axis: [1.0, 0.0],
            half: [5.0, 2.0],
        };
        assert!(r.meets_segment([0.0, 10.0], [0.0, -1.0], 9.0));
        assert!(!r.meets_segment([0.0, 10.0], [0.0, -1.0], 7.0));
        assert!(!r.meets_segment([6.0, 10.0], [0.0, -1.0], 20.0));
        assert!(r.meets_segment([1.0, 1.0], [1.0, 0.0], 0.0));
        // Turned by 45°: on the x axis it reaches x = 2 × √2 ≈ 2.83 (its short half-width).
        let h = std::f64::consts::FRAC_1_SQRT_2;
        let turned = Rect { axis: [h, h], ..r };
        assert!(turned.meets_segment([10.0, 0.0], [-1.0, 0.0], 7.2));
        assert!(!turned.meets_segment([10.0, 0.0], [-1.0, 0.0], 7.1));
        assert!(turned.contains([3.0, 3.0]) && !r.contains([3.0, 3.0]));
    }
}
