//! A thin hand-written binding of Embree 3 (Debian `libembree-dev` 3.13), the only `unsafe` code
//! in the crate.
//!
//! Structure: one Embree scene per distinct mesh (a single triangle geometry), and a top-level
//! scene of instance geometries, one per placement. Embree's committed scenes are safe to query
//! from many threads at once, which [`EmbreeAccel`] expresses as `Send + Sync`.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_uint, c_void};
use std::ptr;

use rayon::prelude::*;

use super::{AccelError, Hit, Ray};
use crate::scene::Scene;

type RtcDevice = *mut c_void;
type RtcScene = *mut c_void;
type RtcGeometry = *mut c_void;

const RTC_GEOMETRY_TYPE_TRIANGLE: c_uint = 0;
const RTC_GEOMETRY_TYPE_INSTANCE: c_uint = 121;
const RTC_BUFFER_TYPE_INDEX: c_uint = 0;
const RTC_BUFFER_TYPE_VERTEX: c_uint = 1;
const RTC_FORMAT_UINT3: c_uint = 0x5003;
const RTC_FORMAT_FLOAT3: c_uint = 0x9003;
const RTC_FORMAT_FLOAT3X4_COLUMN_MAJOR: c_uint = 0x9234;
const RTC_BUILD_QUALITY_HIGH: c_uint = 2;
const RTC_BUILD_QUALITY_MEDIUM: c_uint = 1;
const RTC_INVALID_GEOMETRY_ID: c_uint = u32::MAX;
const RTC_INTERSECT_CONTEXT_FLAG_INCOHERENT: c_uint = 0;

/// `struct RTCIntersectContext` for `RTC_MAX_INSTANCE_LEVEL_COUNT == 1` and `RTC_MIN_WIDTH == 0`
/// (the Debian build's configuration, checked in `rtcore_config.h`).
#[repr(C)]
struct RtcIntersectContext {
    flags: c_uint,
    filter: *const c_void,
    inst_id: [c_uint; 1],
}

impl RtcIntersectContext {
    /// What the header's inline `rtcInitIntersectContext` does.
    fn new() -> RtcIntersectContext {
        RtcIntersectContext {
            flags: RTC_INTERSECT_CONTEXT_FLAG_INCOHERENT,
            filter: ptr::null(),
            inst_id: [RTC_INVALID_GEOMETRY_ID],
        }
    }
}

#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct RtcRay {
    org: [f32; 3],
    tnear: f32,
    dir: [f32; 3],
    time: f32,
    tfar: f32,
    mask: c_uint,
    id: c_uint,
    flags: c_uint,
}

#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct RtcHit {
    ng: [f32; 3],
    u: f32,
    v: f32,
    prim_id: c_uint,
    geom_id: c_uint,
    inst_id: [c_uint; 1],
}

#[repr(C)]
struct RtcRayHit {
    ray: RtcRay,
    hit: RtcHit,
}

#[link(name = "embree3")]
extern "C" {
    fn rtcNewDevice(config: *const c_char) -> RtcDevice;
    fn rtcReleaseDevice(device: RtcDevice);
    fn rtcGetDeviceError(device: RtcDevice) -> c_uint;
    fn rtcNewScene(device: RtcDevice) -> RtcScene;
    fn rtcReleaseScene(scene: RtcScene);
    fn rtcAttachGeometry(scene: RtcScene, geometry: RtcGeometry) -> c_uint;
    fn rtcCommitScene(scene: RtcScene);
    fn rtcSetSceneBuildQuality(scene: RtcScene, quality: c_uint);
    fn rtcIntersect1(scene: RtcScene, context: *mut RtcIntersectContext, rayhit: *mut RtcRayHit);
    fn rtcOccluded1(scene: RtcScene, context: *mut RtcIntersectContext, ray: *mut RtcRay);
    fn rtcNewGeometry(device: RtcDevice, kind: c_uint) -> RtcGeometry;
    fn rtcReleaseGeometry(geometry: RtcGeometry);
    fn rtcCommitGeometry(geometry: RtcGeometry);
    fn rtcSetGeometryBuildQuality(geometry: RtcGeometry, quality: c_uint);
    fn rtcSetNewGeometryBuffer(
        geometry: RtcGeometry,
        kind: c_uint,
        slot: c_uint,
        format: c_uint,
        byte_stride: usize,
        item_count: usize,
    ) -> *mut c_void;
    fn rtcSetGeometryInstancedScene(geometry: RtcGeometry, scene: RtcScene);
    fn rtcSetGeometryTransform(
        geometry: RtcGeometry,
        time_step: c_uint,
        format: c_uint,
        xfm: *const c_void,
    );
}

