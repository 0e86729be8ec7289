use crate::stack::{stack, Stack};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use lightbox_runtime::events::{JobEvent, JobState};
use lightbox_runtime::job::{Envelope, Function};
use lightbox_runtime::requests::{ConvertRequest, ImageFormat, RenderRequest, TessellateRequest};
use lightbox_runtime::ObjectKey;
use lightbox_tests::corpus::{self, Case};
use lightbox_tests::{function_binary, function_env, wait_consuming, FunctionProcess};
use serde_json::json;

impl Stack {
    /// A function process on `queue`, consuming.
    async fn corpus_worker(&self, binary: &str, queue: &str) -> FunctionProcess {
        let mut env = function_env(&self.nats, &self.s3.env());
        env.push(("LIGHTBOX_QUEUE".into(), queue.into()));
        // The default budget is half the host's memory: fix it so the corpus means the same on
        // every host (its instance bomb is over 128 MiB).
        env.push(("LIGHTBOX_RENDER_MEMORY_MB".into(), "128".into()));
        let process = FunctionProcess::spawn(
            &function_binary(binary),
            &env,
            &self.logs,
            &format!("corpus-{}", queue.replace('.', "-")),
        );
        wait_consuming(&process, Duration::from_secs(30)).await;
        process
    }

    /// Every key in the bucket, sorted.
    async fn all_keys(&self) -> Vec<String> {
        let items: Vec<_> = self.store.inner.list(None).collect().await;
        let mut keys: Vec<String> = items
            .into_iter()
            .map(|m| m.unwrap().location.to_string())
            .collect();
        keys.sort();
        keys
    }

    /// Every event in `EVENTS`, per job id.
    async fn events_per_job(&self) -> BTreeMap<String, Vec<JobEvent>> {
        let stream = self.client.js.get_stream("EVENTS").await.unwrap();
        let total = stream.clone().info().await.unwrap().state.messages;
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                filter_subject: "events.job.>".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut messages = consumer.messages().await.unwrap().take(total as usize);
        let mut per_job: BTreeMap<String, Vec<JobEvent>> = BTreeMap::new();
        while let Some(message) = messages.next().await {
            let event: JobEvent = serde_json::from_slice(&message.unwrap().payload).unwrap();
            per_job.entry(event.job_id.clone()).or_default().push(event);
        }
        per_job
    }
}

