//! The servers most integration tests need together: a nats-server, a SeaweedFS S3 server, a
//! store and a publisher client on them, and a folder for function logs. Each test module adds
//! its own function-specific helpers in an `impl Stack` block.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use lightbox_runtime::client::Client;
use lightbox_runtime::{ObjectKey, Store};
use lightbox_tests::{NatsServer, SeaweedS3, TempDir};
use object_store::path::Path;
use object_store::ObjectStore;

pub struct Stack {
    pub nats: NatsServer,
    pub s3: SeaweedS3,
    pub store: Store,
    pub client: Client,
    pub logs: TempDir,
}

pub async fn stack() -> Stack {
    let nats = NatsServer::start();
    let s3 = SeaweedS3::start();
    let store = Store::connect(s3.store_config()).unwrap();
    let client = Client::connect(&nats.nats_config()).await.unwrap();
    Stack {
        nats,
        s3,
        store,
        client,
        logs: TempDir::new("logs"),
    }
}

impl Stack {
    /// Writes an object, retrying while S3 is still starting up.
    pub async fn upload(&self, key: &str, bytes: impl AsRef<[u8]>) -> ObjectKey {
        let key = ObjectKey::new(key).unwrap();
        for attempt in 0..50 {
            match self
                .store
                .put(&key, Bytes::copy_from_slice(bytes.as_ref()))
                .await
            {
                Ok(()) => return key,
                Err(_) if attempt < 49 => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(err) => panic!("upload failed: {err}"),
            }
        }
        unreachable!()
    }

    /// The keys under a prefix, sorted.
    pub async fn list(&self, prefix: &str) -> Vec<String> {
        let prefix = Path::from(prefix);
        let items: Vec<_> = self.store.inner.list(Some(&prefix)).collect().await;
        let mut keys: Vec<String> = items
            .into_iter()
            .map(|m| m.unwrap().location.to_string())
            .collect();
        keys.sort();
        keys
    }
}
