//! The material model: glTF 2.0 metallic-roughness with the common `KHR_materials_*` layers,
//! written so that USD's UsdPreviewSurface maps onto it as well.
//!
//! Every input is a factor, optionally multiplied by a [`TextureRef`]: a texture lookup with its
//! own UV set, UV transform, sampler (wrap and filter), per-channel scale and bias, and, for scalar
//! inputs, the channel to read. The conventions, shared by all importers:
//!
//! - A texture's value is `texel * scale + bias` (UsdUVTexture's scale and bias; glTF leaves them
//!   at 1 and 0), and multiplies the factor. Importers of formats where a texture replaces the
//!   value (USD) set the factor to 1.
//! - Colour inputs use the texture's RGB; scalar inputs read [`TextureRef::channel`] (glTF reads
//!   metallic from B and roughness from G of one texture; USD names its output r, g, b or a).
//! - UVs follow glTF: `(0, 0)` is the top-left corner of the image, v grows downwards. USD's st
//!   has t up; [`UvTransform::from_usd_transform2d`] converts a UsdTransform2d accordingly.
//! - Normal textures give the tangent-space normal directly after scale and bias (glTF's
//!   `2 * texel - 1` is scale 2, bias -1, which is also what UsdPreviewSurface asks files to
//!   author); `normal_scale` then scales its x and y (glTF `normalTexture.scale`).

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

/// How texture coordinates outside `0..1` map onto the image, per axis (glTF sampler `wrapS`,
/// `wrapT`; UsdUVTexture `wrapS`, `wrapT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Wrap {
    #[default]
    Repeat,
    /// The edge texel continues (glTF CLAMP_TO_EDGE, USD clamp).
    Clamp,
    /// Every other repetition is mirrored (glTF MIRRORED_REPEAT, USD mirror).
    Mirror,
}

/// How a lookup between texel centres is filtered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Filter {
    /// Bilinear interpolation of the four nearest texels.
    #[default]
    Linear,
    /// The nearest texel (glTF magFilter NEAREST: pixel art, ID maps).
    Nearest,
}

/// The channel a scalar input reads from its texture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Channel {
    #[default]
    R,
    G,
    B,
    A,
}

impl Channel {
    /// The component index (R = 0 .. A = 3).
    pub fn index(self) -> usize {
        match self {
            Channel::R => 0,
            Channel::G => 1,
            Channel::B => 2,
            Channel::A => 3,
        }
    }
}

/// An affine map of texture coordinates, `uv' = M * (u, v, 1)` with `M` a 2x3 matrix (rows).
///
/// glTF's `KHR_texture_transform` and USD's UsdTransform2d both reduce to it (see the
/// constructors); storing the matrix keeps the model neutral and the per-sample cost at four
/// multiply-adds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UvTransform {
    pub rows: [[f32; 3]; 2],
}

impl Default for UvTransform {
    fn default() -> Self {
        UvTransform::IDENTITY
    }
}

impl UvTransform {
    pub const IDENTITY: UvTransform = UvTransform {
        rows: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
    };

    /// glTF `KHR_texture_transform`: `T(offset) * R(rotation) * S(scale)`, rotation in radians,
    /// counter-clockwise in glTF's UV space (which has v pointing down), as the extension
    /// specifies.
    pub fn from_offset_rotation_scale(offset: [f32; 2], rotation: f32, scale: [f32; 2]) -> Self {
        let (s, c) = rotation.sin_cos();
        UvTransform {
            rows: [
                [c * scale[0], s * scale[1], offset[0]],
                [-s * scale[0], c * scale[1], offset[1]],
            ],
        }
    }

