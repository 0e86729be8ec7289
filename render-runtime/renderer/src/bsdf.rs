//! The surface scattering model: the glTF metallic-roughness BSDF with its common layers, as
//! one-sample mixture of lobes:
//!
//! - **clearcoat**: a GGX dielectric coat (F0 = 0.04) with its own roughness and normal;
//! - **sheen**: the Charlie distribution (Estevez and Kulla 2017) with Neubelt and Pettineo's
//!   visibility term, the cloth lobe of `KHR_materials_sheen`;
//! - **specular**: GGX reflection, metal (F0 = base colour) and dielectric (F0 from the IOR,
//!   tinted and scaled by `KHR_materials_specular`), with multiple-scattering energy
//!   compensation (Turquin 2019: the single-scattering lobe scaled by `1 + F0 (1 - E) / E`,
//!   with `E` the lobe's precomputed directional albedo), so rough metal loses no energy;
//! - **diffuse**: Lambertian base colour under the dielectric specular;
//! - **glass** (`KHR_materials_transmission`): a rough dielectric (GGX microfacet BTDF, Walter et
//!   al. 2007) that reflects or refracts by its exact Fresnel term, tinted by the base colour;
//!   thin-walled materials (no `KHR_materials_volume`) pass light straight through, blurred by
//!   the roughness, instead of bending it.
//!
//! Layers attenuate what lies under them by their directional albedo seen from the outgoing
//! direction (coat over sheen over base), which keeps the sum at or under one. Transmission is
//! sampled only (no light sampling through it): a light behind glass is reached by BSDF samples
//! with full weight.
//!
//! All directions here are in the local shading frame, where the normal is +Z.

use std::f32::consts::PI;

mod lut;
use crate::math::Vec3;

/// Roughness below this is clamped so the GGX peak stays finite in `f32`.
const MIN_ALPHA: f32 = 0.002;
/// Fresnel reflectance of the clear coat at normal incidence (index of refraction 1.5).
const COAT_F0: f32 = 0.04;

/// GGX alpha from glTF's perceptual roughness.
pub fn roughness_to_alpha(roughness: f32) -> f32 {
    let r = roughness.clamp(0.0, 1.0);
    (r * r).max(MIN_ALPHA)
}

/// What one sample chose, for what the integrator does after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lobe {
    Coat,
    Sheen,
    Specular,
    Diffuse,
    /// Reflection off the glass lobe.
    GlassReflection,
    /// Through the surface (into or out of a volume, or straight through a thin wall).
    Transmission,
}

/// A BSDF sample: direction, throughput weight `f * cos / pdf`, the pdf (solid angle), and the
/// lobe it came from.
#[derive(Clone, Copy, Debug)]
pub struct BsdfSample {
    pub wi: Vec3,
    pub weight: Vec3,
    pub pdf: f32,
    pub lobe: Lobe,
}

/// The material inputs at one surface point (textures already applied).
#[derive(Clone, Copy, Debug)]
pub struct BsdfInputs {
    pub base_color: Vec3,
    pub metallic: f32,
    pub roughness: f32,
    /// `KHR_materials_specular` strength (scales dielectric F0 and F90).
    pub specular: f32,
    /// `KHR_materials_specular` colour (tints dielectric F0).
    pub specular_color: Vec3,
    pub ior: f32,
    pub transmission: f32,
    /// Transmission without refraction (no volume).
    pub thin_walled: bool,
    /// The ray arrives from outside the surface (the side its normal points to).
    pub entering: bool,
    pub clearcoat: f32,
    pub clearcoat_roughness: f32,
    /// The coat's normal in the local frame (+Z when it has no normal map).
    pub clearcoat_normal: Vec3,
    pub sheen_color: Vec3,
    pub sheen_roughness: f32,
}

