use std::time::Duration;

use bytes::Bytes;
use lightbox_runtime::client::Client;
use lightbox_runtime::config::NatsConfig;
use lightbox_runtime::events::JobState;
use lightbox_runtime::infra::{self, Overrides, QUEUES};
use lightbox_runtime::job::{Envelope, Function};
use lightbox_runtime::requests::{ConvertRequest, ImageFormat};
use lightbox_runtime::worker::Worker;
use lightbox_runtime::{ObjectKey, Store};
use lightbox_tests::{
    function_binary, function_env, local_store, noisy_png, wait_consuming, workspace_root,
    FunctionProcess, NatsServer, SeaweedS3, TempDir,
};

pub(crate) const PASSWORDS: [(&str, &str); 5] = [
    ("admin", "admin-pw-3f9a"),
    ("backend", "backend-pw-77c1"),
    ("convert", "convert-pw-0b2e"),
    ("render", "render-pw-5d48"),
    ("tessellate", "tessellate-pw-e611"),
];

pub(crate) fn password(user: &str) -> &'static str {
    PASSWORDS
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, p)| *p)
        .unwrap()
}

/// nats-server with the committed least-privilege config, and the streams, consumers and both
/// KV buckets (`jobs`, `tessellate_locks`) created by `admin`, as `lightbox infra apply` does,
/// so every function can run bind-only.
pub(crate) async fn secured_server() -> NatsServer {
    let env = PASSWORDS
        .iter()
        .map(|(user, pw)| {
            (
                format!("LIGHTBOX_{}_PASSWORD", user.to_uppercase()),
                pw.to_string(),
            )
        })
        .collect();
    let server = NatsServer::start_with(Some(workspace_root().join("infra/nats/auth.conf")), env);
    let admin = user_config(&server, "admin");
    let client = Client::connect(&NatsConfig {
        bind_only: false,
        ..admin
    })
    .await
    .expect("admin connects and creates the streams");
    for queue in QUEUES {
        infra::ensure_consumer(&client.infra.jobs, queue, &Overrides::default())
            .await
            .unwrap();
    }
    infra::ensure_locks(&client.js, &Overrides::default())
        .await
        .expect("admin creates the locks bucket");
    server
}

pub(crate) fn user_config(server: &NatsServer, user: &str) -> NatsConfig {
    NatsConfig {
        url: server.url(),
        user: Some(user.into()),
        password: Some(password(user).into()),
        bind_only: true,
        inbox_prefix: Some(format!("_INBOX_{user}")),
        ..NatsConfig::default()
    }
}

pub(crate) async fn connect_as(server: &NatsServer, user: &str) -> async_nats::Client {
    user_config(server, user).connect(user).await.unwrap()
}

/// The environment of a function process connecting as `user` in bind-only mode, with a local
/// store in `store_dir`.
pub(crate) fn function_env_as(
    server: &NatsServer,
    user: &str,
    store_dir: &TempDir,
) -> Vec<(String, String)> {
    let mut env = function_env(
        server,
        &[(
            "LIGHTBOX_STORE_DIR".to_string(),
            store_dir.path().display().to_string(),
        )],
    );
    env.extend([
        ("NATS_USER".to_string(), user.to_string()),
        ("NATS_PASSWORD".to_string(), password(user).to_string()),
        ("NATS_INBOX_PREFIX".to_string(), format!("_INBOX_{user}")),
        ("LIGHTBOX_BIND_ONLY".to_string(), "true".to_string()),
    ]);
    env
}

