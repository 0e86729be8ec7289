//! Small linear-algebra kit: 3-vectors, affine transforms and bounding boxes.
//!
//! The renderer needs only a handful of operations, so they live here instead of pulling in a
//! general-purpose math crate.

use std::ops::{Add, AddAssign, Div, Index, Mul, MulAssign, Neg, Sub};

/// A 3-component `f32` vector used for points, directions and RGB colours.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Vec3 {
    pub x: f32,
    pub y: f32,
    pub z: f32,
}

impl Vec3 {
    pub const ZERO: Vec3 = Vec3::new(0.0, 0.0, 0.0);
    pub const ONE: Vec3 = Vec3::new(1.0, 1.0, 1.0);

    pub const fn new(x: f32, y: f32, z: f32) -> Vec3 {
        Vec3 { x, y, z }
    }
    pub const fn splat(v: f32) -> Vec3 {
        Vec3::new(v, v, v)
    }
    pub fn from_array(a: [f32; 3]) -> Vec3 {
        Vec3::new(a[0], a[1], a[2])
    }
    pub fn to_array(self) -> [f32; 3] {
        [self.x, self.y, self.z]
    }
    pub fn dot(self, o: Vec3) -> f32 {
        self.x * o.x + self.y * o.y + self.z * o.z
    }
    pub fn cross(self, o: Vec3) -> Vec3 {
        Vec3::new(
            self.y * o.z - self.z * o.y,
            self.z * o.x - self.x * o.z,
            self.x * o.y - self.y * o.x,
        )
    }
    pub fn length_squared(self) -> f32 {
        self.dot(self)
    }
    pub fn length(self) -> f32 {
        self.length_squared().sqrt()
    }
    /// Returns the unit vector, or zero for a zero-length input.
    pub fn normalized(self) -> Vec3 {
        let len = self.length();
        if len > 0.0 {
            self / len
        } else {
            Vec3::ZERO
        }
    }
    pub fn mul_elem(self, o: Vec3) -> Vec3 {
        Vec3::new(self.x * o.x, self.y * o.y, self.z * o.z)
    }
    pub fn min(self, o: Vec3) -> Vec3 {
        Vec3::new(self.x.min(o.x), self.y.min(o.y), self.z.min(o.z))
    }
    pub fn max(self, o: Vec3) -> Vec3 {
        Vec3::new(self.x.max(o.x), self.y.max(o.y), self.z.max(o.z))
    }
    pub fn max_component(self) -> f32 {
        self.x.max(self.y).max(self.z)
    }
    pub fn abs(self) -> Vec3 {
        Vec3::new(self.x.abs(), self.y.abs(), self.z.abs())
    }
    /// Rec. 709 luminance of a linear RGB colour.
    pub fn luminance(self) -> f32 {
        0.2126 * self.x + 0.7152 * self.y + 0.0722 * self.z
    }
    pub fn is_finite(self) -> bool {
        self.x.is_finite() && self.y.is_finite() && self.z.is_finite()
    }
    pub fn lerp(self, o: Vec3, t: f32) -> Vec3 {
        self + (o - self) * t
    }
    /// Builds an orthonormal basis `(tangent, bitangent)` around the unit vector `self`.
    ///
    /// Uses the branchless construction of Duff et al. 2017 ("Building an Orthonormal Basis, Revisited").
    pub fn orthonormal_basis(self) -> (Vec3, Vec3) {
        let sign = 1.0f32.copysign(self.z);
        let a = -1.0 / (sign + self.z);
        let b = self.x * self.y * a;
        let t = Vec3::new(1.0 + sign * self.x * self.x * a, sign * b, -sign * self.x);
        let bt = Vec3::new(b, sign + self.y * self.y * a, -self.y);
        (t, bt)
    }
}

