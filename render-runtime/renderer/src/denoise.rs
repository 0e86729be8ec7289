//! Denoising guided by the albedo and normal buffers.
//!
//! The built-in filter is an edge-avoiding à-trous wavelet filter (in the spirit of Dammertz et
//! al. 2010 and SVGF): five passes of a sparse 5x5 B-spline kernel whose taps are weighted by
//! normal, albedo and luminance similarity, the last measured against the pixel's estimated
//! noise. It needs nothing beyond this crate.
//!
//! Intel OIDN 2.x (`oidn.rs`, loaded at run time) is the default: `auto` takes it wherever its
//! library is found, with the albedo and normal guides, for colour and for the shadow catcher's
//! coverage alike.

pub mod oidn;

use rayon::prelude::*;

use crate::film::Film;
use crate::spec::Denoiser;

/// B3-spline kernel taps.
const KERNEL: [f32; 5] = [1.0 / 16.0, 1.0 / 4.0, 3.0 / 8.0, 1.0 / 4.0, 1.0 / 16.0];
const ITERATIONS: u32 = 5;
/// How many standard deviations of noise a luminance difference may span and still blend.
const SIGMA_LUMINANCE: f32 = 4.0;
/// `max(0, cos)^64`, by six squarings (much cheaper than `powf` in the inner loop).
fn normal_weight(cos: f32) -> f32 {
    let mut w = cos.max(0.0);
    for _ in 0..6 {
        w *= w;
    }
    w
}
/// Albedo distance scale.
const SIGMA_ALBEDO: f32 = 0.1;

/// Denoises the film's colour (and coverage) in place with the requested denoiser; returns the
/// one that actually ran.
pub fn denoise(film: &mut Film, denoiser: Denoiser) -> Result<Denoiser, String> {
    match denoiser {
        Denoiser::Off => Ok(Denoiser::Off),
        Denoiser::Builtin => {
            denoise_builtin(film);
            Ok(Denoiser::Builtin)
        }
        Denoiser::Oidn => denoise_oidn(film),
    }
}

/// Whether the OIDN library can be loaded here (`oidn.rs` says where it looks).
pub fn oidn_available() -> bool {
    oidn::available()
}

fn denoise_oidn(film: &mut Film) -> Result<Denoiser, String> {
    let (w, h) = (film.width as usize, film.height as usize);
    let color: Vec<f32> = film.color.iter().flat_map(|c| [c[0], c[1], c[2]]).collect();
    let albedo: Vec<f32> = film.albedo.iter().flatten().copied().collect();
    let normal: Vec<f32> = film.normal.iter().flatten().copied().collect();
    let mut output = vec![0.0f32; color.len()];
    oidn::denoise_rgb(w, h, &color, &albedo, &normal, &mut output, true)?;
    // The coverage (where the shadow catcher darkens the background) is noisy as well: OIDN
    // denoises it as a grey image in [0, 1] with the same guides.
    let coverage: Vec<f32> = film.color.iter().flat_map(|c| [c[3]; 3]).collect();
    let mut coverage_out = vec![0.0f32; coverage.len()];
    oidn::denoise_rgb(w, h, &coverage, &albedo, &normal, &mut coverage_out, false)?;
    for ((c, o), a) in film
        .color
        .iter_mut()
        .zip(output.chunks_exact(3))
        .zip(coverage_out.chunks_exact(3))
    {
        c[0] = o[0].max(0.0);
        c[1] = o[1].max(0.0);
        c[2] = o[2].max(0.0);
        c[3] = ((a[0] + a[1] + a[2]) / 3.0).clamp(0.0, 1.0);
    }
    Ok(Denoiser::Oidn)
}

fn luminance(c: &[f32; 4]) -> f32 {
    0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]
}

