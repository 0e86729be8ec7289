//! From linear radiance to encoded bytes: exposure, tone curve, sRGB, background compositing,
//! then PNG (8/16 bit with alpha), WebP (lossy/lossless) or animated WebP.

use crate::film::Film;
use crate::spec::{ImageFormat, ToneMap};
use crate::studio::Background;

/// A display-referred RGBA image: sRGB-encoded colour, straight (non-premultiplied) alpha, 0..1.
#[derive(Clone, Debug, PartialEq)]
pub struct DisplayImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<[f32; 4]>,
}

/// Encoding failures.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("png encoding failed")]
    Png(#[from] png::EncodingError),
    #[error("webp encoding failed: {0}")]
    Webp(String),
}

/// The filmic curve: a rational fit of an S-shaped film response (toe, linear section,
/// shoulder) that maps scene-linear values to 0..1 without a hard clip.
pub fn filmic(x: f32) -> f32 {
    let x = x.max(0.0);
    // Coefficients of a rational curve f(x) = x(ax + b) / (x(cx + d) + e), normalised so that
    // very bright values approach 1.
    let (a, b, c, d, e) = (2.51, 0.03, 2.43, 0.59, 0.14);
    ((x * (a * x + b)) / (x * (c * x + d) + e)).clamp(0.0, 1.0)
}

pub fn linear_to_srgb(c: f32) -> f32 {
    let c = c.clamp(0.0, 1.0);
    if c <= 0.003_130_8 {
        c * 12.92
    } else {
        1.055 * c.powf(1.0 / 2.4) - 0.055
    }
}

/// Tone maps the film and composites it over the background.
pub fn to_display(
    film: &Film,
    tone: ToneMap,
    exposure: f32,
    background: &Background,
) -> DisplayImage {
    let scale = exposure.exp2();
    let curve = |v: f32| -> f32 {
        let v = v * scale;
        let mapped = match tone {
            ToneMap::Filmic => filmic(v),
            ToneMap::Linear => v.clamp(0.0, 1.0),
        };
        linear_to_srgb(mapped)
    };
    let pixels = film
        .color
        .iter()
        .map(|c| {
            let alpha = c[3].clamp(0.0, 1.0);
            // Tone map the un-premultiplied colour, then premultiply again in display space.
            let rgb = if alpha > 1e-4 {
                [
                    curve(c[0] / alpha),
                    curve(c[1] / alpha),
                    curve(c[2] / alpha),
                ]
            } else {
                [0.0; 3]
            };
            match background {
                Background::Transparent => [rgb[0], rgb[1], rgb[2], alpha],
                Background::Color { srgb } => {
                    let mix = |i: usize| rgb[i] * alpha + srgb[i].clamp(0.0, 1.0) * (1.0 - alpha);
                    [mix(0), mix(1), mix(2), 1.0]
                }
            }
        })
        .collect();
    DisplayImage {
        width: film.width,
        height: film.height,
        pixels,
    }
}

impl DisplayImage {
    /// 8-bit RGBA bytes.
    pub fn to_rgba8(&self) -> Vec<u8> {
        self.pixels
            .iter()
            .flat_map(|p| p.map(|v| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8))
            .collect()
    }

    /// 16-bit RGBA samples.
    pub fn to_rgba16(&self) -> Vec<u16> {
        self.pixels
            .iter()
            .flat_map(|p| p.map(|v| (v.clamp(0.0, 1.0) * 65535.0 + 0.5) as u16))
            .collect()
    }

    /// True when every pixel is fully opaque, so RGB encodings lose nothing.
    pub fn is_opaque(&self) -> bool {
        self.pixels.iter().all(|p| p[3] >= 1.0)
    }
}

/// Encodes one image in the requested format.
pub fn encode(image: &DisplayImage, format: &ImageFormat) -> Result<Vec<u8>, EncodeError> {
    match format {
        ImageFormat::Png { bit_depth } => encode_png(image, *bit_depth),
        ImageFormat::Webp { quality, lossless } => encode_webp(image, *quality, *lossless),
    }
}

