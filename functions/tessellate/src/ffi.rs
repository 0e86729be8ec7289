//! The only module with `unsafe`: declarations of the C API in `occt/shim.h` and safe wrappers
//! that copy OCCT's arrays into owned Rust values before freeing them.

use std::ffi::{c_char, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::model::{MeshedModel, Part, Placement};

#[repr(C)]
struct LbPart {
    name: *const c_char,
    positions: *const f32,
    normals: *const f32,
    n_vertices: u32,
    indices: *const u32,
    n_indices: u32,
    color: [f32; 4],
    has_color: i32,
    n_faces: u32,
    n_faces_without_mesh: u32,
    face_colors: *const [f32; 4],
    n_face_colors: u32,
    triangle_colors: *const u32,
}

#[repr(C)]
struct LbPlacement {
    part: u32,
    matrix: [f64; 16],
    name: *const c_char,
    color: [f32; 4],
    has_color: i32,
}

#[repr(C)]
struct LbModelView {
    parts: *const LbPart,
    n_parts: usize,
    placements: *const LbPlacement,
    n_placements: usize,
    metres_per_unit: f64,
    linear_deflection_m: f64,
    angular_deflection: f64,
    bbox_diagonal_m: f64,
    read_ms: f64,
    mesh_ms: f64,
    extract_ms: f64,
}

#[repr(C)]
struct LbModel {
    _private: [u8; 0],
}

extern "C" {
    fn lb_read_and_mesh(
        step_path: *const c_char,
        linear_deflection_m: f64,
        relative_deflection: f64,
        angular_deflection: f64,
        view: *mut LbModelView,
        status: *mut i32,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut LbModel;
    fn lb_model_free(model: *mut LbModel);
    fn lb_write_sample(
        kind: i32,
        step_path: *const c_char,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn lb_caf_step_to_glb(
        step_path: *const c_char,
        glb_path: *const c_char,
        linear_deflection_m: f64,
        relative_deflection: f64,
        angular_deflection: f64,
        timings_ms: *mut f64,
        triangles: *mut u64,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
}

/// What kind of failure the shim reported (`lb_status` in `shim.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OcctStatus {
    NotStep,
    Transfer,
    NoSolids,
    OutOfMemory,
    Failure,
}

/// A failure reported by the shim, with OCCT's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OcctError {
    pub status: OcctStatus,
    pub message: String,
}

impl OcctError {
    fn from_code(code: i32, err: &[u8]) -> Self {
        let status = match code {
            1 => OcctStatus::NotStep,
            2 => OcctStatus::Transfer,
            3 => OcctStatus::NoSolids,
            4 => OcctStatus::OutOfMemory,
            _ => OcctStatus::Failure,
        };
        let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
        let mut message = String::from_utf8_lossy(&err[..end]).into_owned();
        if message.is_empty() {
            message = format!("OCCT failed with status {code}");
        }
        Self { status, message }
    }

    fn bad_path(path: &Path) -> Self {
        Self {
            status: OcctStatus::Failure,
            message: format!("path {} contains a NUL byte", path.display()),
        }
    }
}

const ERR_LEN: usize = 2048;

fn c_path(path: &Path) -> Result<CString, OcctError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| OcctError::bad_path(path))
}