#[test]
fn corpus_is_up_to_date() {
    let cases = corpus::cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let generated = corpus::files(&cases);
    let dir = corpus::dir();
    if std::env::var("LIGHTBOX_UPDATE_CORPUS").is_ok_and(|v| v == "1") {
        corpus::write(&dir, &generated).unwrap();
    }
    let committed = corpus::read_dir_files(&dir).unwrap();
    let total: usize = generated.values().map(Vec::len).sum();
    assert!(
        total < 2 << 20,
        "the corpus is {total} bytes; keep it under 2 MB"
    );
    let hint = "run LIGHTBOX_UPDATE_CORPUS=1 cargo test -p lightbox-tests --test tests corpus_is_up_to_date";
    let names = |files: &BTreeMap<String, Vec<u8>>| files.keys().cloned().collect::<BTreeSet<_>>();
    assert_eq!(
        names(&committed),
        names(&generated),
        "tests/corpus lists other files than the generator makes: {hint}"
    );
    for (name, bytes) in &generated {
        assert!(
            committed[name] == *bytes,
            "tests/corpus/{name} is out of date: {hint}\n{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn fuzzing_regressions_join_the_corpus_when_they_fail() {
    let dir = lightbox_tests::TempDir::new("regressions");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        std::fs::create_dir_all(dir.path().join(target)).unwrap();
        std::fs::write(dir.path().join(target).join(name), bytes).unwrap();
    };
    let glb = lightbox_testmodels::bearing_glb(0.02);
    write("glb_import", "crash-1", &glb[..glb.len() / 2]);
    write("glb_import", "valid", &glb);
    write("usd_import", "oom-1", b"#usda 1.0\ndef Mesh \"M\" {\n");
    let mut image = vec![0u8];
    image.extend_from_slice(&lightbox_convert::samples::png_with_claimed_size(
        9000, 9000,
    ));
    write("image_decode", "slow-1", &image);
    write("job_parsing", "crash-2", b"{\"version\": 1, \"id\": 7}");
    let valid = Envelope::new(
        Function::Convert,
        json!({"input": "inputs/a.png", "format": "png"}),
    );
    write("job_parsing", "valid", &valid.to_json());

    let plain = corpus::cases_with_regressions(&dir.path().join("none"));
    let cases = corpus::cases_with_regressions(dir.path());
    let added: Vec<&Case> = cases[plain.len()..].iter().collect();
    let expected = [
        (
            "render.light",
            "import failed: invalid gltf document: could not completely read the object",
        ),
        (
            "render.light",
            // The reason the reader gives (the worker may report it while collecting the
            // stage's files, before the reader runs).
            "failed to parse USDA layer",
        ),
        (
            "convert",
            "image of 9000x9000 pixels is over the limit of 67108864 pixels",
        ),
        ("convert", "invalid job envelope: invalid type: integer `7`"),
    ];
    assert_eq!(added.len(), expected.len(), "{added:#?}");
    for (case, (queue, expect)) in added.iter().zip(expected) {
        assert_eq!(case.queue, queue, "{case:?}");
        assert!(case.expect.starts_with(expect), "{case:?}");
    }
    assert!(added[1].inputs[0].key.ends_with("/model.usda"));
    assert!(added[0].name.ends_with("-fuzz-glb-import-crash-1"));
}

/// `NNN-name [queue] -> outcome`.
fn outcome_line(case: &Case, outcome: &str) -> String {
    format!("{} [{}] -> {outcome}", case.name, case.queue)
}

#[tokio::test]
async fn bad_input_corpus_fails_cleanly_and_writes_nothing() {
    let cases = corpus::load(&corpus::dir()).unwrap();
    println!("corpus: {} cases", cases.len());
    let stack = stack().await;
    let mut workers = Vec::new();
    for (binary, queue) in [
        ("lightbox-convert", "convert"),
        ("lightbox-render", "render.light"),
        ("lightbox-tessellate", "tessellate"),
    ] {
        workers.push((queue, stack.corpus_worker(binary, queue).await));
    }
    let pids: Vec<u32> = workers.iter().map(|(_, w)| w.pid()).collect();

    let mut uploaded = BTreeSet::new();
    for case in &cases {
        for input in &case.inputs {
            stack.upload(&input.key, &input.bytes).await;
            uploaded.insert(input.key.clone());
        }
    }
    for case in &cases {
        stack
            .client
            .submit_raw(
                &case.queue,
                &case.msg_id,
                Bytes::from(case.payload.clone()),
                None,
            )
            .await
            .unwrap();
    }

    let mut lines = Vec::new();
    let mut problems = Vec::new();
    // One deadline for the lot, so a dead worker does not cost a timeout per case.
    let deadline = Instant::now() + Duration::from_secs(240);
    for case in &cases {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let event = match stack.client.wait(&case.job_id, left, |_| {}).await {
            Ok(event) => event,
            Err(err) => {
                lines.push(outcome_line(case, &format!("no outcome: {err}")));
                problems.push(format!("{}: no outcome: {err}", case.name));
                continue;
            }
        };
        let (kind, message) = event
            .error
            .as_ref()
            .map(|e| (e.kind.as_str(), e.message.as_str()))
            .unwrap_or(("", ""));
        lines.push(outcome_line(
            case,
            &format!(
                "{} (attempt {}): {message}",
                event.state.as_str(),
                event.attempt
            ),
        ));
        if event.state != JobState::Failed {
            problems.push(format!(
                "{}: ended {:?}, not failed",
                case.name, event.state
            ));
        }
        if event.attempt != 1 {
            problems.push(format!(
                "{}: failed on attempt {}",
                case.name, event.attempt
            ));
        }
        if kind != "permanent" && event.state == JobState::Failed {
            problems.push(format!("{}: a {kind:?} failure", case.name));
        }
        if !message.contains(&case.expect) {
            problems.push(format!(
                "{}: {message:?} should contain {:?}",
                case.name, case.expect
            ));
        }
    }

    // The workers are still the same processes, and still serve.
    for ((queue, worker), pid) in workers.iter_mut().zip(&pids) {
        let exited = worker.child.try_wait().unwrap();
        if worker.pid() != *pid || exited.is_some() {
            problems.push(format!(
                "the {queue} worker (pid {pid}) exited ({exited:?}):\n{}",
                worker.log_text()
            ));
        }
    }
    let mut expected_keys = uploaded;
    let good = good_jobs(&stack, &mut expected_keys).await;
    for (queue, id) in &good {
        let event = stack
            .client
            .wait(id, Duration::from_secs(120), |_| {})
            .await
            .unwrap();
        if event.state == JobState::Succeeded {
            expected_keys.extend(event.outputs.iter().cloned());
            // The runtime records a success's full outcome before reporting it (`results/`).
            expected_keys.insert(format!("results/{}/{id}.json", event.function));
            continue;
        }
        problems.push(format!("a good {queue} job ended {event:?}"));
    }
    for (queue, worker) in &workers {
        let log = worker.log_text();
        let panics = log.lines().filter(|l| l.contains("panicked at")).count();
        if panics > 0 {
            println!("note: the {queue} worker logged {panics} panic(s)");
        }
    }

    // Exactly one outcome per bad job, nothing written, every job dead-lettered once, nothing left.
    let per_job = stack.events_per_job().await;
    for case in &cases {
        let terminal: Vec<&str> = per_job
            .get(&case.job_id)
            .map(|events| {
                events
                    .iter()
                    .filter(|e| e.state.is_terminal())
                    .map(|e| e.state.as_str())
                    .collect()
            })
            .unwrap_or_default();
        if terminal.len() != 1 {
            problems.push(format!(
                "{}: {} terminal events {terminal:?}",
                case.name,
                terminal.len()
            ));
        }
    }
    let keys: BTreeSet<String> = stack.all_keys().await.into_iter().collect();
    let written: Vec<&String> = keys.difference(&expected_keys).collect();
    if !written.is_empty() {
        problems.push(format!("bad jobs wrote {written:?}"));
    }
    let letters = stack.client.dead_letters(10_000).await.unwrap();
    let mut lettered: BTreeMap<&str, usize> = BTreeMap::new();
    for letter in &letters {
        *lettered.entry(letter.job_id.as_str()).or_default() += 1;
    }
    for case in &cases {
        let count = lettered.get(case.job_id.as_str()).copied().unwrap_or(0);
        if count != 1 {
            problems.push(format!("{}: {count} dead letters", case.name));
        }
    }
    if letters.len() != cases.len() {
        problems.push(format!(
            "{} dead letters for {} cases",
            letters.len(),
            cases.len()
        ));
    }
    let mut jobs = stack.client.infra.jobs.clone();
    let settled = Instant::now();
    let mut left = jobs.info().await.unwrap().state.messages;
    while left > 0 && settled.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = jobs.info().await.unwrap().state.messages;
    }
    if left != 0 {
        problems.push(format!("JOBS still holds {left} messages"));
    }

    for line in &lines {
        println!("{line}");
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}\n\nper case:\n{}",
        problems.len(),
        problems.join("\n"),
        lines.join("\n")
    );
}

