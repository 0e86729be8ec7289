//! `chaos --cluster` (`./just chaos-cluster`): the chaos mix on the real deployment's shape.
//!
//! A 3-node JetStream cluster on loopback (tests/nats_cluster.rs) with the users of
//! `infra/nats/auth.conf`; `admin` applies the committed definitions with 3 replicas (and short
//! chaos timings), as `lightbox infra apply` does; the functions run bind-only as their own users
//! with the three-URL server list, and `backend` submits. While jobs flow the driver, one fault at
//! a time and printing each: SIGKILLs the node leading `JOBS`, then `EVENTS`, then `KV_jobs`
//! (restarting each), stops S3 for 20 s, partitions one node for 30 s, stops every worker for
//! longer than `ack_wait` while jobs are in flight (scale to zero), and SIGKILLs a random worker
//! between faults. Then, with
//! no more faults, it waits (bounded) for every job to finish and prints
//! `jobs=N kills=N leader_changes=N lost=N duplicated=N stuck=N orphaned_objects=N`, exiting
//! non-zero unless the last four are 0:
//! - `stuck`: jobs without both a terminal KV state and a terminal event when the run ends;
//! - `lost`: stuck jobs with no trace left in `JOBS` either (nothing will ever finish them), plus
//!   objects a succeeded job reported that are not in the store;
//! - `duplicated`: jobs with two different terminal outcomes or two terminal events for one
//!   attempt, plus partial (undecodable) objects;
//! - `orphaned_objects`: objects under `outputs/` that no succeeded job's outputs name.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lightbox_runtime::client::Client;
use lightbox_runtime::config::NatsConfig;
use lightbox_runtime::events::JobState;
use lightbox_runtime::infra::{self, Overrides};
use lightbox_runtime::Store;
use lightbox_tests::nats_cluster::NatsCluster;
use lightbox_tests::{function_env_with, SeaweedS3, TempDir};

use super::{build_jobs, read_events, stored_objects, upload_inputs, Pool};

/// Jobs of the mix (one render, one tessellation, three conversions in every five).
const JOBS: usize = 150;
/// Between two submissions: the jobs span the whole fault window (about 2.5 minutes), so some
/// are queued or running at every fault and some queue up while no worker runs.
const SUBMIT_EVERY: Duration = Duration::from_millis(1000);
/// The lease: longer than an election (a few seconds), so a leader change alone does not make a
/// running job run twice; the scale-to-zero pause outlasts it three times.
const ACK_WAIT: Duration = Duration::from_secs(6);
const PARTITION: Duration = Duration::from_secs(30);
/// Streams whose leaders the driver kills in turn and watches for changes.
const LED: [&str; 3] = ["JOBS", "EVENTS", "KV_jobs"];

const PASSWORDS: [(&str, &str); 5] = [
    ("admin", "chaos-admin-pw-41d2"),
    ("backend", "chaos-backend-pw-9e07"),
    ("convert", "chaos-convert-pw-3a55"),
    ("render", "chaos-render-pw-c6b1"),
    ("tessellate", "chaos-tessellate-pw-77f0"),
];

fn password(user: &str) -> &'static str {
    PASSWORDS
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, p)| *p)
        .expect("a chaos password")
}

fn progress(started: Instant, line: impl AsRef<str>) {
    eprintln!(
        "chaos-cluster [{:>5.1} s] {}",
        started.elapsed().as_secs_f64(),
        line.as_ref()
    );
}

/// The environment of a function process: the server list, its own user, bind-only.
fn worker_env(cluster: &NatsCluster, s3: &SeaweedS3, user: &str) -> Vec<(String, String)> {
    let mut env = function_env_with(&cluster.url(), &s3.env());
    env.retain(|(k, _)| !k.starts_with("LIGHTBOX_BACKOFF") && k != "LIGHTBOX_ACK_WAIT_SECS");
    env.extend([
        ("NATS_USER".to_string(), user.to_string()),
        ("NATS_PASSWORD".to_string(), password(user).to_string()),
        ("NATS_INBOX_PREFIX".to_string(), format!("_INBOX_{user}")),
        ("LIGHTBOX_BIND_ONLY".to_string(), "true".to_string()),
        ("LIGHTBOX_NATS_REPLICAS".to_string(), "3".to_string()),
        ("LIGHTBOX_BACKOFF_BASE_MS".to_string(), "500".to_string()),
        ("LIGHTBOX_BACKOFF_MAX_MS".to_string(), "4000".to_string()),
        ("LIGHTBOX_LOG".to_string(), "warn".to_string()),
    ]);
    env
}

