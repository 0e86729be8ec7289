use crate::stack::{stack, Stack};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use lightbox_runtime::events::JobState;
use lightbox_runtime::job::{Envelope, Function};
use lightbox_runtime::requests::{ConvertRequest, ImageFormat, Size};
use lightbox_runtime::ObjectKey;
use lightbox_tests::{function_binary, function_env, noisy_png, wait_consuming, FunctionProcess};

impl Stack {
    fn convert_worker(&self, label: &str, extra: &[(&str, &str)]) -> FunctionProcess {
        let mut env = function_env(&self.nats, &self.s3.env());
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        FunctionProcess::spawn(
            &function_binary("lightbox-convert"),
            &env,
            &self.logs,
            label,
        )
    }
}

fn convert_job(input: &ObjectKey, output: Option<&str>) -> Envelope<ConvertRequest> {
    Envelope::new(
        Function::Convert,
        ConvertRequest {
            input: input.clone(),
            output: output.map(|o| ObjectKey::new(o).unwrap()),
            format: ImageFormat::Webp,
            quality: Some(90),
            lossless: false,
            resize: None,
        },
    )
}

#[tokio::test]
async fn a_convert_job_runs_end_to_end_through_s3() {
    let stack = stack().await;
    let worker = stack.convert_worker("convert", &[]);
    wait_consuming(&worker, Duration::from_secs(20)).await;
    let input = stack.upload("inputs/e2e.png", noisy_png(320, 200, 1)).await;
    let mut envelope = convert_job(&input, None);
    envelope.request.resize = Some(Size {
        width: 160,
        height: 100,
    });
    stack.client.submit("convert", &envelope).await.unwrap();
    let mut seen = Vec::new();
    let event = stack
        .client
        .wait(&envelope.id.to_string(), Duration::from_secs(30), |e| {
            seen.push(e.state)
        })
        .await
        .unwrap();
    assert_eq!(
        event.state,
        JobState::Succeeded,
        "{event:?}\n{}",
        worker.log_text()
    );
    assert!(seen.contains(&JobState::Started));
    assert_eq!(event.outputs.len(), 1);
    let output = ObjectKey::new(event.outputs[0].clone()).unwrap();
    assert!(output.as_str().starts_with("outputs/convert/") && output.as_str().ends_with(".webp"));
    let bytes = stack.store.get(&output, None).await.unwrap();
    let image = image::load_from_memory(&bytes).unwrap();
    assert_eq!((image.width(), image.height()), (160, 100));
    let result = event.result.unwrap();
    assert_eq!(result["bytes"], bytes.len());
    assert_eq!(result["input_format"], "png");
    for stage in ["fetch", "decode", "encode", "upload", "run"] {
        assert!(
            event.timings_ms.contains_key(stage),
            "missing timing {stage}"
        );
    }
}

#[tokio::test]
async fn bad_inputs_fail_in_one_delivery_and_the_worker_keeps_serving() {
    let stack = stack().await;
    let worker = stack.convert_worker("convert", &[]);
    wait_consuming(&worker, Duration::from_secs(20)).await;
    let not_image = stack
        .upload("inputs/not-image.png", b"these bytes are no image".to_vec())
        .await;
    let bomb = stack
        .upload(
            "inputs/bomb.png",
            lightbox_convert::samples::png_with_claimed_size(100_000, 100_000),
        )
        .await;
    let good_input = stack.upload("inputs/good.png", noisy_png(64, 64, 2)).await;

    let valid = |input: &ObjectKey| serde_json::to_value(convert_job(input, None)).unwrap();
    let mut missing_field = valid(&good_input);
    missing_field["request"]
        .as_object_mut()
        .unwrap()
        .remove("format");
    let mut future_version = valid(&good_input);
    future_version["version"] = 99.into();
    let mut traversal = valid(&good_input);
    traversal["request"]["input"] = "../x".into();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not json", b"{{{ not json".to_vec(), "not a JSON object"),
        (
            "missing field",
            serde_json::to_vec(&missing_field).unwrap(),
            "missing field `format`",
        ),
        (
            "unknown version",
            serde_json::to_vec(&future_version).unwrap(),
            "unsupported envelope version 99",
        ),
        (
            "path traversal",
            serde_json::to_vec(&traversal).unwrap(),
            "contains a `..` segment",
        ),
        (
            "missing object",
            serde_json::to_vec(&valid(&ObjectKey::new("inputs/nope.png").unwrap())).unwrap(),
            "object not found: inputs/nope.png",
        ),
        (
            "no image",
            serde_json::to_vec(&valid(&not_image)).unwrap(),
            "input is not a PNG, JPEG or WebP image",
        ),
        (
            "decompression bomb",
            serde_json::to_vec(&valid(&bomb)).unwrap(),
            "100000x100000 pixels is over the limit",
        ),
    ];
    let mut ids = Vec::new();
    for (i, (name, payload, _)) in cases.iter().enumerate() {
        let id = format!("bad-input-{i}");
        stack
            .client
            .submit_raw("convert", &id, Bytes::from(payload.clone()), None)
            .await
            .unwrap();
        // Malformed envelopes carry no id of their own: the runtime reports under Nats-Msg-Id.
        let parsed: Option<String> = serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned));
        ids.push((name, parsed.unwrap_or(id)));
    }
    for ((name, id), (_, _, expected)) in ids.iter().zip(&cases) {
        let event = stack
            .client
            .wait(id, Duration::from_secs(30), |_| {})
            .await
            .unwrap();
        assert_eq!(event.state, JobState::Failed, "{name}");
        assert_eq!(event.attempt, 1, "{name}: failed in one delivery");
        let message = event.error.unwrap().message;
        assert!(
            message.contains(expected),
            "{name}: {message:?} should contain {expected:?}"
        );
    }
    let good = convert_job(&good_input, Some("outputs/good.webp"));
    stack.client.submit("convert", &good).await.unwrap();
    let event = stack
        .client
        .wait(&good.id.to_string(), Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Succeeded, "the worker still serves");
    assert_eq!(
        stack.list("outputs").await,
        vec!["outputs/good.webp".to_string()],
        "bad jobs wrote nothing"
    );
    assert_eq!(
        stack.client.dead_letters(100).await.unwrap().len(),
        cases.len()
    );
    let mut jobs = stack.client.infra.jobs.clone();
    assert_eq!(jobs.info().await.unwrap().state.messages, 0);
}

