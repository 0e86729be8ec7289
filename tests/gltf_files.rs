//! A multi-file `.gltf` through the real `lightbox-render` binary and S3: the model, its `.bin`
//! and its PNGs uploaded under one prefix render; a missing sibling and a reference out of the
//! prefix fail once, naming the file, and write nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lightbox_runtime::events::JobState;
use lightbox_runtime::job::{Envelope, Function};
use lightbox_runtime::requests::RenderRequest;
use lightbox_runtime::ObjectKey;
use lightbox_tests::{function_binary, function_env, wait_consuming, FunctionProcess};
use serde_json::{json, Value};

use crate::stack::{stack, Stack};

/// The WaterBottle sample (`.gltf`, `.bin`, four PNGs) from `../shared/assets`; fails loudly
/// when the shared assets are missing.
fn water_bottle_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/assets/gltf/WaterBottle");
    assert!(
        dir.join("PF_WaterBottle_MR.gltf").is_file(),
        "the shared assets are missing: expected {} (see ../shared/assets/README.md)",
        dir.display()
    );
    dir
}

impl Stack {
    async fn gltf_render_worker(&self) -> FunctionProcess {
        let mut env = function_env(&self.nats, &self.s3.env());
        env.push(("LIGHTBOX_QUEUE".into(), "render.light".into()));
        let process = FunctionProcess::spawn(
            &function_binary("lightbox-render"),
            &env,
            &self.logs,
            "render-light-gltf",
        );
        wait_consuming(&process, Duration::from_secs(30)).await;
        process
    }

    /// Uploads every file of `dir` under `prefix`, except `skip`; returns the keys by name.
    async fn upload_folder(&self, dir: &Path, prefix: &str, skip: &[&str]) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if !skip.contains(&name.as_str()) {
                self.upload(&format!("{prefix}/{name}"), std::fs::read(&path).unwrap())
                    .await;
            }
        }
    }

    /// Renders `model` as a 128² thumbnail; returns the final event.
    async fn render_thumbnail(
        &self,
        model: &str,
        worker: &FunctionProcess,
    ) -> lightbox_runtime::events::JobEvent {
        let request: RenderRequest = serde_json::from_value(json!({
            "model": model,
            "outputs": [{"width": 128, "height": 128, "samples": 8}],
        }))
        .unwrap();
        let envelope = Envelope::new(Function::Render, request);
        self.client.submit("render.light", &envelope).await.unwrap();
        self.client
            .wait(&envelope.id.to_string(), Duration::from_secs(120), |_| {})
            .await
            .unwrap_or_else(|err| panic!("{err}\n{}", worker.log_text()))
    }
}

/// Share of pixels with a clearly coloured (not white or grey) value.
fn coloured_fraction(png: &[u8]) -> f64 {
    let image = image::load_from_memory(png).unwrap().to_rgb8();
    let coloured = image
        .pixels()
        .filter(|p| {
            let (max, min) = (
                *p.0.iter().max().unwrap() as i32,
                *p.0.iter().min().unwrap() as i32,
            );
            max - min > 60
        })
        .count();
    coloured as f64 / (image.width() * image.height()) as f64
}

#[tokio::test]
async fn a_gltf_with_its_bin_and_textures_under_one_prefix_renders() {
    let stack = stack().await;
    let dir = water_bottle_dir();
    stack.upload_folder(&dir, "models/bottle", &[]).await;
    // The same files with the emissive factor off, so the base colour texture shows in the
    // native engine's render whatever it does with emissive maps: the label's colours must
    // come from the PNG beside the model.
    let mut gltf: Value =
        serde_json::from_slice(&std::fs::read(dir.join("PF_WaterBottle_MR.gltf")).unwrap())
            .unwrap();
    gltf["materials"][0]["emissiveFactor"] = json!([0.0, 0.0, 0.0]);
    stack
        .upload(
            "models/bottle/unlit.gltf",
            serde_json::to_vec(&gltf).unwrap(),
        )
        .await;
    // A copy missing one texture, and a model whose buffer points out of its prefix.
    stack
        .upload_folder(&dir, "models/partial", &["PF_WaterBottle_MR_normal.png"])
        .await;
    let mut escaping = gltf.clone();
    escaping["buffers"][0]["uri"] = json!("../bottle/PF_WaterBottle_MR.bin");
    stack
        .upload(
            "models/escaping/bottle.gltf",
            serde_json::to_vec(&escaping).unwrap(),
        )
        .await;
    let worker = stack.gltf_render_worker().await;

    let event = stack
        .render_thumbnail("models/bottle/PF_WaterBottle_MR.gltf", &worker)
        .await;
    assert_eq!(
        event.state,
        JobState::Succeeded,
        "{event:?}\n{}",
        worker.log_text()
    );
    assert_eq!(event.result.as_ref().unwrap()["source"], "glb");
    let output = ObjectKey::new(event.outputs[0].clone()).unwrap();
    let png = stack.store.get(&output, None).await.unwrap();
    let size = image::load_from_memory(&png).unwrap();
    assert_eq!((size.width(), size.height()), (128, 128));

    let event = stack
        .render_thumbnail("models/bottle/unlit.gltf", &worker)
        .await;
    assert_eq!(
        event.state,
        JobState::Succeeded,
        "{event:?}\n{}",
        worker.log_text()
    );
    let output = ObjectKey::new(event.outputs[0].clone()).unwrap();
    let png = stack.store.get(&output, None).await.unwrap();
    let coloured = coloured_fraction(&png);
    // The bottle covers about a fifth of the frame; untextured it would be grey.
    assert!(
        coloured > 0.05,
        "only {coloured:.3} of the pixels are coloured"
    );

    let outputs_before = stack.list("outputs").await;
    let event = stack
        .render_thumbnail("models/partial/PF_WaterBottle_MR.gltf", &worker)
        .await;
    assert_eq!(event.state, JobState::Failed, "{event:?}");
    assert_eq!(event.attempt, 1, "a missing file is not retried");
    let message = event.error.unwrap().message;
    assert!(
        message.contains("'PF_WaterBottle_MR_normal.png'")
            && message.contains("looked for models/partial/PF_WaterBottle_MR_normal.png"),
        "{message}"
    );

    let event = stack
        .render_thumbnail("models/escaping/bottle.gltf", &worker)
        .await;
    assert_eq!(event.state, JobState::Failed, "{event:?}");
    let message = event.error.unwrap().message;
    assert!(
        message.contains("../bottle/PF_WaterBottle_MR.bin") && message.contains("`..` segment"),
        "{message}"
    );
    assert_eq!(
        stack.list("outputs").await,
        outputs_before,
        "failures write nothing"
    );
}
