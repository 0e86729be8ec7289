//! Unidirectional path tracing with next-event estimation to the studio's area lights and
//! multiple importance sampling (power heuristic) against BSDF sampling.
//!
//! Rendering runs in sample passes over the whole image; within a pass, horizontal strips of
//! rows are traced in parallel with rayon. Every sample draws its random numbers from
//! [`Sampler::new`]`(seed, pixel, sample)`, and each pixel's samples are summed in a fixed order,
//! so the result does not depend on the thread count or scheduling.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::accel::{EmbreeAccel, Hit, Ray};
use crate::bsdf::{sample_cosine, Bsdf, Lobe};
use crate::film::Film;
use crate::math::{Aabb, Vec3};
use crate::sampler::{mix64, Sampler};
use crate::scene::{AlphaMode, Scene};
use crate::studio::StudioRig;

mod shading;
use shading::Shader;

/// Callbacks between sample passes: progress reporting and cooperative cancellation.
pub trait RenderHooks: Sync {
    /// Called after each pass with the samples done and the total, summed over frames.
    fn progress(&self, done: u64, total: u64) {
        let _ = (done, total);
    }
    /// Polled before each pass; returning true stops the render with [`Cancelled`].
    fn cancelled(&self) -> bool {
        false
    }
}

/// Hooks that report nothing and never cancel.
pub struct NoHooks;
impl RenderHooks for NoHooks {}

/// Cancellation through a shared flag, for callers that need nothing else.
impl RenderHooks for std::sync::atomic::AtomicBool {
    fn cancelled(&self) -> bool {
        self.load(Ordering::Relaxed)
    }
}

/// The render was cancelled through [`RenderHooks::cancelled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

/// Rows per parallel work item.
const STRIP_ROWS: usize = 4;
/// Non-opaque surfaces a single ray may pass through before it is treated as blocked.
const MAX_ALPHA_SKIPS: u32 = 32;
/// Bounces after which Russian roulette may end a path.
const RR_START: u32 = 3;

/// Settings for one frame.
#[derive(Clone, Copy, Debug)]
pub struct FrameSettings {
    pub width: u32,
    pub height: u32,
    pub samples: u32,
    pub seed: u64,
    pub max_bounces: u32,
    /// Relative error at which a pixel stops sampling; 0 renders every pixel at `samples`.
    pub adaptive_threshold: f32,
}

/// Samples every pixel gets before adaptive sampling may stop it: a quarter of the budget, at
/// least 16 (or the whole budget when that is smaller).
pub fn adaptive_min_samples(budget: u32) -> u32 {
    (budget / 4).max(16).min(budget)
}

/// Estimated relative error of a pixel's mean after `n` samples, from the sums of its
/// radiance and alpha (`color`) and of their squares: the standard error of the mean
/// luminance relative to the luminance, and the standard error of the mean alpha (the shadow
/// catcher's shadow) relative to what shows of a white background, `1 - alpha`; each over its
/// value plus a small floor so near-black pixels are not held to an impossible standard; the
/// larger of the two.
pub fn pixel_error(color: &[f32; 4], lum_sq_sum: f32, alpha_sq_sum: f32, n: u32) -> f32 {
    const FLOOR: f32 = 0.02;
    let n = n.max(1) as f32;
    let lum = Vec3::new(color[0], color[1], color[2]).luminance() / n;
    let alpha = color[3] / n;
    let std_err = |mean: f32, sq: f32| ((sq / n - mean * mean).max(0.0) / n).sqrt();
    let e_lum = std_err(lum, lum_sq_sum) / (lum.abs() + FLOOR);
    let e_alpha = std_err(alpha, alpha_sq_sum) / ((1.0 - alpha).max(0.0) + FLOOR);
    e_lum.max(e_alpha)
}

/// What one camera sample produced.
#[derive(Clone, Copy, Debug, Default)]
struct SampleResult {
    radiance: Vec3,
    alpha: f32,
    albedo: Vec3,
    normal: Vec3,
}

