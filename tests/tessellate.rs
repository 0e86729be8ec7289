use crate::stack::{stack, Stack};
use std::time::Duration;

use lightbox_runtime::events::{JobEvent, JobState};
use lightbox_runtime::job::{Envelope, Function};
use lightbox_runtime::requests::TessellateRequest;
use lightbox_runtime::ObjectKey;
use lightbox_tessellate::samples::{self, Sample};
use lightbox_tests::{function_binary, function_env, wait_consuming, FunctionProcess};

impl Stack {
    fn worker(&self, label: &str, extra: &[(&str, &str)]) -> FunctionProcess {
        let mut env = function_env(&self.nats, &self.s3.env());
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        FunctionProcess::spawn(
            &function_binary("lightbox-tessellate"),
            &env,
            &self.logs,
            label,
        )
    }

    async fn run(&self, envelope: &Envelope<TessellateRequest>, timeout: Duration) -> JobEvent {
        self.client.submit("tessellate", envelope).await.unwrap();
        self.client
            .wait(&envelope.id.to_string(), timeout, |_| {})
            .await
            .unwrap()
    }
}

fn job(input: &ObjectKey, output: Option<&str>) -> Envelope<TessellateRequest> {
    Envelope::new(
        Function::Tessellate,
        TessellateRequest {
            input: input.clone(),
            output: output.map(|o| ObjectKey::new(o).unwrap()),
            linear_deflection: None,
            angular_deflection: None,
        },
    )
}

