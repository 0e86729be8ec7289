//! Per-function request types: the `request` field of a job envelope. JSON Schemas generated
//! from these types live in `infra/schemas/` and a test keeps them in sync.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::store::ObjectKey;

/// Image formats the convert function reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Webp,
    Png,
    Jpeg,
}

impl ImageFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Webp => "webp",
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Webp => "image/webp",
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
        }
    }

    /// The format an output file name asks for (`.webp`, `.png`, `.jpg`/`.jpeg`).
    pub fn from_extension(ext: &str) -> Option<Self> {
        match ext.to_ascii_lowercase().as_str() {
            "webp" => Some(ImageFormat::Webp),
            "png" => Some(ImageFormat::Png),
            "jpg" | "jpeg" => Some(ImageFormat::Jpeg),
            _ => None,
        }
    }
}

/// A target size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl std::str::FromStr for Size {
    type Err = String;
    /// Parses `WxH`, for example `512x512`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (w, h) = text
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("size {text:?} is not WxH (for example 512x512)"))?;
        let parse = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("size {text:?} is not WxH"))
        };
        let size = Size {
            width: parse(w)?,
            height: parse(h)?,
        };
        if size.width == 0 || size.height == 0 {
            return Err(format!("size {text:?} must be at least 1x1"));
        }
        Ok(size)
    }
}

/// `convert`: one image in, one image out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvertRequest {
    /// Key of the input image (PNG, JPEG or WebP).
    pub input: ObjectKey,
    /// Where to write the result. When absent, a key is derived from the input's content and
    /// the parameters (`outputs/convert/<hash>.<ext>`), so a repeated job writes the same object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ObjectKey>,
    /// Output format.
    pub format: ImageFormat,
    /// Lossy quality 1-100 for WebP and JPEG (default 90).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<u8>,
    /// Lossless WebP (ignored by PNG, which is always lossless, and refused for JPEG).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lossless: bool,
    /// Resize to exactly this size before encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<Size>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(
            "512x256".parse::<Size>().unwrap(),
            Size {
                width: 512,
                height: 256
            }
        );
        assert!("512".parse::<Size>().is_err());
        assert!("0x5".parse::<Size>().is_err());
    }

    #[test]
    fn convert_request_refuses_unknown_fields_and_bad_keys() {
        let ok = serde_json::json!({"input": "inputs/a.png", "format": "webp", "quality": 80});
        assert!(serde_json::from_value::<ConvertRequest>(ok).is_ok());
        let unknown = serde_json::json!({"input": "inputs/a.png", "format": "webp", "colour": 1});
        assert!(serde_json::from_value::<ConvertRequest>(unknown).is_err());
        let traversal = serde_json::json!({"input": "../x", "format": "webp"});
        let err = serde_json::from_value::<ConvertRequest>(traversal).unwrap_err();
        assert!(err.to_string().contains(".."));
    }
}