#[tokio::test]
async fn a_worker_killed_mid_job_is_redelivered_and_writes_one_output() {
    let stack = stack().await;
    let input = stack
        .upload("inputs/big.png", noisy_png(3000, 3000, 3))
        .await;
    let first = stack.convert_worker("first", &[]);
    wait_consuming(&first, Duration::from_secs(20)).await;
    let envelope = convert_job(&input, None);
    stack.client.submit("convert", &envelope).await.unwrap();
    let mut events = Box::pin(stack.client.watch(&envelope.id.to_string()).await.unwrap());
    while let Some(event) = events.next().await {
        if event.unwrap().state == JobState::Started {
            break;
        }
    }
    first.signal("KILL");
    drop(first);
    let second = stack.convert_worker("second", &[]);
    let event = stack
        .client
        .wait(&envelope.id.to_string(), Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Succeeded, "{}", second.log_text());
    assert_eq!(event.attempt, 2, "the second delivery finished it");
    assert_eq!(
        stack.list("outputs").await,
        event.outputs,
        "exactly one output object"
    );
}

#[tokio::test]
async fn sigterm_drains_running_jobs_and_loses_nothing() {
    let stack = stack().await;
    let mut inputs = Vec::new();
    for i in 0..6 {
        inputs.push(
            stack
                .upload(
                    &format!("inputs/drain-{i}.png"),
                    noisy_png(1200, 1200, 10 + i),
                )
                .await,
        );
    }
    let mut worker = stack.convert_worker(
        "draining",
        &[
            ("LIGHTBOX_CONCURRENCY", "2"),
            ("LIGHTBOX_DRAIN_GRACE_SECS", "30"),
        ],
    );
    wait_consuming(&worker, Duration::from_secs(20)).await;
    let mut ids = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let envelope = convert_job(input, Some(&format!("outputs/drain-{i}.webp")));
        stack.client.submit("convert", &envelope).await.unwrap();
        ids.push(envelope.id.to_string());
    }
    // Stop the worker while its first jobs run.
    let mut events = Box::pin(stack.client.watch(&ids[0]).await.unwrap());
    while let Some(event) = events.next().await {
        if event.unwrap().state == JobState::Started {
            break;
        }
    }
    worker.signal("TERM");
    let exited = worker.wait_exit(Duration::from_secs(40));
    assert_eq!(
        exited,
        Some(true),
        "worker exits cleanly after draining:\n{}",
        worker.log_text()
    );
    assert!(
        worker.log_text().contains("drained"),
        "{}",
        worker.log_text()
    );
    let first = stack.client.status(&ids[0]).await.unwrap().unwrap();
    assert_eq!(
        first.state,
        JobState::Succeeded,
        "the running job finished during the drain"
    );

    let _next = stack.convert_worker("next", &[]);
    for id in &ids {
        let event = stack
            .client
            .wait(id, Duration::from_secs(60), |_| {})
            .await
            .unwrap();
        assert_eq!(event.state, JobState::Succeeded, "job {id}");
    }
    let expected: Vec<String> = (0..6).map(|i| format!("outputs/drain-{i}.webp")).collect();
    assert_eq!(stack.list("outputs").await, expected);
}

#[tokio::test]
async fn models_convert_between_glb_and_usd_keeping_instances() {
    let stack = stack().await;
    let worker = stack.convert_worker("convert", &[]);
    wait_consuming(&worker, Duration::from_secs(20)).await;
    let scene = lightbox_testmodels::bearing_scene(0.05);
    let glb = stack
        .upload(
            "models/bearing.glb",
            render_runtime::scene::export::export_glb(&scene),
        )
        .await;
    let mut to_usdz = convert_job(&glb, Some("outputs/bearing.usdz"));
    to_usdz.request.format = ImageFormat::Usdz;
    to_usdz.request.quality = None;
    stack.client.submit("convert", &to_usdz).await.unwrap();
    let event = stack
        .client
        .wait(&to_usdz.id.to_string(), Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    assert_eq!(
        event.state,
        JobState::Succeeded,
        "{event:?}\n{}",
        worker.log_text()
    );
    let there = event.result.unwrap();
    assert_eq!(there["instances"], scene.instances.len());
    let usdz = ObjectKey::new("outputs/bearing.usdz").unwrap();
    let mut back = convert_job(&usdz, Some("outputs/bearing-again.glb"));
    back.request.format = ImageFormat::Glb;
    back.request.quality = None;
    stack.client.submit("convert", &back).await.unwrap();
    let event = stack
        .client
        .wait(&back.id.to_string(), Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Succeeded, "{event:?}");
    let again = event.result.unwrap();
    assert_eq!(again["instances"], there["instances"]);
    assert_eq!(again["triangles"], there["triangles"]);
    assert_eq!(again["meshes"], there["meshes"]);
    let bytes = stack
        .store
        .get(&ObjectKey::new("outputs/bearing-again.glb").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(&bytes[..4], b"glTF");
}