#[tokio::test]
async fn a_step_assembly_becomes_a_cached_instanced_glb() {
    let stack = stack().await;
    let worker = stack.worker("tessellate", &[]);
    wait_consuming(&worker, Duration::from_secs(20)).await;
    let step = samples::step_bytes(Sample::Bearing).unwrap();
    let input = stack.upload("inputs/bearing.step", step.clone()).await;

    let first = stack.run(&job(&input, None), Duration::from_secs(60)).await;
    assert_eq!(
        first.state,
        JobState::Succeeded,
        "{first:?}\n{}",
        worker.log_text()
    );
    let result = first.result.clone().unwrap();
    assert_eq!(result["cache"], "miss");
    assert_eq!(result["parts"], 5);
    assert_eq!(result["instances"], 140);
    assert!(result["triangles"].as_u64().unwrap() > 10_000);
    for stage in ["read", "mesh", "write"] {
        assert!(
            result["timings_ms"][stage].as_f64().unwrap() > 0.0,
            "{stage}"
        );
        assert!(first.timings_ms.contains_key(stage), "{stage}");
    }
    let key = ObjectKey::new(result["output"].as_str().unwrap()).unwrap();
    assert!(key.as_str().starts_with("cache/tessellate/") && key.as_str().ends_with(".glb"));
    assert_eq!(first.outputs, vec![key.to_string()]);
    let glb = stack.store.get(&key, None).await.unwrap();
    assert_eq!(&glb[0..4], b"glTF");
    assert_eq!(result["glb_bytes"], glb.len());

    // The same content under another name, with an output key: answered from the cache.
    let copy = stack.upload("inputs/bearing-copy.step", step).await;
    let second = stack
        .run(
            &job(&copy, Some("outputs/bearing.glb")),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(second.state, JobState::Succeeded, "{second:?}");
    let result = second.result.unwrap();
    assert_eq!(result["cache"], "hit");
    assert_eq!(result["cache_key"], key.as_str());
    assert_eq!(
        (result["parts"].as_u64(), result["instances"].as_u64()),
        (Some(5), Some(140))
    );
    assert_eq!(
        result["triangles"],
        first.result.as_ref().unwrap()["triangles"]
    );
    assert_eq!(
        stack
            .store
            .get(&ObjectKey::new("outputs/bearing.glb").unwrap(), None)
            .await
            .unwrap(),
        glb
    );
    assert_eq!(
        stack.list("cache/tessellate").await.len(),
        1,
        "one cached GLB"
    );
}

#[tokio::test]
async fn concurrent_requests_for_the_same_content_mesh_once() {
    let stack = stack().await;
    let slow = [("LIGHTBOX_CONCURRENCY", "2")];
    let a = stack.worker("a", &slow);
    let b = stack.worker("b", &slow);
    wait_consuming(&a, Duration::from_secs(20)).await;
    wait_consuming(&b, Duration::from_secs(20)).await;
    let step = samples::step_bytes(Sample::Duct).unwrap();
    let mut envelopes = Vec::new();
    for i in 0..4 {
        let input = stack
            .upload(&format!("inputs/duct-{i}.step"), step.clone())
            .await;
        envelopes.push(job(&input, None));
    }
    for envelope in &envelopes {
        stack.client.submit("tessellate", envelope).await.unwrap();
    }
    let mut misses = 0;
    let mut workers = std::collections::HashSet::new();
    for envelope in &envelopes {
        let event = stack
            .client
            .wait(&envelope.id.to_string(), Duration::from_secs(60), |_| {})
            .await
            .unwrap();
        assert_eq!(
            event.state,
            JobState::Succeeded,
            "{event:?}\n{}\n{}",
            a.log_text(),
            b.log_text()
        );
        if event.result.unwrap()["cache"] == "miss" {
            misses += 1;
        }
        workers.insert(event.worker);
    }
    assert_eq!(
        misses,
        1,
        "the same content is meshed once:\n{}\n{}",
        a.log_text(),
        b.log_text()
    );
    assert_eq!(stack.list("cache/tessellate").await.len(), 1);
}

#[tokio::test]
async fn bad_inputs_fail_in_one_delivery_and_the_worker_keeps_serving() {
    let stack = stack().await;
    let worker = stack.worker(
        "tessellate",
        &[
            ("LIGHTBOX_TESSELLATE_MAX_INPUT_BYTES", "400000"),
            ("LIGHTBOX_TESSELLATE_TIMEOUT_SECS", "3"),
            ("LIGHTBOX_TESSELLATE_FAULT_INJECTION", "1"),
        ],
    );
    wait_consuming(&worker, Duration::from_secs(20)).await;
    let bracket = samples::step_bytes(Sample::Bracket).unwrap();
    let mut truncated = bracket.clone();
    truncated.truncate(bracket.len() / 2);
    let text = String::from_utf8(bracket.clone()).unwrap();
    let fault = |name: &str| {
        text.replacen(
            "HEADER;",
            &format!("HEADER;\n/* lightbox-test-fault: {name} */"),
            1,
        )
        .into_bytes()
    };
    let mut oversized = bracket.clone();
    oversized.resize(500_000, b' ');
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not step",
            b"PK\x03\x04 a zip, not a STEP file".to_vec(),
            "input is not a STEP file: it is a ZIP archive",
        ),
        (
            "truncated",
            truncated,
            "the STEP file is truncated: it ends inside or after entity #",
        ),
        (
            "no solids",
            samples::step_bytes(Sample::CurveOnly).unwrap(),
            "the STEP file has no solids or surfaces",
        ),
        ("too large", oversized, "over the limit of 400000 bytes"),
        (
            "crash",
            fault("crash"),
            "the tessellator crashed (killed by signal 6 (SIGABRT)",
        ),
        ("hang", fault("hang"), "tessellation timed out after 3 s"),
    ];
    let mut envelopes = Vec::new();
    for (i, (name, bytes, _)) in cases.iter().enumerate() {
        let input = stack
            .upload(&format!("inputs/bad-{i}.step"), bytes.clone())
            .await;
        let envelope = job(&input, None);
        stack.client.submit("tessellate", &envelope).await.unwrap();
        envelopes.push((name, envelope));
    }
    for ((name, envelope), (_, _, expected)) in envelopes.iter().zip(&cases) {
        let event = stack
            .client
            .wait(&envelope.id.to_string(), Duration::from_secs(60), |_| {})
            .await
            .unwrap();
        assert_eq!(event.state, JobState::Failed, "{name}: {event:?}");
        assert_eq!(event.attempt, 1, "{name}: failed in one delivery");
        let message = event.error.unwrap().message;
        assert!(
            message.contains(expected),
            "{name}: {message:?} should contain {expected:?}"
        );
    }
    let good = stack.upload("inputs/good.step", bracket).await;
    let event = stack
        .run(
            &job(&good, Some("outputs/good.glb")),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(
        event.state,
        JobState::Succeeded,
        "the worker still serves: {event:?}"
    );
    assert_eq!(
        stack.list("outputs").await,
        vec!["outputs/good.glb".to_string()]
    );
    assert_eq!(
        stack.list("cache/tessellate").await.len(),
        1,
        "bad jobs wrote nothing"
    );
    assert_eq!(
        stack.client.dead_letters(100).await.unwrap().len(),
        cases.len()
    );
}
