//! The tessellator end to end without a broker: generated STEP models through the isolated child
//! process (this crate's real `lightbox-tessellate` binary), GLB structure, the Khronos glTF
//! validator, and bad, crashing, hanging and memory-hungry inputs.

mod support;

use std::time::{Duration, Instant};

use gltf_json as json;
use lightbox_tessellate::samples::{self, Sample};
use lightbox_tessellate::{tessellate_bytes, TessellateError, TessellationParams};
use support::{parse_glb, run, sandbox, validate};

/// World-space (Y-up) bounds of every placed vertex, in metres.
fn world_bounds(root: &json::Root) -> ([f64; 3], [f64; 3]) {
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    let top = &root.nodes[root.scenes[0].nodes[0].value()];
    let q = top.rotation.as_ref().unwrap().0;
    for child in top.children.as_ref().unwrap() {
        let node = &root.nodes[child.value()];
        let m = node.matrix.unwrap_or([
            1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1.,
        ]);
        let mesh = &root.meshes[node.mesh.unwrap().value()];
        let positions = mesh.primitives[0].attributes
            [&json::validation::Checked::Valid(json::mesh::Semantic::Positions)];
        let accessor = &root.accessors[positions.value()];
        let (min, max) = (accessor.min.clone().unwrap(), accessor.max.clone().unwrap());
        let min: Vec<f64> = serde_json::from_value(min).unwrap();
        let max: Vec<f64> = serde_json::from_value(max).unwrap();
        for corner in 0..8 {
            let p = [
                if corner & 1 == 0 { min[0] } else { max[0] },
                if corner & 2 == 0 { min[1] } else { max[1] },
                if corner & 4 == 0 { min[2] } else { max[2] },
            ];
            let mut w = [0.0; 3];
            for (r, value) in w.iter_mut().enumerate() {
                *value = m[r] as f64 * p[0]
                    + m[4 + r] as f64 * p[1]
                    + m[8 + r] as f64 * p[2]
                    + m[12 + r] as f64;
            }
            // The root rotation is -90° about X (q = [-s, 0, 0, s]): (x, y, z) -> (x, z, -y).
            assert!((q[0] + std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
            let y_up = [w[0], w[2], -w[1]];
            for k in 0..3 {
                lo[k] = lo[k].min(y_up[k]);
                hi[k] = hi[k].max(y_up[k]);
            }
        }
    }
    (lo, hi)
}

#[test]
fn generated_models_become_valid_instanced_glbs_in_metres_and_y_up() {
    for sample in [
        Sample::Bracket,
        Sample::Flange,
        Sample::Duct,
        Sample::Bearing,
    ] {
        let step = samples::step_bytes(sample).unwrap();
        let done = run(&step).unwrap_or_else(|err| panic!("{sample:?}: {err}"));
        let report = validate(&done.glb, sample.name());
        assert_eq!(report["numErrors"], 0, "{sample:?}: {report:#}");
        let (root, bin) = parse_glb(&done.glb);
        assert_eq!(root.buffers[0].byte_length.0 as usize, bin.len());
        assert_eq!(done.stats.glb_bytes as usize, done.glb.len());
        let (lo, hi) = world_bounds(&root);
        let size = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
        match sample {
            Sample::Bracket => {
                // 80 x 50 mm footprint, 60 mm tall: in metres, with height on Y.
                assert_eq!((done.stats.parts, done.stats.instances), (1, 1));
                for (got, want) in size.iter().zip([0.080, 0.060, 0.050]) {
                    assert!((got - want).abs() < 1e-3, "bracket size {size:?}");
                }
                assert_eq!(root.meshes[0].name.as_deref(), Some("bracket"));
            }
            Sample::Flange => {
                assert!(
                    (size[1] - 0.040).abs() < 1e-3,
                    "flange height on Y: {size:?}"
                );
                assert!((size[0] - 0.120).abs() < 2e-3, "flange diameter: {size:?}");
            }
            Sample::Duct => assert!(size[1] > 0.115, "duct runs along Y: {size:?}"),
            Sample::Bearing => {
                assert_eq!(done.stats.instances, 140);
                assert_eq!(done.stats.parts, 5);
                assert_eq!(
                    root.nodes.len(),
                    141,
                    "one node per placement plus the root"
                );
                assert!(
                    (size[1] - 0.026).abs() < 1e-3,
                    "bearing width on Y: {size:?}"
                );
                assert!((size[0] - 0.208).abs() < 2e-3, "bearing diameter: {size:?}");
                let ball = root
                    .meshes
                    .iter()
                    .position(|m| m.name.as_deref() == Some("ball"))
                    .unwrap();
                let ball_nodes = root
                    .nodes
                    .iter()
                    .filter(|n| n.mesh.map(|m| m.value()) == Some(ball))
                    .count();
                assert_eq!(ball_nodes, 134, "every ball instances one mesh");
                assert_eq!(root.meshes.len(), 5, "one mesh per distinct part");
                let names: Vec<_> = root.nodes.iter().filter_map(|n| n.name.clone()).collect();
                assert!(names.iter().any(|n| n == "ball 17"), "{names:?}");
                assert!(names.iter().any(|n| n == "seal B"), "{names:?}");
                assert_eq!(done.stats.triangles, {
                    let per_mesh = |i: usize| {
                        root.accessors[root.meshes[i].primitives[0].indices.unwrap().value()]
                            .count
                            .0
                            / 3
                    };
                    root.nodes
                        .iter()
                        .filter_map(|n| n.mesh)
                        .map(|m| per_mesh(m.value()))
                        .sum::<u64>()
                });
                // Colours survive: the brass cage and the blue seals differ from the balls.
                let colors: std::collections::HashSet<_> = root
                    .materials
                    .iter()
                    .map(|m| {
                        m.pbr_metallic_roughness
                            .base_color_factor
                            .0
                            .map(f32::to_bits)
                    })
                    .collect();
                assert!(colors.len() >= 4, "{:?}", root.materials);
            }
            Sample::CurveOnly | Sample::Styled => unreachable!(),
        }
    }
}

#[test]
fn finer_deflection_gives_more_triangles() {
    let step = samples::step_bytes(Sample::Duct).unwrap();
    let coarse = tessellate_bytes(
        &step,
        &TessellationParams {
            linear_deflection: Some(0.001),
            angular_deflection: Some(0.8),
        },
        64 << 20,
        &sandbox(),
    )
    .unwrap();
    let fine = tessellate_bytes(
        &step,
        &TessellationParams {
            linear_deflection: Some(0.00005),
            angular_deflection: Some(0.2),
        },
        64 << 20,
        &sandbox(),
    )
    .unwrap();
    assert!(
        fine.stats.triangles > 2 * coarse.stats.triangles,
        "{:?} vs {:?}",
        fine.stats,
        coarse.stats
    );
    assert!((coarse.stats.linear_deflection_m - 0.001).abs() < 1e-9);
}

#[test]
fn bad_inputs_fail_with_clear_messages() {
    let good = samples::step_bytes(Sample::Bracket).unwrap();
    let mut truncated = good.clone();
    truncated.truncate(good.len() * 2 / 3);
    // A STEP file whose DATA section is broken in the middle, with a valid frame.
    let text = String::from_utf8(good.clone()).unwrap();
    let data = text.find("DATA;").unwrap() + 5;
    let garbled = format!(
        "{}\n#1=CARTESIAN_POINT('',(0.,0.,0.);\n#2=((( broken;\n{}",
        &text[..data],
        &text[data..]
    );
    let curve = samples::step_bytes(Sample::CurveOnly).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not step",
            b"solid cube\nfacet normal 0 0 1\n".to_vec(),
            "input is not a STEP file: it does not start with ISO-10303-21;",
        ),
        ("gzip", vec![0x1f, 0x8b, 8, 0, 0, 0], "gzip-compressed"),
        (
            "truncated",
            truncated,
            "the STEP file is truncated: it ends inside or after entity #",
        ),
        (
            "no solids",
            curve,
            "the STEP file has no solids or surfaces",
        ),
    ];
    for (name, bytes, expected) in cases {
        let err = run(&bytes).unwrap_err();
        assert!(err.to_string().contains(expected), "{name}: {err}");
        assert!(!err.is_retryable(), "{name}");
    }
    // The garbled file: OCCT either refuses it or skips the broken entities; it must not crash.
    match run(garbled.as_bytes()) {
        Ok(done) => assert!(done.stats.triangles > 0),
        Err(err) => assert!(
            matches!(
                err,
                TessellateError::Unreadable { .. } | TessellateError::NoSolids { .. }
            ),
            "{err}"
        ),
    }
    let err =
        tessellate_bytes(&good, &TessellationParams::default(), 1000, &sandbox()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "input is {} bytes, over the tessellate limit of 1000 bytes",
            good.len()
        )
    );
}

