//! Stream, consumer and KV definitions. They live as JSON in `infra/nats/`, in the form the `nats`
//! CLI takes (`nats stream add --config FILE`), and are compiled in from those same files.
//!
//! Two ways to meet them: [`apply`] creates or updates every definition (what `lightbox infra
//! apply` runs, as an operator), and [`bind`] only looks them up and never changes the server's
//! configuration (every other `lightbox` command, and workers with `LIGHTBOX_BIND_ONLY=true`).
//! A missing definition is an error that names `lightbox infra apply`.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, kv, stream};
use serde::{Deserialize, Serialize};

/// Name of the work-queue stream.
pub const JOBS_STREAM: &str = "JOBS";
/// Name of the outcome-events stream.
pub const EVENTS_STREAM: &str = "EVENTS";
/// Name of the dead-letter stream.
pub const DLQ_STREAM: &str = "DLQ";
/// Name of the KV bucket with the latest state per job.
pub const JOBS_BUCKET: &str = "jobs";
/// Name of the KV bucket holding the cross-process locks ([`crate::locks`]); named for the
/// tessellate function, its first user.
pub const LOCKS_BUCKET: &str = "tessellate_locks";

/// The committed JSON files, by name.
pub const JOBS_STREAM_JSON: &str = include_str!("../../../infra/nats/jobs.stream.json");
pub const EVENTS_STREAM_JSON: &str = include_str!("../../../infra/nats/events.stream.json");
pub const DLQ_STREAM_JSON: &str = include_str!("../../../infra/nats/dlq.stream.json");
pub const JOBS_KV_JSON: &str = include_str!("../../../infra/nats/jobs.kv.json");
pub const LOCKS_KV_JSON: &str = include_str!("../../../infra/nats/tessellate-locks.kv.json");
const CONSUMERS: [(&str, &str); 4] = [
    (
        "convert",
        include_str!("../../../infra/nats/consumer.convert.json"),
    ),
    (
        "tessellate",
        include_str!("../../../infra/nats/consumer.tessellate.json"),
    ),
    (
        "render.light",
        include_str!("../../../infra/nats/consumer.render-light.json"),
    ),
    (
        "render.heavy",
        include_str!("../../../infra/nats/consumer.render-heavy.json"),
    ),
];

/// The work-queue subjects, in the order operators list them.
pub const QUEUES: [&str; 4] = ["render.light", "render.heavy", "tessellate", "convert"];

/// Consumer metadata key holding the delivery limit the runtime enforces. The server's
/// `max_deliver` is -1 (unlimited): a delivery past the limit is moved to the dead-letter stream
/// by whichever worker receives it, so no job depends on anyone hearing a max-deliveries advisory
/// (see `worker/dlq.rs`). `LIGHTBOX_MAX_DELIVER` overrides it.
pub const MAX_DELIVER_METADATA: &str = "lightbox.max_deliver";

/// The durable consumer name serving a queue subject (`render.light` → `render-light`).
pub fn consumer_name(queue: &str) -> String {
    queue.replace('.', "-")
}

/// Changes made to committed definitions at run time (replicas on a cluster, test timings).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub replicas: Option<usize>,
    pub ack_wait: Option<Duration>,
    pub max_deliver: Option<i64>,
    pub max_ack_pending: Option<i64>,
    /// Bind to existing definitions instead of creating or updating them.
    pub bind_only: bool,
}

fn stream_config(json: &str, overrides: &Overrides) -> anyhow::Result<stream::Config> {
    let mut config: stream::Config = serde_json::from_str(json).context("parsing stream config")?;
    if let Some(replicas) = overrides.replicas {
        config.num_replicas = replicas;
    }
    Ok(config)
}

/// The committed consumer definition for a queue, with overrides applied.
pub fn consumer_config(
    queue: &str,
    overrides: &Overrides,
) -> anyhow::Result<consumer::pull::Config> {
    let json = CONSUMERS
        .iter()
        .find(|(name, _)| *name == queue)
        .map(|(_, json)| *json)
        .with_context(|| format!("no consumer is defined for queue {queue:?}"))?;
    let mut config: consumer::pull::Config =
        serde_json::from_str(json).context("parsing consumer config")?;
    if let Some(ack_wait) = overrides.ack_wait {
        config.ack_wait = ack_wait;
    }
    if let Some(max_deliver) = overrides.max_deliver {
        config
            .metadata
            .insert(MAX_DELIVER_METADATA.to_owned(), max_deliver.to_string());
    }
    if let Some(max_ack_pending) = overrides.max_ack_pending {
        config.max_ack_pending = max_ack_pending;
    }
    Ok(config)
}

