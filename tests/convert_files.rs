//! Multi-file models through the real `lightbox-convert` binary and S3: a `.gltf` with its `.bin`
//! and PNGs under one prefix converts to a usdz that carries the textures, a USD stage with its
//! textures in a sibling folder converts to a GLB that carries them, and a missing sibling fails
//! the job once, naming the file, writing nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lightbox_runtime::events::{JobEvent, JobState};
use lightbox_runtime::job::{Envelope, Function};
use lightbox_runtime::requests::{ConvertRequest, ImageFormat};
use lightbox_runtime::ObjectKey;
use lightbox_tests::{function_binary, function_env, wait_consuming, FunctionProcess};
use render_runtime::Scene;

use crate::stack::{stack, Stack};

/// A folder of `../shared/assets`; fails loudly when the shared assets are missing.
fn asset_dir(rel: &str, file: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/assets")
        .join(rel);
    assert!(
        dir.join(file).is_file(),
        "the shared assets are missing: expected {} (see ../shared/assets/README.md)",
        dir.join(file).display()
    );
    dir
}

impl Stack {
    fn files_convert_worker(&self) -> FunctionProcess {
        let env = function_env(&self.nats, &self.s3.env());
        FunctionProcess::spawn(
            &function_binary("lightbox-convert"),
            &env,
            &self.logs,
            "convert-files",
        )
    }

    /// Uploads every file under `dir` (recursively) at its relative path under `prefix`, except
    /// the files named in `skip`.
    async fn upload_tree(&self, dir: &Path, prefix: &str, skip: &[&str]) {
        let mut stack = vec![(dir.to_path_buf(), prefix.to_owned())];
        while let Some((dir, prefix)) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                if path.is_dir() {
                    stack.push((path, format!("{prefix}/{name}")));
                } else if !skip.contains(&name.as_str()) {
                    self.upload(&format!("{prefix}/{name}"), std::fs::read(&path).unwrap())
                        .await;
                }
            }
        }
    }

    async fn convert_model(
        &self,
        input: &str,
        output: &str,
        format: ImageFormat,
        worker: &FunctionProcess,
    ) -> JobEvent {
        let envelope = Envelope::new(
            Function::Convert,
            ConvertRequest {
                input: ObjectKey::new(input).unwrap(),
                output: Some(ObjectKey::new(output).unwrap()),
                format,
                quality: None,
                lossless: false,
                resize: None,
            },
        );
        self.client.submit("convert", &envelope).await.unwrap();
        self.client
            .wait(&envelope.id.to_string(), Duration::from_secs(120), |_| {})
            .await
            .unwrap_or_else(|err| panic!("{err}\n{}", worker.log_text()))
    }
}

/// Materials with a base colour texture whose image decoded to real pixels.
fn textured_materials(scene: &Scene) -> usize {
    scene
        .materials
        .iter()
        .filter(|m| {
            m.base_color_texture
                .as_ref()
                .is_some_and(|t| scene.textures[t.texture].width > 1)
        })
        .count()
}

#[tokio::test]
async fn multi_file_models_convert_with_their_files_from_the_store() {
    let stack = stack().await;
    let bottle = asset_dir("gltf/WaterBottle", "PF_WaterBottle_MR.gltf");
    stack.upload_tree(&bottle, "models/bottle", &[]).await;
    stack
        .upload_tree(&bottle, "models/partial", &["PF_WaterBottle_MR_normal.png"])
        .await;
    let stage = asset_dir("usd/TextureTransformTest", "TextureTransformTest.usd");
    stack.upload_tree(&stage, "models/transform", &[]).await;
    let worker = stack.files_convert_worker();
    wait_consuming(&worker, Duration::from_secs(20)).await;

    // .gltf + .bin + PNGs -> usdz: the package carries the textures.
    let event = stack
        .convert_model(
            "models/bottle/PF_WaterBottle_MR.gltf",
            "outputs/bottle.usdz",
            ImageFormat::Usdz,
            &worker,
        )
        .await;
    assert_eq!(
        event.state,
        JobState::Succeeded,
        "{event:?}\n{}",
        worker.log_text()
    );
    let usdz = stack
        .store
        .get(&ObjectKey::new("outputs/bottle.usdz").unwrap(), None)
        .await
        .unwrap();
    let scene = render_runtime::import_usd(&usdz).unwrap();
    assert_eq!(
        textured_materials(&scene),
        1,
        "the bottle's base colour PNG is in the usdz: {} textures",
        scene.textures.len()
    );
    assert!(
        scene.textures.len() >= 4,
        "{} textures",
        scene.textures.len()
    );

    // A USD stage with its textures in a sibling folder (names with spaces) -> GLB.
    let event = stack
        .convert_model(
            "models/transform/TextureTransformTest.usd",
            "outputs/transform.glb",
            ImageFormat::Glb,
            &worker,
        )
        .await;
    assert_eq!(
        event.state,
        JobState::Succeeded,
        "{event:?}\n{}",
        worker.log_text()
    );
    let glb = stack
        .store
        .get(&ObjectKey::new("outputs/transform.glb").unwrap(), None)
        .await
        .unwrap();
    let scene = render_runtime::import_gltf(&glb).unwrap();
    assert!(
        textured_materials(&scene) >= 4,
        "the stage's PNGs are in the GLB: {} textured materials",
        textured_materials(&scene)
    );

    // A missing sibling: failed once, naming the file and the key looked for; nothing written.
    let outputs_before = stack.list("outputs").await;
    let event = stack
        .convert_model(
            "models/partial/PF_WaterBottle_MR.gltf",
            "outputs/partial.usdz",
            ImageFormat::Usdz,
            &worker,
        )
        .await;
    assert_eq!(event.state, JobState::Failed, "{event:?}");
    assert_eq!(event.attempt, 1, "a missing file is not retried");
    let message = event.error.unwrap().message;
    assert!(
        message.contains("'PF_WaterBottle_MR_normal.png'")
            && message.contains("models/partial/PF_WaterBottle_MR_normal.png"),
        "{message}"
    );
    assert_eq!(
        stack.list("outputs").await,
        outputs_before,
        "nothing written"
    );
}
