//! The files of a multi-file USD stage: the layers its root layer names through sublayers,
//! references and payloads (in every variant, since a variant selection is only known once the
//! stage is composed), the layers those name in turn, and the textures any of them names.
//!
//! [`UsdFileCollector`] finds them without composing anything: it reads each layer's specs and
//! asks for the files they name, one at a time, so the caller decides where a file comes from.
//! A synchronous caller drives it with a [`Resources`] reader ([`collect_usd_files`]: the local
//! folder for the CLI and the convert function); the render function drives it with reads from
//! the object store under the model's key prefix (async, which this crate knows nothing of).
//! Every file is read through the same [`ResourcePath`] rules as glTF's: relative, and never
//! out of the model's folder. [`UsdFileLimits`] bounds the file count, the bytes in all and how
//! deep layers may name layers.
//!
//! The collected files travel as one in-memory `.usdz` package with the root layer first
//! ([`UsdFiles::into_model_bytes`]), so everything downstream (the isolated reader, the engines,
//! the caches) keeps taking one byte buffer, and the importer resolves the stage's relative
//! asset paths inside the package exactly as they would resolve beside the files. A file that
//! is missing is simply not in the package: composition then fails naming it, and a missing
//! texture falls back to its authored fallback with a warning.
//!
//! ```
//! use lightbox_scene::resources::MemoryResources;
//! use lightbox_scene::usd_files::{collect_usd_files, UsdFileLimits};
//!
//! let root = b"#usda 1.0\ndef \"World\" (\n    references = @parts/bolt.usda@\n)\n{\n}\n";
//! let bolt = b"#usda 1.0\n(\n    defaultPrim = \"Bolt\"\n)\ndef Mesh \"Bolt\"\n{\n    int[] faceVertexCounts = [3]\n    int[] faceVertexIndices = [0, 1, 2]\n    point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]\n}\n";
//! let mut folder = MemoryResources::default();
//! folder.insert("parts/bolt.usda", bolt.to_vec());
//! let files = collect_usd_files("shot.usda", root.to_vec(), &folder, &UsdFileLimits::default()).unwrap();
//! assert_eq!(files.paths().collect::<Vec<_>>(), ["shot.usda", "parts/bolt.usda"]);
//! let scene = lightbox_scene::import_usd(&files.into_model_bytes()).unwrap();
//! assert_eq!(scene.instanced_triangle_count(), 1);
//! ```

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use openusd::sdf::{self, AbstractData, Value};

use super::gltf::ImportLimits;
use super::resources::{DirResources, ResourceError, ResourceLimits, ResourcePath, Resources};
use super::usd::{MemoryResolver, UsdEncoding, UsdImportError};
use super::usd_write::package_usdz;
use super::usdc_guard;

/// How many files a stage may pull in, how many bytes in all, and how deep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsdFileLimits {
    /// File count and total bytes, root layer included.
    pub files: ResourceLimits,
    /// Most levels of layers naming layers below the root layer (the root is level 0; what it
    /// names is level 1). Guards against chains that grow without bound.
    pub max_depth: usize,
}

impl Default for UsdFileLimits {
    fn default() -> Self {
        UsdFileLimits {
            files: ResourceLimits::default(),
            max_depth: 32,
        }
    }
}

impl UsdFileLimits {
    /// The limits an import under `limits` collects with: the resource defaults with the byte
    /// total capped at the memory budget, and at what one package can hold.
    pub fn for_import(limits: &ImportLimits) -> UsdFileLimits {
        let mut files = ResourceLimits::for_import(limits);
        files.max_total_bytes = files.max_total_bytes.min(MAX_PACKAGE_BYTES);
        UsdFileLimits {
            files,
            ..UsdFileLimits::default()
        }
    }
}

/// The name a root layer given without one gets in its package (and in no message: the
/// importer calls it "the root layer"). Unlike `model.usda`, no sibling file is named so.
pub(crate) const UNNAMED_ROOT: &str = "lightbox-unnamed-root";

/// The package is a zip without zip64 records: offsets and sizes are 32 bits.
const MAX_PACKAGE_BYTES: u64 = (4 << 30) - (64 << 20);