/// An Embree device plus the two-level scene built from a [`Scene`].
pub struct EmbreeAccel {
    device: RtcDevice,
    top: RtcScene,
    /// Per mesh: its Embree scene when the mesh is instanced, null when it is baked.
    mesh_scenes: Vec<RtcScene>,
    /// Top-level geometry id -> scene instance index (`u32::MAX` for the baked geometry).
    top_geometry_instance: Vec<u32>,
    /// Baked geometry: `(first primitive, scene instance)` per baked instance, sorted.
    baked_ranges: Vec<(u32, u32)>,
}

// SAFETY: after commit, Embree scenes are immutable and documented as safe for concurrent
// rtcIntersect/rtcOccluded calls from any thread. The handles are only released in `Drop`,
// which needs exclusive ownership.
unsafe impl Send for EmbreeAccel {}
// SAFETY: see `Send`; `&EmbreeAccel` only exposes the read-only query functions.
unsafe impl Sync for EmbreeAccel {}

/// How the two-level structure is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccelOptions {
    /// Meshes placed at least this many times become Embree instances of one shared BVH; meshes
    /// placed fewer times are transformed to world space and baked into one top-level geometry.
    /// Instancing pays off for many small repeated parts (balls, rivets); for a handful of
    /// large parts whose boxes overlap (rings, seals, cage halves) every instance is a separate
    /// BVH that a ray must enter, and baking them is several times faster to trace.
    pub instance_min_uses: usize,
}

impl Default for AccelOptions {
    fn default() -> Self {
        AccelOptions {
            instance_min_uses: 8,
        }
    }
}

/// A raw scene handle that may cross to a rayon worker for its commit.
struct SendScene(RtcScene);
// SAFETY: committing different scenes on different threads is allowed by Embree; each handle is
// committed by exactly one thread.
unsafe impl Send for SendScene {}
unsafe impl Sync for SendScene {}

impl EmbreeAccel {
    /// Builds the acceleration structure with [`AccelOptions::default`].
    pub fn build(scene: &Scene) -> Result<EmbreeAccel, AccelError> {
        EmbreeAccel::build_with(scene, &AccelOptions::default())
    }

