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

    /// The servers `url` names: one URL or a comma-separated list
    /// (`nats://nats-0:4222,nats://nats-1:4222,nats://nats-2:4222`), as `NATS_URL`, the CLI's
    /// `--server` and `nats` contexts write them. Spaces around entries are ignored; a scheme-less
    /// entry means `nats://`. The client connects to one of them and fails over to the others
    /// (and to any the cluster announces).
    pub fn server_addrs(&self) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
        let mut addrs = Vec::new();
        for entry in self.url.split(',').map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            let addr = entry.parse::<async_nats::ServerAddr>().map_err(|err| {
                anyhow::anyhow!(
                    "NATS server {:?} (from {:?}) is not a server URL: {err}",
                    without_userinfo(entry),
                    self.display_url()
                )
            })?;
            addrs.push(addr);
        }
        if addrs.is_empty() {
            anyhow::bail!("no NATS server given (NATS_URL or --server is empty)");
        }
        Ok(addrs)
    }

    /// The server list as it may be printed: any `user:password@` inside a URL left out.
    pub fn display_url(&self) -> String {
        self.url
            .split(',')
            .map(|entry| without_userinfo(entry.trim()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Connects with the configured credentials, retrying the first connection for a while.
    pub async fn connect(&self, name: &str) -> anyhow::Result<async_nats::Client> {
        let servers = self.server_addrs()?;
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
        let client = tokio::time::timeout(Duration::from_secs(30), options.connect(servers))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "could not connect to NATS at {} within 30 s",
                    self.display_url()
                )
            })??;
        Ok(client)
    }

    /// Connects once, without retrying, for commands a person waits on: an unreachable server
    /// fails within `timeout` with "cannot reach NATS at URL", refused credentials say so.
    pub async fn connect_once(
        &self,
        name: &str,
        timeout: Duration,
    ) -> anyhow::Result<async_nats::Client> {
        use async_nats::ConnectErrorKind;
        let servers = self.server_addrs()?;
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(timeout)
            .max_reconnects(Some(1));
        if let Some(path) = &self.creds_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|err| anyhow::anyhow!("reading NATS credentials {path}: {err}"))?;
        }
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(prefix) = &self.inbox_prefix {
            options = options.custom_inbox_prefix(prefix.clone());
        }
        let url = &self.display_url();
        match tokio::time::timeout(timeout, options.connect(servers)).await {
            Err(_) => anyhow::bail!(
                "cannot reach NATS at {url}: no answer within {} s",
                timeout.as_secs_f64()
            ),
            Ok(Ok(client)) => Ok(client),
            Ok(Err(err)) => match err.kind() {
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                    anyhow::bail!("NATS at {url} refused the credentials: {err}")
                }
                _ => anyhow::bail!("cannot reach NATS at {url}: {err}"),
            },
        }
    }

    /// Applies a `nats` CLI context over these settings: its server and, when it names an
    /// identity (user or creds file), that identity instead of any other.
    pub fn apply_context(&mut self, context: &NatsContext) {
        if let Some(url) = context.url.as_ref().filter(|u| !u.is_empty()) {
            self.url = url.clone();
        }
        let creds = context.creds.as_ref().filter(|c| !c.is_empty());
        let user = context.user.as_ref().filter(|u| !u.is_empty());
        if creds.is_some() || user.is_some() {
            self.creds_file = creds.cloned();
            self.user = user.cloned();
            self.password = context.password.clone().filter(|p| !p.is_empty());
        }
        if let Some(prefix) = context.inbox_prefix.as_ref().filter(|p| !p.is_empty()) {
            self.inbox_prefix = Some(prefix.clone());
        }
    }
}

/// A server URL without its `user:password@` part, for messages.
fn without_userinfo(entry: &str) -> String {
    match (entry.find("://"), entry.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}{}", &entry[..scheme_end + 3], &entry[at + 1..])
        }
        (None, Some(at)) => entry[at + 1..].to_owned(),
        _ => entry.to_owned(),
    }
}

/// How long a worker's start-up keeps retrying while the cluster elects leaders or another
/// instance creates the same definitions (`LIGHTBOX_STARTUP_TIMEOUT_SECS`, default 60 s); then it
/// exits with the last error, and its supervisor restarts it.
pub fn startup_timeout_from_env() -> Duration {
    Duration::from_secs_f64(env_parse("LIGHTBOX_STARTUP_TIMEOUT_SECS", 60.0f64).max(0.0))
}

