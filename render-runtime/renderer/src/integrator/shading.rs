//! What a surface looks like at a hit: the material's factors times its textures (each with its
//! UV set, UV transform, wrap and filter), the normal-mapped shading frame, emission and
//! occlusion, ready for [`crate::bsdf::Bsdf`].
//!
//! Per-sample cost is kept to what the material uses: a material without textures reads no
//! texel, metallic and roughness from one texture are one fetch, and alpha tests read only the
//! alpha inputs.

use crate::accel::{Hit, Ray};
use crate::bsdf::BsdfInputs;
use crate::math::{mat3_mul, Vec3};
use crate::scene::{Instance, Material, Mesh, Scene, TextureRef};

/// Shading data at a hit point.
pub struct Surface {
    pub p: Vec3,
    /// Geometric normal facing the incoming ray.
    pub ng: Vec3,
    /// Shading normal (interpolated, then normal-mapped) on the same side as `ng`.
    pub ns: Vec3,
    /// The ray arrived on the side the geometric normal points to (outside a closed mesh).
    pub front_face: bool,
    pub inputs: BsdfInputs,
    /// The clear coat's own normal (world space, facing like `ns`), when it has a normal map.
    pub coat_normal: Option<Vec3>,
    pub emission: Vec3,
    /// Ambient occlusion, 1 = unoccluded.
    pub occlusion: f32,
    pub material: u32,
}

/// Per-material facts computed once per render, so hits do not re-derive them.
#[derive(Clone, Copy, Debug, Default)]
struct MaterialPlan {
    /// Metallic and roughness read the same texels (glTF's packed texture): one fetch.
    shared_metallic_roughness: bool,
}

/// Texture coordinates at a hit, per UV set, when the mesh has that set.
#[derive(Clone, Copy, Debug, Default)]
struct Uvs {
    sets: [Option<[f32; 2]>; 2],
}

/// Evaluates materials at hits.
pub struct Shader<'a> {
    scene: &'a Scene,
    plans: Vec<MaterialPlan>,
}

fn interpolate2(values: &[[f32; 2]], tri: [u32; 3], w: f32, u: f32, v: f32) -> [f32; 2] {
    let [a, b, c] = tri.map(|i| values[i as usize]);
    [
        a[0] * w + b[0] * u + c[0] * v,
        a[1] * w + b[1] * u + c[1] * v,
    ]
}

