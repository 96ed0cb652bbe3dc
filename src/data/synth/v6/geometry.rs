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
}