/// A KV bucket definition as the committed files (and `nats kv add --config`) write it.
#[derive(Deserialize)]
struct KvFile {
    bucket: String,
    description: String,
    history: i64,
    #[serde(with = "nanos")]
    max_age: Duration,
    max_value_size: i32,
    storage: stream::StorageType,
    num_replicas: usize,
}

mod nanos {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_nanos(u64::deserialize(d)?))
    }
}

fn kv_config_from(name: &str, json: &str, overrides: &Overrides) -> anyhow::Result<kv::Config> {
    let file: KvFile =
        serde_json::from_str(json).with_context(|| format!("parsing kv config {name}"))?;
    Ok(kv::Config {
        bucket: file.bucket,
        description: file.description,
        history: file.history,
        max_age: file.max_age,
        max_value_size: file.max_value_size,
        storage: file.storage,
        num_replicas: overrides.replicas.unwrap_or(file.num_replicas),
        ..Default::default()
    })
}

/// The committed definition of the `jobs` bucket.
pub fn kv_config(overrides: &Overrides) -> anyhow::Result<kv::Config> {
    kv_config_from("jobs.kv.json", JOBS_KV_JSON, overrides)
}

/// The committed definition of the locks bucket (`tessellate-locks.kv.json`).
pub fn locks_kv_config(overrides: &Overrides) -> anyhow::Result<kv::Config> {
    kv_config_from("tessellate-locks.kv.json", LOCKS_KV_JSON, overrides)
}

/// Creates or updates the locks bucket from its committed definition, or binds to it.
/// Only processes that take locks open it, so other functions need no rights on it.
pub async fn ensure_locks(
    js: &jetstream::Context,
    overrides: &Overrides,
) -> anyhow::Result<kv::Store> {
    if overrides.bind_only {
        return js
            .get_key_value(LOCKS_BUCKET)
            .await
            .with_context(|| format!("opening KV bucket {LOCKS_BUCKET}: {APPLY_HINT}"));
    }
    js.create_or_update_key_value(locks_kv_config(overrides)?)
        .await
        .with_context(|| format!("creating or updating KV bucket {LOCKS_BUCKET}"))
}

/// What operators run when a definition is missing.
pub const APPLY_HINT: &str =
    "create it with `lightbox infra apply` (as a user that may manage JetStream)";

/// One definition [`apply`] created or updated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// `stream`, `kv` or `consumer`.
    pub kind: &'static str,
    pub name: String,
}

/// Creates or updates every committed definition: the three streams, the `jobs` and locks
/// buckets, and the durable consumer of every queue. Idempotent; an operator's later change to a
/// definition is overwritten only here, never by reading commands or bind-only workers.
pub async fn apply(js: &jetstream::Context, overrides: &Overrides) -> anyhow::Result<Vec<Applied>> {
    let mut applied = Vec::new();
    for json in [JOBS_STREAM_JSON, EVENTS_STREAM_JSON, DLQ_STREAM_JSON] {
        let config = stream_config(json, overrides)?;
        let name = config.name.clone();
        js.create_or_update_stream(config)
            .await
            .with_context(|| format!("creating or updating stream {name}"))?;
        applied.push(Applied {
            kind: "stream",
            name,
        });
    }
    for config in [kv_config(overrides)?, locks_kv_config(overrides)?] {
        let name = config.bucket.clone();
        js.create_or_update_key_value(config)
            .await
            .with_context(|| format!("creating or updating KV bucket {name}"))?;
        applied.push(Applied { kind: "kv", name });
    }
    let jobs = js
        .get_stream(JOBS_STREAM)
        .await
        .context("opening stream JOBS")?;
    for queue in QUEUES {
        jobs.create_consumer(consumer_config(queue, overrides)?)
            .await
            .with_context(|| format!("creating or updating consumer for {queue}"))?;
        applied.push(Applied {
            kind: "consumer",
            name: consumer_name(queue),
        });
    }
    Ok(applied)
}

/// Looks up the streams and the `jobs` bucket without changing anything on the server.
pub async fn bind(js: &jetstream::Context) -> anyhow::Result<Infra> {
    let jobs = js
        .get_stream(JOBS_STREAM)
        .await
        .with_context(|| format!("opening stream {JOBS_STREAM}: {APPLY_HINT}"))?;
    let kv = js
        .get_key_value(JOBS_BUCKET)
        .await
        .with_context(|| format!("opening KV bucket {JOBS_BUCKET}: {APPLY_HINT}"))?;
    Ok(Infra {
        js: js.clone(),
        jobs,
        kv,
    })
}

