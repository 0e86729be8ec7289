//! Escalations through and around `infra/nats/auth.conf`, tried as `backend` and as each function
//! user, each refused: continuations aimed at JetStream API or event subjects (a job borrowing
//! its worker's grants), reading or deleting other functions' jobs (MSG.GET / MSG.DELETE /
//! DIRECT.GET on JOBS), stream and consumer management, pulling, acking or publishing another
//! function's work, the locks bucket and other functions' dead letters, and other functions'
//! micro-service subjects.

use std::time::Duration;

use bytes::Bytes;
use lightbox_runtime::client::Client;
use lightbox_runtime::config::NatsConfig;
use lightbox_runtime::events::{JobEvent, JobState};
use lightbox_runtime::job::{Continuation, Envelope, Function};
use lightbox_runtime::requests::{ConvertRequest, ImageFormat};
use lightbox_runtime::worker::Worker;
use lightbox_runtime::{ObjectKey, Store};
use lightbox_tests::{local_store, noisy_png, NatsServer, TempDir};
use serde_json::json;

use crate::security::{connect_as, secured_server, user_config};

/// A render job queued on `render.light` with no render worker running: the victim. Its
/// sequence is read as `admin` (the backend may not read JOBS messages).
async fn queue_victim(backend: &Client, admin: &Client) -> (String, u64) {
    let victim = Envelope::new(
        Function::Render,
        json!({"model": "models/a.glb", "outputs": [{"width": 32, "height": 32}]}),
    );
    backend.submit("render.light", &victim).await.unwrap();
    let seq = admin
        .infra
        .jobs
        .get_last_raw_message_by_subject("render.light")
        .await
        .unwrap()
        .sequence;
    (victim.id.to_string(), seq)
}

async fn admin(server: &NatsServer) -> Client {
    Client::connect(&NatsConfig {
        bind_only: false,
        ..user_config(server, "admin")
    })
    .await
    .unwrap()
}

/// Whether the victim's message is still in JOBS and no `succeeded` or `failed` event or state
/// was forged for it.
async fn victim_is_intact(admin: &Client, victim: &str, seq: u64) {
    let message = admin.infra.jobs.get_raw_message(seq).await;
    assert!(
        message.is_ok(),
        "the victim's job must still be queued: {message:?}"
    );
    let events = admin.js.get_stream("EVENTS").await.unwrap();
    for state in ["succeeded", "failed"] {
        let forged = events
            .get_last_raw_message_by_subject(&format!("events.job.{victim}.{state}"))
            .await;
        assert!(
            forged.is_err(),
            "an event `{state}` was forged for the victim"
        );
    }
    let status = admin.status(victim).await.unwrap();
    assert!(
        matches!(
            &status,
            Some(JobEvent {
                state: JobState::Queued,
                ..
            })
        ),
        "the victim's state must stay queued: {status:?}"
    );
}

/// A local store in `store_dir` holding a small PNG at `inputs/a.png`.
async fn png_input(store_dir: &TempDir) -> (Store, ObjectKey) {
    let store = Store::connect(local_store(store_dir)).unwrap();
    let input = ObjectKey::new("inputs/a.png").unwrap();
    store
        .put(&input, Bytes::from(noisy_png(16, 16, 3)))
        .await
        .unwrap();
    (store, input)
}

/// A convert worker running in process as the `convert` user, bind-only, on `store_dir`.
async fn convert_worker(server: &NatsServer, store_dir: &TempDir) -> Worker {
    let mut config = lightbox_tests::worker_config(server, local_store(store_dir), "convert", 1);
    config.nats = user_config(server, "convert");
    Worker::start(
        config,
        lightbox_convert::ConvertHandler {
            limits: Default::default(),
        },
    )
    .await
    .expect("convert worker starts as user convert")
}

/// A convert request turning `input` into a PNG.
fn png_request(input: &ObjectKey) -> ConvertRequest {
    ConvertRequest {
        input: input.clone(),
        output: None,
        format: ImageFormat::Png,
        quality: None,
        lossless: false,
        resize: None,
    }
}

