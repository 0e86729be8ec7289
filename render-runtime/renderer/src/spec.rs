//! What a job asks for ([`RenderSpec`], serde data) and what actually runs ([`RenderPlan`]).
//!
//! The spec is raw input: optional samples, a requested denoiser that may not be compiled in.
//! [`RenderSpec::resolve_for`] validates it for an engine and fills in every decision (the sample
//! policy, the denoiser that will really run), so the renderer works from a plan with no
//! `Option`s left. A denoiser the engine does not have is an error, not a silent substitute.

use serde::{Deserialize, Serialize};

use crate::engine::EngineKind;
use crate::studio::Studio;

/// Whether the native engine has Intel OIDN here: its library, loaded at run time, is found
/// (`denoise::oidn` says where it looks; `tools/setup.sh` installs it).
pub fn native_has_oidn() -> bool {
    crate::denoise::oidn_available()
}

/// Which denoiser a job asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenoiseRequest {
    /// OIDN when the engine has it, otherwise no denoising: the built-in filter made images
    /// worse than none (mean FLIP against native at 1024 spp, bearing at 512² 64 spp: built-in
    /// 0.034, undenoised 0.023, OIDN 0.015; issue #17), so it runs only when asked for by name.
    #[default]
    Auto,
    /// OIDN, or an invalid spec where the engine lacks it (a native build without `oidn`).
    Oidn,
    Builtin,
    Off,
}

/// The denoiser that ran (reported in the output).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Denoiser {
    Oidn,
    Builtin,
    Off,
}

impl Denoiser {
    pub fn as_str(self) -> &'static str {
        match self {
            Denoiser::Oidn => "oidn",
            Denoiser::Builtin => "builtin",
            Denoiser::Off => "off",
        }
    }
}

/// How linear radiance becomes display values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToneMap {
    /// A filmic S-curve that rolls off highlights instead of clipping them.
    #[default]
    Filmic,
    /// Linear, clamped to 1.
    Linear,
}

/// Encoded output format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ImageFormat {
    /// PNG with alpha, 8 or 16 bits per channel.
    Png {
        #[serde(default = "default_bit_depth")]
        bit_depth: u8,
    },
    /// WebP: lossy at `quality` (0-100), or lossless.
    Webp {
        #[serde(default = "default_quality")]
        quality: f32,
        #[serde(default)]
        lossless: bool,
    },
}

fn default_bit_depth() -> u8 {
    8
}
fn default_quality() -> f32 {
    90.0
}

impl Default for ImageFormat {
    fn default() -> Self {
        ImageFormat::Png { bit_depth: 8 }
    }
}

impl ImageFormat {
    /// File extension without the dot.
    pub fn extension(&self) -> &'static str {
        match self {
            ImageFormat::Png { .. } => "png",
            ImageFormat::Webp { .. } => "webp",
        }
    }
    pub fn mime_type(&self) -> &'static str {
        match self {
            ImageFormat::Png { .. } => "image/png",
            ImageFormat::Webp { .. } => "image/webp",
        }
    }
}

/// A turntable: `frames` views orbiting the model once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurntableSpec {
    pub frames: u32,
    /// Display time of one frame in the animated WebP.
    pub frame_ms: u32,
    /// Total rotation over all frames.
    pub degrees: f32,
}

impl Default for TurntableSpec {
    fn default() -> Self {
        TurntableSpec {
            frames: 12,
            frame_ms: 100,
            degrees: 360.0,
        }
    }
}

/// A render request as a job sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RenderSpec {
    pub width: u32,
    pub height: u32,
    /// Samples per pixel; `None` applies the sample policy ([`policy_samples`]).
    pub samples: Option<u32>,
    pub seed: u64,
    /// Path length limit (surface interactions after the camera hit).
    pub max_bounces: u32,
    pub denoise: DenoiseRequest,
    pub tone: ToneMap,
    /// Exposure adjustment in stops.
    pub exposure: f32,
    pub studio: Studio,
    pub turntable: Option<TurntableSpec>,
    pub format: ImageFormat,
    /// Adaptive sampling (native engine): `samples` becomes a per-pixel budget and a pixel
    /// stops once its estimated relative error (standard error of its mean luminance over the
    /// luminance, of its alpha over `1 - alpha`) falls below this, after a quarter of the budget (at least 16). `0`, the
    /// default, gives every pixel the full count. The Cycles engine ignores it.
    #[serde(skip_serializing_if = "is_zero")]
    pub adaptive_threshold: f32,
}

fn is_zero(v: &f32) -> bool {
    *v == 0.0
}

impl Default for RenderSpec {
    fn default() -> Self {
        RenderSpec {
            width: 512,
            height: 512,
            samples: None,
            seed: 0,
            max_bounces: 6,
            denoise: DenoiseRequest::Auto,
            tone: ToneMap::Filmic,
            exposure: 0.0,
            studio: Studio::product(),
            turntable: None,
            format: ImageFormat::default(),
            adaptive_threshold: 0.0,
        }
    }
}

