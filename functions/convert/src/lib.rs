//! The convert function: PNG, JPEG or WebP in; WebP (lossy or lossless), PNG or JPEG out, with an
//! optional resize. The pure core, [`convert_bytes`], is what both the queue handler and the
//! `lightbox convert` command run.
//!
//! ```
//! use lightbox_convert::{convert_bytes, ConvertParams, Limits};
//! use lightbox_runtime::requests::ImageFormat;
//!
//! let mut png = Vec::new();
//! image::RgbImage::new(4, 4).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
//! let params = ConvertParams { format: ImageFormat::Webp, quality: Some(80), lossless: false, resize: None };
//! let out = convert_bytes(&png, &params, &Limits::default()).unwrap();
//! assert_eq!(&out.bytes[8..12], b"WEBP");
//! ```

pub mod model;

use std::io::Cursor;
use std::time::Instant;

use bytes::Bytes;
use image::{DynamicImage, ImageDecoder, ImageReader};
use lightbox_runtime::config::env_parse;
use lightbox_runtime::requests::{ConvertRequest, ImageFormat, Size};
use lightbox_runtime::worker::{Handler, Job, Outcome};
use lightbox_runtime::{Function, JobError, ObjectKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Input limits: larger inputs are refused before decoding (decompression bombs included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded input, in bytes.
    pub max_input_bytes: u64,
    /// Largest decoded image (or resize target), in pixels.
    pub max_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input_bytes: 64 * 1024 * 1024,
            max_pixels: 64 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// `LIGHTBOX_CONVERT_MAX_INPUT_BYTES` and `LIGHTBOX_CONVERT_MAX_PIXELS`, else the defaults.
    pub fn from_env() -> Self {
        let defaults = Self::default();
        Self {
            max_input_bytes: env_parse(
                "LIGHTBOX_CONVERT_MAX_INPUT_BYTES",
                defaults.max_input_bytes,
            ),
            max_pixels: env_parse("LIGHTBOX_CONVERT_MAX_PIXELS", defaults.max_pixels),
        }
    }
}

/// What to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConvertParams {
    pub format: ImageFormat,
    pub quality: Option<u8>,
    pub lossless: bool,
    pub resize: Option<Size>,
}

impl ConvertParams {
    pub fn from_request(request: &ConvertRequest) -> Self {
        Self {
            format: request.format,
            quality: request.quality,
            lossless: request.lossless,
            resize: request.resize,
        }
    }
}

/// Why a conversion failed. Every variant is a problem with the input or the parameters.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    #[error("input is {size} bytes, over the limit of {limit} bytes")]
    InputTooLarge { size: u64, limit: u64 },
    #[error("input is not a PNG, JPEG or WebP image")]
    UnknownFormat,
    #[error("image of {width}x{height} pixels is over the limit of {limit} pixels")]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error("could not decode the {format} input: {reason}")]
    Decode {
        format: &'static str,
        reason: String,
    },
    #[error("invalid parameters: {0}")]
    Parameters(String),
    #[error("could not encode {format}: {reason}")]
    Encode {
        format: &'static str,
        reason: String,
    },
}

/// A converted image.
#[derive(Debug, Clone)]
pub struct Converted {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub input_format: &'static str,
    pub decode_ms: f64,
    pub encode_ms: f64,
}

fn format_name(format: image::ImageFormat) -> Option<&'static str> {
    match format {
        image::ImageFormat::Png => Some("png"),
        image::ImageFormat::Jpeg => Some("jpeg"),
        image::ImageFormat::WebP => Some("webp"),
        _ => None,
    }
}

