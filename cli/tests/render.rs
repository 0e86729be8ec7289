//! `lightbox render` as people run it: the real binary on real files in a temporary folder.
//! It takes every model the render function takes (GLB, USD, STEP through the tessellate code),
//! names the supported formats for any other, and checks its output before rendering.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lightbox_testmodels::compare::LumaImage;

/// A fresh folder under the system's temporary directory, removed on drop.
struct Folder(PathBuf);

impl Folder {
    fn new(label: &str) -> Folder {
        let path = std::env::temp_dir().join(format!(
            "lightbox-cli-{label}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Folder(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn lightbox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lightbox"))
        .args(args)
        // No stack settings from a developer's checkout.
        .current_dir(std::env::temp_dir())
        .output()
        .expect("lightbox runs")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Asserts `png` is a `width`x`height` image that shows a shaded model: part of it differs from
/// the background, and that part is not one flat tone (a white or black silhouette).
fn assert_shows_a_shaded_model(png: &[u8], width: u32, height: u32) {
    let image = LumaImage::from_png(png).expect("a decodable PNG");
    assert_eq!((image.width, image.height), (width, height));
    let background = image.values[0];
    let model: Vec<f32> = image
        .values
        .iter()
        .copied()
        .filter(|v| (v - background).abs() > 0.04)
        .collect();
    let coverage = model.len() as f64 / image.values.len() as f64;
    assert!(
        coverage > 0.03,
        "only {:.1} % of the image differs from the background",
        coverage * 100.0
    );
    let mean = model.iter().map(|&v| v as f64).sum::<f64>() / model.len() as f64;
    let deviation = (model
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / model.len() as f64)
        .sqrt();
    assert!(
        deviation > 0.03,
        "the model is one flat tone (luma {mean:.3} ± {deviation:.4})"
    );
}

#[test]
fn renders_a_usda_file() {
    let folder = Folder::new("usda");
    let model = folder.join("primitives.usda");
    std::fs::write(
        &model,
        render_runtime::export_usda(&lightbox_testmodels::primitives_scene()),
    )
    .unwrap();
    let image = folder.join("primitives.png");
    let output = lightbox(&[
        "render",
        path(&model),
        "-o",
        path(&image),
        "--size",
        "96x64",
        "--samples",
        "16",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("import"), "{stdout}");
    assert_shows_a_shaded_model(&std::fs::read(&image).unwrap(), 96, 64);
}

#[test]
fn renders_a_step_file_through_the_tessellate_code() {
    let folder = Folder::new("step");
    let model = folder.join("flange.step");
    let step =
        lightbox_tessellate::samples::step_bytes(lightbox_tessellate::samples::Sample::Flange)
            .expect("OCCT writes the sample");
    std::fs::write(&model, step).unwrap();
    let image = folder.join("flange.png");
    let output = lightbox(&[
        "render",
        path(&model),
        "-o",
        path(&image),
        "--size",
        "80x80",
        "--samples",
        "16",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("tessellate"), "{stdout}");
    assert_shows_a_shaded_model(&std::fs::read(&image).unwrap(), 80, 80);
}

#[test]
fn another_format_gets_the_supported_list_and_writes_nothing() {
    let folder = Folder::new("obj");
    let model = folder.join("part.obj");
    std::fs::write(&model, "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n").unwrap();
    let output = lightbox(&["render", path(&model), "-o", path(&folder.join("part.png"))]);
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "supported formats: GLB/glTF (.glb, .gltf), USD (.usd, .usda, .usdc, .usdz), STEP (.step, .stp)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("gltf document"), "{stderr}");
    assert_eq!(folder.entries(), ["part.obj"]);
}

#[test]
fn an_unwritable_output_fails_before_rendering() {
    let folder = Folder::new("unwritable");
    let model = folder.join("primitives.usda");
    std::fs::write(
        &model,
        render_runtime::export_usda(&lightbox_testmodels::primitives_scene()),
    )
    .unwrap();
    let file = folder.join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let cases = [
        (folder.join("missing").join("out.png"), "does not exist"),
        (file.join("out.png"), "is not a folder"),
        // sysfs takes no new files, not even from root.
        (
            PathBuf::from("/sys/lightbox-render-test.png"),
            "is not writable",
        ),
    ];
    for (out, expected) in cases {
        let started = Instant::now();
        // Big enough to take minutes if it were rendered.
        let output = lightbox(&[
            "render",
            path(&model),
            "-o",
            path(&out),
            "--size",
            "4096x4096",
            "--samples",
            "4096",
        ]);
        assert!(!output.status.success(), "{}", text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{}: {stderr}", out.display());
        assert!(output.stdout.is_empty(), "{}", text(&output));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(!out.exists());
    }
    assert_eq!(folder.entries(), ["a-file", "primitives.usda"]);
}

#[test]
fn denoise_oidn_needs_oidn_compiled_in() {
    let folder = Folder::new("oidn");
    let model = folder.join("primitives.usda");
    std::fs::write(
        &model,
        render_runtime::export_usda(&lightbox_testmodels::primitives_scene()),
    )
    .unwrap();
    let image = folder.join("out.png");
    let output = lightbox(&[
        "render",
        path(&model),
        "-o",
        path(&image),
        "--size",
        "32x32",
        "--samples",
        "4",
        "--denoise",
        "oidn",
    ]);
    if render_runtime::spec::native_has_oidn() {
        assert!(output.status.success(), "{}", text(&output));
        assert!(String::from_utf8_lossy(&output.stdout).contains("(oidn)"));
    } else {
        assert!(!output.status.success(), "{}", text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("oidn is not available to the native engine here"),
            "{stderr}"
        );
        assert!(!image.exists());
    }
}
