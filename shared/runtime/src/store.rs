//! Object store access: a local filesystem by default, any S3 service when configured,
//! and validated object keys so a job can never name a path outside its prefixes.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::config::{env_bool, env_or, env_parse};
use crate::error::JobError;

pub use lightbox_protocol::key::{KeyError, ObjectKey, MAX_KEY_BYTES};

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

/// Object store configuration, usually from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// Key prefixes jobs may read or write; a key outside them is a permanent error.
    pub allowed_prefixes: Vec<String>,
    /// Largest object a job may read, in bytes.
    pub max_object_bytes: u64,
}

/// Default prefixes a job may touch.
pub const DEFAULT_PREFIXES: &str = "inputs/,outputs/,cache/,models/";

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Local {
                root: PathBuf::from(".lightbox/store"),
            },
            allowed_prefixes: split_prefixes(DEFAULT_PREFIXES),
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
        let backend = match std::env::var("LIGHTBOX_S3_BUCKET")
            .ok()
            .filter(|b| !b.is_empty())
        {
            Some(bucket) => StoreBackend::S3(S3Settings {
                endpoint: std::env::var("LIGHTBOX_S3_ENDPOINT")
                    .ok()
                    .filter(|e| !e.is_empty()),
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
            max_object_bytes: env_parse("LIGHTBOX_MAX_OBJECT_BYTES", defaults.max_object_bytes),
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
                Arc::new(LocalFileSystem::new_with_prefix(root)?)
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

    /// Checks a key against the allowed prefixes.
    pub fn check(&self, key: &ObjectKey) -> Result<(), JobError> {
        let allowed = &self.config.allowed_prefixes;
        if allowed.is_empty()
            || allowed
                .iter()
                .any(|prefix| key.as_str().starts_with(prefix.as_str()))
        {
            Ok(())
        } else {
            Err(JobError::permanent(format!(
                "object key {:?} is outside the allowed prefixes ({})",
                key.as_str(),
                allowed.join(", ")
            )))
        }
    }

    fn path(key: &ObjectKey) -> Result<Path, JobError> {
        Path::parse(key.as_str())
            .map_err(|err| JobError::permanent(format!("invalid object key {key:?}: {err}")))
    }

    /// Reads a whole object, refusing objects over `max_bytes` (or the configured limit).
    /// A missing object is a permanent error; a store fault is retryable.
    pub async fn get(&self, key: &ObjectKey, max_bytes: Option<u64>) -> Result<Bytes, JobError> {
        self.check(key)?;
        let limit = max_bytes
            .unwrap_or(self.config.max_object_bytes)
            .min(self.config.max_object_bytes);
        let result = self
            .inner
            .get(&Self::path(key)?)
            .await
            .map_err(|err| classify(key, err))?;
        if result.meta.size > limit {
            return Err(JobError::permanent(format!(
                "input object {key} is {} bytes, over the limit of {limit} bytes",
                result.meta.size
            )));
        }
        result.bytes().await.map_err(|err| classify(key, err))
    }

    /// Whether an object exists.
    pub async fn exists(&self, key: &ObjectKey) -> Result<bool, JobError> {
        self.check(key)?;
        match self.inner.head(&Self::path(key)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(classify(key, err)),
        }
    }

    /// Writes a whole object in one request: readers see the old object or the new one, never a part.
    pub async fn put(&self, key: &ObjectKey, bytes: Bytes) -> Result<(), JobError> {
        self.check(key)?;
        self.inner
            .put(&Self::path(key)?, PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|err| classify(key, err))
    }

    /// Deletes an object; deleting a missing object is not an error.
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), JobError> {
        self.check(key)?;
        match self.inner.delete(&Self::path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(classify(key, err)),
        }
    }
}

fn classify(key: &ObjectKey, err: object_store::Error) -> JobError {
    match err {
        object_store::Error::NotFound { .. } => {
            JobError::permanent(format!("object not found: {key}"))
        }
        other => JobError::retryable(format!("object store error on {key}: {other}")),
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

        let big = ObjectKey::new("outputs/big.bin").unwrap();
        store
            .put(&big, Bytes::from_static(b"0123456789"))
            .await
            .unwrap();
        assert!(store
            .get(&big, None)
            .await
            .unwrap_err()
            .to_string()
            .contains("over the limit"));

        let missing = ObjectKey::new("inputs/none").unwrap();
        let err = store.get(&missing, None).await.unwrap_err();
        assert!(!err.is_retryable() && err.to_string().contains("not found"));

        let outside = ObjectKey::new("secrets/key").unwrap();
        assert!(store
            .put(&outside, Bytes::new())
            .await
            .unwrap_err()
            .to_string()
            .contains("allowed prefixes"));
        std::fs::remove_dir_all(dir).ok();
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
