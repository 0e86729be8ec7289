//! The surface scattering model: GGX microfacet specular (metal or dielectric coat) over a
//! Lambertian base, blended by metalness as in the glTF metallic-roughness model.
//!
//! All directions here are in the local shading frame, where the normal is +Z.

use std::f32::consts::PI;

use crate::math::Vec3;

/// Fresnel reflectance of the dielectric coat at normal incidence (index of refraction 1.5).
const DIELECTRIC_F0: f32 = 0.04;
/// Roughness below this is clamped so the GGX peak stays finite in `f32`.
const MIN_ALPHA: f32 = 0.002;

/// A BSDF sample: direction, throughput weight `f * cos / pdf`, and the pdf (solid angle).
#[derive(Clone, Copy, Debug)]
pub struct BsdfSample {
    pub wi: Vec3,
    pub weight: Vec3,
    pub pdf: f32,
}

/// The material model evaluated at one surface point.
#[derive(Clone, Copy, Debug)]
pub struct Bsdf {
    base_color: Vec3,
    metallic: f32,
    alpha: f32,
    specular: f32,
}

/// GGX normal distribution D(h).
fn ggx_d(h: Vec3, alpha: f32) -> f32 {
    let a2 = alpha * alpha;
    let c2 = h.z * h.z;
    let d = c2 * (a2 - 1.0) + 1.0;
    a2 / (PI * d * d)
}

/// Smith's Λ for GGX.
fn ggx_lambda(w: Vec3, alpha: f32) -> f32 {
    let c2 = w.z * w.z;
    if c2 >= 1.0 {
        return 0.0;
    }
    let tan2 = (1.0 - c2) / c2.max(1e-12);
    (-1.0 + (1.0 + alpha * alpha * tan2).sqrt()) * 0.5
}

/// Samples a visible normal (Heitz 2018, "Sampling the GGX Distribution of Visible Normals").
fn sample_vndf(wo: Vec3, alpha: f32, u1: f32, u2: f32) -> Vec3 {
    let vh = Vec3::new(alpha * wo.x, alpha * wo.y, wo.z).normalized();
    let lensq = vh.x * vh.x + vh.y * vh.y;
    let t1 = if lensq > 0.0 {
        Vec3::new(-vh.y, vh.x, 0.0) / lensq.sqrt()
    } else {
        Vec3::new(1.0, 0.0, 0.0)
    };
    let t2 = vh.cross(t1);
    let r = u1.sqrt();
    let phi = 2.0 * PI * u2;
    let p1 = r * phi.cos();
    let mut p2 = r * phi.sin();
    let s = 0.5 * (1.0 + vh.z);
    p2 = (1.0 - s) * (1.0 - p1 * p1).max(0.0).sqrt() + s * p2;
    let nh = t1 * p1 + t2 * p2 + vh * (1.0 - p1 * p1 - p2 * p2).max(0.0).sqrt();
    Vec3::new(alpha * nh.x, alpha * nh.y, nh.z.max(1e-6)).normalized()
}

/// Schlick's Fresnel with a colour at normal incidence and a scalar at grazing incidence.
fn schlick(f0: Vec3, f90: f32, cos: f32) -> Vec3 {
    let m = (1.0 - cos.clamp(0.0, 1.0)).powi(5);
    f0 + (Vec3::splat(f90) - f0) * m
}

/// Cosine-weighted hemisphere direction.
pub fn sample_cosine(u1: f32, u2: f32) -> Vec3 {
    let r = u1.sqrt();
    let phi = 2.0 * PI * u2;
    Vec3::new(r * phi.cos(), r * phi.sin(), (1.0 - u1).max(0.0).sqrt())
}

impl Bsdf {
    /// `base_color` linear RGB, `metallic` and `roughness` in 0..1 (glTF perceptual roughness),
    /// `specular` the dielectric coat weight (1 = glTF default, 0 = pure Lambertian).
    pub fn new(base_color: Vec3, metallic: f32, roughness: f32, specular: f32) -> Bsdf {
        let r = roughness.clamp(0.0, 1.0);
        Bsdf {
            base_color,
            metallic: metallic.clamp(0.0, 1.0),
            alpha: (r * r).max(MIN_ALPHA),
            specular: specular.clamp(0.0, 1.0),
        }
    }

