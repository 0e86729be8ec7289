//! Image comparison for engine parity and quality benchmarks: SSIM on luminance and RMSE.
//!
//! Both metrics work on display-referred images (what a viewer sees): 8-bit PNGs as the engines
//! encode them, composited over the background, converted to Rec. 709 luma in 0..1.

use std::fmt;

/// A single-channel image, values in 0..1.
#[derive(Clone, Debug, PartialEq)]
pub struct LumaImage {
    pub width: u32,
    pub height: u32,
    pub values: Vec<f32>,
}

/// Why an image could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("png decoding failed")]
    Png(#[from] png::DecodingError),
    #[error("unsupported png layout: {0}")]
    Layout(String),
    #[error("image sizes differ: {0}x{1} vs {2}x{3}")]
    SizeMismatch(u32, u32, u32, u32),
}

impl LumaImage {
    /// Decodes an 8- or 16-bit PNG (grey, RGB or RGBA; alpha composited over white) to luma.
    pub fn from_png(bytes: &[u8]) -> Result<LumaImage, CompareError> {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND);
        let mut reader = decoder.read_info()?;
        let mut buf = vec![0u8; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf)?;
        let (w, h) = (info.width, info.height);
        let channels = info.color_type.samples();
        let sixteen = info.bit_depth == png::BitDepth::Sixteen;
        let sample = |i: usize| -> f32 {
            if sixteen {
                u16::from_be_bytes([buf[2 * i], buf[2 * i + 1]]) as f32 / 65535.0
            } else {
                buf[i] as f32 / 255.0
            }
        };
        let n = w as usize * h as usize;
        let mut values = Vec::with_capacity(n);
        for p in 0..n {
            let base = p * channels;
            let (rgb, alpha) = match channels {
                1 => ([sample(base); 3], 1.0),
                2 => ([sample(base); 3], sample(base + 1)),
                3 => ([sample(base), sample(base + 1), sample(base + 2)], 1.0),
                4 => (
                    [sample(base), sample(base + 1), sample(base + 2)],
                    sample(base + 3),
                ),
                c => return Err(CompareError::Layout(format!("{c} channels"))),
            };
            let y = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
            values.push(y * alpha + (1.0 - alpha));
        }
        Ok(LumaImage {
            width: w,
            height: h,
            values,
        })
    }

    /// Averages `factor x factor` blocks (edges that do not fill a block are dropped). Comparing
    /// at a coarser scale weighs what the image shows over per-pixel noise.
    pub fn downsample(&self, factor: u32) -> LumaImage {
        let f = factor.max(1) as usize;
        let (w, h) = (self.width as usize / f, self.height as usize / f);
        let mut values = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                let mut sum = 0.0;
                for dy in 0..f {
                    for dx in 0..f {
                        sum += self.values[(y * f + dy) * self.width as usize + x * f + dx];
                    }
                }
                values.push(sum / (f * f) as f32);
            }
        }
        LumaImage {
            width: w as u32,
            height: h as u32,
            values,
        }
    }

    fn check_size(&self, other: &LumaImage) -> Result<(), CompareError> {
        if (self.width, self.height) != (other.width, other.height) {
            return Err(CompareError::SizeMismatch(
                self.width,
                self.height,
                other.width,
                other.height,
            ));
        }
        Ok(())
    }

    /// Root mean square difference, 0 for identical images.
    pub fn rmse(&self, other: &LumaImage) -> Result<f64, CompareError> {
        self.check_size(other)?;
        let sum: f64 = self
            .values
            .iter()
            .zip(&other.values)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        Ok((sum / self.values.len().max(1) as f64).sqrt())
    }

    /// Mean structural similarity (Wang et al. 2004): an 11x11 Gaussian window with sigma 1.5,
    /// K1 = 0.01, K2 = 0.03, dynamic range 1. 1 for identical images.
    pub fn ssim(&self, other: &LumaImage) -> Result<f64, CompareError> {
        self.check_size(other)?;
        let (w, h) = (self.width as usize, self.height as usize);
        let a = &self.values;
        let b = &other.values;
        let prod = |f: &dyn Fn(f32, f32) -> f32| -> Vec<f32> {
            a.iter().zip(b).map(|(x, y)| f(*x, *y)).collect()
        };
        let mu_a = blur(a, w, h);
        let mu_b = blur(b, w, h);
        let aa = blur(&prod(&|x, _| x * x), w, h);
        let bb = blur(&prod(&|_, y| y * y), w, h);
        let ab = blur(&prod(&|x, y| x * y), w, h);
        let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
        let mut sum = 0.0f64;
        for i in 0..w * h {
            let (ma, mb) = (mu_a[i] as f64, mu_b[i] as f64);
            let va = aa[i] as f64 - ma * ma;
            let vb = bb[i] as f64 - mb * mb;
            let cov = ab[i] as f64 - ma * mb;
            sum += ((2.0 * ma * mb + c1) * (2.0 * cov + c2))
                / ((ma * ma + mb * mb + c1) * (va + vb + c2));
        }
        Ok(sum / (w * h).max(1) as f64)
    }

    /// An 8-bit grey PNG of the absolute difference, amplified 4x (for failing tests).
    pub fn diff_png(&self, other: &LumaImage) -> Result<Vec<u8>, CompareError> {
        self.check_size(other)?;
        let data: Vec<u8> = self
            .values
            .iter()
            .zip(&other.values)
            .map(|(a, b)| ((a - b).abs() * 4.0 * 255.0).clamp(0.0, 255.0) as u8)
            .collect();
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width, self.height);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc
                .write_header()
                .map_err(|e| CompareError::Layout(e.to_string()))?;
            writer
                .write_image_data(&data)
                .map_err(|e| CompareError::Layout(e.to_string()))?;
        }
        Ok(out)
    }
}