/// One good job per queue, after the corpus: (queue, job id). Adds the inputs to `uploaded`.
async fn good_jobs(stack: &Stack, uploaded: &mut BTreeSet<String>) -> Vec<(&'static str, String)> {
    let card = stack
        .upload(
            "inputs/corpus-good/card.png",
            lightbox_convert::samples::test_card_png(64, 64),
        )
        .await;
    let convert = Envelope::new(
        Function::Convert,
        ConvertRequest {
            input: card,
            output: Some(ObjectKey::new("outputs/corpus-good/card.webp").unwrap()),
            format: ImageFormat::Webp,
            quality: Some(80),
            lossless: false,
            resize: None,
        },
    );
    let model = stack
        .upload(
            "models/corpus-good/bearing.glb",
            lightbox_testmodels::bearing_glb(0.02),
        )
        .await;
    let render: RenderRequest = serde_json::from_value(json!({
        "model": model,
        "outputs": [{"output": "outputs/corpus-good/bearing.png", "width": 32, "height": 32, "samples": 2}],
    }))
    .unwrap();
    let render = Envelope::new(Function::Render, render);
    let step =
        lightbox_tessellate::samples::step_bytes(lightbox_tessellate::samples::Sample::Bracket)
            .unwrap();
    let step = stack.upload("inputs/corpus-good/bracket.step", step).await;
    let tessellate = Envelope::new(
        Function::Tessellate,
        TessellateRequest {
            input: step,
            output: Some(ObjectKey::new("outputs/corpus-good/bracket.glb").unwrap()),
            linear_deflection: None,
            angular_deflection: None,
        },
    );
    for key in [
        &convert.request.input,
        &render.request.model,
        &tessellate.request.input,
    ] {
        uploaded.insert(key.to_string());
    }
    stack.client.submit("convert", &convert).await.unwrap();
    stack.client.submit("render.light", &render).await.unwrap();
    stack
        .client
        .submit("tessellate", &tessellate)
        .await
        .unwrap();
    vec![
        ("convert", convert.id.to_string()),
        ("render.light", render.id.to_string()),
        ("tessellate", tessellate.id.to_string()),
    ]
}
