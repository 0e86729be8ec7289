//! Configuration from the environment. Every variable is documented in README's Configuration table.

use std::str::FromStr;
use std::time::Duration;

use crate::store::StoreConfig;

/// Reads a variable or returns the default.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Reads and parses a variable; an unparsable value falls back to the default with a warning.
pub fn env_parse<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) if !text.is_empty() => text.parse().unwrap_or_else(|_| {
            eprintln!("lightbox: ignoring {name}={text:?}: not a valid value");
            default
        }),
        _ => default,
    }
}

/// Reads a boolean (`1`, `true`, `yes`, `on` are true).
pub fn env_bool(name: &str, default: bool) -> bool {
    match std::env::var(name) {
        Ok(text) if !text.is_empty() => {
            matches!(
                text.to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        }
        _ => default,
    }
}

/// How to reach NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    pub url: String,
    /// A `.creds` file (JWT + nkey seed) for decentralised auth.
    pub creds_file: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Replicas for streams and the KV bucket: 1 on one machine, 3 on a cluster.
    pub replicas: usize,
    /// Only bind to existing streams, consumers and KV (operators create them from `infra/nats/`);
    /// for least-privilege users that may not manage JetStream.
    pub bind_only: bool,
    /// Inbox prefix for replies, so a server config can give each user its own reply space.
    pub inbox_prefix: Option<String>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            creds_file: None,
            user: None,
            password: None,
            replicas: 1,
            bind_only: false,
            inbox_prefix: None,
        }
    }
}

impl NatsConfig {
    pub fn from_env() -> Self {
        Self {
            url: env_or("NATS_URL", "nats://127.0.0.1:4222"),
            creds_file: std::env::var("NATS_CREDS").ok().filter(|v| !v.is_empty()),
            user: std::env::var("NATS_USER").ok().filter(|v| !v.is_empty()),
            password: std::env::var("NATS_PASSWORD")
                .ok()
                .filter(|v| !v.is_empty()),
            replicas: env_parse("LIGHTBOX_NATS_REPLICAS", 1),
            bind_only: env_bool("LIGHTBOX_BIND_ONLY", false),
            inbox_prefix: std::env::var("NATS_INBOX_PREFIX")
                .ok()
                .filter(|v| !v.is_empty()),
        }
    }

    /// The stream and consumer overrides this connection implies.
    pub fn overrides(&self) -> crate::infra::Overrides {
        crate::infra::Overrides {
            replicas: Some(self.replicas),
            bind_only: self.bind_only,
            ..Default::default()
        }
    }

    /// Connects with the configured credentials, retrying the first connection for a while.
    pub async fn connect(&self, name: &str) -> anyhow::Result<async_nats::Client> {
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5));
        if let Some(path) = &self.creds_file {
            options = options.credentials_file(path).await?;
        }
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(prefix) = &self.inbox_prefix {
            options = options.custom_inbox_prefix(prefix.clone());
        }
        let client = tokio::time::timeout(Duration::from_secs(30), options.connect(&self.url))
            .await
            .map_err(|_| {
                anyhow::anyhow!("could not connect to NATS at {} within 30 s", self.url)
            })??;
        Ok(client)
    }
}

/// Everything a worker process needs to run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub nats: NatsConfig,
    pub store: StoreConfig,
    /// The work-queue subject this instance serves (`convert`, `render.light`, ...).
    pub queue: String,
    /// Jobs this process runs at once; it never pulls more messages than free slots.
    pub concurrency: usize,
    /// Overrides the committed consumer's `ack_wait`.
    pub ack_wait: Option<Duration>,
    /// Overrides the committed consumer's `max_deliver`.
    pub max_deliver: Option<i64>,
    /// Overrides the committed consumer's `max_ack_pending`.
    pub max_ack_pending: Option<i64>,
    /// How long in-flight jobs may run on after SIGTERM before they are Nak'd.
    pub drain_grace: Duration,
    /// First retry delay; doubles each attempt, with jitter, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Name of this instance in events and dead letters.
    pub instance: String,
}

impl WorkerConfig {
    /// Defaults for a queue, then the environment.
    pub fn from_env(default_queue: &str, default_concurrency: usize) -> Self {
        let queue = env_or("LIGHTBOX_QUEUE", default_queue);
        let default_concurrency = match queue.as_str() {
            "render.light" => 2,
            "render.heavy" => 1,
            _ => default_concurrency,
        };
        Self {
            nats: NatsConfig::from_env(),
            store: StoreConfig::from_env(),
            concurrency: env_parse("LIGHTBOX_CONCURRENCY", default_concurrency).max(1),
            ack_wait: std::env::var("LIGHTBOX_ACK_WAIT_SECS")
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .map(Duration::from_secs_f64),
            max_deliver: std::env::var("LIGHTBOX_MAX_DELIVER")
                .ok()
                .and_then(|v| v.parse().ok()),
            max_ack_pending: std::env::var("LIGHTBOX_MAX_ACK_PENDING")
                .ok()
                .and_then(|v| v.parse().ok()),
            drain_grace: Duration::from_secs_f64(env_parse("LIGHTBOX_DRAIN_GRACE_SECS", 30.0)),
            backoff_base: Duration::from_millis(env_parse("LIGHTBOX_BACKOFF_BASE_MS", 1000)),
            backoff_max: Duration::from_millis(env_parse("LIGHTBOX_BACKOFF_MAX_MS", 60_000)),
            instance: env_or("LIGHTBOX_INSTANCE", &default_instance_name(&queue)),
            queue,
        }
    }
}

fn default_instance_name(queue: &str) -> String {
    // Host plus queue: stable across restarts, so `--check` (a separate process) finds the
    // running instance. Set LIGHTBOX_INSTANCE (a pod name) when one host runs several.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!("{host}-{}", queue.replace('.', "-"))
}