    fn f0(&self) -> Vec3 {
        Vec3::splat(DIELECTRIC_F0 * self.specular).lerp(self.base_color, self.metallic)
    }

    fn f90(&self) -> f32 {
        self.specular + (1.0 - self.specular) * self.metallic
    }

    /// How much of the diffuse base survives the coat for light leaving along `wo`.
    fn diffuse_scale(&self, cos_o: f32) -> f32 {
        let coat = DIELECTRIC_F0 * self.specular
            + (self.specular - DIELECTRIC_F0 * self.specular) * (1.0 - cos_o).powi(5);
        (1.0 - self.metallic) * (1.0 - coat)
    }

    /// Probability of sampling the specular lobe for outgoing `wo`.
    fn specular_probability(&self, wo: Vec3) -> f32 {
        let spec = schlick(self.f0(), self.f90(), wo.z).luminance();
        let diff = self.diffuse_scale(wo.z) * self.base_color.luminance();
        if spec + diff <= 0.0 {
            return 0.5;
        }
        let p = spec / (spec + diff);
        // Keep both lobes reachable when both contribute, so MIS weights stay well defined.
        if spec > 0.0 && diff > 0.0 {
            p.clamp(0.1, 0.9)
        } else {
            p
        }
    }

    /// The diffuse reflectance (for the albedo AOV).
    pub fn albedo(&self) -> Vec3 {
        self.base_color
    }

    /// BSDF value (not multiplied by the cosine) and pdf of sampling `wi` given `wo`.
    pub fn eval(&self, wo: Vec3, wi: Vec3) -> (Vec3, f32) {
        if wo.z <= 0.0 || wi.z <= 0.0 {
            return (Vec3::ZERO, 0.0);
        }
        let p_spec = self.specular_probability(wo);
        let h = (wo + wi).normalized();
        let mut f = Vec3::ZERO;
        let mut pdf = 0.0;
        if p_spec > 0.0 {
            let d = ggx_d(h, self.alpha);
            let lo = ggx_lambda(wo, self.alpha);
            let li = ggx_lambda(wi, self.alpha);
            let g2 = 1.0 / (1.0 + lo + li);
            let fresnel = schlick(self.f0(), self.f90(), wo.dot(h));
            f += fresnel * (d * g2 / (4.0 * wo.z * wi.z));
            let g1 = 1.0 / (1.0 + lo);
            pdf += p_spec * g1 * d / (4.0 * wo.z);
        }
        if p_spec < 1.0 {
            f += self.base_color * (self.diffuse_scale(wo.z) / PI);
            pdf += (1.0 - p_spec) * wi.z / PI;
        }
        (f, pdf)
    }

