//! Content-addressed cache keys shared by functions that must agree on them without importing
//! each other: the tessellate function writes `cache/tessellate/<hash>.glb`, the render function
//! looks for it before asking for a tessellation.

use sha2::{Digest, Sha256};

use crate::key::ObjectKey;
use crate::requests::TessellationParams;

/// Bumped whenever tessellation output changes for the same input and parameters.
pub const TESSELLATOR_VERSION: &str = "occt-7.6-lightbox-3";

/// The cached GLB key for a STEP file's bytes and tessellation parameters.
pub fn tessellation_key(step_bytes: &[u8], params: &TessellationParams) -> ObjectKey {
    let mut hasher = Sha256::new();
    hasher.update(step_bytes);
    hasher.update(serde_json::to_vec(params).expect("params serialise"));
    hasher.update(TESSELLATOR_VERSION.as_bytes());
    let digest = hex::encode(hasher.finalize());
    ObjectKey::new(format!("cache/tessellate/{digest}.glb")).expect("cache key is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_bytes_and_parameters() {
        let params = TessellationParams::default();
        let key = tessellation_key(b"ISO-10303-21;", &params);
        assert_eq!(key, tessellation_key(b"ISO-10303-21;", &params));
        assert_ne!(key, tessellation_key(b"ISO-10303-21; ", &params));
        let finer = TessellationParams {
            linear_deflection: Some(0.0001),
            ..params
        };
        assert_ne!(key, tessellation_key(b"ISO-10303-21;", &finer));
        assert!(key.as_str().starts_with("cache/tessellate/") && key.as_str().ends_with(".glb"));
    }
}
