//! Helpers shared by this crate's integration tests: the isolated tessellator, the Khronos glTF
//! validator and the GLB's chunks.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gltf_json as json;
use lightbox_isolate::Sandbox;
use lightbox_tessellate::{tessellate_bytes, TessellateError, Tessellated, TessellationParams};

pub fn sandbox() -> Sandbox {
    Sandbox {
        executable: PathBuf::from(env!("CARGO_BIN_EXE_lightbox-tessellate")),
        time_limit: Duration::from_secs(60),
        address_space: Some(4 << 30),
        cancel: None,
        fault_injection: false,
    }
}

pub fn run(step: &[u8]) -> Result<Tessellated, TessellateError> {
    tessellate_bytes(step, &TessellationParams::default(), 64 << 20, &sandbox())
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the Khronos glTF validator (npm `gltf-validator`, installed by tools/setup.sh into
/// .tools/npm) and returns its report.
pub fn validate(glb: &[u8], label: &str) -> serde_json::Value {
    let module = workspace_root().join(".tools/npm/node_modules/gltf-validator");
    assert!(
        module.exists(),
        "{} is missing: run tools/setup.sh",
        module.display()
    );
    let file = std::env::temp_dir().join(format!(
        "lightbox-validate-{label}-{}.glb",
        std::process::id()
    ));
    std::fs::write(&file, glb).unwrap();
    let script = "const v = require(process.argv[1]); const fs = require('fs');\
        v.validateBytes(new Uint8Array(fs.readFileSync(process.argv[2])))\
        .then(r => { console.log(JSON.stringify(r.issues)); })\
        .catch(e => { console.error(e); process.exit(2); });";
    let out = Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(&module)
        .arg(&file)
        .output()
        .expect("node runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "validator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("validator prints JSON")
}

/// The GLB's JSON and BIN chunks.
pub fn parse_glb(glb: &[u8]) -> (json::Root, Vec<u8>) {
    assert_eq!(&glb[0..4], b"glTF");
    assert_eq!(
        u32::from_le_bytes(glb[8..12].try_into().unwrap()) as usize,
        glb.len()
    );
    let json_len = u32::from_le_bytes(glb[12..16].try_into().unwrap()) as usize;
    let root: json::Root = json::deserialize::from_slice(&glb[20..20 + json_len]).unwrap();
    let bin = glb[20 + json_len + 8..].to_vec();
    (root, bin)
}
