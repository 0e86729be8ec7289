//! Inputs that `cargo fuzz` found crashing, hanging or exhausting memory (`fuzz/regressions/`),
//! replayed through what the fuzz targets run (`fuzz/src/lib.rs`): the importer with the fuzz
//! limits, then the GLB and USD writers. Each input must come back as `Ok` or `Err`: no panic,
//! no abort on allocation failure.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use std::time::Duration;

use lightbox_scene::export::export_glb;
use lightbox_scene::usd_isolate::{self, import_usd_isolated};
use lightbox_scene::{export_usda, import_gltf_with_limits, ImportLimits};

/// The fuzz targets' limits (`fuzz/src/lib.rs`, `import_limits`).
fn limits() -> ImportLimits {
    ImportLimits {
        max_instanced_triangles: 100_000,
        max_unique_triangles: 100_000,
        max_vertices_per_accessor: 100_000,
        max_instances: 10_000,
        max_node_depth: 64,
        max_texture_pixels: 1 << 20,
        ..ImportLimits::default()
    }
}

/// Every file in `fuzz/regressions/<target>/`, which must not be empty.
fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    files
}

/// The isolated reader as the workers run it (the bare `lightbox-usd-import` child), with a
/// shorter time limit.
fn reader() -> lightbox_isolate::Sandbox {
    lightbox_isolate::Sandbox {
        time_limit: Duration::from_secs(60),
        ..usd_isolate::sandbox(
            PathBuf::from(env!("CARGO_BIN_EXE_lightbox-usd-import")),
            &limits(),
        )
    }
}

/// Runs `run` on every input of `target`, naming the inputs that panicked.
fn replay(target: &str, run: impl Fn(&[u8])) {
    let mut panicked = Vec::new();
    for path in inputs(target) {
        let bytes = std::fs::read(&path).expect("regression input reads");
        // Named first: an allocation failure aborts the process instead of panicking.
        eprintln!("replaying {}", path.display());
        if catch_unwind(AssertUnwindSafe(|| run(&bytes))).is_err() {
            panicked.push(path.display().to_string());
        }
    }
    assert!(panicked.is_empty(), "panicked on {panicked:?}");
}

#[test]
fn glb_import_regressions_return() {
    replay("glb_import", |bytes| {
        if let Ok(scene) = import_gltf_with_limits(bytes, &limits()) {
            export_glb(&scene);
            export_usda(&scene);
        }
    });
}

#[test]
fn usd_import_regressions_fail_cleanly_in_the_isolated_reader() {
    // openusd can abort the process on some of these (allocations sized by lying counts), so
    // they go through the child-process reader the workers use; each must come back as a scene
    // or an error that says what happened.
    for path in inputs("usd_import") {
        let bytes = std::fs::read(&path).expect("regression input reads");
        let result = import_usd_isolated(&bytes, &limits(), &reader());
        match result {
            Ok(scene) => {
                export_glb(&scene);
                export_usda(&scene);
            }
            Err(err) => {
                let message = err.to_string();
                assert!(
                    !message.contains("cannot start") && !message.contains("read back"),
                    "{}: {message}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn a_160_gb_claim_fails_the_job_instead_of_the_worker() {
    let bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/regressions/usd_import/usdc-token-vector-count-160gb.usdc"),
    )
    .unwrap();
    let err = import_usd_isolated(&bytes, &limits(), &reader())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the USD reader stopped")
            && err.contains("memory allocation of 171798691844 bytes failed"),
        "{err}"
    );
}