impl BsdfInputs {
    /// glTF's defaults for a material of this base colour, metalness and roughness.
    pub fn basic(base_color: Vec3, metallic: f32, roughness: f32, specular: f32) -> BsdfInputs {
        BsdfInputs {
            base_color,
            metallic,
            roughness,
            specular,
            specular_color: Vec3::ONE,
            ior: 1.5,
            transmission: 0.0,
            thin_walled: true,
            entering: true,
            clearcoat: 0.0,
            clearcoat_roughness: 0.0,
            clearcoat_normal: Vec3::new(0.0, 0.0, 1.0),
            sheen_color: Vec3::ZERO,
            sheen_roughness: 0.0,
        }
    }
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

/// Smith masking of one direction.
pub(crate) fn smith_g1(w: Vec3, alpha: f32) -> f32 {
    1.0 / (1.0 + ggx_lambda(w, alpha))
}

/// Height-correlated Smith masking-shadowing (directions on either side).
pub(crate) fn smith_g2(wo: Vec3, wi: Vec3, alpha: f32) -> f32 {
    1.0 / (1.0 + ggx_lambda(wo, alpha) + ggx_lambda(wi, alpha))
}

/// Samples a visible normal (Heitz 2018, "Sampling the GGX Distribution of Visible Normals").
pub(crate) fn sample_vndf(wo: Vec3, alpha: f32, u1: f32, u2: f32) -> Vec3 {
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

/// Exact dielectric Fresnel reflectance for `cos_i` (on the incident side) and relative index
/// `eta` = n_transmitted / n_incident; 1 under total internal reflection.
fn fresnel_dielectric(cos_i: f32, eta: f32) -> f32 {
    let cos_i = cos_i.clamp(0.0, 1.0);
    let sin2_t = (1.0 - cos_i * cos_i) / (eta * eta);
    if sin2_t >= 1.0 {
        return 1.0;
    }
    let cos_t = (1.0 - sin2_t).sqrt();
    let rs = (cos_i - eta * cos_t) / (cos_i + eta * cos_t);
    let rp = (eta * cos_i - cos_t) / (eta * cos_i + cos_t);
    0.5 * (rs * rs + rp * rp)
}

/// `wo` refracted through a microfacet `h` (same side as `wo`) with relative index `eta`.
fn refract(wo: Vec3, h: Vec3, eta: f32) -> Option<Vec3> {
    let cos_i = wo.dot(h);
    let sin2_t = (1.0 - cos_i * cos_i).max(0.0) / (eta * eta);
    if sin2_t >= 1.0 {
        return None;
    }
    let cos_t = (1.0 - sin2_t).sqrt();
    Some((-wo / eta + h * (cos_i / eta - cos_t)).normalized())
}

/// Cosine-weighted hemisphere direction.
pub fn sample_cosine(u1: f32, u2: f32) -> Vec3 {
    let r = u1.sqrt();
    let phi = 2.0 * PI * u2;
    Vec3::new(r * phi.cos(), r * phi.sin(), (1.0 - u1).max(0.0).sqrt())
}

/// The Charlie sheen lobe with colour 1 (Estevez and Kulla 2017) and Neubelt's visibility:
/// `D(h) * V(wo, wi)`, not multiplied by the cosine.
pub(crate) fn sheen_value(wo: Vec3, wi: Vec3, roughness: f32) -> f32 {
    if wo.z <= 0.0 || wi.z <= 0.0 {
        return 0.0;
    }
    let alpha = (roughness * roughness).max(1e-3);
    let h = (wo + wi).normalized();
    let sin2 = (1.0 - h.z * h.z).max(0.0);
    let inv = 1.0 / alpha;
    let d = (2.0 + inv) * sin2.powf(inv * 0.5) / (2.0 * PI);
    let v = 1.0 / (4.0 * (wi.z + wo.z - wi.z * wo.z));
    d * v
}

/// Rotates `v` from the local frame into the frame whose +Z is `n` (unit, in the local frame).
fn to_frame(n: Vec3, v: Vec3) -> Vec3 {
    let (t, b) = n.orthonormal_basis();
    Vec3::new(v.dot(t), v.dot(b), v.dot(n))
}

fn from_frame(n: Vec3, v: Vec3) -> Vec3 {
    let (t, b) = n.orthonormal_basis();
    t * v.x + b * v.y + n * v.z
}

/// Cumulative lobe-selection probabilities, in [`Lobe`] order (coat, sheen, specular, diffuse,
/// glass).
const LOBES: usize = 5;

/// The material model evaluated at one surface point for one outgoing direction.
#[derive(Clone, Copy, Debug)]
pub struct Bsdf {
    wo: Vec3,
    base_color: Vec3,
    alpha: f32,
    // Specular reflection: Schlick terms with the mixture weights folded in, and the
    // multiple-scattering compensation for this `wo`.
    spec_f0: Vec3,
    spec_f90: f32,
    spec_scale: Vec3,
    diffuse: Vec3,
    glass: f32,
    glass_eta: f32,
    thin_walled: bool,
    coat: f32,
    coat_alpha: f32,
    coat_normal: Vec3,
    coat_tilted: bool,
    sheen: Vec3,
    sheen_roughness: f32,
    /// Weight of the sheen and everything under it after the coat took its share.
    under_coat: f32,
    cdf: [f32; LOBES],
}

impl Bsdf {
    /// The BSDF of `inputs` seen from `wo` (local frame). Everything that depends only on `wo`
    /// (layer weights, energy compensation, lobe probabilities) is computed here once.
    pub fn prepare(inputs: &BsdfInputs, wo: Vec3) -> Bsdf {
        let metallic = inputs.metallic.clamp(0.0, 1.0);
        let transmission = inputs.transmission.clamp(0.0, 1.0);
        let roughness = inputs.roughness.clamp(0.0, 1.0);
        let alpha = roughness_to_alpha(roughness);
        let mu = wo.z.clamp(1e-4, 1.0);
        let base_color = inputs.base_color.max(Vec3::ZERO).min(Vec3::ONE);

        // Coat on top.
        let coat = inputs.clearcoat.clamp(0.0, 1.0);
        let coat_roughness = inputs.clearcoat_roughness.clamp(0.0, 1.0);
        let coat_normal = if inputs.clearcoat_normal.is_finite() && inputs.clearcoat_normal.z > 1e-3
        {
            inputs.clearcoat_normal.normalized()
        } else {
            Vec3::new(0.0, 0.0, 1.0)
        };
        let coat_tilted = coat > 0.0 && coat_normal.z < 0.999_99;
        let coat_albedo = if coat > 0.0 {
            let mu_c = if coat_tilted {
                wo.dot(coat_normal).clamp(1e-4, 1.0)
            } else {
                mu
            };
            let (a, b) = lut::ggx_albedo(mu_c, coat_roughness);
            coat * (COAT_F0 * a + b)
        } else {
            0.0
        };
        let under_coat = 1.0 - coat_albedo;

        // Sheen under the coat.
        let sheen_roughness = inputs.sheen_roughness.clamp(0.0, 1.0);
        let sheen = inputs.sheen_color.max(Vec3::ZERO).min(Vec3::ONE);
        let sheen_max = sheen.max_component();
        // Neubelt's visibility lets the lobe reflect more than it receives at grazing angles:
        // scale it down to an albedo of at most one there.
        let sheen_lobe_albedo = if sheen_max > 0.0 {
            lut::sheen_albedo(mu, sheen_roughness)
        } else {
            0.0
        };
        let sheen_norm = 1.0 / sheen_lobe_albedo.max(1.0);
        let sheen_albedo = sheen_max * sheen_lobe_albedo * sheen_norm;
        let base_weight = under_coat * (1.0 - sheen_albedo).max(0.0);

        // Specular: metal and the dielectric over diffuse (the glass share has its own
        // reflection), mixed linearly in F0 and F90.
        let ior = if inputs.ior.is_finite() && inputs.ior >= 1.0 {
            inputs.ior
        } else {
            1.5
        };
        let f0_ior = ((ior - 1.0) / (ior + 1.0)).powi(2);
        let specular = inputs.specular.clamp(0.0, 1.0);
        let f0_dielectric =
            (inputs.specular_color.max(Vec3::ZERO) * f0_ior).min(Vec3::ONE) * specular;
        let f90_dielectric = specular;
        let w_metal = metallic;
        let w_dielectric = (1.0 - metallic) * (1.0 - transmission);
        let spec_f0 = base_color * w_metal + f0_dielectric * w_dielectric;
        let spec_f90 = w_metal + f90_dielectric * w_dielectric;
        let (a, b) = lut::ggx_albedo(mu, roughness);
        let e_ss = (a + b).max(1e-3);
        let spec_weight = w_metal + w_dielectric;
        // Turquin's compensation with the mixture's mean F0 per unit weight.
        let mean_f0 = if spec_weight > 0.0 {
            spec_f0 / spec_weight
        } else {
            Vec3::ZERO
        };
        let compensation = Vec3::ONE + mean_f0 * ((1.0 - e_ss) / e_ss);
        let spec_scale = compensation * base_weight;
        // How much the dielectric specular reflects from `wo`: the diffuse gets the rest.
        let e_dielectric = ((f0_dielectric * a + Vec3::splat(f90_dielectric * b))
            .mul_elem(Vec3::ONE + f0_dielectric * ((1.0 - e_ss) / e_ss)))
        .max_component()
        .min(1.0);
        let diffuse = base_color * (w_dielectric * (1.0 - e_dielectric) * base_weight);

        // Glass share. A thin wall's reflection and mirrored transmission lose exactly what
        // single-scattering reflection loses, so it is compensated like the specular lobe;
        // refraction into a volume loses less (and is not compensated).
        let glass = (1.0 - metallic) * transmission * base_weight;
        let glass = if inputs.thin_walled {
            glass / e_ss
        } else {
            glass
        };
        // A thin wall has the same Fresnel from both sides; a volume's inside sees the
        // inverse index (and total internal reflection).
        let glass_eta = if inputs.entering || inputs.thin_walled {
            ior
        } else {
            1.0 / ior
        };

        // Lobe selection in proportion to each lobe's albedo estimate, with a floor so every
        // contributing lobe stays reachable.
        let spec_albedo = (spec_f0 * a + Vec3::splat(spec_f90 * b)).mul_elem(spec_scale);
        let raw = [
            coat_albedo,
            under_coat * sheen_albedo,
            spec_albedo.luminance().max(0.0),
            diffuse.luminance().max(0.0),
            glass,
        ];
        let total: f32 = raw.iter().sum();
        let mut cdf = [0.0; LOBES];
        if total > 0.0 {
            let floored = raw.map(|r| if r > 0.0 { r.max(0.05 * total) } else { 0.0 });
            let sum: f32 = floored.iter().sum();
            let mut acc = 0.0;
            for (i, r) in floored.iter().enumerate() {
                acc += r / sum;
                cdf[i] = acc;
            }
            cdf[LOBES - 1] = 1.0;
        }
        Bsdf {
            wo,
            base_color,
            alpha,
            spec_f0,
            spec_f90,
            spec_scale,
            diffuse,
            glass,
            glass_eta,
            thin_walled: inputs.thin_walled,
            coat,
            coat_alpha: roughness_to_alpha(coat_roughness),
            coat_normal,
            coat_tilted,
            sheen: sheen * sheen_norm,
            sheen_roughness,
            under_coat,
            cdf,
        }
    }

    fn probability(&self, lobe: usize) -> f32 {
        if lobe == 0 {
            self.cdf[0]
        } else {
            self.cdf[lobe] - self.cdf[lobe - 1]
        }
    }

    /// The diffuse reflectance (for the albedo AOV).
    pub fn albedo(&self) -> Vec3 {
        self.base_color
    }

    /// GGX reflection value (no Fresnel) and the pdf of sampling `wi` by visible normals.
    fn ggx_reflection(wo: Vec3, wi: Vec3, alpha: f32) -> (f32, f32, Vec3) {
        let h = (wo + wi).normalized();
        let d = ggx_d(h, alpha);
        let g2 = smith_g2(wo, wi, alpha);
        let g1 = smith_g1(wo, alpha);
        (d * g2 / (4.0 * wo.z * wi.z), g1 * d / (4.0 * wo.z), h)
    }

    /// BSDF value (not multiplied by the cosine) and pdf of sampling `wi`, for `wi` above the
    /// surface. Transmission is sampled only, so `wi` below gives zero.
    pub fn eval(&self, wi: Vec3) -> (Vec3, f32) {
        let wo = self.wo;
        if wo.z <= 0.0 || wi.z <= 0.0 {
            return (Vec3::ZERO, 0.0);
        }
        let mut f = Vec3::ZERO;
        let mut pdf = 0.0;
        // Coat.
        let p = self.probability(0);
        if self.coat > 0.0 {
            let (lo, li) = if self.coat_tilted {
                (
                    to_frame(self.coat_normal, wo),
                    to_frame(self.coat_normal, wi),
                )
            } else {
                (wo, wi)
            };
            if lo.z > 0.0 && li.z > 0.0 {
                let (v, q, h) = Self::ggx_reflection(lo, li, self.coat_alpha);
                let fr = COAT_F0 + (1.0 - COAT_F0) * (1.0 - lo.dot(h).clamp(0.0, 1.0)).powi(5);
                // The coat's cosine is its own normal's, not the base's: the integrator
                // multiplies by `wi.z`, so fold in `li.z / wi.z`.
                f += Vec3::splat(self.coat * fr * v * (li.z / wi.z));
                pdf += p * q;
            }
        }
        // Sheen.
        let p = self.probability(1);
        if self.sheen.max_component() > 0.0 {
            f += self.sheen * (self.under_coat * sheen_value(wo, wi, self.sheen_roughness));
            pdf += p * wi.z / PI;
        }
        // Specular and glass reflection share the base microfacets.
        let p_spec = self.probability(2);
        let p_glass = self.probability(4);
        if p_spec > 0.0 || p_glass > 0.0 {
            let (v, q, h) = Self::ggx_reflection(wo, wi, self.alpha);
            if p_spec > 0.0 {
                let fresnel = schlick(self.spec_f0, self.spec_f90, wo.dot(h));
                f += fresnel.mul_elem(self.spec_scale) * v;
                pdf += p_spec * q;
            }
            if p_glass > 0.0 {
                let fr = fresnel_dielectric(wo.dot(h), self.glass_eta);
                f += Vec3::splat(self.glass * fr * v);
                pdf += p_glass * fr * q;
            }
        }
        // Diffuse.
        let p = self.probability(3);
        if p > 0.0 {
            f += self.diffuse * (1.0 / PI);
            pdf += p * wi.z / PI;
        }
        (f, pdf)
    }

    /// Samples an incoming direction; `u_lobe` picks the lobe (and, rescaled, reflection or
    /// refraction in the glass), `(u1, u2)` the direction.
    pub fn sample(&self, u_lobe: f32, u1: f32, u2: f32) -> Option<BsdfSample> {
        let wo = self.wo;
        if wo.z <= 0.0 || self.cdf[LOBES - 1] <= 0.0 {
            return None;
        }
        let lobe = self
            .cdf
            .iter()
            .position(|&c| u_lobe < c)
            .unwrap_or(LOBES - 1);
        let (lobe, wi) = match lobe {
            0 => {
                let lo = if self.coat_tilted {
                    to_frame(self.coat_normal, wo)
                } else {
                    wo
                };
                if lo.z <= 0.0 {
                    return None;
                }
                let h = sample_vndf(lo, self.coat_alpha, u1, u2);
                let li = h * (2.0 * lo.dot(h)) - lo;
                let wi = if self.coat_tilted {
                    from_frame(self.coat_normal, li)
                } else {
                    li
                };
                (Lobe::Coat, wi)
            }
            1 => (Lobe::Sheen, sample_cosine(u1, u2)),
            2 => {
                let h = sample_vndf(wo, self.alpha, u1, u2);
                (Lobe::Specular, h * (2.0 * wo.dot(h)) - wo)
            }
            3 => (Lobe::Diffuse, sample_cosine(u1, u2)),
            _ => {
                let h = sample_vndf(wo, self.alpha, u1, u2);
                let cos = wo.dot(h);
                let fr = fresnel_dielectric(cos, self.glass_eta);
                // A fresh uniform from where `u_lobe` fell inside the glass interval.
                let lo = self.cdf[LOBES - 2];
                let u = ((u_lobe - lo) / (1.0 - lo).max(1e-6)).clamp(0.0, 1.0);
                let reflected = h * (2.0 * cos) - wo;
                if u < fr {
                    (Lobe::GlassReflection, reflected)
                } else {
                    let wi = if self.thin_walled {
                        Vec3::new(reflected.x, reflected.y, -reflected.z)
                    } else {
                        refract(wo, h, self.glass_eta)?
                    };
                    if wi.z >= 0.0 {
                        return None;
                    }
                    // With visible normals and the Fresnel choice, f * |cos| / pdf reduces to
                    // G2 / G1 over the lobe's selection probability.
                    let below = Vec3::new(wi.x, wi.y, -wi.z);
                    let g = smith_g2(wo, below, self.alpha) / smith_g1(wo, self.alpha);
                    let p = self.probability(4);
                    let weight = self.base_color * (self.glass * g / p);
                    if !weight.is_finite() {
                        return None;
                    }
                    // The pdf is reported for bookkeeping only: transmitted samples get no
                    // light sampling, so their MIS weight is 1.
                    return Some(BsdfSample {
                        wi,
                        weight,
                        pdf: p * (1.0 - fr),
                        lobe: Lobe::Transmission,
                    });
                }
            }
        };
        if wi.z <= 0.0 {
            return None;
        }
        let (f, pdf) = self.eval(wi);
        if pdf <= 0.0 || !pdf.is_finite() {
            return None;
        }
        let weight = f * (wi.z / pdf);
        weight.is_finite().then_some(BsdfSample {
            wi,
            weight,
            pdf,
            lobe,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::Sampler;

    /// Mean sample weight: the fraction of light from `wo` the BSDF scatters (all directions).
    fn directional_albedo(inputs: &BsdfInputs, wo: Vec3, n: u32) -> Vec3 {
        let bsdf = Bsdf::prepare(inputs, wo);
        let mut sampler = Sampler::new(42, 0, 0);
        let mut sum = Vec3::ZERO;
        for _ in 0..n {
            let (ul, u1, u2) = (sampler.next_f32(), sampler.next_f32(), sampler.next_f32());
            if let Some(s) = bsdf.sample(ul, u1, u2) {
                sum += s.weight;
            }
        }
        sum / n as f32
    }

    fn dir(theta_deg: f32) -> Vec3 {
        let t = theta_deg.to_radians();
        Vec3::new(t.sin(), 0.0, t.cos())
    }

    fn metal(roughness: f32) -> BsdfInputs {
        BsdfInputs::basic(Vec3::ONE, 1.0, roughness, 1.0)
    }

    #[test]
    fn compensated_white_metal_keeps_its_energy_at_every_roughness() {
        for roughness in [0.05f32, 0.2, 0.5, 0.8, 1.0] {
            for theta in [0.0f32, 30.0, 60.0, 80.0] {
                let a = directional_albedo(&metal(roughness), dir(theta), 40_000).max_component();
                assert!(
                    (0.95..=1.02).contains(&a),
                    "roughness {roughness} theta {theta}: albedo {a}"
                );
            }
        }
    }

    #[test]
    fn single_scattering_ggx_matches_closed_form_at_alpha_one() {
        // With alpha = 1, D = 1/pi and the single-scattering albedo at normal incidence is
        // exactly the integral of c / (1 + c) over c in 0..1, which is 1 - ln 2; the
        // compensation divides by that albedo, so the sampled weights show its inverse.
        let wo = Vec3::new(0.0, 0.0, 1.0);
        let mut sampler = Sampler::new(42, 0, 0);
        let n = 100_000;
        let mut sum = 0.0f64;
        for _ in 0..n {
            let (u1, u2) = sampler.next_2d();
            let h = sample_vndf(wo, 1.0, u1, u2);
            let wi = h * (2.0 * wo.dot(h)) - wo;
            if wi.z > 0.0 {
                sum += (smith_g2(wo, wi, 1.0) / smith_g1(wo, 1.0)) as f64;
            }
        }
        let a = sum / n as f64;
        let expected = 1.0 - std::f64::consts::LN_2;
        assert!(
            (a - expected).abs() < 0.01,
            "albedo {a}, expected {expected}"
        );
    }

    #[test]
    fn coated_diffuse_energy_is_bounded_and_near_one_for_white() {
        for roughness in [0.1f32, 0.5, 1.0] {
            let inputs = BsdfInputs::basic(Vec3::ONE, 0.0, roughness, 1.0);
            for theta in [0.0f32, 45.0, 75.0] {
                let a = directional_albedo(&inputs, dir(theta), 40_000).max_component();
                assert!(
                    (0.95..=1.02).contains(&a),
                    "roughness {roughness} theta {theta}: albedo {a}"
                );
            }
        }
    }

    #[test]
    fn layers_never_create_energy() {
        let mut cases = Vec::new();
        for roughness in [0.05f32, 0.5, 1.0] {
            let mut coat = BsdfInputs::basic(Vec3::ONE, 0.0, roughness, 1.0);
            coat.clearcoat = 1.0;
            coat.clearcoat_roughness = roughness;
            cases.push(("clearcoat over white", coat));
            let mut coated_metal = metal(roughness);
            coated_metal.clearcoat = 1.0;
            coated_metal.clearcoat_roughness = 0.1;
            cases.push(("clearcoat over metal", coated_metal));
            let mut tilted = coat;
            tilted.clearcoat_normal = Vec3::new(0.3, 0.0, 0.95).normalized();
            cases.push(("tilted clearcoat", tilted));
            let mut sheen = BsdfInputs::basic(Vec3::ONE, 0.0, 0.5, 1.0);
            sheen.sheen_color = Vec3::ONE;
            sheen.sheen_roughness = roughness;
            cases.push(("sheen", sheen));
            let mut glass = BsdfInputs::basic(Vec3::ONE, 0.0, roughness, 1.0);
            glass.transmission = 1.0;
            glass.thin_walled = false;
            cases.push(("glass entering", glass));
            let mut leaving = glass;
            leaving.entering = false;
            cases.push(("glass leaving", leaving));
            let mut thin = glass;
            thin.thin_walled = true;
            cases.push(("thin glass", thin));
            let mut tinted = BsdfInputs::basic(Vec3::ONE, 0.0, roughness, 1.0);
            tinted.specular_color = Vec3::new(2.0, 1.0, 0.5);
            tinted.ior = 2.0;
            cases.push(("specular colour", tinted));
        }
        for (name, inputs) in cases {
            for theta in [0.0f32, 45.0, 80.0] {
                let a = directional_albedo(&inputs, dir(theta), 40_000).max_component();
                let r = inputs.roughness;
                assert!(
                    a <= 1.02,
                    "{name} roughness {r} theta {theta}: albedo {a} > 1"
                );
                // Single-scattering rough glass seen from inside loses much light (total
                // internal reflection off steep microfacets sends it below the surface).
                let floor = if name == "glass leaving" && r > 0.1 {
                    0.2
                } else {
                    0.5
                };
                assert!(
                    a >= floor,
                    "{name} roughness {r} theta {theta}: albedo {a} implausibly low"
                );
            }
        }
    }

    #[test]
    fn glass_transmits_most_light_at_normal_incidence_and_reflects_at_grazing() {
        let mut glass = BsdfInputs::basic(Vec3::ONE, 0.0, 0.0, 1.0);
        glass.transmission = 1.0;
        glass.thin_walled = false;
        let count = |theta: f32| {
            let bsdf = Bsdf::prepare(&glass, dir(theta));
            let mut sampler = Sampler::new(7, 0, 0);
            let mut through = 0u32;
            let mut snell = 0u32;
            for _ in 0..20_000 {
                let (ul, u1, u2) = (sampler.next_f32(), sampler.next_f32(), sampler.next_f32());
                if let Some(s) = bsdf.sample(ul, u1, u2) {
                    if s.lobe == Lobe::Transmission {
                        through += 1;
                        // Smooth glass bends towards the normal on the way in (Snell); the
                        // microfacets' long tail tilts a few samples further.
                        let sin_t = (1.0 - s.wi.z * s.wi.z).sqrt();
                        let sin_i = theta.to_radians().sin();
                        if (sin_t - sin_i / 1.5).abs() < 0.01 {
                            snell += 1;
                        }
                    }
                }
            }
            assert!(
                snell as f32 >= 0.97 * through as f32,
                "{snell} of {through} obey Snell"
            );
            through as f32 / 20_000.0
        };
        let normal = count(0.0);
        let grazing = count(85.0);
        assert!(normal > 0.9, "{normal}");
        assert!(grazing < 0.7, "{grazing}");
    }

    #[test]
    fn sampling_pdf_matches_eval_pdf() {
        // Estimate the integral of the pdf over the upper hemisphere by uniform sampling: it is
        // the probability of reflecting (1 without transmission).
        let mut inputs = BsdfInputs::basic(Vec3::new(0.8, 0.5, 0.3), 0.5, 0.4, 1.0);
        inputs.clearcoat = 0.5;
        inputs.clearcoat_roughness = 0.2;
        inputs.sheen_color = Vec3::splat(0.5);
        inputs.sheen_roughness = 0.5;
        let bsdf = Bsdf::prepare(&inputs, dir(40.0));
        let mut sampler = Sampler::new(3, 0, 0);
        let n = 400_000;
        let mut sum = 0.0f64;
        for _ in 0..n {
            let (u1, u2) = sampler.next_2d();
            let z = u1;
            let r = (1.0 - z * z).max(0.0).sqrt();
            let phi = 2.0 * PI * u2;
            let wi = Vec3::new(r * phi.cos(), r * phi.sin(), z);
            sum += bsdf.eval(wi).1 as f64 * 2.0 * PI as f64;
        }
        let integral = sum / n as f64;
        assert!(
            integral > 0.95 && integral < 1.02,
            "pdf integrates to {integral}"
        );
    }

    #[test]
    fn lambertian_is_exact() {
        let bsdf = Bsdf::prepare(
            &BsdfInputs::basic(Vec3::splat(0.5), 0.0, 1.0, 0.0),
            dir(20.0),
        );
        let s = bsdf.sample(0.3, 0.2, 0.7).unwrap();
        assert!(
            (s.weight - Vec3::splat(0.5)).length() < 1e-5,
            "{:?}",
            s.weight
        );
    }
}
