//! The memory budget: what a scene will cost once imported and accelerated, estimated from the
//! counts a file declares, so that an oversized model fails with a clear error before its
//! geometry, textures or acceleration structure are allocated.
//!
//! The estimate is deliberately conservative (it over-counts rather than under-counts). It follows
//! how the scene is actually stored: each distinct mesh once (positions, normals, UVs, indices),
//! placements either baked into the top-level geometry (meshes placed fewer than
//! [`INSTANCE_MIN_USES`] times, see `accel::AccelOptions`) or referencing one shared BVH, and
//! textures as linear RGBA floats.

use std::collections::HashMap;

/// Meshes placed at least this many times become instances of one shared BVH (the default of
/// `accel::AccelOptions::instance_min_uses`).
pub const INSTANCE_MIN_USES: u64 = 8;

/// Position, shading normal and UV of one stored vertex.
const VERTEX_BYTES: u64 = 12 + 12 + 8;
/// A second UV set of one vertex.
const SECOND_UV_BYTES: u64 = 8;
/// A tangent (xyz and handedness) of one vertex, read from the file or generated.
const TANGENT_BYTES: u64 = 16;
/// Vertex indices and material id of one stored triangle.
const TRIANGLE_BYTES: u64 = 12 + 4;
/// Embree's BVH for one triangle: nodes, the triangle primitive and build scratch.
const BVH_TRIANGLE_BYTES: u64 = 96;
/// A placement baked into the top-level geometry: three world-space vertices and indices.
const BAKED_TRIANGLE_BYTES: u64 = 3 * 16 + 12;
/// One instance: transforms, normal matrix, name, Embree instance geometry.
const INSTANCE_BYTES: u64 = 512;
/// One texel as the renderer stores it (linear RGBA f32).
const TEXEL_BYTES: u64 = 16;

/// Per-vertex data a mesh stores beyond position, normal and the first UV set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VertexExtras {
    /// A second UV set (glTF TEXCOORD_1).
    pub second_uv_set: bool,
    /// Tangents: read from the file or generated for a normal map.
    pub tangents: bool,
}

impl VertexExtras {
    pub fn bytes_per_vertex(self) -> u64 {
        let mut bytes = 0;
        if self.second_uv_set {
            bytes += SECOND_UV_BYTES;
        }
        if self.tangents {
            bytes += TANGENT_BYTES;
        }
        bytes
    }
}

/// A running estimate of a scene's memory, in bytes.
#[derive(Clone, Debug, Default)]
pub struct MemoryEstimate {
    pub geometry: u64,
    pub acceleration: u64,
    pub textures: u64,
    /// Placements so far per mesh (importer's mesh id).
    uses: HashMap<usize, u64>,
}

/// A scene that would not fit the configured memory budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "model needs about {} MiB to render (geometry {} MiB, acceleration {} MiB, textures {} MiB), over the memory budget of {} MiB",
    mib(*needed), mib(*geometry), mib(*acceleration), mib(*textures), mib(*budget)
)]
pub struct OverBudget {
    pub needed: u64,
    pub geometry: u64,
    pub acceleration: u64,
    pub textures: u64,
    pub budget: u64,
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.geometry
            .saturating_add(self.acceleration)
            .saturating_add(self.textures)
    }

    /// A distinct mesh, stored once.
    pub fn add_mesh(&mut self, vertices: u64, triangles: u64) {
        let bytes = vertices
            .saturating_mul(VERTEX_BYTES)
            .saturating_add(triangles.saturating_mul(TRIANGLE_BYTES));
        self.geometry = self.geometry.saturating_add(bytes);
    }

    /// Extra per-vertex data of a distinct mesh of `vertices` vertices (counted on top of
    /// [`MemoryEstimate::add_mesh`]).
    pub fn add_vertex_extras(&mut self, vertices: u64, extras: VertexExtras) {
        let bytes = vertices.saturating_mul(extras.bytes_per_vertex());
        self.geometry = self.geometry.saturating_add(bytes);
    }

    /// One placement of `mesh` (which has `triangles` triangles). The first placements are
    /// counted as baked copies; the one that makes the mesh an instance adds its own BVH; every
    /// placement adds an instance record.
    pub fn add_placement(&mut self, mesh: usize, triangles: u64) {
        let uses = self.uses.entry(mesh).or_insert(0);
        *uses += 1;
        let per_triangle = if *uses < INSTANCE_MIN_USES {
            BAKED_TRIANGLE_BYTES + BVH_TRIANGLE_BYTES
        } else if *uses == INSTANCE_MIN_USES {
            BVH_TRIANGLE_BYTES
        } else {
            0
        };
        let bytes = triangles.saturating_mul(per_triangle);
        self.acceleration = self
            .acceleration
            .saturating_add(bytes)
            .saturating_add(INSTANCE_BYTES);
    }

    /// A texture of `width` x `height` texels.
    pub fn add_texture(&mut self, width: u32, height: u32) {
        let bytes = (width as u64 * height as u64).saturating_mul(TEXEL_BYTES);
        self.textures = self.textures.saturating_add(bytes);
    }

    /// Fails when the estimate is over `budget` bytes.
    pub fn check(&self, budget: u64) -> Result<(), OverBudget> {
        let needed = self.total();
        if needed > budget {
            return Err(OverBudget {
                needed,
                geometry: self.geometry,
                acceleration: self.acceleration,
                textures: self.textures,
                budget,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_placements_stop_costing_geometry_once_instanced() {
        let mut few = MemoryEstimate::default();
        few.add_mesh(1000, 2000);
        for _ in 0..7 {
            few.add_placement(0, 2000);
        }
        let mut many = few.clone();
        many.add_placement(0, 2000);
        let after_eighth = many.total();
        for _ in 0..1000 {
            many.add_placement(0, 2000);
        }
        // Baked copies grow with triangles; instances only by their record.
        assert!(few.acceleration >= 7 * 2000 * BVH_TRIANGLE_BYTES);
        assert_eq!(many.total() - after_eighth, 1000 * INSTANCE_BYTES);
    }

    #[test]
    fn second_uv_sets_and_tangents_count_per_vertex() {
        let mut plain = MemoryEstimate::default();
        plain.add_mesh(1000, 2000);
        let mut extra = plain.clone();
        extra.add_vertex_extras(
            1000,
            VertexExtras {
                second_uv_set: true,
                tangents: true,
            },
        );
        assert_eq!(extra.geometry - plain.geometry, 1000 * (8 + 16));
        let before = extra.geometry;
        extra.add_vertex_extras(1000, VertexExtras::default());
        assert_eq!(extra.geometry, before);
    }

    #[test]
    fn over_budget_names_the_sizes() {
        let mut estimate = MemoryEstimate::default();
        estimate.add_mesh(3 << 20, 1 << 20);
        estimate.add_placement(0, 1 << 20);
        estimate.add_texture(4096, 4096);
        assert!(estimate.check(1 << 30).is_ok());
        let err = estimate.check(64 << 20).unwrap_err();
        assert_eq!(err.needed, estimate.total());
        let message = err.to_string();
        assert!(
            message.contains("over the memory budget of 64 MiB"),
            "{message}"
        );
        assert!(message.contains("textures 256 MiB"), "{message}");
    }
}