/// Decodes, optionally resizes, and encodes one image, refusing inputs over the limits before
/// spending memory on them.
pub fn convert_bytes(
    input: &[u8],
    params: &ConvertParams,
    limits: &Limits,
) -> Result<Converted, ConvertError> {
    if input.len() as u64 > limits.max_input_bytes {
        return Err(ConvertError::InputTooLarge {
            size: input.len() as u64,
            limit: limits.max_input_bytes,
        });
    }
    let quality = params.quality.unwrap_or(90);
    if !(1..=100).contains(&quality) {
        return Err(ConvertError::Parameters(format!(
            "quality {quality} is outside 1-100"
        )));
    }
    if params.lossless && params.format == ImageFormat::Jpeg {
        return Err(ConvertError::Parameters("JPEG cannot be lossless".into()));
    }
    if let Some(size) = params.resize {
        if size.width == 0 || size.height == 0 {
            return Err(ConvertError::Parameters(
                "resize must be at least 1x1".into(),
            ));
        }
        if size.width as u64 * size.height as u64 > limits.max_pixels {
            return Err(ConvertError::TooManyPixels {
                width: size.width,
                height: size.height,
                limit: limits.max_pixels,
            });
        }
    }

    let decode_start = Instant::now();
    let reader = ImageReader::new(Cursor::new(input))
        .with_guessed_format()
        .map_err(|_| ConvertError::UnknownFormat)?;
    let input_format = reader
        .format()
        .and_then(format_name)
        .ok_or(ConvertError::UnknownFormat)?;
    let decode_err = |err: image::ImageError| ConvertError::Decode {
        format: input_format,
        reason: err.to_string(),
    };
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    // The header's claimed size is checked before any pixel memory is allocated.
    let (width, height) = decoder.dimensions();
    if width as u64 * height as u64 > limits.max_pixels {
        return Err(ConvertError::TooManyPixels {
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    let mut image_limits = image::Limits::default();
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(16).max(1 << 20));
    decoder.set_limits(image_limits).map_err(decode_err)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    if let Some(size) = params.resize {
        image = image.resize_exact(
            size.width,
            size.height,
            image::imageops::FilterType::Lanczos3,
        );
    }
    let decode_ms = decode_start.elapsed().as_secs_f64() * 1000.0;

    let encode_start = Instant::now();
    let bytes = encode(&image, params.format, quality, params.lossless)?;
    Ok(Converted {
        bytes,
        width: image.width(),
        height: image.height(),
        input_format,
        decode_ms,
        encode_ms: encode_start.elapsed().as_secs_f64() * 1000.0,
    })
}

/// Encodes an image in the requested format.
pub fn encode(
    image: &DynamicImage,
    format: ImageFormat,
    quality: u8,
    lossless: bool,
) -> Result<Vec<u8>, ConvertError> {
    match format {
        ImageFormat::Glb | ImageFormat::Usda | ImageFormat::Usdz => {
            Err(ConvertError::Parameters(format!(
                "an image cannot be converted to {}; model formats take a GLB or USD input",
                format.extension()
            )))
        }
        ImageFormat::Webp => {
            let has_alpha = image.color().has_alpha();
            let (width, height) = (image.width(), image.height());
            let memory = if has_alpha {
                let rgba = image.to_rgba8();
                let encoder = webp::Encoder::from_rgba(&rgba, width, height);
                if lossless {
                    encoder.encode_lossless()
                } else {
                    encoder.encode(quality as f32)
                }
            } else {
                let rgb = image.to_rgb8();
                let encoder = webp::Encoder::from_rgb(&rgb, width, height);
                if lossless {
                    encoder.encode_lossless()
                } else {
                    encoder.encode(quality as f32)
                }
            };
            Ok(memory.to_vec())
        }
        ImageFormat::Png => {
            let mut out = Vec::new();
            image
                .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
                .map_err(|err| ConvertError::Encode {
                    format: "png",
                    reason: err.to_string(),
                })?;
            Ok(out)
        }
        ImageFormat::Jpeg => {
            let rgb = image.to_rgb8();
            let mut out = Vec::new();
            let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
            rgb.write_with_encoder(encoder)
                .map_err(|err| ConvertError::Encode {
                    format: "jpeg",
                    reason: err.to_string(),
                })?;
            Ok(out)
        }
    }
}

/// The output key for a job that names none: the same input bytes and parameters always give
/// the same key, so a redelivered job overwrites its own output instead of adding one.
pub fn derived_output_key(input: &[u8], params: &ConvertParams) -> ObjectKey {
    let mut hasher = Sha256::new();
    hasher.update(input);
    hasher.update(serde_json::to_vec(params).expect("params serialise"));
    let digest = hex::encode(&hasher.finalize()[..16]);
    ObjectKey::new(format!(
        "outputs/convert/{digest}.{}",
        params.format.extension()
    ))
    .expect("derived key is valid")
}

/// The queue handler: read the input from the store, convert, write the output.
pub struct ConvertHandler {
    pub limits: Limits,
}

impl Handler for ConvertHandler {
    type Request = ConvertRequest;
    const FUNCTION: Function = Function::Convert;
    const DEFAULT_QUEUE: &'static str = "convert";
    const DEFAULT_CONCURRENCY: usize = 2;

    async fn handle(&self, job: Job<ConvertRequest>) -> Result<Outcome, JobError> {
        let Job { request, ctx } = job;
        let fetch_start = Instant::now();
        let input = ctx
            .store
            .get(&request.input, Some(self.limits.max_input_bytes))
            .await?;
        let fetch_ms = fetch_start.elapsed().as_secs_f64() * 1000.0;
        if let Some(output) = &request.output {
            ctx.store.check(output)?;
        }
        ctx.progress(1, 3, None, "fetched input");
        let params = ConvertParams::from_request(&request);
        if params.format.is_model() {
            return convert_model_job(&ctx, &request, input, fetch_ms).await;
        }
        let limits = self.limits;
        let input_for_worker: Bytes = input.clone();
        let converted =
            tokio::task::spawn_blocking(move || convert_bytes(&input_for_worker, &params, &limits))
                .await
                .map_err(|err| JobError::permanent(format!("conversion crashed: {err}")))?
                .map_err(|err| JobError::permanent(err.to_string()))?;
        ctx.progress(2, 3, None, "converted");
        if ctx.is_cancelled() {
            return Err(JobError::Cancelled);
        }
        let key = request
            .output
            .clone()
            .unwrap_or_else(|| derived_output_key(&input, &params));
        let upload_start = Instant::now();
        let size = converted.bytes.len();
        ctx.store.put(&key, Bytes::from(converted.bytes)).await?;
        let upload_ms = upload_start.elapsed().as_secs_f64() * 1000.0;
        Ok(Outcome {
            outputs: vec![key.to_string()],
            result: serde_json::json!({
                "output": key.as_str(),
                "format": params.format,
                "width": converted.width,
                "height": converted.height,
                "bytes": size,
                "input_bytes": input.len(),
                "input_format": converted.input_format,
            }),
            timings_ms: vec![
                ("fetch".into(), fetch_ms),
                ("decode".into(), converted.decode_ms),
                ("encode".into(), converted.encode_ms),
                ("upload".into(), upload_ms),
            ],
            waiting_for: None,
        })
    }
}

/// The model formats a convert job can write.
pub fn model_format(format: ImageFormat) -> Option<model::ModelFormat> {
    match format {
        ImageFormat::Glb => Some(model::ModelFormat::Glb),
        ImageFormat::Usda => Some(model::ModelFormat::Usda),
        ImageFormat::Usdz => Some(model::ModelFormat::Usdz),
        _ => None,
    }
}

/// GLB ⇄ USD: import the model (instancing kept), write the requested format.
async fn convert_model_job(
    ctx: &lightbox_runtime::worker::JobContext,
    request: &ConvertRequest,
    input: Bytes,
    fetch_ms: f64,
) -> Result<Outcome, JobError> {
    let format = model_format(request.format).expect("a model format");
    let limits = lightbox_scene::ImportLimits::default();
    // A `.gltf`'s buffers and images and a USD stage's layers and textures, read from beside
    // the input under its key prefix, travel with it as one self-contained model.
    let fetched = fetch_sibling_files(ctx, &request.input, input.clone(), &limits).await?;
    let converted = tokio::task::spawn_blocking(move || {
        let bundled = fetched
            .into_model_bytes::<JobError>(&limits)
            .map_err(|err| lightbox_runtime::error::error_chain(&err))?;
        model::convert_model(&bundled, format, &limits)
            .map_err(|err| lightbox_runtime::error::error_chain(&err))
    })
    .await
    .map_err(|err| JobError::permanent(format!("conversion crashed: {err}")))?
    .map_err(JobError::permanent)?;
    if ctx.is_cancelled() {
        return Err(JobError::Cancelled);
    }
    let params = ConvertParams::from_request(request);
    let key = request
        .output
        .clone()
        .unwrap_or_else(|| derived_output_key(&input, &params));
    let upload_start = Instant::now();
    let size = converted.bytes.len();
    ctx.store.put(&key, Bytes::from(converted.bytes)).await?;
    Ok(Outcome {
        outputs: vec![key.to_string()],
        result: serde_json::json!({
            "output": key.as_str(),
            "format": request.format,
            "bytes": size,
            "input_bytes": input.len(),
            "meshes": converted.meshes,
            "instances": converted.instances,
            "triangles": converted.triangles,
        }),
        timings_ms: vec![
            ("fetch".into(), fetch_ms),
            (
                "import".into(),
                converted.import_time.as_secs_f64() * 1000.0,
            ),
            (
                "export".into(),
                converted.export_time.as_secs_f64() * 1000.0,
            ),
            (
                "upload".into(),
                upload_start.elapsed().as_secs_f64() * 1000.0,
            ),
        ],
        waiting_for: None,
    })
}

/// Generated sample inputs for demos and tests.
pub mod samples {
    /// A gradient test card as PNG, generated in code (the Quick start's demo input).
    pub fn test_card_png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbaImage::from_fn(width, height, |x, y| {
            let u = x as f32 / width.max(1) as f32;
            let v = y as f32 / height.max(1) as f32;
            let checker = ((x / 32 + y / 32) % 2) as f32 * 0.15;
            image::Rgba([
                (255.0 * u) as u8,
                (255.0 * v) as u8,
                (255.0 * (0.6 - checker)) as u8,
                255,
            ])
        });
        let mut out = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .expect("png encodes");
        out
    }

    /// A PNG whose IHDR claims the given size, with one tiny IDAT: a decompression bomb's header.
    pub fn png_with_claimed_size(width: u32, height: u32) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(
            &mut out,
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        );
        chunk(&mut out, b"IEND", &[]);
        out
    }

    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = crc32(kind, 0xffff_ffff);
        crc = crc32(data, crc);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&(!crc).to_be_bytes());
    }

    fn crc32(bytes: &[u8], mut crc: u32) -> u32 {
        for &byte in bytes {
            crc ^= byte as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    0xedb8_8320 ^ (crc >> 1)
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }
}