/// PNG, RGBA, 8 or 16 bits per channel.
pub fn encode_png(image: &DisplayImage, bit_depth: u8) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, image.width, image.height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_source_srgb(png::SrgbRenderingIntent::Perceptual);
        if bit_depth == 16 {
            encoder.set_depth(png::BitDepth::Sixteen);
            let mut writer = encoder.write_header()?;
            let bytes: Vec<u8> = image
                .to_rgba16()
                .iter()
                .flat_map(|v| v.to_be_bytes())
                .collect();
            writer.write_image_data(&bytes)?;
        } else {
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header()?;
            writer.write_image_data(&image.to_rgba8())?;
        }
    }
    Ok(out)
}

/// WebP, lossy at `quality` or lossless, always with alpha.
pub fn encode_webp(
    image: &DisplayImage,
    quality: f32,
    lossless: bool,
) -> Result<Vec<u8>, EncodeError> {
    let rgba = image.to_rgba8();
    let encoder = webp::Encoder::from_rgba(&rgba, image.width, image.height);
    let memory = encoder
        .encode_simple(lossless, quality)
        .map_err(|e| EncodeError::Webp(format!("{e:?}")))?;
    Ok(memory.to_vec())
}

/// An animated WebP that loops forever, `frame_ms` per frame.
pub fn encode_animated_webp(
    frames: &[DisplayImage],
    frame_ms: u32,
    quality: f32,
    lossless: bool,
) -> Result<Vec<u8>, EncodeError> {
    let Some(first) = frames.first() else {
        return Err(EncodeError::Webp("no frames".into()));
    };
    let mut config =
        webp::WebPConfig::new().map_err(|_| EncodeError::Webp("config init failed".into()))?;
    config.lossless = i32::from(lossless);
    config.quality = quality;
    let rgba: Vec<Vec<u8>> = frames.iter().map(DisplayImage::to_rgba8).collect();
    let mut encoder = webp::AnimEncoder::new(first.width, first.height, &config);
    encoder.set_loop_count(0);
    for (i, (frame, bytes)) in frames.iter().zip(&rgba).enumerate() {
        if frame.width != first.width || frame.height != first.height {
            return Err(EncodeError::Webp(format!("frame {i} has a different size")));
        }
        let timestamp = (i as u64 * frame_ms as u64).min(i32::MAX as u64) as i32;
        encoder.add_frame(webp::AnimFrame::from_rgba(
            bytes,
            frame.width,
            frame.height,
            timestamp,
        ));
    }
    let memory = encoder
        .try_encode()
        .map_err(|e| EncodeError::Webp(format!("{e:?}")))?;
    Ok(memory.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filmic_is_monotonic_and_bounded() {
        let mut prev = -1.0;
        for i in 0..1000 {
            let v = filmic(i as f32 * 0.05);
            assert!(v >= prev && (0.0..=1.0).contains(&v));
            prev = v;
        }
        assert!(filmic(100.0) > 0.98);
        assert_eq!(filmic(0.0), 0.0);
    }

    #[test]
    fn png_and_webp_encode_with_alpha() {
        let mut film = Film::new(8, 4);
        film.color[5] = [0.5, 0.2, 0.1, 1.0];
        film.color[6] = [0.0, 0.0, 0.0, 0.5];
        let img = to_display(&film, ToneMap::Filmic, 0.0, &Background::Transparent);
        assert!(!img.is_opaque());
        for depth in [8, 16] {
            let bytes = encode_png(&img, depth).unwrap();
            let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
            let reader = decoder.read_info().unwrap();
            let info = reader.info();
            assert_eq!((info.width, info.height), (8, 4));
            assert_eq!(info.color_type, png::ColorType::Rgba);
        }
        let lossy = encode_webp(&img, 80.0, false).unwrap();
        assert_eq!(&lossy[0..4], b"RIFF");
        let lossless = encode_webp(&img, 80.0, true).unwrap();
        assert_eq!(&lossless[8..12], b"WEBP");
        let mut other = img.clone();
        other.pixels[0] = [1.0, 1.0, 1.0, 1.0];
        let anim = encode_animated_webp(&[img, other], 100, 80.0, false).unwrap();
        assert!(
            anim.windows(4).any(|w| w == b"ANIM"),
            "animated webp lacks an ANIM chunk"
        );
    }

    #[test]
    fn colour_background_composites_to_opaque() {
        let film = Film::new(2, 2);
        let img = to_display(
            &film,
            ToneMap::Linear,
            0.0,
            &Background::Color {
                srgb: [1.0, 0.5, 0.0],
            },
        );
        assert!(img.is_opaque());
        assert_eq!(img.pixels[0], [1.0, 0.5, 0.0, 1.0]);
    }
}