#[tokio::test]
async fn continuations_cannot_target_api_or_event_subjects() {
    let server = secured_server().await;
    let store_dir = TempDir::new("escalation-store");
    let (_store, input) = png_input(&store_dir).await;
    let worker = convert_worker(&server, &store_dir).await;
    let backend = Client::connect(&user_config(&server, "backend"))
        .await
        .unwrap();
    let admin = admin(&server).await;
    let (victim, seq) = queue_victim(&backend, &admin).await;

    // The backend itself may neither delete a queued job nor publish an event...
    let js = &backend.js;
    let refused = tokio::time::timeout(Duration::from_secs(3), async {
        js.publish(
            format!("events.job.{victim}.succeeded"),
            Bytes::from_static(b"{}"),
        )
        .await?
        .await
    })
    .await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "backend publishes events: {refused:?}"
    );
    assert!(
        refused_request(
            &backend.nats,
            "$JS.API.STREAM.MSG.DELETE.JOBS",
            &json!({"seq": seq}).to_string()
        )
        .await
    );

    // ...nor have a worker do it by naming those subjects as a job's continuation.
    let forged_success = JobEvent::new(&victim, "render", JobState::Succeeded, 1, "forger");
    let continuations = [
        (
            "$JS.API.STREAM.MSG.DELETE.JOBS".to_owned(),
            json!({"seq": seq}),
        ),
        (
            format!("events.job.{victim}.succeeded"),
            serde_json::to_value(&forged_success).unwrap(),
        ),
        (
            format!("$KV.jobs.{victim}"),
            serde_json::to_value(&forged_success).unwrap(),
        ),
        // A work queue with an envelope that is not a job of that queue's function, carrying
        // the victim's id (so a failure reported in its name would forge the victim's outcome).
        (
            "convert".to_owned(),
            json!({"version": 1, "id": victim, "function": "render", "request": {}}),
        ),
    ];
    for (subject, job) in continuations {
        let mut envelope = Envelope::new(Function::Convert, png_request(&input));
        envelope.then = Some(Continuation {
            subject: subject.clone(),
            job,
        });
        backend.submit("convert", &envelope).await.unwrap();
        let event = backend
            .wait(&envelope.id.to_string(), Duration::from_secs(20), |_| {})
            .await
            .unwrap();
        assert_eq!(event.state, JobState::Failed, "{subject}: {event:?}");
        assert_eq!(event.attempt, 1, "{subject}: refused in one delivery");
        let error = event.error.unwrap();
        assert_eq!(error.kind, "permanent", "{subject}");
        assert!(
            error.message.starts_with("invalid continuation: "),
            "{subject}: {}",
            error.message
        );
    }
    victim_is_intact(&admin, &victim, seq).await;
    // The refused jobs left JOBS through their Term ack (no MSG.DELETE needed); the victim stays.
    let mut jobs = admin.infra.jobs.clone();
    let mut messages = u64::MAX;
    for _ in 0..50 {
        messages = jobs.info().await.unwrap().state.messages;
        if messages == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(messages, 1, "only the victim is left in JOBS");
    assert_eq!(admin.dead_letters(10).await.unwrap().len(), 4);
    worker.shutdown().await.unwrap();
}

/// Whether a request was refused (no reply: the server dropped it for lack of permission).
async fn refused_request(client: &async_nats::Client, subject: &str, payload: &str) -> bool {
    let reply = tokio::time::timeout(
        Duration::from_secs(1),
        client.request(subject.to_owned(), Bytes::from(payload.to_owned())),
    )
    .await;
    !matches!(reply, Ok(Ok(_)))
}

/// Whether a JetStream publish was refused (never stored).
async fn refused_publish(client: &async_nats::Client, subject: &str) -> bool {
    let js = async_nats::jetstream::new(client.clone());
    let stored = tokio::time::timeout(Duration::from_secs(1), async {
        js.publish(subject.to_owned(), Bytes::from_static(b"{}"))
            .await?
            .await
    })
    .await;
    !matches!(stored, Ok(Ok(_)))
}

/// Whether a subscription on `subject` hears nothing that `admin` publishes there.
async fn deaf_to(client: &async_nats::Client, admin: &async_nats::Client, subject: &str) -> bool {
    use futures::StreamExt;
    let Ok(mut sub) = client.subscribe(subject.to_owned()).await else {
        return true;
    };
    client.flush().await.ok();
    tokio::time::sleep(Duration::from_millis(100)).await;
    admin
        .publish(subject.to_owned(), Bytes::from_static(b"ping"))
        .await
        .unwrap();
    admin.flush().await.unwrap();
    tokio::time::timeout(Duration::from_millis(400), sub.next())
        .await
        .is_err()
}

#[tokio::test]
async fn no_user_reads_deletes_or_takes_over_other_functions_work() {
    let server = secured_server().await;
    let backend = Client::connect(&user_config(&server, "backend"))
        .await
        .unwrap();
    let admin = admin(&server).await;
    let (victim, seq) = queue_victim(&backend, &admin).await;
    let by_seq = json!({"seq": seq}).to_string();

    // (user, queues it serves, queues it may publish to)
    let users: [(&str, &[&str], &[&str]); 4] = [
        (
            "backend",
            &[],
            &["convert", "tessellate", "render.light", "render.heavy"],
        ),
        ("convert", &["convert"], &[]),
        ("render", &["render-light", "render-heavy"], &["tessellate"]),
        (
            "tessellate",
            &["tessellate"],
            &["render.light", "render.heavy"],
        ),
    ];
    // The users are tried at once (each refusal waits out a short timeout).
    let tries = users.map(|(user, own_consumers, may_publish)| {
        let (server, admin, by_seq) = (&server, &admin, &by_seq);
        async move {
            try_escalations(server, admin, user, own_consumers, may_publish, seq, by_seq).await
        }
    });
    futures::future::join_all(tries).await;
    victim_is_intact(&admin, &victim, seq).await;
    assert!(
        admin.dead_letters(10).await.unwrap().is_empty(),
        "no dead letter was forged"
    );
}

