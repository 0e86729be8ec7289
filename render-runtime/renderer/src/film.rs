//! The film: per-pixel accumulated radiance, alpha and the albedo/normal feature buffers.

/// Accumulated render result for one frame. Values are averages (already divided by the
/// sample count) once rendering finishes.
#[derive(Clone, Debug, PartialEq)]
pub struct Film {
    pub width: u32,
    pub height: u32,
    /// Linear radiance, premultiplied by alpha, plus alpha (coverage / shadow strength).
    pub color: Vec<[f32; 4]>,
    /// First-hit surface albedo (linear RGB); zero where nothing was hit.
    pub albedo: Vec<[f32; 3]>,
    /// First-hit world-space shading normal, averaged; zero where nothing was hit.
    pub normal: Vec<[f32; 3]>,
    /// Estimated variance of each pixel's mean luminance (guides the built-in denoiser).
    pub variance: Vec<f32>,
    /// Samples each pixel received: the frame's sample count, or fewer where adaptive
    /// sampling found the pixel converged.
    pub samples: Vec<u32>,
}

impl Film {
    pub fn new(width: u32, height: u32) -> Film {
        let n = width as usize * height as usize;
        Film {
            width,
            height,
            color: vec![[0.0; 4]; n],
            albedo: vec![[0.0; 3]; n],
            normal: vec![[0.0; 3]; n],
            variance: vec![0.0; n],
            samples: vec![0; n],
        }
    }

    pub fn pixel_count(&self) -> usize {
        self.color.len()
    }

    /// Average samples per pixel actually traced.
    pub fn mean_samples(&self) -> f64 {
        let n = self.samples.len().max(1) as f64;
        self.samples.iter().map(|&s| s as f64).sum::<f64>() / n
    }

    /// Mean linear radiance over pixels with full coverage (used by analytic tests).
    pub fn mean_covered_radiance(&self) -> Option<[f64; 3]> {
        let mut sum = [0.0f64; 3];
        let mut n = 0u64;
        for c in &self.color {
            if c[3] >= 0.999 {
                for i in 0..3 {
                    sum[i] += c[i] as f64;
                }
                n += 1;
            }
        }
        (n > 0).then(|| sum.map(|s| s / n as f64))
    }
}
