//! Fault injection (`./just chaos`), bounded in count and time, loopback only. Runs mixed jobs
//! (conversions, tessellations and render thumbnails) on a real nats-server and SeaweedFS while a driver
//! SIGKILLs random function processes every few seconds and restarts them, restarts nats-server
//! once and stops the S3 server for 20 s. Then checks that every job has exactly one terminal
//! outcome, every succeeded job exactly its outputs, nothing is left in `JOBS` or in flight, and
//! prints `jobs=N kills=N restarts=N redeliveries=N lost=N duplicated=N p50_ms=N p99_ms=N`.
//! Exits non-zero when anything was lost or duplicated.
//!
//! With `--cluster` (`./just chaos-cluster`) it runs on a 3-node JetStream cluster with R3
//! streams and KV, bind-only workers as their `auth.conf` users and node faults as well; see
//! `chaos_cluster.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use lightbox_runtime::client::Client;
use lightbox_runtime::events::{JobEvent, JobState};
use lightbox_runtime::job::{Envelope, Function};
use lightbox_runtime::requests::{
    ConvertRequest, ImageFormat, RenderOutputRequest, RenderRequest, TessellateRequest,
};
use lightbox_runtime::{ObjectKey, Store};
use lightbox_tessellate::samples::Sample;
use lightbox_tessellate::TessellationParams;
use lightbox_tests::{
    function_binary, function_env, noisy_png, FunctionProcess, NatsServer, SeaweedS3, TempDir,
};
use object_store::path::Path;
use object_store::ObjectStore;

/// `--cluster`: the same mix on a 3-node cluster with the least-privilege users (`./just
/// chaos-cluster`).
mod chaos_cluster;

const JOBS: usize = 300;