impl Add for Vec3 {
    type Output = Vec3;
    fn add(self, o: Vec3) -> Vec3 {
        Vec3::new(self.x + o.x, self.y + o.y, self.z + o.z)
    }
}
impl AddAssign for Vec3 {
    fn add_assign(&mut self, o: Vec3) {
        *self = *self + o;
    }
}
impl Sub for Vec3 {
    type Output = Vec3;
    fn sub(self, o: Vec3) -> Vec3 {
        Vec3::new(self.x - o.x, self.y - o.y, self.z - o.z)
    }
}
impl Mul<f32> for Vec3 {
    type Output = Vec3;
    fn mul(self, s: f32) -> Vec3 {
        Vec3::new(self.x * s, self.y * s, self.z * s)
    }
}
impl Mul<Vec3> for f32 {
    type Output = Vec3;
    fn mul(self, v: Vec3) -> Vec3 {
        v * self
    }
}
impl MulAssign<f32> for Vec3 {
    fn mul_assign(&mut self, s: f32) {
        *self = *self * s;
    }
}
impl Div<f32> for Vec3 {
    type Output = Vec3;
    fn div(self, s: f32) -> Vec3 {
        self * (1.0 / s)
    }
}
impl Neg for Vec3 {
    type Output = Vec3;
    fn neg(self) -> Vec3 {
        Vec3::new(-self.x, -self.y, -self.z)
    }
}
impl Index<usize> for Vec3 {
    type Output = f32;
    fn index(&self, i: usize) -> &f32 {
        match i {
            0 => &self.x,
            1 => &self.y,
            _ => &self.z,
        }
    }
}

/// An affine transform stored as a 3x4 row-major matrix (rotation/scale block plus translation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    /// Rows of the matrix; `rows[i][3]` is the translation component `i`.
    pub rows: [[f32; 4]; 3],
}

impl Default for Affine {
    fn default() -> Self {
        Affine::IDENTITY
    }
}

impl Affine {
    pub const IDENTITY: Affine = Affine {
        rows: [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ],
    };

    /// Builds a transform from a glTF-style column-major 4x4 matrix.
    pub fn from_cols_4x4(m: [[f32; 4]; 4]) -> Affine {
        Affine {
            rows: [
                [m[0][0], m[1][0], m[2][0], m[3][0]],
                [m[0][1], m[1][1], m[2][1], m[3][1]],
                [m[0][2], m[1][2], m[2][2], m[3][2]],
            ],
        }
    }

    /// Returns the column-major 4x4 form used by glTF.
    pub fn to_cols_4x4(&self) -> [[f32; 4]; 4] {
        let r = &self.rows;
        [
            [r[0][0], r[1][0], r[2][0], 0.0],
            [r[0][1], r[1][1], r[2][1], 0.0],
            [r[0][2], r[1][2], r[2][2], 0.0],
            [r[0][3], r[1][3], r[2][3], 1.0],
        ]
    }

    pub fn translation(t: Vec3) -> Affine {
        let mut a = Affine::IDENTITY;
        a.rows[0][3] = t.x;
        a.rows[1][3] = t.y;
        a.rows[2][3] = t.z;
        a
    }

    pub fn scale(s: Vec3) -> Affine {
        let mut a = Affine::IDENTITY;
        a.rows[0][0] = s.x;
        a.rows[1][1] = s.y;
        a.rows[2][2] = s.z;
        a
    }

    /// Rotation by `angle` radians about the Y axis.
    pub fn rotation_y(angle: f32) -> Affine {
        let (s, c) = angle.sin_cos();
        Affine {
            rows: [[c, 0.0, s, 0.0], [0.0, 1.0, 0.0, 0.0], [-s, 0.0, c, 0.0]],
        }
    }

    /// Rotation by `angle` radians about the X axis.
    pub fn rotation_x(angle: f32) -> Affine {
        let (s, c) = angle.sin_cos();
        Affine {
            rows: [[1.0, 0.0, 0.0, 0.0], [0.0, c, -s, 0.0], [0.0, s, c, 0.0]],
        }
    }

    /// Builds the transform of glTF's translation, rotation (quaternion xyzw) and scale.
    pub fn from_trs(t: [f32; 3], q: [f32; 4], s: [f32; 3]) -> Affine {
        let [x, y, z, w] = q;
        let rot = [
            [
                1.0 - 2.0 * (y * y + z * z),
                2.0 * (x * y - z * w),
                2.0 * (x * z + y * w),
            ],
            [
                2.0 * (x * y + z * w),
                1.0 - 2.0 * (x * x + z * z),
                2.0 * (y * z - x * w),
            ],
            [
                2.0 * (x * z - y * w),
                2.0 * (y * z + x * w),
                1.0 - 2.0 * (x * x + y * y),
            ],
        ];
        let mut rows = [[0.0; 4]; 3];
        for i in 0..3 {
            for j in 0..3 {
                rows[i][j] = rot[i][j] * s[j];
            }
            rows[i][3] = t[i];
        }
        Affine { rows }
    }

