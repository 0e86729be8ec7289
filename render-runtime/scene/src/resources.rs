//! Files a model refers to by URI (a `.gltf`'s `.bin` buffers and images), and where they are
//! read from: the model's own folder, an in-memory map (what a function fetched from the store
//! under the model's key prefix), or nowhere (a GLB or bytes-only import).
//!
//! A URI becomes a [`ResourcePath`] first: percent-decoded, relative, and unable to leave the
//! model's folder (no `..` segment, no absolute path, no URL scheme). Every read goes through
//! [`ResourceLimits`] (how many files, how many bytes in all), checked against a file's size
//! before it is read, so a model cannot pull more into memory than its budget allows.
//!
//! ```
//! use lightbox_scene::resources::{MemoryResources, ResourcePath, Resources};
//!
//! let mut files = MemoryResources::default();
//! files.insert("textures/wood grain.png", b"png bytes".to_vec());
//! let path = ResourcePath::from_uri("./textures/wood%20grain.png").unwrap();
//! assert_eq!(path.as_str(), "textures/wood grain.png");
//! assert_eq!(files.read(&path, 1024).unwrap(), b"png bytes");
//! assert!(ResourcePath::from_uri("../secret.bin").is_err());
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;

/// How many files and bytes the resources of one model may add up to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceLimits {
    /// Most distinct files read beside the model.
    pub max_files: usize,
    /// Most bytes over all of them (external files, data URIs and decompressed buffer views).
    pub max_total_bytes: u64,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            max_files: 1024,
            max_total_bytes: 4 << 30,
        }
    }
}

impl ResourceLimits {
    /// The limits an import under `limits` reads with: the defaults, with the byte total capped
    /// at the import's memory budget (the bytes read are held in memory during the import).
    pub fn for_import(limits: &crate::ImportLimits) -> ResourceLimits {
        let defaults = ResourceLimits::default();
        ResourceLimits {
            max_total_bytes: defaults.max_total_bytes.min(limits.memory_budget),
            ..defaults
        }
    }
}

/// Why a referenced file could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// The URI is not one this importer reads (it leaves the folder, or names a scheme).
    #[error("uri '{uri}' is refused: {reason}")]
    Refused { uri: String, reason: &'static str },
    /// The import was given bytes alone, with no folder or store prefix to read from.
    #[error(
        "refers to the external file '{path}', but the model was given without the files beside it \
         (embed it in the GLB, use a data URI, or import the model from its folder)"
    )]
    NoFiles { path: String },
    /// The file does not exist where the model's folder or key prefix says.
    #[error("file '{path}' not found beside the model (looked for {looked_for})")]
    NotFound { path: String, looked_for: String },
    /// The file exists but is over what is left of the byte limit.
    #[error(
        "file '{path}' is {size} bytes, over the {limit} bytes left of the model's resource limit"
    )]
    TooLarge { path: String, size: u64, limit: u64 },
    /// More distinct files than [`ResourceLimits::max_files`].
    #[error("model refers to {count} external files, over the limit of {limit}")]
    TooManyFiles { count: usize, limit: usize },
    /// The resources together are over [`ResourceLimits::max_total_bytes`].
    #[error("model's buffers and images need {needed} bytes, over the limit of {limit} bytes")]
    TotalTooLarge { needed: u64, limit: u64 },
    /// A `data:` URI that does not decode.
    #[error("invalid data uri: {reason}")]
    DataUri { reason: String },
    /// Reading the file failed.
    #[error("cannot read '{path}' ({looked_for})")]
    Io {
        path: String,
        looked_for: String,
        #[source]
        source: std::io::Error,
    },
}

/// A file named by a model: relative to the model's folder, `/`-separated, percent-decoded,
/// with no `.`, `..` or empty segments.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourcePath(String);

impl ResourcePath {
    /// Parses a (non-`data:`) URI from a model. Refuses URL schemes, absolute paths, `..`
    /// segments, backslashes and control characters, so the path cannot leave the folder.
    pub fn from_uri(uri: &str) -> Result<ResourcePath, ResourceError> {
        let refuse = |reason| ResourceError::Refused {
            uri: uri.to_owned(),
            reason,
        };
        // A query or fragment never names a different file.
        let without_suffix = uri.split(['?', '#']).next().unwrap_or_default();
        if let Some((scheme, _)) = without_suffix.split_once(':') {
            let is_scheme = !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
            if is_scheme {
                return Err(refuse(if scheme.len() == 1 {
                    "an absolute path (drive letter) is not read"
                } else {
                    "only relative file references and data URIs are read, not URLs"
                }));
            }
        }
        let decoded = percent_encoding::percent_decode_str(without_suffix)
            .decode_utf8()
            .map_err(|_| refuse("its percent-encoding is not UTF-8"))?;
        if decoded.is_empty() {
            return Err(refuse("it is empty"));
        }
        if decoded.starts_with('/') {
            return Err(refuse("an absolute path is not read"));
        }
        if decoded.contains('\\') {
            return Err(refuse("backslashes are not path separators in a URI"));
        }
        if decoded.chars().any(char::is_control) {
            return Err(refuse("it contains a control character"));
        }
        let mut segments = Vec::new();
        for segment in decoded.split('/') {
            match segment {
                "" | "." => continue,
                ".." => return Err(refuse("a `..` segment would leave the model's folder")),
                s => segments.push(s),
            }
        }
        if segments.is_empty() {
            return Err(refuse("it names no file"));
        }
        Ok(ResourcePath(segments.join("/")))
    }

