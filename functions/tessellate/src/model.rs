//! The tessellated model as the shim hands it over: distinct parts plus their placements.

/// One distinct part, meshed once. Positions in metres, in the part's own frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub name: String,
    pub positions: Vec<[f32; 3]>,
    pub normals: Vec<[f32; 3]>,
    /// Counter-clockwise triangles, three indices each.
    pub indices: Vec<u32>,
    /// Linear RGBA, when the file gives the part a colour.
    pub color: Option<[f32; 4]>,
    pub faces: u32,
    /// Faces BRepMesh could not triangulate (left out of the mesh).
    pub faces_without_mesh: u32,
    /// The distinct colours of styled faces (a face's own, or its shell's or solid's within the
    /// part), linear RGBA.
    pub face_colors: Vec<[f32; 4]>,
    /// Per triangle: 0 where the placement's colour applies, `k` for `face_colors[k - 1]`.
    /// Empty when no face is styled.
    pub triangle_colors: Vec<u32>,
}

impl Part {
    pub fn triangle_count(&self) -> usize {
        self.indices.len() / 3
    }
}

/// One occurrence of a part in the assembly.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Index into [`MeshedModel::parts`].
    pub part: usize,
    /// Column-major 4x4 transform to the model frame (STEP's, usually Z-up), translation in metres.
    pub matrix: [f64; 16],
    pub name: String,
    /// The colour of the part's unstyled faces here: the instance's own colour, else the part's,
    /// else the one inherited from the assemblies above (OCCT's order). Overrides
    /// [`Part::color`]; styled faces ([`Part::triangle_colors`]) override it.
    pub color: Option<[f32; 4]>,
}

/// What OCCT produced from one STEP file.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshedModel {
    pub parts: Vec<Part>,
    pub placements: Vec<Placement>,
    /// The file's length unit in metres (after OCCT's unit conversion).
    pub metres_per_unit: f64,
    pub linear_deflection_m: f64,
    pub angular_deflection: f64,
    pub bbox_diagonal_m: f64,
    pub read_ms: f64,
    pub mesh_ms: f64,
}

impl MeshedModel {
    /// Triangles in the scene, counting every placement.
    pub fn instanced_triangles(&self) -> usize {
        self.placements
            .iter()
            .map(|p| self.parts[p.part].triangle_count())
            .sum()
    }

    /// Triangles meshed, counting each distinct part once.
    pub fn distinct_triangles(&self) -> usize {
        self.parts.iter().map(Part::triangle_count).sum()
    }
}