    /// Builds the acceleration structure: instanced mesh scenes are committed in parallel
    /// (Embree also parallelises each build internally), then the top-level scene of instances
    /// plus the baked geometry.
    pub fn build_with(scene: &Scene, options: &AccelOptions) -> Result<EmbreeAccel, AccelError> {
        let mut uses = vec![0usize; scene.meshes.len()];
        for inst in &scene.instances {
            uses[inst.mesh] += 1;
        }
        let instanced: Vec<bool> = uses
            .iter()
            .map(|&n| n >= options.instance_min_uses.max(1))
            .collect();

        // SAFETY: a null config string asks for the default device configuration.
        let device = unsafe { rtcNewDevice(ptr::null()) };
        if device.is_null() {
            return Err(AccelError::Device("rtcNewDevice returned null".into()));
        }
        // SAFETY: `device` is valid; the scene is released in `Drop`.
        let top = unsafe { rtcNewScene(device) };
        let mut accel = EmbreeAccel {
            device,
            top,
            mesh_scenes: vec![ptr::null_mut(); scene.meshes.len()],
            top_geometry_instance: Vec::new(),
            baked_ranges: Vec::new(),
        };
        for (mesh_idx, mesh) in scene.meshes.iter().enumerate() {
            if !instanced[mesh_idx] {
                continue;
            }
            // SAFETY: `device` is valid; the scene is released in `Drop`.
            let mesh_scene = unsafe { rtcNewScene(device) };
            accel.mesh_scenes[mesh_idx] = mesh_scene;
            // SAFETY: `mesh_scene` was just created from `device`.
            unsafe { rtcSetSceneBuildQuality(mesh_scene, RTC_BUILD_QUALITY_HIGH) };
            let positions = mesh.positions.iter().copied();
            accel.attach_triangles(
                mesh_scene,
                positions,
                mesh.positions.len(),
                &mesh.triangles,
                0,
            )?;
        }
        let handles: Vec<SendScene> = accel
            .mesh_scenes
            .iter()
            .filter(|s| !s.is_null())
            .map(|&s| SendScene(s))
            .collect();
        handles.par_iter().for_each(|s| {
            // SAFETY: each mesh scene is committed once, by one thread, before any query.
            unsafe { rtcCommitScene(s.0) }
        });
        accel.check("mesh scene commit")?;

        // Bake the rarely placed meshes into one world-space geometry.
        let mut baked_positions: Vec<[f32; 3]> = Vec::new();
        let mut baked_triangles: Vec<[u32; 3]> = Vec::new();
        for (inst_idx, inst) in scene.instances.iter().enumerate() {
            if instanced[inst.mesh] {
                continue;
            }
            let mesh = &scene.meshes[inst.mesh];
            let base = baked_positions.len() as u32;
            accel
                .baked_ranges
                .push((baked_triangles.len() as u32, inst_idx as u32));
            baked_positions.extend(mesh.positions.iter().map(|p| {
                inst.transform
                    .transform_point(crate::math::Vec3::from_array(*p))
                    .to_array()
            }));
            baked_triangles.extend(mesh.triangles.iter().map(|t| t.map(|i| i + base)));
        }
        if !baked_triangles.is_empty() {
            if baked_positions.len() > u32::MAX as usize
                || baked_triangles.len() > u32::MAX as usize
            {
                return Err(AccelError::Device(
                    "baked geometry exceeds 2^32 elements".into(),
                ));
            }
            let id = accel.attach_triangles(
                top,
                baked_positions.iter().copied(),
                baked_positions.len(),
                &baked_triangles,
                RTC_BUILD_QUALITY_HIGH,
            )?;
            accel.set_top_geometry(id, u32::MAX);
        }

        for (inst_idx, inst) in scene.instances.iter().enumerate() {
            if !instanced[inst.mesh] {
                continue;
            }
            let r = &inst.transform.rows;
            // Column-major 3x4: the three basis columns followed by the translation.
            let xfm: [f32; 12] = [
                r[0][0], r[1][0], r[2][0], r[0][1], r[1][1], r[2][1], r[0][2], r[1][2], r[2][2],
                r[0][3], r[1][3], r[2][3],
            ];
            // SAFETY: `inst.mesh` indexes a committed mesh scene; `xfm` outlives the call
            // (Embree copies the transform).
            let id = unsafe {
                let geom = rtcNewGeometry(device, RTC_GEOMETRY_TYPE_INSTANCE);
                rtcSetGeometryInstancedScene(geom, accel.mesh_scenes[inst.mesh]);
                rtcSetGeometryTransform(
                    geom,
                    0,
                    RTC_FORMAT_FLOAT3X4_COLUMN_MAJOR,
                    xfm.as_ptr() as *const c_void,
                );
                rtcCommitGeometry(geom);
                let id = rtcAttachGeometry(top, geom);
                rtcReleaseGeometry(geom);
                id
            };
            accel.set_top_geometry(id, inst_idx as u32);
        }
        // SAFETY: `top` is a valid scene whose instanced scenes are committed.
        unsafe {
            rtcSetSceneBuildQuality(top, RTC_BUILD_QUALITY_MEDIUM);
            rtcCommitScene(top);
        }
        accel.check("top-level scene commit")?;
        Ok(accel)
    }

    fn set_top_geometry(&mut self, id: c_uint, instance: u32) {
        let id = id as usize;
        if self.top_geometry_instance.len() <= id {
            self.top_geometry_instance.resize(id + 1, u32::MAX);
        }
        self.top_geometry_instance[id] = instance;
    }

    /// Creates a triangle geometry from positions and triangles, attaches it to `target` and
    /// returns its geometry id.
    fn attach_triangles(
        &self,
        target: RtcScene,
        positions: impl Iterator<Item = [f32; 3]>,
        n_positions: usize,
        triangles: &[[u32; 3]],
        quality: c_uint,
    ) -> Result<c_uint, AccelError> {
        // SAFETY: all handles come from `self.device`; the buffers returned by
        // rtcSetNewGeometryBuffer are owned by Embree and sized for `item_count` items of
        // `byte_stride` bytes; we write exactly that many before the commit.
        unsafe {
            let geom = rtcNewGeometry(self.device, RTC_GEOMETRY_TYPE_TRIANGLE);
            if quality != 0 {
                rtcSetGeometryBuildQuality(geom, quality);
            } else {
                rtcSetGeometryBuildQuality(geom, RTC_BUILD_QUALITY_HIGH);
            }
            let vptr = rtcSetNewGeometryBuffer(
                geom,
                RTC_BUFFER_TYPE_VERTEX,
                0,
                RTC_FORMAT_FLOAT3,
                12,
                n_positions,
            ) as *mut [f32; 3];
            let iptr = rtcSetNewGeometryBuffer(
                geom,
                RTC_BUFFER_TYPE_INDEX,
                0,
                RTC_FORMAT_UINT3,
                12,
                triangles.len(),
            ) as *mut [u32; 3];
            if vptr.is_null() || iptr.is_null() {
                rtcReleaseGeometry(geom);
                return Err(self.device_error("geometry buffer allocation failed"));
            }
            let mut written = 0;
            for p in positions.take(n_positions) {
                vptr.add(written).write(p);
                written += 1;
            }
            debug_assert_eq!(written, n_positions);
            ptr::copy_nonoverlapping(triangles.as_ptr(), iptr, triangles.len());
            rtcCommitGeometry(geom);
            let id = rtcAttachGeometry(target, geom);
            rtcReleaseGeometry(geom);
            Ok(id)
        }
    }

