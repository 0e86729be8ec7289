//! Configuration from the environment. Every variable is documented in README's Configuration table.

use std::fmt;
use std::time::Duration;

use crate::env::env_opt;
use crate::store::StoreConfig;

// Callers read their own settings through `lightbox_runtime::config::env_*`; the functions live
// in the leaf module `env`, which `store` uses too.
pub use crate::env::{env_bool, env_or, env_parse};

/// How to reach NATS. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
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

impl fmt::Debug for NatsConfig {
    // Secrets never reach logs, not even through debug output. The creds file is a path, not
    // its contents, and says which identity is used.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &self.url)
            .field("creds_file", &self.creds_file)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("replicas", &self.replicas)
            .field("bind_only", &self.bind_only)
            .field("inbox_prefix", &self.inbox_prefix)
            .finish()
    }
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
            creds_file: env_opt("NATS_CREDS"),
            user: env_opt("NATS_USER"),
            password: env_opt("NATS_PASSWORD"),
            replicas: env_parse("LIGHTBOX_NATS_REPLICAS", 1),
            bind_only: env_bool("LIGHTBOX_BIND_ONLY", false),
            inbox_prefix: env_opt("NATS_INBOX_PREFIX"),
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

/// Everything a worker process needs to run. Its `Debug` prints no secret: the NATS and store
/// settings inside redact their own.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{S3Settings, StoreBackend};

    fn nats_with_password() -> NatsConfig {
        NatsConfig {
            user: Some("render".into()),
            password: Some("hunter2-nats-password".into()),
            creds_file: Some("/run/secrets/render.creds".into()),
            ..NatsConfig::default()
        }
    }

    #[test]
    fn nats_config_never_prints_its_password() {
        let printed = format!("{:?}", nats_with_password());
        assert!(!printed.contains("hunter2-nats-password"), "{printed}");
        assert!(
            printed.contains("<redacted>") && printed.contains("render"),
            "{printed}"
        );
        let pretty = format!("{:#?}", nats_with_password());
        assert!(!pretty.contains("hunter2-nats-password"), "{pretty}");
    }

    #[test]
    fn worker_config_never_prints_nats_or_store_secrets() {
        let config = WorkerConfig {
            nats: nats_with_password(),
            store: StoreConfig {
                backend: StoreBackend::S3(S3Settings {
                    endpoint: Some("http://127.0.0.1:8333".into()),
                    bucket: "lightbox".into(),
                    region: "us-east-1".into(),
                    access_key_id: Some("AKIAWORKERKEYID".into()),
                    secret_access_key: Some("worker-s3-secret-key".into()),
                    path_style: true,
                    allow_http: true,
                }),
                ..StoreConfig::default()
            },
            queue: "render.light".into(),
            concurrency: 2,
            ack_wait: None,
            max_deliver: None,
            max_ack_pending: None,
            drain_grace: Duration::from_secs(30),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            instance: "host-render-light".into(),
        };
        for printed in [format!("{config:?}"), format!("{config:#?}")] {
            for secret in [
                "hunter2-nats-password",
                "AKIAWORKERKEYID",
                "worker-s3-secret-key",
            ] {
                assert!(!printed.contains(secret), "{secret} in {printed}");
            }
            assert!(printed.contains("render.light"), "{printed}");
        }
    }
}