impl<'a> Shader<'a> {
    pub fn new(scene: &'a Scene) -> Shader<'a> {
        let plans = scene
            .materials
            .iter()
            .map(|m| MaterialPlan {
                shared_metallic_roughness: match (&m.metallic_texture, &m.roughness_texture) {
                    (Some(a), Some(b)) => a.same_lookup(b),
                    _ => false,
                },
            })
            .collect();
        Shader { scene, plans }
    }

    fn uvs(mesh: &Mesh, tri: [u32; 3], w: f32, u: f32, v: f32) -> Uvs {
        Uvs {
            sets: [
                mesh.uvs.as_deref().map(|t| interpolate2(t, tri, w, u, v)),
                mesh.uvs1.as_deref().map(|t| interpolate2(t, tri, w, u, v)),
            ],
        }
    }

    /// The lookup's value (`texel * scale + bias`), or `None` when the mesh lacks its UV set.
    #[inline]
    fn fetch(&self, t: &TextureRef, uvs: &Uvs) -> Option<[f32; 4]> {
        let uv = uvs.sets.get(t.uv_set as usize).copied().flatten()?;
        let texture = self.scene.textures.get(t.texture)?;
        let uv = if t.transform.is_identity() {
            uv
        } else {
            t.transform.apply(uv)
        };
        let texel = texture.lookup(uv, t.wrap, t.filter);
        Some(std::array::from_fn(|i| texel[i] * t.scale[i] + t.bias[i]))
    }

    /// A scalar input: `factor` times the texture's channel.
    #[inline]
    fn scalar(&self, factor: f32, t: &Option<TextureRef>, uvs: &Uvs) -> f32 {
        match t {
            Some(t) => match self.fetch(t, uvs) {
                Some(texel) => factor * texel[t.channel.index()],
                None => factor,
            },
            None => factor,
        }
    }

    /// A colour input: `factor` times the texture's RGB.
    #[inline]
    fn color(&self, factor: Vec3, t: &Option<TextureRef>, uvs: &Uvs) -> Vec3 {
        match t.as_ref().and_then(|t| self.fetch(t, uvs)) {
            Some(texel) => factor.mul_elem(Vec3::new(texel[0], texel[1], texel[2])),
            None => factor,
        }
    }

    /// Coverage at a hit: the base colour alpha times the base colour texture's alpha (or the
    /// opacity texture's channel). What alpha tests need, and nothing else.
    pub fn alpha(&self, hit: &Hit) -> f32 {
        let inst = &self.scene.instances[hit.instance as usize];
        let mesh = &self.scene.meshes[inst.mesh];
        let material_idx = mesh.triangle_materials[hit.triangle as usize];
        let material = &self.scene.materials[material_idx as usize];
        let tri = mesh.triangles[hit.triangle as usize];
        let uvs = Self::uvs(mesh, tri, 1.0 - hit.u - hit.v, hit.u, hit.v);
        self.alpha_of(material, &uvs)
    }

    fn alpha_of(&self, material: &Material, uvs: &Uvs) -> f32 {
        let factor = material.base_color[3];
        if material.opacity_texture.is_some() {
            return self.scalar(factor, &material.opacity_texture, uvs);
        }
        match material
            .base_color_texture
            .as_ref()
            .and_then(|t| self.fetch(t, uvs))
        {
            Some(texel) => factor * texel[3],
            None => factor,
        }
    }

    /// The material of a hit.
    pub fn material_of(&self, hit: &Hit) -> u32 {
        let inst = &self.scene.instances[hit.instance as usize];
        let mesh = &self.scene.meshes[inst.mesh];
        mesh.triangle_materials[hit.triangle as usize]
    }

    /// The object-space tangent and bitangent at a hit for normal mapping with UV set
    /// `uv_set`: the mesh's tangents when it has them, else the triangle's UV derivatives.
    fn tangent_frame(
        mesh: &Mesh,
        tri: [u32; 3],
        w: f32,
        u: f32,
        v: f32,
        n_obj: Vec3,
        uv_set: u32,
    ) -> Option<(Vec3, Vec3)> {
        if let Some(tangents) = &mesh.tangents {
            let [ta, tb, tc] = tri.map(|i| tangents[i as usize]);
            let t = Vec3::new(
                ta[0] * w + tb[0] * u + tc[0] * v,
                ta[1] * w + tb[1] * u + tc[1] * v,
                ta[2] * w + tb[2] * u + tc[2] * v,
            );
            let sign = if ta[3] < 0.0 { -1.0 } else { 1.0 };
            if t.length_squared() > 1e-12 {
                let b = n_obj.cross(t) * sign;
                return Some((t, b));
            }
        }
        let uvs = mesh.uv_set(uv_set)?;
        let [pa, pb, pc] = tri.map(|i| Vec3::from_array(mesh.positions[i as usize]));
        let [ua, ub, uc] = tri.map(|i| uvs[i as usize]);
        let (e1, e2) = (pb - pa, pc - pa);
        let (du1, dv1) = (ub[0] - ua[0], ub[1] - ua[1]);
        let (du2, dv2) = (uc[0] - ua[0], uc[1] - ua[1]);
        let det = du1 * dv2 - du2 * dv1;
        if det.abs() < 1e-20 || !det.is_finite() {
            return None;
        }
        let inv = 1.0 / det;
        let t = (e1 * dv2 - e2 * dv1) * inv;
        // Up the image (decreasing v), where a normal map's green points.
        let b = (e1 * du2 - e2 * du1) * inv;
        Some((t, b))
    }

    /// Applies a tangent-space normal map value to the frame (world space). `n` is the
    /// interpolated shading normal with its original orientation.
    fn perturb(
        inst: &Instance,
        frame: (Vec3, Vec3),
        n: Vec3,
        texel: [f32; 4],
        scale: f32,
    ) -> Option<Vec3> {
        let t = inst.transform.transform_vector(frame.0);
        let b = inst.transform.transform_vector(frame.1);
        // Gram-Schmidt against the world normal, keeping the bitangent's side.
        let t = (t - n * n.dot(t)).normalized();
        if t == Vec3::ZERO {
            return None;
        }
        let b_side = if n.cross(t).dot(b) < 0.0 { -1.0 } else { 1.0 };
        let b = n.cross(t) * b_side;
        let mapped = t * (texel[0] * scale) + b * (texel[1] * scale) + n * texel[2].max(0.0);
        let mapped = mapped.normalized();
        (mapped != Vec3::ZERO && mapped.is_finite()).then_some(mapped)
    }

    /// Everything the integrator needs at a hit.
    pub fn surface(&self, ray: &Ray, hit: &Hit) -> Surface {
        let inst = &self.scene.instances[hit.instance as usize];
        let mesh = &self.scene.meshes[inst.mesh];
        let tri = mesh.triangles[hit.triangle as usize];
        let (u, v) = (hit.u, hit.v);
        let w = 1.0 - u - v;
        let [a, b, c] = tri.map(|i| Vec3::from_array(mesh.positions[i as usize]));
        let p = inst.transform.transform_point(a * w + b * u + c * v);
        let ng_obj = (b - a).cross(c - a);
        let ng_outward = mat3_mul(&inst.normal_matrix, ng_obj).normalized();
        let mut n_obj = ng_obj;
        let mut ns = match &mesh.normals {
            Some(normals) => {
                let [na, nb, nc] = tri.map(|i| Vec3::from_array(normals[i as usize]));
                let interpolated = na * w + nb * u + nc * v;
                let n = mat3_mul(&inst.normal_matrix, interpolated).normalized();
                if n == Vec3::ZERO {
                    ng_outward
                } else {
                    n_obj = interpolated;
                    n
                }
            }
            None => ng_outward,
        };
        let material_idx = mesh.triangle_materials[hit.triangle as usize];
        let material = &self.scene.materials[material_idx as usize];
        let plan = self.plans[material_idx as usize];
        let uvs = Self::uvs(mesh, tri, w, u, v);

        let n_obj = n_obj.normalized();
        let map_normal = |t: &Option<TextureRef>, scale: f32, n: Vec3| -> Option<Vec3> {
            let t = t.as_ref()?;
            let texel = self.fetch(t, &uvs)?;
            let frame = Self::tangent_frame(mesh, tri, w, u, v, n_obj, t.uv_set)?;
            Self::perturb(inst, frame, n, texel, scale)
        };
        let interpolated_ns = ns;
        if let Some(mapped) = map_normal(&material.normal_texture, material.normal_scale, ns) {
            ns = mapped;
        }
        let coat_normal = material
            .clearcoat
            .as_ref()
            .and_then(|c| map_normal(&c.normal_texture, c.normal_scale, interpolated_ns));

        // Face the ray: the geometric normal, and the shading normal(s) to its side.
        let front_face = ng_outward.dot(ray.dir) < 0.0;
        let ng = if front_face { ng_outward } else { -ng_outward };
        let wo = -ray.dir;
        let face = |n: Vec3| {
            let n = if n.dot(ng) < 0.0 { -n } else { n };
            // A normal map may tilt the normal away from the viewer, which would leave the
            // point black; bend it back just far enough to see it.
            let cos = n.dot(wo);
            if cos < 0.02 {
                (n + wo * (0.02 - cos)).normalized()
            } else {
                n
            }
        };
        let ns = face(ns);
        let coat_normal = coat_normal.map(face);

        let base = Vec3::new(
            material.base_color[0],
            material.base_color[1],
            material.base_color[2],
        );
        let base_color = self.color(base, &material.base_color_texture, &uvs);
        let (metallic, roughness) = if plan.shared_metallic_roughness {
            let t = material.metallic_texture.as_ref().expect("planned");
            match self.fetch(t, &uvs) {
                Some(texel) => {
                    let r = material.roughness_texture.as_ref().expect("planned");
                    (
                        material.metallic * texel[t.channel.index()],
                        material.roughness * texel[r.channel.index()],
                    )
                }
                None => (material.metallic, material.roughness),
            }
        } else {
            (
                self.scalar(material.metallic, &material.metallic_texture, &uvs),
                self.scalar(material.roughness, &material.roughness_texture, &uvs),
            )
        };
        let emission = if material.emissive.iter().any(|&e| e > 0.0) {
            self.color(
                Vec3::from_array(material.emissive),
                &material.emissive_texture,
                &uvs,
            )
            .max(Vec3::ZERO)
        } else {
            Vec3::ZERO
        };
        let occlusion = match &material.occlusion_texture {
            Some(t) => {
                let ao = self.scalar(1.0, &Some(*t), &uvs).clamp(0.0, 1.0);
                1.0 + material.occlusion_strength * (ao - 1.0)
            }
            None => 1.0,
        };

        let mut inputs = BsdfInputs::basic(base_color, metallic, roughness, material.specular);
        inputs.specular = self.scalar(material.specular, &material.specular_texture, &uvs);
        inputs.specular_color = self.color(
            Vec3::from_array(material.specular_color),
            &material.specular_color_texture,
            &uvs,
        );
        inputs.ior = material.ior;
        inputs.entering = front_face;
        if let Some(t) = &material.transmission {
            inputs.transmission = self.scalar(t.factor, &t.texture, &uvs);
            inputs.thin_walled = material.volume.as_ref().is_none_or(|v| v.thickness <= 0.0);
        }
        if let Some(c) = &material.clearcoat {
            inputs.clearcoat = self.scalar(c.factor, &c.texture, &uvs);
            inputs.clearcoat_roughness = self.scalar(c.roughness, &c.roughness_texture, &uvs);
        }
        if let Some(s) = &material.sheen {
            inputs.sheen_color = self.color(Vec3::from_array(s.color), &s.color_texture, &uvs);
            inputs.sheen_roughness = self.scalar(s.roughness, &s.roughness_texture, &uvs);
        }
        Surface {
            p,
            ng,
            ns,
            front_face,
            inputs,
            coat_normal,
            emission,
            occlusion,
            material: material_idx,
        }
    }
}