fn with_fault(fault: &str) -> Vec<u8> {
    let step = String::from_utf8(samples::step_bytes(Sample::Bracket).unwrap()).unwrap();
    step.replacen(
        "HEADER;",
        &format!("HEADER;\n/* lightbox-test-fault: {fault} */"),
        1,
    )
    .into_bytes()
}

#[test]
fn a_crashing_hanging_or_runaway_child_fails_cleanly() {
    let mut sandbox = sandbox();
    sandbox.fault_injection = true;
    sandbox.time_limit = Duration::from_secs(2);
    sandbox.address_space = Some(1 << 30);
    let params = TessellationParams::default();

    let err = tessellate_bytes(&with_fault("crash"), &params, 64 << 20, &sandbox).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the tessellator crashed (killed by signal 6 (SIGABRT)"),
        "{err}"
    );

    let start = Instant::now();
    let err = tessellate_bytes(&with_fault("hang"), &params, 64 << 20, &sandbox).unwrap_err();
    assert!(matches!(err, TessellateError::TimedOut { .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));

    let err = tessellate_bytes(&with_fault("alloc"), &params, 64 << 20, &sandbox).unwrap_err();
    assert_eq!(err, TessellateError::OutOfMemory { limit_mib: 1024 });

    // Without fault injection the markers are plain comments, and the same bytes tessellate.
    let done = tessellate_bytes(&with_fault("crash"), &params, 64 << 20, &self::sandbox()).unwrap();
    assert_eq!(done.stats.parts, 1);
}

#[test]
fn cancelling_kills_the_child() {
    let mut sandbox = sandbox();
    sandbox.fault_injection = true;
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    sandbox.cancel = Some(cancel.clone());
    let flag = cancel;
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let start = Instant::now();
    let err = tessellate_bytes(
        &with_fault("hang"),
        &TessellationParams::default(),
        64 << 20,
        &sandbox,
    )
    .unwrap_err();
    assert_eq!(err, TessellateError::Cancelled);
    assert!(start.elapsed() < Duration::from_secs(5));
}
