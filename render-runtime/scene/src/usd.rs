//! USD import (`.usda`, `.usdc`, `.usdz`) into a [`Scene`], read with `openusd` 0.6.
//!
//! The stage is opened from memory through [`MemoryResolver`], which serves the given bytes as
//! the root layer (and, for a `.usdz`, the files inside the package) and nothing else: a
//! reference to any other file is a composition error, not a read of the worker's disk.
//!
//! What is imported:
//! - the Xform hierarchy (`xformOpOrder`, `!resetXformStack!`) as world transforms;
//! - `Mesh` prims: polygons fan-triangulated (holes skipped), normals and `primvars:st` with
//!   vertex, varying, face-varying, uniform or constant interpolation (indexed primvars too),
//!   `leftHanded` orientation; meshes without normals are shaded flat when
//!   `subdivisionScheme = "none"` and smooth otherwise;
//! - `UsdPreviewSurface` materials bound with `material:binding` on the mesh or an ancestor, and
//!   per-face bindings through `GeomSubset`s of family `materialBind`; unbound meshes use their
//!   `primvars:displayColor`;
//! - instancing kept as instancing: every instance of a native-instancing prototype and every
//!   point of a `PointInstancer` places the same [`Mesh`](super::Mesh); prototypes beneath a
//!   PointInstancer are not drawn on their own;
//! - `upAxis = "Z"` is turned to Y-up and `metersPerUnit` scales the scene to metres.
//!
//! The renderer shades both sides of every triangle, so `doubleSided` needs no handling.
//! Textures are not read yet; a textured input falls back to its default value.
//!
//! ```
//! use lightbox_scene::usd::import_usd;
//!
//! let usda = br#"#usda 1.0
//! def Mesh "Tri" {
//!     int[] faceVertexCounts = [3]
//!     int[] faceVertexIndices = [0, 1, 2]
//!     point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
//! }
//! "#;
//! let scene = import_usd(usda).unwrap();
//! assert_eq!(scene.instanced_triangle_count(), 1);
//! ```

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use openusd::schemas::geom::Xformable;
use openusd::sdf::{self, Value};
use openusd::usd::{Prim, Stage};
use openusd::{ar, gf};

use super::budget::{MemoryEstimate, OverBudget, VertexExtras};
use super::gltf::{generate_smooth_normals, ImportLimits};
use super::usd_gprims::{Axis, Gprim};
use super::usd_material::{MaterialReader, TextureFiles};
use super::usdc_guard;
use super::{Instance, Material, Mesh, Scene};
use crate::math::{Affine, Vec3};

/// Why a USD file could not be imported. Errors inside the scene name the prim path.
#[derive(Debug, thiserror::Error)]
pub enum UsdImportError {
    #[error("not a usd file: {reason}")]
    NotUsd { reason: String },
    #[error("cannot open usd stage: {reason}")]
    Open { reason: String },
    #[error("prim {prim}: {reason}")]
    Prim { prim: String, reason: String },
    #[error("composition error: {reason}")]
    Composition { reason: String },
    #[error("model too large: {what} {count} exceeds the limit of {limit}")]
    TooLarge {
        what: &'static str,
        count: u64,
        limit: u64,
    },
    #[error(transparent)]
    OverBudget(#[from] OverBudget),
    /// An error reported by the isolated reader (see `usd_isolate`), already formatted.
    #[error("{message}")]
    Reader { message: String },
    #[error("model has no meshes to render")]
    Empty,
}

/// Which USD encoding a byte buffer holds, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsdEncoding {
    /// Text (`#usda 1.0`).
    Usda,
    /// Binary crate (`PXR-USDC`).
    Usdc,
    /// Zip package (`PK\x03\x04`).
    Usdz,
}

impl UsdEncoding {
    /// Detects the encoding from the magic bytes; `None` when the bytes are not USD.
    pub fn sniff(bytes: &[u8]) -> Option<UsdEncoding> {
        if bytes.starts_with(b"PXR-USDC") {
            Some(UsdEncoding::Usdc)
        } else if bytes.starts_with(b"PK\x03\x04") {
            Some(UsdEncoding::Usdz)
        } else if bytes.starts_with(b"#usda") {
            Some(UsdEncoding::Usda)
        } else {
            None
        }
    }

    /// The file extension that selects this encoding's reader.
    pub fn extension(self) -> &'static str {
        match self {
            UsdEncoding::Usda => "usda",
            UsdEncoding::Usdc => "usdc",
            UsdEncoding::Usdz => "usdz",
        }
    }
}

/// Largest file we extract from a `.usdz` package (guards against zip bombs).
const MAX_PACKAGED_FILE_BYTES: u64 = 4 << 30;

/// Imports USD bytes (usda, usdc or usdz, detected from the content) with default limits.
pub fn import_usd(bytes: &[u8]) -> Result<Scene, UsdImportError> {
    import_usd_with_limits(bytes, &ImportLimits::default())
}

/// Imports USD bytes under the given size guards. What the import had to leave out (a missing
/// texture, a binding to a material that does not exist) is written to stderr as a warning;
/// [`import_usd_report`] returns it instead.
pub fn import_usd_with_limits(
    bytes: &[u8],
    limits: &ImportLimits,
) -> Result<Scene, UsdImportError> {
    let report = import_usd_report(bytes, limits)?;
    for warning in &report.warnings {
        eprintln!("warning: usd import: {warning}");
    }
    Ok(report.scene)
}

/// A USD import's scene and what it had to leave out.
#[derive(Clone, Debug)]
pub struct UsdImport {
    pub scene: Scene,
    /// One line per fallback taken (a texture that could not be read, a binding to a missing
    /// material, a shader input the scene model has no slot for), naming the prim or file.
    pub warnings: Vec<String>,
}

/// Imports USD bytes under the given size guards, returning the warnings with the scene.
pub fn import_usd_report(bytes: &[u8], limits: &ImportLimits) -> Result<UsdImport, UsdImportError> {
    let encoding = UsdEncoding::sniff(bytes).ok_or_else(|| UsdImportError::NotUsd {
        reason: "expected '#usda', 'PXR-USDC' or a zip package at the start".into(),
    })?;
    let bytes: Arc<[u8]> = Arc::from(bytes);
    // openusd is a young library: a malformed file must become an error, never take down the
    // worker, so a panic inside it is caught and reported as a read failure.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        import_stage(bytes, encoding, limits)
    }));
    match result {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(UsdImportError::Open {
                reason: format!("usd reader failed: {msg}"),
            })
        }
    }
}

fn import_stage(
    bytes: Arc<[u8]>,
    encoding: UsdEncoding,
    limits: &ImportLimits,
) -> Result<UsdImport, UsdImportError> {
    let names = FileNames::for_model(&bytes, encoding);
    let (resolver, root) = MemoryResolver::single(bytes, encoding, limits.memory_budget);
    // Textures are read through the same namespace the stage resolved them in.
    let texture_files = resolver.clone();
    let stage = Stage::builder()
        .resolver(resolver)
        .open(&root.to_string_lossy())
        .map_err(|e| UsdImportError::Open {
            reason: format!("{e:#}"),
        })?;
    if let Some(first) = stage.composition_errors().into_iter().next() {
        return Err(composition_error(&names, &first));
    }

    let mut importer = Importer::new(&stage, limits, &texture_files)?;
    let root_prim = stage.prim(sdf::Path::abs_root());
    let children = root_prim
        .children()
        .map_err(|e| prim_error(root_prim.path(), e))?;
    let ctx = Context {
        world: importer.stage_transform,
        material: None,
        depth: 0,
        prototype_root: false,
    };
    let mut placements = Vec::new();
    for child in children {
        importer.visit(&child, &ctx, false, &mut placements)?;
    }
    // References resolve lazily while prims are composed, so look again after the walk.
    if let Some(first) = stage.composition_errors().into_iter().next() {
        return Err(composition_error(&names, &first));
    }
    let warnings = std::mem::take(&mut importer.warnings);
    let mut scene = importer.scene;
    if scene.instances.is_empty() {
        return Err(UsdImportError::Empty);
    }
    if scene.materials.is_empty() {
        scene.materials.push(default_material());
    }
    Ok(UsdImport { scene, warnings })
}

