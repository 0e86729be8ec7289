use std::time::{Duration, Instant};

use bytes::Bytes;
use lightbox_runtime::client::Client;
use lightbox_runtime::config::NatsConfig;
use lightbox_runtime::events::JobState;
use lightbox_runtime::infra;
use lightbox_runtime::job::{Envelope, Function};
use lightbox_runtime::requests::{ConvertRequest, ImageFormat};
use lightbox_runtime::worker::Worker;
use lightbox_runtime::{ObjectKey, Store};
use lightbox_tests::nats_cluster::NatsCluster;
use lightbox_tests::{
    function_binary, local_store, noisy_png, worker_config_with, workspace_root, TempDir,
};

const STARTUP: Duration = Duration::from_secs(60);

/// Runs the `lightbox` command with its own HOME (no `nats` context but the test's).
fn lightbox_cli(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(function_binary("lightbox"))
        .env("HOME", home)
        .env_remove("NATS_URL")
        .env_remove("XDG_CONFIG_HOME")
        .args(args)
        .output()
        .expect("lightbox runs")
}

/// A publisher on the whole server list, its streams and bucket created (R3) with the same
/// start-up retries a worker uses: on a fresh cluster the first requests time out.
async fn publisher(cluster: &NatsCluster) -> Client {
    let config = cluster.nats_config();
    let nats = config.connect("cluster-test").await.unwrap();
    let overrides = config.overrides();
    infra::retry_startup("publisher", STARTUP, || {
        Client::from_nats(nats.clone(), &overrides)
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}\n{}", cluster.logs()))
}

/// A convert worker in process on the cluster's server list (three comma-separated URLs).
async fn convert_worker(cluster: &NatsCluster, store: &TempDir) -> anyhow::Result<Worker> {
    let mut config = worker_config_with(cluster.nats_config(), local_store(store), "convert", 1);
    // Leader elections take seconds: a lease that outlives one keeps a job from running twice.
    config.ack_wait = Some(Duration::from_secs(10));
    Worker::start(
        config,
        lightbox_convert::ConvertHandler {
            limits: Default::default(),
        },
    )
    .await
}

/// Uploads `count` images and submits a conversion of each, retrying a publish that meets a
/// leader election (the job id dedupes a repeat). Returns the job ids.
async fn submit_conversions(
    client: &Client,
    store: &Store,
    label: &str,
    count: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let input = ObjectKey::new(format!("inputs/{label}-{i}.png")).unwrap();
        store
            .put(&input, Bytes::from(noisy_png(32, 24, i as u32)))
            .await
            .unwrap();
        let envelope = Envelope::new(
            Function::Convert,
            ConvertRequest {
                input,
                output: Some(ObjectKey::new(format!("outputs/{label}-{i}.webp")).unwrap()),
                format: ImageFormat::Webp,
                quality: Some(80),
                lossless: false,
                resize: None,
            },
        );
        let started = Instant::now();
        loop {
            match client.submit("convert", &envelope).await {
                Ok(_) => break,
                Err(err) if started.elapsed() < STARTUP => {
                    eprintln!("submit retried: {err}");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(err) => panic!("submitting {label}-{i}: {err}"),
            }
        }
        ids.push(envelope.id.to_string());
    }
    ids
}

/// Waits until every job's KV state is terminal (polling: a watch would have to outlive node
/// kills) and returns the states.
async fn terminal_states(client: &Client, ids: &[String], timeout: Duration) -> Vec<JobState> {
    let started = Instant::now();
    loop {
        let mut states = Vec::new();
        for id in ids {
            if let Ok(Some(event)) = client.status(id).await {
                if event.state.is_terminal() {
                    states.push(event.state);
                }
            }
        }
        if states.len() == ids.len() || started.elapsed() > timeout {
            return states;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn the_kubernetes_server_list_is_three_servers() {
    // infra/k8s/base/config.yaml is what every pod's NATS_URL comes from.
    let text =
        std::fs::read_to_string(workspace_root().join("infra/k8s/base/config.yaml")).unwrap();
    let url = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("NATS_URL:"))
        .expect("config.yaml sets NATS_URL")
        .trim()
        .trim_matches('"');
    let config = NatsConfig {
        url: url.to_owned(),
        ..NatsConfig::default()
    };
    let servers: Vec<String> = config
        .server_addrs()
        .unwrap_or_else(|err| panic!("{url}: {err:#}"))
        .iter()
        .map(|addr| addr.host().to_owned())
        .collect();
    assert_eq!(servers.len(), 3, "{servers:?}");
    assert!(
        servers.iter().all(|host| host.starts_with("nats-")),
        "{servers:?}"
    );
}

#[tokio::test]
async fn a_worker_given_three_urls_keeps_serving_when_its_node_and_the_jobs_leader_are_killed() {
    let mut cluster = NatsCluster::start();
    assert_eq!(cluster.url().split(',').count(), 3, "{}", cluster.url());
    let client = publisher(&cluster).await;
    let store_dir = TempDir::new("cluster-store");
    let store = Store::connect(local_store(&store_dir)).unwrap();
    let worker = convert_worker(&cluster, &store_dir)
        .await
        .unwrap_or_else(|err| panic!("worker starts on the server list: {err:#}"));

    let first = submit_conversions(&client, &store, "before", 2).await;
    assert_eq!(
        terminal_states(&client, &first, Duration::from_secs(60)).await,
        [JobState::Succeeded; 2]
    );

    // SIGKILL the node the worker is connected to: it fails over to another URL of its list.
    let connected = cluster
        .connected_node(&worker.client)
        .expect("the worker is connected to a node of the cluster");
    cluster.kill(connected);
    let during = submit_conversions(&client, &store, "node-down", 2).await;
    assert_eq!(
        terminal_states(&client, &during, Duration::from_secs(90)).await,
        [JobState::Succeeded; 2],
        "jobs submitted while the worker's node {connected} is down\n{}",
        cluster.logs()
    );
    assert_ne!(cluster.connected_node(&worker.client), Some(connected));
    cluster.restart(connected);

    // Then SIGKILL the node leading JOBS: the stream elects another leader and work goes on.
    let admin = cluster.nats_config().connect("leader-probe").await.unwrap();
    let leader = NatsCluster::wait_stream_leader(&admin, "JOBS", Duration::from_secs(30))
        .await
        .expect("JOBS has a leader");
    cluster.kill(leader);
    let after = submit_conversions(&client, &store, "leader-down", 2).await;
    assert_eq!(
        terminal_states(&client, &after, Duration::from_secs(90)).await,
        [JobState::Succeeded; 2],
        "jobs submitted after the JOBS leader {leader} was killed\n{}",
        cluster.logs()
    );
    let new_leader = NatsCluster::wait_stream_leader(&admin, "JOBS", Duration::from_secs(30)).await;
    assert!(
        new_leader.is_some_and(|n| n != leader),
        "JOBS is led by {new_leader:?}, killed {leader}"
    );
    for (label, count) in [("before", 2), ("node-down", 2), ("leader-down", 2)] {
        for i in 0..count {
            let key = ObjectKey::new(format!("outputs/{label}-{i}.webp")).unwrap();
            assert!(store.get(&key, None).await.is_ok(), "{key:?} was written");
        }
    }
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn three_workers_started_together_on_a_fresh_cluster_all_start_and_serve() {
    // As an autoscaler starts pods: the cluster has just been started (no meta leader yet) and
    // three instances create the same R3 streams, bucket and consumer at the same moment.
    let cluster = NatsCluster::start();
    let store_dir = TempDir::new("cluster-store");
    let (a, b, c) = tokio::join!(
        convert_worker(&cluster, &store_dir),
        convert_worker(&cluster, &store_dir),
        convert_worker(&cluster, &store_dir),
    );
    let workers: Vec<Worker> = [a, b, c]
        .into_iter()
        .map(|worker| worker.unwrap_or_else(|err| panic!("{err:#}\n{}", cluster.logs())))
        .collect();

    let client = publisher(&cluster).await;
    let admin = cluster.nats_config().connect("probe").await.unwrap();
    for stream in ["JOBS", "EVENTS", "DLQ", "KV_jobs"] {
        let info = client
            .js
            .get_stream(stream)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .clone();
        assert_eq!(info.config.num_replicas, 3, "{stream} is R3");
        assert!(
            NatsCluster::wait_stream_leader(&admin, stream, Duration::from_secs(30))
                .await
                .is_some(),
            "{stream} has a leader"
        );
    }
    let store = Store::connect(local_store(&store_dir)).unwrap();
    let ids = submit_conversions(&client, &store, "fresh", 6).await;
    assert_eq!(
        terminal_states(&client, &ids, Duration::from_secs(90)).await,
        [JobState::Succeeded; 6]
    );

    // The CLI takes the same list from --server and from a `nats` context.
    let home = TempDir::new("cluster-home");
    let status = lightbox_cli(
        home.path(),
        &["--server", &cluster.url(), "status", &ids[0]],
    );
    assert!(
        status.status.success() && String::from_utf8_lossy(&status.stdout).contains("succeeded"),
        "{status:?}"
    );
    let contexts = home.path().join(".config/nats/context");
    std::fs::create_dir_all(&contexts).unwrap();
    std::fs::write(
        contexts.join("cluster.json"),
        serde_json::json!({"url": cluster.url()}).to_string(),
    )
    .unwrap();
    let queues = lightbox_cli(home.path(), &["--context", "cluster", "queues"]);
    assert!(queues.status.success(), "{queues:?}");
    for worker in workers {
        worker.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_bind_only_worker_without_definitions_fails_at_once_naming_infra_apply() {
    // A definitive answer is not retried: the start-up budget is for elections, not for a
    // missing `lightbox infra apply`.
    let cluster = NatsCluster::start();
    let admin = cluster.nats_config().connect("probe").await.unwrap();
    let js = async_nats::jetstream::new(admin);
    // Wait until the cluster answers JetStream requests at all.
    infra::retry_startup("account info", STARTUP, || async {
        js.query_account().await.map_err(anyhow::Error::from)
    })
    .await
    .unwrap();
    let store_dir = TempDir::new("cluster-store");
    let mut config =
        worker_config_with(cluster.nats_config(), local_store(&store_dir), "convert", 1);
    config.nats.bind_only = true;
    let started = Instant::now();
    let err = Worker::start(
        config,
        lightbox_convert::ConvertHandler {
            limits: Default::default(),
        },
    )
    .await
    .err()
    .expect("nothing to bind to");
    let message = format!("{err:#}");
    assert!(message.contains("lightbox infra apply"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a missing stream is not retried for the whole start-up budget ({:?}): {message}",
        started.elapsed()
    );
    assert!(
        js.get_stream("JOBS").await.is_err(),
        "a bind-only worker creates nothing"
    );
}

#[tokio::test]
async fn a_partitioned_jobs_leader_is_replaced_and_jobs_flow_after_the_heal() {
    // The harness's partition is real: every route to the node runs through its proxies, so the
    // other two elect a new leader while it is cut off.
    let cluster = NatsCluster::start();
    let client = publisher(&cluster).await;
    let admin = cluster.nats_config().connect("probe").await.unwrap();
    let leader = NatsCluster::wait_stream_leader(&admin, "JOBS", Duration::from_secs(30))
        .await
        .expect("JOBS has a leader");
    cluster.partition(leader);
    let started = Instant::now();
    let mut new_leader = None;
    while started.elapsed() < Duration::from_secs(60) {
        new_leader = NatsCluster::stream_leader(&admin, "JOBS")
            .await
            .filter(|&n| n != leader);
        if new_leader.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        new_leader.is_some(),
        "no other node took JOBS over from the partitioned n{leader}\n{}",
        cluster.logs()
    );
    assert_ne!(cluster.connected_node(&admin), Some(leader));
    cluster.heal(leader);

    let store_dir = TempDir::new("cluster-store");
    let store = Store::connect(local_store(&store_dir)).unwrap();
    let worker = convert_worker(&cluster, &store_dir).await.unwrap();
    let ids = submit_conversions(&client, &store, "healed", 2).await;
    assert_eq!(
        terminal_states(&client, &ids, Duration::from_secs(60)).await,
        [JobState::Succeeded; 2]
    );
    worker.shutdown().await.unwrap();
}