/// Handles on the streams and bucket every Lightbox process uses.
#[derive(Clone)]
pub struct Infra {
    pub js: jetstream::Context,
    pub jobs: stream::Stream,
    pub kv: kv::Store,
}

/// Creates or updates the streams and the KV bucket from the committed definitions, or only
/// binds to them when `overrides.bind_only` (see [`bind`]).
pub async fn ensure(js: &jetstream::Context, overrides: &Overrides) -> anyhow::Result<Infra> {
    if overrides.bind_only {
        return bind(js).await;
    }
    for json in [JOBS_STREAM_JSON, EVENTS_STREAM_JSON, DLQ_STREAM_JSON] {
        let config = stream_config(json, overrides)?;
        let name = config.name.clone();
        js.create_or_update_stream(config)
            .await
            .with_context(|| format!("creating or updating stream {name}"))?;
    }
    let kv = js
        .create_or_update_key_value(kv_config(overrides)?)
        .await
        .context("creating or updating KV bucket jobs")?;
    let jobs = js
        .get_stream(JOBS_STREAM)
        .await
        .context("opening stream JOBS")?;
    Ok(Infra {
        js: js.clone(),
        jobs,
        kv,
    })
}

/// Runs one start-up step (create or bind the streams, bucket or consumer) until it succeeds, a
/// definitive answer comes back, or `budget` is spent.
///
/// A fresh cluster answers JetStream requests only once it has elected a meta leader, and a new
/// R3 stream only once its own group has a leader: until then requests time out or say the
/// cluster is unavailable. Instances that an autoscaler starts together also race to create the
/// same definitions. Both pass with time, so those failures are retried with doubling delays
/// (jittered, up to 5 s); a retry after a concurrent create finds the definition and updates or
/// binds it. A definitive answer (a definition that does not exist in bind-only mode, a
/// configuration the server refuses) fails at once. When the budget is spent the last error is
/// returned, naming the step and how long it was tried.
pub async fn retry_startup<T, F, Fut>(
    what: &str,
    budget: Duration,
    mut step: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1u32;
    loop {
        let err = match step().await {
            Ok(value) => return Ok(value),
            Err(err) if is_definitive(&err) => return Err(err),
            Err(err) => err,
        };
        let jittered = delay.mul_f64(0.5 + rand::random::<f64>());
        let elapsed = started.elapsed();
        if elapsed + jittered > budget {
            return Err(err.context(format!(
                "{what}: gave up after {attempt} attempts in {:.1} s (LIGHTBOX_STARTUP_TIMEOUT_SECS); \
                 is JetStream up, with a leader elected?",
                elapsed.as_secs_f64()
            )));
        }
        tracing::warn!(
            step = what,
            attempt,
            retry_in_ms = jittered.as_millis() as u64,
            error = %crate::error::error_chain(err.as_ref()),
            "start-up step failed; retrying (cluster electing leaders, or another instance creating it)"
        );
        tokio::time::sleep(jittered).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        attempt += 1;
    }
}

/// The JetStream answers that waiting cannot change: a missing stream or consumer (bind-only
/// mode: an operator must apply), and configurations the server refuses.
const DEFINITIVE: [jetstream::ErrorCode; 8] = [
    jetstream::ErrorCode::STREAM_NOT_FOUND,
    jetstream::ErrorCode::CONSUMER_NOT_FOUND,
    jetstream::ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED,
    jetstream::ErrorCode::STREAM_INVALID_CONFIG,
    jetstream::ErrorCode::STREAM_SUBJECT_OVERLAP,
    jetstream::ErrorCode::INVALID_JSON,
    jetstream::ErrorCode::BAD_REQUEST,
    jetstream::ErrorCode::JETSTREAM_NOT_ENABLED,
];

