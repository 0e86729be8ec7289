//! Object store access: a local filesystem by default, any S3 service when configured,
//! and validated object keys so a job can never name a path outside its prefixes.
//!
//! Reads and writes have separate prefix lists: a worker's store is
//! [`Store::for_function`], so each function reads and writes only where its work lies
//! ([`PrefixPolicy::for_function`]: render and convert write `outputs/` only, and only
//! tessellate writes the tessellation cache `cache/tessellate/`), whatever keys a job names.
//!
//! Every method returns a [`StoreError`] that says what went wrong (not found, too large,
//! outside the allowed prefixes, a backend fault that may pass); `From<StoreError> for JobError`
//! decides the retry class in one place, so a handler writes `ctx.store.get(..).await?`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::env::{env_bool, env_opt, env_or, env_parse};
use crate::error::JobError;
use crate::job::Function;

pub use lightbox_protocol::key::{KeyError, ObjectKey, MAX_KEY_BYTES};

mod confine;
pub use confine::{ConfinedLocal, OutsideRoot};

/// Where artifacts live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreBackend {
    /// A directory on the local filesystem (the default; no server needed).
    Local { root: PathBuf },
    /// An S3-compatible service.
    S3(S3Settings),
}

/// Settings for an S3-compatible service.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), which SeaweedFS and MinIO expect.
    pub path_style: bool,
    /// Allow plain http endpoints (local servers).
    pub allow_http: bool,
}

impl fmt::Debug for S3Settings {
    // Never print secrets, not even in debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field(
                "access_key_id",
                &self.access_key_id.as_ref().map(|_| "<set>"),
            )
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("path_style", &self.path_style)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// Object store configuration, usually from the environment. `Debug` prints no secret (the S3
/// settings redact their keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// Key prefixes any read or write must fall under (`LIGHTBOX_ALLOWED_PREFIXES`): the
    /// deployment's outer bound; a key outside them is a permanent error.
    pub allowed_prefixes: Vec<String>,
    /// Prefixes a job may read (`LIGHTBOX_READ_PREFIXES`), within `allowed_prefixes`. `None`:
    /// the defaults of the job's function ([`PrefixPolicy::for_function`]) once the store is
    /// [`Store::for_function`], and `allowed_prefixes` alone before that (CLI, tests).
    pub read_prefixes: Option<Vec<String>>,
    /// Prefixes a job may write or delete (`LIGHTBOX_WRITE_PREFIXES`), within
    /// `allowed_prefixes`; `None` as for `read_prefixes`.
    pub write_prefixes: Option<Vec<String>>,
    /// Largest object a job may read, in bytes.
    pub max_object_bytes: u64,
}

/// Default prefixes a job may touch.
pub const DEFAULT_PREFIXES: &str = "inputs/,outputs/,cache/,models/";

/// The runtime's own prefix: its record of each job (`results/<function>/<job id>.json`: the
/// full outcome, written before the outcome is reported, and drain hand-backs). No job may read
/// or write under it, whatever the prefix lists say; only the runtime does
/// ([`Store::put_runtime`], [`Store::get_runtime`]). Object store credentials of a function
/// need read and write on `results/<function>/`.
pub const RUNTIME_PREFIX: &str = "results/";

/// Where a function's jobs may read and write by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixPolicy {
    pub read: Vec<String>,
    pub write: Vec<String>,
}

impl PrefixPolicy {
    /// The defaults: convert and render read inputs, models, earlier outputs and the cache and
    /// write `outputs/` only (a render that names `cache/tessellate/...` as its output fails,
    /// so no job can plant a model other renders will trust); tessellate reads inputs and
    /// models, reads and writes its cache `cache/tessellate/`, and writes the copies a request
    /// asks for under `outputs/`.
    pub fn for_function(function: Function) -> Self {
        let list = |prefixes: &[&str]| prefixes.iter().map(|p| (*p).to_owned()).collect();
        match function {
            Function::Convert | Function::Render => Self {
                read: list(&["inputs/", "outputs/", "cache/", "models/"]),
                write: list(&["outputs/"]),
            },
            Function::Tessellate => Self {
                read: list(&["inputs/", "cache/tessellate/", "models/"]),
                write: list(&["cache/tessellate/", "outputs/"]),
            },
        }
    }
}

