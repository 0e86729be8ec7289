//! The local filesystem backend, kept inside its root: [`ConfinedLocal`] wraps `object_store`'s
//! [`LocalFileSystem`] (which follows symlinks wherever they point) and refuses every path
//! whose existing part runs through a symlink that leads out of the root, for reads, writes,
//! heads, deletes, copies and listings (entries reached through such a link are left out of a
//! listing). Symlinks that stay inside the root keep working.
//!
//! The check runs before each operation, so a symlink swapped in between the check and the
//! operation is not caught: the root is the store's to manage, and this guards against links
//! left in it, not against a process racing the store on its own files.

use std::fmt;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use futures::future::Future;
use futures::stream::{BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a path was refused: a symlink in it leads outside the store's root.
#[derive(Debug, thiserror::Error)]
#[error("{} is a symlink out of the store root {} (to {target}); the local store does not follow it", link.display(), root.display())]
pub struct OutsideRoot {
    pub link: PathBuf,
    pub root: PathBuf,
    pub target: String,
}

/// A [`LocalFileSystem`] under `root` that refuses symlinks leading out of it.
#[derive(Debug, Clone)]
pub struct ConfinedLocal {
    inner: Arc<LocalFileSystem>,
    /// The root with its own symlinks resolved (a root that is itself a link is fine).
    root: PathBuf,
}

impl fmt::Display for ConfinedLocal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConfinedLocal({})", self.root.display())
    }
}

impl ConfinedLocal {
    /// The store under `root`, which must exist.
    pub fn new(root: &std::path::Path) -> Result<Self> {
        let root = std::fs::canonicalize(root).map_err(|source| object_store::Error::Generic {
            store: "ConfinedLocal",
            source: Box::new(source),
        })?;
        Ok(Self {
            inner: Arc::new(LocalFileSystem::new_with_prefix(&root)?),
            root,
        })
    }

    /// Refuses `location` when a symlink on its way from the root leads outside the root.
    /// Checks each component that exists, from the root down; what does not exist yet cannot
    /// be a link.
    fn check(&self, location: &Path) -> Result<()> {
        check_path(&self.inner, &self.root, location)
    }

    fn check_opt(&self, prefix: Option<&Path>) -> Result<()> {
        prefix.map_or(Ok(()), |prefix| self.check(prefix))
    }
}

fn check_path(inner: &LocalFileSystem, root: &std::path::Path, location: &Path) -> Result<()> {
    let full = inner.path_to_filesystem(location)?;
    let Ok(below) = full.strip_prefix(root) else {
        // LocalFileSystem builds every path under its root; anything else is not ours.
        return Err(refused(full, root, "a path outside the root".into()));
    };
    let mut path = root.to_path_buf();
    for component in below.components() {
        path.push(component);
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
            Err(err) => {
                return Err(object_store::Error::Generic {
                    store: "ConfinedLocal",
                    source: Box::new(err),
                })
            }
        };
        if !metadata.file_type().is_symlink() {
            continue;
        }
        match std::fs::canonicalize(&path) {
            Ok(real) if real.starts_with(root) => {}
            Ok(real) => return Err(refused(path, root, real.display().to_string())),
            // A dangling link: where it points cannot be checked, so it is not followed.
            Err(_) => {
                let target = std::fs::read_link(&path)
                    .map(|t| t.display().to_string())
                    .unwrap_or_else(|_| "an unreadable target".into());
                return Err(refused(path, root, target));
            }
        }
    }
    Ok(())
}

fn refused(link: PathBuf, root: &std::path::Path, target: String) -> object_store::Error {
    // Not supported, not a passing fault: the same request fails the same way every time.
    object_store::Error::NotSupported {
        source: Box::new(OutsideRoot {
            link,
            root: root.to_path_buf(),
            target,
        }),
    }
}

