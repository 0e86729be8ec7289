//! Triangle meshes for USD's implicit surfaces (`Cube`, `Sphere`, `Cylinder`, `Cylinder_1`,
//! `Cone`, `Capsule`, `Capsule_1`, `Plane`), with the schema's fallback sizes and axes.
//!
//! Each shape is built along +Z and turned onto its `axis` by a cyclic permutation of the
//! coordinates (which keeps the winding). Curved shapes use enough segments to look round at
//! full-frame sizes, and always place vertices at the shape's extremes, so the mesh's bounds are
//! the shape's exact extent (what usd-core's bounding-box cache reports).

use crate::math::Vec3;

/// Segments around a round shape; a multiple of 4, so vertices sit on both axes.
const AROUND: usize = 64;
/// Rings from pole to pole of a sphere (even, so one ring is the equator).
const SPHERE_RINGS: usize = 32;
/// Rings in each hemisphere of a capsule.
const CAP_RINGS: usize = 16;

/// An implicit surface with its dimensions (already the schema's fallbacks where not authored).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Gprim {
    Cube {
        size: f64,
    },
    Sphere {
        radius: f64,
    },
    /// A cylinder or (with different radii) a truncated cone, `Cylinder_1` style.
    Cylinder {
        radius_bottom: f64,
        radius_top: f64,
        height: f64,
        axis: Axis,
    },
    Cone {
        radius: f64,
        height: f64,
        axis: Axis,
    },
    /// `height` is the length of the cylindrical part; the caps add a radius at each end.
    Capsule {
        radius_bottom: f64,
        radius_top: f64,
        height: f64,
        axis: Axis,
    },
    /// Double-sided rectangle: `width` and `length` along the two axes across `axis`.
    Plane {
        width: f64,
        length: f64,
        axis: Axis,
    },
}

/// A shape's main axis (UsdGeom `axis`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Axis {
    X,
    Y,
    #[default]
    Z,
}

impl Axis {
    /// The axis a token names, `None` for anything but `X`, `Y` and `Z`.
    pub fn from_token(token: &str) -> Option<Axis> {
        match token {
            "X" => Some(Axis::X),
            "Y" => Some(Axis::Y),
            "Z" => Some(Axis::Z),
            _ => None,
        }
    }

    /// Turns a point built along +Z onto this axis (a cyclic permutation: no mirroring).
    fn place(self, p: [f32; 3]) -> [f32; 3] {
        let [a, b, c] = p;
        match self {
            Axis::Z => [a, b, c],
            Axis::X => [c, a, b],
            Axis::Y => [b, c, a],
        }
    }
}

/// A triangulated shape: positions, smooth (or per-face) normals and triangles.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tessellation {
    pub positions: Vec<[f32; 3]>,
    pub normals: Vec<[f32; 3]>,
    pub triangles: Vec<[u32; 3]>,
}

impl Tessellation {
    fn vertex(&mut self, axis: Axis, p: [f64; 3], n: [f64; 3]) -> u32 {
        let p = p.map(|v| v as f32);
        let n = Vec3::from_array(n.map(|v| v as f32));
        let n = if n.length_squared() > 0.0 {
            n.normalized().to_array()
        } else {
            [0.0, 0.0, 1.0]
        };
        self.positions.push(axis.place(p));
        self.normals.push(axis.place(n));
        (self.positions.len() - 1) as u32
    }

    /// A quad `a b c d` (counter-clockwise seen from outside) as two triangles.
    fn quad(&mut self, a: u32, b: u32, c: u32, d: u32) {
        self.triangles.push([a, b, c]);
        self.triangles.push([a, c, d]);
    }
}

impl Gprim {
    /// True when every dimension is finite and none is negative (a zero size draws nothing).
    pub fn is_valid(&self) -> bool {
        let dims: &[f64] = match self {
            Gprim::Cube { size } => &[*size],
            Gprim::Sphere { radius } => &[*radius],
            Gprim::Cylinder {
                radius_bottom,
                radius_top,
                height,
                ..
            }
            | Gprim::Capsule {
                radius_bottom,
                radius_top,
                height,
                ..
            } => &[*radius_bottom, *radius_top, *height],
            Gprim::Cone { radius, height, .. } => &[*radius, *height],
            Gprim::Plane { width, length, .. } => &[*width, *length],
        };
        dims.iter().all(|d| d.is_finite() && *d >= 0.0)
    }