/// Extensions of the files a stage's asset-valued attributes name that the importer reads:
/// layers, and the texture formats the image decoder knows.
const LAYER_EXTENSIONS: &[&str] = &["usd", "usda", "usdc", "usdz"];
const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "tga", "webp"];

/// One file the collector wants next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsdFileRequest {
    /// Where the file is, relative to the model's folder.
    pub path: ResourcePath,
    /// The most bytes it may have (what is left of [`ResourceLimits::max_total_bytes`]).
    pub max_bytes: u64,
}

/// A file a layer names that could not be had, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedFile {
    /// The asset path as the layer authors it.
    pub asset_path: String,
    /// The layer that names it, relative to the model's folder.
    pub named_by: String,
    pub reason: String,
}

/// Finds the files a USD stage needs, asking for them one by one (see the module docs).
pub struct UsdFileCollector {
    limits: UsdFileLimits,
    root: String,
    files: Vec<(String, Vec<u8>)>,
    total_bytes: u64,
    /// Paths asked for or queued, so each file is read once.
    seen: HashSet<String>,
    /// Files still to read: path, depth, the layer that named it, the asset path it authored.
    queue: VecDeque<Pending>,
    in_flight: Option<Pending>,
    skipped: Vec<SkippedFile>,
}

#[derive(Clone, Debug)]
struct Pending {
    path: ResourcePath,
    depth: usize,
    named_by: String,
    asset_path: String,
}

impl UsdFileCollector {
    /// Starts from the root layer `root` (its path relative to the model's folder, usually its
    /// file name) and its bytes, and reads what the root names.
    pub fn new(
        root: &str,
        bytes: Vec<u8>,
        limits: UsdFileLimits,
    ) -> Result<UsdFileCollector, UsdImportError> {
        let root_path =
            ResourcePath::from_uri(&escape_uri(root)).map_err(|err| UsdImportError::Open {
                reason: format!("root layer {root}: {err}"),
            })?;
        let mut collector = UsdFileCollector {
            limits,
            root: root_path.as_str().to_owned(),
            files: Vec::new(),
            total_bytes: 0,
            seen: HashSet::from([root_path.as_str().to_owned()]),
            queue: VecDeque::new(),
            in_flight: None,
            skipped: Vec::new(),
        };
        collector.add(
            Pending {
                path: root_path,
                depth: 0,
                named_by: String::new(),
                asset_path: root.to_owned(),
            },
            bytes,
        )?;
        Ok(collector)
    }

    /// The next file to read, or `None` when every file named so far has been read.
    pub fn next_request(&mut self) -> Option<UsdFileRequest> {
        debug_assert!(self.in_flight.is_none(), "provide the previous file first");
        let pending = self.queue.pop_front()?;
        let request = UsdFileRequest {
            path: pending.path.clone(),
            max_bytes: self
                .limits
                .files
                .max_total_bytes
                .saturating_sub(self.total_bytes),
        };
        self.in_flight = Some(pending);
        Some(request)
    }

    /// Hands over the file [`next_request`](Self::next_request) asked for. A file that is not
    /// there ([`ResourceError::NotFound`]) or is refused is left out and noted (composition or
    /// the texture fallback deals with it); a file over the byte limit, an unreadable file and
    /// a layer that cannot be parsed are errors.
    pub fn provide(
        &mut self,
        result: Result<Vec<u8>, ResourceError>,
    ) -> Result<(), UsdImportError> {
        let pending = self
            .in_flight
            .take()
            .expect("provide answers a request from next_request");
        match result {
            Ok(bytes) => self.add(pending, bytes),
            Err(
                err @ (ResourceError::NotFound { .. }
                | ResourceError::Refused { .. }
                | ResourceError::NoFiles { .. }),
            ) => {
                self.skipped.push(SkippedFile {
                    asset_path: pending.asset_path,
                    named_by: pending.named_by,
                    reason: err.to_string(),
                });
                Ok(())
            }
            Err(ResourceError::TooLarge { size, .. }) => Err(UsdImportError::TooLarge {
                what: "bytes in the stage's files",
                count: self.total_bytes.saturating_add(size),
                limit: self.limits.files.max_total_bytes,
            }),
            Err(err) => Err(UsdImportError::Open {
                reason: format!(
                    "{} (named by {}): {err}",
                    pending.path,
                    display_layer(&pending.named_by)
                ),
            }),
        }
    }