// The trait is declared with `async_trait`; these are its methods written out, so the runtime
// needs no proc-macro for one wrapper.
impl ObjectStore for ConfinedLocal {
    fn put_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> BoxFuture<'async_trait, Result<PutResult>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.check(location)?;
            self.inner.put_opts(location, payload, opts).await
        })
    }

    fn put_multipart_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        opts: PutMultipartOptions,
    ) -> BoxFuture<'async_trait, Result<Box<dyn MultipartUpload>>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.check(location)?;
            self.inner.put_multipart_opts(location, opts).await
        })
    }

    fn get_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        options: GetOptions,
    ) -> BoxFuture<'async_trait, Result<GetResult>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.check(location)?;
            self.inner.get_opts(location, options).await
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let (inner, root) = (self.inner.clone(), self.root.clone());
        let checked = locations
            .map(move |location| {
                let location = location?;
                check_path(&inner, &root, &location)?;
                Ok(location)
            })
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        if let Err(err) = self.check_opt(prefix) {
            return futures::stream::once(async move { Err(err) }).boxed();
        }
        let (inner, root) = (self.inner.clone(), self.root.clone());
        self.inner
            .list(prefix)
            .filter(move |entry| {
                let keep = match entry {
                    Ok(meta) => check_path(&inner, &root, &meta.location).is_ok(),
                    Err(_) => true,
                };
                futures::future::ready(keep)
            })
            .boxed()
    }

    fn list_with_delimiter<'life0, 'life1, 'async_trait>(
        &'life0 self,
        prefix: Option<&'life1 Path>,
    ) -> BoxFuture<'async_trait, Result<ListResult>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.check_opt(prefix)?;
            let mut listed = self.inner.list_with_delimiter(prefix).await?;
            listed
                .common_prefixes
                .retain(|prefix| self.check(prefix).is_ok());
            listed
                .objects
                .retain(|meta| self.check(&meta.location).is_ok());
            Ok(listed)
        })
    }

    fn copy_opts<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        from: &'life1 Path,
        to: &'life2 Path,
        options: CopyOptions,
    ) -> BoxFuture<'async_trait, Result<()>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.check(from)?;
            self.check(to)?;
            self.inner.copy_opts(from, to, options).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use object_store::ObjectStoreExt;

    fn temp(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "lightbox-confine-{label}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn is_refused(err: &object_store::Error) -> bool {
        matches!(err, object_store::Error::NotSupported { source } if source.is::<OutsideRoot>())
    }

    #[tokio::test]
    async fn symlinks_out_of_the_root_are_refused_and_links_inside_work() {
        let root = temp("root");
        let outside = temp("outside");
        std::fs::write(outside.join("secret.txt"), b"outside").unwrap();
        std::fs::create_dir_all(root.join("inputs")).unwrap();
        std::fs::create_dir_all(root.join("outputs/real")).unwrap();
        std::fs::write(root.join("inputs/real.txt"), b"inside").unwrap();
        // A file link and a directory link out of the root, and a link that stays inside.
        std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("inputs/leak.txt"))
            .unwrap();
        std::os::unix::fs::symlink(&outside, root.join("outputs/escape")).unwrap();
        std::os::unix::fs::symlink(root.join("inputs/real.txt"), root.join("inputs/alias.txt"))
            .unwrap();
        let store = ConfinedLocal::new(&root).unwrap();

        let read = store.get(&Path::from("inputs/leak.txt")).await.unwrap_err();
        assert!(is_refused(&read), "{read}");
        assert!(
            read.to_string().contains("symlink out of the store root"),
            "{read}"
        );
        let write = store
            .put(
                &Path::from("outputs/escape/new.txt"),
                Bytes::from("x").into(),
            )
            .await
            .unwrap_err();
        assert!(is_refused(&write), "{write}");
        assert!(!outside.join("new.txt").exists(), "nothing written outside");
        let overwrite = store
            .put(&Path::from("inputs/leak.txt"), Bytes::from("x").into())
            .await
            .unwrap_err();
        assert!(is_refused(&overwrite), "{overwrite}");
        assert_eq!(
            std::fs::read(outside.join("secret.txt")).unwrap(),
            b"outside"
        );
        let head = store
            .head(&Path::from("outputs/escape/secret.txt"))
            .await
            .unwrap_err();
        assert!(is_refused(&head), "{head}");
        let delete = store
            .delete(&Path::from("outputs/escape/secret.txt"))
            .await
            .unwrap_err();
        assert!(is_refused(&delete), "{delete}");
        assert!(
            outside.join("secret.txt").exists(),
            "nothing deleted outside"
        );
        let copy = store
            .copy(
                &Path::from("inputs/leak.txt"),
                &Path::from("outputs/copy.txt"),
            )
            .await
            .unwrap_err();
        assert!(is_refused(&copy), "{copy}");

        // Listings leave out what is reached through the links and refuse a linked prefix.
        let listed: Vec<String> = store
            .list(None)
            .map(|meta| meta.unwrap().location.to_string())
            .collect()
            .await;
        assert!(
            listed.contains(&"inputs/real.txt".to_string()),
            "{listed:?}"
        );
        assert!(
            listed.contains(&"inputs/alias.txt".to_string()),
            "{listed:?}"
        );
        assert!(
            !listed
                .iter()
                .any(|key| key.contains("leak") || key.contains("escape")),
            "{listed:?}"
        );
        let prefixed: Vec<_> = store
            .list(Some(&Path::from("outputs/escape")))
            .collect()
            .await;
        assert!(
            prefixed.iter().any(|r| r.as_ref().is_err_and(is_refused)),
            "{prefixed:?}"
        );
        let delimited = store
            .list_with_delimiter(Some(&Path::from("outputs")))
            .await
            .unwrap();
        assert!(
            delimited
                .common_prefixes
                .iter()
                .all(|p| !p.as_ref().contains("escape")),
            "{delimited:?}"
        );

        // Inside the root everything works, links included.
        assert_eq!(
            store
                .get(&Path::from("inputs/alias.txt"))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
            Bytes::from("inside")
        );
        store
            .put(
                &Path::from("outputs/real/new.txt"),
                Bytes::from("ok").into(),
            )
            .await
            .unwrap();
        store
            .delete(&Path::from("outputs/real/new.txt"))
            .await
            .unwrap();
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_dir_all(&outside);
    }
}