/// Every escalation of one user, each asserted refused.
async fn try_escalations(
    server: &NatsServer,
    admin: &Client,
    user: &str,
    own_consumers: &[&str],
    may_publish: &[&str],
    seq: u64,
    by_seq: &str,
) {
    {
        let client = connect_as(server, user).await;
        // Nobody reads or deletes a job by sequence, directly or through direct get.
        for subject in [
            "$JS.API.STREAM.MSG.GET.JOBS",
            "$JS.API.STREAM.MSG.DELETE.JOBS",
            "$JS.API.DIRECT.GET.JOBS",
        ] {
            assert!(
                refused_request(&client, subject, by_seq).await,
                "{user} may use {subject}"
            );
        }
        // Nobody manages streams or consumers.
        for subject in [
            "$JS.API.STREAM.DELETE.JOBS",
            "$JS.API.STREAM.PURGE.JOBS",
            "$JS.API.STREAM.UPDATE.JOBS",
            "$JS.API.CONSUMER.DELETE.JOBS.render-light",
            "$JS.API.CONSUMER.CREATE.JOBS.spy",
            "$JS.API.STREAM.DELETE.KV_jobs",
            "$JS.API.STREAM.PURGE.KV_tessellate_locks",
        ] {
            assert!(
                refused_request(&client, subject, "{}").await,
                "{user} may use {subject}"
            );
        }
        // Nobody pulls from or acks on a consumer that is not its own.
        for consumer in ["convert", "render-light", "render-heavy", "tessellate"] {
            if own_consumers.contains(&consumer) {
                continue;
            }
            assert!(
                refused_request(
                    &client,
                    &format!("$JS.API.CONSUMER.MSG.NEXT.JOBS.{consumer}"),
                    "{\"batch\":1,\"expires\":500000000}"
                )
                .await,
                "{user} pulls from {consumer}"
            );
            let ack = format!("$JS.ACK.JOBS.{consumer}.1.{seq}.1.0.0");
            assert!(
                refused_request(&client, &ack, "+ACK").await,
                "{user} acks on {consumer}"
            );
        }
        // Nobody publishes work it is not meant to hand out.
        for queue in ["convert", "tessellate", "render.light", "render.heavy"] {
            if may_publish.contains(&queue) {
                continue;
            }
            assert!(
                refused_publish(&client, queue).await,
                "{user} publishes {queue} jobs"
            );
        }
        // Only tessellate writes locks; each function writes only its own dead letters.
        if user != "tessellate" {
            assert!(
                refused_publish(&client, "$KV.tessellate_locks.anything").await,
                "{user} writes locks"
            );
        }
        for function in ["convert", "render", "tessellate"] {
            if function != user {
                assert!(
                    refused_publish(&client, &format!("dlq.{function}")).await,
                    "{user} writes {function} dead letters"
                );
            }
        }
        // Nobody answers or hears another function's micro-service requests.
        for service in ["lightbox-convert", "lightbox-render", "lightbox-tessellate"] {
            if service == format!("lightbox-{user}") {
                continue;
            }
            for subject in [
                format!("$SRV.PING.{service}"),
                format!("$SRV.STATS.{service}.some-id"),
                format!("lightbox.status.{service}.some-instance"),
            ] {
                assert!(
                    deaf_to(&client, &admin.nats, &subject).await,
                    "{user} hears {subject}"
                );
            }
        }
    }
}

/// Any function user may write any job's `jobs` entry (NATS cannot bind a key to "this job"), but
/// a forged `succeeded` no longer makes the worker skip the job: `succeeded` is believed only with
/// the function's own record of the success, which only its runtime writes (`results/<function>/`).
#[tokio::test]
async fn a_forged_succeeded_state_does_not_make_a_worker_skip_the_job() {
    let server = secured_server().await;
    let store_dir = TempDir::new("forged-state-store");
    let (store, input) = png_input(&store_dir).await;
    let backend = Client::connect(&user_config(&server, "backend"))
        .await
        .unwrap();
    let envelope = Envelope::new(Function::Convert, png_request(&input));
    let id = envelope.id.to_string();
    backend.submit("convert", &envelope).await.unwrap();
    // The render user forges the queued convert job's state before any convert worker runs.
    let render = connect_as(&server, "render").await;
    let forged = JobEvent::new(&id, "convert", JobState::Succeeded, 1, "forger");
    let js = async_nats::jetstream::new(render);
    js.publish(
        format!("$KV.jobs.{id}"),
        serde_json::to_vec(&forged).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .expect("function users may write job states (residual trust)");
    let status = backend.status(&id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Succeeded, "the forgery is in place");

    let worker = convert_worker(&server, &store_dir).await;
    let event = backend
        .wait(&id, Duration::from_secs(20), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Succeeded, "{event:?}");
    assert_ne!(event.worker, "forger", "the worker ran the job: {event:?}");
    assert_eq!(event.outputs.len(), 1, "{event:?}");
    let output = ObjectKey::new(event.outputs[0].clone()).unwrap();
    assert!(
        store.exists(&output).await.unwrap(),
        "the job's output {output} exists"
    );
    let status = backend.status(&id).await.unwrap().unwrap();
    assert_eq!(status.worker, event.worker, "KV holds the worker's state");
    worker.shutdown().await.unwrap();
}