    /// The files collected, root layer first.
    pub fn finish(self) -> UsdFiles {
        UsdFiles {
            root: self.root,
            files: self.files,
            skipped: self.skipped,
        }
    }

    fn add(&mut self, file: Pending, bytes: Vec<u8>) -> Result<(), UsdImportError> {
        let count = self.files.len() + 1;
        if count > self.limits.files.max_files {
            return Err(UsdImportError::TooLarge {
                what: "files in the stage",
                count: count as u64,
                limit: self.limits.files.max_files as u64,
            });
        }
        self.total_bytes = self.total_bytes.saturating_add(bytes.len() as u64);
        if self.total_bytes > self.limits.files.max_total_bytes {
            return Err(UsdImportError::TooLarge {
                what: "bytes in the stage's files",
                count: self.total_bytes,
                limit: self.limits.files.max_total_bytes,
            });
        }
        let named = layer_asset_paths(
            file.path.as_str(),
            &bytes,
            self.limits.files.max_total_bytes,
        )?;
        let dir = file
            .path
            .as_str()
            .rsplit_once('/')
            .map_or("", |(dir, _)| dir)
            .to_owned();
        for asset in named {
            let Some(path) = self.resolve(&dir, &asset, file.path.as_str()) else {
                continue;
            };
            if !self.seen.insert(path.as_str().to_owned()) {
                continue;
            }
            let depth = file.depth + 1;
            if depth > self.limits.max_depth {
                return Err(UsdImportError::TooLarge {
                    what: "levels of layers naming layers",
                    count: depth as u64,
                    limit: self.limits.max_depth as u64,
                });
            }
            self.queue.push_back(Pending {
                path,
                depth,
                named_by: file.path.as_str().to_owned(),
                asset_path: asset.authored,
            });
        }
        self.files.push((file.path.as_str().to_owned(), bytes));
        Ok(())
    }

    /// The file an asset path authored in a layer of folder `dir` names, or `None` (noted as
    /// skipped) when it is not one the importer reads from the folder.
    fn resolve(&mut self, dir: &str, asset: &NamedAsset, named_by: &str) -> Option<ResourcePath> {
        let skip = |this: &mut Self, reason: String| {
            this.skipped.push(SkippedFile {
                asset_path: asset.authored.clone(),
                named_by: named_by.to_owned(),
                reason,
            });
            None
        };
        // `pkg.usdz[inner.usda]` needs the package; what is inside it is in the package.
        let file = asset
            .authored
            .split_once('[')
            .map_or(asset.authored.as_str(), |(outer, _)| outer);
        if file.contains("<UDIM>") || file.contains('`') {
            return skip(
                self,
                "UDIM tiles and expression-valued asset paths are not read".into(),
            );
        }
        if !asset.is_layer {
            let extension = file
                .rsplit_once('.')
                .map(|(_, e)| e.to_ascii_lowercase())
                .unwrap_or_default();
            if !IMAGE_EXTENSIONS.contains(&extension.as_str())
                && !LAYER_EXTENSIONS.contains(&extension.as_str())
            {
                // Shader sources, audio, MDL: nothing the importer reads.
                return None;
            }
        }
        match join_in_folder(dir, file) {
            Ok(path) => Some(path),
            Err(reason) => skip(self, reason),
        }
    }
}

/// Collects the files of the stage whose root layer is `root` (relative to the folder
/// `resources` reads) with `bytes`, reading each from `resources`.
pub fn collect_usd_files(
    root: &str,
    bytes: Vec<u8>,
    resources: &dyn Resources,
    limits: &UsdFileLimits,
) -> Result<UsdFiles, UsdImportError> {
    let mut collector = UsdFileCollector::new(root, bytes, *limits)?;
    while let Some(request) = collector.next_request() {
        collector.provide(resources.read(&request.path, request.max_bytes))?;
    }
    Ok(collector.finish())
}

