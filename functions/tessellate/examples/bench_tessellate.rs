//! Benchmark: the generated 140-part bearing, STEP → GLB, through this crate's path (in process
//! and in the isolated child the worker uses) next to OCCT's own `RWGltf_CafWriter` path, same
//! run, same deflection. Prints one line per path and a summary.
//!
//! `cargo run --release -p lightbox-tessellate --example bench_tessellate [RUNS]`

use std::time::Instant;

use lightbox_tessellate::samples::{self, Sample};
use lightbox_tessellate::{ffi, tessellate_bytes, tessellate_file, TessellationParams};

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> anyhow::Result<()> {
    lightbox_isolate::serve_child_if_requested(&[lightbox_tessellate::CHILD]);
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let dir =
        std::env::temp_dir().join(format!("lightbox-bench-tessellate-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let step = dir.join("bearing.step");
    let generate = Instant::now();
    samples::write_step(Sample::Bearing, &step)?;
    let step_bytes = std::fs::read(&step)?;
    println!(
        "bearing.step: {} bytes, generated in {:.0} ms; {runs} runs each, median wall time",
        step_bytes.len(),
        generate.elapsed().as_secs_f64() * 1000.0
    );
    let scenarios = [
        ("default deflection", TessellationParams::default()),
        (
            "fine (0.02 mm, 0.15 rad)",
            TessellationParams {
                linear_deflection: Some(2e-5),
                angular_deflection: Some(0.15),
            },
        ),
    ];
    for (label, params) in scenarios {
        println!("-- {label}");

        // Ours, in process: read + mesh (shim) + GLB (lightbox_scene::export).
        let mut ours = Vec::new();
        let mut last = None;
        for _ in 0..runs {
            let start = Instant::now();
            let done = tessellate_file(&step, &params)?;
            ours.push(start.elapsed().as_secs_f64() * 1000.0);
            last = Some(done);
        }
        let done = last.expect("at least one run");
        std::fs::write(dir.join("ours.glb"), &done.glb)?;
        let s = &done.stats;
        println!(
            "lightbox in-process : {:7.1} ms  (read {:.1}, mesh {:.1}, write {:.1})  {} parts, {} instances, {} triangles ({} meshed), GLB {} bytes",
            median(ours.clone()), s.read_ms, s.mesh_ms, s.write_ms, s.parts, s.instances, s.triangles, s.distinct_triangles, s.glb_bytes
        );

        // Ours, isolated: the worker's path (child process with limits).
        let sandbox = lightbox_isolate::Sandbox::current_exe(
            std::time::Duration::from_secs(120),
            Some(8 << 30),
        )?;
        let mut isolated = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            tessellate_bytes(&step_bytes, &params, u64::MAX, &sandbox)?;
            isolated.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        println!(
            "lightbox isolated   : {:7.1} ms  (child process, memory and time limits)",
            median(isolated.clone())
        );

        // OCCT's own path with the same deflection.
        let mut caf = Vec::new();
        let mut report = None;
        let caf_glb = dir.join("caf.glb");
        for _ in 0..runs {
            let start = Instant::now();
            report = Some(ffi::caf_step_to_glb(
                &step,
                &caf_glb,
                Some(s.linear_deflection_m),
                0.0,
                Some(s.angular_deflection),
            )?);
            caf.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        let r = report.expect("at least one run");
        let caf_size = std::fs::metadata(&caf_glb)?.len();
        println!(
            "OCCT RWGltf_CafWriter: {:7.1} ms  (read {:.1}, mesh {:.1}, write {:.1})  {} triangles, GLB {} bytes",
            median(caf.clone()), r.read_ms, r.mesh_ms, r.write_ms, r.triangles, caf_size
        );
        let (ours_ms, isolated_ms, caf_ms) = (median(ours), median(isolated), median(caf));
        println!(
            "summary: isolated {isolated_ms:.0} ms vs CAF writer {caf_ms:.0} ms ({:.2}x); target <= 1000 ms: {}; in-process {ours_ms:.0} ms",
            caf_ms / isolated_ms,
            if isolated_ms <= 1000.0 && isolated_ms < caf_ms { "met" } else { "NOT met" }
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