    /// USD `UsdTransform2d` (scale, then rotation in degrees counter-clockwise, then
    /// translation), defined on st coordinates (t up), expressed on our uv (v = 1 - t).
    pub fn from_usd_transform2d(
        translation: [f32; 2],
        rotation_degrees: f32,
        scale: [f32; 2],
    ) -> Self {
        let (s, c) = rotation_degrees.to_radians().sin_cos();
        // The map in st space: [a00 a01 b0; a10 a11 b1].
        let (a00, a01, a10, a11) = (c * scale[0], -s * scale[1], s * scale[0], c * scale[1]);
        let (b0, b1) = (translation[0], translation[1]);
        // Conjugated by the flip F(u, v) = (u, 1 - v): uv' = F(A * F(uv) + b).
        UvTransform {
            rows: [[a00, -a01, a01 + b0], [-a10, a11, 1.0 - a11 - b1]],
        }
    }

    pub fn is_identity(&self) -> bool {
        *self == UvTransform::IDENTITY
    }

    pub fn apply(&self, uv: [f32; 2]) -> [f32; 2] {
        let [r0, r1] = self.rows;
        [
            r0[0] * uv[0] + r0[1] * uv[1] + r0[2],
            r1[0] * uv[0] + r1[1] * uv[1] + r1[2],
        ]
    }
}

/// One texture lookup of a material input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TextureRef {
    /// Index into [`crate::Scene::textures`].
    pub texture: usize,
    /// Which UV set of the mesh to read (0 or 1: glTF `texCoord`, USD's primvar reader).
    pub uv_set: u32,
    pub transform: UvTransform,
    /// Wrap mode along u and along v.
    pub wrap: [Wrap; 2],
    pub filter: Filter,
    /// The lookup's value is `texel * scale + bias`, per RGBA channel.
    pub scale: [f32; 4],
    pub bias: [f32; 4],
    /// The channel a scalar input reads (ignored by colour inputs).
    pub channel: Channel,
}

impl TextureRef {
    /// A plain lookup of `texture`: UV set 0, no transform, repeat, linear, no scale or bias.
    pub fn new(texture: usize) -> TextureRef {
        TextureRef {
            texture,
            uv_set: 0,
            transform: UvTransform::IDENTITY,
            wrap: [Wrap::Repeat; 2],
            filter: Filter::Linear,
            scale: [1.0; 4],
            bias: [0.0; 4],
            channel: Channel::R,
        }
    }

    /// The same lookup reading `channel`.
    pub fn with_channel(self, channel: Channel) -> TextureRef {
        TextureRef { channel, ..self }
    }

    /// True when this lookup reads the same texels as `other` (same texture, UV set, transform,
    /// sampler, scale and bias), so one texture fetch can serve both.
    pub fn same_lookup(&self, other: &TextureRef) -> bool {
        self.texture == other.texture
            && self.uv_set == other.uv_set
            && self.transform == other.transform
            && self.wrap == other.wrap
            && self.filter == other.filter
            && self.scale == other.scale
            && self.bias == other.bias
    }
}

/// Light passing through the surface (`KHR_materials_transmission`): the dielectric base
/// becomes a rough glass whose colour is the base colour.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transmission {
    /// Fraction of the dielectric base that transmits, 0..1.
    pub factor: f32,
    /// Scalar texture (glTF reads R).
    pub texture: Option<TextureRef>,
}

/// The medium inside a closed transmissive mesh (`KHR_materials_volume`). A path tracer
/// refracts at both surfaces and attenuates along the real path inside; `thickness` is kept for
/// writers and rasterising engines.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Volume {
    /// Thickness in object units; 0 means thin-walled (no refraction through a volume).
    pub thickness: f32,
    /// Scalar texture (glTF reads G).
    pub thickness_texture: Option<TextureRef>,
    /// Linear colour that white light has after travelling `attenuation_distance` inside.
    pub attenuation_color: [f32; 3],
    /// Distance in world units; infinite means no absorption.
    pub attenuation_distance: f32,
}

impl Default for Volume {
    fn default() -> Self {
        Volume {
            thickness: 0.0,
            thickness_texture: None,
            attenuation_color: [1.0; 3],
            attenuation_distance: f32::INFINITY,
        }
    }
}

