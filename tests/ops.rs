//! The `lightbox` command as operators meet it, through the real binary against a real
//! nats-server: only `infra apply` changes server configuration (an operator's raised limits
//! survive every reading command), unknown and malformed job ids and an unreachable server fail
//! fast with clear messages, `--server`/`--user`/`--password`/`--context` pick the server and
//! identity with flags over context over environment, and `--json` on the read commands; and a
//! worker's numbers as operators read them (`nats micro stats`, `/metrics`).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use lightbox_runtime::client::Client;
use lightbox_runtime::config::NatsConfig;
use lightbox_runtime::infra::{self, DLQ_STREAM, JOBS_STREAM, LOCKS_BUCKET, QUEUES};
use lightbox_runtime::job::{Envelope, Function};
use lightbox_runtime::worker::{Handler, Job, Outcome, Worker};
use lightbox_runtime::JobError;
use lightbox_tests::{free_port, function_binary, local_store, worker_config, NatsServer, TempDir};

/// Runs `lightbox ARGS` with `env`, and a HOME of its own so no `nats` context of the machine
/// running the tests is picked up.
fn lightbox(home: &Path, env: &[(&str, String)], args: &[&str]) -> Output {
    let mut command = Command::new(function_binary("lightbox"));
    command
        .args(args)
        .env_remove("NATS_URL")
        .env_remove("NATS_USER")
        .env_remove("NATS_PASSWORD")
        .env_remove("NATS_CREDS")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", home);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("lightbox runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout_json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "lightbox failed: {}",
        stderr(output)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "stdout is not JSON ({err}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

async fn max_messages(js: &jetstream::Context, name: &str) -> i64 {
    js.get_stream(name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .max_messages
}

#[tokio::test]
async fn only_infra_apply_changes_the_server_and_reading_commands_keep_an_operators_limits() {
    let nats = NatsServer::start();
    let home = TempDir::new("ops-home");
    let env = [("NATS_URL", nats.url())];

    // Before apply nothing exists, and a reading command creates nothing: it says what to run.
    let before = lightbox(home.path(), &env, &["queues"]);
    assert!(!before.status.success());
    assert!(
        stderr(&before).contains("lightbox infra apply"),
        "{}",
        stderr(&before)
    );
    let admin = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(admin);
    assert!(
        js.get_stream(JOBS_STREAM).await.is_err(),
        "queues created JOBS"
    );

    let applied = stdout_json(&lightbox(home.path(), &env, &["infra", "apply", "--json"]));
    let names: Vec<&str> = applied
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap())
        .collect();
    for expected in ["JOBS", "EVENTS", "DLQ", "jobs", LOCKS_BUCKET] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    js.get_key_value(LOCKS_BUCKET).await.expect("locks bucket");
    let jobs = js.get_stream(JOBS_STREAM).await.unwrap();
    for queue in QUEUES {
        jobs.get_consumer::<jetstream::consumer::pull::Config>(&infra::consumer_name(queue))
            .await
            .unwrap_or_else(|err| panic!("consumer for {queue}: {err}"));
    }

    // An operator raises the limits of JOBS and DLQ.
    let mut raised = Vec::new();
    for name in [JOBS_STREAM, DLQ_STREAM] {
        let mut config = js
            .get_stream(name)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .config
            .clone();
        config.max_messages = config.max_messages.max(1) * 3 + 7;
        js.update_stream(config.clone()).await.unwrap();
        raised.push((name, config.max_messages));
    }

    let unknown = uuid::Uuid::now_v7().to_string();
    for args in [
        vec!["dlq", "list"],
        vec!["queues"],
        vec!["status", unknown.as_str()],
        vec!["dlq", "list", "--json"],
        vec!["queues", "--json"],
    ] {
        let _ = lightbox(home.path(), &env, &args);
    }
    // Cancelling an unknown job is an error and writes nothing.
    let cancel = lightbox(home.path(), &env, &["cancel", &unknown]);
    assert!(
        !cancel.status.success(),
        "cancel of an unknown id succeeded"
    );
    assert!(
        stderr(&cancel).contains("no job") && stderr(&cancel).contains(&unknown),
        "{}",
        stderr(&cancel)
    );
    let kv = js.get_key_value("jobs").await.unwrap();
    assert!(
        kv.get(&unknown).await.unwrap().is_none(),
        "cancel wrote a state for a job nobody submitted"
    );

    for (name, max) in raised {
        assert_eq!(
            max_messages(&js, name).await,
            max,
            "a reading command reset {name}'s max_msgs"
        );
    }
    // Applying again is what restores the committed definition.
    stdout_json(&lightbox(home.path(), &env, &["infra", "apply", "--json"]));
    let committed: jetstream::stream::Config =
        serde_json::from_str(infra::JOBS_STREAM_JSON).unwrap();
    assert_eq!(max_messages(&js, JOBS_STREAM).await, committed.max_messages);
}

#[tokio::test]
async fn malformed_ids_and_an_unreachable_server_fail_fast_and_say_why() {
    let home = TempDir::new("ops-home");
    let dead = format!("nats://127.0.0.1:{}", free_port(None));
    let env = [("NATS_URL", dead.clone())];

    let malformed = lightbox(home.path(), &env, &["status", "not-a-uuid"]);
    assert!(!malformed.status.success());
    assert!(
        stderr(&malformed).contains("\"not-a-uuid\" is malformed"),
        "{}",
        stderr(&malformed)
    );

    for args in [vec!["queues"], vec!["dlq", "list"], vec!["infra", "apply"]] {
        let started = Instant::now();
        let output = lightbox(home.path(), &env, &args);
        let took = started.elapsed();
        assert!(
            !output.status.success(),
            "{args:?} succeeded with NATS down"
        );
        assert!(
            stderr(&output).contains(&format!("cannot reach NATS at {dead}")),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            !stderr(&output).contains("stream"),
            "{args:?} talks about streams: {}",
            stderr(&output)
        );
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
    }
}

#[tokio::test]
async fn flags_then_context_then_environment_pick_the_server_and_reads_print_json() {
    let nats = NatsServer::start();
    let home = TempDir::new("ops-home");
    let dead = format!("nats://127.0.0.1:{}", free_port(None));
    let client = Client::connect(&NatsConfig {
        url: nats.url(),
        ..NatsConfig::default()
    })
    .await
    .unwrap();
    infra::apply(&client.js, &Default::default()).await.unwrap();
    let envelope = Envelope::new(
        Function::Convert,
        serde_json::json!({"input": "inputs/a.png"}),
    );
    let id = client
        .submit("convert", &envelope)
        .await
        .unwrap()
        .to_string();

    // The environment names a dead server; --server wins over it.
    let env = [("NATS_URL", dead.clone())];
    let status = stdout_json(&lightbox(
        home.path(),
        &env,
        &["--server", &nats.url(), "status", &id, "--json"],
    ));
    assert_eq!(status["job_id"], id.as_str());
    assert_eq!(status["state"], "queued");
    assert!(!lightbox(home.path(), &env, &["queues"]).status.success());

    // The current `nats` context wins over the environment, a flag over the context.
    let contexts = home.path().join(".config/nats/context");
    std::fs::create_dir_all(&contexts).unwrap();
    std::fs::write(
        contexts.join("lightbox-test.json"),
        serde_json::json!({"description": "test", "url": nats.url()}).to_string(),
    )
    .unwrap();
    std::fs::write(
        home.path().join(".config/nats/context.txt"),
        "lightbox-test",
    )
    .unwrap();
    let queues = stdout_json(&lightbox(home.path(), &env, &["queues", "--json"]));
    let listed: Vec<&str> = queues
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    assert_eq!(listed, QUEUES);
    assert_eq!(
        queues[3]["pending"], 1,
        "the convert job is pending: {queues}"
    );
    let flagged = lightbox(home.path(), &env, &["--server", &dead, "queues"]);
    assert!(
        stderr(&flagged).contains(&format!("cannot reach NATS at {dead}")),
        "{}",
        stderr(&flagged)
    );
    let missing = lightbox(home.path(), &env, &["--context", "nope", "queues"]);
    assert!(
        stderr(&missing).contains("NATS context \"nope\""),
        "{}",
        stderr(&missing)
    );

    assert_eq!(
        stdout_json(&lightbox(home.path(), &env, &["dlq", "list", "--json"])),
        serde_json::json!([])
    );
    // Cancelling the queued job ends it; watch --json prints that final event and exits non-zero.
    let cancel = lightbox(home.path(), &env, &["cancel", &id]);
    assert!(cancel.status.success(), "{}", stderr(&cancel));
    let watch = lightbox(
        home.path(),
        &env,
        &["watch", &id, "--json", "--timeout", "10"],
    );
    assert!(!watch.status.success(), "a cancelled job's watch exits 0");
    let last: serde_json::Value = serde_json::from_slice(&watch.stdout).unwrap_or_else(|err| {
        panic!(
            "watch --json printed no JSON ({err}): {} / {}",
            String::from_utf8_lossy(&watch.stdout),
            stderr(&watch)
        )
    });
    assert_eq!(last["state"], "cancelled");
    assert_eq!(last["job_id"], id.as_str());
}

#[tokio::test]
async fn user_and_password_flags_authenticate_and_refused_credentials_say_so() {
    let dir = TempDir::new("ops-auth");
    let config = dir.path().join("auth.conf");
    std::fs::write(
        &config,
        "authorization { users = [ { user: operator, password: \"op-secret-1\" } ] }\n",
    )
    .unwrap();
    let nats = NatsServer::start_with_config(Some(config));
    let home = TempDir::new("ops-home");
    let env = [("NATS_URL", nats.url())];
    let applied = lightbox(
        home.path(),
        &env,
        &[
            "--user",
            "operator",
            "--password",
            "op-secret-1",
            "infra",
            "apply",
        ],
    );
    assert!(applied.status.success(), "{}", stderr(&applied));
    let queues = lightbox(
        home.path(),
        &env,
        &[
            "--user",
            "operator",
            "--password",
            "op-secret-1",
            "queues",
            "--json",
        ],
    );
    assert_eq!(stdout_json(&queues).as_array().unwrap().len(), QUEUES.len());
    let refused = lightbox(
        home.path(),
        &env,
        &["--user", "operator", "--password", "bad-pass-2", "queues"],
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("refused the credentials"),
        "{}",
        stderr(&refused)
    );
    assert!(
        !stderr(&refused).contains("bad-pass-2"),
        "a password reached the output: {}",
        stderr(&refused)
    );
}

/// A handler that succeeds with a render-like result, or fails for good when asked.
struct StatsHandler;

impl Handler for StatsHandler {
    type Request = serde_json::Value;
    const FUNCTION: Function = Function::Convert;
    const DEFAULT_QUEUE: &'static str = "convert";
    const DEFAULT_CONCURRENCY: usize = 2;

    async fn handle(&self, job: Job<serde_json::Value>) -> Result<Outcome, JobError> {
        tokio::time::sleep(Duration::from_millis(30)).await;
        if job.request["fail"] == true {
            return Err(JobError::permanent("asked to fail"));
        }
        Ok(Outcome {
            outputs: vec![],
            result: serde_json::json!({"outputs": [{"samples": 2, "width": 4, "height": 4, "frames": 1}]}),
            timings_ms: vec![],
            waiting_for: None,
        })
    }
}

/// `GET /metrics` over a plain TCP connection.
async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[tokio::test]
async fn micro_stats_and_metrics_count_jobs_errors_and_time() {
    let nats = NatsServer::start();
    let dir = TempDir::new("ops-store");
    let config = worker_config(&nats, local_store(&dir), "convert", 2);
    let worker = Worker::start(config, StatsHandler).await.unwrap();
    let client = Client::connect(&nats.nats_config()).await.unwrap();
    for request in [
        serde_json::json!({}),
        serde_json::json!({}),
        serde_json::json!({"fail": true}),
    ] {
        let envelope = Envelope::new(Function::Convert, request);
        let id = client
            .submit("convert", &envelope)
            .await
            .unwrap()
            .to_string();
        client
            .wait(&id, Duration::from_secs(20), |_| {})
            .await
            .unwrap();
    }

    let ping = client
        .nats
        .request("$SRV.PING.lightbox-convert", bytes::Bytes::new())
        .await
        .unwrap();
    let ping: serde_json::Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(ping["type"], "io.nats.micro.v1.ping_response");
    let reply = client
        .nats
        .request("$SRV.STATS.lightbox-convert", bytes::Bytes::new())
        .await
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(stats["type"], "io.nats.micro.v1.stats_response");
    assert_eq!(stats["metadata"]["queue"], "convert", "{stats}");
    assert_eq!(stats["metadata"]["concurrency"], "2", "{stats}");
    let jobs = &stats["endpoints"][0];
    assert_eq!(jobs["name"], "jobs", "{stats}");
    assert_eq!(jobs["num_requests"], 3, "{stats}");
    assert_eq!(jobs["num_errors"], 1, "{stats}");
    let processing = jobs["processing_time"].as_u64().unwrap();
    assert!(
        processing >= 3 * 30_000_000,
        "three jobs of 30 ms each took {processing} ns: {stats}"
    );
    assert_eq!(
        jobs["average_processing_time"].as_u64().unwrap(),
        processing / 3
    );
    assert!(stats["started"].as_str().unwrap().ends_with('Z'), "{stats}");

    // The terminal event is stored before the delivery's slot is freed, so the in-flight gauge
    // may still read 1 for a moment after `wait` returns: scrape until it settles (bounded).
    let addr = worker.metrics_addr.expect("a metrics address");
    let mut text = scrape(addr).await;
    for _ in 0..50 {
        if text.contains("lightbox_jobs_in_flight{function=\"convert\"} 0") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        text = scrape(addr).await;
    }
    for expected in [
        "lightbox_jobs_total{function=\"convert\",state=\"succeeded\"} 2",
        "lightbox_jobs_total{function=\"convert\",state=\"failed\"} 1",
        "lightbox_job_duration_seconds_count{function=\"convert\"} 3",
        "lightbox_queue_wait_seconds_count{function=\"convert\"} 3",
        "lightbox_dead_letters_total{function=\"convert\"} 1",
        "lightbox_jobs_in_flight{function=\"convert\"} 0",
        "lightbox_render_samples_total{function=\"convert\"} 64",
    ] {
        assert!(text.contains(expected), "{expected} not in\n{text}");
    }
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn worker_logs_hold_no_colour_codes_and_json_lines_keep_arrays() {
    let stack = crate::stack::stack().await;
    let input = stack
        .upload("inputs/ops/card.png", lightbox_tests::noisy_png(64, 48, 7))
        .await;
    let env = lightbox_tests::function_env(&stack.nats, &stack.s3.env());
    let mut json_env = env.clone();
    json_env.push(("LIGHTBOX_LOG_FORMAT".into(), "json".into()));
    json_env.push(("LIGHTBOX_INSTANCE".into(), "ops-json".into()));
    let mut text_env = env.clone();
    text_env.push(("LIGHTBOX_INSTANCE".into(), "ops-text".into()));
    let convert = function_binary("lightbox-convert");
    let json_worker =
        lightbox_tests::FunctionProcess::spawn(&convert, &json_env, &stack.logs, "json");
    let text_worker =
        lightbox_tests::FunctionProcess::spawn(&convert, &text_env, &stack.logs, "text");
    lightbox_tests::wait_consuming(&json_worker, Duration::from_secs(30)).await;
    lightbox_tests::wait_consuming(&text_worker, Duration::from_secs(30)).await;

    let mut outputs_by_worker = std::collections::HashMap::new();
    // Two workers share the queue: submit until each has run a job (or give up).
    for _ in 0..20 {
        let envelope = Envelope::new(
            Function::Convert,
            serde_json::json!({"input": input.as_str(), "format": "webp"}),
        );
        let id = stack
            .client
            .submit("convert", &envelope)
            .await
            .unwrap()
            .to_string();
        let event = stack
            .client
            .wait(&id, Duration::from_secs(30), |_| {})
            .await
            .unwrap();
        assert_eq!(event.state, lightbox_runtime::events::JobState::Succeeded);
        outputs_by_worker.insert(event.worker.clone(), (id, event.outputs.clone()));
        if outputs_by_worker.len() == 2 {
            break;
        }
    }
    let (json_job, json_outputs) = outputs_by_worker
        .get("ops-json")
        .expect("the JSON worker ran a job")
        .clone();
    assert!(outputs_by_worker.contains_key("ops-text"));

    // The worker logs "succeeded" just after it reports the event.
    for _ in 0..100 {
        if text_worker.log_text().contains(" succeeded")
            && json_worker.log_text().contains("\"succeeded\"")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text_log = text_worker.log_text();
    assert!(text_log.contains(" succeeded"), "{text_log}");
    assert!(
        !text_log.contains('\u{1b}'),
        "colour codes in a log file: {text_log:?}"
    );
    let json_log = json_worker.log_text();
    let succeeded = json_log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "succeeded" && line["span"]["job_id"] == json_job.as_str())
        .unwrap_or_else(|| panic!("no JSON 'succeeded' line for {json_job}:\n{json_log}"));
    assert_eq!(
        succeeded["outputs"],
        serde_json::json!(json_outputs),
        "{succeeded}"
    );
    assert!(succeeded["outputs"].is_array(), "{succeeded}");
    assert_eq!(succeeded["level"], "INFO");
    assert!(!json_log.contains('\u{1b}'));
}

#[tokio::test]
async fn a_bind_only_worker_on_an_unapplied_server_fails_naming_infra_apply() {
    let nats = NatsServer::start();
    let dir = TempDir::new("ops-store");
    let mut config = worker_config(&nats, local_store(&dir), "convert", 1);
    config.nats.bind_only = true;
    let err = match Worker::start(config.clone(), StatsHandler).await {
        Ok(_) => panic!("a bind-only worker started with nothing applied"),
        Err(err) => format!("{err:#}"),
    };
    assert!(err.contains("lightbox infra apply"), "{err}");
    let admin = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(admin);
    assert!(
        js.get_stream(JOBS_STREAM).await.is_err(),
        "a bind-only worker created JOBS"
    );
    // Once applied, the same worker starts.
    infra::apply(&js, &Default::default()).await.unwrap();
    let worker = Worker::start(config, StatsHandler).await.unwrap();
    worker.shutdown().await.unwrap();
}
