//! Deterministic random numbers keyed by (seed, pixel, sample).
//!
//! Every camera sample gets its own small generator whose state is a hash of the job seed, the
//! pixel index and the sample index. No state is shared between threads or samples, so the image
//! does not depend on tile scheduling: the same job renders the same bytes.

/// SplitMix64 finaliser: a strong 64-bit bit mixer.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A per-sample random stream (SplitMix64 sequence from a hashed start state).
#[derive(Clone, Debug)]
pub struct Sampler {
    state: u64,
    /// Hash of (seed, pixel): the per-pixel offset of [`Sampler::stratified`].
    pixel_key: u64,
    sample: u32,
    /// Samples the pixel gets in all, when known (0 otherwise).
    n_samples: u32,
}

impl Sampler {
    /// The stream for one `(seed, pixel, sample)` triple.
    pub fn new(seed: u64, pixel: u64, sample: u32) -> Sampler {
        let key = mix64(seed ^ 0x5851_f42d_4c95_7f2d)
            ^ mix64(pixel.wrapping_add(0x1405_7b7e_f767_814f)).rotate_left(17)
            ^ mix64((sample as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xd1b5_4a32_d192_ed03);
        Sampler {
            state: mix64(key),
            pixel_key: mix64(seed ^ 0x2545_f491_4f6c_dd1d) ^ mix64(pixel ^ 0x9e6c_63d0_676a_9a99),
            sample,
            n_samples: 0,
        }
    }

    /// The stream for sample `sample` of `n_samples` in a pixel: as [`Sampler::new`], and
    /// [`Sampler::stratified`] can give each of the pixel's samples its own stratum.
    pub fn for_pixel(seed: u64, pixel: u64, sample: u32, n_samples: u32) -> Sampler {
        Sampler {
            n_samples,
            ..Sampler::new(seed, pixel, sample)
        }
    }

    /// A value in `[0, 1)` stratified over the pixel's samples, for one decision per sample
    /// (an alpha test) that should pass in a fraction of the pixel's samples close to its
    /// probability: within one sample of it, where independent random numbers miss by about
    /// `sqrt(n)` samples. With the sample count known ([`Sampler::for_pixel`]), the pixel's `n`
    /// samples take the `n` strata of `[0, 1)` in a per-pixel rotated order, jittered inside
    /// each; without it, a rank-1 lattice `fract(offset + s * (golden ratio - 1))`. Every call
    /// with the same `dimension` gives the same value.
    pub fn stratified(&self, dimension: u32) -> f32 {
        let key = mix64(self.pixel_key ^ (dimension as u64).wrapping_mul(0xd6e8_feb8_6659_fd93));
        let unit = |bits: u64| (bits >> 40) as f64 / (1u64 << 24) as f64;
        let v = if self.n_samples > 1 {
            let n = self.n_samples as u64;
            let stratum = (self.sample as u64 % n + key % n) % n;
            let jitter = unit(mix64(
                key ^ (self.sample as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ));
            (stratum as f64 + jitter) / n as f64
        } else {
            (unit(key) + self.sample as f64 * 0.618_033_988_749_894_9).fract()
        };
        (v as f32).min(1.0 - f32::EPSILON)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        // 24 high bits give every representable value in [0, 1) with spacing 2^-24.
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    pub fn next_2d(&mut self) -> (f32, f32) {
        (self.next_f32(), self.next_f32())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<f32> = {
            let mut s = Sampler::new(7, 100, 3);
            (0..8).map(|_| s.next_f32()).collect()
        };
        let b: Vec<f32> = {
            let mut s = Sampler::new(7, 100, 3);
            (0..8).map(|_| s.next_f32()).collect()
        };
        let c: Vec<f32> = {
            let mut s = Sampler::new(7, 100, 4);
            (0..8).map(|_| s.next_f32()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn stratified_values_cover_the_unit_interval_evenly_per_pixel() {
        for pixel in [0u64, 17, 12345] {
            let n = 64u32;
            let values: Vec<f32> = (0..n)
                .map(|s| Sampler::for_pixel(9, pixel, s, n).stratified(0))
                .collect();
            // Every bin of width 1/16 holds exactly 4 of the 64 values.
            for bin in 0..16 {
                let count = values
                    .iter()
                    .filter(|&&v| (v * 16.0) as usize == bin)
                    .count();
                assert_eq!(count, 4, "pixel {pixel} bin {bin}");
            }
            // A 30 % alpha passes in 30 % of the samples, to within one.
            let passed = values.iter().filter(|&&v| v < 0.3).count() as i32;
            assert!((passed - 19).abs() <= 1, "passed {passed} of 64");
            // Without a sample count the lattice still spreads the values: bins of 1/8 hold
            // 8 each, give or take two.
            let lattice: Vec<f32> = (0..n)
                .map(|s| Sampler::new(9, pixel, s).stratified(0))
                .collect();
            for bin in 0..8 {
                let count = lattice
                    .iter()
                    .filter(|&&v| (v * 8.0) as usize == bin)
                    .count();
                assert!(
                    (6..=10).contains(&count),
                    "pixel {pixel} lattice bin {bin}: {count}"
                );
            }
        }
        // Different pixels get different offsets.
        assert_ne!(
            Sampler::new(9, 1, 0).stratified(0),
            Sampler::new(9, 2, 0).stratified(0)
        );
    }

    #[test]
    fn uniform_mean_and_range() {
        let mut s = Sampler::new(1, 2, 3);
        let n = 100_000;
        let mut sum = 0.0f64;
        for _ in 0..n {
            let v = s.next_f32();
            assert!((0.0..1.0).contains(&v));
            sum += v as f64;
        }
        let mean = sum / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
    }
}