/// Where in-memory layers live in the resolver's namespace. Not a real directory: the resolver
/// never touches the filesystem.
const MEMORY_ROOT: &str = "/lightbox-memory";

/// An asset resolver that serves one in-memory root layer (or package) and nothing else.
#[derive(Clone)]
pub struct MemoryResolver {
    root: String,
    bytes: Arc<[u8]>,
    /// The import's memory budget: packaged files and binary layers' tables must fit in it.
    budget: u64,
}

/// Read access to shared bytes.
struct SharedAsset {
    bytes: Arc<[u8]>,
    pos: u64,
}

impl Read for SharedAsset {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let start = (self.pos as usize).min(self.bytes.len());
        let n = buf.len().min(self.bytes.len() - start);
        buf[..n].copy_from_slice(&self.bytes[start..start + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SharedAsset {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let len = self.bytes.len() as i128;
        let target = match pos {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => len + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if target < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before start",
            ));
        }
        self.pos = target as u64;
        Ok(self.pos)
    }
}

impl ar::Asset for SharedAsset {
    fn size(&self) -> io::Result<u64> {
        Ok(self.bytes.len() as u64)
    }
}

/// Joins `relative` onto the directory `dir` (both '/'-separated), folding `.` and `..`. A path
/// that climbs above `dir`'s root keeps its leading `..` segments, so it names nothing in the
/// model and composition reports it.
fn join_relative(dir: &str, relative: &str) -> String {
    let mut parts: Vec<&str> = if relative.starts_with('/') {
        Vec::new()
    } else {
        dir.split('/').filter(|s| !s.is_empty()).collect()
    };
    let mut above_root = 0usize;
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    above_root += 1;
                }
            }
            p => parts.push(p),
        }
    }
    let mut out: Vec<&str> = std::iter::repeat_n("..", above_root).collect();
    out.extend(parts);
    out.join("/")
}

impl MemoryResolver {
    /// A resolver serving `bytes` alone as a root layer of `encoding`, and the path to open it.
    pub(crate) fn single(
        bytes: Arc<[u8]>,
        encoding: UsdEncoding,
        budget: u64,
    ) -> (MemoryResolver, ar::ResolvedPath) {
        let root = format!("{MEMORY_ROOT}/model.{}", encoding.extension());
        let resolved = ar::ResolvedPath::new(&root);
        (
            MemoryResolver {
                root,
                bytes,
                budget,
            },
            resolved,
        )
    }

    /// Reads a file the stage resolved (a texture): the root itself or a file in its package.
    fn read_resolved(&self, resolved: &str) -> io::Result<Vec<u8>> {
        if let Some((package, inner)) = ar::split_package_relative_path_outer(resolved) {
            if package == self.root && !ar::is_package_relative_path(&inner) {
                return self.package_entry(&inner);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{resolved} is not part of the imported model"),
        ))
    }

    fn package_entry(&self, inner: &str) -> io::Result<Vec<u8>> {
        let mut archive = zip::ZipArchive::new(SharedAsset {
            bytes: self.bytes.clone(),
            pos: 0,
        })
        .map_err(io::Error::other)?;
        let entry = archive.by_name(inner).map_err(io::Error::other)?;
        let limit = MAX_PACKAGED_FILE_BYTES.min(self.budget);
        if entry.size() > limit {
            return Err(io::Error::other(format!(
                "packaged file {inner} is {} bytes, more than the limit of {limit}",
                entry.size()
            )));
        }
        // The declared size is only a claim: reserve little, and stop reading at the limit.
        let mut out = Vec::with_capacity(entry.size().min(1 << 24) as usize);
        entry.take(limit + 1).read_to_end(&mut out)?;
        if out.len() as u64 > limit {
            return Err(io::Error::other(format!(
                "packaged file {inner} inflates past the limit of {limit} bytes"
            )));
        }
        usdc_guard::check(&out, self.budget).map_err(io::Error::other)?;
        Ok(out)
    }

    fn package_contains(&self, inner: &str) -> bool {
        zip::ZipArchive::new(SharedAsset {
            bytes: self.bytes.clone(),
            pos: 0,
        })
        .map(|mut a| a.by_name(inner).is_ok())
        // An unreadable package is "present" so that opening it reports the real zip error.
        .unwrap_or(true)
    }
}

impl TextureFiles for MemoryResolver {
    fn read(&self, resolved: &str) -> Result<Vec<u8>, String> {
        self.read_resolved(resolved).map_err(|e| e.to_string())
    }
}

impl ar::Resolver for MemoryResolver {
    fn create_identifier(&self, asset_path: &str, anchor: Option<&ar::ResolvedPath>) -> String {
        if asset_path.is_empty() {
            return String::new();
        }
        if ar::is_package_relative_path(asset_path) {
            if let Some((package, inner)) = ar::split_package_relative_path_outer(asset_path) {
                let package = self.create_identifier(&package, anchor);
                return ar::join_package_relative_path(&package, &inner);
            }
            return asset_path.to_string();
        }
        if asset_path.starts_with('/') {
            return format!("/{}", join_relative("", asset_path));
        }
        if let Some(anchor) = anchor {
            let anchor = anchor.to_string_lossy();
            if ar::is_package_relative_path(&anchor) {
                if let Some((package, inner)) = ar::split_package_relative_path_inner(&anchor) {
                    let dir = inner.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    return ar::join_package_relative_path(
                        &package,
                        &join_relative(dir, asset_path),
                    );
                }
            }
            if anchor.to_ascii_lowercase().ends_with(".usdz") {
                return ar::join_package_relative_path(&anchor, &join_relative("", asset_path));
            }
            let dir = anchor.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            return format!("/{}", join_relative(dir, asset_path));
        }
        format!("/{}", join_relative(MEMORY_ROOT, asset_path))
    }

    fn resolve(&self, asset_path: &str) -> Option<ar::ResolvedPath> {
        if asset_path == self.root {
            return Some(ar::ResolvedPath::new(asset_path));
        }
        if ar::is_package_relative_path(asset_path) {
            let (package, inner) = ar::split_package_relative_path_outer(asset_path)?;
            if package == self.root && self.package_contains(&inner) {
                return Some(ar::ResolvedPath::new(asset_path));
            }
        }
        None
    }

    fn resolve_for_new_asset(&self, _asset_path: &str) -> Option<ar::ResolvedPath> {
        None
    }

    fn open_asset(&self, resolved_path: &ar::ResolvedPath) -> io::Result<Box<dyn ar::Asset>> {
        let path = resolved_path.to_string_lossy();
        if path == self.root {
            usdc_guard::check(&self.bytes, self.budget).map_err(io::Error::other)?;
            return Ok(Box::new(SharedAsset {
                bytes: self.bytes.clone(),
                pos: 0,
            }));
        }
        if let Some((package, inner)) = ar::split_package_relative_path_outer(&path) {
            if package == self.root {
                return Ok(Box::new(io::Cursor::new(self.package_entry(&inner)?)));
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{path} is not part of the imported model"),
        ))
    }

    fn get_modification_timestamp(
        &self,
        _asset_path: &str,
        _resolved_path: &ar::ResolvedPath,
    ) -> Option<std::time::SystemTime> {
        None
    }

    fn identity(&self) -> String {
        format!("lightbox-memory:{}", self.root)
    }
}

/// How the files of the imported model are named in messages.
struct FileNames {
    /// The root layer's path inside its package, or "the root layer" for a bare layer.
    root: String,
}

impl FileNames {
    fn for_model(bytes: &Arc<[u8]>, encoding: UsdEncoding) -> FileNames {
        let packaged = (encoding == UsdEncoding::Usdz)
            .then(|| {
                let archive = zip::ZipArchive::new(SharedAsset {
                    bytes: bytes.clone(),
                    pos: 0,
                })
                .ok()?;
                let first = archive
                    .file_names()
                    .find(|n| n.ends_with(".usd") || n.ends_with(".usda") || n.ends_with(".usdc"))
                    .map(str::to_owned);
                first
            })
            .flatten();
        FileNames {
            root: packaged
                .filter(|name| !name.starts_with(super::usd_files::UNNAMED_ROOT))
                .unwrap_or_else(|| "the root layer".into()),
        }
    }