/// Why a spec cannot be rendered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// Largest accepted image edge.
pub const MAX_EDGE: u32 = 16384;
/// Largest accepted pixel count per frame.
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// The sample policy: `max(32, base * min(width, height) / 2048)` with base 256, unless the
/// request sets samples explicitly. 512² → 64, 1024² → 128, 2048² → 256.
pub fn policy_samples(width: u32, height: u32, requested: Option<u32>) -> u32 {
    const BASE: u64 = 256;
    requested.unwrap_or_else(|| {
        let short_edge = width.min(height) as u64;
        (BASE * short_edge / 2048).max(32) as u32
    })
}

/// Whether samples came from the request or the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleSource {
    Explicit,
    Policy,
}

/// A validated, fully resolved render: what actually runs.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderPlan {
    pub width: u32,
    pub height: u32,
    pub samples: u32,
    pub sample_source: SampleSource,
    pub seed: u64,
    pub max_bounces: u32,
    pub denoiser: Denoiser,
    pub tone: ToneMap,
    pub exposure: f32,
    pub studio: Studio,
    /// Turntable angles in degrees, one per frame; a still is a single frame at 0.
    pub frame_angles: Vec<f32>,
    pub frame_ms: u32,
    pub is_turntable: bool,
    pub format: ImageFormat,
    /// See [`RenderSpec::adaptive_threshold`]; 0 is off.
    pub adaptive_threshold: f32,
}

impl RenderSpec {
    /// Validates the spec and resolves samples and the denoiser for the native engine.
    pub fn resolve(&self) -> Result<RenderPlan, SpecError> {
        self.resolve_for(EngineKind::Native)
    }