    /// Composition `self * other` (apply `other` first).
    pub fn mul(&self, other: &Affine) -> Affine {
        let a = &self.rows;
        let b = &other.rows;
        let mut rows = [[0.0; 4]; 3];
        for (i, row) in rows.iter_mut().enumerate() {
            for (j, cell) in row.iter_mut().enumerate() {
                let mut v = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
                if j == 3 {
                    v += a[i][3];
                }
                *cell = v;
            }
        }
        Affine { rows }
    }

    pub fn transform_point(&self, p: Vec3) -> Vec3 {
        let r = &self.rows;
        Vec3::new(
            r[0][0] * p.x + r[0][1] * p.y + r[0][2] * p.z + r[0][3],
            r[1][0] * p.x + r[1][1] * p.y + r[1][2] * p.z + r[1][3],
            r[2][0] * p.x + r[2][1] * p.y + r[2][2] * p.z + r[2][3],
        )
    }

    pub fn transform_vector(&self, v: Vec3) -> Vec3 {
        let r = &self.rows;
        Vec3::new(
            r[0][0] * v.x + r[0][1] * v.y + r[0][2] * v.z,
            r[1][0] * v.x + r[1][1] * v.y + r[1][2] * v.z,
            r[2][0] * v.x + r[2][1] * v.y + r[2][2] * v.z,
        )
    }

    fn determinant3(&self) -> f32 {
        let m = &self.rows;
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    }

    /// Inverse-transpose of the 3x3 block, used to transform normals. Returns `None` when singular.
    pub fn normal_matrix(&self) -> Option<[[f32; 3]; 3]> {
        let m = &self.rows;
        let det = self.determinant3();
        if det.abs() < 1e-30 || !det.is_finite() {
            return None;
        }
        let inv_det = 1.0 / det;
        // The cofactor matrix divided by the determinant is the inverse transpose.
        let c = |r0: usize, c0: usize, r1: usize, c1: usize| {
            m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0]
        };
        Some([
            [
                c(1, 1, 2, 2) * inv_det,
                -c(1, 0, 2, 2) * inv_det,
                c(1, 0, 2, 1) * inv_det,
            ],
            [
                -c(0, 1, 2, 2) * inv_det,
                c(0, 0, 2, 2) * inv_det,
                -c(0, 0, 2, 1) * inv_det,
            ],
            [
                c(0, 1, 1, 2) * inv_det,
                -c(0, 0, 1, 2) * inv_det,
                c(0, 0, 1, 1) * inv_det,
            ],
        ])
    }

    pub fn is_finite(&self) -> bool {
        self.rows.iter().flatten().all(|v| v.is_finite())
    }
}

/// Applies a 3x3 matrix (as from [`Affine::normal_matrix`]) to a vector.
pub fn mat3_mul(m: &[[f32; 3]; 3], v: Vec3) -> Vec3 {
    Vec3::new(
        m[0][0] * v.x + m[0][1] * v.y + m[0][2] * v.z,
        m[1][0] * v.x + m[1][1] * v.y + m[1][2] * v.z,
        m[2][0] * v.x + m[2][1] * v.y + m[2][2] * v.z,
    )
}

/// An axis-aligned bounding box; `Aabb::EMPTY` is the identity for [`Aabb::union`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Aabb {
    pub min: Vec3,
    pub max: Vec3,
}

impl Default for Aabb {
    fn default() -> Self {
        Aabb::EMPTY
    }
}

impl Aabb {
    pub const EMPTY: Aabb = Aabb {
        min: Vec3::splat(f32::INFINITY),
        max: Vec3::splat(f32::NEG_INFINITY),
    };

    pub fn is_empty(&self) -> bool {
        self.min.x > self.max.x || self.min.y > self.max.y || self.min.z > self.max.z
    }
    pub fn grow(&mut self, p: Vec3) {
        self.min = self.min.min(p);
        self.max = self.max.max(p);
    }
    pub fn union(&self, o: &Aabb) -> Aabb {
        Aabb {
            min: self.min.min(o.min),
            max: self.max.max(o.max),
        }
    }
    pub fn center(&self) -> Vec3 {
        (self.min + self.max) * 0.5
    }
    pub fn diagonal(&self) -> Vec3 {
        self.max - self.min
    }
    /// The eight corner points.
    pub fn corners(&self) -> [Vec3; 8] {
        let (a, b) = (self.min, self.max);
        [
            Vec3::new(a.x, a.y, a.z),
            Vec3::new(b.x, a.y, a.z),
            Vec3::new(a.x, b.y, a.z),
            Vec3::new(b.x, b.y, a.z),
            Vec3::new(a.x, a.y, b.z),
            Vec3::new(b.x, a.y, b.z),
            Vec3::new(a.x, b.y, b.z),
            Vec3::new(b.x, b.y, b.z),
        ]
    }
    /// Slab test: does the segment `origin + t * dir`, `t` in `[t_min, t_max]`, touch the box?
    pub fn hit_by(&self, origin: Vec3, dir: Vec3, t_min: f32, t_max: f32) -> bool {
        let mut t0 = t_min;
        let mut t1 = t_max;
        for axis in 0..3 {
            let inv = 1.0 / dir[axis];
            let mut near = (self.min[axis] - origin[axis]) * inv;
            let mut far = (self.max[axis] - origin[axis]) * inv;
            if near > far {
                std::mem::swap(&mut near, &mut far);
            }
            // NaN (0 * inf for a ray in the slab plane) compares false and keeps the bound.
            if near > t0 {
                t0 = near;
            }
            if far < t1 {
                t1 = far;
            }
            if t0 > t1 {
                return false;
            }
        }
        true
    }