/// The built-in edge-avoiding à-trous filter.
pub fn denoise_builtin(film: &mut Film) {
    let (w, h) = (film.width as usize, film.height as usize);
    if w == 0 || h == 0 {
        return;
    }
    let mut color = film.color.clone();
    let mut variance = prefilter_variance(&film.variance, w, h);
    let albedo = &film.albedo;
    let normal = &film.normal;
    for iteration in 0..ITERATIONS {
        let step = 1usize << iteration;
        let src_color = &color;
        let src_var = &variance;
        let mut next_color = vec![[0.0f32; 4]; w * h];
        let mut next_var = vec![0.0f32; w * h];
        next_color
            .par_chunks_mut(w)
            .zip(next_var.par_chunks_mut(w))
            .enumerate()
            .for_each(|(y, (out_row, var_row))| {
                for x in 0..w {
                    let p = y * w + x;
                    let cp = src_color[p];
                    let lp = luminance(&cp);
                    let np = normal[p];
                    let ap = albedo[p];
                    let sigma_l = SIGMA_LUMINANCE * src_var[p].max(0.0).sqrt() + 1e-4;
                    let p_has_surface = np != [0.0; 3];
                    let mut sum = [0.0f32; 4];
                    let mut sum_w = 0.0f32;
                    let mut sum_var = 0.0f32;
                    for (ky, &wy) in KERNEL.iter().enumerate() {
                        let yy = y as isize + (ky as isize - 2) * step as isize;
                        if yy < 0 || yy >= h as isize {
                            continue;
                        }
                        for (kx, &wx) in KERNEL.iter().enumerate() {
                            let xx = x as isize + (kx as isize - 2) * step as isize;
                            if xx < 0 || xx >= w as isize {
                                continue;
                            }
                            let q = yy as usize * w + xx as usize;
                            let cq = src_color[q];
                            let nq = normal[q];
                            let q_has_surface = nq != [0.0; 3];
                            let w_normal = match (p_has_surface, q_has_surface) {
                                (true, true) => {
                                    let d = np[0] * nq[0] + np[1] * nq[1] + np[2] * nq[2];
                                    normal_weight(d)
                                }
                                (false, false) => 1.0,
                                _ => 0.0,
                            };
                            if w_normal <= 0.0 {
                                continue;
                            }
                            let aq = albedo[q];
                            let da = (ap[0] - aq[0]).powi(2)
                                + (ap[1] - aq[1]).powi(2)
                                + (ap[2] - aq[2]).powi(2);
                            let w_albedo = (-da / (SIGMA_ALBEDO * SIGMA_ALBEDO)).exp();
                            let dl = (lp - luminance(&cq)).abs();
                            let da_cov = (cp[3] - cq[3]).abs();
                            let w_lum = (-dl / sigma_l - da_cov * 4.0).exp();
                            let weight = wx * wy * w_normal * w_albedo * w_lum;
                            for i in 0..4 {
                                sum[i] += weight * cq[i];
                            }
                            sum_w += weight;
                            sum_var += weight * weight * src_var[q];
                        }
                    }
                    if sum_w > 0.0 {
                        out_row[x] = sum.map(|v| v / sum_w);
                        var_row[x] = sum_var / (sum_w * sum_w);
                    } else {
                        out_row[x] = cp;
                        var_row[x] = src_var[p];
                    }
                }
            });
        color = next_color;
        variance = next_var;
    }
    film.color = color;
}

/// A 3x3 box blur of the variance estimate, which is itself noisy at low sample counts.
fn prefilter_variance(variance: &[f32], w: usize, h: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut sum = 0.0;
            let mut n = 0.0;
            for yy in y.saturating_sub(1)..(y + 2).min(h) {
                for xx in x.saturating_sub(1)..(x + 2).min(w) {
                    sum += variance[yy * w + xx];
                    n += 1.0;
                }
            }
            out[y * w + x] = sum / n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::Sampler;

    #[test]
    fn builtin_reduces_noise_and_keeps_edges() {
        let (w, h) = (64u32, 64u32);
        let mut film = Film::new(w, h);
        let mut sampler = Sampler::new(9, 0, 0);
        let truth = |x: u32| if x < w / 2 { 0.2f32 } else { 0.8 };
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) as usize;
                let noise = (sampler.next_f32() - 0.5) * 0.2;
                let v = truth(x) + noise;
                film.color[i] = [v, v, v, 1.0];
                film.albedo[i] = if x < w / 2 { [0.2; 3] } else { [0.8; 3] };
                film.normal[i] = [0.0, 0.0, 1.0];
                film.variance[i] = 0.2 * 0.2 / 12.0;
            }
        }
        let error = |f: &Film| -> f32 {
            let mut e = 0.0;
            for y in 0..h {
                for x in 0..w {
                    e += (f.color[(y * w + x) as usize][0] - truth(x)).abs();
                }
            }
            e / (w * h) as f32
        };
        let before = error(&film);
        denoise(&mut film, Denoiser::Builtin).unwrap();
        let after = error(&film);
        assert!(after < before * 0.4, "mean error {before} -> {after}");
        // The edge survives: pixels beside it stay near their side's value.
        let left = film.color[(32 * w + w / 2 - 1) as usize][0];
        let right = film.color[(32 * w + w / 2) as usize][0];
        assert!(left < 0.3 && right > 0.7, "edge blurred: {left} {right}");
    }
}
