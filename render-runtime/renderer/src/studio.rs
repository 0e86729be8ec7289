//! The studio: camera framing, a three-light area rig, a soft environment, an optional shadow
//! catcher and the background, as plain serde data.
//!
//! A [`Studio`] says *what* the shot looks like relative to the model (angles, margins, light
//! placement in multiples of the model's bounding radius). [`Studio::resolve`] turns it into
//! world-space geometry for one scene and one turntable angle. A later Cycles engine reproduces
//! the same spec from the same data.

use serde::{Deserialize, Serialize};

use crate::camera::Camera;
use crate::math::{Aabb, Vec3};

/// Camera placement relative to the model, framed automatically from the scene bounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CameraRig {
    /// Rotation about the up axis (Y), degrees; 0 looks from +Z toward the model, positive
    /// values move the camera toward +X.
    pub yaw_deg: f32,
    /// Elevation above the horizon, degrees.
    pub pitch_deg: f32,
    /// Vertical field of view, degrees.
    pub fov_deg: f32,
    /// Empty border as a fraction of the half-frame on the tighter axis.
    pub margin: f32,
}

impl Default for CameraRig {
    fn default() -> Self {
        CameraRig {
            yaw_deg: 35.0,
            pitch_deg: 25.0,
            fov_deg: 30.0,
            margin: 0.08,
        }
    }
}

/// A square area light placed relative to the camera direction; it faces the model centre.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AreaLightSpec {
    pub name: String,
    /// Azimuth relative to the camera's yaw, degrees (positive: toward the camera's right).
    pub azimuth_deg: f32,
    /// Elevation above the horizon, degrees.
    pub elevation_deg: f32,
    /// Distance from the model centre in bounding radii.
    pub distance: f32,
    /// Edge length of the square in bounding radii.
    pub size: f32,
    /// Irradiance the light delivers at the model centre, facing it (scale-independent units).
    pub irradiance: f32,
    /// Linear RGB tint.
    pub color: [f32; 3],
}

impl Default for AreaLightSpec {
    fn default() -> Self {
        AreaLightSpec {
            name: "light".into(),
            azimuth_deg: 0.0,
            elevation_deg: 30.0,
            distance: 4.0,
            size: 2.0,
            irradiance: 1.0,
            color: [1.0, 1.0, 1.0],
        }
    }
}

/// Light arriving from infinitely far away, in linear RGB radiance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Environment {
    Uniform {
        radiance: [f32; 3],
    },
    /// Blends zenith → horizon → nadir by the direction's height.
    Gradient {
        zenith: [f32; 3],
        horizon: [f32; 3],
        nadir: [f32; 3],
    },
}

impl Default for Environment {
    fn default() -> Self {
        Environment::Gradient {
            zenith: [0.55, 0.57, 0.6],
            horizon: [0.42, 0.42, 0.42],
            nadir: [0.12, 0.12, 0.12],
        }
    }
}

impl Environment {
    /// Irradiance (linear RGB) the environment delivers to an upward-facing plane with nothing
    /// above it: the cosine-weighted integral of the upper hemisphere. For the gradient,
    /// `2 pi * integral of (h + (z - h) sqrt(mu)) mu dmu` over `mu` in 0..1 = `pi (0.2 h + 0.8 z)`.
    pub fn ground_irradiance(&self) -> Vec3 {
        match self {
            Environment::Uniform { radiance } => Vec3::from_array(*radiance) * std::f32::consts::PI,
            Environment::Gradient {
                zenith, horizon, ..
            } => {
                (Vec3::from_array(*horizon) * 0.2 + Vec3::from_array(*zenith) * 0.8)
                    * std::f32::consts::PI
            }
        }
    }

    /// Radiance arriving along `-dir` (i.e. seen when looking in direction `dir`).
    pub fn radiance(&self, dir: Vec3) -> Vec3 {
        match self {
            Environment::Uniform { radiance } => Vec3::from_array(*radiance),
            Environment::Gradient {
                zenith,
                horizon,
                nadir,
            } => {
                let y = dir.y.clamp(-1.0, 1.0);
                let h = Vec3::from_array(*horizon);
                if y >= 0.0 {
                    h.lerp(Vec3::from_array(*zenith), y.sqrt())
                } else {
                    h.lerp(Vec3::from_array(*nadir), (-y).sqrt())
                }
            }
        }
    }
}

/// A ground plane under the model that is invisible except for the shadows it catches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShadowCatcher {
    /// 0 hides the shadows, 1 shows them at full strength.
    pub opacity: f32,
}