/// The stage in `bytes` with the files it names read from `resources`, as one byte buffer for
/// [`import_usd`](super::usd::import_usd): the bytes themselves when the stage names no file.
/// `root` is the root layer's path in the folder `resources` reads (its file name), when known;
/// errors then name it.
pub fn bundle_usd(
    root: Option<&str>,
    bytes: Vec<u8>,
    resources: &dyn Resources,
    limits: &ImportLimits,
) -> Result<Vec<u8>, UsdImportError> {
    let Some(encoding) = UsdEncoding::sniff(&bytes) else {
        // Not USD: the importer says so.
        return Ok(bytes);
    };
    if encoding == UsdEncoding::Usdz {
        return Ok(bytes);
    }
    let unnamed = format!("{UNNAMED_ROOT}.{}", encoding.extension());
    let files = collect_usd_files(
        root.unwrap_or(&unnamed),
        bytes,
        resources,
        &UsdFileLimits::for_import(limits),
    )?;
    Ok(files.into_model_bytes())
}

/// Reads the USD model at `path` with the files it names from its folder, as one byte buffer
/// for [`import_usd`](super::usd::import_usd) (the file itself when it names none).
pub fn read_usd_model(path: &Path, limits: &ImportLimits) -> Result<Vec<u8>, UsdImportError> {
    let open = |err: std::io::Error| UsdImportError::Open {
        reason: format!("cannot read {}: {err}", path.display()),
    };
    let bytes = std::fs::read(path).map_err(open)?;
    let folder = DirResources::beside(path).map_err(open)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| UsdImportError::Open {
            reason: format!("{} has no UTF-8 file name", path.display()),
        })?;
    bundle_usd(Some(name), bytes, &folder, limits)
}

/// The files of one stage, root layer first.
#[derive(Clone, Debug)]
pub struct UsdFiles {
    root: String,
    files: Vec<(String, Vec<u8>)>,
    skipped: Vec<SkippedFile>,
}

impl UsdFiles {
    /// The root layer's path relative to the model's folder.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Every collected file's path, root layer first.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|(p, _)| p.as_str())
    }

    /// Files named but not collected (missing, outside the folder, or not a kind the importer
    /// reads), with why.
    pub fn skipped(&self) -> &[SkippedFile] {
        &self.skipped
    }

    /// Bytes over all files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|(_, b)| b.len() as u64).sum()
    }

    /// One buffer the importer reads: the root layer's own bytes when it names no file (or is
    /// itself a package), else a `.usdz` package of every file at its relative path with the
    /// root layer first.
    pub fn into_model_bytes(mut self) -> Vec<u8> {
        // A root that names files, even missing ones, is packaged too, so that errors name
        // files by their place in the folder.
        if self.files.len() == 1 && self.skipped.is_empty() {
            return self.files.pop().map(|(_, b)| b).unwrap_or_default();
        }
        // The reader finds a package's root layer by its extension (`.usd`, `.usda` or `.usdc`,
        // lower case): a root named otherwise keeps its bytes under a name it recognises.
        if let Some((name, bytes)) = self.files.first_mut() {
            if ![".usd", ".usda", ".usdc"].iter().any(|e| name.ends_with(e)) {
                let extension = UsdEncoding::sniff(bytes).map_or("usd", UsdEncoding::extension);
                *name = format!("{name}.{extension}");
            }
        }
        let entries: Vec<(&str, &[u8])> = self
            .files
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        package_usdz(&entries)
    }
}

/// An asset path a layer authors, and whether it is a composition arc (a layer for certain)
/// rather than an attribute value (a texture, usually).
struct NamedAsset {
    authored: String,
    is_layer: bool,
}