/// Watches the leaders of [`LED`] once a second and counts every change from one known leader to
/// another (an election after a kill or partition).
fn spawn_leader_watch(
    admin: async_nats::Client,
) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let changes = Arc::new(AtomicUsize::new(0));
    let counter = changes.clone();
    let task = tokio::spawn(async move {
        let mut last: BTreeMap<&str, usize> = BTreeMap::new();
        loop {
            for stream in LED {
                if let Some(leader) = NatsCluster::stream_leader(&admin, stream).await {
                    if last.insert(stream, leader).is_some_and(|old| old != leader) {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    (changes, task)
}

/// The leader of `stream` now, waiting for an election if there is none (bounded).
async fn leader_of(admin: &async_nats::Client, stream: &str) -> Option<usize> {
    NatsCluster::wait_stream_leader(admin, stream, Duration::from_secs(30)).await
}

/// Waits (bounded) until some job is delivered and not yet acknowledged, so a fault hits running
/// work; returns how many are.
async fn wait_in_flight(client: &Client, timeout: Duration) -> usize {
    let started = Instant::now();
    loop {
        let in_flight = client
            .queues()
            .await
            .map(|queues| queues.iter().map(|q| q.in_flight).sum::<usize>())
            .unwrap_or(0);
        if in_flight > 0 || started.elapsed() > timeout {
            return in_flight;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many of `ids` have a terminal state in KV.
async fn terminal_count(client: &Client, ids: &[String]) -> usize {
    let mut done = 0;
    for id in ids {
        if let Ok(Some(status)) = client.status(id).await {
            if status.state.is_terminal() {
                done += 1;
            }
        }
    }
    done
}

pub async fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let mut cluster = NatsCluster::start_with_auth(&PASSWORDS);
    let mut s3 = SeaweedS3::start();
    let store = Store::connect(s3.store_config())?;
    let admin_config = cluster.nats_config();
    let admin = admin_config.connect("chaos-admin").await?;
    let admin_js = async_nats::jetstream::new(admin.clone());
    // `lightbox infra apply` as admin, riding out the fresh cluster's elections: R3 everywhere,
    // the chaos lease and delivery limit (bind-only workers take the consumer as it is).
    let overrides = Overrides {
        replicas: Some(3),
        ack_wait: Some(ACK_WAIT),
        max_deliver: Some(20),
        ..Default::default()
    };
    let applied = infra::retry_startup("infra apply", Duration::from_secs(90), || {
        infra::apply(&admin_js, &overrides)
    })
    .await?;
    progress(
        started,
        format!(
            "cluster up at {}; applied {} definitions (R3)",
            cluster.url(),
            applied.len()
        ),
    );
    let backend_config = NatsConfig {
        url: cluster.url(),
        user: Some("backend".into()),
        password: Some(password("backend").into()),
        inbox_prefix: Some("_INBOX_backend".into()),
        bind_only: true,
        replicas: 3,
        ..NatsConfig::default()
    };
    let backend = backend_config.connect("chaos-backend").await?;
    let client = Client::from_nats(backend, &backend_config.overrides()).await?;

    let (model, step, step_bytes, inputs) = upload_inputs(&store, JOBS).await?;
    let (mut submitted, to_send) = build_jobs(&inputs, &model, &step, &step_bytes)?;
    let ids: Vec<String> = submitted.keys().cloned().collect();

    let logs = TempDir::new("chaos-cluster-logs");
    let mut pool = Pool {
        processes: Vec::new(),
        logs,
        generation: 0,
    };
    let convert_env = worker_env(&cluster, &s3, "convert");
    let mut render_env = worker_env(&cluster, &s3, "render");
    render_env.push(("LIGHTBOX_QUEUE".into(), "render.light".into()));
    let tessellate_env = worker_env(&cluster, &s3, "tessellate");
    let start_workers = |pool: &mut Pool| {
        for _ in 0..2 {
            pool.spawn("lightbox-convert", convert_env.clone());
        }
        pool.spawn("lightbox-render", render_env.clone());
        pool.spawn("lightbox-tessellate", tessellate_env.clone());
    };
    start_workers(&mut pool);

    let (leader_changes, leader_watch) = spawn_leader_watch(admin.clone());

    // The submitter publishes across the fault window, retrying a publish that meets an election
    // or a partition (the job id dedupes a repeat).
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
                tokio::time::sleep(SUBMIT_EVERY).await;
            }
            sent_at
        })
    };

    let mut kills = 0usize;
    let mut rng_state = 0x2545_f491u64;
    let mut next = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let kill_worker = |pool: &mut Pool, kills: &mut usize, pick: u64| {
        pool.kill_and_replace(pick as usize);
        *kills += 1;
    };

    // Faults, one at a time.
    tokio::time::sleep(Duration::from_secs(8)).await;
    for stream in LED {
        let in_flight = wait_in_flight(&client, Duration::from_secs(10)).await;
        let Some(leader) = leader_of(&admin, stream).await else {
            progress(
                started,
                format!("{stream} has no leader; skipping its kill"),
            );
            continue;
        };
        cluster.kill(leader);
        kills += 1;
        progress(
            started,
            format!("SIGKILL n{leader}, leader of {stream}, with {in_flight} jobs in flight"),
        );
        tokio::time::sleep(Duration::from_secs(4)).await;
        kill_worker(&mut pool, &mut kills, next());
        tokio::time::sleep(Duration::from_secs(6)).await;
        cluster.restart(leader);
        let now = NatsCluster::stream_leader(&admin, stream).await;
        let done = terminal_count(&client, &ids).await;
        progress(
            started,
            format!(
                "n{leader} restarted; {stream} now led by {}; 1 worker SIGKILLed; {done} jobs terminal",
                now.map_or("nobody yet".to_owned(), |n| format!("n{n}"))
            ),
        );
        tokio::time::sleep(Duration::from_secs(8)).await;
    }

    // Today's S3 outage too: 20 s without the store while jobs run.
    let in_flight = wait_in_flight(&client, Duration::from_secs(10)).await;
    s3.stop();
    progress(
        started,
        format!("S3 stopped for 20 s with {in_flight} jobs in flight"),
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    kill_worker(&mut pool, &mut kills, next());
    tokio::time::sleep(Duration::from_secs(10)).await;
    s3.start_again();
    let done = terminal_count(&client, &ids).await;
    progress(
        started,
        format!("S3 back; 1 worker SIGKILLed during the outage; {done} jobs terminal"),
    );
    tokio::time::sleep(Duration::from_secs(8)).await;

    let target = leader_of(&admin, "JOBS").await.unwrap_or(0);
    cluster.partition(target);
    progress(
        started,
        format!(
            "partition n{target} (JOBS leader) for {} s",
            PARTITION.as_secs()
        ),
    );
    let partitioned = Instant::now();
    while partitioned.elapsed() < PARTITION {
        tokio::time::sleep(Duration::from_secs(10)).await;
        kill_worker(&mut pool, &mut kills, next());
    }
    cluster.heal(target);
    progress(started, "partition healed; 3 workers SIGKILLed during it");
    tokio::time::sleep(Duration::from_secs(8)).await;

    // Scale to zero while jobs are in flight, for longer than the lease.
    let in_flight = wait_in_flight(&client, Duration::from_secs(20)).await;
    let stopped = pool.processes.len();
    for (_, _, process) in pool.processes.drain(..) {
        process.signal("KILL");
        kills += 1;
    }
    let pause = ACK_WAIT * 3;
    progress(
        started,
        format!(
            "scale to zero: SIGKILL all {stopped} workers with {in_flight} jobs in flight; {} s pause",
            pause.as_secs()
        ),
    );
    tokio::time::sleep(pause).await;
    start_workers(&mut pool);
    progress(started, "workers back");

    // Worker kills until everything was submitted.
    while !submitter.is_finished() {
        tokio::time::sleep(Duration::from_millis(3000 + next() % 3000)).await;
        kill_worker(&mut pool, &mut kills, next());
    }
    let sent_at = submitter.await?;
    for (id, at) in sent_at {
        if let Some(entry) = submitted.get_mut(&id) {
            entry.0 = at;
        }
    }
    progress(started, format!("all {} jobs submitted; calm", ids.len()));

    // Calm: no more faults; wait for the rest (bounded).
    let calm = Instant::now();
    let mut done = 0;
    while calm.elapsed() < Duration::from_secs(240) {
        done = terminal_count(&client, &ids).await;
        if done == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    progress(
        started,
        format!(
            "{done} of {} jobs terminal in KV after {:.0} s of calm",
            ids.len(),
            calm.elapsed().as_secs_f64()
        ),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    leader_watch.abort();

    // Verdict.
    let per_job = read_events(&client.js).await?;
    let still_queued = queued_job_ids(&admin_js).await?;
    let mut stuck_ids = Vec::new();
    let (mut lost, mut duplicated) = (0usize, 0usize);
    let (mut succeeded, mut failed, mut repeated_terminal) = (0usize, 0usize, 0usize);
    let mut expected_objects = BTreeSet::new();
    for (id, (_, expected)) in &submitted {
        let events = per_job.get(id).cloned().unwrap_or_default();
        let terminal: Vec<_> = events.iter().filter(|e| e.state.is_terminal()).collect();
        let outcomes: BTreeSet<&str> = terminal.iter().map(|e| e.state.as_str()).collect();
        let per_attempt: BTreeSet<u64> = terminal.iter().map(|e| e.attempt).collect();
        if outcomes.len() > 1 || per_attempt.len() < terminal.len() {
            duplicated += 1;
        }
        if terminal.len() > 1 {
            repeated_terminal += 1;
        }
        let kv = client.status(id).await?.map(|s| s.state);
        match kv {
            Some(JobState::Succeeded) => {
                succeeded += 1;
                expected_objects.extend(expected.iter().cloned());
            }
            Some(JobState::Failed) => failed += 1,
            _ => {}
        }
        let kv_terminal = kv.is_some_and(JobState::is_terminal);
        if !kv_terminal || terminal.is_empty() {
            stuck_ids.push((id.clone(), super::describe(kv, &events)));
            if !kv_terminal && terminal.is_empty() && !still_queued.contains(id) {
                lost += 1;
            }
        }
    }
    let (objects, partial) = stored_objects(&store).await?;
    duplicated += partial;
    lost += expected_objects.difference(&objects).count();
    let orphaned = objects
        .iter()
        .filter(|key| key.starts_with("outputs/") && !expected_objects.contains(*key))
        .count();
    for (id, description) in stuck_ids.iter().take(10) {
        let queued = if still_queued.contains(id) {
            "still"
        } else {
            "not"
        };
        eprintln!("chaos-cluster: stuck {id}: {description}; {queued} in JOBS");
    }
    if !stuck_ids.is_empty() {
        // Locks still held name their owner job: a stuck job waiting on a lock shows here.
        for (lock, owner) in held_locks(&admin_js).await {
            eprintln!("chaos-cluster: lock {lock} in tessellate_locks held by {owner}");
        }
    }
    let dead_letters = admin_js
        .get_stream("DLQ")
        .await?
        .info()
        .await?
        .state
        .messages;
    let in_flight: usize = client.queues().await?.iter().map(|q| q.in_flight).sum();
    eprintln!(
        "chaos-cluster: {succeeded} succeeded, {failed} failed, {dead_letters} dead letters, {} left in JOBS, {in_flight} in flight, {repeated_terminal} jobs with more than one terminal event, {} objects ({partial} partial), {:.0} s; worker logs in {}",
        still_queued.len(),
        objects.len(),
        started.elapsed().as_secs_f64(),
        pool.logs.path().display()
    );
    println!(
        "jobs={} kills={kills} leader_changes={} lost={lost} duplicated={duplicated} stuck={} orphaned_objects={orphaned}",
        submitted.len(),
        leader_changes.load(Ordering::SeqCst),
        stuck_ids.len()
    );
    let failing = lost > 0 || duplicated > 0 || !stuck_ids.is_empty() || orphaned > 0;
    if failing {
        super::keep_logs(&pool);
    }
    drop(pool);
    s3.stop();
    if failing {
        // `exit` runs no destructors: stop the nodes first, or they outlive the run.
        drop(cluster);
        std::process::exit(1);
    }
    Ok(())
}

/// The entries of the locks bucket: lock name and the owner recorded as its value.
async fn held_locks(js: &async_nats::jetstream::Context) -> Vec<(String, String)> {
    use futures::StreamExt;
    let Ok(kv) = js.get_key_value(infra::LOCKS_BUCKET).await else {
        return Vec::new();
    };
    let Ok(keys) = kv.keys().await else {
        return Vec::new();
    };
    let keys: Vec<String> = keys.filter_map(|k| async move { k.ok() }).collect().await;
    let mut held = Vec::new();
    for key in keys {
        if let Ok(Some(owner)) = kv.get(&key).await {
            held.push((key, String::from_utf8_lossy(&owner).into_owned()));
        }
    }
    held
}

/// The job ids (`Nats-Msg-Id`) of the messages still in `JOBS`.
async fn queued_job_ids(js: &async_nats::jetstream::Context) -> anyhow::Result<BTreeSet<String>> {
    let mut stream = js.get_stream("JOBS").await?;
    let state = stream.info().await?.state.clone();
    let mut ids = BTreeSet::new();
    if state.messages == 0 {
        return Ok(ids);
    }
    for sequence in state.first_sequence..=state.last_sequence {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            if let Some(id) = message.headers.get("Nats-Msg-Id") {
                ids.insert(id.to_string());
            }
        }
    }
    Ok(ids)
}