impl Default for ShadowCatcher {
    fn default() -> Self {
        ShadowCatcher { opacity: 0.85 }
    }
}

/// What shows where no model or shadow is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Background {
    Transparent,
    /// A display-referred sRGB colour (0..1), composited after tone mapping so white stays white.
    Color {
        srgb: [f32; 3],
    },
}

impl Default for Background {
    fn default() -> Self {
        Background::Color {
            srgb: [1.0, 1.0, 1.0],
        }
    }
}

/// The whole studio setup; `Studio::default()` is the "product" preset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Studio {
    pub camera: CameraRig,
    pub lights: Vec<AreaLightSpec>,
    pub environment: Environment,
    pub ground: Option<ShadowCatcher>,
    pub background: Background,
}

impl Default for Studio {
    fn default() -> Self {
        Studio::product()
    }
}

impl Studio {
    /// The "product" preset: 3/4 view, key/fill/rim softboxes, soft grey gradient environment,
    /// shadow catcher, white background.
    pub fn product() -> Studio {
        Studio {
            camera: CameraRig::default(),
            lights: vec![
                AreaLightSpec {
                    name: "key".into(),
                    azimuth_deg: -45.0,
                    elevation_deg: 45.0,
                    distance: 5.0,
                    size: 3.0,
                    irradiance: 2.4,
                    color: [1.0, 0.97, 0.92],
                },
                AreaLightSpec {
                    name: "fill".into(),
                    azimuth_deg: 60.0,
                    elevation_deg: 15.0,
                    distance: 6.0,
                    size: 4.0,
                    irradiance: 0.7,
                    color: [0.92, 0.96, 1.0],
                },
                AreaLightSpec {
                    name: "rim".into(),
                    azimuth_deg: 165.0,
                    elevation_deg: 50.0,
                    distance: 5.0,
                    size: 2.5,
                    irradiance: 2.0,
                    color: [1.0, 1.0, 1.0],
                },
            ],
            environment: Environment::default(),
            ground: Some(ShadowCatcher::default()),
            background: Background::default(),
        }
    }

    /// Looks up a named preset.
    pub fn preset(name: &str) -> Option<Studio> {
        match name {
            "product" => Some(Studio::product()),
            _ => None,
        }
    }

    /// Places camera, lights and ground for a scene with `bounds`, an image aspect ratio
    /// (width / height), and an extra turntable rotation of the camera and rig about the
    /// model's vertical axis.
    pub fn resolve(&self, bounds: &Aabb, aspect: f32, turntable_deg: f32) -> StudioRig {
        let center = bounds.center();
        let radius = (bounds.diagonal().length() * 0.5).max(1e-6);
        let yaw = (self.camera.yaw_deg + turntable_deg).to_radians();
        let pitch = self.camera.pitch_deg.clamp(-89.0, 89.0).to_radians();
        let to_camera = spherical(yaw, pitch);
        let camera = frame_camera(
            bounds,
            to_camera,
            self.camera.fov_deg,
            aspect,
            self.camera.margin,
        );

        let lights = self
            .lights
            .iter()
            .map(|spec| {
                let dir = spherical(
                    yaw + spec.azimuth_deg.to_radians(),
                    spec.elevation_deg.clamp(-89.0, 89.0).to_radians(),
                );
                let distance = spec.distance.max(0.01) * radius;
                let size = spec.size.max(0.001) * radius;
                let position = center + dir * distance;
                let normal = -dir;
                let (tangent, bitangent) = normal.orthonormal_basis();
                let corner = position - tangent * (size * 0.5) - bitangent * (size * 0.5);
                let area = size * size;
                // Radiance so that the irradiance at the centre is about `spec.irradiance`
                // (small-source approximation E = L * A / d^2).
                let radiance = Vec3::from_array(spec.color)
                    * (spec.irradiance.max(0.0) * distance * distance / area);
                QuadLight {
                    corner,
                    edge_u: tangent * size,
                    edge_v: bitangent * size,
                    normal,
                    area,
                    radiance,
                }
            })
            .collect();

        StudioRig {
            camera,
            lights,
            environment: self.environment.clone(),
            ground_y: self.ground.as_ref().map(|_| bounds.min.y),
            ground_opacity: self
                .ground
                .as_ref()
                .map_or(0.0, |g| g.opacity.clamp(0.0, 1.0)),
            scene_radius: radius,
        }
    }
}