#[tokio::test]
async fn each_function_user_can_do_its_job_and_nothing_else() {
    let server = secured_server().await;
    let store_dir = TempDir::new("secure-store");
    let store = Store::connect(local_store(&store_dir)).unwrap();
    let input = ObjectKey::new("inputs/a.png").unwrap();
    store
        .put(&input, Bytes::from(noisy_png(32, 32, 1)))
        .await
        .unwrap();

    // The convert user runs a convert worker bound to the existing consumer.
    let mut config = lightbox_tests::worker_config(&server, local_store(&store_dir), "convert", 1);
    config.nats = user_config(&server, "convert");
    let worker = Worker::start(
        config,
        lightbox_convert::ConvertHandler {
            limits: Default::default(),
        },
    )
    .await
    .expect("convert worker starts as user convert");
    let backend = Client::connect(&user_config(&server, "backend"))
        .await
        .expect("backend connects");
    let envelope = Envelope::new(
        Function::Convert,
        ConvertRequest {
            input,
            output: None,
            format: ImageFormat::Png,
            quality: None,
            lossless: false,
            resize: None,
        },
    );
    backend.submit("convert", &envelope).await.unwrap();
    let event = backend
        .wait(&envelope.id.to_string(), Duration::from_secs(20), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Succeeded, "{event:?}");

    // The convert user cannot publish to another function's queue...
    let convert = connect_as(&server, "convert").await;
    let js = async_nats::jetstream::new(convert.clone());
    let result = tokio::time::timeout(Duration::from_secs(5), async {
        js.publish("render.heavy", Bytes::from_static(b"{}"))
            .await?
            .await
    })
    .await;
    assert!(
        !matches!(result, Ok(Ok(_))),
        "convert must not publish render jobs: {result:?}"
    );
    // ...nor read another function's consumer.
    let jobs = js.get_stream("JOBS").await.expect("stream info is allowed");
    let other: Result<async_nats::jetstream::consumer::PullConsumer, _> =
        tokio::time::timeout(Duration::from_secs(5), jobs.get_consumer("render-light"))
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
    assert!(
        other.is_err(),
        "convert must not read the render-light consumer"
    );
    let denied = tokio::time::timeout(
        Duration::from_secs(5),
        convert.request(
            "$JS.API.CONSUMER.MSG.NEXT.JOBS.render-light",
            Bytes::from_static(b"{\"batch\":1}"),
        ),
    )
    .await;
    assert!(
        !matches!(denied, Ok(Ok(_))),
        "convert must not pull from render-light: {denied:?}"
    );
    // ...nor write dead letters for another function.
    let result = tokio::time::timeout(Duration::from_secs(5), async {
        js.publish("dlq.render", Bytes::from_static(b"x"))
            .await?
            .await
    })
    .await;
    assert!(
        !matches!(result, Ok(Ok(_))),
        "convert must not write render dead letters"
    );

    // Nothing landed where it was refused.
    let admin = Client::connect(&NatsConfig {
        bind_only: false,
        ..user_config(&server, "admin")
    })
    .await
    .unwrap();
    let queues = admin.queues().await.unwrap();
    assert_eq!(
        queues
            .iter()
            .find(|q| q.queue == "render.heavy")
            .unwrap()
            .pending,
        0
    );
    assert!(admin.dead_letters(10).await.unwrap().is_empty());

    // The render user may request tessellation (STEP input) but not convert work.
    let render = connect_as(&server, "render").await;
    let render_js = async_nats::jetstream::new(render);
    let allowed = render_js
        .publish("tessellate", Bytes::from_static(b"{}"))
        .await
        .unwrap()
        .await;
    assert!(
        allowed.is_ok(),
        "render may publish tessellate jobs: {allowed:?}"
    );
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        render_js
            .publish("convert", Bytes::from_static(b"{}"))
            .await?
            .await
    })
    .await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "render must not publish convert jobs"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_wrong_password_cannot_connect() {
    let server = secured_server().await;
    let wrong = async_nats::ConnectOptions::with_user_and_password(
        "convert".into(),
        "not-the-password".into(),
    )
    .connect(server.url())
    .await;
    assert!(wrong.is_err(), "a wrong password must be refused");
    let nobody = async_nats::connect(server.url()).await;
    assert!(nobody.is_err(), "anonymous clients must be refused");
    let right = async_nats::ConnectOptions::with_user_and_password(
        "convert".into(),
        password("convert").into(),
    )
    .connect(server.url())
    .await;
    assert!(right.is_ok());
}

#[tokio::test]
async fn a_worker_never_logs_its_secrets() {
    let server = secured_server().await;
    let s3 = SeaweedS3::start();
    let logs = TempDir::new("secret-logs");
    let mut env = function_env(&server, &s3.env());
    env.extend([
        ("NATS_USER".to_string(), "convert".to_string()),
        ("NATS_PASSWORD".to_string(), password("convert").to_string()),
        (
            "NATS_INBOX_PREFIX".to_string(),
            "_INBOX_convert".to_string(),
        ),
        ("LIGHTBOX_BIND_ONLY".to_string(), "true".to_string()),
        ("LIGHTBOX_LOG".to_string(), "debug".to_string()),
    ]);
    let worker =
        FunctionProcess::spawn(&function_binary("lightbox-convert"), &env, &logs, "convert");
    wait_consuming(&worker, Duration::from_secs(30)).await;
    let store = Store::connect(s3.store_config()).unwrap();
    let input = ObjectKey::new("inputs/secret-test.png").unwrap();
    for attempt in 0..50 {
        match store.put(&input, Bytes::from(noisy_png(16, 16, 2))).await {
            Ok(()) => break,
            Err(err) if attempt == 49 => panic!("{err}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let backend = Client::connect(&user_config(&server, "backend"))
        .await
        .unwrap();
    let envelope = Envelope::new(
        Function::Convert,
        ConvertRequest {
            input,
            output: None,
            format: ImageFormat::Webp,
            quality: None,
            lossless: false,
            resize: None,
        },
    );
    backend.submit("convert", &envelope).await.unwrap();
    let event = backend
        .wait(&envelope.id.to_string(), Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Succeeded, "{}", worker.log_text());
    worker.signal("TERM");
    drop(worker);
    let text = std::fs::read_to_string(logs.path().join("convert.log")).unwrap();
    assert!(
        text.contains("succeeded"),
        "the log covers the whole job:\n{text}"
    );
    for secret in [
        password("convert"),
        lightbox_tests::S3_SECRET_KEY,
        lightbox_tests::S3_ACCESS_KEY,
    ] {
        assert!(!text.contains(secret), "the log contains a secret");
    }
}