/// Whether a start-up failure is a definitive answer rather than a cluster still forming (see
/// [`retry_startup`]). It reads the async-nats error types in the chain, never message text.
pub fn is_definitive(err: &anyhow::Error) -> bool {
    use async_nats::jetstream::context::{
        ConsumerInfoError, ConsumerInfoErrorKind, CreateStreamError, CreateStreamErrorKind,
        GetStreamError, GetStreamErrorKind, KeyValueError, KeyValueErrorKind,
    };
    use async_nats::jetstream::stream::{ConsumerError, ConsumerErrorKind};
    err.chain().any(|cause| {
        let code = if let Some(err) = cause.downcast_ref::<GetStreamError>() {
            match err.kind() {
                GetStreamErrorKind::JetStream(js) => Some(js.error_code()),
                GetStreamErrorKind::EmptyName | GetStreamErrorKind::InvalidStreamName => {
                    return true
                }
                GetStreamErrorKind::Request => None,
            }
        } else if let Some(err) = cause.downcast_ref::<CreateStreamError>() {
            match err.kind() {
                CreateStreamErrorKind::JetStream(js) => Some(js.error_code()),
                CreateStreamErrorKind::EmptyStreamName
                | CreateStreamErrorKind::InvalidStreamName
                | CreateStreamErrorKind::DomainAndExternalSet => return true,
                _ => None,
            }
        } else if let Some(err) = cause.downcast_ref::<ConsumerError>() {
            match err.kind() {
                ConsumerErrorKind::JetStream(js) => Some(js.error_code()),
                ConsumerErrorKind::InvalidConsumerType | ConsumerErrorKind::InvalidName => {
                    return true
                }
                _ => None,
            }
        } else if let Some(err) = cause.downcast_ref::<ConsumerInfoError>() {
            match err.kind() {
                ConsumerInfoErrorKind::NotFound
                | ConsumerInfoErrorKind::StreamNotFound
                | ConsumerInfoErrorKind::InvalidName => return true,
                ConsumerInfoErrorKind::JetStream(js) => Some(js.error_code()),
                _ => None,
            }
        } else if let Some(err) = cause.downcast_ref::<KeyValueError>() {
            if err.kind() == KeyValueErrorKind::InvalidStoreName {
                return true;
            }
            None
        } else {
            None
        };
        code.is_some_and(|code| DEFINITIVE.contains(&code))
    })
}