/// The files the model at `key` names beside it (`models/bottle.gltf` names
/// `models/bottle.bin` as `bottle.bin`), fetched from the store within `limits`
/// (`lightbox_scene::model_files`, which the render function uses too). A missing file fails the
/// job naming it and the key looked for; a store that does not answer is retried.
async fn fetch_sibling_files(
    ctx: &lightbox_runtime::worker::JobContext,
    key: &ObjectKey,
    model: Bytes,
    limits: &lightbox_scene::ImportLimits,
) -> Result<lightbox_scene::model_files::FetchedFiles, JobError> {
    use lightbox_runtime::StoreError;
    use lightbox_scene::model_files::{fetch_model_files, Fetch, ModelFilesError};
    use lightbox_scene::resources::ResourceError;

    let prefix = key.as_str().rsplit_once('/').map(|(prefix, _)| prefix);
    let fetch = |path: String, max_bytes: u64| async move {
        let looked_for = match prefix {
            Some(prefix) => format!("{prefix}/{path}"),
            None => path.clone(),
        };
        let sibling = match ObjectKey::new(looked_for.clone()) {
            Ok(sibling) => sibling,
            Err(err) => {
                return Fetch::Failed(ResourceError::Refused {
                    uri: path,
                    reason: err.reason,
                })
            }
        };
        match ctx.store.get(&sibling, Some(max_bytes)).await {
            Ok(bytes) => Fetch::Ok(Vec::from(bytes)),
            Err(StoreError::NotFound { .. }) => {
                Fetch::Failed(ResourceError::NotFound { path, looked_for })
            }
            Err(StoreError::TooLarge { size, limit, .. }) => {
                Fetch::Failed(ResourceError::TooLarge { path, size, limit })
            }
            Err(err) => Fetch::Other(JobError::from(err)),
        }
    };
    match fetch_model_files(key.as_str(), Vec::from(model), limits, fetch).await {
        Ok(fetched) => {
            if fetched.fetched() > 0 {
                tracing::info!(model = %key, files = fetched.fetched(), "fetched the files the model names");
            }
            Ok(fetched)
        }
        Err(ModelFilesError::Fetch(err)) => Err(err),
        Err(err) => Err(JobError::permanent(lightbox_runtime::error::error_chain(
            &err,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbaImage::from_fn(width, height, |x, y| {
            image::Rgba([(x * 7) as u8, (y * 3) as u8, 128, 255])
        });
        let mut out = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    fn params(format: ImageFormat) -> ConvertParams {
        ConvertParams {
            format,
            quality: None,
            lossless: false,
            resize: None,
        }
    }

    #[test]
    fn converts_between_formats_and_resizes() {
        let input = png(64, 32);
        for format in [ImageFormat::Webp, ImageFormat::Png, ImageFormat::Jpeg] {
            let out = convert_bytes(
                &input,
                &ConvertParams {
                    resize: Some(Size {
                        width: 16,
                        height: 8,
                    }),
                    ..params(format)
                },
                &Limits::default(),
            )
            .unwrap();
            let decoded = image::load_from_memory(&out.bytes).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (16, 8), "{format:?}");
            assert_eq!(out.input_format, "png");
        }
    }

    #[test]
    fn lossless_webp_keeps_every_pixel() {
        let input = png(33, 17);
        let out = convert_bytes(
            &input,
            &ConvertParams {
                lossless: true,
                ..params(ImageFormat::Webp)
            },
            &Limits::default(),
        )
        .unwrap();
        let original = image::load_from_memory(&input).unwrap().to_rgba8();
        let decoded = image::load_from_memory(&out.bytes).unwrap().to_rgba8();
        assert_eq!(original, decoded);
    }

    #[test]
    fn refuses_bad_inputs_with_clear_errors() {
        let limits = Limits {
            max_input_bytes: 1 << 20,
            max_pixels: 10_000,
        };
        assert_eq!(
            convert_bytes(b"hello", &params(ImageFormat::Png), &limits).unwrap_err(),
            ConvertError::UnknownFormat
        );
        let big = png(200, 200);
        assert!(matches!(
            convert_bytes(&big, &params(ImageFormat::Png), &limits),
            Err(ConvertError::TooManyPixels {
                width: 200,
                height: 200,
                ..
            })
        ));
        let mut truncated = png(50, 50);
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(
            convert_bytes(&truncated, &params(ImageFormat::Png), &limits),
            Err(ConvertError::Decode { .. })
        ));
        let tiny = Limits {
            max_input_bytes: 10,
            max_pixels: 10,
        };
        assert!(matches!(
            convert_bytes(&big, &params(ImageFormat::Png), &tiny),
            Err(ConvertError::InputTooLarge { .. })
        ));
        let bad_quality = ConvertParams {
            quality: Some(0),
            ..params(ImageFormat::Webp)
        };
        assert!(convert_bytes(&png(4, 4), &bad_quality, &limits)
            .unwrap_err()
            .to_string()
            .contains("quality"));
    }

    #[test]
    fn model_errors_name_their_cause() {
        let glb = lightbox_testmodels::bearing_glb(0.02);
        let err = model::convert_model(
            &glb[..glb.len() / 2],
            model::ModelFormat::Usdz,
            &lightbox_scene::ImportLimits::default(),
        )
        .unwrap_err();
        let message = lightbox_runtime::error::error_chain(&err);
        assert!(
            message.starts_with("invalid glTF input: invalid gltf document: "),
            "{message}"
        );
    }

    #[test]
    fn a_header_claiming_huge_dimensions_is_refused_before_decoding() {
        let bomb = crate::samples::png_with_claimed_size(100_000, 100_000);
        let err = convert_bytes(&bomb, &params(ImageFormat::Webp), &Limits::default()).unwrap_err();
        assert_eq!(
            err,
            ConvertError::TooManyPixels {
                width: 100_000,
                height: 100_000,
                limit: Limits::default().max_pixels
            }
        );
    }

    #[test]
    fn derived_keys_depend_on_content_and_parameters_only() {
        let input = png(8, 8);
        let a = derived_output_key(&input, &params(ImageFormat::Webp));
        assert_eq!(a, derived_output_key(&input, &params(ImageFormat::Webp)));
        assert_ne!(
            a,
            derived_output_key(
                &input,
                &ConvertParams {
                    quality: Some(50),
                    ..params(ImageFormat::Webp)
                }
            )
        );
        assert_ne!(
            a,
            derived_output_key(&png(9, 8), &params(ImageFormat::Webp))
        );
        assert!(a.as_str().starts_with("outputs/convert/") && a.as_str().ends_with(".webp"));
    }
}
