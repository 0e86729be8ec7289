//! Decoding of `KHR_draco_mesh_compression` streams with Google's Draco library, through the
//! small C API in `draco/shim.h` (built by `build.rs` against Debian's libdraco-dev). The only
//! module of this crate with `unsafe`: it copies Draco's output into owned vectors and frees it.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, CStr};

#[repr(C)]
struct LbDracoGeometry {
    _opaque: [u8; 0],
}

extern "C" {
    fn lb_draco_decode(
        data: *const u8,
        len: usize,
        want_mesh: c_int,
        out: *mut *mut LbDracoGeometry,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn lb_draco_num_points(geometry: *const LbDracoGeometry) -> u32;
    fn lb_draco_num_faces(geometry: *const LbDracoGeometry) -> u32;
    fn lb_draco_indices(geometry: *const LbDracoGeometry, out: *mut u32, len: usize) -> c_int;
    fn lb_draco_attribute_components(geometry: *const LbDracoGeometry, unique_id: u32) -> c_int;
    fn lb_draco_attribute_floats(
        geometry: *const LbDracoGeometry,
        unique_id: u32,
        out: *mut f32,
        len: usize,
    ) -> c_int;
    fn lb_draco_free(geometry: *mut LbDracoGeometry);
}

/// A decoded Draco mesh or point cloud. Attribute values are read as floats.
pub struct DracoGeometry {
    raw: *mut LbDracoGeometry,
}

// The decoded geometry is plain owned data on the C++ side, never shared.
unsafe impl Send for DracoGeometry {}

impl Drop for DracoGeometry {
    fn drop(&mut self) {
        // SAFETY: `raw` came from a successful `lb_draco_decode` and is freed once, here.
        unsafe { lb_draco_free(self.raw) }
    }
}

impl DracoGeometry {
    /// Decodes a Draco stream: a triangle mesh when `mesh`, else a point cloud.
    pub fn decode(bytes: &[u8], mesh: bool) -> Result<DracoGeometry, String> {
        let mut raw = std::ptr::null_mut();
        let mut err = [0 as c_char; 256];
        // SAFETY: the pointers are valid for the lengths given; the shim catches C++ exceptions.
        let rc = unsafe {
            lb_draco_decode(
                bytes.as_ptr(),
                bytes.len(),
                c_int::from(mesh),
                &mut raw,
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if rc != 0 || raw.is_null() {
            // SAFETY: the shim writes a NUL-terminated message into `err` (zeroed before).
            let message = unsafe { CStr::from_ptr(err.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            return Err(if message.is_empty() {
                "the Draco decoder failed".into()
            } else {
                message
            });
        }
        Ok(DracoGeometry { raw })
    }

    /// Points (vertices).
    pub fn num_points(&self) -> usize {
        // SAFETY: `raw` is a live geometry.
        unsafe { lb_draco_num_points(self.raw) as usize }
    }

    /// Triangles (0 for a point cloud).
    pub fn num_faces(&self) -> usize {
        // SAFETY: `raw` is a live geometry.
        unsafe { lb_draco_num_faces(self.raw) as usize }
    }

    /// The triangles' point indices, three per triangle.
    pub fn indices(&self) -> Result<Vec<u32>, String> {
        let mut out = vec![0u32; self.num_faces() * 3];
        // SAFETY: `out` holds exactly the `len` values the shim writes.
        let rc = unsafe { lb_draco_indices(self.raw, out.as_mut_ptr(), out.len()) };
        if rc != 0 {
            return Err("the Draco stream holds no triangles".into());
        }
        Ok(out)
    }

    /// Components per value of the attribute with Draco id `unique_id`, if there is one.
    pub fn attribute_components(&self, unique_id: u32) -> Option<usize> {
        // SAFETY: `raw` is a live geometry.
        let n = unsafe { lb_draco_attribute_components(self.raw, unique_id) };
        (n > 0).then_some(n as usize)
    }

    /// The values of attribute `unique_id` per point, `components` floats each.
    pub fn attribute_floats(&self, unique_id: u32) -> Result<(Vec<f32>, usize), String> {
        let components = self
            .attribute_components(unique_id)
            .ok_or_else(|| format!("the Draco stream has no attribute with id {unique_id}"))?;
        let len = self
            .num_points()
            .checked_mul(components)
            .ok_or("attribute too large")?;
        let mut out = vec![0f32; len];
        // SAFETY: `out` holds exactly the `len` values the shim writes.
        let rc = unsafe { lb_draco_attribute_floats(self.raw, unique_id, out.as_mut_ptr(), len) };
        match rc {
            0 => Ok((out, components)),
            _ => Err(format!(
                "the values of Draco attribute {unique_id} cannot be read as numbers"
            )),
        }
    }
}