    /// The path, `/`-separated and relative to the model's folder.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the files a model refers to are read from.
pub trait Resources {
    /// Reads a whole file, refusing (before reading it) one larger than `max_bytes`.
    fn read(&self, path: &ResourcePath, max_bytes: u64) -> Result<Vec<u8>, ResourceError>;
}

/// No files: the model must be self-contained (GLB with embedded buffers, or data URIs).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoResources;

impl Resources for NoResources {
    fn read(&self, path: &ResourcePath, _max_bytes: u64) -> Result<Vec<u8>, ResourceError> {
        Err(ResourceError::NoFiles {
            path: path.to_string(),
        })
    }
}

/// Files in memory by path, as a function fetched them from the store.
#[derive(Clone, Debug, Default)]
pub struct MemoryResources {
    files: HashMap<String, Vec<u8>>,
}

impl MemoryResources {
    /// Adds (or replaces) the file at `path` (relative, `/`-separated, as [`ResourcePath`]).
    pub fn insert(&mut self, path: impl Into<String>, bytes: Vec<u8>) {
        self.files.insert(path.into(), bytes);
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Bytes held over all files.
    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|f| f.len() as u64).sum()
    }
}

impl Resources for MemoryResources {
    fn read(&self, path: &ResourcePath, max_bytes: u64) -> Result<Vec<u8>, ResourceError> {
        let bytes = self
            .files
            .get(path.as_str())
            .ok_or_else(|| ResourceError::NotFound {
                path: path.to_string(),
                looked_for: format!("'{path}' among the fetched files"),
            })?;
        if bytes.len() as u64 > max_bytes {
            return Err(ResourceError::TooLarge {
                path: path.to_string(),
                size: bytes.len() as u64,
                limit: max_bytes,
            });
        }
        Ok(bytes.clone())
    }
}

/// Files in a folder on disk (the folder of a local `.gltf`). Symbolic links are followed only
/// while they stay inside the folder.
#[derive(Clone, Debug)]
pub struct DirResources {
    root: PathBuf,
}

impl DirResources {
    /// Files in `dir`.
    pub fn new(dir: impl AsRef<Path>) -> std::io::Result<DirResources> {
        Ok(DirResources {
            root: std::fs::canonicalize(dir.as_ref())?,
        })
    }

    /// Files beside the model file at `model` (its folder).
    pub fn beside(model: impl AsRef<Path>) -> std::io::Result<DirResources> {
        let model = model.as_ref();
        let dir = match model.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        DirResources::new(dir)
    }

    /// The folder files are read from (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Resources for DirResources {
    fn read(&self, path: &ResourcePath, max_bytes: u64) -> Result<Vec<u8>, ResourceError> {
        let joined = path
            .as_str()
            .split('/')
            .fold(self.root.clone(), |p, segment| p.join(segment));
        let looked_for = joined.display().to_string();
        let io = |source: std::io::Error| ResourceError::Io {
            path: path.to_string(),
            looked_for: looked_for.clone(),
            source,
        };
        let real = match std::fs::canonicalize(&joined) {
            Ok(real) => real,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(ResourceError::NotFound {
                    path: path.to_string(),
                    looked_for,
                })
            }
            Err(err) => return Err(io(err)),
        };
        if !real.starts_with(&self.root) {
            return Err(ResourceError::Refused {
                uri: path.to_string(),
                reason: "it is a symbolic link out of the model's folder",
            });
        }
        let file = std::fs::File::open(&real).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(ResourceError::Refused {
                uri: path.to_string(),
                reason: "it is not a regular file",
            });
        }
        if meta.len() > max_bytes {
            return Err(ResourceError::TooLarge {
                path: path.to_string(),
                size: meta.len(),
                limit: max_bytes,
            });
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        // `take` guards against a file that grows after its size was checked.
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > max_bytes {
            return Err(ResourceError::TooLarge {
                path: path.to_string(),
                size: bytes.len() as u64,
                limit: max_bytes,
            });
        }
        Ok(bytes)
    }
}

/// A `data:` URI's media type and decoded bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataUri {
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// True for a `data:` URI (case-insensitive scheme).
pub fn is_data_uri(uri: &str) -> bool {
    uri.len() >= 5 && uri[..5].eq_ignore_ascii_case("data:")
}