/// The asset paths a layer's specs author: sublayers, references and payloads (in every
/// variant) and asset-valued attributes. Packages and non-USD files name nothing.
fn layer_asset_paths(
    path: &str,
    bytes: &[u8],
    budget: u64,
) -> Result<Vec<NamedAsset>, UsdImportError> {
    let encoding = match UsdEncoding::sniff(bytes) {
        Some(UsdEncoding::Usda) => UsdEncoding::Usda,
        Some(UsdEncoding::Usdc) => UsdEncoding::Usdc,
        // A package is self-contained; an image names nothing.
        Some(UsdEncoding::Usdz) | None => return Ok(Vec::new()),
    };
    // Text layers author asset paths as `@path@`: one without an `@` names no file, and is not
    // parsed twice (a stage of many geometry layers reads each once).
    if encoding == UsdEncoding::Usda && !bytes.contains(&b'@') {
        return Ok(Vec::new());
    }
    let failed = |reason: String| UsdImportError::Open {
        reason: format!("{path}: {reason}"),
    };
    if encoding == UsdEncoding::Usdc {
        // Binary layers are not read in this process: openusd 0.6 allocates whatever counts a
        // usdc value declares (corpus case 108 asks for 160 GB), which only the isolated reader
        // survives. A usdc layer is imported whole (in the sandbox) but the files it names are
        // not collected, so its own references and payloads must be inside a usdz or absent.
        usdc_guard::check(bytes, budget).map_err(|e| failed(e.to_string()))?;
        return Ok(Vec::new());
    }
    let bytes: Arc<[u8]> = Arc::from(bytes);
    // openusd is a young library: a malformed layer is an error, never a crashed worker.
    let data = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (resolver, resolved) = MemoryResolver::single(bytes, encoding, budget);
        let format = sdf::LayerRegistry::find_by_extension(encoding.extension())
            .ok_or_else(|| anyhow::anyhow!("no reader for {}", encoding.extension()))?;
        format.read(&resolver, &resolved)
    }))
    .map_err(|_| failed("the usd reader failed".into()))?
    .map_err(|e| failed(format!("{e:#}")))?;
    let mut out = Vec::new();
    let data: &dyn AbstractData = data.as_ref();
    for spec in data.spec_paths() {
        for field in data.list_fields(&spec).unwrap_or_default() {
            let value = match data.try_field(&spec, &field) {
                Ok(Some(v)) => v.into_owned(),
                Ok(None) => continue,
                Err(e) => return Err(failed(format!("{spec}: {e}"))),
            };
            collect_value_assets(&field, &value, &mut out);
        }
    }
    Ok(out)
}

fn collect_value_assets(field: &str, value: &Value, out: &mut Vec<NamedAsset>) {
    let mut push = |authored: &str, is_layer: bool| {
        if !authored.is_empty() {
            out.push(NamedAsset {
                authored: authored.to_owned(),
                is_layer,
            });
        }
    };
    match value {
        Value::StringVec(layers) if field == "subLayers" => {
            for layer in layers {
                push(layer, true);
            }
        }
        Value::ReferenceListOp(op) => {
            for r in op.iter().chain(&op.deleted_items) {
                push(&r.asset_path, true);
            }
        }
        Value::PayloadListOp(op) => {
            for p in op.iter().chain(&op.deleted_items) {
                push(&p.asset_path, true);
            }
        }
        Value::Payload(p) => push(&p.asset_path, true),
        Value::AssetPath(a) => push(&a.authored_path, false),
        Value::AssetPathVec(list) => {
            for a in list {
                push(&a.authored_path, false);
            }
        }
        Value::TimeSamples(samples) => {
            for (_, v) in samples {
                collect_value_assets(field, v, out);
            }
        }
        _ => {}
    }
}

/// Joins an asset path onto the folder `dir` of the layer that authors it (both relative to
/// the model's folder), folding `.` and `..`; refuses absolute paths, URLs and paths that leave
/// the model's folder.
pub(crate) fn join_in_folder(dir: &str, asset_path: &str) -> Result<ResourcePath, String> {
    if asset_path.starts_with('/') || asset_path.starts_with('\\') {
        return Err("an absolute path is not read".into());
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    for part in asset_path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("it leaves the model's folder".into());
                }
            }
            p => parts.push(p),
        }
    }
    ResourcePath::from_uri(&escape_uri(&parts.join("/"))).map_err(|err| match err {
        ResourceError::Refused { reason, .. } => reason.to_owned(),
        other => other.to_string(),
    })
}

/// USD asset paths are plain paths, not URIs: characters a URI reader would decode or cut at
/// are escaped, so [`ResourcePath::from_uri`] keeps them as they are.
fn escape_uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

