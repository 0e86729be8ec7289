//! Output keys: given by the job or derived from the model, the spec and the engine.

use lightbox_runtime::ObjectKey;
use render_runtime::{EngineKind, RenderSpec};
use sha2::{Digest, Sha256};

/// The key of one output: given by the job, or derived from the model's bytes, the spec and the
/// engine, so a redelivered job overwrites its own outputs.
pub fn output_key(
    model: &[u8],
    spec: &RenderSpec,
    engine: EngineKind,
    given: Option<&ObjectKey>,
) -> ObjectKey {
    if let Some(key) = given {
        return key.clone();
    }
    let mut hasher = Sha256::new();
    hasher.update(model);
    hasher.update(serde_json::to_vec(spec).expect("spec serialises"));
    hasher.update(engine.as_str().as_bytes());
    let digest = hex::encode(&hasher.finalize()[..16]);
    let extension = if spec.turntable.is_some() {
        "webp"
    } else {
        spec.format.extension()
    };
    ObjectKey::new(format!("outputs/render/{digest}.{extension}")).expect("derived key is valid")
}

/// The key of turntable frame `index` beside its animation: `<stem>/frame-0001.<ext>`.
pub fn frame_key(animation: &ObjectKey, index: u32, extension: &str) -> ObjectKey {
    let stem = animation
        .as_str()
        .rsplit_once('.')
        .map(|(stem, _)| stem)
        .unwrap_or(animation.as_str());
    ObjectKey::new(format!("{stem}/frame-{:04}.{extension}", index + 1))
        .expect("frame key is valid")
}