/// Whether an access reads or writes (deletes are writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
        })
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Local {
                root: PathBuf::from(".lightbox/store"),
            },
            allowed_prefixes: split_prefixes(DEFAULT_PREFIXES),
            read_prefixes: None,
            write_prefixes: None,
            max_object_bytes: 512 * 1024 * 1024,
        }
    }
}

fn split_prefixes(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

impl StoreConfig {
    /// Reads `LIGHTBOX_S3_BUCKET` (S3 when set) or `LIGHTBOX_STORE_DIR` (local), plus the
    /// variables documented in README.
    pub fn from_env() -> Self {
        let defaults = Self::default();
        let backend = match env_opt("LIGHTBOX_S3_BUCKET") {
            Some(bucket) => StoreBackend::S3(S3Settings {
                endpoint: env_opt("LIGHTBOX_S3_ENDPOINT"),
                bucket,
                region: env_or("LIGHTBOX_S3_REGION", "us-east-1"),
                access_key_id: std::env::var("AWS_ACCESS_KEY_ID").ok(),
                secret_access_key: std::env::var("AWS_SECRET_ACCESS_KEY").ok(),
                path_style: env_bool("LIGHTBOX_S3_PATH_STYLE", true),
                allow_http: env_bool("LIGHTBOX_S3_ALLOW_HTTP", false),
            }),
            None => StoreBackend::Local {
                root: PathBuf::from(env_or("LIGHTBOX_STORE_DIR", ".lightbox/store")),
            },
        };
        Self {
            backend,
            allowed_prefixes: split_prefixes(&env_or(
                "LIGHTBOX_ALLOWED_PREFIXES",
                DEFAULT_PREFIXES,
            )),
            read_prefixes: env_opt("LIGHTBOX_READ_PREFIXES").map(|text| split_prefixes(&text)),
            write_prefixes: env_opt("LIGHTBOX_WRITE_PREFIXES").map(|text| split_prefixes(&text)),
            max_object_bytes: env_parse("LIGHTBOX_MAX_OBJECT_BYTES", defaults.max_object_bytes),
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("object not found: {key}")]
    NotFound { key: ObjectKey },
    /// The object is larger than the caller or the configuration allows; nothing was read.
    #[error("input object {key} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        key: ObjectKey,
        size: u64,
        limit: u64,
    },
    /// The key is outside the prefixes this store may read or write (`LIGHTBOX_ALLOWED_PREFIXES`,
    /// and the function's read or write prefixes).
    #[error("object key {:?} is outside the prefixes this job may {access} ({})", key.as_str(), allowed.join(", "))]
    OutsidePrefixes {
        key: ObjectKey,
        access: Access,
        allowed: Vec<String>,
    },
    /// The key is a valid [`ObjectKey`] that the store's path rules still refuse.
    #[error("invalid object key {key:?}: {source}")]
    InvalidKey {
        key: ObjectKey,
        #[source]
        source: object_store::path::Error,
    },
    /// The store failed; `retryable` says whether trying again later could help.
    #[error("object store error on {key}: {source}")]
    Backend {
        key: ObjectKey,
        retryable: bool,
        #[source]
        source: object_store::Error,
    },
}

impl StoreError {
    fn backend(key: &ObjectKey, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => Self::NotFound { key: key.clone() },
            source => Self::Backend {
                key: key.clone(),
                // Requests this client cannot make or paths it cannot name fail the same way
                // every time; anything else (network, throttling, a server fault, credentials
                // being rotated) may pass.
                retryable: !matches!(
                    source,
                    object_store::Error::NotSupported { .. }
                        | object_store::Error::NotImplemented { .. }
                        | object_store::Error::InvalidPath { .. }
                        | object_store::Error::UnknownConfigurationKey { .. }
                ),
                source,
            },
        }
    }

    /// Whether trying again later could succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Backend {
                retryable: true,
                ..
            }
        )
    }
}