    /// Validates the spec and resolves samples and the denoiser for `engine`.
    pub fn resolve_for(&self, engine: EngineKind) -> Result<RenderPlan, SpecError> {
        let invalid = |field: &'static str, reason: String| SpecError::Invalid { field, reason };
        if self.width == 0 || self.height == 0 || self.width > MAX_EDGE || self.height > MAX_EDGE {
            return Err(invalid(
                "size",
                format!(
                    "{}x{} must be between 1 and {MAX_EDGE} per edge",
                    self.width, self.height
                ),
            ));
        }
        if self.width as u64 * self.height as u64 > MAX_PIXELS {
            return Err(invalid(
                "size",
                format!("{}x{} exceeds {MAX_PIXELS} pixels", self.width, self.height),
            ));
        }
        if let Some(s) = self.samples {
            if s == 0 || s > 1 << 16 {
                return Err(invalid(
                    "samples",
                    format!("{s} must be between 1 and 65536"),
                ));
            }
        }
        if self.max_bounces > 64 {
            return Err(invalid(
                "max_bounces",
                format!("{} must be at most 64", self.max_bounces),
            ));
        }
        if !self.exposure.is_finite() || self.exposure.abs() > 20.0 {
            return Err(invalid(
                "exposure",
                format!("{} must be within ±20 stops", self.exposure),
            ));
        }
        if !(0.0..=1.0).contains(&self.adaptive_threshold) {
            return Err(invalid(
                "adaptive_threshold",
                format!("{} must be between 0 and 1", self.adaptive_threshold),
            ));
        }
        match &self.format {
            ImageFormat::Png { bit_depth } if *bit_depth != 8 && *bit_depth != 16 => {
                return Err(invalid(
                    "format.bit_depth",
                    format!("{bit_depth} must be 8 or 16"),
                ));
            }
            ImageFormat::Webp { quality, .. } if !(0.0..=100.0).contains(quality) => {
                return Err(invalid(
                    "format.quality",
                    format!("{quality} must be between 0 and 100"),
                ));
            }
            _ => {}
        }
        let (frame_angles, frame_ms) = match &self.turntable {
            Some(t) => {
                if t.frames == 0 || t.frames > 720 {
                    return Err(invalid(
                        "turntable.frames",
                        format!("{} must be between 1 and 720", t.frames),
                    ));
                }
                if !t.degrees.is_finite() {
                    return Err(invalid("turntable.degrees", "must be finite".into()));
                }
                let step = t.degrees / t.frames as f32;
                (
                    (0..t.frames).map(|i| i as f32 * step).collect(),
                    t.frame_ms.max(1),
                )
            }
            None => (vec![0.0], 0),
        };
        // Blender ships its own OIDN; the native engine has it where its library is found.
        let has_oidn = match engine {
            EngineKind::Native => native_has_oidn(),
            EngineKind::Cycles => true,
        };
        let denoiser = match self.denoise {
            DenoiseRequest::Off => Denoiser::Off,
            DenoiseRequest::Builtin => Denoiser::Builtin,
            DenoiseRequest::Auto | DenoiseRequest::Oidn if has_oidn => Denoiser::Oidn,
            // No OIDN: `auto` leaves the image undenoised (the built-in filter adds error); the
            // output's `denoiser` field says so.
            DenoiseRequest::Auto => Denoiser::Off,
            DenoiseRequest::Oidn => {
                return Err(invalid(
                    "denoise",
                    format!(
                        "oidn is not available to the {engine} engine here: {} (ask for auto or builtin)",
                        crate::denoise::oidn::status().err().unwrap_or_default()
                    ),
                ))
            }
        };
        Ok(RenderPlan {
            width: self.width,
            height: self.height,
            samples: policy_samples(self.width, self.height, self.samples),
            sample_source: if self.samples.is_some() {
                SampleSource::Explicit
            } else {
                SampleSource::Policy
            },
            seed: self.seed,
            max_bounces: self.max_bounces,
            denoiser,
            tone: self.tone,
            exposure: self.exposure,
            studio: self.studio.clone(),
            frame_angles,
            frame_ms,
            is_turntable: self.turntable.is_some(),
            format: self.format.clone(),
            adaptive_threshold: self.adaptive_threshold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_policy_table() {
        let table = [
            ((512, 512, None), 64),
            ((1024, 1024, None), 128),
            ((2048, 2048, None), 256),
            ((4096, 2048, None), 256),
            ((256, 256, None), 32),
            ((64, 64, None), 32),
            ((1920, 1080, None), 135),
            ((512, 512, Some(7)), 7),
            ((2048, 2048, Some(16)), 16),
        ];
        for ((w, h, req), expected) in table {
            assert_eq!(policy_samples(w, h, req), expected, "{w}x{h} {req:?}");
        }
    }

    #[test]
    fn resolve_fills_policy_and_denoiser() {
        let plan = RenderSpec::default().resolve().unwrap();
        assert_eq!(plan.samples, 64);
        assert_eq!(plan.sample_source, SampleSource::Policy);
        assert_eq!(plan.frame_angles, vec![0.0]);
        let off = RenderSpec {
            denoise: DenoiseRequest::Off,
            ..RenderSpec::default()
        };
        assert_eq!(off.resolve().unwrap().denoiser, Denoiser::Off);
    }

    #[test]
    fn oidn_is_refused_where_the_engine_lacks_it() {
        let oidn = RenderSpec {
            denoise: DenoiseRequest::Oidn,
            ..RenderSpec::default()
        };
        let native = oidn.resolve();
        assert_eq!(native.is_ok(), native_has_oidn(), "{native:?}");
        if let Err(err) = native {
            let message = err.to_string();
            assert!(
                message.contains("oidn is not available to the native engine here"),
                "{message}"
            );
        }
        // Blender has OIDN whatever this crate was built with.
        let cycles = oidn.resolve_for(EngineKind::Cycles).unwrap();
        assert_eq!(cycles.denoiser, Denoiser::Oidn);
        // `auto` takes OIDN where it is found, else no denoising (never the built-in filter).
        let auto = RenderSpec::default().resolve().unwrap();
        let expected = if native_has_oidn() {
            Denoiser::Oidn
        } else {
            Denoiser::Off
        };
        assert_eq!(auto.denoiser, expected);
    }

    #[test]
    fn resolve_rejects_bad_input() {
        for spec in [
            RenderSpec {
                width: 0,
                ..RenderSpec::default()
            },
            RenderSpec {
                samples: Some(0),
                ..RenderSpec::default()
            },
            RenderSpec {
                max_bounces: 1000,
                ..RenderSpec::default()
            },
            RenderSpec {
                format: ImageFormat::Png { bit_depth: 12 },
                ..RenderSpec::default()
            },
            RenderSpec {
                turntable: Some(TurntableSpec {
                    frames: 0,
                    ..TurntableSpec::default()
                }),
                ..RenderSpec::default()
            },
            RenderSpec {
                adaptive_threshold: -0.01,
                ..RenderSpec::default()
            },
            RenderSpec {
                adaptive_threshold: f32::NAN,
                ..RenderSpec::default()
            },
        ] {
            assert!(spec.resolve().is_err(), "{spec:?}");
        }
    }

    #[test]
    fn adaptive_threshold_is_off_by_default_and_only_serialised_when_set() {
        let spec = RenderSpec::default();
        assert_eq!(spec.resolve().unwrap().adaptive_threshold, 0.0);
        let json = serde_json::to_string(&spec).unwrap();
        assert!(!json.contains("adaptive"), "{json}");
        let on: RenderSpec = serde_json::from_str(r#"{"adaptive_threshold": 0.02}"#).unwrap();
        assert_eq!(on.resolve().unwrap().adaptive_threshold, 0.02);
    }

    #[test]
    fn spec_json_round_trip_and_defaults() {
        let spec: RenderSpec = serde_json::from_str(
            r#"{"width": 256, "height": 128, "samples": 16, "denoise": "off",
                "format": {"kind": "webp", "quality": 80},
                "turntable": {"frames": 4}}"#,
        )
        .unwrap();
        assert_eq!(spec.width, 256);
        assert_eq!(spec.turntable.as_ref().unwrap().frames, 4);
        assert_eq!(
            spec.format,
            ImageFormat::Webp {
                quality: 80.0,
                lossless: false
            }
        );
        let back: RenderSpec =
            serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(spec, back);
        assert!(serde_json::from_str::<RenderSpec>(r#"{"widht": 3}"#).is_err());
    }
}
