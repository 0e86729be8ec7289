//! The scene model and model I/O: meshes stored once, instances that place them, materials and
//! textures; the GLB/glTF and USD importers, the GLB and USD writers, import limits and the
//! memory budget, and USD import in an isolated child process.
//!
//! Importers (`gltf`, `usd`) produce a [`Scene`]; the writers (`export`, `usd_write`) write one
//! back, so procedural test models travel through the same import path as user files.
//!
//! Architecture invariant: no Embree, no rayon, no renderer (a dependency test holds this), so
//! a function that only reads and writes models (convert) links none of them.

pub mod budget;
mod draco;
pub mod export;
mod glb_textures;
pub mod gltf;
pub mod gltf_decode;
pub mod gltf_material;
pub mod material;
pub mod math;
mod meshopt_decode;
pub mod model_files;
pub mod resources;
pub mod tangents;
pub mod texture;
pub mod usd;
pub mod usd_files;
pub mod usd_gprims;
pub mod usd_isolate;
pub mod usd_material;
pub mod usd_write;
pub mod usdc_guard;

pub use budget::{MemoryEstimate, OverBudget, VertexExtras};
pub use gltf::{
    import_gltf, import_gltf_with_limits, import_gltf_with_resources, ImportError, ImportLimits,
    DEFAULT_MEMORY_BUDGET,
};
pub use material::{
    AlphaMode, Channel, Clearcoat, Filter, Material, Sheen, TextureRef, TextureUse, Transmission,
    UvTransform, Volume, Wrap,
};
pub use resources::{DirResources, MemoryResources, NoResources, ResourceLimits, Resources};
pub use texture::{ColorSpace, Texture};
pub use usd::{import_usd, import_usd_with_limits, UsdEncoding, UsdImportError};
pub use usd_write::{export_usda, export_usdz, UsdInstancing, UsdWriteOptions};

use crate::math::{Aabb, Affine, Vec3};

/// A triangle mesh, stored once and placed by any number of [`Instance`]s.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mesh {
    pub name: Option<String>,
    pub positions: Vec<[f32; 3]>,
    /// Per-vertex shading normals; `None` means flat shading from the geometric normal.
    pub normals: Option<Vec<[f32; 3]>>,
    /// The first UV set (glTF TEXCOORD_0, USD st), in glTF's convention (v down the image).
    pub uvs: Option<Vec<[f32; 2]>>,
    /// The second UV set (glTF TEXCOORD_1), for textures whose [`TextureRef::uv_set`] is 1.
    pub uvs1: Option<Vec<[f32; 2]>>,
    /// Per-vertex tangents `[x, y, z, w]` for normal mapping: xyz along increasing u of the
    /// normal map's UV set, `w` the sign of the bitangent `cross(n, t) * w` (glTF TANGENT, or
    /// [`Mesh::generate_tangents`]).
    pub tangents: Option<Vec<[f32; 4]>>,
    pub triangles: Vec<[u32; 3]>,
    /// Material index per triangle (glTF primitives are concatenated into one mesh).
    pub triangle_materials: Vec<u32>,
    /// Object-space bounds.
    pub bounds: Aabb,
}

impl Mesh {
    pub fn triangle_count(&self) -> usize {
        self.triangles.len()
    }

    /// The UV set `set` (0 or 1), if the mesh has it.
    pub fn uv_set(&self, set: u32) -> Option<&[[f32; 2]]> {
        match set {
            0 => self.uvs.as_deref(),
            1 => self.uvs1.as_deref(),
            _ => None,
        }
    }

    /// Fills [`Mesh::tangents`] from UV set `set` when the mesh has none (see [`tangents`]).
    /// Does nothing without that UV set.
    pub fn generate_tangents(&mut self, set: u32) {
        if self.tangents.is_some() {
            return;
        }
        let Some(uvs) = self.uv_set(set) else {
            return;
        };
        self.tangents = Some(tangents::generate_tangents(
            &self.positions,
            self.normals.as_deref(),
            uvs,
            &self.triangles,
        ));
    }

    /// Recomputes [`Mesh::bounds`] from the positions.
    pub fn update_bounds(&mut self) {
        let mut b = Aabb::EMPTY;
        for p in &self.positions {
            b.grow(Vec3::from_array(*p));
        }
        self.bounds = b;
    }
}

/// One placement of a mesh in the world.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    /// The glTF node name, if any (for error messages and debugging).
    pub name: Option<String>,
    pub mesh: usize,
    /// Object-to-world transform.
    pub transform: Affine,
    /// Inverse transpose of the transform's 3x3 block, for normals.
    pub normal_matrix: [[f32; 3]; 3],
}

impl Instance {
    /// Creates an instance; returns `None` for a singular or non-finite transform.
    pub fn new(mesh: usize, transform: Affine, name: Option<String>) -> Option<Instance> {
        if !transform.is_finite() {
            return None;
        }
        let normal_matrix = transform.normal_matrix()?;
        Some(Instance {
            name,
            mesh,
            transform,
            normal_matrix,
        })
    }
}

/// A whole scene ready for acceleration and rendering.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scene {
    pub meshes: Vec<Mesh>,
    pub instances: Vec<Instance>,
    pub materials: Vec<Material>,
    pub textures: Vec<Texture>,
}

impl Scene {
    /// World-space bounds over all instances.
    pub fn bounds(&self) -> Aabb {
        self.instances.iter().fold(Aabb::EMPTY, |acc, inst| {
            acc.union(&self.meshes[inst.mesh].bounds.transformed(&inst.transform))
        })
    }

    /// Triangles as rendered, counting every instance.
    pub fn instanced_triangle_count(&self) -> usize {
        self.instances
            .iter()
            .map(|i| self.meshes[i.mesh].triangle_count())
            .sum()
    }

    /// Triangles stored once per distinct mesh.
    pub fn unique_triangle_count(&self) -> usize {
        self.meshes.iter().map(Mesh::triangle_count).sum()
    }

    /// True when every material is opaque, which lets shadow rays use the fast occlusion query.
    pub fn all_opaque(&self) -> bool {
        self.materials.iter().all(Material::is_opaque)
    }

    /// Adds a mesh and returns its index (computing bounds and defaulting materials to 0).
    pub fn add_mesh(&mut self, mut mesh: Mesh) -> usize {
        if mesh.triangle_materials.len() != mesh.triangles.len() {
            mesh.triangle_materials = vec![0; mesh.triangles.len()];
        }
        mesh.update_bounds();
        self.meshes.push(mesh);
        self.meshes.len() - 1
    }

    /// Adds a material and returns its index.
    pub fn add_material(&mut self, material: Material) -> u32 {
        self.materials.push(material);
        (self.materials.len() - 1) as u32
    }

    /// Places `mesh` with `transform`.
    ///
    /// # Panics
    /// Panics on a singular transform; importers use [`Instance::new`] and report an error instead.
    pub fn add_instance(&mut self, mesh: usize, transform: Affine, name: Option<String>) {
        let inst =
            Instance::new(mesh, transform, name).expect("instance transform must be invertible");
        self.instances.push(inst);
    }
}