impl From<StoreError> for JobError {
    /// The one place a store failure gets its retry class: only a passing backend fault is
    /// retried; a missing, oversized or forbidden object fails the job at once.
    fn from(err: StoreError) -> Self {
        if err.is_retryable() {
            JobError::retryable(err.to_string())
        } else {
            JobError::permanent(err.to_string())
        }
    }
}

/// The object store a function reads and writes through: the `object_store` client plus
/// the key policy. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub inner: Arc<dyn ObjectStore>,
    pub config: Arc<StoreConfig>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .finish()
    }
}

impl Store {
    /// Builds the client once; handlers share it.
    pub fn connect(config: StoreConfig) -> anyhow::Result<Self> {
        let inner: Arc<dyn ObjectStore> = match &config.backend {
            StoreBackend::Local { root } => {
                std::fs::create_dir_all(root)?;
                // Symlinks that lead out of the root are refused (see `store/confine.rs`).
                Arc::new(confine::ConfinedLocal::new(root)?)
            }
            StoreBackend::S3(s3) => {
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_allow_http(s3.allow_http)
                    .with_virtual_hosted_style_request(!s3.path_style);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(key) = &s3.access_key_id {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = &s3.secret_access_key {
                    builder = builder.with_secret_access_key(secret);
                }
                Arc::new(builder.build()?)
            }
        };
        Ok(Self {
            inner,
            config: Arc::new(config),
        })
    }

    /// The same store limited to `function`'s prefixes: read and write lists left unset in
    /// the configuration take the function's defaults ([`PrefixPolicy::for_function`]); set
    /// ones (`LIGHTBOX_READ_PREFIXES`, `LIGHTBOX_WRITE_PREFIXES`) stay as the operator wrote
    /// them. Every access still has to fall under `allowed_prefixes` too.
    pub fn for_function(&self, function: Function) -> Store {
        let defaults = PrefixPolicy::for_function(function);
        let mut config = (*self.config).clone();
        config.read_prefixes.get_or_insert(defaults.read);
        config.write_prefixes.get_or_insert(defaults.write);
        Store {
            inner: self.inner.clone(),
            config: Arc::new(config),
        }
    }

    /// Checks a key a job is about to write (or delete) against the prefixes it may write:
    /// handlers call it on their output keys before doing any work.
    pub fn check(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.check_access(key, Access::Write)
    }

    /// Checks a key a job is about to read against the prefixes it may read.
    pub fn check_read(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.check_access(key, Access::Read)
    }

    fn check_access(&self, key: &ObjectKey, access: Access) -> Result<(), StoreError> {
        let config = &self.config;
        // The runtime's records are never a job's to read or write.
        if key.as_str().starts_with(RUNTIME_PREFIX) {
            return Err(StoreError::OutsidePrefixes {
                key: key.clone(),
                access,
                allowed: Vec::new(),
            });
        }
        let own = match access {
            Access::Read => config.read_prefixes.as_ref(),
            Access::Write => config.write_prefixes.as_ref(),
        };
        let under = |prefixes: &[String]| {
            prefixes.is_empty()
                || prefixes
                    .iter()
                    .any(|prefix| key.as_str().starts_with(prefix.as_str()))
        };
        // An empty own list allows nothing (a function that must not write); an empty
        // deployment-wide list sets no outer bound.
        let own_allows = own.is_none_or(|own| !own.is_empty() && under(own));
        if under(&config.allowed_prefixes) && own_allows {
            return Ok(());
        }
        let allowed = match own {
            Some(own) if config.allowed_prefixes.is_empty() => own.clone(),
            Some(own) => own
                .iter()
                .filter(|p| {
                    config
                        .allowed_prefixes
                        .iter()
                        .any(|a| p.starts_with(a.as_str()) || a.starts_with(p.as_str()))
                })
                .cloned()
                .collect(),
            None => config.allowed_prefixes.clone(),
        };
        Err(StoreError::OutsidePrefixes {
            key: key.clone(),
            access,
            allowed,
        })
    }

    fn path(key: &ObjectKey) -> Result<Path, StoreError> {
        Path::parse(key.as_str()).map_err(|source| StoreError::InvalidKey {
            key: key.clone(),
            source,
        })
    }

    /// Reads a whole object, refusing objects over `max_bytes` (or the configured limit) from
    /// their size before reading them.
    pub async fn get(&self, key: &ObjectKey, max_bytes: Option<u64>) -> Result<Bytes, StoreError> {
        self.check_read(key)?;
        let limit = max_bytes
            .unwrap_or(self.config.max_object_bytes)
            .min(self.config.max_object_bytes);
        let result = self
            .inner
            .get(&Self::path(key)?)
            .await
            .map_err(|err| StoreError::backend(key, err))?;
        if result.meta.size > limit {
            return Err(StoreError::TooLarge {
                key: key.clone(),
                size: result.meta.size,
                limit,
            });
        }
        result
            .bytes()
            .await
            .map_err(|err| StoreError::backend(key, err))
    }

    /// Whether an object exists.
    pub async fn exists(&self, key: &ObjectKey) -> Result<bool, StoreError> {
        self.check_read(key)?;
        match self.inner.head(&Self::path(key)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(StoreError::backend(key, err)),
        }
    }

    /// Writes a whole object in one request: readers see the old object or the new one, never a part.
    pub async fn put(&self, key: &ObjectKey, bytes: Bytes) -> Result<(), StoreError> {
        self.check(key)?;
        self.inner
            .put(&Self::path(key)?, PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|err| StoreError::backend(key, err))
    }

    /// The runtime writes its record of a job under [`RUNTIME_PREFIX`], which no prefix list
    /// grants and no job may write.
    pub(crate) async fn put_runtime(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
    ) -> Result<(), StoreError> {
        debug_assert!(key.as_str().starts_with(RUNTIME_PREFIX));
        self.inner
            .put(&Self::path(key)?, PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|err| StoreError::backend(key, err))
    }

    /// Reads a runtime record under [`RUNTIME_PREFIX`]; `None` when there is none.
    pub(crate) async fn get_runtime(&self, key: &ObjectKey) -> Result<Option<Bytes>, StoreError> {
        debug_assert!(key.as_str().starts_with(RUNTIME_PREFIX));
        let result = match self.inner.get(&Self::path(key)?).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(StoreError::backend(key, err)),
        };
        result
            .bytes()
            .await
            .map(Some)
            .map_err(|err| StoreError::backend(key, err))
    }

