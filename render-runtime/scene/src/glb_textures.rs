//! Material textures as the GLB writer writes them: images (PNG in the binary chunk), samplers
//! (wrap, filter), texture infos with `texCoord` and `KHR_texture_transform`, for the base
//! colour (with the opacity texture as its alpha), metallic-roughness, normal, occlusion and
//! emissive inputs.
//!
//! glTF fixes what a texel means in each slot (a normal is `2 * texel - 1`, roughness is G and
//! metallic B of one image, occlusion is R, coverage is the base colour's alpha), while the scene
//! model lets every lookup have its own channel, scale and bias (USD's UsdUVTexture). So each
//! image is baked for its slot: `texel * scale + bias` of the channels the slot reads, put where
//! glTF reads them. Two lookups baked into one image (metallic and roughness, colour and
//! opacity) must read texels of the same size through the same coordinates; when they do not,
//! the second keeps its factor only.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::material::{Filter, TextureRef, UvTransform, Wrap};
use super::usd_write::encode_png_texels;
use super::{Material, Texture};

/// What a written image holds, so equal bakes are written once.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BakeKey {
    slot: &'static str,
    /// (texture, scale bits, bias bits, channel) of each lookup baked in.
    sources: Vec<(usize, [u32; 4], [u32; 4], usize)>,
}

/// The images, samplers and textures of one GLB.
#[derive(Default)]
pub(crate) struct GlbTextures {
    /// PNG bytes of each image, in order.
    pub images: Vec<Vec<u8>>,
    textures: Vec<Value>,
    samplers: Vec<Value>,
    baked: HashMap<BakeKey, usize>,
    uses_transform: bool,
}

impl GlbTextures {
    /// Adds the textures of `material` to its glTF material JSON `m`.
    pub fn material(&mut self, m: &mut Value, material: &Material, textures: &[Texture]) {
        let fits = |r: &Option<TextureRef>| r.filter(|r| textures.get(r.texture).is_some());
        let (base, opacity) = (
            fits(&material.base_color_texture),
            fits(&material.opacity_texture),
        );
        let (rough, metal) = (
            fits(&material.roughness_texture),
            fits(&material.metallic_texture),
        );

        // Base colour, with the opacity texture as its alpha where the two line up.
        let opacity = opacity.filter(|o| base.is_none_or(|b| aligned(&b, o, textures)));
        if let Some(layout) = base.or(opacity) {
            let sources = [base.map(|b| (b, 0..4)), opacity.map(|o| (o, 3..4))];
            // Without a colour texture the image is white, its alpha the opacity lookup's.
            let info = self.bake(
                "baseColor",
                layout,
                textures,
                true,
                &sources,
                |out, r, v, range| {
                    for c in range {
                        // The opacity lookup's channel becomes alpha.
                        out[c] = v[r.unwrap_or(c)];
                    }
                },
            );
            m["pbrMetallicRoughness"]["baseColorTexture"] = info;
        }

        // Metallic (B) and roughness (G) in one image.
        let metal = metal.filter(|mt| rough.is_none_or(|r| aligned(&r, mt, textures)));
        if let Some(layout) = rough.or(metal) {
            let sources = [rough.map(|r| (r, 1..2)), metal.map(|mt| (mt, 2..3))];
            let info = self.bake(
                "metallicRoughness",
                layout,
                textures,
                false,
                &sources,
                |out, r, v, range| {
                    for c in range {
                        out[c] = v[r.unwrap_or(c)];
                    }
                },
            );
            m["pbrMetallicRoughness"]["metallicRoughnessTexture"] = info;
        }

        if let Some(n) = fits(&material.normal_texture) {
            let sources = [Some((n, 0..3))];
            let mut info = self.bake(
                "normal",
                n,
                textures,
                false,
                &sources,
                |out, _, v, range| {
                    // glTF decodes `2 * texel - 1`; the lookup gives the normal itself.
                    for c in range {
                        out[c] = (v[c] + 1.0) * 0.5;
                    }
                },
            );
            if material.normal_scale != 1.0 {
                info["scale"] = json!(material.normal_scale);
            }
            m["normalTexture"] = info;
        }
        if let Some(o) = fits(&material.occlusion_texture) {
            let sources = [Some((o, 0..1))];
            let mut info = self.bake(
                "occlusion",
                o,
                textures,
                false,
                &sources,
                |out, r, v, range| {
                    for c in range {
                        out[c] = v[r.unwrap_or(c)];
                    }
                },
            );
            if material.occlusion_strength != 1.0 {
                info["strength"] = json!(material.occlusion_strength);
            }
            m["occlusionTexture"] = info;
        }
        if let Some(e) = fits(&material.emissive_texture) {
            let sources = [Some((e, 0..3))];
            let info = self.bake(
                "emissive",
                e,
                textures,
                true,
                &sources,
                |out, _, v, range| {
                    for c in range {
                        out[c] = v[c];
                    }
                },
            );
            m["emissiveTexture"] = info;
        }
    }