/// A clear dielectric coat over the whole material (`KHR_materials_clearcoat`; USD's
/// clearcoat and clearcoatRoughness). Its index of refraction is 1.5.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clearcoat {
    /// Coat weight, 0..1.
    pub factor: f32,
    /// Scalar texture (glTF reads R).
    pub texture: Option<TextureRef>,
    /// Perceptual roughness of the coat, 0..1.
    pub roughness: f32,
    /// Scalar texture (glTF reads G).
    pub roughness_texture: Option<TextureRef>,
    /// The coat's own normal map (same convention as [`Material::normal_texture`]).
    pub normal_texture: Option<TextureRef>,
    pub normal_scale: f32,
}

impl Default for Clearcoat {
    fn default() -> Self {
        Clearcoat {
            factor: 0.0,
            texture: None,
            roughness: 0.0,
            roughness_texture: None,
            normal_texture: None,
            normal_scale: 1.0,
        }
    }
}

/// A retro-reflective fibre layer over the dielectric base (`KHR_materials_sheen`: cloth).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Sheen {
    /// Linear sheen colour; black turns the layer off.
    pub color: [f32; 3],
    /// Colour texture (sRGB).
    pub color_texture: Option<TextureRef>,
    /// Perceptual sheen roughness, 0..1.
    pub roughness: f32,
    /// Scalar texture (glTF reads A).
    pub roughness_texture: Option<TextureRef>,
}

/// A metallic-roughness material (glTF core model) with the common layers.
#[derive(Clone, Debug, PartialEq)]
pub struct Material {
    pub name: Option<String>,
    /// Linear RGBA base colour factor.
    pub base_color: [f32; 4],
    /// Base colour texture (sRGB colour, linear alpha).
    pub base_color_texture: Option<TextureRef>,
    /// Where alpha comes from when it is not the base colour texture's alpha (USD's opacity
    /// input connected to its own texture): a scalar texture that multiplies `base_color[3]`
    /// and replaces the base colour texture's alpha.
    pub opacity_texture: Option<TextureRef>,
    pub metallic: f32,
    /// Scalar texture (glTF reads B of metallicRoughnessTexture).
    pub metallic_texture: Option<TextureRef>,
    /// Perceptual roughness, 0..1.
    pub roughness: f32,
    /// Scalar texture (glTF reads G of metallicRoughnessTexture).
    pub roughness_texture: Option<TextureRef>,
    /// Tangent-space normal map (see the module docs for its encoding).
    pub normal_texture: Option<TextureRef>,
    /// Scales the normal map's x and y (glTF `normalTexture.scale`).
    pub normal_scale: f32,
    /// Ambient occlusion, a scalar texture (glTF reads R).
    pub occlusion_texture: Option<TextureRef>,
    /// How much of the occlusion applies: `1 + strength * (texel - 1)`.
    pub occlusion_strength: f32,
    /// Linear emitted radiance factor (glTF `emissiveFactor` times
    /// `KHR_materials_emissive_strength`).
    pub emissive: [f32; 3],
    /// Emissive colour texture (sRGB) multiplying `emissive`.
    pub emissive_texture: Option<TextureRef>,
    pub alpha_mode: AlphaMode,
    /// Strength of the dielectric specular reflection (`KHR_materials_specular`
    /// `specularFactor`): scales both F0 and F90 of the non-metal part. 1 is glTF's default, 0
    /// turns a non-metal into a pure Lambertian reflector.
    pub specular: f32,
    /// Scalar texture (glTF reads A).
    pub specular_texture: Option<TextureRef>,
    /// Linear tint of the dielectric F0 (`specularColorFactor`); F0 is
    /// `min(f0(ior) * specular_color, 1)`.
    pub specular_color: [f32; 3],
    /// Colour texture (sRGB).
    pub specular_color_texture: Option<TextureRef>,
    /// Index of refraction of the dielectric part (`KHR_materials_ior`); 1.5 gives F0 = 0.04.
    pub ior: f32,
    pub transmission: Option<Transmission>,
    pub volume: Option<Volume>,
    pub clearcoat: Option<Clearcoat>,
    pub sheen: Option<Sheen>,
}