    /// The triangles of the shape, counter-clockwise seen from outside (USD's default
    /// right-handed orientation).
    pub fn tessellate(&self) -> Tessellation {
        let mut t = Tessellation::default();
        match *self {
            Gprim::Cube { size } => cube(&mut t, size / 2.0),
            Gprim::Sphere { radius } => {
                capsule(&mut t, Axis::Z, radius, radius, 0.0, SPHERE_RINGS / 2)
            }
            Gprim::Cylinder {
                radius_bottom,
                radius_top,
                height,
                axis,
            } => frustum(&mut t, axis, radius_bottom, radius_top, height),
            Gprim::Cone {
                radius,
                height,
                axis,
            } => frustum(&mut t, axis, radius, 0.0, height),
            Gprim::Capsule {
                radius_bottom,
                radius_top,
                height,
                axis,
            } => capsule(&mut t, axis, radius_bottom, radius_top, height, CAP_RINGS),
            Gprim::Plane {
                width,
                length,
                axis,
            } => {
                let (w, l) = (width / 2.0, length / 2.0);
                // UsdGeomPlane: axis X spans z (width) and y (length), Y spans x and z, Z spans
                // x and y. Built along +Z as (u, v) then placed; for X and Y the cyclic turn
                // maps (u, v) to (y, z) and (z, x), so the half sizes are swapped to match.
                let (hu, hv) = match axis {
                    Axis::Z => (w, l),
                    Axis::X => (l, w),
                    Axis::Y => (l, w),
                };
                let n = [0.0, 0.0, 1.0];
                let a = t.vertex(axis, [-hu, -hv, 0.0], n);
                let b = t.vertex(axis, [hu, -hv, 0.0], n);
                let c = t.vertex(axis, [hu, hv, 0.0], n);
                let d = t.vertex(axis, [-hu, hv, 0.0], n);
                t.quad(a, b, c, d);
            }
        }
        t
    }
}

fn cube(t: &mut Tessellation, h: f64) {
    // Each face: its normal and two in-plane axes (u x v = normal).
    let faces: [([f64; 3], [f64; 3], [f64; 3]); 6] = [
        ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]),
        ([-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]),
        ([0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]),
        ([0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]),
        ([0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
        ([0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]),
    ];
    for (n, u, v) in faces {
        let corner = |su: f64, sv: f64| -> [f64; 3] {
            [0, 1, 2].map(|i| (n[i] + su * u[i] + sv * v[i]) * h)
        };
        let a = t.vertex(Axis::Z, corner(-1.0, -1.0), n);
        let b = t.vertex(Axis::Z, corner(1.0, -1.0), n);
        let c = t.vertex(Axis::Z, corner(1.0, 1.0), n);
        let d = t.vertex(Axis::Z, corner(-1.0, 1.0), n);
        t.quad(a, b, c, d);
    }
}

fn around(i: usize) -> (f64, f64) {
    let phi = std::f64::consts::TAU * (i % AROUND) as f64 / AROUND as f64;
    (phi.cos(), phi.sin())
}

/// A cylinder between `z = -height/2` (radius `rb`) and `z = height/2` (radius `rt`), capped.
fn frustum(t: &mut Tessellation, axis: Axis, rb: f64, rt: f64, height: f64) {
    let h = height / 2.0;
    // The side's normal leans by the slope of the silhouette.
    let slope = if height > 0.0 {
        (rb - rt) / height
    } else {
        0.0
    };
    let mut bottom = Vec::with_capacity(AROUND + 1);
    let mut top = Vec::with_capacity(AROUND + 1);
    for i in 0..=AROUND {
        let (c, s) = around(i);
        let n = [c, s, slope];
        bottom.push(t.vertex(axis, [rb * c, rb * s, -h], n));
        top.push(t.vertex(axis, [rt * c, rt * s, h], n));
    }
    for i in 0..AROUND {
        t.quad(bottom[i], bottom[i + 1], top[i + 1], top[i]);
    }
    for (z, r, up) in [(-h, rb, -1.0), (h, rt, 1.0)] {
        if r <= 0.0 {
            continue;
        }
        let n = [0.0, 0.0, up];
        let centre = t.vertex(axis, [0.0, 0.0, z], n);
        let ring: Vec<u32> = (0..=AROUND)
            .map(|i| {
                let (c, s) = around(i);
                t.vertex(axis, [r * c, r * s, z], n)
            })
            .collect();
        for i in 0..AROUND {
            if up > 0.0 {
                t.triangles.push([centre, ring[i], ring[i + 1]]);
            } else {
                t.triangles.push([centre, ring[i + 1], ring[i]]);
            }
        }
    }
}