/// A `nats` CLI context (`~/.config/nats/context/NAME.json`), the fields Lightbox uses.
/// `Debug` never prints the password.
#[derive(Clone, Default, serde::Deserialize)]
pub struct NatsContext {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub creds: Option<String>,
    #[serde(default)]
    pub inbox_prefix: Option<String>,
    /// Token and nkey authentication, which Lightbox does not take from a context: refused
    /// with a clear message rather than silently connecting as someone else.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub nkey: Option<String>,
}

impl fmt::Debug for NatsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsContext")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("creds", &self.creds)
            .field("inbox_prefix", &self.inbox_prefix)
            .finish()
    }
}

impl NatsContext {
    /// The folder the `nats` CLI keeps contexts in: `$XDG_CONFIG_HOME/nats`, else
    /// `~/.config/nats`.
    pub fn config_dir() -> Option<std::path::PathBuf> {
        if let Some(dir) = env_opt("XDG_CONFIG_HOME") {
            return Some(std::path::PathBuf::from(dir).join("nats"));
        }
        env_opt("HOME").map(|home| std::path::PathBuf::from(home).join(".config/nats"))
    }

    /// The context named `name`, or else the current one (`context.txt`), or none when no
    /// context is selected. A named context that does not exist is an error.
    pub fn selected(name: Option<&str>) -> anyhow::Result<Option<Self>> {
        let Some(dir) = Self::config_dir() else {
            if let Some(name) = name {
                anyhow::bail!(
                    "cannot find NATS context {name:?}: neither HOME nor XDG_CONFIG_HOME is set"
                );
            }
            return Ok(None);
        };
        let name = match name {
            Some(name) => name.to_owned(),
            None => match std::fs::read_to_string(dir.join("context.txt")) {
                Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
                _ => return Ok(None),
            },
        };
        if name.contains('/') || name.contains("..") {
            anyhow::bail!("NATS context name {name:?} is not a plain name");
        }
        let path = dir.join("context").join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).map_err(|err| {
            anyhow::anyhow!("reading NATS context {name:?} ({}): {err}", path.display())
        })?;
        let context: Self = serde_json::from_str(&text)
            .map_err(|err| anyhow::anyhow!("parsing NATS context {}: {err}", path.display()))?;
        if context.token.as_deref().is_some_and(|t| !t.is_empty())
            || context.nkey.as_deref().is_some_and(|n| !n.is_empty())
        {
            anyhow::bail!(
                "NATS context {name:?} uses token or nkey authentication, which lightbox does not support; use user/password or a creds file"
            );
        }
        Ok(Some(context))
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
    /// `LIGHTBOX_METRICS_ADDR`: where `/metrics` listens (`None`: the default `0.0.0.0:9464`;
    /// `off`: nowhere; `127.0.0.1:0`: a free port).
    pub metrics_addr: Option<String>,
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
            metrics_addr: env_opt("LIGHTBOX_METRICS_ADDR"),
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

    fn servers(url: &str) -> Vec<String> {
        NatsConfig {
            url: url.into(),
            ..NatsConfig::default()
        }
        .server_addrs()
        .unwrap()
        .iter()
        .map(|addr| format!("{}:{}", addr.host(), addr.port()))
        .collect()
    }

    #[test]
    fn a_comma_separated_server_list_is_every_server() {
        // infra/k8s/config.yaml's form: three URLs, comma separated.
        assert_eq!(
            servers("nats://nats-0.nats:4222,nats://nats-1.nats:4222,nats://nats-2.nats:4222"),
            ["nats-0.nats:4222", "nats-1.nats:4222", "nats-2.nats:4222"]
        );
        assert_eq!(
            servers(" nats://127.0.0.1:4301 , 127.0.0.1:4302,,tls://h:4303 "),
            ["127.0.0.1:4301", "127.0.0.1:4302", "h:4303"]
        );
        assert_eq!(servers("nats://127.0.0.1:4222"), ["127.0.0.1:4222"]);
        assert_eq!(servers("localhost"), ["localhost:4222"]);
    }

    #[test]
    fn a_bad_server_entry_is_named_without_its_password() {
        let config = NatsConfig {
            url: "nats://a:4222,http://bob:s3cret-pw@b:4222".into(),
            ..NatsConfig::default()
        };
        let err = config.server_addrs().unwrap_err().to_string();
        assert!(err.contains("http://b:4222"), "{err}");
        assert!(!err.contains("s3cret-pw"), "{err}");
        let empty = NatsConfig {
            url: " , ".into(),
            ..NatsConfig::default()
        };
        assert!(empty
            .server_addrs()
            .unwrap_err()
            .to_string()
            .contains("no NATS server"));
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
            metrics_addr: None,
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