fn display_layer(named_by: &str) -> &str {
    if named_by.is_empty() {
        "the root layer"
    } else {
        named_by
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::MemoryResources;

    #[test]
    fn paths_join_inside_the_folder_and_never_leave_it() {
        let ok = |dir: &str, p: &str| join_in_folder(dir, p).unwrap().as_str().to_owned();
        assert_eq!(ok("payload", "../_parent_stage.usda"), "_parent_stage.usda");
        assert_eq!(
            ok("", "./0/Texture Arrow 50%.png"),
            "0/Texture Arrow 50%.png"
        );
        assert_eq!(ok("a/b", "c#1.usda"), "a/b/c#1.usda");
        assert!(join_in_folder("", "../x.usda").is_err());
        assert!(join_in_folder("a", "../../x.usda").is_err());
        assert!(join_in_folder("", "/etc/passwd").is_err());
        assert!(join_in_folder("", "C:/x.usda").is_err());
        assert!(join_in_folder("", "https://example.com/x.usda").is_err());
    }

    #[test]
    fn every_variant_and_arc_is_collected_once_and_missing_files_are_noted() {
        let root = br#"#usda 1.0
(
    subLayers = [@lights.usda@]
)
def Xform "World" (
    variants = { string look = "red" }
    prepend variantSets = "look"
    prepend payload = @parts/heavy.usdc@
)
{
    variantSet "look" = {
        "red" ( prepend references = @looks/red.usda@ ) {}
        "blue" ( prepend references = @looks/blue.usda@ ) {}
    }
    asset tex = @tex/wood.png@
    asset script = @tools/run.py@
}
"#;
        let mut folder = MemoryResources::default();
        folder.insert("lights.usda", b"#usda 1.0\n".to_vec());
        folder.insert(
            "looks/red.usda",
            b"#usda 1.0\ndef \"R\" { asset t = @../tex/wood.png@ }\n".to_vec(),
        );
        folder.insert("looks/blue.usda", b"#usda 1.0\n".to_vec());
        folder.insert("tex/wood.png", b"\x89PNG".to_vec());
        let files = collect_usd_files(
            "scene.usda",
            root.to_vec(),
            &folder,
            &UsdFileLimits::default(),
        )
        .unwrap();
        let mut paths: Vec<&str> = files.paths().collect();
        assert_eq!(paths.remove(0), "scene.usda", "root first");
        paths.sort_unstable();
        assert_eq!(
            paths,
            [
                "lights.usda",
                "looks/blue.usda",
                "looks/red.usda",
                "tex/wood.png"
            ]
        );
        assert_eq!(files.skipped().len(), 1, "{:?}", files.skipped());
        assert_eq!(files.skipped()[0].asset_path, "parts/heavy.usdc");
        assert!(files.skipped()[0].reason.contains("not found"));
    }

    #[test]
    fn limits_stop_the_collection() {
        let chain = |i: usize| format!("#usda 1.0\n(\n    subLayers = [@l{}.usda@]\n)\n", i + 1);
        let mut folder = MemoryResources::default();
        for i in 1..10 {
            folder.insert(format!("l{i}.usda"), chain(i).into_bytes());
        }
        let limits = UsdFileLimits {
            max_depth: 4,
            ..UsdFileLimits::default()
        };
        let err =
            collect_usd_files("l0.usda", chain(0).into_bytes(), &folder, &limits).unwrap_err();
        assert!(err.to_string().contains("levels of layers"), "{err}");
        let limits = UsdFileLimits {
            files: ResourceLimits {
                max_files: 3,
                ..ResourceLimits::default()
            },
            ..UsdFileLimits::default()
        };
        let err =
            collect_usd_files("l0.usda", chain(0).into_bytes(), &folder, &limits).unwrap_err();
        assert!(err.to_string().contains("files in the stage"), "{err}");
        let limits = UsdFileLimits {
            files: ResourceLimits {
                max_total_bytes: 100,
                ..ResourceLimits::default()
            },
            ..UsdFileLimits::default()
        };
        let err =
            collect_usd_files("l0.usda", chain(0).into_bytes(), &folder, &limits).unwrap_err();
        assert!(
            matches!(
                err,
                UsdImportError::TooLarge { .. } | UsdImportError::Open { .. }
            ),
            "{err}"
        );
    }
}
