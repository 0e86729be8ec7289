//! The isolated USD reader (`usd_isolate`) against the in-process importer: the same scenes,
//! and the same typed errors (variant and message) across the process boundary; a crashing or
//! hanging reader fails the import, saying so.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lightbox_isolate::Sandbox;
use lightbox_scene::usd_isolate::{self, import_usd_isolated};
use lightbox_scene::{export_usda, import_usd_with_limits, ImportLimits, UsdImportError};

fn reader(limits: &ImportLimits) -> Sandbox {
    Sandbox {
        time_limit: Duration::from_secs(60),
        ..usd_isolate::sandbox(
            PathBuf::from(env!("CARGO_BIN_EXE_lightbox-usd-import")),
            limits,
        )
    }
}

const BAD_INDEX: &str = "#usda 1.0\ndef Mesh \"Broken\"\n{\n    int[] faceVertexCounts = [3]\n    int[] faceVertexIndices = [0, 1, 7]\n    point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]\n}\n";
const MISSING_FILE: &str =
    "#usda 1.0\ndef Xform \"B\" (\n    prepend references = @parts/bolt.usda@</Bolt>\n)\n{\n}\n";

#[test]
fn the_isolated_reader_gives_the_in_process_scene() {
    let limits = ImportLimits::default();
    let usda = export_usda(&lightbox_testmodels::primitives_scene());
    let isolated = import_usd_isolated(usda.as_bytes(), &limits, &reader(&limits)).unwrap();
    let in_process = import_usd_with_limits(usda.as_bytes(), &limits).unwrap();
    assert_eq!(isolated.meshes.len(), in_process.meshes.len());
    assert_eq!(isolated.instances.len(), in_process.instances.len());
    assert_eq!(
        isolated.instanced_triangle_count(),
        in_process.instanced_triangle_count()
    );
    // The scene crosses as GLB: the same placements, in the same places.
    let (a, b) = (isolated.bounds(), in_process.bounds());
    assert!((a.min - b.min).length() < 1e-5 && (a.max - b.max).length() < 1e-5);
}

#[test]
fn child_errors_keep_their_kind_across_the_process_boundary() {
    let default = ImportLimits::default();
    let few_instances = ImportLimits {
        max_instances: 1,
        ..default
    };
    let tiny_budget = ImportLimits {
        memory_budget: 1,
        ..default
    };
    let scene = export_usda(&lightbox_testmodels::primitives_scene());
    let cases: [(&str, &[u8], ImportLimits); 6] = [
        ("not usd", b"hello, world", default),
        ("bad index", BAD_INDEX.as_bytes(), default),
        ("missing file", MISSING_FILE.as_bytes(), default),
        ("empty", b"#usda 1.0\ndef Xform \"Empty\"\n{\n}\n", default),
        ("too many instances", scene.as_bytes(), few_instances),
        ("over budget", scene.as_bytes(), tiny_budget),
    ];
    for (name, bytes, limits) in cases {
        let isolated = import_usd_isolated(bytes, &limits, &reader(&limits)).unwrap_err();
        let in_process = import_usd_with_limits(bytes, &limits).unwrap_err();
        assert_eq!(
            std::mem::discriminant(&isolated),
            std::mem::discriminant(&in_process),
            "{name}: {isolated:?} vs {in_process:?}"
        );
        assert_eq!(isolated.to_string(), in_process.to_string(), "{name}");
        let expected_kind = match name {
            "not usd" => matches!(isolated, UsdImportError::NotUsd { .. }),
            "bad index" => matches!(isolated, UsdImportError::Prim { .. }),
            "missing file" => matches!(isolated, UsdImportError::Composition { .. }),
            "empty" => matches!(isolated, UsdImportError::Empty),
            "too many instances" => matches!(isolated, UsdImportError::TooLarge { .. }),
            _ => matches!(isolated, UsdImportError::OverBudget(_)),
        };
        assert!(expected_kind, "{name}: {isolated:?}");
    }
}

#[test]
fn a_crashing_or_hanging_reader_fails_the_import() {
    let limits = ImportLimits::default();
    let mut sandbox = reader(&limits);
    sandbox.fault_injection = true;
    sandbox.time_limit = Duration::from_secs(1);
    let with_fault = |fault: &str| {
        format!(
            "#usda 1.0\n# lightbox-test-fault: {fault}\n{}",
            &BAD_INDEX[10..]
        )
    };

    let err = import_usd_isolated(with_fault("crash").as_bytes(), &limits, &sandbox).unwrap_err();
    assert!(matches!(err, UsdImportError::Open { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("cannot open usd stage: the USD reader stopped (signal: 6 (SIGABRT)"),
        "{err}"
    );

    let start = Instant::now();
    let err = import_usd_isolated(with_fault("hang").as_bytes(), &limits, &sandbox).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot open usd stage: the USD reader did not finish within 1 s"
    );
    assert!(start.elapsed() < Duration::from_secs(10));

    // Without fault injection the marker is a comment, and the file's own error comes back.
    sandbox.fault_injection = false;
    let err = import_usd_isolated(with_fault("crash").as_bytes(), &limits, &sandbox).unwrap_err();
    assert!(matches!(err, UsdImportError::Prim { .. }), "{err:?}");
}