/// A job to publish: payload, queue subject, job id.
type Pending = (Vec<u8>, &'static str, String);

/// A running function process: binary name, environment, process.
type Running = (String, Vec<(String, String)>, FunctionProcess);
/// Of every five jobs: one render thumbnail, one tessellation, three conversions.
const MIX: usize = 5;

/// What a job of the mix is.
enum Kind {
    Convert(ObjectKey),
    Render,
    Tessellate,
}

struct Pool {
    processes: Vec<Running>,
    logs: TempDir,
    generation: usize,
}

impl Pool {
    fn spawn(&mut self, binary: &str, env: Vec<(String, String)>) {
        self.generation += 1;
        let label = format!("{binary}-{}", self.generation);
        let mut env = env;
        env.push(("LIGHTBOX_INSTANCE".into(), label.clone()));
        let process = FunctionProcess::spawn(&function_binary(binary), &env, &self.logs, &label);
        self.processes.push((binary.to_owned(), env, process));
    }

    /// SIGKILLs one process (chosen by `pick`) and starts a replacement of the same kind.
    fn kill_and_replace(&mut self, pick: usize) {
        let index = pick % self.processes.len();
        let (binary, env, process) = self.processes.remove(index);
        process.signal("KILL");
        drop(process);
        let env = env
            .into_iter()
            .filter(|(k, _)| k != "LIGHTBOX_INSTANCE")
            .collect();
        self.spawn(&binary, env);
    }
}

fn function_binary_dir_check() {
    for name in ["lightbox-convert", "lightbox-render", "lightbox-tessellate"] {
        let _ = function_binary(name);
    }
}

async fn put_retrying(store: &Store, key: &ObjectKey, bytes: Vec<u8>) {
    for attempt in 0..100 {
        match store.put(key, Bytes::from(bytes.clone())).await {
            Ok(()) => return,
            Err(err) if attempt == 99 => panic!("upload failed: {err}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Every job of a run: id → (submitted at, expected objects), filled in by the submitter.
type Submitted = BTreeMap<String, (u64, Vec<String>)>;

/// The inputs of `count` jobs of the mix in the store: one model to render, one STEP part to
/// tessellate (each tessellation asks for its own deflection, so each has its own cache entry)
/// and a distinct image per conversion.
async fn upload_inputs(
    store: &Store,
    count: usize,
) -> anyhow::Result<(ObjectKey, ObjectKey, Vec<u8>, Vec<Kind>)> {
    let model = ObjectKey::new("models/chaos-bearing.glb")?;
    put_retrying(store, &model, lightbox_testmodels::bearing_glb(0.05)).await;
    let step = ObjectKey::new("models/chaos-bracket.step")?;
    let step_bytes = lightbox_tessellate::samples::step_bytes(Sample::Bracket)?;
    put_retrying(store, &step, step_bytes.clone()).await;
    let mut inputs = Vec::new();
    for i in 0..count {
        inputs.push(match i % MIX {
            0 => Kind::Render,
            1 => Kind::Tessellate,
            _ => {
                let key = ObjectKey::new(format!("inputs/chaos/{i}.png"))?;
                put_retrying(store, &key, noisy_png(96, 64, i as u32)).await;
                Kind::Convert(key)
            }
        });
    }
    Ok((model, step, step_bytes, inputs))
}

/// The envelope of every job, with its queue and the objects it must leave when it succeeds.
fn build_jobs(
    inputs: &[Kind],
    model: &ObjectKey,
    step: &ObjectKey,
    step_bytes: &[u8],
) -> anyhow::Result<(Submitted, Vec<Pending>)> {
    let mut submitted: Submitted = BTreeMap::new();
    let mut to_send: Vec<Pending> = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let (payload, subject, id, expected) = match input {
            Kind::Convert(key) => {
                let output = format!("outputs/chaos/{i}.webp");
                let request = ConvertRequest {
                    input: key.clone(),
                    output: Some(ObjectKey::new(output.clone())?),
                    format: ImageFormat::Webp,
                    quality: Some(80),
                    lossless: false,
                    resize: None,
                };
                let envelope = Envelope::new(Function::Convert, request);
                (
                    envelope.to_json(),
                    "convert",
                    envelope.id.to_string(),
                    vec![output],
                )
            }
            Kind::Tessellate => {
                let output = format!("outputs/chaos/{i}.glb");
                let request = TessellateRequest {
                    input: step.clone(),
                    output: Some(ObjectKey::new(output.clone())?),
                    linear_deflection: Some(0.0005 + i as f64 * 1e-6),
                    angular_deflection: None,
                };
                let cache = lightbox_tessellate::cache_key(
                    step_bytes,
                    &TessellationParams {
                        linear_deflection: request.linear_deflection,
                        angular_deflection: request.angular_deflection,
                    },
                );
                let envelope = Envelope::new(Function::Tessellate, request);
                (
                    envelope.to_json(),
                    "tessellate",
                    envelope.id.to_string(),
                    vec![output, cache.as_str().to_owned()],
                )
            }
            Kind::Render => {
                let serde_json::Value::Object(spec) =
                    serde_json::json!({"width": 48, "height": 48, "samples": 2, "seed": i})
                else {
                    unreachable!()
                };
                let request = RenderRequest {
                    model: model.clone(),
                    usd_master: None,
                    outputs: vec![RenderOutputRequest {
                        output: Some(ObjectKey::new(format!("outputs/chaos/{i}.png"))?),
                        spec,
                    }],
                    engine: None,
                    tessellation: None,
                    tessellated_by: None,
                };
                let envelope = Envelope::new(Function::Render, request);
                (
                    envelope.to_json(),
                    "render.light",
                    envelope.id.to_string(),
                    vec![format!("outputs/chaos/{i}.png")],
                )
            }
        };
        submitted.insert(id.clone(), (0, expected));
        to_send.push((payload, subject, id));
    }
    Ok((submitted, to_send))
}

/// Every event in `EVENTS`, by job id, in stream order.
async fn read_events(
    js: &async_nats::jetstream::Context,
) -> anyhow::Result<BTreeMap<String, Vec<JobEvent>>> {
    let events_stream = js.get_stream("EVENTS").await?;
    let consumer = events_stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: "events.job.>".into(),
            ..Default::default()
        })
        .await?;
    let total_events = events_stream.clone().info().await?.state.messages;
    let mut messages = consumer.messages().await?.take(total_events as usize);
    let mut per_job: BTreeMap<String, Vec<JobEvent>> = BTreeMap::new();
    while let Some(message) = messages.next().await {
        let event: JobEvent = serde_json::from_slice(&message?.payload)?;
        per_job.entry(event.job_id.clone()).or_default().push(event);
    }
    Ok(per_job)
}

/// The objects the jobs wrote (under `outputs/chaos` and `cache/tessellate`) and how many of them
/// are not whole: every output must decode (images) or import (GLB).
async fn stored_objects(store: &Store) -> anyhow::Result<(BTreeSet<String>, usize)> {
    let mut objects = BTreeSet::new();
    for prefix in ["outputs/chaos", "cache/tessellate"] {
        let listed: Vec<_> = store.inner.list(Some(&Path::from(prefix))).collect().await;
        objects.extend(
            listed
                .into_iter()
                .filter_map(|m| m.ok())
                .map(|m| m.location.to_string()),
        );
    }
    let mut partial = 0;
    for key in &objects {
        let bytes = store.get(&ObjectKey::new(key.clone())?, None).await?;
        let whole = if key.ends_with(".glb") {
            render_runtime::import_gltf(&bytes).is_ok()
        } else {
            image::load_from_memory(&bytes).is_ok()
        };
        if !whole {
            eprintln!("chaos: {key} is not a whole output ({} bytes)", bytes.len());
            partial += 1;
        }
    }
    Ok((objects, partial))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    function_binary_dir_check();
    if std::env::args().any(|arg| arg == "--cluster") {
        return chaos_cluster::run().await;
    }
    let started = Instant::now();
    let mut nats = NatsServer::start();
    let mut s3 = SeaweedS3::start();
    let store = Store::connect(s3.store_config())?;
    let client = Client::connect(&nats.nats_config()).await?;

    let (model, step, step_bytes, inputs) = upload_inputs(&store, JOBS).await?;

    let mut env = function_env(&nats, &s3.env());
    env.retain(|(k, _)| !k.starts_with("LIGHTBOX_BACKOFF") && k != "LIGHTBOX_ACK_WAIT_SECS");
    env.extend([
        ("LIGHTBOX_ACK_WAIT_SECS".to_string(), "4".to_string()),
        ("LIGHTBOX_MAX_DELIVER".to_string(), "20".to_string()),
        ("LIGHTBOX_BACKOFF_BASE_MS".to_string(), "500".to_string()),
        ("LIGHTBOX_BACKOFF_MAX_MS".to_string(), "4000".to_string()),
        ("LIGHTBOX_LOG".to_string(), "warn".to_string()),
    ]);
    let logs = TempDir::new("chaos-logs");
    let mut pool = Pool {
        processes: Vec::new(),
        logs,
        generation: 0,
    };
    for _ in 0..2 {
        pool.spawn("lightbox-convert", env.clone());
    }
    let mut render_env = env.clone();
    render_env.push(("LIGHTBOX_QUEUE".into(), "render.light".into()));
    pool.spawn("lightbox-render", render_env);
    pool.spawn("lightbox-tessellate", env.clone());

    // Build every job now; a submitter task publishes them at a steady rate across the fault
    // window (retrying while nats-server is down), so faults hit queued and running work.
    let (mut submitted, to_send) = build_jobs(&inputs, &model, &step, &step_bytes)?;
    let submitter = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut sent_at = BTreeMap::new();
            for (payload, subject, id) in to_send {
                sent_at.insert(id.clone(), lightbox_runtime::job::now_ms());
                while client
                    .submit_raw(subject, &id, Bytes::from(payload.clone()), None)
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            sent_at
        })
    };

    // The driver: kills every 2-4 s, one nats-server restart, one 20 s S3 outage; bounded to 4 min.
    let mut kills = 0;
    let mut restarts = 0;
    let mut rng_state = 0x9e37_79b9u64;
    let mut next = || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let chaos_start = Instant::now();
    let mut nats_restarted = false;
    let mut s3_stopped_at: Option<Instant> = None;
    let mut s3_done = false;
    let terminal = |client: Client, ids: Vec<String>| async move {
        let mut done = 0;
        for id in ids {
            if let Ok(Some(status)) = client.status(&id).await {
                if status.state.is_terminal() {
                    done += 1;
                }
            }
        }
        done
    };
    let ids: Vec<String> = submitted.keys().cloned().collect();
    while chaos_start.elapsed() < Duration::from_secs(240) {
        tokio::time::sleep(Duration::from_millis(2000 + next() % 2000)).await;
        pool.kill_and_replace(next() as usize);
        kills += 1;
        let elapsed = chaos_start.elapsed();
        if !nats_restarted && elapsed > Duration::from_secs(10) {
            nats.restart();
            restarts += 1;
            nats_restarted = true;
        }
        if s3_stopped_at.is_none() && elapsed > Duration::from_secs(20) {
            s3.stop();
            s3_stopped_at = Some(Instant::now());
        }
        if let Some(at) = s3_stopped_at {
            if !s3_done && at.elapsed() >= Duration::from_secs(20) {
                s3.start_again();
                s3_done = true;
            }
        }
        if s3_done && nats_restarted && chaos_start.elapsed() > Duration::from_secs(50) {
            let done = terminal(client.clone(), ids.clone()).await;
            if done == ids.len() {
                break;
            }
        }
    }
    let sent_at = submitter.await?;
    for (id, at) in sent_at {
        if let Some(entry) = submitted.get_mut(&id) {
            entry.0 = at;
        }
    }
    // Calm: no more faults; wait for the rest (bounded).
    let calm = Instant::now();
    while calm.elapsed() < Duration::from_secs(300) {
        if terminal(client.clone(), ids.clone()).await == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Verdict.
    let per_job = read_events(&client.js).await?;
    let mut lost = 0;
    let mut duplicated = 0;
    let mut redeliveries = 0;
    let mut latencies = Vec::new();
    let mut expected_objects = BTreeSet::new();
    let (mut succeeded, mut failed) = (0, 0);
    for (id, (submitted_at, expected)) in &submitted {
        let events = per_job.get(id).cloned().unwrap_or_default();
        redeliveries += events
            .iter()
            .filter(|e| e.state == JobState::Started && e.attempt > 1)
            .count();
        let outcomes: BTreeSet<&str> = events
            .iter()
            .filter(|e| e.state.is_terminal())
            .map(|e| e.state.as_str())
            .collect();
        match client.status(id).await?.map(|s| s.state) {
            Some(JobState::Succeeded) => {
                succeeded += 1;
                expected_objects.extend(expected.iter().cloned());
            }
            Some(JobState::Failed) => failed += 1,
            state => {
                lost += 1;
                eprintln!("chaos: job {id} not finished: {}", describe(state, &events));
            }
        }
        if outcomes.len() > 1 {
            duplicated += 1; // two different terminal outcomes for one job
        }
        if let Some(end) = events
            .iter()
            .filter(|e| e.state.is_terminal())
            .map(|e| e.at_ms)
            .min()
        {
            latencies.push(end.saturating_sub(*submitted_at));
        }
    }
    let (objects, partial) = stored_objects(&store).await?;
    duplicated += objects.difference(&expected_objects).count();
    lost += expected_objects.difference(&objects).count();
    let mut jobs_stream = client.infra.jobs.clone();
    let left_in_jobs = jobs_stream.info().await?.state.messages;
    let in_flight: usize = client.queues().await?.iter().map(|q| q.in_flight).sum();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    eprintln!(
        "chaos: {succeeded} succeeded, {failed} failed, {left_in_jobs} left in JOBS, {in_flight} in flight, {} objects ({partial} partial), {:.0} s",
        objects.len(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "jobs={} kills={kills} restarts={restarts} redeliveries={redeliveries} lost={lost} duplicated={duplicated} p50_ms={} p99_ms={}",
        submitted.len(),
        pct(0.5),
        pct(0.99)
    );
    let failing = lost > 0 || duplicated > 0 || partial > 0 || left_in_jobs > 0 || in_flight > 0;
    if failing {
        keep_logs(&pool);
    }
    drop(pool);
    if failing {
        // `exit` runs no destructors: stop the servers first, or they outlive the run.
        nats.stop();
        s3.stop();
        std::process::exit(1);
    }
    Ok(())
}

/// A job that did not finish, for the report: its KV state and its events in order
/// (`started#1 retrying#1 started#2 ...`, `#` the attempt, with the reporting worker).
fn describe(kv: Option<JobState>, events: &[JobEvent]) -> String {
    let trail: Vec<String> = events
        .iter()
        .map(|e| format!("{}#{}@{}", e.state.as_str(), e.attempt, e.worker))
        .collect();
    format!(
        "KV {}, events [{}]",
        kv.map_or("none", JobState::as_str),
        trail.join(" ")
    )
}

/// Moves the workers' logs out of the temporary folder removed on exit, and says where.
fn keep_logs(pool: &Pool) {
    let kept = std::env::temp_dir().join(format!("chaos-logs-{}", std::process::id()));
    if std::fs::rename(pool.logs.path(), &kept).is_ok() {
        eprintln!("chaos: worker logs kept in {}", kept.display());
    }
}