/// Unit direction from yaw (about +Y, from +Z toward +X) and pitch (above the horizon).
fn spherical(yaw: f32, pitch: f32) -> Vec3 {
    Vec3::new(
        pitch.cos() * yaw.sin(),
        pitch.sin(),
        pitch.cos() * yaw.cos(),
    )
}

/// Places a camera looking along `-to_camera` at the bounds' centre, as close as possible while
/// every bounding-box corner stays inside the frame with the requested margin.
fn frame_camera(bounds: &Aabb, to_camera: Vec3, fov_deg: f32, aspect: f32, margin: f32) -> Camera {
    let center = bounds.center();
    let forward = -to_camera;
    let world_up = Vec3::new(0.0, 1.0, 0.0);
    let right = forward.cross(world_up).normalized();
    let up = right.cross(forward);
    let tan_y = (fov_deg.clamp(1.0, 170.0).to_radians() * 0.5).tan();
    let tan_x = tan_y * aspect;
    let fill = (1.0 - margin.clamp(0.0, 0.9)).max(0.05);
    let mut distance: f32 = 0.0;
    for c in bounds.corners() {
        let v = c - center;
        let x = v.dot(right).abs();
        let y = v.dot(up).abs();
        // Depth of the corner toward the camera: it is that much closer than the centre.
        let z = v.dot(to_camera);
        distance = distance
            .max(z + x / (tan_x * fill))
            .max(z + y / (tan_y * fill));
    }
    let radius = bounds.diagonal().length() * 0.5;
    distance = distance.max(radius * 1.05).max(1e-4);
    Camera::look(
        center + to_camera * distance,
        forward,
        up,
        right,
        tan_y,
        aspect,
    )
}

/// A one-sided emitting parallelogram `corner + s * edge_u + t * edge_v`, `s, t` in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct QuadLight {
    pub corner: Vec3,
    pub edge_u: Vec3,
    pub edge_v: Vec3,
    /// Emitting side.
    pub normal: Vec3,
    pub area: f32,
    pub radiance: Vec3,
}

impl QuadLight {
    /// Distance along a unit-direction ray to the front face, if hit within `t_max`.
    pub fn intersect(&self, origin: Vec3, dir: Vec3, t_max: f32) -> Option<f32> {
        let denom = dir.dot(self.normal);
        if denom >= 0.0 {
            return None;
        }
        let t = (self.corner - origin).dot(self.normal) / denom;
        if t <= 0.0 || t >= t_max {
            return None;
        }
        let p = origin + dir * t - self.corner;
        let s = p.dot(self.edge_u) / self.edge_u.length_squared();
        let r = p.dot(self.edge_v) / self.edge_v.length_squared();
        ((0.0..=1.0).contains(&s) && (0.0..=1.0).contains(&r)).then_some(t)
    }

    /// Total emitted power proxy used to pick lights proportionally.
    pub fn power(&self) -> f32 {
        self.radiance.luminance() * self.area
    }
}

/// A studio resolved for one scene and one camera angle: what the integrator needs.
#[derive(Clone, Debug)]
pub struct StudioRig {
    pub camera: Camera,
    pub lights: Vec<QuadLight>,
    pub environment: Environment,
    /// Height of the shadow-catching ground plane, when there is one.
    pub ground_y: Option<f32>,
    pub ground_opacity: f32,
    /// Bounding radius of the scene, used to scale ray offsets.
    pub scene_radius: f32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_keeps_every_corner_in_view() {
        let bounds = Aabb {
            min: Vec3::new(-1.0, 0.0, -0.5),
            max: Vec3::new(2.0, 0.7, 0.5),
        };
        for aspect in [0.5f32, 1.0, 2.0] {
            let rig = Studio::product().resolve(&bounds, aspect, 30.0);
            for c in bounds.corners() {
                let (sx, sy) = rig.camera.project(c).expect("corner in front of camera");
                assert!(
                    sx.abs() <= 1.0 && sy.abs() <= 1.0,
                    "corner {c:?} at {sx},{sy}"
                );
            }
        }
    }

    #[test]
    fn preset_round_trips_through_json() {
        let studio = Studio::product();
        let json = serde_json::to_string(&studio).unwrap();
        let back: Studio = serde_json::from_str(&json).unwrap();
        assert_eq!(studio, back);
        // Partial overrides keep the preset's other fields.
        let partial: Studio = serde_json::from_str(r#"{"camera": {"yaw_deg": 90}}"#).unwrap();
        assert_eq!(partial.camera.yaw_deg, 90.0);
        assert_eq!(partial.camera.fov_deg, CameraRig::default().fov_deg);
        assert_eq!(partial.lights.len(), 3);
    }
}