    /// Bakes the lookups in `sources` (each with the output channels it fills) into one image of
    /// `layout`'s size, and returns the texture info. `place(out, channel, value, range)` puts a
    /// lookup's `value` (`texel * scale + bias`) into the output texel: `channel` is the lookup's
    /// scalar channel for scalar slots, `None` for colour slots.
    fn bake(
        &mut self,
        slot: &'static str,
        layout: TextureRef,
        textures: &[Texture],
        srgb: bool,
        sources: &[Option<(TextureRef, std::ops::Range<usize>)>],
        place: impl Fn(&mut [f32; 4], Option<usize>, [f32; 4], std::ops::Range<usize>),
    ) -> Value {
        let scalar_slot = matches!(slot, "metallicRoughness" | "occlusion");
        let key = BakeKey {
            slot,
            sources: sources
                .iter()
                .flatten()
                .map(|(r, range)| {
                    (
                        r.texture,
                        r.scale.map(f32::to_bits),
                        r.bias.map(f32::to_bits),
                        r.channel.index() * 8 + range.start,
                    )
                })
                .collect(),
        };
        let image = match self.baked.get(&key) {
            Some(&i) => i,
            None => {
                let size = &textures[layout.texture];
                // Channels no lookup fills read 1 (glTF multiplies them with their factor).
                let mut texels = vec![[1.0f32; 4]; size.texels.len()];
                for (r, range) in sources.iter().flatten() {
                    let source = &textures[r.texture];
                    let channel = (scalar_slot || range.len() == 1 && slot == "baseColor")
                        .then(|| r.channel.index());
                    for (out, t) in texels.iter_mut().zip(&source.texels) {
                        let mut v = [0.0; 4];
                        for c in 0..4 {
                            v[c] = t[c] * r.scale[c] + r.bias[c];
                        }
                        place(out, channel, v, range.clone());
                    }
                }
                let png =
                    encode_png_texels(size.width, size.height, &texels, srgb).unwrap_or_default();
                self.images.push(png);
                let i = self.images.len() - 1;
                self.baked.insert(key, i);
                i
            }
        };
        let sampler = self.sampler(&layout);
        self.textures
            .push(json!({"source": image, "sampler": sampler}));
        let mut info = json!({"index": self.textures.len() - 1});
        if layout.uv_set != 0 {
            info["texCoord"] = json!(layout.uv_set);
        }
        if !layout.transform.is_identity() {
            let (offset, rotation, scale) = offset_rotation_scale(&layout.transform);
            info["extensions"] = json!({
                "KHR_texture_transform": {"offset": offset, "rotation": rotation, "scale": scale}
            });
            self.uses_transform = true;
        }
        info
    }

    fn sampler(&mut self, r: &TextureRef) -> usize {
        let wrap = |w: Wrap| match w {
            Wrap::Repeat => 10497,
            Wrap::Clamp => 33071,
            Wrap::Mirror => 33648,
        };
        let (mag, min) = match r.filter {
            Filter::Linear => (9729, 9987),
            Filter::Nearest => (9728, 9728),
        };
        let sampler = json!({"magFilter": mag, "minFilter": min, "wrapS": wrap(r.wrap[0]), "wrapT": wrap(r.wrap[1])});
        match self.samplers.iter().position(|s| *s == sampler) {
            Some(i) => i,
            None => {
                self.samplers.push(sampler);
                self.samplers.len() - 1
            }
        }
    }

    /// Writes `images` (given the buffer view each image's bytes went to), `textures`,
    /// `samplers` and the extension use into the document.
    pub fn write(self, doc: &mut Value, image_views: &[usize]) {
        if self.textures.is_empty() {
            return;
        }
        doc["images"] = json!(image_views
            .iter()
            .map(|&v| json!({"bufferView": v, "mimeType": "image/png"}))
            .collect::<Vec<_>>());
        doc["textures"] = json!(self.textures);
        doc["samplers"] = json!(self.samplers);
        if self.uses_transform {
            doc["extensionsUsed"] = json!(["KHR_texture_transform"]);
        }
    }
}

/// Two lookups read the same texel grid through the same coordinates (so one image holds both).
fn aligned(a: &TextureRef, b: &TextureRef, textures: &[Texture]) -> bool {
    let (ta, tb) = (&textures[a.texture], &textures[b.texture]);
    (ta.width, ta.height) == (tb.width, tb.height)
        && a.uv_set == b.uv_set
        && a.transform == b.transform
        && a.wrap == b.wrap
        && a.filter == b.filter
}

/// `KHR_texture_transform`'s offset, rotation and scale of a transform (the inverse of
/// [`UvTransform::from_offset_rotation_scale`]); a shear, which it cannot hold, is dropped.
fn offset_rotation_scale(t: &UvTransform) -> ([f32; 2], f32, [f32; 2]) {
    let [[r00, r01, r02], [r10, r11, r12]] = t.rows;
    let sx = (r00 * r00 + r10 * r10).sqrt();
    let rotation = (-r10).atan2(r00);
    let (s, c) = rotation.sin_cos();
    let sy = r01 * s + r11 * c;
    ([r02, r12], rotation, [sx, sy])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texture_transforms_decompose_to_what_builds_them() {
        let t = UvTransform::from_offset_rotation_scale([0.25, -0.5], 0.7, [2.0, 0.5]);
        let (offset, rotation, scale) = offset_rotation_scale(&t);
        let back = UvTransform::from_offset_rotation_scale(offset, rotation, scale);
        for (a, b) in t.rows.iter().flatten().zip(back.rows.iter().flatten()) {
            assert!((a - b).abs() < 1e-5, "{t:?} vs {back:?}");
        }
    }
}