    /// Bounds of this box after an affine transform.
    pub fn transformed(&self, xf: &Affine) -> Aabb {
        let mut out = Aabb::EMPTY;
        for c in self.corners() {
            out.grow(xf.transform_point(c));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trs_matches_composition() {
        let q_half = (std::f32::consts::FRAC_PI_4).sin();
        // 90 degrees about Y.
        let xf = Affine::from_trs([1.0, 2.0, 3.0], [0.0, q_half, 0.0, q_half], [2.0, 2.0, 2.0]);
        let p = xf.transform_point(Vec3::new(1.0, 0.0, 0.0));
        assert!((p - Vec3::new(1.0, 2.0, 1.0)).length() < 1e-5, "{p:?}");
        let composed = Affine::translation(Vec3::new(1.0, 2.0, 3.0))
            .mul(&Affine::rotation_y(std::f32::consts::FRAC_PI_2))
            .mul(&Affine::scale(Vec3::splat(2.0)));
        let p2 = composed.transform_point(Vec3::new(1.0, 0.0, 0.0));
        assert!((p - p2).length() < 1e-5);
    }

    #[test]
    fn normal_matrix_keeps_normals_perpendicular() {
        let xf = Affine::scale(Vec3::new(1.0, 4.0, 1.0)).mul(&Affine::rotation_x(0.3));
        let nm = xf.normal_matrix().unwrap();
        let tangent = Vec3::new(1.0, 1.0, 0.0);
        let normal = Vec3::new(1.0, -1.0, 0.0);
        let t2 = xf.transform_vector(tangent);
        let n2 = mat3_mul(&nm, normal);
        assert!(t2.dot(n2).abs() < 1e-5);
    }

    #[test]
    fn slab_test_hits_and_misses() {
        let b = Aabb {
            min: Vec3::splat(-1.0),
            max: Vec3::splat(1.0),
        };
        let o = Vec3::new(0.0, 0.0, -5.0);
        assert!(b.hit_by(o, Vec3::new(0.0, 0.0, 1.0), 0.0, f32::INFINITY));
        assert!(!b.hit_by(o, Vec3::new(0.0, 0.0, 1.0), 0.0, 3.9));
        assert!(!b.hit_by(o, Vec3::new(0.0, 0.0, -1.0), 0.0, f32::INFINITY));
        assert!(!b.hit_by(o, Vec3::new(0.0, 1.0, 1.0).normalized(), 0.0, f32::INFINITY));
        // Axis-parallel ray inside the slab of the other axes.
        assert!(b.hit_by(
            Vec3::new(0.5, 0.5, -5.0),
            Vec3::new(0.0, 0.0, 1.0),
            0.0,
            f32::INFINITY
        ));
        assert!(!b.hit_by(
            Vec3::new(1.5, 0.5, -5.0),
            Vec3::new(0.0, 0.0, 1.0),
            0.0,
            f32::INFINITY
        ));
    }

    #[test]
    fn basis_is_orthonormal() {
        for n in [
            Vec3::new(0.0, 0.0, 1.0),
            Vec3::new(0.0, 0.0, -1.0),
            Vec3::new(0.3, -0.5, 0.2).normalized(),
        ] {
            let (t, b) = n.orthonormal_basis();
            assert!(t.dot(n).abs() < 1e-5 && b.dot(n).abs() < 1e-5 && t.dot(b).abs() < 1e-5);
            assert!((t.length() - 1.0).abs() < 1e-5 && (b.length() - 1.0).abs() < 1e-5);
        }
    }
}
