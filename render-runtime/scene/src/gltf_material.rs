//! glTF materials and textures: the core metallic-roughness inputs with their texture infos
//! (texCoord, samplers, `KHR_texture_transform`), `KHR_materials_emissive_strength`,
//! `_transmission`, `_ior`, `_volume`, `_clearcoat`, `_specular` and `_sheen`, into the scene's
//! [`Material`]; and the textures they use, decoded once per way they are used (colour textures
//! from sRGB to linear, data textures as they are).
//!
//! Materials are read from their JSON (the `gltf` crate's typed material, serialised back to a
//! value), so extensions the crate models and those it does not (clearcoat, sheen, a texture
//! transform on a normal or occlusion texture) are read the same way. Texture indices in
//! extensions the crate does not validate are checked here.

use std::collections::HashMap;

use serde_json::Value;

use super::gltf::{image_bytes, image_reader, ImportError, ImportLimits};
use crate::{
    AlphaMode, Channel, Clearcoat, ColorSpace, Filter, Material, Sheen, Texture, TextureRef,
    TextureUse, Transmission, UvTransform, Volume, Wrap,
};

/// glTF extensions the material importer implements: a file that requires them imports.
pub const MATERIAL_EXTENSIONS: &[&str] = &[
    "KHR_materials_emissive_strength",
    "KHR_texture_transform",
    "KHR_materials_transmission",
    "KHR_materials_ior",
    "KHR_materials_volume",
    "KHR_materials_clearcoat",
    "KHR_materials_specular",
    "KHR_materials_sheen",
];

/// Parses and validates a plain (lowered) glTF document. A required extension that neither
/// this module nor the decoding stage implements fails with
/// [`ImportError::UnsupportedExtension`] naming it, before the `gltf` crate (whose own list of
/// extensions is shorter) rejects it as an anonymous validation error.
pub(crate) fn parse_document(json: &[u8]) -> Result<gltf::Document, ImportError> {
    let gltf = gltf::Gltf::from_slice_without_validation(json)
        .map_err(|source| ImportError::Parse { source })?;
    let mut root = gltf.document.into_json();
    if let Some(extension) = root.extensions_required.iter().find(|e| {
        !MATERIAL_EXTENSIONS.contains(&e.as_str())
            && !super::gltf_decode::DECODED_EXTENSIONS.contains(&e.as_str())
    }) {
        return Err(ImportError::UnsupportedExtension {
            extension: extension.clone(),
        });
    }
    // Everything left is implemented here.
    root.extensions_required.clear();
    gltf::Document::from_json(root).map_err(|source| ImportError::Parse { source })
}

/// The textures the converted materials use, decoded, and the materials pointing at them.
pub(crate) struct ImportedMaterials {
    pub materials: Vec<Material>,
    pub textures: Vec<Texture>,
}

/// One texture to decode: a glTF image and how it is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ImageUse {
    pub image: usize,
    pub usage: TextureUse,
}

/// Converts every material of the document. The texture references it returns hold glTF
/// texture indices; [`texture_uses`] and [`decode_textures`] turn them into scene textures.
pub(crate) fn convert_materials(document: &gltf::Document) -> Result<Vec<Material>, ImportError> {
    let texture_count = document.textures().len();
    document
        .as_json()
        .materials
        .iter()
        .enumerate()
        .map(|(i, json)| {
            let value = serde_json::to_value(json).map_err(|e| ImportError::Invalid {
                reason: format!("material {i}: {e}"),
            })?;
            let reader = MaterialReader {
                document,
                index: i,
                name: json.name.as_deref(),
                texture_count,
            };
            reader.material(&value)
        })
        .collect()
}

/// The distinct (image, use) pairs the materials need, in first-use order.
pub(crate) fn texture_uses(document: &gltf::Document, materials: &[Material]) -> Vec<ImageUse> {
    let mut out: Vec<ImageUse> = Vec::new();
    for material in materials {
        for (texture_ref, usage) in material.texture_refs() {
            let Some(texture) = document.textures().nth(texture_ref.texture) else {
                continue;
            };
            let image_use = ImageUse {
                image: texture.source().index(),
                usage,
            };
            if !out.contains(&image_use) {
                out.push(image_use);
            }
        }
    }
    out
}