/// Separable Gaussian blur (11 taps, sigma 1.5) with clamped edges.
fn blur(src: &[f32], w: usize, h: usize) -> Vec<f32> {
    const RADIUS: isize = 5;
    let weights: Vec<f32> = (-RADIUS..=RADIUS)
        .map(|i| (-(i * i) as f32 / (2.0 * 1.5 * 1.5)).exp())
        .collect();
    let norm: f32 = weights.iter().sum();
    let weights: Vec<f32> = weights.iter().map(|v| v / norm).collect();
    let clamp = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
    let mut tmp = vec![0.0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            tmp[y * w + x] = weights
                .iter()
                .enumerate()
                .map(|(k, wt)| wt * src[y * w + clamp(x as isize + k as isize - RADIUS, w)])
                .sum();
        }
    }
    let mut out = vec![0.0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] = weights
                .iter()
                .enumerate()
                .map(|(k, wt)| wt * tmp[clamp(y as isize + k as isize - RADIUS, h) * w + x])
                .sum();
        }
    }
    out
}

/// SSIM and RMSE of one image against another.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Similarity {
    pub ssim: f64,
    pub rmse: f64,
}

impl fmt::Display for Similarity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SSIM {:.4}, RMSE {:.4}", self.ssim, self.rmse)
    }
}

/// Compares two PNG-encoded images.
pub fn compare_png(a: &[u8], b: &[u8]) -> Result<Similarity, CompareError> {
    let (a, b) = (LumaImage::from_png(a)?, LumaImage::from_png(b)?);
    Ok(Similarity {
        ssim: a.ssim(&b)?,
        rmse: a.rmse(&b)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32, f: impl Fn(u32, u32) -> f32) -> LumaImage {
        LumaImage {
            width: w,
            height: h,
            values: (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .map(|(x, y)| f(x, y))
                .collect(),
        }
    }

    #[test]
    fn ssim_is_one_for_identical_and_drops_with_noise_and_shift() {
        let a = image(32, 32, |x, y| ((x / 4 + y / 4) % 2) as f32 * 0.8 + 0.1);
        assert!((a.ssim(&a).unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(a.rmse(&a).unwrap(), 0.0);
        let noisy = image(32, 32, |x, y| {
            a.values[(y * 32 + x) as usize]
                + if (x * 7 + y * 13) % 5 == 0 {
                    0.2
                } else {
                    -0.05
                }
        });
        let shifted = image(32, 32, |x, y| a.values[(y * 32 + (x + 2) % 32) as usize]);
        let s_noise = a.ssim(&noisy).unwrap();
        let s_shift = a.ssim(&shifted).unwrap();
        assert!(s_noise < 0.99 && s_noise > 0.3, "{s_noise}");
        assert!(s_shift < 0.1, "{s_shift}");
        let other = image(16, 16, |_, _| 0.0);
        assert!(a.ssim(&other).is_err());
    }

    #[test]
    fn png_luma_composites_over_white() {
        // 2x1 RGBA: opaque black, then fully transparent.
        let mut png_bytes = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut png_bytes, 2, 1);
            encoder.set_color(png::ColorType::Rgba);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().unwrap();
            writer
                .write_image_data(&[0, 0, 0, 255, 0, 0, 0, 0])
                .unwrap();
        }
        let luma = LumaImage::from_png(&png_bytes).unwrap();
        assert_eq!(luma.values, vec![0.0, 1.0]);
    }
}