    fn device_error(&self, what: &str) -> AccelError {
        // SAFETY: `self.device` is valid for the lifetime of `self`.
        let code = unsafe { rtcGetDeviceError(self.device) };
        AccelError::Device(format!("{what} (embree error code {code})"))
    }

    fn check(&self, what: &str) -> Result<(), AccelError> {
        // SAFETY: `self.device` is valid for the lifetime of `self`.
        let code = unsafe { rtcGetDeviceError(self.device) };
        if code == 0 {
            Ok(())
        } else {
            Err(AccelError::Device(format!(
                "{what} failed with embree error code {code}"
            )))
        }
    }

    /// Closest hit along `ray` within `[ray.t_min, ray.t_max)`.
    pub fn intersect(&self, ray: &Ray) -> Option<Hit> {
        let mut context = RtcIntersectContext::new();
        let mut rayhit = RtcRayHit {
            ray: RtcRay {
                org: ray.origin.to_array(),
                tnear: ray.t_min,
                dir: ray.dir.to_array(),
                time: 0.0,
                tfar: ray.t_max,
                mask: u32::MAX,
                id: 0,
                flags: 0,
            },
            hit: RtcHit {
                ng: [0.0; 3],
                u: 0.0,
                v: 0.0,
                prim_id: RTC_INVALID_GEOMETRY_ID,
                geom_id: RTC_INVALID_GEOMETRY_ID,
                inst_id: [RTC_INVALID_GEOMETRY_ID],
            },
        };
        // SAFETY: the scene is committed and immutable; the context and ray structs match the C
        // layout and live on this stack frame for the duration of the call.
        unsafe { rtcIntersect1(self.top, &mut context, &mut rayhit) };
        if rayhit.hit.geom_id == RTC_INVALID_GEOMETRY_ID {
            return None;
        }
        let (instance, triangle) = if rayhit.hit.inst_id[0] != RTC_INVALID_GEOMETRY_ID {
            (
                self.top_geometry_instance[rayhit.hit.inst_id[0] as usize],
                rayhit.hit.prim_id,
            )
        } else {
            // The baked geometry: find which placement this primitive came from.
            let prim = rayhit.hit.prim_id;
            let k = self
                .baked_ranges
                .partition_point(|&(start, _)| start <= prim)
                - 1;
            let (start, instance) = self.baked_ranges[k];
            (instance, prim - start)
        };
        Some(Hit {
            t: rayhit.ray.tfar,
            u: rayhit.hit.u,
            v: rayhit.hit.v,
            instance,
            triangle,
        })
    }

    /// True when anything blocks `ray` within `[ray.t_min, ray.t_max)`.
    pub fn occluded(&self, ray: &Ray) -> bool {
        let mut context = RtcIntersectContext::new();
        let mut r = RtcRay {
            org: ray.origin.to_array(),
            tnear: ray.t_min,
            dir: ray.dir.to_array(),
            time: 0.0,
            tfar: ray.t_max,
            mask: u32::MAX,
            id: 0,
            flags: 0,
        };
        // SAFETY: as in `intersect`.
        unsafe { rtcOccluded1(self.top, &mut context, &mut r) };
        // Embree sets tfar to -inf when the ray is occluded.
        r.tfar == f32::NEG_INFINITY
    }
}

impl Drop for EmbreeAccel {
    fn drop(&mut self) {
        // SAFETY: every handle was created by this value and is released exactly once; no query
        // can be running because `drop` has exclusive access.
        unsafe {
            rtcReleaseScene(self.top);
            for &s in self.mesh_scenes.iter().filter(|s| !s.is_null()) {
                rtcReleaseScene(s);
            }
            rtcReleaseDevice(self.device);
        }
    }
}