/// Path tracer bound to one scene, its acceleration structure and a resolved studio.
pub struct Integrator<'a> {
    scene: &'a Scene,
    accel: &'a EmbreeAccel,
    rig: &'a StudioRig,
    all_opaque: bool,
    /// Cumulative light-pick probabilities, proportional to power.
    light_cdf: Vec<f32>,
    light_pick: Vec<f32>,
    eps: f32,
    /// World bounds, slightly enlarged, for skipping shadow rays that cannot hit anything.
    bounds: Aabb,
    shader: Shader<'a>,
    /// Absorption coefficient per material (`KHR_materials_volume`), zero when the material
    /// has no absorbing volume.
    absorption: Vec<Vec3>,
}

fn power_heuristic(a: f32, b: f32) -> f32 {
    let (a2, b2) = (a * a, b * b);
    if a2 + b2 > 0.0 {
        a2 / (a2 + b2)
    } else {
        0.0
    }
}

impl<'a> Integrator<'a> {
    pub fn new(scene: &'a Scene, accel: &'a EmbreeAccel, rig: &'a StudioRig) -> Integrator<'a> {
        let powers: Vec<f32> = rig.lights.iter().map(|l| l.power().max(0.0)).collect();
        let total: f32 = powers.iter().sum();
        let light_pick: Vec<f32> = if total > 0.0 {
            powers.iter().map(|p| p / total).collect()
        } else {
            vec![0.0; powers.len()]
        };
        let mut acc = 0.0;
        let light_cdf = light_pick
            .iter()
            .map(|p| {
                acc += p;
                acc
            })
            .collect();
        Integrator {
            scene,
            accel,
            rig,
            all_opaque: scene.all_opaque(),
            light_cdf,
            light_pick,
            eps: rig.scene_radius * 2e-5,
            shader: Shader::new(scene),
            absorption: scene
                .materials
                .iter()
                .map(|m| match &m.volume {
                    Some(v) if v.thickness > 0.0 && v.attenuation_distance.is_finite() => {
                        // Beer-Lambert: white light keeps `attenuation_color` after travelling
                        // `attenuation_distance`.
                        Vec3::from_array(
                            v.attenuation_color
                                .map(|c| -c.clamp(1e-4, 1.0).ln() / v.attenuation_distance),
                        )
                    }
                    _ => Vec3::ZERO,
                })
                .collect(),
            bounds: {
                let b = scene.bounds();
                let pad = Vec3::splat(rig.scene_radius * 1e-3);
                Aabb {
                    min: b.min - pad,
                    max: b.max + pad,
                }
            },
        }
    }

    /// Renders one frame into a new film. `progress_base` and `progress_total` let turntables
    /// report progress across frames. Returns the film and the number of rays traced.
    ///
    /// With [`FrameSettings::adaptive_threshold`] above zero the sample count is a budget: after
    /// [`adaptive_min_samples`] samples, every pass ends by estimating each pixel's relative
    /// error from its running variance ([`pixel_error`]); pixels below the threshold, with no
    /// unconverged neighbour, stop receiving samples. [`Film::samples`] says how many each got.
    pub fn render(
        &self,
        settings: &FrameSettings,
        hooks: &dyn RenderHooks,
        progress_base: u64,
        progress_total: u64,
    ) -> Result<(Film, u64), Cancelled> {
        let width = settings.width as usize;
        let height = settings.height as usize;
        let mut film = Film::new(settings.width, settings.height);
        let rays = AtomicU64::new(0);
        let adaptive = settings.adaptive_threshold > 0.0;
        let min_samples = adaptive_min_samples(settings.samples);
        // Sums of squared luminance and squared alpha per pixel, for the error estimate.
        let mut lum_sq = vec![0.0f32; film.pixel_count()];
        let mut alpha_sq = vec![0.0f32; film.pixel_count()];
        let mut active = vec![true; film.pixel_count()];
        // Cancellation is checked between passes, so a pass must stay short on large images:
        // about 16 passes per frame, but never more than ~1 M pixel-samples in one pass.
        let pixels = (settings.width as u64 * settings.height as u64).max(1);
        let budget = (1u64 << 20).div_ceil(pixels).max(1) as u32;
        let pass_size = settings.samples.div_ceil(16).clamp(1, budget);
        let mut done = 0u32;
        while done < settings.samples {
            if hooks.cancelled() {
                return Err(Cancelled);
            }
            let pass_end = (done + pass_size).min(settings.samples);
            let chunk = width * STRIP_ROWS;
            film.color
                .par_chunks_mut(chunk)
                .zip(film.albedo.par_chunks_mut(chunk))
                .zip(film.normal.par_chunks_mut(chunk))
                .zip(film.samples.par_chunks_mut(chunk))
                .zip(lum_sq.par_chunks_mut(chunk))
                .zip(alpha_sq.par_chunks_mut(chunk))
                .zip(active.par_chunks(chunk))
                .enumerate()
                .for_each(
                    |(strip, ((((((color, albedo), normal), count), l2s), a2s), live))| {
                        let mut local_rays = 0u64;
                        let y0 = strip * STRIP_ROWS;
                        for i in 0..color.len() {
                            if !live[i] {
                                continue;
                            }
                            let y = y0 + i / width;
                            let x = i % width;
                            let pixel = (y * width + x) as u64;
                            let (c, a, n) = (&mut color[i], &mut albedo[i], &mut normal[i]);
                            for s in done..pass_end {
                                // An adaptive pixel may stop at any sample, so its alpha tests use
                                // the lattice, whose every prefix is spread evenly.
                                let mut sampler = if adaptive {
                                    Sampler::new(settings.seed, pixel, s)
                                } else {
                                    Sampler::for_pixel(settings.seed, pixel, s, settings.samples)
                                };
                                let r = self.sample_pixel(
                                    x,
                                    y,
                                    settings,
                                    &mut sampler,
                                    &mut local_rays,
                                );
                                c[0] += r.radiance.x;
                                c[1] += r.radiance.y;
                                c[2] += r.radiance.z;
                                c[3] += r.alpha;
                                let lum = r.radiance.luminance();
                                l2s[i] += lum * lum;
                                a2s[i] += r.alpha * r.alpha;
                                a[0] += r.albedo.x;
                                a[1] += r.albedo.y;
                                a[2] += r.albedo.z;
                                n[0] += r.normal.x;
                                n[1] += r.normal.y;
                                n[2] += r.normal.z;
                            }
                            count[i] = pass_end;
                        }
                        rays.fetch_add(local_rays, Ordering::Relaxed);
                    },
                );
            done = pass_end;
            hooks.progress(progress_base + done as u64, progress_total);
            if adaptive && done >= min_samples && done < settings.samples {
                let unconverged: Vec<bool> = (0..active.len())
                    .into_par_iter()
                    .map(|p| {
                        active[p]
                            && pixel_error(&film.color[p], lum_sq[p], alpha_sq[p], done)
                                >= settings.adaptive_threshold
                    })
                    .collect();
                // A pixel keeps sampling while it or a neighbour is unconverged: a lucky run of
                // samples in one pixel of a noisy region does not freeze it.
                active = (0..active.len())
                    .into_par_iter()
                    .map(|p| {
                        let (x, y) = (p % width, p / width);
                        active[p]
                            && (y.saturating_sub(1)..(y + 2).min(height)).any(|ny| {
                                (x.saturating_sub(1)..(x + 2).min(width))
                                    .any(|nx| unconverged[ny * width + nx])
                            })
                    })
                    .collect();
                if !active.iter().any(|&a| a) {
                    break;
                }
            }
        }
        for (p, (c, var)) in film
            .color
            .iter_mut()
            .zip(film.variance.iter_mut())
            .enumerate()
        {
            let inv = 1.0 / film.samples[p].max(1) as f32;
            *c = c.map(|v| v * inv);
            // Turn the sum of squared luminance into the variance of the mean.
            let mean = Vec3::new(c[0], c[1], c[2]).luminance();
            *var = (lum_sq[p] * inv - mean * mean).max(0.0) * inv;
        }
        for (a, &n) in film.albedo.iter_mut().zip(film.samples.iter()) {
            let inv = 1.0 / n.max(1) as f32;
            *a = a.map(|v| v * inv);
        }
        for n in &mut film.normal {
            let v = Vec3::from_array(*n).normalized();
            *n = v.to_array();
        }
        Ok((film, rays.into_inner()))
    }

    fn sample_pixel(
        &self,
        x: usize,
        y: usize,
        settings: &FrameSettings,
        sampler: &mut Sampler,
        rays: &mut u64,
    ) -> SampleResult {
        let (jx, jy) = sampler.next_2d();
        let ray = self.rig.camera.ray(
            x as f32 + jx,
            y as f32 + jy,
            settings.width,
            settings.height,
        );
        self.trace_path(ray, settings.max_bounces, sampler, rays)
    }

    /// Radiance along a camera ray, with coverage and first-hit features.
    fn trace_path(
        &self,
        mut ray: Ray,
        max_bounces: u32,
        sampler: &mut Sampler,
        rays: &mut u64,
    ) -> SampleResult {
        let mut out = SampleResult::default();
        let mut beta = Vec3::ONE;
        let mut prev_bsdf_pdf = 0.0f32;
        // The last bounce went through a surface: no light sampling could have found what it
        // hits, so a light it hits counts fully.
        let mut prev_transmitted = false;
        // Absorption of the volume the path is inside (zero outside any).
        let mut medium = Vec3::ZERO;
        let mut depth = 0u32;
        loop {
            let hit = self.intersect(&mut ray, depth == 0, sampler, rays);
            let t_hit = hit.as_ref().map_or(f32::INFINITY, |h| h.t);

            if depth == 0 {
                if let Some(ground_y) = self.rig.ground_y {
                    if ray.dir.y < 0.0 {
                        let t_ground = (ground_y - ray.origin.y) / ray.dir.y;
                        if t_ground > 0.0 && t_ground < t_hit {
                            return self.shadow_catcher(
                                ray.at(t_ground),
                                max_bounces,
                                sampler,
                                rays,
                            );
                        }
                    }
                }
            } else {
                // Lights are invisible to the camera but seen in reflections and by BSDF samples.
                if let Some((li, t)) = self.intersect_lights(&ray, t_hit) {
                    let light = &self.rig.lights[li];
                    let cos_l = -ray.dir.dot(light.normal);
                    let pdf_light = self.light_pick[li] * t * t / (cos_l * light.area);
                    let w = if prev_transmitted {
                        1.0
                    } else {
                        power_heuristic(prev_bsdf_pdf, pdf_light)
                    };
                    out.radiance += beta.mul_elem(light.radiance) * w;
                    break;
                }
            }

            let Some(hit) = hit else {
                if depth > 0 {
                    out.radiance += beta.mul_elem(self.rig.environment.radiance(ray.dir));
                }
                break;
            };
            if medium != Vec3::ZERO {
                beta = beta.mul_elem(Vec3::new(
                    (-medium.x * hit.t).exp(),
                    (-medium.y * hit.t).exp(),
                    (-medium.z * hit.t).exp(),
                ));
            }
            let surface = self.shader.surface(&ray, &hit);

            let (tangent, bitangent) = surface.ns.orthonormal_basis();
            let to_local = |v: Vec3| Vec3::new(v.dot(tangent), v.dot(bitangent), v.dot(surface.ns));
            let wo_world = -ray.dir;
            let wo = to_local(wo_world);
            let mut inputs = surface.inputs;
            if let Some(n) = surface.coat_normal {
                inputs.clearcoat_normal = to_local(n);
            }
            let bsdf = Bsdf::prepare(&inputs, wo);
            if depth == 0 {
                out.alpha = 1.0;
                out.albedo = bsdf.albedo();
                out.normal = surface.ns;
            }
            out.radiance += beta.mul_elem(surface.emission);
            if depth >= max_bounces {
                break;
            }

            let origin = surface.p + surface.ng * self.eps;

            // Next-event estimation: one light, chosen by power, one point on it.
            if let Some(li) = self.pick_light(sampler.next_f32()) {
                let light = &self.rig.lights[li];
                let (u1, u2) = sampler.next_2d();
                let target = light.corner + light.edge_u * u1 + light.edge_v * u2;
                let to_light = target - origin;
                let dist2 = to_light.length_squared();
                let dist = dist2.sqrt();
                let wi_world = to_light / dist;
                let cos_l = -wi_world.dot(light.normal);
                if cos_l > 0.0 && wi_world.dot(surface.ng) > 0.0 {
                    let (f, pdf_bsdf) = bsdf.eval(to_local(wi_world));
                    if f.max_component() > 0.0 {
                        let pdf_light = self.light_pick[li] * dist2 / (cos_l * light.area);
                        let shadow = Ray {
                            origin,
                            dir: wi_world,
                            t_min: 0.0,
                            t_max: dist * (1.0 - 1e-4),
                        };
                        if !self.occluded(&shadow, sampler, rays) {
                            let cos_s = wi_world.dot(surface.ns).max(0.0);
                            let w = power_heuristic(pdf_light, pdf_bsdf);
                            out.radiance +=
                                beta.mul_elem(f).mul_elem(light.radiance) * (cos_s * w / pdf_light);
                        }
                    }
                }
            }

            let (ul, u1, u2) = (sampler.next_f32(), sampler.next_f32(), sampler.next_f32());
            let Some(s) = bsdf.sample(ul, u1, u2) else {
                break;
            };
            let wi_world = tangent * s.wi.x + bitangent * s.wi.y + surface.ns * s.wi.z;
            let transmitted = s.lobe == Lobe::Transmission;
            // Reflections must leave above the geometric surface, transmissions below it.
            if (wi_world.dot(surface.ng) <= 0.0) != transmitted {
                break;
            }
            beta = beta.mul_elem(s.weight);
            if s.lobe == Lobe::Diffuse {
                // Baked ambient occlusion darkens indirect diffuse light only: the path tracer
                // finds direct shadows itself.
                beta *= surface.occlusion;
            }
            prev_bsdf_pdf = s.pdf;
            prev_transmitted = transmitted;
            let origin = if transmitted {
                if !surface.inputs.thin_walled {
                    medium = if surface.front_face {
                        self.absorption[surface.material as usize]
                    } else {
                        Vec3::ZERO
                    };
                }
                surface.p - surface.ng * self.eps
            } else {
                origin
            };
            depth += 1;
            if depth >= RR_START {
                let survive = beta.max_component().min(0.95);
                if sampler.next_f32() >= survive {
                    break;
                }
                beta *= 1.0 / survive;
            }
            ray = Ray::new(origin, wi_world);
        }
        if !out.radiance.is_finite() {
            out.radiance = Vec3::ZERO;
        }
        out
    }

    /// Shadow-catcher sample at a ground point: coverage is how much of the light the ground
    /// would receive without the model it loses with the model there, as Cycles' catcher
    /// computes it (light with the model over light without it). The model blocks the lights
    /// and the environment, and gives back what it reflects onto the ground: a cosine-sampled
    /// direction that hits the model brings the path-traced radiance leaving the model toward
    /// the ground instead of the environment's. The no-model irradiance uses the environment's
    /// exact ground irradiance, so the ratio does not carry the noise of its own denominator.
    fn shadow_catcher(
        &self,
        p: Vec3,
        max_bounces: u32,
        sampler: &mut Sampler,
        rays: &mut u64,
    ) -> SampleResult {
        let n = Vec3::new(0.0, 1.0, 0.0);
        let origin = p + n * self.eps;
        let mut unoccluded = 0.0f32;
        let mut received = 0.0f32;
        for light in &self.rig.lights {
            let (u1, u2) = sampler.next_2d();
            let target = light.corner + light.edge_u * u1 + light.edge_v * u2;
            let d = target - origin;
            let dist2 = d.length_squared();
            let dist = dist2.sqrt();
            let wi = d / dist;
            let cos_g = wi.y;
            let cos_l = -wi.dot(light.normal);
            if cos_g <= 0.0 || cos_l <= 0.0 {
                continue;
            }
            let e = light.radiance.luminance() * cos_g * cos_l * light.area / dist2;
            unoccluded += e;
            let shadow = Ray {
                origin,
                dir: wi,
                t_min: 0.0,
                t_max: dist * (1.0 - 1e-4),
            };
            if !self.occluded(&shadow, sampler, rays) {
                received += e;
            }
        }
        unoccluded += self.rig.environment.ground_irradiance().luminance();
        let (u1, u2) = sampler.next_2d();
        let local = sample_cosine(u1, u2);
        let dir = Vec3::new(local.x, local.z, local.y);
        let ray = Ray::new(origin, dir);
        // Cosine-weighted estimate of the irradiance from this direction: L * pi.
        let radiance = if !self.occluded(&ray, sampler, rays) {
            self.rig.environment.radiance(dir)
        } else if max_bounces > 0 {
            // Light the model reflects onto the ground (lights and environment, as any
            // bounce sees them).
            self.trace_path(ray, max_bounces - 1, sampler, rays)
                .radiance
        } else {
            Vec3::ZERO
        };
        received += radiance.luminance() * std::f32::consts::PI;
        let lit = if unoccluded > 0.0 {
            received / unoccluded
        } else {
            1.0
        };
        // Unclamped per sample (bounce light can make a sample brighter than no model at
        // all), so the pixel's mean is unbiased; the encoder clamps the mean.
        SampleResult {
            radiance: Vec3::ZERO,
            alpha: self.rig.ground_opacity * (1.0 - lit),
            albedo: Vec3::ZERO,
            normal: Vec3::ZERO,
        }
    }

    fn pick_light(&self, u: f32) -> Option<usize> {
        if self.light_cdf.last().copied().unwrap_or(0.0) <= 0.0 {
            return None;
        }
        let idx = self
            .light_cdf
            .iter()
            .position(|&c| u < c)
            .unwrap_or(self.light_cdf.len() - 1);
        (self.light_pick[idx] > 0.0).then_some(idx)
    }

    fn intersect_lights(&self, ray: &Ray, t_max: f32) -> Option<(usize, f32)> {
        let mut best: Option<(usize, f32)> = None;
        let mut limit = t_max;
        for (i, light) in self.rig.lights.iter().enumerate() {
            if let Some(t) = light.intersect(ray.origin, ray.dir, limit) {
                limit = t;
                best = Some((i, t));
            }
        }
        best
    }

    /// Closest visible surface, skipping alpha-masked or stochastically transparent hits. The
    /// first blended surface a camera ray meets is tested with a value stratified over the
    /// pixel's samples, so thumbnails at few samples show smooth coverage instead of grain.
    fn intersect(
        &self,
        ray: &mut Ray,
        camera_ray: bool,
        sampler: &mut Sampler,
        rays: &mut u64,
    ) -> Option<Hit> {
        if !self
            .bounds
            .hit_by(ray.origin, ray.dir, ray.t_min, ray.t_max)
        {
            return None;
        }
        let mut stratified = camera_ray;
        for _ in 0..MAX_ALPHA_SKIPS {
            *rays += 1;
            let hit = self.accel.intersect(ray)?;
            if self.all_opaque || self.passes_alpha(&hit, &mut stratified, sampler) {
                return Some(hit);
            }
            ray.t_min = hit.t + self.eps;
        }
        None
    }

    fn passes_alpha(&self, hit: &Hit, stratified: &mut bool, sampler: &mut Sampler) -> bool {
        let material = self.shader.material_of(hit);
        match self.scene.materials[material as usize].alpha_mode {
            AlphaMode::Opaque => true,
            AlphaMode::Mask { cutoff } => self.shader.alpha(hit) >= cutoff,
            AlphaMode::Blend => {
                let u = if std::mem::take(stratified) {
                    sampler.stratified(0)
                } else {
                    sampler.next_f32()
                };
                u < self.shader.alpha(hit)
            }
        }
    }

    fn occluded(&self, ray: &Ray, sampler: &mut Sampler, rays: &mut u64) -> bool {
        // Shadow-catcher rays from the ground mostly miss the model's box entirely; a slab
        // test is far cheaper than a trip into Embree.
        if !self
            .bounds
            .hit_by(ray.origin, ray.dir, ray.t_min, ray.t_max)
        {
            return false;
        }
        if self.all_opaque {
            *rays += 1;
            return self.accel.occluded(ray);
        }
        let mut r = *ray;
        self.intersect(&mut r, false, sampler, rays).is_some()
    }
}

/// Per-frame seed derived from the job seed, so turntable frames get independent noise.
pub fn frame_seed(seed: u64, frame: u32) -> u64 {
    if frame == 0 {
        seed
    } else {
        mix64(seed ^ (frame as u64).wrapping_mul(0xa076_1d64_78bd_642f))
    }
}