/// How many bytes a base64 data URI decodes to at most, from its length alone.
pub fn data_uri_decoded_len(uri: &str) -> u64 {
    let payload = uri.split_once(',').map_or(0, |(_, p)| p.len() as u64);
    payload.div_ceil(4) * 3
}

/// Decodes a base64 `data:` URI (the form glTF writers use).
pub fn decode_data_uri(uri: &str) -> Result<DataUri, ResourceError> {
    let invalid = |reason: &str| ResourceError::DataUri {
        reason: reason.to_owned(),
    };
    if !is_data_uri(uri) {
        return Err(invalid("it does not start with 'data:'"));
    }
    let (header, payload) = uri[5..]
        .split_once(',')
        .ok_or_else(|| invalid("it has no ',' before its data"))?;
    let mut parts = header.split(';');
    let media_type = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    if !parts.any(|p| p.trim().eq_ignore_ascii_case("base64")) {
        return Err(invalid("only base64 data URIs are read"));
    }
    // Some writers wrap or pad loosely; whitespace is never part of base64 data.
    let payload: String = payload.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload.as_bytes())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(payload.as_bytes()))
        .map_err(|e| invalid(&format!("its base64 does not decode: {e}")))?;
    Ok(DataUri { media_type, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_percent_decoded_and_kept_inside_the_folder() {
        let ok = |uri: &str| ResourcePath::from_uri(uri).unwrap().0;
        assert_eq!(ok("a.bin"), "a.bin");
        assert_eq!(ok("./tex/a%20b.png"), "tex/a b.png");
        assert_eq!(ok("tex//a.png"), "tex/a.png");
        assert_eq!(ok("a.bin?v=2#x"), "a.bin");
        assert_eq!(ok("caf%C3%A9.png"), "café.png");
        for bad in [
            "../secret.bin",
            "tex/../../secret.bin",
            "%2e%2e/secret.bin",
            "/etc/passwd",
            "%2Fetc%2Fpasswd",
            "C:/Windows/win.ini",
            "file:///etc/passwd",
            "https://example.com/a.bin",
            "tex\\a.png",
            "a%00.bin",
            "",
            "./",
            "%ff.bin",
        ] {
            assert!(
                matches!(
                    ResourcePath::from_uri(bad),
                    Err(ResourceError::Refused { .. })
                ),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn data_uris_decode_and_bad_ones_say_why() {
        let uri = "data:application/octet-stream;base64,AAECAw==";
        let decoded = decode_data_uri(uri).unwrap();
        assert_eq!(decoded.bytes, vec![0, 1, 2, 3]);
        assert_eq!(decoded.media_type, "application/octet-stream");
        assert!(data_uri_decoded_len(uri) >= 4);
        assert!(decode_data_uri("data:image/png;base64,AAECAw").is_ok());
        let err = decode_data_uri("data:text/plain,hello").unwrap_err();
        assert!(err.to_string().contains("only base64"), "{err}");
        let err = decode_data_uri("data:;base64,@@@").unwrap_err();
        assert!(err.to_string().contains("does not decode"), "{err}");
    }

    #[test]
    fn no_resources_names_the_file_it_was_asked_for() {
        let path = ResourcePath::from_uri("scene.bin").unwrap();
        let err = NoResources.read(&path, 10).unwrap_err();
        assert!(err.to_string().contains("'scene.bin'"), "{err}");
    }

    #[test]
    fn a_folder_refuses_links_out_missing_files_and_oversized_ones() {
        let base = std::env::temp_dir().join(format!("lightbox-resources-{}", std::process::id()));
        let dir = base.join("model");
        std::fs::create_dir_all(dir.join("tex")).unwrap();
        std::fs::write(base.join("secret.bin"), b"secret").unwrap();
        std::fs::write(dir.join("tex/a.png"), b"12345678").unwrap();
        let link = dir.join("link.bin");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(base.join("secret.bin"), &link).unwrap();
        let files = DirResources::new(&dir).unwrap();
        let path = |uri: &str| ResourcePath::from_uri(uri).unwrap();

        assert_eq!(files.read(&path("tex/a.png"), 8).unwrap(), b"12345678");
        assert!(matches!(
            files.read(&path("tex/a.png"), 7),
            Err(ResourceError::TooLarge {
                size: 8,
                limit: 7,
                ..
            })
        ));
        assert!(matches!(
            files.read(&path("link.bin"), 100),
            Err(ResourceError::Refused { .. })
        ));
        let err = files.read(&path("missing.bin"), 100).unwrap_err();
        assert!(matches!(err, ResourceError::NotFound { .. }));
        assert!(err.to_string().contains("'missing.bin'"), "{err}");
        assert!(matches!(
            files.read(&path("tex"), 100),
            Err(ResourceError::Refused { .. })
        ));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