    /// A layer identifier in this importer's namespace as people know the file: its path
    /// inside the model (`parts/bolt.usda`).
    fn display(&self, identifier: &str) -> String {
        let Some(rest) = identifier.strip_prefix(MEMORY_ROOT) else {
            return identifier.to_owned();
        };
        let rest = rest.trim_start_matches('/');
        if let Some((package, inner)) = ar::split_package_relative_path_outer(rest) {
            if package.starts_with("model.") && !package.contains('/') {
                return inner;
            }
        }
        if rest.starts_with("model.") && !rest.contains('/') {
            return self.root.clone();
        }
        rest.to_owned()
    }

    /// The folder of a layer, as [`join_relative`] takes it (inside the package for a packaged
    /// layer).
    fn dir(&self, identifier: &str) -> String {
        let shown = self.display(identifier);
        shown
            .rsplit_once('/')
            .map(|(d, _)| d.to_owned())
            .unwrap_or_default()
    }
}

fn arc_name(arc: &openusd::pcp::ArcType) -> &'static str {
    use openusd::pcp::ArcType;
    match arc {
        ArcType::Reference => "reference",
        ArcType::Payload => "payload",
        ArcType::Inherit => "inherit",
        ArcType::Specialize => "specialize",
        ArcType::Variant => "variant",
        ArcType::Relocate => "relocate",
        ArcType::Root => "layer",
    }
}

/// Why a file the stage names cannot be had, naming the file, the arc and the layer.
fn missing_file(names: &FileNames, file: &str, what: &str, introduced_by: &str) -> String {
    let why = if file == ".." || file.starts_with("../") || file.starts_with('/') {
        "is outside the model's folder (only files beside the model are read)"
    } else {
        "is missing"
    };
    format!(
        "file {file} {why}: {what} in {}",
        names.display(introduced_by)
    )
}

/// A composition error in the words of the model's own files.
fn composition_error(names: &FileNames, err: &openusd::pcp::Error) -> UsdImportError {
    use openusd::pcp::Error as E;
    let reason = match err {
        E::UnresolvedLayer {
            asset_path,
            arc,
            introduced_by,
            site_path,
        } => missing_file(
            names,
            &names.display(asset_path),
            &format!("named by the {} on {site_path}", arc_name(arc)),
            introduced_by,
        ),
        E::UnresolvedSublayer {
            asset_path,
            introduced_by,
        } => {
            let file = if asset_path.starts_with('/') {
                asset_path.clone()
            } else {
                join_relative(&names.dir(introduced_by), asset_path)
            };
            let file = file
                .strip_prefix(MEMORY_ROOT)
                .map(|f| f.trim_start_matches('/').to_owned())
                .unwrap_or(file);
            missing_file(names, &file, "named as a sublayer", introduced_by)
        }
        E::MalformedLayer {
            asset_path,
            arc,
            introduced_by,
            site_path,
            reason,
        } => format!(
            "cannot read {} (named by the {} on {site_path} in {}): {reason}",
            names.display(asset_path),
            arc_name(arc),
            names.display(introduced_by)
        ),
        E::MalformedSublayer {
            asset_path,
            introduced_by,
            reason,
        } => format!(
            "cannot read {asset_path} (a sublayer of {}): {reason}",
            names.display(introduced_by)
        ),
        other => other.to_string(),
    };
    UsdImportError::Composition { reason }
}

fn prim_error(path: &sdf::Path, e: impl std::fmt::Display) -> UsdImportError {
    UsdImportError::Prim {
        prim: path.as_str().to_string(),
        reason: e.to_string(),
    }
}

fn default_material() -> Material {
    Material {
        name: Some("default".into()),
        metallic: 0.0,
        roughness: 0.5,
        ..Material::default()
    }
}

/// One mesh placement found under a subtree, relative to the subtree's parent space.
#[derive(Clone)]
struct Placement {
    mesh: usize,
    transform: Affine,
    name: String,
}

/// What a prim inherits from its ancestors.
#[derive(Clone)]
struct Context {
    world: Affine,
    /// Material bound on the nearest ancestor.
    material: Option<u32>,
    depth: usize,
    /// The prim is a PointInstancer prototype root.
    prototype_root: bool,
}

struct Importer<'s> {
    stage: &'s Stage,
    limits: &'s ImportLimits,
    scene: Scene,
    /// Z-up to Y-up and units to metres.
    stage_transform: Affine,
    /// (mesh prim path, inherited material) -> mesh index, `None` for meshes without faces.
    meshes: HashMap<(String, Option<u32>), Option<usize>>,
    /// Material prim path -> material index.
    materials: HashMap<String, u32>,
    /// displayColor bits -> material index.
    display_materials: HashMap<[u32; 3], u32>,
    unique_triangles: usize,
    instanced_triangles: u64,
    visited: usize,
    /// Memory the scene will need, checked against the budget as meshes and placements are read,
    /// before each mesh is triangulated and before the acceleration structure is built.
    estimate: MemoryEstimate,
    reader: MaterialReader<'s>,
    /// Material index -> the primvars its UV sets 0 and 1 read.
    material_uv_primvars: HashMap<u32, Vec<String>>,
    /// Materials whose diffuse colour is the gprim's displayColor.
    display_color_driven: HashSet<u32>,
    /// (displayColor-driven material, colour bits) -> the material with that colour.
    tinted_materials: HashMap<(u32, [u32; 3]), u32>,
    /// Bound material paths that do not exist (warned about once).
    missing_materials: HashSet<String>,
    warnings: Vec<String>,
}