/// Two hemispheres of radius `rb` (bottom) and `rt` (top) joined by a cylindrical part of
/// length `height`; with `height = 0` and equal radii, a sphere.
fn capsule(t: &mut Tessellation, axis: Axis, rb: f64, rt: f64, height: f64, rings: usize) {
    let h = height / 2.0;
    // Rows of vertices from the bottom pole to the top pole.
    let mut rows: Vec<Vec<u32>> = Vec::new();
    for hemisphere in [-1.0f64, 1.0] {
        let (r, z0) = if hemisphere < 0.0 { (rb, -h) } else { (rt, h) };
        for k in 0..=rings {
            // Bottom: from the pole (theta = -90 degrees) up to the equator; top: from the
            // equator up to the pole.
            let frac = k as f64 / rings as f64;
            let theta = if hemisphere < 0.0 {
                -std::f64::consts::FRAC_PI_2 * (1.0 - frac)
            } else {
                std::f64::consts::FRAC_PI_2 * frac
            };
            if hemisphere > 0.0 && k == 0 && height == 0.0 && rb == rt {
                // A sphere: the two equators are the same ring.
                continue;
            }
            // Exactly on the axis at the poles, so the pole's vertices coincide.
            let at_pole = (hemisphere < 0.0 && k == 0) || (hemisphere > 0.0 && k == rings);
            let (ct, st) = if at_pole {
                (0.0, hemisphere)
            } else {
                (theta.cos(), theta.sin())
            };
            let row = (0..=AROUND)
                .map(|i| {
                    let (c, s) = around(i);
                    let n = [ct * c, ct * s, st];
                    t.vertex(axis, [r * ct * c, r * ct * s, z0 + r * st], n)
                })
                .collect();
            rows.push(row);
        }
    }
    for pair in rows.windows(2) {
        let (lo, hi) = (&pair[0], &pair[1]);
        for i in 0..AROUND {
            let (a, b, c, d) = (lo[i], lo[i + 1], hi[i + 1], hi[i]);
            // Skip the degenerate triangles at the poles.
            if t.positions[a as usize] != t.positions[b as usize] {
                t.triangles.push([a, b, c]);
            }
            if t.positions[c as usize] != t.positions[d as usize] {
                t.triangles.push([a, c, d]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(t: &Tessellation) -> ([f32; 3], [f32; 3]) {
        let mut lo = [f32::MAX; 3];
        let mut hi = [f32::MIN; 3];
        for p in &t.positions {
            for i in 0..3 {
                lo[i] = lo[i].min(p[i]);
                hi[i] = hi[i].max(p[i]);
            }
        }
        (lo, hi)
    }

    fn close(a: [f32; 3], b: [f32; 3]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    /// Sum over triangles of the signed volume they close with the origin: positive when every
    /// triangle faces outwards.
    fn volume(t: &Tessellation) -> f64 {
        t.triangles
            .iter()
            .map(|tri| {
                let [a, b, c] = tri.map(|i| Vec3::from_array(t.positions[i as usize]));
                a.dot(b.cross(c)) as f64 / 6.0
            })
            .sum()
    }

    #[test]
    fn shapes_fill_their_extent_and_face_outwards() {
        let pi = std::f64::consts::PI;
        let cases = [
            (
                Gprim::Cube { size: 2.0 },
                [-1.0, -1.0, -1.0],
                [1.0, 1.0, 1.0],
                8.0,
            ),
            (
                Gprim::Sphere { radius: 2.0 },
                [-2.0; 3],
                [2.0; 3],
                4.0 / 3.0 * pi * 8.0,
            ),
            (
                Gprim::Cylinder {
                    radius_bottom: 1.0,
                    radius_top: 1.0,
                    height: 2.0,
                    axis: Axis::Z,
                },
                [-1.0, -1.0, -1.0],
                [1.0, 1.0, 1.0],
                2.0 * pi,
            ),
            (
                Gprim::Cone {
                    radius: 1.0,
                    height: 2.0,
                    axis: Axis::Y,
                },
                [-1.0, -1.0, -1.0],
                [1.0, 1.0, 1.0],
                2.0 * pi / 3.0,
            ),
            (
                Gprim::Capsule {
                    radius_bottom: 0.5,
                    radius_top: 0.5,
                    height: 1.0,
                    axis: Axis::X,
                },
                [-1.0, -0.5, -0.5],
                [1.0, 0.5, 0.5],
                pi * 0.25 + 4.0 / 3.0 * pi * 0.125,
            ),
        ];
        for (shape, lo, hi, exact_volume) in cases {
            let t = shape.tessellate();
            let (blo, bhi) = bounds(&t);
            assert!(
                close(blo, lo) && close(bhi, hi),
                "{shape:?}: {blo:?} {bhi:?}"
            );
            let v = volume(&t);
            assert!(
                (v - exact_volume).abs() < 0.01 * exact_volume,
                "{shape:?}: volume {v} vs {exact_volume}"
            );
            assert_eq!(t.normals.len(), t.positions.len());
        }
    }

    #[test]
    fn planes_span_width_and_length_across_their_axis() {
        let plane = |axis| {
            bounds(
                &Gprim::Plane {
                    width: 2.0,
                    length: 4.0,
                    axis,
                }
                .tessellate(),
            )
        };
        assert_eq!(plane(Axis::Z), ([-1.0, -2.0, 0.0], [1.0, 2.0, 0.0]));
        assert_eq!(plane(Axis::X), ([0.0, -2.0, -1.0], [0.0, 2.0, 1.0]));
        assert_eq!(plane(Axis::Y), ([-1.0, 0.0, -2.0], [1.0, 0.0, 2.0]));
    }
}
