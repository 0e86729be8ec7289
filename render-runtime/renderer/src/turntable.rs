//! Turntables: frames orbiting the model, sharing one imported scene and one acceleration
//! structure. Only the camera and the camera-relative light rig move between frames.

use crate::encode::{encode_animated_webp, DisplayImage, EncodeError};
use crate::spec::{ImageFormat, RenderPlan};

/// Encodes turntable frames as one looping animated WebP. A PNG request still gets a WebP
/// animation (PNG has no animation in our outputs); lossy WebP settings are kept.
pub fn encode_turntable(
    frames: &[DisplayImage],
    plan: &RenderPlan,
) -> Result<Vec<u8>, EncodeError> {
    let (quality, lossless) = match &plan.format {
        ImageFormat::Webp { quality, lossless } => (*quality, *lossless),
        ImageFormat::Png { .. } => (90.0, false),
    };
    encode_animated_webp(frames, plan.frame_ms, quality, lossless)
}

/// File name of frame `index` next to an animation called `stem`: `stem_0001.ext`.
pub fn frame_file_name(stem: &str, index: usize, extension: &str) -> String {
    format!("{stem}_{:04}.{extension}", index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_names_are_numbered_from_one() {
        assert_eq!(frame_file_name("out", 0, "png"), "out_0001.png");
        assert_eq!(frame_file_name("out", 11, "webp"), "out_0012.webp");
    }
}