impl<'s> Importer<'s> {
    fn new(
        stage: &'s Stage,
        limits: &'s ImportLimits,
        texture_files: &'s dyn TextureFiles,
    ) -> Result<Importer<'s>, UsdImportError> {
        let meta_error = |field: &str, e: anyhow::Error| UsdImportError::Prim {
            prim: "/".into(),
            reason: format!("stage metadata {field}: {e}"),
        };
        let up_axis = match stage
            .stage_metadata("upAxis")
            .map_err(|e| meta_error("upAxis", e))?
        {
            Some(Value::Token(t)) => t.as_str().to_string(),
            Some(Value::String(s)) => s,
            _ => "Y".to_string(),
        };
        let meters_per_unit = match stage
            .stage_metadata("metersPerUnit")
            .map_err(|e| meta_error("metersPerUnit", e))?
        {
            Some(v) => scalar(&v).unwrap_or(0.01),
            // USD's fallback is centimetres.
            None => 0.01,
        };
        if !(meters_per_unit.is_finite() && meters_per_unit > 0.0) {
            return Err(UsdImportError::Prim {
                prim: "/".into(),
                reason: format!("metersPerUnit {meters_per_unit} must be positive"),
            });
        }
        let axis = match up_axis.as_str() {
            "Y" => Affine::IDENTITY,
            // (x, y, z) Z-up becomes (x, z, -y) Y-up.
            "Z" => Affine::rotation_x(-std::f32::consts::FRAC_PI_2),
            other => {
                return Err(UsdImportError::Prim {
                    prim: "/".into(),
                    reason: format!("upAxis {other:?} must be \"Y\" or \"Z\""),
                })
            }
        };
        let stage_transform = Affine::scale(Vec3::splat(meters_per_unit as f32)).mul(&axis);
        Ok(Importer {
            stage,
            limits,
            scene: Scene::default(),
            stage_transform,
            meshes: HashMap::new(),
            materials: HashMap::new(),
            display_materials: HashMap::new(),
            unique_triangles: 0,
            estimate: MemoryEstimate::default(),
            instanced_triangles: 0,
            visited: 0,
            reader: MaterialReader::new(stage, texture_files, limits),
            material_uv_primvars: HashMap::new(),
            display_color_driven: HashSet::new(),
            tinted_materials: HashMap::new(),
            missing_materials: HashSet::new(),
            warnings: Vec::new(),
        })
    }

    /// Walks `prim` and its subtree. At the top level (`collect` false) meshes become scene
    /// instances; when collecting a prototype they are appended to `out` instead.
    fn visit(
        &mut self,
        prim: &Prim,
        ctx: &Context,
        collect: bool,
        out: &mut Vec<Placement>,
    ) -> Result<(), UsdImportError> {
        let path = prim.path().clone();
        let err = |e: anyhow::Error| prim_error(&path, format!("{e:#}"));
        if ctx.depth > self.limits.max_node_depth {
            return Err(prim_error(
                &path,
                format!(
                    "hierarchy deeper than {} levels",
                    self.limits.max_node_depth
                ),
            ));
        }
        self.visited += 1;
        let max_visits = self.limits.max_instances.saturating_mul(4).max(1024);
        if self.visited > max_visits {
            return Err(UsdImportError::TooLarge {
                what: "prim visits",
                count: self.visited as u64,
                limit: max_visits as u64,
            });
        }
        if !prim.is_active().map_err(err)? {
            return Ok(());
        }
        // Only defined prims are drawn: `class` prototypes and bare `over`s are not (a
        // PointInstancer draws its prototypes whatever their specifier).
        if !ctx.prototype_root && prim.specifier().map_err(err)? != Some(sdf::Specifier::Def) {
            return Ok(());
        }
        let type_name = prim.type_name().map_err(err)?;
        let type_name = type_name.as_ref().map(|t| t.as_str()).unwrap_or("");
        if matches!(
            type_name,
            "Material" | "Shader" | "NodeGraph" | "GeomSubset" | "Camera"
        ) || type_name.ends_with("Light")
        {
            return Ok(());
        }
        if token_attr(prim, "visibility").map_err(err)?.as_deref() == Some("invisible") {
            return Ok(());
        }
        // A final render draws the default and render purposes (guide, proxy and anything
        // else are not drawn, as usd-core's render-purpose traversal has it).
        if !matches!(
            token_attr(prim, "purpose").map_err(err)?.as_deref(),
            None | Some("default" | "render")
        ) {
            return Ok(());
        }

        self.check_internal_references(prim, prim.has_composition_arc().map_err(err)?)?;
        let (local, resets) = local_transform(prim).map_err(err)?;
        let parent = if resets {
            self.stage_transform
        } else {
            ctx.world
        };
        let world = parent.mul(&local);
        if !world.is_finite() {
            return Err(prim_error(&path, "transform is not finite"));
        }
        let material = self.bound_material(prim)?.or(ctx.material);
        let child_ctx = Context {
            world,
            material,
            depth: ctx.depth + 1,
            prototype_root: false,
        };

        match type_name {
            "Mesh" | "Cube" | "Sphere" | "Cylinder" | "Cylinder_1" | "Cone" | "Capsule"
            | "Capsule_1" | "Plane" => {
                if let Some(mesh) = self.mesh(prim, material)? {
                    self.place(mesh, world, &path, collect, out)?;
                }
            }
            "PointInstancer" => {
                self.point_instancer(prim, &child_ctx, collect, out)?;
                // Prototypes beneath the instancer are only drawn through it.
                return Ok(());
            }
            _ => {}
        }

        if prim.is_instance().map_err(err)? {
            if let Some(proto) = prim.prototype().map_err(err)? {
                let proto_prim = self.stage.prim(proto);
                let children = proto_prim.children().map_err(err)?;
                for child in children {
                    self.visit(&child, &child_ctx, collect, out)?;
                }
                return Ok(());
            }
        }
        let children = prim.children().map_err(err)?;
        for child in children {
            self.visit(&child, &child_ctx, collect, out)?;
        }
        Ok(())
    }

    fn place(
        &mut self,
        mesh: usize,
        world: Affine,
        path: &sdf::Path,
        collect: bool,
        out: &mut Vec<Placement>,
    ) -> Result<(), UsdImportError> {
        if collect {
            out.push(Placement {
                mesh,
                transform: world,
                name: path.as_str().to_string(),
            });
            return Ok(());
        }
        self.add_instance(mesh, world, path.as_str())
    }

    fn add_instance(
        &mut self,
        mesh: usize,
        world: Affine,
        name: &str,
    ) -> Result<(), UsdImportError> {
        // A degenerate (zero-scale) placement cannot be seen; skipping it is what viewers do.
        let Some(inst) = Instance::new(mesh, world, Some(name.to_string())) else {
            return Ok(());
        };
        if self.scene.instances.len() >= self.limits.max_instances {
            return Err(UsdImportError::TooLarge {
                what: "instances",
                count: self.scene.instances.len() as u64 + 1,
                limit: self.limits.max_instances as u64,
            });
        }
        self.instanced_triangles += self.scene.meshes[mesh].triangles.len() as u64;
        self.estimate
            .add_placement(mesh, self.scene.meshes[mesh].triangles.len() as u64);
        self.estimate.check(self.limits.memory_budget)?;
        if self.instanced_triangles > self.limits.max_instanced_triangles as u64 {
            return Err(UsdImportError::TooLarge {
                what: "instanced triangles",
                count: self.instanced_triangles,
                limit: self.limits.max_instanced_triangles as u64,
            });
        }
        self.scene.instances.push(inst);
        Ok(())
    }

    fn point_instancer(
        &mut self,
        prim: &Prim,
        ctx: &Context,
        collect: bool,
        out: &mut Vec<Placement>,
    ) -> Result<(), UsdImportError> {
        let path = prim.path().clone();
        let err = |e: anyhow::Error| prim_error(&path, format!("{e:#}"));
        let targets = prim.relationship("prototypes").targets().map_err(err)?;
        let proto_indices = match prim.attribute("protoIndices").get::<Value>().map_err(err)? {
            Some(v) => int_array(&v)
                .ok_or_else(|| prim_error(&path, "protoIndices is not an int array"))?,
            None => return Ok(()),
        };
        let n = proto_indices.len();
        if n > self.limits.max_instances {
            return Err(UsdImportError::TooLarge {
                what: "point instances",
                count: n as u64,
                limit: self.limits.max_instances as u64,
            });
        }
        let positions = match prim.attribute("positions").get::<Value>().map_err(err)? {
            Some(v) => vec3_array(&v)
                .ok_or_else(|| prim_error(&path, "positions is not a vector array"))?,
            None => Vec::new(),
        };
        let orientations = match prim.attribute("orientations").get::<Value>().map_err(err)? {
            Some(v) => Some(v),
            None => prim
                .attribute("orientationsf")
                .get::<Value>()
                .map_err(err)?,
        };
        let orientations = match orientations {
            Some(v) => quat_array(&v)
                .ok_or_else(|| prim_error(&path, "orientations is not a quaternion array"))?,
            None => Vec::new(),
        };
        let scales = match prim.attribute("scales").get::<Value>().map_err(err)? {
            Some(v) => {
                vec3_array(&v).ok_or_else(|| prim_error(&path, "scales is not a vector array"))?
            }
            None => Vec::new(),
        };
        for (what, len) in [
            ("positions", positions.len()),
            ("orientations", orientations.len()),
            ("scales", scales.len()),
        ] {
            if len != 0 && len != n {
                return Err(prim_error(
                    &path,
                    format!("{what} has {len} entries but protoIndices has {n}"),
                ));
            }
        }
        if n > 0 && positions.is_empty() {
            return Err(prim_error(&path, "positions is required with protoIndices"));
        }

        // Each prototype's placements relative to the instancer, including the prototype
        // root's own transform as the most local part.
        let mut prototypes: Vec<Vec<Placement>> = Vec::with_capacity(targets.len());
        for target in &targets {
            let proto = self.stage.prim(target.clone());
            if !proto.is_valid().unwrap_or(false) {
                return Err(prim_error(
                    &path,
                    format!("prototype {} does not exist", target.as_str()),
                ));
            }
            let mut placements = Vec::new();
            let proto_ctx = Context {
                world: Affine::IDENTITY,
                material: ctx.material,
                depth: ctx.depth + 1,
                prototype_root: true,
            };
            self.visit(&proto, &proto_ctx, true, &mut placements)?;
            prototypes.push(placements);
        }

        for i in 0..n {
            let index = proto_indices[i];
            let Some(placements) = usize::try_from(index).ok().and_then(|i| prototypes.get(i))
            else {
                return Err(prim_error(
                    &path,
                    format!(
                        "protoIndices[{i}] = {index} but there are {} prototypes",
                        prototypes.len()
                    ),
                ));
            };
            let q = orientations.get(i).copied().unwrap_or([0.0, 0.0, 0.0, 1.0]);
            let s = scales.get(i).copied().unwrap_or([1.0, 1.0, 1.0]);
            let point = Affine::from_trs(positions[i], normalize_quat(q), s);
            let instance_world = ctx.world.mul(&point);
            for p in placements.clone() {
                let world = instance_world.mul(&p.transform);
                if !world.is_finite() {
                    return Err(prim_error(
                        &path,
                        format!("instance {i} transform is not finite"),
                    ));
                }
                let name = format!("{}[{i}]{}", path.as_str(), p.name);
                if collect {
                    out.push(Placement {
                        mesh: p.mesh,
                        transform: world,
                        name,
                    });
                } else {
                    self.add_instance(p.mesh, world, &name)?;
                }
            }
        }
        Ok(())
    }

    /// openusd silently composes nothing for a reference to a prim that does not exist; Pixar
    /// reports it, and so do we, since the model would render with parts missing.
    /// A dropped arc leaves no trace in the composed prim, so the prim's own specs in the root
    /// layer stack are read, plus every contributing spec when the prim did compose arcs.
    fn check_internal_references(&self, prim: &Prim, has_arcs: bool) -> Result<(), UsdImportError> {
        let path = prim.path();
        let mut sites: Vec<(String, sdf::Path)> = self
            .stage
            .layer_stack()
            .into_iter()
            .map(|layer| (layer, path.clone()))
            .collect();
        if has_arcs {
            sites.extend(
                prim.prim_stack()
                    .map_err(|e| prim_error(path, format!("{e:#}")))?,
            );
        }
        for (layer_id, spec_path) in sites {
            let Some(layer) = self.stage.layer(&layer_id) else {
                continue;
            };
            let data = layer.data();
            for field in ["references", "payload"] {
                let value = match data.try_field(&spec_path, field) {
                    Ok(Some(v)) => v.into_owned(),
                    _ => continue,
                };
                let targets: Vec<sdf::Path> = match value {
                    Value::ReferenceListOp(op) => op
                        .iter()
                        .filter(|r| r.asset_path.is_empty())
                        .map(|r| r.prim_path.clone())
                        .collect(),
                    Value::PayloadListOp(op) => op
                        .iter()
                        .filter(|p| p.asset_path.is_empty())
                        .map(|p| p.prim_path.clone())
                        .collect(),
                    _ => continue,
                };
                for target in targets {
                    if !target.is_empty()
                        && !data.has_spec(&target)
                        && !self.in_layer_stack(&target)
                    {
                        return Err(prim_error(
                            path,
                            format!(
                                "{} </{}> which does not exist",
                                if field == "references" {
                                    "references"
                                } else {
                                    "has a payload"
                                },
                                target.as_str().trim_start_matches('/')
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether any layer of the root layer stack has a spec at `path`.
    fn in_layer_stack(&self, path: &sdf::Path) -> bool {
        self.stage
            .layer_stack()
            .iter()
            .filter_map(|id| self.stage.layer(id))
            .any(|layer| layer.data().has_spec(path))
    }

    /// The material bound directly on `prim` (`material:binding`), converted on first use.
    fn bound_material(&mut self, prim: &Prim) -> Result<Option<u32>, UsdImportError> {
        let path = prim.path().clone();
        let err = |e: anyhow::Error| prim_error(&path, format!("{e:#}"));
        let mut target = None;
        for name in ["material:binding:full", "material:binding"] {
            let rel = prim.relationship(name);
            if let Some(t) = rel.targets().map_err(err)?.into_iter().next() {
                target = Some(t);
                break;
            }
        }
        let Some(target) = target else {
            return Ok(None);
        };
        let key = target.as_str().to_string();
        if let Some(&m) = self.materials.get(&key) {
            return Ok(Some(m));
        }
        if self.missing_materials.contains(&key) {
            return Ok(None);
        }
        if !self.stage.prim(target.clone()).is_valid().unwrap_or(false) {
            // Viewers draw the prim with its fallback look; so do we, and say so.
            self.warnings.push(format!(
                "prim {}: material:binding targets {key}, which does not exist; the prim's \
                 displayColor or the default material is used",
                path.as_str()
            ));
            self.missing_materials.insert(key);
            return Ok(None);
        }
        let read = self.reader.read(
            &target,
            &mut self.scene,
            &mut self.estimate,
            &mut self.warnings,
        )?;
        let idx = match read {
            Some(read) => {
                let idx = self.scene.add_material(read.material);
                self.material_uv_primvars.insert(idx, read.uv_primvars);
                if read.diffuse_from_display_color {
                    self.display_color_driven.insert(idx);
                }
                idx
            }
            None => {
                // A material we cannot read (no UsdPreviewSurface) still gets a neutral look.
                self.warnings.push(format!(
                    "material {key} has no UsdPreviewSurface surface; a neutral grey is used"
                ));
                self.scene.add_material(Material {
                    name: target.name().map(str::to_owned),
                    ..default_material()
                })
            }
        };
        self.materials.insert(key, idx);
        Ok(Some(idx))
    }

    fn display_color_material(&mut self, color: [f32; 3]) -> u32 {
        let key = color.map(f32::to_bits);
        if let Some(&m) = self.display_materials.get(&key) {
            return m;
        }
        let idx = self.scene.add_material(Material {
            name: Some("displayColor".into()),
            base_color: [color[0], color[1], color[2], 1.0],
            ..default_material()
        });
        self.display_materials.insert(key, idx);
        idx
    }

    /// Converts a Mesh prim once per inherited material; `None` when it has no faces.
    fn mesh(
        &mut self,
        prim: &Prim,
        inherited: Option<u32>,
    ) -> Result<Option<usize>, UsdImportError> {
        let key = (prim.path().as_str().to_string(), inherited);
        if let Some(&m) = self.meshes.get(&key) {
            return Ok(m);
        }
        let converted = self.convert_mesh(prim, inherited)?;
        let idx = match converted {
            Some(mesh) => {
                self.unique_triangles += mesh.triangles.len();
                if self.unique_triangles > self.limits.max_unique_triangles {
                    return Err(UsdImportError::TooLarge {
                        what: "distinct triangles",
                        count: self.unique_triangles as u64,
                        limit: self.limits.max_unique_triangles as u64,
                    });
                }
                Some(self.scene.add_mesh(mesh))
            }
            None => None,
        };
        self.meshes.insert(key, idx);
        Ok(idx)
    }

    /// The material a whole gprim is drawn with: its own binding, else its ancestors', else its
    /// `primvars:displayColor`, else the default. A bound material whose diffuse colour reads
    /// displayColor gets the gprim's colour.
    fn base_material(
        &mut self,
        prim: &Prim,
        inherited: Option<u32>,
    ) -> Result<u32, UsdImportError> {
        let path = prim.path().clone();
        let err = |e: anyhow::Error| prim_error(&path, format!("{e:#}"));
        let display_color = match primvar(prim, "primvars:displayColor").map_err(err)? {
            Some(p) => vec3_array(&p.value).and_then(|v| v.first().copied()),
            None => None,
        }
        .filter(|c| c.iter().all(|v| v.is_finite()));
        if let Some(m) = self.bound_material(prim)?.or(inherited) {
            if !self.display_color_driven.contains(&m) {
                return Ok(m);
            }
            let Some(color) = display_color else {
                return Ok(m);
            };
            let key = (m, color.map(f32::to_bits));
            if let Some(&tinted) = self.tinted_materials.get(&key) {
                return Ok(tinted);
            }
            let mut material = self.scene.materials[m as usize].clone();
            material.base_color[..3].copy_from_slice(&color.map(|v| v.clamp(0.0, 1.0)));
            let tinted = self.scene.add_material(material);
            if let Some(names) = self.material_uv_primvars.get(&m).cloned() {
                self.material_uv_primvars.insert(tinted, names);
            }
            self.tinted_materials.insert(key, tinted);
            return Ok(tinted);
        }
        if let Some(c) = display_color {
            return Ok(self.display_color_material(c));
        }
        Ok(self.default_material_index())
    }

    /// Tangents for a mesh whose materials read a normal map, from the normal map's UV set.
    fn add_tangents(&mut self, mesh: &mut Mesh) -> Result<(), UsdImportError> {
        let mut used: Vec<u32> = mesh.triangle_materials.clone();
        used.sort_unstable();
        used.dedup();
        let normal_set = used.iter().find_map(|&m| {
            let material = &self.scene.materials[m as usize];
            material
                .normal_texture
                .as_ref()
                .or(material
                    .clearcoat
                    .as_ref()
                    .and_then(|c| c.normal_texture.as_ref()))
                .map(|t| t.uv_set)
        });
        if let Some(set) = normal_set {
            if mesh.uv_set(set).is_some() {
                self.estimate.add_vertex_extras(
                    mesh.positions.len() as u64,
                    VertexExtras {
                        second_uv_set: mesh.uvs1.is_some(),
                        tangents: true,
                    },
                );
                self.estimate.check(self.limits.memory_budget)?;
                mesh.generate_tangents(set);
            }
        }
        Ok(())
    }

    /// Tessellates an implicit surface (`Cube`, `Sphere`, ...) with its authored dimensions or
    /// the schema's fallbacks.
    fn convert_gprim(
        &mut self,
        prim: &Prim,
        type_name: &str,
        inherited: Option<u32>,
    ) -> Result<Option<Mesh>, UsdImportError> {
        let path = prim.path().clone();
        let err = |e: anyhow::Error| prim_error(&path, format!("{e:#}"));
        let number = |name: &str, fallback: f64| -> Result<f64, UsdImportError> {
            match prim.attribute(name).get::<Value>().map_err(err)? {
                Some(v) => {
                    scalar(&v).ok_or_else(|| prim_error(&path, format!("{name} is not a number")))
                }
                None => Ok(fallback),
            }
        };
        let axis = match token_attr(prim, "axis").map_err(err)? {
            None => Axis::Z,
            Some(t) => Axis::from_token(&t).ok_or_else(|| {
                prim_error(&path, format!("axis {t:?} must be \"X\", \"Y\" or \"Z\""))
            })?,
        };
        let shape = match type_name {
            "Cube" => Gprim::Cube {
                size: number("size", 2.0)?,
            },
            "Sphere" => Gprim::Sphere {
                radius: number("radius", 1.0)?,
            },
            "Cylinder" => {
                let radius = number("radius", 1.0)?;
                Gprim::Cylinder {
                    radius_bottom: radius,
                    radius_top: radius,
                    height: number("height", 2.0)?,
                    axis,
                }
            }
            "Cylinder_1" => Gprim::Cylinder {
                radius_bottom: number("radiusBottom", 1.0)?,
                radius_top: number("radiusTop", 1.0)?,
                height: number("height", 2.0)?,
                axis,
            },
            "Cone" => Gprim::Cone {
                radius: number("radius", 1.0)?,
                height: number("height", 2.0)?,
                axis,
            },
            "Capsule" => {
                let radius = number("radius", 0.5)?;
                Gprim::Capsule {
                    radius_bottom: radius,
                    radius_top: radius,
                    height: number("height", 1.0)?,
                    axis,
                }
            }
            "Capsule_1" => Gprim::Capsule {
                radius_bottom: number("radiusBottom", 0.5)?,
                radius_top: number("radiusTop", 0.5)?,
                height: number("height", 1.0)?,
                axis,
            },
            "Plane" => Gprim::Plane {
                width: number("width", 2.0)?,
                length: number("length", 2.0)?,
                axis,
            },
            other => {
                return Err(prim_error(
                    &path,
                    format!("{other} is not an implicit surface"),
                ))
            }
        };
        if !shape.is_valid() {
            return Err(prim_error(
                &path,
                format!("{type_name} dimensions must be finite and not negative: {shape:?}"),
            ));
        }
        let tessellation = shape.tessellate();
        self.estimate.add_mesh(
            tessellation.positions.len() as u64,
            tessellation.triangles.len() as u64,
        );
        self.estimate.check(self.limits.memory_budget)?;
        let material = self.base_material(prim, inherited)?;
        let left_handed =
            token_attr(prim, "orientation").map_err(err)?.as_deref() == Some("leftHanded");
        let mut mesh = Mesh {
            name: path.name().map(str::to_owned),
            positions: tessellation.positions,
            normals: Some(tessellation.normals),
            triangle_materials: vec![material; tessellation.triangles.len()],
            triangles: tessellation.triangles,
            ..Mesh::default()
        };
        if left_handed {
            // The shape is the same; only which side is the front changes.
            for tri in &mut mesh.triangles {
                tri.swap(1, 2);
            }
        }
        if mesh.triangles.is_empty() {
            return Ok(None);
        }
        mesh.update_bounds();
        Ok(Some(mesh))
    }

    fn convert_mesh(
        &mut self,
        prim: &Prim,
        inherited: Option<u32>,
    ) -> Result<Option<Mesh>, UsdImportError> {
        let path = prim.path().clone();
        let type_name = prim
            .type_name()
            .map_err(|e| prim_error(&path, format!("{e:#}")))?;
        if let Some(t) = type_name.as_ref().map(|t| t.as_str()) {
            if t != "Mesh" {
                return self.convert_gprim(prim, t, inherited);
            }
        }
        let err = |e: anyhow::Error| prim_error(&path, format!("{e:#}"));
        let fail = |reason: String| prim_error(&path, reason);
        let max_vertices = self.limits.max_vertices_per_accessor;

        let points = match prim.attribute("points").get::<Value>().map_err(err)? {
            Some(v) => vec3_array(&v).ok_or_else(|| fail("points is not a point array".into()))?,
            None => return Ok(None),
        };
        let counts = match prim
            .attribute("faceVertexCounts")
            .get::<Value>()
            .map_err(err)?
        {
            Some(v) => {
                int_array(&v).ok_or_else(|| fail("faceVertexCounts is not an int array".into()))?
            }
            None => return Ok(None),
        };
        let indices = match prim
            .attribute("faceVertexIndices")
            .get::<Value>()
            .map_err(err)?
        {
            Some(v) => {
                int_array(&v).ok_or_else(|| fail("faceVertexIndices is not an int array".into()))?
            }
            None => return Ok(None),
        };
        for (what, len) in [
            ("points", points.len()),
            ("faceVertexIndices", indices.len()),
        ] {
            if len > max_vertices {
                return Err(UsdImportError::TooLarge {
                    what: if what == "points" {
                        "mesh points"
                    } else {
                        "mesh face-vertex indices"
                    },
                    count: len as u64,
                    limit: max_vertices as u64,
                });
            }
        }
        if let Some(i) = points.iter().position(|p| !p.iter().all(|c| c.is_finite())) {
            return Err(fail(format!("points[{i}] is not finite")));
        }
        let mut total = 0usize;
        for (f, &c) in counts.iter().enumerate() {
            if c < 0 {
                return Err(fail(format!("faceVertexCounts[{f}] = {c} is negative")));
            }
            total += c as usize;
        }
        if total != indices.len() {
            return Err(fail(format!(
                "faceVertexCounts sum to {total} but faceVertexIndices has {}",
                indices.len()
            )));
        }
        let triangles: u64 = counts.iter().map(|&c| (c as u64).saturating_sub(2)).sum();
        self.estimate.add_mesh(points.len() as u64, triangles);
        self.estimate.check(self.limits.memory_budget)?;
        if let Some((i, &bad)) = indices
            .iter()
            .enumerate()
            .find(|(_, &v)| v < 0 || v as usize >= points.len())
        {
            return Err(fail(format!(
                "faceVertexIndices[{i}] = {bad} is out of range for {} points",
                points.len()
            )));
        }
        let holes: std::collections::HashSet<i32> =
            match prim.attribute("holeIndices").get::<Value>().map_err(err)? {
                Some(v) => int_array(&v).unwrap_or_default().into_iter().collect(),
                None => Default::default(),
            };
        let left_handed =
            token_attr(prim, "orientation").map_err(err)?.as_deref() == Some("leftHanded");
        let subdivided = token_attr(prim, "subdivisionScheme")
            .map_err(err)?
            .as_deref()
            != Some("none");

        let normals = {
            let pv = primvar(prim, "primvars:normals").map_err(err)?;
            match pv {
                Some(p) => Some(p),
                None => primvar(prim, "normals").map_err(err)?,
            }
        };
        let normals = match normals {
            Some(p) => Some(Attr {
                values: vec3_array(&p.value)
                    .ok_or_else(|| fail("normals is not a vector array".into()))?,
                indices: p.indices,
                interpolation: p.interpolation.unwrap_or(Interpolation::Vertex),
            }),
            None => None,
        };
        // The material names the primvars its textures read (UV sets 0 and 1); `st` otherwise.
        let base = self.base_material(prim, inherited)?;
        let uv_names = self
            .material_uv_primvars
            .get(&base)
            .filter(|names| !names.is_empty())
            .cloned()
            .unwrap_or_else(|| vec!["st".to_owned()]);
        let mut uv_sets = Vec::with_capacity(uv_names.len());
        for name in &uv_names {
            let attr = format!("primvars:{name}");
            let set = match primvar(prim, &attr).map_err(err)? {
                Some(p) => Some(Attr {
                    values: vec2_array(&p.value)
                        .ok_or_else(|| fail(format!("{attr} is not a 2d vector array")))?,
                    indices: p.indices,
                    interpolation: p.interpolation.unwrap_or(Interpolation::Vertex),
                }),
                None => None,
            };
            if let Some(t) = &set {
                t.check(points.len(), counts.len(), indices.len())
                    .map_err(|r| fail(format!("{attr}: {r}")))?;
            }
            uv_sets.push(set);
        }
        let mut uv_sets = uv_sets.into_iter();
        let uvs = uv_sets.next().flatten();
        let uvs1 = uv_sets.next().flatten();
        if let Some(n) = &normals {
            n.check(points.len(), counts.len(), indices.len())
                .map_err(|r| fail(format!("normals: {r}")))?;
        }

        // Materials: the mesh's own binding or its ancestors' (`base`), then per-face subsets.
        let mut face_material: Option<Vec<u32>> = None;
        for child in prim.children().map_err(err)? {
            let is_subset = child
                .type_name()
                .map_err(|e| prim_error(child.path(), format!("{e:#}")))?
                .is_some_and(|t| t.as_str() == "GeomSubset");
            if !is_subset {
                continue;
            }
            let cerr = |e: anyhow::Error| prim_error(child.path(), format!("{e:#}"));
            if token_attr(&child, "familyName").map_err(cerr)?.as_deref() != Some("materialBind") {
                continue;
            }
            if token_attr(&child, "elementType")
                .map_err(cerr)?
                .as_deref()
                .unwrap_or("face")
                != "face"
            {
                continue;
            }
            let Some(m) = self.bound_material(&child)? else {
                continue;
            };
            let subset_indices = match child.attribute("indices").get::<Value>().map_err(cerr)? {
                Some(v) => int_array(&v)
                    .ok_or_else(|| prim_error(child.path(), "indices is not an int array"))?,
                None => continue,
            };
            let faces = face_material.get_or_insert_with(|| vec![base; counts.len()]);
            for &f in &subset_indices {
                let slot = usize::try_from(f)
                    .ok()
                    .and_then(|f| faces.get_mut(f))
                    .ok_or_else(|| {
                        prim_error(
                            child.path(),
                            format!("face index {f} is out of range for {} faces", counts.len()),
                        )
                    })?;
                *slot = m;
            }
        }

        // Vertices: shared points when every attribute is per point, otherwise one vertex per
        // distinct (point, normal, uv) combination of face corners.
        let simple = normals.as_ref().is_none_or(Attr::is_per_point)
            && uvs.as_ref().is_none_or(Attr::is_per_point)
            && uvs1.as_ref().is_none_or(Attr::is_per_point);
        let flip = |t: &Attr<[f32; 2]>| -> Vec<[f32; 2]> {
            t.values.iter().map(|&[s, t]| [s, 1.0 - t]).collect()
        };
        let mut mesh = Mesh {
            name: path.name().map(str::to_owned),
            ..Mesh::default()
        };
        let mut corner_vertex: Vec<u32> = Vec::with_capacity(indices.len());
        if simple {
            mesh.positions = points.clone();
            mesh.normals = normals.as_ref().map(|n| n.values.clone());
            mesh.uvs = uvs.as_ref().map(flip);
            mesh.uvs1 = uvs1.as_ref().map(flip);
            corner_vertex.extend(indices.iter().map(|&i| i as u32));
        } else {
            let mut map: HashMap<(u32, u32, u32, u32), u32> = HashMap::new();
            let mut positions = Vec::new();
            let mut out_normals = Vec::new();
            let mut out_uvs = Vec::new();
            let mut out_uvs1 = Vec::new();
            let mut corner = 0usize;
            for (face, &c) in counts.iter().enumerate() {
                for _ in 0..c {
                    let point = indices[corner] as usize;
                    let ni = normals
                        .as_ref()
                        .map_or(0, |n| n.source(point, face, corner));
                    let ti = uvs.as_ref().map_or(0, |t| t.source(point, face, corner));
                    let t1i = uvs1.as_ref().map_or(0, |t| t.source(point, face, corner));
                    let key = (point as u32, ni as u32, ti as u32, t1i as u32);
                    let v = *map.entry(key).or_insert_with(|| {
                        positions.push(points[point]);
                        if let Some(n) = &normals {
                            out_normals.push(n.values[ni]);
                        }
                        if let Some(t) = &uvs {
                            let [s, tt] = t.values[ti];
                            out_uvs.push([s, 1.0 - tt]);
                        }
                        if let Some(t) = &uvs1 {
                            let [s, tt] = t.values[t1i];
                            out_uvs1.push([s, 1.0 - tt]);
                        }
                        (positions.len() - 1) as u32
                    });
                    corner_vertex.push(v);
                    corner += 1;
                }
            }
            mesh.positions = positions;
            mesh.normals = normals.is_some().then_some(out_normals);
            mesh.uvs = uvs.is_some().then_some(out_uvs);
            mesh.uvs1 = uvs1.is_some().then_some(out_uvs1);
        }
        if mesh.positions.len() > u32::MAX as usize {
            return Err(UsdImportError::TooLarge {
                what: "vertices in one mesh",
                count: mesh.positions.len() as u64,
                limit: u32::MAX as u64,
            });
        }

        let mut corner = 0usize;
        for (face, &c) in counts.iter().enumerate() {
            let c = c as usize;
            let verts = &corner_vertex[corner..corner + c];
            corner += c;
            if c < 3 || holes.contains(&(face as i32)) {
                continue;
            }
            if mesh.triangles.len() + (c - 2) > self.limits.max_unique_triangles {
                return Err(UsdImportError::TooLarge {
                    what: "triangles in one mesh",
                    count: (mesh.triangles.len() + c - 2) as u64,
                    limit: self.limits.max_unique_triangles as u64,
                });
            }
            let m = face_material.as_ref().map_or(base, |f| f[face]);
            for k in 1..c - 1 {
                let tri = if left_handed {
                    [verts[0], verts[k + 1], verts[k]]
                } else {
                    [verts[0], verts[k], verts[k + 1]]
                };
                mesh.triangles.push(tri);
                mesh.triangle_materials.push(m);
            }
        }
        if mesh.triangles.is_empty() {
            return Ok(None);
        }
        if let Some(normals) = &mut mesh.normals {
            for n in normals.iter_mut() {
                let v = Vec3::from_array(*n);
                *n = if v.is_finite() && v.length_squared() > 0.0 {
                    v.normalized().to_array()
                } else {
                    [0.0, 1.0, 0.0]
                };
            }
        } else if subdivided {
            // A subdivision surface without normals is meant to look smooth.
            mesh.normals = Some(generate_smooth_normals(&mesh.positions, &mesh.triangles));
        }
        for uvs in [&mut mesh.uvs, &mut mesh.uvs1].into_iter().flatten() {
            for uv in uvs.iter_mut() {
                *uv = uv.map(|v| if v.is_finite() { v } else { 0.0 });
            }
        }
        self.add_tangents(&mut mesh)?;
        mesh.update_bounds();
        Ok(Some(mesh))
    }

    fn default_material_index(&mut self) -> u32 {
        if let Some(&m) = self.materials.get("") {
            return m;
        }
        let idx = self.scene.add_material(default_material());
        self.materials.insert(String::new(), idx);
        idx
    }
}

/// The local transform and whether the prim resets its parent's transform stack.
fn local_transform(prim: &Prim) -> anyhow::Result<(Affine, bool)> {
    // Any prim may carry xformOps; reading them does not depend on the schema type.
    let x = XformableView(prim.clone());
    if x.xform_op_order()?.is_none() {
        return Ok((Affine::IDENTITY, false));
    }
    let m =
        x.local_to_parent_transform(openusd::usd::TimeCode::new(prim.stage().start_time_code()))?;
    Ok((affine_from_usd(&m), x.resets_xform_stack()?))
}

/// A Xformable view over any prim.
#[derive(Clone)]
struct XformableView(Prim);

impl openusd::usd::SchemaBase for XformableView {
    const KIND: openusd::usd::SchemaKind = openusd::usd::SchemaKind::AbstractTyped;

    fn prim(&self) -> &Prim {
        &self.0
    }
}
impl openusd::schemas::geom::Imageable for XformableView {}
impl Xformable for XformableView {}

/// USD matrices are row-major with row vectors (translation in the last row).
fn affine_from_usd(m: &gf::Matrix4d) -> Affine {
    let a = &m.0;
    let mut cols = [[0.0f32; 4]; 4];
    for (r, col) in cols.iter_mut().enumerate() {
        for (c, v) in col.iter_mut().enumerate() {
            *v = a[r * 4 + c] as f32;
        }
    }
    Affine::from_cols_4x4(cols)
}

fn token_attr(prim: &Prim, name: &str) -> anyhow::Result<Option<String>> {
    Ok(match prim.attribute(name).get::<Value>()? {
        Some(Value::Token(t)) => Some(t.as_str().to_string()),
        Some(Value::String(s)) => Some(s),
        _ => None,
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Interpolation {
    Constant,
    Uniform,
    Vertex,
    FaceVarying,
}

struct Primvar {
    value: Value,
    indices: Option<Vec<i32>>,
    interpolation: Option<Interpolation>,
}

fn primvar(prim: &Prim, name: &str) -> anyhow::Result<Option<Primvar>> {
    let attr = prim.attribute(name);
    let Some(value) = attr.get::<Value>()? else {
        return Ok(None);
    };
    let interpolation = match attr.get_metadata::<Value>("interpolation")? {
        Some(Value::Token(t)) => match t.as_str() {
            "constant" => Some(Interpolation::Constant),
            "uniform" => Some(Interpolation::Uniform),
            "vertex" | "varying" => Some(Interpolation::Vertex),
            "faceVarying" => Some(Interpolation::FaceVarying),
            _ => None,
        },
        _ => None,
    };
    let indices = match prim.attribute(format!("{name}:indices")).get::<Value>()? {
        Some(v) => int_array(&v),
        None => None,
    };
    Ok(Some(Primvar {
        value,
        indices,
        interpolation,
    }))
}

/// A decoded mesh attribute with its interpolation.
struct Attr<T> {
    values: Vec<T>,
    indices: Option<Vec<i32>>,
    interpolation: Interpolation,
}

impl<T> Attr<T> {
    fn is_per_point(&self) -> bool {
        self.interpolation == Interpolation::Vertex && self.indices.is_none()
    }

    /// Checks that every element the mesh will look up exists.
    fn check(&self, points: usize, faces: usize, corners: usize) -> Result<(), String> {
        let needed = match self.interpolation {
            Interpolation::Constant => 1,
            Interpolation::Uniform => faces,
            Interpolation::Vertex => points,
            Interpolation::FaceVarying => corners,
        };
        match &self.indices {
            Some(idx) => {
                if idx.len() < needed {
                    return Err(format!("{} indices for {needed} elements", idx.len()));
                }
                if let Some(&bad) = idx
                    .iter()
                    .find(|&&i| i < 0 || i as usize >= self.values.len())
                {
                    return Err(format!(
                        "index {bad} out of range for {} values",
                        self.values.len()
                    ));
                }
            }
            None => {
                if self.values.len() < needed {
                    return Err(format!(
                        "{} values for {needed} elements",
                        self.values.len()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The value index for one face corner.
    fn source(&self, point: usize, face: usize, corner: usize) -> usize {
        let element = match self.interpolation {
            Interpolation::Constant => 0,
            Interpolation::Uniform => face,
            Interpolation::Vertex => point,
            Interpolation::FaceVarying => corner,
        };
        match &self.indices {
            Some(idx) => idx[element] as usize,
            None => element,
        }
    }
}

fn scalar(v: &Value) -> Option<f64> {
    match v {
        Value::Double(d) => Some(*d),
        Value::Float(f) => Some(*f as f64),
        Value::Half(h) => Some(h.to_f32() as f64),
        Value::Int(i) => Some(*i as f64),
        Value::Int64(i) => Some(*i as f64),
        Value::Uint(i) => Some(*i as f64),
        _ => None,
    }
}

fn int_array(v: &Value) -> Option<Vec<i32>> {
    match v {
        Value::IntVec(a) => Some(a.clone()),
        Value::Int64Vec(a) => a.iter().map(|&x| i32::try_from(x).ok()).collect(),
        Value::UintVec(a) => a.iter().map(|&x| i32::try_from(x).ok()).collect(),
        _ => None,
    }
}

fn vec3_array(v: &Value) -> Option<Vec<[f32; 3]>> {
    match v {
        Value::Vec3fVec(a) => Some(a.iter().map(|p| [p.x, p.y, p.z]).collect()),
        Value::Vec3dVec(a) => Some(
            a.iter()
                .map(|p| [p.x as f32, p.y as f32, p.z as f32])
                .collect(),
        ),
        Value::Vec3hVec(a) => Some(
            a.iter()
                .map(|p| [p.x.to_f32(), p.y.to_f32(), p.z.to_f32()])
                .collect(),
        ),
        Value::Vec3f(p) => Some(vec![[p.x, p.y, p.z]]),
        Value::Vec3d(p) => Some(vec![[p.x as f32, p.y as f32, p.z as f32]]),
        _ => None,
    }
}

fn vec2_array(v: &Value) -> Option<Vec<[f32; 2]>> {
    match v {
        Value::Vec2fVec(a) => Some(a.iter().map(|p| [p.x, p.y]).collect()),
        Value::Vec2dVec(a) => Some(a.iter().map(|p| [p.x as f32, p.y as f32]).collect()),
        Value::Vec2hVec(a) => Some(a.iter().map(|p| [p.x.to_f32(), p.y.to_f32()]).collect()),
        _ => None,
    }
}

/// Quaternions as `[x, y, z, w]`.
fn quat_array(v: &Value) -> Option<Vec<[f32; 4]>> {
    match v {
        Value::QuathVec(a) => Some(
            a.iter()
                .map(|q| [q.x.to_f32(), q.y.to_f32(), q.z.to_f32(), q.w.to_f32()])
                .collect(),
        ),
        Value::QuatfVec(a) => Some(a.iter().map(|q| [q.x, q.y, q.z, q.w]).collect()),
        Value::QuatdVec(a) => Some(
            a.iter()
                .map(|q| [q.x as f32, q.y as f32, q.z as f32, q.w as f32])
                .collect(),
        ),
        _ => None,
    }
}

fn normalize_quat(q: [f32; 4]) -> [f32; 4] {
    let len = q.iter().map(|v| v * v).sum::<f32>().sqrt();
    if len > 0.0 && len.is_finite() {
        q.map(|v| v / len)
    } else {
        [0.0, 0.0, 0.0, 1.0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_encodings() {
        assert_eq!(UsdEncoding::sniff(b"#usda 1.0\n"), Some(UsdEncoding::Usda));
        assert_eq!(UsdEncoding::sniff(b"PXR-USDC\0"), Some(UsdEncoding::Usdc));
        assert_eq!(
            UsdEncoding::sniff(b"PK\x03\x04rest"),
            Some(UsdEncoding::Usdz)
        );
        assert_eq!(UsdEncoding::sniff(b"glTF"), None);
    }

    #[test]
    fn join_relative_folds_dots() {
        assert_eq!(join_relative("a/b", "../c/./d.usda"), "a/c/d.usda");
        assert_eq!(join_relative("a", "/x/y"), "x/y");
        assert_eq!(join_relative("a", "../../x.usda"), "../x.usda");
    }
}