    /// Deletes an object; deleting a missing object is not an error.
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.check(key)?;
        match self.inner.delete(&Self::path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(StoreError::backend(key, err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_round_trips_and_enforces_prefixes() {
        let dir = std::env::temp_dir().join(format!("lightbox-store-test-{}", std::process::id()));
        let store = Store::connect(StoreConfig {
            backend: StoreBackend::Local { root: dir.clone() },
            max_object_bytes: 8,
            ..StoreConfig::default()
        })
        .unwrap();
        let key = ObjectKey::new("outputs/a.bin").unwrap();
        store.put(&key, Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(
            store.get(&key, None).await.unwrap(),
            Bytes::from_static(b"hello")
        );
        assert!(store.exists(&key).await.unwrap());
        assert!(matches!(
            store.get(&key, Some(4)).await.unwrap_err(),
            StoreError::TooLarge {
                size: 5,
                limit: 4,
                ..
            }
        ));

        let big = ObjectKey::new("outputs/big.bin").unwrap();
        store
            .put(&big, Bytes::from_static(b"0123456789"))
            .await
            .unwrap();
        let err = store.get(&big, None).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::TooLarge {
                    size: 10,
                    limit: 8,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "input object outputs/big.bin is 10 bytes, over the limit of 8 bytes"
        );
        assert!(!JobError::from(err).is_retryable());

        let missing = ObjectKey::new("inputs/none").unwrap();
        let err = store.get(&missing, None).await.unwrap_err();
        assert!(matches!(&err, StoreError::NotFound { key } if *key == missing));
        assert_eq!(err.to_string(), "object not found: inputs/none");
        assert!(!store.exists(&missing).await.unwrap());
        store.delete(&missing).await.unwrap();

        let outside = ObjectKey::new("secrets/key").unwrap();
        let err = store.put(&outside, Bytes::new()).await.unwrap_err();
        assert!(matches!(err, StoreError::OutsidePrefixes { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "object key \"secrets/key\" is outside the prefixes this job may write (inputs/, outputs/, cache/, models/)"
        );
        let job_error = JobError::from(err);
        assert!(!job_error.is_retryable());
        assert!(job_error
            .to_string()
            .contains("prefixes this job may write"));
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn each_function_writes_only_under_its_own_prefixes() {
        let dir =
            std::env::temp_dir().join(format!("lightbox-store-policy-{}", std::process::id()));
        let store = Store::connect(StoreConfig {
            backend: StoreBackend::Local { root: dir.clone() },
            ..StoreConfig::default()
        })
        .unwrap();
        let key = |k: &str| ObjectKey::new(k).unwrap();
        let cache = key("cache/tessellate/0123abcd.glb");
        let render = store.for_function(Function::Render);
        let err = render
            .put(&cache, Bytes::from_static(b"png"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::OutsidePrefixes {
                    access: Access::Write,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "object key \"cache/tessellate/0123abcd.glb\" is outside the prefixes this job may write (outputs/)"
        );
        assert!(!JobError::from(err).is_retryable());
        assert!(render.check(&cache).is_err() && render.delete(&cache).await.is_err());
        assert!(!store.exists(&cache).await.unwrap(), "nothing was written");
        for function in [Function::Render, Function::Convert] {
            let scoped = store.for_function(function);
            for refused in ["cache/x", "models/a.glb", "inputs/a.png"] {
                assert!(
                    scoped.check(&key(refused)).is_err(),
                    "{function} writes {refused}"
                );
            }
            scoped
                .put(&key("outputs/a.png"), Bytes::new())
                .await
                .unwrap();
            // Reads: inputs, models, outputs and the tessellation cache.
            assert!(scoped.check_read(&cache).is_ok());
        }

        let tessellate = store.for_function(Function::Tessellate);
        tessellate
            .put(&cache, Bytes::from_static(b"glb"))
            .await
            .unwrap();
        assert_eq!(
            render.get(&cache, None).await.unwrap(),
            Bytes::from_static(b"glb")
        );
        assert!(tessellate.check(&key("cache/render/x")).is_err());
        assert!(tessellate.check(&key("models/a.glb")).is_err());
        assert!(tessellate.check(&key("outputs/copy.glb")).is_ok());
        assert!(tessellate.check_read(&key("outputs/other.png")).is_err());

        // Operators may override a list; the deployment-wide bound still applies.
        let overridden = Store::connect(StoreConfig {
            backend: StoreBackend::Local { root: dir.clone() },
            allowed_prefixes: vec!["outputs/".into(), "cache/".into()],
            write_prefixes: Some(vec!["outputs/render/".into(), "models/".into()]),
            ..StoreConfig::default()
        })
        .unwrap()
        .for_function(Function::Render);
        assert!(overridden.check(&key("outputs/render/a.png")).is_ok());
        assert!(overridden.check(&key("outputs/a.png")).is_err());
        assert!(
            overridden.check(&key("models/a.glb")).is_err(),
            "outside allowed_prefixes"
        );
        assert!(overridden.check_read(&key("inputs/a.png")).is_err());
        let none = Store::connect(StoreConfig {
            backend: StoreBackend::Local { root: dir.clone() },
            write_prefixes: Some(Vec::new()),
            ..StoreConfig::default()
        })
        .unwrap()
        .for_function(Function::Convert);
        assert!(
            none.check(&key("outputs/a.png")).is_err(),
            "an empty list allows no writes"
        );

        // The runtime's records: no job reads or writes them, whatever the lists say.
        let record = key("results/render/0190c0de.json");
        let everything = Store::connect(StoreConfig {
            backend: StoreBackend::Local { root: dir.clone() },
            allowed_prefixes: Vec::new(),
            read_prefixes: Some(vec!["results/".into()]),
            write_prefixes: Some(vec!["results/".into()]),
            ..StoreConfig::default()
        })
        .unwrap();
        for scoped in [
            everything.clone(),
            everything.for_function(Function::Render),
            store.for_function(Function::Tessellate),
        ] {
            assert!(scoped.put(&record, Bytes::new()).await.is_err());
            assert!(scoped.get(&record, None).await.is_err());
            assert!(scoped.delete(&record).await.is_err());
        }
        assert_eq!(store.get_runtime(&record).await.unwrap(), None);
        store
            .put_runtime(&record, Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!(
            store.get_runtime(&record).await.unwrap(),
            Some(Bytes::from_static(b"{}"))
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn backend_faults_are_retried_and_requests_the_store_cannot_serve_are_not() {
        let key = ObjectKey::new("inputs/a.png").unwrap();
        let passing = StoreError::backend(
            &key,
            object_store::Error::Generic {
                store: "S3",
                source: "connection refused".into(),
            },
        );
        assert!(passing.is_retryable(), "{passing}");
        assert!(JobError::from(passing).is_retryable());

        let unsupported = StoreError::backend(
            &key,
            object_store::Error::NotSupported {
                source: "copy".into(),
            },
        );
        assert!(!unsupported.is_retryable(), "{unsupported}");
        assert!(!JobError::from(unsupported).is_retryable());

        let missing = StoreError::backend(
            &key,
            object_store::Error::NotFound {
                path: "inputs/a.png".into(),
                source: "no such key".into(),
            },
        );
        assert!(matches!(missing, StoreError::NotFound { .. }), "{missing}");
    }

    #[test]
    fn store_config_and_store_never_print_s3_secrets() {
        let config = StoreConfig {
            backend: StoreBackend::S3(S3Settings {
                endpoint: Some("http://127.0.0.1:8333".into()),
                bucket: "lightbox".into(),
                region: "us-east-1".into(),
                access_key_id: Some("AKIASTORECONFIGID".into()),
                secret_access_key: Some("store-config-secret".into()),
                path_style: true,
                allow_http: true,
            }),
            ..StoreConfig::default()
        };
        let store = Store::connect(config.clone()).unwrap();
        for printed in [
            format!("{config:?}"),
            format!("{config:#?}"),
            format!("{store:?}"),
        ] {
            assert!(
                !printed.contains("AKIASTORECONFIGID") && !printed.contains("store-config-secret"),
                "{printed}"
            );
            assert!(printed.contains("lightbox"), "{printed}");
        }
    }

    #[test]
    fn s3_settings_never_print_secrets() {
        let settings = S3Settings {
            endpoint: None,
            bucket: "b".into(),
            region: "r".into(),
            access_key_id: Some("AKIDSECRET".into()),
            secret_access_key: Some("supersecret".into()),
            path_style: true,
            allow_http: true,
        };
        let printed = format!("{settings:?}");
        assert!(!printed.contains("supersecret") && !printed.contains("AKIDSECRET"));
    }
}