/// Decodes every (image, use) pair once and points the materials' references at the results.
pub(crate) fn decode_textures(
    document: &gltf::Document,
    buffers: &[gltf::buffer::Data],
    mut materials: Vec<Material>,
    uses: &[ImageUse],
    limits: &ImportLimits,
) -> Result<ImportedMaterials, ImportError> {
    let images: Vec<gltf::Image> = document.images().collect();
    let mut textures = Vec::with_capacity(uses.len());
    let mut index: HashMap<ImageUse, usize> = HashMap::new();
    // An image used both ways is decoded once and converted twice.
    let mut decoded_images: HashMap<usize, image::DynamicImage> = HashMap::new();
    for image_use in uses {
        let image = &images[image_use.image];
        let error = |reason: String| ImportError::Image {
            image: image.index(),
            reason,
        };
        let decoded = match decoded_images.entry(image.index()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let bytes = image_bytes(document, image, buffers)?;
                let mut reader = image_reader(bytes)
                    .ok_or_else(|| error("is not a PNG, JPEG or WebP".into()))?;
                // The header was checked against the limits already; these guard the decoder.
                let mut decode_limits = image::Limits::default();
                decode_limits.max_alloc = Some(limits.max_texture_pixels.saturating_mul(8));
                reader.limits(decode_limits);
                let decoded = reader
                    .decode()
                    .map_err(|e| error(format!("cannot decode: {e}")))?;
                e.insert(decoded)
            }
        };
        let color_space = match image_use.usage {
            TextureUse::Color => ColorSpace::Srgb,
            TextureUse::Data => ColorSpace::Linear,
        };
        textures.push(Texture {
            width: decoded.width(),
            height: decoded.height(),
            texels: decode_texels(decoded, color_space),
            color_space,
        });
        index.insert(*image_use, textures.len() - 1);
        // Drop the decoded image once no later use needs it.
        if !uses[index.len()..].iter().any(|u| u.image == image.index()) {
            decoded_images.remove(&image.index());
        }
    }
    let image_of: Vec<usize> = document.textures().map(|t| t.source().index()).collect();
    for material in &mut materials {
        for (texture_ref, usage) in material.texture_refs_mut() {
            let image = image_of[texture_ref.texture];
            texture_ref.texture = index[&ImageUse { image, usage }];
        }
    }
    Ok(ImportedMaterials {
        materials,
        textures,
    })
}

fn srgb_to_linear(c: f32) -> f32 {
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

/// Converts decoded image pixels to linear RGBA floats: colour channels from sRGB when the
/// image holds colour, as they are when it holds data; alpha is always linear. Grey images
/// become grey RGB; images without alpha are opaque.
fn decode_texels(image: &image::DynamicImage, color_space: ColorSpace) -> Vec<[f32; 4]> {
    let srgb = color_space == ColorSpace::Srgb;
    let sixteen_bit = matches!(
        image.color(),
        image::ColorType::L16
            | image::ColorType::La16
            | image::ColorType::Rgb16
            | image::ColorType::Rgba16
    );
    if sixteen_bit {
        let convert = |v: u16| {
            let c = v as f32 / 65535.0;
            if srgb {
                srgb_to_linear(c)
            } else {
                c
            }
        };
        return image
            .to_rgba16()
            .pixels()
            .map(|p| {
                [
                    convert(p.0[0]),
                    convert(p.0[1]),
                    convert(p.0[2]),
                    p.0[3] as f32 / 65535.0,
                ]
            })
            .collect();
    }
    let lut: Vec<f32> = (0..256)
        .map(|i| {
            let c = i as f32 / 255.0;
            if srgb {
                srgb_to_linear(c)
            } else {
                c
            }
        })
        .collect();
    image
        .to_rgba8()
        .pixels()
        .map(|p| {
            [
                lut[p.0[0] as usize],
                lut[p.0[1] as usize],
                lut[p.0[2] as usize],
                p.0[3] as f32 / 255.0,
            ]
        })
        .collect()
}

/// Reads one material's JSON.
struct MaterialReader<'a> {
    document: &'a gltf::Document,
    index: usize,
    name: Option<&'a str>,
    texture_count: usize,
}

/// A finite number, or `default`.
fn number(v: Option<&Value>, default: f32) -> f32 {
    v.and_then(Value::as_f64)
        .map(|x| x as f32)
        .filter(|x| x.is_finite())
        .unwrap_or(default)
}

/// A finite number in 0..1, or `default`.
fn unit(v: Option<&Value>, default: f32) -> f32 {
    number(v, default).clamp(0.0, 1.0)
}

/// An array of `N` finite numbers, or `default`.
fn numbers<const N: usize>(v: Option<&Value>, default: [f32; N]) -> [f32; N] {
    let Some(list) = v.and_then(Value::as_array) else {
        return default;
    };
    if list.len() != N {
        return default;
    }
    std::array::from_fn(|i| number(list.get(i), default[i]))
}

