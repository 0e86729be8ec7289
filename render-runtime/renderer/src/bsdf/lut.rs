//! Precomputed directional albedos of the microfacet lobes, used for energy compensation and
//! layering: computed once per process (a few milliseconds), deterministically, so every render
//! of a job gives the same bytes.
//!
//! - [`ggx_albedo`]: the split-sum terms `(A, B)` of single-scattering GGX with Schlick Fresnel,
//!   so that a lobe with `F0`, `F90` reflects `F0 * A + F90 * B` of the light arriving from the
//!   direction at cosine `mu`. `A + B` is the lobe's albedo with a perfect mirror Fresnel, whose
//!   shortfall from 1 is the energy single scattering loses on rough surfaces.
//! - [`sheen_albedo`]: the albedo of the Charlie sheen lobe with Neubelt's visibility.

use std::f32::consts::PI;
use std::sync::OnceLock;

use crate::math::Vec3;
use crate::sampler::Sampler;

/// Table resolution along cosine and along roughness.
const N: usize = 32;
/// Integration samples per table entry.
const SAMPLES: u32 = 1024;

/// A table over `(mu, roughness)` in `[0, 1]^2`, sampled on a grid that includes both ends
/// (cosine 0 is taken as a small positive cosine), with bilinear lookup.
struct Table<const C: usize> {
    values: Vec<[f32; C]>,
}

impl<const C: usize> Table<C> {
    fn build(f: impl Fn(f32, f32, &mut Sampler) -> [f32; C]) -> Table<C> {
        let mut values = Vec::with_capacity(N * N);
        for r in 0..N {
            for m in 0..N {
                let mu = (m as f32 / (N - 1) as f32).max(0.01);
                let roughness = r as f32 / (N - 1) as f32;
                let mut sampler = Sampler::new(0x1ab_c0de, (r * N + m) as u64, 0);
                values.push(f(mu, roughness, &mut sampler));
            }
        }
        Table { values }
    }

    #[inline]
    fn lookup(&self, mu: f32, roughness: f32) -> [f32; C] {
        let x = mu.clamp(0.0, 1.0) * (N - 1) as f32;
        let y = roughness.clamp(0.0, 1.0) * (N - 1) as f32;
        let (x0, y0) = (x as usize, y as usize);
        let (x1, y1) = ((x0 + 1).min(N - 1), (y0 + 1).min(N - 1));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let v = |x: usize, y: usize| self.values[y * N + x];
        let (a, b, c, d) = (v(x0, y0), v(x1, y0), v(x0, y1), v(x1, y1));
        std::array::from_fn(|i| {
            let top = a[i] + (b[i] - a[i]) * fx;
            let bottom = c[i] + (d[i] - c[i]) * fx;
            top + (bottom - top) * fy
        })
    }
}

/// Stratified 2D sample `i` of `n` (a jittered grid), from a sampler.
fn stratified(i: u32, n: u32, sampler: &mut Sampler) -> (f32, f32) {
    let side = (n as f32).sqrt() as u32;
    let (sx, sy) = (i % side, i / side);
    let (jx, jy) = sampler.next_2d();
    (
        ((sx as f32 + jx) / side as f32).min(0.999_999),
        ((sy as f32 + jy) / side as f32).min(0.999_999),
    )
}

fn direction(mu: f32) -> Vec3 {
    Vec3::new((1.0 - mu * mu).max(0.0).sqrt(), 0.0, mu)
}

fn ggx_table() -> &'static Table<2> {
    static TABLE: OnceLock<Table<2>> = OnceLock::new();
    TABLE.get_or_init(|| {
        Table::build(|mu, roughness, sampler| {
            let alpha = crate::bsdf::roughness_to_alpha(roughness);
            let wo = direction(mu);
            let (mut a, mut b) = (0.0f64, 0.0f64);
            for i in 0..SAMPLES {
                let (u1, u2) = stratified(i, SAMPLES, sampler);
                let h = crate::bsdf::sample_vndf(wo, alpha, u1, u2);
                let wi = h * (2.0 * wo.dot(h)) - wo;
                if wi.z <= 0.0 {
                    continue;
                }
                // With visible-normal sampling the weight f * cos / pdf is F * G2 / G1.
                let g1 = crate::bsdf::smith_g1(wo, alpha);
                let g2 = crate::bsdf::smith_g2(wo, wi, alpha);
                let w = (g2 / g1) as f64;
                let fc = (1.0 - wo.dot(h).clamp(0.0, 1.0)).powi(5) as f64;
                a += w * (1.0 - fc);
                b += w * fc;
            }
            [(a / SAMPLES as f64) as f32, (b / SAMPLES as f64) as f32]
        })
    })
}

fn sheen_table() -> &'static Table<1> {
    static TABLE: OnceLock<Table<1>> = OnceLock::new();
    TABLE.get_or_init(|| {
        Table::build(|mu, roughness, sampler| {
            let wo = direction(mu);
            let mut sum = 0.0f64;
            for i in 0..SAMPLES {
                let (u1, u2) = stratified(i, SAMPLES, sampler);
                let wi = crate::bsdf::sample_cosine(u1, u2);
                // f * cos / pdf with pdf = cos / pi.
                sum += (crate::bsdf::sheen_value(wo, wi, roughness) * PI) as f64;
            }
            [(sum / SAMPLES as f64) as f32]
        })
    })
}

/// `(A, B)`: GGX with Schlick Fresnel reflects `F0 * A + F90 * B` at cosine `mu`.
#[inline]
pub fn ggx_albedo(mu: f32, roughness: f32) -> (f32, f32) {
    let [a, b] = ggx_table().lookup(mu, roughness);
    (a, b)
}

/// Albedo of the sheen lobe (colour 1) at cosine `mu`.
#[inline]
pub fn sheen_albedo(mu: f32, roughness: f32) -> f32 {
    sheen_table().lookup(mu, roughness)[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ggx_albedo_matches_the_closed_form_at_alpha_one() {
        // alpha = 1 (roughness 1): at normal incidence the mirror-Fresnel albedo is 1 - ln 2.
        let (a, b) = ggx_albedo(1.0, 1.0);
        let expected = 1.0 - std::f32::consts::LN_2;
        assert!((a + b - expected).abs() < 0.005, "A + B = {}", a + b);
    }

    #[test]
    fn smooth_ggx_loses_no_energy_and_rough_ggx_loses_some() {
        let (a, b) = ggx_albedo(0.8, 0.02);
        assert!((a + b - 1.0).abs() < 0.01, "smooth albedo {}", a + b);
        let (a, b) = ggx_albedo(0.5, 1.0);
        assert!(a + b < 0.8 && a + b > 0.4, "rough albedo {}", a + b);
    }

    #[test]
    fn sheen_albedo_is_positive_and_below_one_away_from_grazing() {
        // Neubelt's visibility overshoots at grazing angles (the BSDF renormalises there).
        for mu in [0.05f32, 0.3, 0.7, 1.0] {
            for r in [0.05f32, 0.3, 0.7, 1.0] {
                let e = sheen_albedo(mu, r);
                assert!(e > 0.0 && e.is_finite(), "mu {mu} roughness {r}: {e}");
                if mu >= 0.3 {
                    assert!(e <= 1.0, "mu {mu} roughness {r}: {e}");
                }
            }
        }
    }
}