impl Default for Material {
    fn default() -> Self {
        Material {
            name: None,
            base_color: [1.0, 1.0, 1.0, 1.0],
            base_color_texture: None,
            opacity_texture: None,
            metallic: 1.0,
            metallic_texture: None,
            roughness: 1.0,
            roughness_texture: None,
            normal_texture: None,
            normal_scale: 1.0,
            occlusion_texture: None,
            occlusion_strength: 1.0,
            emissive: [0.0; 3],
            emissive_texture: None,
            alpha_mode: AlphaMode::Opaque,
            specular: 1.0,
            specular_texture: None,
            specular_color: [1.0; 3],
            specular_color_texture: None,
            ior: 1.5,
            transmission: None,
            volume: None,
            clearcoat: None,
            sheen: None,
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

    /// The emitted radiance averaged over the emissive texture (the factor alone without
    /// one): the single colour a writer that carries no textures writes, so that a model
    /// whose emissive factor is 1 and whose emissive map is mostly black does not glow white.
    pub fn emissive_mean(&self, textures: &[crate::Texture]) -> [f32; 3] {
        let Some(t) = &self.emissive_texture else {
            return self.emissive;
        };
        let Some(texture) = textures.get(t.texture).filter(|t| !t.texels.is_empty()) else {
            return self.emissive;
        };
        let mut sum = [0.0f64; 3];
        for texel in &texture.texels {
            for (c, s) in sum.iter_mut().enumerate() {
                *s += (texel[c] * t.scale[c] + t.bias[c]).max(0.0) as f64;
            }
        }
        let n = texture.texels.len() as f64;
        std::array::from_fn(|c| self.emissive[c] * (sum[c] / n) as f32)
    }

    /// A material is opaque when no ray may pass through it by alpha. (Transmission is
    /// scattering, not coverage: a glass material is opaque in this sense.)
    pub fn is_opaque(&self) -> bool {
        match self.alpha_mode {
            AlphaMode::Opaque => true,
            AlphaMode::Mask { .. } | AlphaMode::Blend => false,
        }
    }

    /// Every texture reference of the material, with whether it holds colour (sRGB encoded) or
    /// data (linear). Importers use it to decode each image the way it is used.
    pub fn texture_refs(&self) -> Vec<(&TextureRef, TextureUse)> {
        use TextureUse::{Color, Data};
        let transmission = self.transmission.as_ref();
        let volume = self.volume.as_ref();
        let coat = self.clearcoat.as_ref();
        let sheen = self.sheen.as_ref();
        let slots = [
            (self.base_color_texture.as_ref(), Color),
            (self.opacity_texture.as_ref(), Data),
            (self.metallic_texture.as_ref(), Data),
            (self.roughness_texture.as_ref(), Data),
            (self.normal_texture.as_ref(), Data),
            (self.occlusion_texture.as_ref(), Data),
            (self.emissive_texture.as_ref(), Color),
            (self.specular_texture.as_ref(), Data),
            (self.specular_color_texture.as_ref(), Color),
            (transmission.and_then(|t| t.texture.as_ref()), Data),
            (volume.and_then(|v| v.thickness_texture.as_ref()), Data),
            (coat.and_then(|c| c.texture.as_ref()), Data),
            (coat.and_then(|c| c.roughness_texture.as_ref()), Data),
            (coat.and_then(|c| c.normal_texture.as_ref()), Data),
            (sheen.and_then(|s| s.color_texture.as_ref()), Color),
            (sheen.and_then(|s| s.roughness_texture.as_ref()), Data),
        ];
        slots
            .into_iter()
            .filter_map(|(r, u)| r.map(|r| (r, u)))
            .collect()
    }

    /// Mutable access to every texture reference with its use (for importers that renumber
    /// textures).
    pub fn texture_refs_mut(&mut self) -> Vec<(&mut TextureRef, TextureUse)> {
        use TextureUse::{Color, Data};
        let mut out: Vec<(&mut TextureRef, TextureUse)> = Vec::new();
        out.extend(self.base_color_texture.as_mut().map(|t| (t, Color)));
        out.extend(self.opacity_texture.as_mut().map(|t| (t, Data)));
        out.extend(self.metallic_texture.as_mut().map(|t| (t, Data)));
        out.extend(self.roughness_texture.as_mut().map(|t| (t, Data)));
        out.extend(self.normal_texture.as_mut().map(|t| (t, Data)));
        out.extend(self.occlusion_texture.as_mut().map(|t| (t, Data)));
        out.extend(self.emissive_texture.as_mut().map(|t| (t, Color)));
        out.extend(self.specular_texture.as_mut().map(|t| (t, Data)));
        out.extend(self.specular_color_texture.as_mut().map(|t| (t, Color)));
        if let Some(t) = &mut self.transmission {
            out.extend(t.texture.as_mut().map(|t| (t, Data)));
        }
        if let Some(v) = &mut self.volume {
            out.extend(v.thickness_texture.as_mut().map(|t| (t, Data)));
        }
        if let Some(c) = &mut self.clearcoat {
            out.extend(c.texture.as_mut().map(|t| (t, Data)));
            out.extend(c.roughness_texture.as_mut().map(|t| (t, Data)));
            out.extend(c.normal_texture.as_mut().map(|t| (t, Data)));
        }
        if let Some(s) = &mut self.sheen {
            out.extend(s.color_texture.as_mut().map(|t| (t, Color)));
            out.extend(s.roughness_texture.as_mut().map(|t| (t, Data)));
        }
        out
    }
}

/// Whether a texture holds colour (sRGB-encoded in the file) or data (linear).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextureUse {
    Color,
    Data,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ColorSpace, Texture};

