//! Ray/scene intersection: Embree for rendering, a brute-force reference for tests.

pub mod embree;

pub use embree::{AccelOptions, EmbreeAccel};

use crate::math::Vec3;
use crate::scene::Scene;

/// A ray segment `origin + t * dir` for `t` in `[t_min, t_max)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ray {
    pub origin: Vec3,
    pub dir: Vec3,
    pub t_min: f32,
    pub t_max: f32,
}

impl Ray {
    pub fn new(origin: Vec3, dir: Vec3) -> Ray {
        Ray {
            origin,
            dir,
            t_min: 0.0,
            t_max: f32::INFINITY,
        }
    }
    pub fn at(&self, t: f32) -> Vec3 {
        self.origin + self.dir * t
    }
}

/// The closest intersection: which instance and triangle, where along the ray, and the
/// barycentric coordinates `(u, v)` of the hit (weights of vertices 1 and 2).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    pub t: f32,
    pub u: f32,
    pub v: f32,
    pub instance: u32,
    pub triangle: u32,
}

/// Acceleration structure failures.
#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    #[error("embree: {0}")]
    Device(String),
}

/// Reference intersector that tests every triangle of every instance in world space; slow, but
/// obviously right, which is what the property tests compare Embree against.
pub struct BruteForce<'a> {
    scene: &'a Scene,
}

impl<'a> BruteForce<'a> {
    pub fn new(scene: &'a Scene) -> BruteForce<'a> {
        BruteForce { scene }
    }

    /// Closest hit by exhaustive search.
    pub fn intersect(&self, ray: &Ray) -> Option<Hit> {
        let mut best: Option<Hit> = None;
        let mut t_max = ray.t_max;
        for (inst_idx, inst) in self.scene.instances.iter().enumerate() {
            let mesh = &self.scene.meshes[inst.mesh];
            for (tri_idx, tri) in mesh.triangles.iter().enumerate() {
                let [a, b, c] = tri.map(|i| {
                    inst.transform
                        .transform_point(Vec3::from_array(mesh.positions[i as usize]))
                });
                if let Some((t, u, v)) = intersect_triangle(ray, a, b, c) {
                    if t >= ray.t_min && t < t_max {
                        t_max = t;
                        best = Some(Hit {
                            t,
                            u,
                            v,
                            instance: inst_idx as u32,
                            triangle: tri_idx as u32,
                        });
                    }
                }
            }
        }
        best
    }
}

/// Möller–Trumbore ray/triangle test returning `(t, u, v)`; two-sided.
pub fn intersect_triangle(ray: &Ray, a: Vec3, b: Vec3, c: Vec3) -> Option<(f32, f32, f32)> {
    let e1 = b - a;
    let e2 = c - a;
    let p = ray.dir.cross(e2);
    let det = e1.dot(p);
    if det.abs() < 1e-20 {
        return None;
    }
    let inv = 1.0 / det;
    let s = ray.origin - a;
    let u = s.dot(p) * inv;
    if !(0.0..=1.0).contains(&u) {
        return None;
    }
    let q = s.cross(e1);
    let v = ray.dir.dot(q) * inv;
    if v < 0.0 || u + v > 1.0 {
        return None;
    }
    let t = e2.dot(q) * inv;
    Some((t, u, v))
}
