//! The committed JSON Schemas in `infra/schemas/` as a publisher in another language uses them:
//! good and bad render outputs checked with Python's `jsonschema` against
//! `render.job.schema.json`, and the renderer's own parser agreeing with every verdict; every
//! field the renderer writes for a full spec is described by the schema (the mirror in
//! `lightbox_protocol::render_spec` has not drifted); and the results of real convert and render
//! jobs, through the real binaries, against `*.result.schema.json`.

use std::path::PathBuf;
use std::process::Command;

use lightbox_tests::{tool, workspace_root};
use render_runtime::spec::{RenderSpec, TurntableSpec};

/// The tools venv's Python (`jsonschema` is installed there by `tools/setup.sh`, with the
/// infrastructure validators). `.tools/bin/python` links to it; run through the link, Python
/// would not find its venv.
fn python() -> PathBuf {
    let link = tool("python");
    std::fs::read_link(&link).unwrap_or(link)
}

/// Validates each render output (inside a whole render job) against the committed schema;
/// returns one verdict per output: `None` when valid, else the first error.
fn validate_outputs(outputs: &[serde_json::Value]) -> Vec<Option<String>> {
    let jobs: Vec<serde_json::Value> = outputs
        .iter()
        .map(|output| {
            serde_json::json!({
                "version": 1,
                "id": "0190f5b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b",
                "function": "render",
                "request": {"model": "models/cube.glb", "outputs": [output]},
            })
        })
        .collect();
    validate("render.job.schema.json", &jobs)
}

/// Validates each value against `infra/schemas/<schema>` with Python's `jsonschema`.
fn validate(schema: &str, values: &[serde_json::Value]) -> Vec<Option<String>> {
    let schema = workspace_root().join("infra/schemas").join(schema);
    let script = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
validator = jsonschema.Draft202012Validator(schema)
verdicts = []
for job in json.load(sys.stdin):
    errors = sorted(validator.iter_errors(job), key=lambda e: list(e.path))
    verdicts.append(errors[0].message if errors else None)
print(json.dumps(verdicts))
"#;
    let mut child = Command::new(python())
        .args(["-c", script])
        .arg(&schema)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(values).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "jsonschema failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn render_outputs_are_checked_by_the_committed_schema_as_the_renderer_checks_them() {
    let good = [
        serde_json::json!({}),
        serde_json::json!({"width": 512, "height": 256, "samples": 16, "seed": 3}),
        serde_json::json!({"output": "outputs/a.png", "samples": null, "denoise": "off", "tone": "linear"}),
        serde_json::json!({"format": {"kind": "webp", "quality": 80, "lossless": false}}),
        serde_json::json!({"turntable": {"frames": 8, "frame_ms": 80}, "format": {"kind": "webp"}}),
        serde_json::json!({"studio": {"camera": {"yaw_deg": 30}, "ground": null,
            "background": {"kind": "transparent"},
            "environment": {"kind": "uniform", "radiance": [1, 1, 1]}}}),
    ];
    let bad = [
        serde_json::json!({"widht": 512}),
        serde_json::json!({"height": "tall"}),
        serde_json::json!({"width": -1}),
        serde_json::json!({"denoise": "magic"}),
        serde_json::json!({"format": {"kind": "gif"}}),
        serde_json::json!({"studio": {"lights": [{"colour": [1, 1, 1]}]}}),
        serde_json::json!({"studio": {"background": {"kind": "color"}}}),
        serde_json::json!({"turntable": {"frames": 8, "spin": true}}),
        serde_json::json!({"width": null}),
    ];
    let all: Vec<serde_json::Value> = good.iter().chain(bad.iter()).cloned().collect();
    let verdicts = validate_outputs(&all);
    for (output, verdict) in all.iter().zip(&verdicts) {
        let expected_valid = good.contains(output);
        assert_eq!(
            verdict.is_none(),
            expected_valid,
            "schema verdict on {output}: {verdict:?}"
        );
        // The renderer agrees (the spec is the output without its key).
        let mut spec = output.clone();
        spec.as_object_mut().unwrap().remove("output");
        let parsed = serde_json::from_value::<RenderSpec>(spec);
        assert_eq!(
            parsed.is_ok(),
            expected_valid,
            "renderer verdict on {output}: {parsed:?}"
        );
    }
}

#[test]
fn every_field_the_renderer_writes_is_in_the_schema() {
    let mut spec = RenderSpec {
        samples: Some(64),
        turntable: Some(TurntableSpec::default()),
        ..RenderSpec::default()
    };
    spec.studio.ground = Some(Default::default());
    let full = serde_json::to_value(&spec).unwrap();
    let verdicts = validate_outputs(std::slice::from_ref(&full));
    assert_eq!(
        verdicts[0], None,
        "the schema refuses what the renderer writes: {full}"
    );
}

#[tokio::test]
async fn real_convert_and_render_results_match_the_result_schemas() {
    use lightbox_runtime::events::JobState;
    use lightbox_runtime::job::{Envelope, Function};
    use lightbox_tests::{
        function_binary, function_env, noisy_png, wait_consuming, FunctionProcess,
    };
    use std::time::Duration;

    let stack = crate::stack::stack().await;
    let image = stack
        .upload("inputs/schemas/card.png", noisy_png(32, 24, 1))
        .await;
    let model = stack
        .upload(
            "models/schemas/bearing.glb",
            lightbox_testmodels::bearing_glb(0.02),
        )
        .await;
    let env = function_env(&stack.nats, &stack.s3.env());
    let mut render_env = env.clone();
    render_env.push(("LIGHTBOX_QUEUE".into(), "render.light".into()));
    let convert = FunctionProcess::spawn(
        &function_binary("lightbox-convert"),
        &env,
        &stack.logs,
        "convert",
    );
    let render = FunctionProcess::spawn(
        &function_binary("lightbox-render"),
        &render_env,
        &stack.logs,
        "render",
    );
    wait_consuming(&convert, Duration::from_secs(30)).await;
    wait_consuming(&render, Duration::from_secs(30)).await;

    let jobs = [
        (
            "convert",
            "convert.result.schema.json",
            Function::Convert,
            serde_json::json!({"input": image.as_str(), "format": "webp"}),
        ),
        (
            "render.light",
            "render.result.schema.json",
            Function::Render,
            serde_json::json!({"model": model.as_str(),
                "outputs": [{"width": 48, "height": 32, "samples": 1, "denoise": "off"}]}),
        ),
    ];
    for (queue, schema, function, request) in jobs {
        let id = stack
            .client
            .submit(queue, &Envelope::new(function, request))
            .await
            .unwrap()
            .to_string();
        let event = stack
            .client
            .wait(&id, Duration::from_secs(120), |_| {})
            .await
            .unwrap();
        assert_eq!(
            event.state,
            JobState::Succeeded,
            "{queue}: {:?}",
            event.error
        );
        let result = event.result.expect("a result");
        let verdicts = validate(schema, &[result.clone(), serde_json::json!({"output": 1})]);
        assert_eq!(
            verdicts[0], None,
            "{queue} result {result} against {schema}"
        );
        assert!(
            verdicts[1].is_some(),
            "{schema} accepts a result with nothing in it"
        );
    }
}
