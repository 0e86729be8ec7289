//! A pinhole camera.

use crate::accel::Ray;
use crate::math::Vec3;

/// A pinhole camera with an orthonormal basis and a vertical field of view.
#[derive(Clone, Debug, PartialEq)]
pub struct Camera {
    pub position: Vec3,
    pub forward: Vec3,
    pub up: Vec3,
    pub right: Vec3,
    /// `tan(fov_y / 2)`.
    pub tan_half_fov_y: f32,
    /// Width / height.
    pub aspect: f32,
}

impl Camera {
    /// Builds a camera from an orthonormal basis.
    pub fn look(
        position: Vec3,
        forward: Vec3,
        up: Vec3,
        right: Vec3,
        tan_half_fov_y: f32,
        aspect: f32,
    ) -> Camera {
        Camera {
            position,
            forward: forward.normalized(),
            up: up.normalized(),
            right: right.normalized(),
            tan_half_fov_y,
            aspect,
        }
    }

    /// The ray through film position `(fx, fy)` in pixels (origin top-left, y down) of a
    /// `width x height` image.
    pub fn ray(&self, fx: f32, fy: f32, width: u32, height: u32) -> Ray {
        let sx = (2.0 * fx / width as f32 - 1.0) * self.tan_half_fov_y * self.aspect;
        let sy = (1.0 - 2.0 * fy / height as f32) * self.tan_half_fov_y;
        let dir = (self.forward + self.right * sx + self.up * sy).normalized();
        Ray::new(self.position, dir)
    }

    /// Normalised screen coordinates (-1..1 across the frame) of a world point in front of the
    /// camera; `None` behind it.
    pub fn project(&self, p: Vec3) -> Option<(f32, f32)> {
        let v = p - self.position;
        let z = v.dot(self.forward);
        if z <= 0.0 {
            return None;
        }
        let x = v.dot(self.right) / z / (self.tan_half_fov_y * self.aspect);
        let y = v.dot(self.up) / z / self.tan_half_fov_y;
        Some((x, y))
    }
}