fn wrap_mode(mode: gltf::texture::WrappingMode) -> Wrap {
    match mode {
        gltf::texture::WrappingMode::ClampToEdge => Wrap::Clamp,
        gltf::texture::WrappingMode::MirroredRepeat => Wrap::Mirror,
        gltf::texture::WrappingMode::Repeat => Wrap::Repeat,
    }
}

impl MaterialReader<'_> {
    fn label(&self) -> String {
        match self.name {
            Some(n) => format!("material #{} '{n}'", self.index),
            None => format!("material #{}", self.index),
        }
    }

    /// A texture info (`{"index", "texCoord", "extensions": {"KHR_texture_transform"}}`) as a
    /// reference holding the glTF texture index. Texture coordinate sets past 1 are not
    /// imported (the input keeps its factor).
    fn texture(&self, info: Option<&Value>, what: &str) -> Result<Option<TextureRef>, ImportError> {
        let Some(info) = info.filter(|v| v.is_object()) else {
            return Ok(None);
        };
        let index =
            info.get("index")
                .and_then(Value::as_u64)
                .ok_or_else(|| ImportError::Invalid {
                    reason: format!("{}: {what} has no texture index", self.label()),
                })? as usize;
        if index >= self.texture_count {
            return Err(ImportError::Invalid {
                reason: format!(
                    "{}: {what} refers to texture {index}, but the file has {}",
                    self.label(),
                    self.texture_count
                ),
            });
        }
        let texture = self
            .document
            .textures()
            .nth(index)
            .expect("index checked against the texture count");
        let sampler = texture.sampler();
        let mut uv_set = info.get("texCoord").and_then(Value::as_u64).unwrap_or(0);
        let mut transform = UvTransform::IDENTITY;
        if let Some(t) = info
            .get("extensions")
            .and_then(|e| e.get("KHR_texture_transform"))
        {
            transform = UvTransform::from_offset_rotation_scale(
                numbers(t.get("offset"), [0.0, 0.0]),
                number(t.get("rotation"), 0.0),
                numbers(t.get("scale"), [1.0, 1.0]),
            );
            if let Some(set) = t.get("texCoord").and_then(Value::as_u64) {
                uv_set = set;
            }
        }
        if uv_set > 1 {
            return Ok(None);
        }
        let filter = match sampler.mag_filter() {
            Some(gltf::texture::MagFilter::Nearest) => Filter::Nearest,
            _ => Filter::Linear,
        };
        Ok(Some(TextureRef {
            uv_set: uv_set as u32,
            transform,
            wrap: [wrap_mode(sampler.wrap_s()), wrap_mode(sampler.wrap_t())],
            filter,
            ..TextureRef::new(index)
        }))
    }

    fn material(&self, m: &Value) -> Result<Material, ImportError> {
        let empty = Value::Null;
        let pbr = m.get("pbrMetallicRoughness").unwrap_or(&empty);
        let ext = |name: &str| m.get("extensions").and_then(|e| e.get(name));
        let base_color = numbers(pbr.get("baseColorFactor"), [1.0; 4]).map(|c| c.clamp(0.0, 1.0));
        let metallic_roughness = self.texture(
            pbr.get("metallicRoughnessTexture"),
            "metallicRoughnessTexture",
        )?;
        let normal_info = m.get("normalTexture");
        // glTF stores normals as 2 * texel - 1.
        let normal_texture = self
            .texture(normal_info, "normalTexture")?
            .map(normal_map_ref);
        let occlusion_info = m.get("occlusionTexture");
        let strength = number(
            ext("KHR_materials_emissive_strength").and_then(|e| e.get("emissiveStrength")),
            1.0,
        )
        .max(0.0);
        let emissive = numbers(m.get("emissiveFactor"), [0.0; 3]).map(|c| c.max(0.0) * strength);
        let alpha_mode = match m.get("alphaMode").and_then(Value::as_str) {
            Some("MASK") => AlphaMode::Mask {
                cutoff: number(m.get("alphaCutoff"), 0.5).max(0.0),
            },
            Some("BLEND") => AlphaMode::Blend,
            _ => AlphaMode::Opaque,
        };

        let mut material = Material {
            name: self.name.map(str::to_owned),
            base_color,
            base_color_texture: self.texture(pbr.get("baseColorTexture"), "baseColorTexture")?,
            metallic: unit(pbr.get("metallicFactor"), 1.0),
            metallic_texture: metallic_roughness.map(|t| t.with_channel(Channel::B)),
            roughness: unit(pbr.get("roughnessFactor"), 1.0),
            roughness_texture: metallic_roughness.map(|t| t.with_channel(Channel::G)),
            normal_texture,
            normal_scale: number(normal_info.and_then(|n| n.get("scale")), 1.0),
            occlusion_texture: self.texture(occlusion_info, "occlusionTexture")?,
            occlusion_strength: unit(occlusion_info.and_then(|o| o.get("strength")), 1.0),
            emissive,
            emissive_texture: self.texture(m.get("emissiveTexture"), "emissiveTexture")?,
            alpha_mode,
            ..Material::default()
        };

        if let Some(ior) = ext("KHR_materials_ior") {
            // The extension allows 0 (a legacy "infinite" IOR); treat it and invalid values
            // as the default.
            let value = number(ior.get("ior"), 1.5);
            material.ior = if (1.0..=10.0).contains(&value) {
                value
            } else {
                1.5
            };
        }
        if let Some(s) = ext("KHR_materials_specular") {
            material.specular = unit(s.get("specularFactor"), 1.0);
            material.specular_texture = self
                .texture(s.get("specularTexture"), "specularTexture")?
                .map(|t| t.with_channel(Channel::A));
            material.specular_color =
                numbers(s.get("specularColorFactor"), [1.0; 3]).map(|c| c.max(0.0));
            material.specular_color_texture =
                self.texture(s.get("specularColorTexture"), "specularColorTexture")?;
        }
        if let Some(t) = ext("KHR_materials_transmission") {
            let transmission = Transmission {
                factor: unit(t.get("transmissionFactor"), 0.0),
                texture: self.texture(t.get("transmissionTexture"), "transmissionTexture")?,
            };
            if transmission.factor > 0.0 {
                material.transmission = Some(transmission);
            }
        }
        if let Some(v) = ext("KHR_materials_volume") {
            let distance = number(v.get("attenuationDistance"), f32::INFINITY);
            material.volume = Some(Volume {
                thickness: number(v.get("thicknessFactor"), 0.0).max(0.0),
                thickness_texture: self
                    .texture(v.get("thicknessTexture"), "thicknessTexture")?
                    .map(|t| t.with_channel(Channel::G)),
                attenuation_color: numbers(v.get("attenuationColor"), [1.0; 3])
                    .map(|c| c.clamp(0.0, 1.0)),
                attenuation_distance: if distance > 0.0 {
                    distance
                } else {
                    f32::INFINITY
                },
            });
        }
        if let Some(c) = ext("KHR_materials_clearcoat") {
            let coat_normal = c.get("clearcoatNormalTexture");
            let coat = Clearcoat {
                factor: unit(c.get("clearcoatFactor"), 0.0),
                texture: self.texture(c.get("clearcoatTexture"), "clearcoatTexture")?,
                roughness: unit(c.get("clearcoatRoughnessFactor"), 0.0),
                roughness_texture: self
                    .texture(
                        c.get("clearcoatRoughnessTexture"),
                        "clearcoatRoughnessTexture",
                    )?
                    .map(|t| t.with_channel(Channel::G)),
                normal_texture: self
                    .texture(coat_normal, "clearcoatNormalTexture")?
                    .map(normal_map_ref),
                normal_scale: number(coat_normal.and_then(|n| n.get("scale")), 1.0),
            };
            if coat.factor > 0.0 {
                material.clearcoat = Some(coat);
            }
        }
        if let Some(s) = ext("KHR_materials_sheen") {
            let sheen = Sheen {
                color: numbers(s.get("sheenColorFactor"), [0.0; 3]).map(|c| c.clamp(0.0, 1.0)),
                color_texture: self.texture(s.get("sheenColorTexture"), "sheenColorTexture")?,
                roughness: unit(s.get("sheenRoughnessFactor"), 0.0),
                roughness_texture: self
                    .texture(s.get("sheenRoughnessTexture"), "sheenRoughnessTexture")?
                    .map(|t| t.with_channel(Channel::A)),
            };
            if sheen.color.iter().any(|&c| c > 0.0) {
                material.sheen = Some(sheen);
            }
        }
        Ok(material)
    }
}

/// glTF normal textures: the tangent-space normal is `2 * texel - 1`.
fn normal_map_ref(t: TextureRef) -> TextureRef {
    TextureRef {
        scale: [2.0, 2.0, 2.0, 1.0],
        bias: [-1.0, -1.0, -1.0, 0.0],
        ..t
    }
}
