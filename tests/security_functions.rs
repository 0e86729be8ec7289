//! Each function runs real jobs as its own NATS user of `infra/nats/auth.conf`, bound to the
//! streams, consumers and buckets `admin` created (LIGHTBOX_BIND_ONLY=true): render on
//! `render.light`, tessellate on an uncached STEP file (it takes a lock in `tessellate_locks`),
//! and a STEP render through a continuation (render publishes the tessellation, tessellate
//! publishes the render). The store policy holds there too: a render naming a tessellation-cache
//! key as its output fails in one delivery and writes nothing.

use std::time::Duration;

use bytes::Bytes;
use lightbox_runtime::cache::tessellation_key;
use lightbox_runtime::client::Client;
use lightbox_runtime::events::{JobEvent, JobState};
use lightbox_runtime::job::{Envelope, Function};
use lightbox_runtime::requests::{TessellateRequest, TessellationParams};
use lightbox_runtime::{ObjectKey, Store};
use lightbox_tessellate::samples::{step_bytes, Sample};
use lightbox_tests::{
    function_binary, local_store, wait_consuming, FunctionProcess, NatsServer, TempDir,
};
use serde_json::json;

use crate::security::{function_env_as, secured_server, user_config};

/// A function binary running as `user`, bind-only, with a fixed instance name for `--check`.
async fn spawn_as(
    server: &NatsServer,
    binary: &str,
    user: &str,
    store_dir: &TempDir,
    logs: &TempDir,
    extra: &[(&str, &str)],
) -> (FunctionProcess, Vec<(String, String)>) {
    let mut env = function_env_as(server, user, store_dir);
    env.push(("LIGHTBOX_INSTANCE".into(), format!("secure-{user}")));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let process = FunctionProcess::spawn(&function_binary(binary), &env, logs, user);
    wait_consuming(&process, Duration::from_secs(30)).await;
    (process, env)
}

/// The health check (`--check`) answers as the function's own user.
fn health_check_passes(binary: &str, env: &[(String, String)]) {
    let output = std::process::Command::new(function_binary(binary))
        .arg("--check")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{binary} --check as its own user: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn run(backend: &Client, queue: &str, envelope: serde_json::Value) -> JobEvent {
    let id = envelope["id"].as_str().unwrap().to_owned();
    backend
        .submit_raw(queue, &id, Bytes::from(envelope.to_string()), None)
        .await
        .unwrap();
    backend
        .wait(&id, Duration::from_secs(120), |_| {})
        .await
        .unwrap()
}

fn render_job(model: &str, output: serde_json::Value) -> serde_json::Value {
    serde_json::to_value(Envelope::new(
        Function::Render,
        json!({"model": model, "outputs": [output]}),
    ))
    .unwrap()
}

#[tokio::test]
async fn render_and_tessellate_run_real_jobs_as_their_own_users_in_bind_only_mode() {
    let server = secured_server().await;
    let store_dir = TempDir::new("secure-functions-store");
    let logs = TempDir::new("secure-functions-logs");
    let store = Store::connect(local_store(&store_dir)).unwrap();
    let put = |key: &str, bytes: Vec<u8>| {
        let store = store.clone();
        let key = ObjectKey::new(key).unwrap();
        async move { store.put(&key, Bytes::from(bytes)).await.unwrap() }
    };
    put("models/bearing.glb", lightbox_testmodels::bearing_glb(0.05)).await;
    put("inputs/bearing.step", step_bytes(Sample::Bearing).unwrap()).await;
    put("models/bracket.step", step_bytes(Sample::Bracket).unwrap()).await;

    let (render, render_env) = spawn_as(
        &server,
        "lightbox-render",
        "render",
        &store_dir,
        &logs,
        &[("LIGHTBOX_QUEUE", "render.light")],
    )
    .await;
    let (tessellate, tessellate_env) = spawn_as(
        &server,
        "lightbox-tessellate",
        "tessellate",
        &store_dir,
        &logs,
        &[],
    )
    .await;
    health_check_passes("lightbox-render", &render_env);
    health_check_passes("lightbox-tessellate", &tessellate_env);
    let backend = Client::connect(&user_config(&server, "backend"))
        .await
        .unwrap();
    let logs_text = || format!("{}\n{}", render.log_text(), tessellate.log_text());

    // A render on render.light.
    let event = run(
        &backend,
        "render.light",
        render_job(
            "models/bearing.glb",
            json!({"output": "outputs/secure/bearing.png", "width": 32, "height": 32, "samples": 2}),
        ),
    )
    .await;
    assert_eq!(
        event.state,
        JobState::Succeeded,
        "{event:?}\n{}",
        logs_text()
    );
    assert!(store
        .exists(&ObjectKey::new("outputs/secure/bearing.png").unwrap())
        .await
        .unwrap());

    // An uncached STEP file: tessellate takes its lock in `tessellate_locks` and writes the cache.
    let envelope = Envelope::new(
        Function::Tessellate,
        TessellateRequest {
            input: ObjectKey::new("inputs/bearing.step").unwrap(),
            output: None,
            linear_deflection: None,
            angular_deflection: None,
        },
    );
    let event = run(
        &backend,
        "tessellate",
        serde_json::to_value(&envelope).unwrap(),
    )
    .await;
    assert_eq!(
        event.state,
        JobState::Succeeded,
        "{event:?}\n{}",
        logs_text()
    );
    assert_eq!(event.attempt, 1, "no lock or bucket failure on the way");
    assert_eq!(event.result.as_ref().unwrap()["cache"], "miss");
    let cached =
        ObjectKey::new(event.result.as_ref().unwrap()["output"].as_str().unwrap()).unwrap();
    assert!(cached.as_str().starts_with("cache/tessellate/"));
    assert!(store.exists(&cached).await.unwrap());

    // A STEP render: render publishes the tessellation (its grant on `tessellate`), and
    // tessellate publishes the render's continuation (its grant on `render.light`).
    let event = run(
        &backend,
        "render.light",
        render_job(
            "models/bracket.step",
            json!({"width": 32, "height": 32, "samples": 2}),
        ),
    )
    .await;
    assert_eq!(
        event.state,
        JobState::Succeeded,
        "{event:?}\n{}",
        logs_text()
    );
    assert_eq!(event.result.as_ref().unwrap()["source"], "tessellated");

    // Render writes only `outputs/`: naming a tessellation-cache key fails at once, writes
    // nothing, and leaves the cache to tessellate.
    let flange = tessellation_key(
        &step_bytes(Sample::Flange).unwrap(),
        &TessellationParams::default(),
    );
    let event = run(
        &backend,
        "render.light",
        render_job(
            "models/bearing.glb",
            json!({"output": flange.as_str(), "width": 16, "height": 16, "samples": 1}),
        ),
    )
    .await;
    assert_eq!(event.state, JobState::Failed, "{event:?}");
    assert_eq!(event.attempt, 1, "a forbidden key is a permanent failure");
    let error = event.error.unwrap();
    assert_eq!(error.kind, "permanent");
    assert!(
        error
            .message
            .contains("outside the prefixes this job may write (outputs/)"),
        "{}",
        error.message
    );
    assert!(!store.exists(&flange).await.unwrap(), "nothing was written");
    let over_cache = run(
        &backend,
        "render.light",
        render_job(
            "models/bearing.glb",
            json!({"output": cached.as_str(), "width": 16, "height": 16, "samples": 1}),
        ),
    )
    .await;
    assert_eq!(over_cache.state, JobState::Failed);
    let glb = store.get(&cached, None).await.unwrap();
    assert_eq!(&glb[0..4], b"glTF", "the cached GLB is intact");
}