fn c_string(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: the shim hands out NUL-terminated strings owned by the model, alive until
    // `lb_model_free`.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// Copies `len` elements from a shim-owned array (empty when `len` is 0).
fn copy_slice<T: Copy>(ptr: *const T, len: usize) -> Vec<T> {
    if len == 0 || ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: the shim guarantees `ptr` points at `len` initialised elements that stay alive
    // until `lb_model_free`, which runs only after every copy.
    unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec()
}

fn triples(flat: Vec<f32>) -> Vec<[f32; 3]> {
    flat.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect()
}

/// Reads a STEP file with XCAF and meshes each distinct part once (see `lb_read_and_mesh`).
pub fn read_and_mesh(
    step_path: &Path,
    linear_deflection_m: Option<f64>,
    relative_deflection: f64,
    angular_deflection: Option<f64>,
) -> Result<MeshedModel, OcctError> {
    let path = c_path(step_path)?;
    let mut view = LbModelView {
        parts: std::ptr::null(),
        n_parts: 0,
        placements: std::ptr::null(),
        n_placements: 0,
        metres_per_unit: 0.0,
        linear_deflection_m: 0.0,
        angular_deflection: 0.0,
        bbox_diagonal_m: 0.0,
        read_ms: 0.0,
        mesh_ms: 0.0,
        extract_ms: 0.0,
    };
    let mut status = 0i32;
    let mut err = vec![0u8; ERR_LEN];
    // SAFETY: every pointer is valid for the call; `err` has ERR_LEN writable bytes.
    let model = unsafe {
        lb_read_and_mesh(
            path.as_ptr(),
            linear_deflection_m.unwrap_or(0.0),
            relative_deflection,
            angular_deflection.unwrap_or(0.0),
            &mut view,
            &mut status,
            err.as_mut_ptr().cast(),
            ERR_LEN,
        )
    };
    if model.is_null() {
        return Err(OcctError::from_code(
            if status == 0 { 5 } else { status },
            &err,
        ));
    }
    // SAFETY: on success `view` points at `n_parts` parts and `n_placements` placements owned
    // by `model`.
    let part_views = unsafe { std::slice::from_raw_parts(view.parts, view.n_parts) };
    let parts = part_views
        .iter()
        .map(|p| Part {
            name: c_string(p.name),
            positions: triples(copy_slice(p.positions, p.n_vertices as usize * 3)),
            normals: triples(copy_slice(p.normals, p.n_vertices as usize * 3)),
            indices: copy_slice(p.indices, p.n_indices as usize),
            color: (p.has_color != 0).then_some(p.color),
            faces: p.n_faces,
            faces_without_mesh: p.n_faces_without_mesh,
            face_colors: copy_slice(p.face_colors, p.n_face_colors as usize),
            // Without styled faces every triangle takes the placement's colour: nothing to copy.
            triangle_colors: if p.n_face_colors == 0 {
                Vec::new()
            } else {
                copy_slice(p.triangle_colors, p.n_indices as usize / 3)
            },
        })
        .collect();
    // SAFETY: as above.
    let placement_views = unsafe { std::slice::from_raw_parts(view.placements, view.n_placements) };
    let placements = placement_views
        .iter()
        .map(|p| Placement {
            part: p.part as usize,
            matrix: p.matrix,
            name: c_string(p.name),
            color: (p.has_color != 0).then_some(p.color),
        })
        .collect();
    let meshed = MeshedModel {
        parts,
        placements,
        metres_per_unit: view.metres_per_unit,
        linear_deflection_m: view.linear_deflection_m,
        angular_deflection: view.angular_deflection,
        bbox_diagonal_m: view.bbox_diagonal_m,
        read_ms: view.read_ms,
        mesh_ms: view.mesh_ms + view.extract_ms,
    };
    // SAFETY: `model` came from `lb_read_and_mesh` and is freed once, after the last copy.
    unsafe { lb_model_free(model) };
    Ok(meshed)
}

/// Writes one of the shim's sample models (kind numbers in `shim.h`) as STEP.
pub fn write_sample(kind: i32, step_path: &Path) -> Result<(), OcctError> {
    let path = c_path(step_path)?;
    let mut err = vec![0u8; ERR_LEN];
    // SAFETY: valid NUL-terminated path and a writable error buffer of ERR_LEN bytes.
    let code = unsafe { lb_write_sample(kind, path.as_ptr(), err.as_mut_ptr().cast(), ERR_LEN) };
    match code {
        0 => Ok(()),
        code => Err(OcctError::from_code(code, &err)),
    }
}

/// Timings and size of OCCT's own STEP → GLB path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CafReport {
    pub read_ms: f64,
    pub mesh_ms: f64,
    pub write_ms: f64,
    pub triangles: u64,
}

/// OCCT's own path: STEPCAFControl_Reader, BRepMesh, RWGltf_CafWriter (for the benchmark).
pub fn caf_step_to_glb(
    step_path: &Path,
    glb_path: &Path,
    linear_deflection_m: Option<f64>,
    relative_deflection: f64,
    angular_deflection: Option<f64>,
) -> Result<CafReport, OcctError> {
    let step = c_path(step_path)?;
    let glb = c_path(glb_path)?;
    let mut timings = [0f64; 3];
    let mut triangles = 0u64;
    let mut err = vec![0u8; ERR_LEN];
    // SAFETY: valid paths, a 3-element timings array, and a writable error buffer.
    let code = unsafe {
        lb_caf_step_to_glb(
            step.as_ptr(),
            glb.as_ptr(),
            linear_deflection_m.unwrap_or(0.0),
            relative_deflection,
            angular_deflection.unwrap_or(0.0),
            timings.as_mut_ptr(),
            &mut triangles,
            err.as_mut_ptr().cast(),
            ERR_LEN,
        )
    };
    match code {
        0 => Ok(CafReport {
            read_ms: timings[0],
            mesh_ms: timings[1],
            write_ms: timings[2],
            triangles,
        }),
        code => Err(OcctError::from_code(code, &err)),
    }
}
