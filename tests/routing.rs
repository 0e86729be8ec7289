//! The one routing rule as users meet it: `lightbox submit render` with a 2048² still must land on
//! `render.heavy` (render.light refuses edges over 1024), a thumbnail on `render.light`.

use std::process::Command;
use std::time::Duration;

use crate::stack::stack;
use lightbox_runtime::events::JobState;
use lightbox_tests::{function_binary, function_env, wait_consuming, FunctionProcess};

/// Runs `lightbox submit render REQUEST` against the test stack; returns the printed job id.
fn submit_with_cli(env: &[(String, String)], request: &serde_json::Value) -> String {
    let output = Command::new(function_binary("lightbox"))
        .args(["submit", "render", &request.to_string()])
        .envs(env.iter().cloned())
        .output()
        .expect("lightbox runs");
    assert!(
        output.status.success(),
        "lightbox submit render failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

#[tokio::test]
async fn lightbox_submit_render_routes_a_2048_still_to_render_heavy() {
    let stack = stack().await;
    let model = stack
        .upload("models/cube.glb", lightbox_testmodels::bearing_glb(0.02))
        .await;
    let env = function_env(&stack.nats, &stack.s3.env());
    let mut workers: Vec<FunctionProcess> = Vec::new();
    for queue in ["render.light", "render.heavy"] {
        let mut worker_env = env.clone();
        worker_env.push(("LIGHTBOX_QUEUE".into(), queue.into()));
        worker_env.push(("LIGHTBOX_INSTANCE".into(), format!("worker-{queue}")));
        let process = FunctionProcess::spawn(
            &function_binary("lightbox-render"),
            &worker_env,
            &stack.logs,
            &queue.replace('.', "-"),
        );
        wait_consuming(&process, Duration::from_secs(30)).await;
        workers.push(process);
    }

    let cases = [(2048, "worker-render.heavy"), (256, "worker-render.light")];
    for (edge, instance) in cases {
        let request = serde_json::json!({
            "model": model.as_str(),
            "outputs": [{"width": edge, "height": edge, "samples": 1, "denoise": "off"}],
        });
        let id = submit_with_cli(&env, &request);
        let event = stack
            .client
            .wait(&id, Duration::from_secs(240), |_| {})
            .await
            .unwrap();
        assert_eq!(
            event.state,
            JobState::Succeeded,
            "{edge}² still: {:?}",
            event.error
        );
        assert_eq!(
            event.worker, instance,
            "{edge}² still ran on the wrong queue"
        );
        let width = event
            .result
            .as_ref()
            .and_then(|r| r.pointer("/outputs/0/width"));
        assert_eq!(width.and_then(|w| w.as_u64()), Some(edge));
    }
}