    #[test]
    fn emissive_mean_averages_the_map_times_the_factor() {
        let texture = Texture {
            width: 4,
            height: 1,
            texels: vec![[0.0; 4], [0.0; 4], [0.0; 4], [1.0, 0.5, 0.0, 1.0]],
            color_space: ColorSpace::Srgb,
        };
        let glowing = Material {
            emissive: [2.0, 2.0, 2.0],
            emissive_texture: Some(TextureRef::new(0)),
            ..Material::default()
        };
        assert_eq!(glowing.emissive_mean(&[texture]), [0.5, 0.25, 0.0]);
        let plain = Material {
            emissive: [0.3, 0.2, 0.1],
            ..Material::default()
        };
        assert_eq!(plain.emissive_mean(&[]), [0.3, 0.2, 0.1]);
    }

    #[test]
    fn uv_transforms_follow_gltf_and_usd() {
        // glTF: offset, then rotation, then scale applied to the point (T * R * S).
        let t = UvTransform::from_offset_rotation_scale([0.5, 0.0], 0.0, [2.0, 1.0]);
        assert_eq!(t.apply([0.25, 0.5]), [1.0, 0.5]);
        let r = UvTransform::from_offset_rotation_scale(
            [0.0, 0.0],
            std::f32::consts::FRAC_PI_2,
            [1.0, 1.0],
        );
        let p = r.apply([1.0, 0.0]);
        assert!((p[0]).abs() < 1e-6 && (p[1] + 1.0).abs() < 1e-6, "{p:?}");
        // USD: a translation of +0.25 in t (up) moves our v (down) by -0.25.
        let u = UvTransform::from_usd_transform2d([0.0, 0.25], 0.0, [1.0, 1.0]);
        let p = u.apply([0.5, 0.5]);
        assert!(
            (p[0] - 0.5).abs() < 1e-6 && (p[1] - 0.25).abs() < 1e-6,
            "{p:?}"
        );
        // USD scale 2 about the st origin (bottom-left): our v = 1 maps to 1, v = 0 to -1.
        let s = UvTransform::from_usd_transform2d([0.0, 0.0], 0.0, [2.0, 2.0]);
        assert!((s.apply([0.0, 1.0])[1] - 1.0).abs() < 1e-6);
        assert!((s.apply([0.0, 0.0])[1] + 1.0).abs() < 1e-6);
        assert!(UvTransform::from_usd_transform2d([0.0, 0.0], 0.0, [1.0, 1.0]).is_identity());
    }
}