/// Creates or updates the durable consumer for a queue from its committed definition.
pub async fn ensure_consumer(
    jobs: &stream::Stream,
    queue: &str,
    overrides: &Overrides,
) -> anyhow::Result<consumer::Consumer<consumer::pull::Config>> {
    let config = consumer_config(queue, overrides)?;
    if overrides.bind_only {
        let name = consumer_name(queue);
        // The info request first, so a missing consumer keeps its typed error (a definitive
        // answer for [`retry_startup`]).
        jobs.consumer_info(&name)
            .await
            .with_context(|| format!("opening consumer {name}: {APPLY_HINT}"))?;
        return jobs
            .get_consumer(&name)
            .await
            .map_err(|err| anyhow::anyhow!("opening consumer {name}: {err}: {APPLY_HINT}"));
    }
    jobs.create_consumer(config)
        .await
        .with_context(|| format!("creating or updating consumer for {queue}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_definitions_parse_and_agree() {
        let overrides = Overrides::default();
        let jobs = stream_config(JOBS_STREAM_JSON, &overrides).unwrap();
        assert_eq!(jobs.retention, stream::RetentionPolicy::WorkQueue);
        assert_eq!(jobs.discard, stream::DiscardPolicy::New);
        assert!(
            jobs.discard_new_per_subject,
            "a full queue must refuse new jobs, never drop queued ones"
        );
        assert!(jobs.max_messages > 0 && jobs.max_bytes > 0 && jobs.max_messages_per_subject > 0);
        for queue in QUEUES {
            assert!(
                jobs.subjects.iter().any(|s| s == queue),
                "JOBS must carry {queue}"
            );
            let consumer = consumer_config(queue, &overrides).unwrap();
            assert_eq!(consumer.filter_subject, queue);
            assert_eq!(
                consumer.durable_name.as_deref(),
                Some(consumer_name(queue).as_str())
            );
            assert_eq!(consumer.ack_policy, consumer::AckPolicy::Explicit);
            assert!(consumer.max_ack_pending > 0);
            assert_eq!(
                consumer.max_deliver, -1,
                "the runtime enforces the delivery limit, so the server delivers without one"
            );
            let limit: u64 = consumer.metadata[MAX_DELIVER_METADATA].parse().unwrap();
            assert!(limit > 1, "{queue}: {limit}");
        }
        assert_eq!(
            stream_config(EVENTS_STREAM_JSON, &overrides)
                .unwrap()
                .subjects,
            ["events.job.>"]
        );
        assert_eq!(
            stream_config(DLQ_STREAM_JSON, &overrides).unwrap().subjects,
            ["dlq.>"]
        );
        assert_eq!(kv_config(&overrides).unwrap().bucket, JOBS_BUCKET);
        let locks = locks_kv_config(&overrides).unwrap();
        assert_eq!(locks.bucket, LOCKS_BUCKET);
        assert_eq!(locks.history, 1, "a lock is one value");
        assert!(
            locks.max_age > Duration::ZERO,
            "a lock must expire, or a holder that died would keep it"
        );
    }

    fn api_error(code: usize, err_code: u64) -> async_nats::jetstream::Error {
        serde_json::from_value(serde_json::json!({
            "code": code, "err_code": err_code, "description": "from the server"
        }))
        .unwrap()
    }

    #[test]
    fn start_up_retries_elections_but_not_definitive_answers() {
        use async_nats::jetstream::context::{
            CreateStreamError, CreateStreamErrorKind, GetStreamError, GetStreamErrorKind,
            KeyValueError, KeyValueErrorKind,
        };
        // What a fresh cluster answers while it elects leaders: retried.
        let timed_out = anyhow::Error::new(CreateStreamError::new(CreateStreamErrorKind::TimedOut))
            .context("creating or updating stream JOBS");
        assert!(!is_definitive(&timed_out));
        let unavailable = anyhow::Error::new(CreateStreamError::new(
            CreateStreamErrorKind::JetStream(api_error(503, 10008)),
        ));
        assert!(!is_definitive(&unavailable));
        // Another instance created it with a different configuration in between: retried (the
        // next try finds it and updates it).
        let exists = anyhow::Error::new(CreateStreamError::new(CreateStreamErrorKind::JetStream(
            api_error(400, 10058),
        )));
        assert!(!is_definitive(&exists));
        // Bind-only and nothing was applied: at once, however deep in the chain.
        let missing = anyhow::Error::new(KeyValueError::with_source(
            KeyValueErrorKind::GetBucket,
            GetStreamError::new(GetStreamErrorKind::JetStream(api_error(404, 10059))),
        ))
        .context(format!("opening KV bucket jobs: {APPLY_HINT}"));
        assert!(is_definitive(&missing));
        // R3 asked of a single server: a configuration error, at once.
        let replicas = anyhow::Error::new(CreateStreamError::new(
            CreateStreamErrorKind::JetStream(api_error(500, 10074)),
        ));
        assert!(is_definitive(&replicas));
    }

    #[tokio::test]
    async fn retry_startup_gives_up_after_its_budget_naming_the_step() {
        use async_nats::jetstream::context::{CreateStreamError, CreateStreamErrorKind};
        let mut attempts = 0;
        let err = retry_startup("binding streams and KV", Duration::from_millis(700), || {
            attempts += 1;
            async {
                Err::<(), _>(anyhow::Error::new(CreateStreamError::new(
                    CreateStreamErrorKind::TimedOut,
                )))
            }
        })
        .await
        .unwrap_err();
        assert!(attempts >= 2, "retried: {attempts}");
        let message = format!("{err:#}");
        assert!(
            message.contains("binding streams and KV: gave up after")
                && message.contains("timed out"),
            "{message}"
        );
        let mut attempts = 0;
        let value = retry_startup("binding", Duration::from_secs(5), || {
            attempts += 1;
            let ready = attempts >= 3;
            async move {
                if ready {
                    Ok(7)
                } else {
                    Err(anyhow::Error::new(CreateStreamError::new(
                        CreateStreamErrorKind::TimedOut,
                    )))
                }
            }
        })
        .await
        .unwrap();
        assert_eq!((value, attempts), (7, 3));
    }

    #[test]
    fn overrides_apply() {
        let overrides = Overrides {
            replicas: Some(3),
            ack_wait: Some(Duration::from_secs(2)),
            max_deliver: Some(2),
            max_ack_pending: Some(7),
            bind_only: false,
        };
        let consumer = consumer_config("convert", &overrides).unwrap();
        assert_eq!(consumer.ack_wait, Duration::from_secs(2));
        assert_eq!((consumer.max_deliver, consumer.max_ack_pending), (-1, 7));
        assert_eq!(consumer.metadata[MAX_DELIVER_METADATA], "2");
        assert_eq!(
            stream_config(JOBS_STREAM_JSON, &overrides)
                .unwrap()
                .num_replicas,
            3
        );
        assert_eq!(kv_config(&overrides).unwrap().num_replicas, 3);
        assert_eq!(locks_kv_config(&overrides).unwrap().num_replicas, 3);
    }
}
