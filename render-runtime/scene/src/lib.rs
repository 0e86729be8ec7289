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
pub mod export;
pub mod gltf;
pub mod math;
pub mod usd;
pub mod usd_isolate;
pub mod usd_write;
pub mod usdc_guard;

pub use budget::{MemoryEstimate, OverBudget};
pub use gltf::{import_gltf, import_gltf_with_limits, ImportError, ImportLimits, DEFAULT_MEMORY_BUDGET};
pub use usd::{import_usd, import_usd_with_limits, UsdEncoding, UsdImportError};
pub use usd_write::{export_usda, export_usdz, UsdInstancing, UsdWriteOptions};

use crate::math::{Aabb, Affine, Vec3};

/// How a material's alpha is interpreted (glTF `alphaMode`).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum AlphaMode {
    #[default]
    Opaque,
    /// Alpha below the cutoff is fully transparent, above fully opaque.
    Mask { cutoff: f32 },
    /// Alpha is coverage: rays pass through with probability `1 - alpha`.
    Blend,
}

/// A metallic-roughness material (glTF core model).
#[derive(Clone, Debug, PartialEq)]
pub struct Material {
    pub name: Option<String>,
    /// Linear RGBA base colour factor.
    pub base_color: [f32; 4],
    /// Index into [`Scene::textures`] of the sRGB base colour texture (UV set 0).
    pub base_color_texture: Option<usize>,
    pub metallic: f32,
    pub roughness: f32,
    /// Linear emitted radiance (factor times emissive strength).
    pub emissive: [f32; 3],
    pub alpha_mode: AlphaMode,
    /// Weight of the dielectric specular coat over the diffuse base; 1 is glTF's default
    /// (F0 = 0.04), 0 turns the material into a pure Lambertian reflector.
    pub specular: f32,
}

impl Default for Material {
    fn default() -> Self {
        Material {
            name: None,
            base_color: [1.0, 1.0, 1.0, 1.0],
            base_color_texture: None,
            metallic: 1.0,
            roughness: 1.0,
            emissive: [0.0; 3],
            alpha_mode: AlphaMode::Opaque,
            specular: 1.0,
        }
    }
}

impl Material {
    /// A plain diffuse material of the given linear albedo, with no specular coat.
    pub fn lambertian(albedo: [f32; 3]) -> Material {
        Material {
            base_color: [albedo[0], albedo[1], albedo[2], 1.0],
            metallic: 0.0,
            roughness: 1.0,
            specular: 0.0,
            ..Material::default()
        }
    }

    /// A material is opaque when no ray may pass through it.
    pub fn is_opaque(&self) -> bool {
        match self.alpha_mode {
            AlphaMode::Opaque => true,
            AlphaMode::Mask { .. } | AlphaMode::Blend => false,
        }
    }
}

/// A decoded texture in linear RGBA float.
#[derive(Clone, Debug, PartialEq)]
pub struct Texture {
    pub width: u32,
    pub height: u32,
    pub texels: Vec<[f32; 4]>,
}

impl Texture {
    /// Bilinear lookup with repeat wrapping.
    pub fn sample(&self, uv: [f32; 2]) -> [f32; 4] {
        let (w, h) = (self.width as f32, self.height as f32);
        let x = uv[0] * w - 0.5;
        let y = uv[1] * h - 0.5;
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        let wrap = |v: f32, n: u32| -> usize { (v as i64).rem_euclid(n as i64) as usize };
        let (xa, xb) = (wrap(x0, self.width), wrap(x0 + 1.0, self.width));
        let (ya, yb) = (wrap(y0, self.height), wrap(y0 + 1.0, self.height));
        let t = |x: usize, y: usize| self.texels[y * self.width as usize + x];
        let (a, b, c, d) = (t(xa, ya), t(xb, ya), t(xa, yb), t(xb, yb));
        let mut out = [0.0; 4];
        for i in 0..4 {
            let top = a[i] + (b[i] - a[i]) * fx;
            let bottom = c[i] + (d[i] - c[i]) * fx;
            out[i] = top + (bottom - top) * fy;
        }
        out
    }
}

/// A triangle mesh, stored once and placed by any number of [`Instance`]s.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mesh {
    pub name: Option<String>,
    pub positions: Vec<[f32; 3]>,
    /// Per-vertex shading normals; `None` means flat shading from the geometric normal.
    pub normals: Option<Vec<[f32; 3]>>,
    pub uvs: Option<Vec<[f32; 2]>>,
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