    /// Samples an incoming direction; `u_lobe` picks the lobe, `(u1, u2)` the direction.
    pub fn sample(&self, wo: Vec3, u_lobe: f32, u1: f32, u2: f32) -> Option<BsdfSample> {
        if wo.z <= 0.0 {
            return None;
        }
        let p_spec = self.specular_probability(wo);
        let wi = if u_lobe < p_spec {
            let h = sample_vndf(wo, self.alpha, u1, u2);
            let wi = h * (2.0 * wo.dot(h)) - wo;
            if wi.z <= 0.0 {
                return None;
            }
            wi
        } else {
            sample_cosine(u1, u2)
        };
        let (f, pdf) = self.eval(wo, wi);
        if pdf <= 0.0 || !pdf.is_finite() {
            return None;
        }
        let weight = f * (wi.z / pdf);
        weight.is_finite().then_some(BsdfSample { wi, weight, pdf })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::Sampler;

    fn directional_albedo(bsdf: &Bsdf, wo: Vec3, n: u32) -> Vec3 {
        let mut sampler = Sampler::new(42, 0, 0);
        let mut sum = Vec3::ZERO;
        for _ in 0..n {
            let (ul, u1, u2) = (sampler.next_f32(), sampler.next_f32(), sampler.next_f32());
            if let Some(s) = bsdf.sample(wo, ul, u1, u2) {
                sum += s.weight;
            }
        }
        sum / n as f32
    }

    fn dir(theta_deg: f32) -> Vec3 {
        let t = theta_deg.to_radians();
        Vec3::new(t.sin(), 0.0, t.cos())
    }

    #[test]
    fn ggx_metal_energy_is_bounded_and_high_when_smooth() {
        for roughness in [0.05f32, 0.2, 0.5, 0.8, 1.0] {
            let bsdf = Bsdf::new(Vec3::ONE, 1.0, roughness, 1.0);
            for theta in [0.0f32, 30.0, 60.0, 80.0] {
                let a = directional_albedo(&bsdf, dir(theta), 40_000).max_component();
                assert!(
                    a <= 1.01,
                    "roughness {roughness} theta {theta}: albedo {a} > 1"
                );
                if roughness <= 0.2 && theta <= 60.0 {
                    assert!(
                        a >= 0.93,
                        "roughness {roughness} theta {theta}: albedo {a} too low"
                    );
                }
                // Single-scattering GGX loses much energy at high roughness (1 - ln 2 at
                // alpha = 1, normal incidence), but never nearly all of it.
                assert!(a >= 0.25, "roughness {roughness} theta {theta}: albedo {a}");
            }
        }
    }

    #[test]
    fn ggx_matches_closed_form_at_alpha_one() {
        // With alpha = 1, D = 1/pi and the directional albedo at normal incidence is exactly
        // the integral of c / (1 + c) over c in 0..1, which is 1 - ln 2.
        let bsdf = Bsdf::new(Vec3::ONE, 1.0, 1.0, 1.0);
        let a = directional_albedo(&bsdf, Vec3::new(0.0, 0.0, 1.0), 100_000).x;
        let expected = 1.0 - std::f32::consts::LN_2;
        assert!(
            (a - expected).abs() < 0.01,
            "albedo {a}, expected {expected}"
        );
    }

    #[test]
    fn coated_diffuse_energy_is_bounded() {
        for roughness in [0.1f32, 0.5, 1.0] {
            let bsdf = Bsdf::new(Vec3::ONE, 0.0, roughness, 1.0);
            for theta in [0.0f32, 45.0, 75.0] {
                let a = directional_albedo(&bsdf, dir(theta), 40_000).max_component();
                assert!(
                    (0.7..=1.02).contains(&a),
                    "roughness {roughness} theta {theta}: albedo {a}"
                );
            }
        }
    }

    #[test]
    fn sampling_pdf_matches_eval_pdf() {
        // Estimate ∫ pdf dω over the hemisphere by uniform sampling: must be ~1 (or less if some
        // samples fall below the horizon).
        let bsdf = Bsdf::new(Vec3::new(0.8, 0.5, 0.3), 0.5, 0.4, 1.0);
        let wo = dir(40.0);
        let mut sampler = Sampler::new(3, 0, 0);
        let n = 200_000;
        let mut sum = 0.0f64;
        for _ in 0..n {
            let (u1, u2) = sampler.next_2d();
            let z = u1;
            let r = (1.0 - z * z).max(0.0).sqrt();
            let phi = 2.0 * PI * u2;
            let wi = Vec3::new(r * phi.cos(), r * phi.sin(), z);
            sum += bsdf.eval(wo, wi).1 as f64 * 2.0 * PI as f64;
        }
        let integral = sum / n as f64;
        assert!(
            integral > 0.95 && integral < 1.02,
            "pdf integrates to {integral}"
        );
    }

    #[test]
    fn lambertian_is_exact() {
        let bsdf = Bsdf::new(Vec3::splat(0.5), 0.0, 1.0, 0.0);
        let s = bsdf.sample(dir(20.0), 0.3, 0.2, 0.7).unwrap();
        assert!(
            (s.weight - Vec3::splat(0.5)).length() < 1e-5,
            "{:?}",
            s.weight
        );
    }
}
