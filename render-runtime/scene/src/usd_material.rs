//! UsdPreviewSurface networks as [`Material`]s: every input's authored value or, when it is
//! connected to a `UsdUVTexture`, a [`TextureRef`] with the texture's wrap modes, scale and bias,
//! source colour space, output channel, `UsdTransform2d` and the primvar its
//! `UsdPrimvarReader_float2` reads (which becomes the mesh's UV set 0 or 1).
//!
//! Connections are followed through material and node-graph interface inputs, the way Pixar's
//! `UsdShadeConnectableAPI` resolves them. A texture file that cannot be read leaves the input
//! at the texture's authored `inputs:fallback` (UsdUVTexture's own fallback when none is
//! authored) and adds a warning; the import goes on.
//!
//! The conventions are the scene model's ([`crate::material`]): a textured input has factor 1,
//! texture values are `texel * scale + bias`, and UVs have v down the image (USD's t up), which
//! [`UvTransform::from_usd_transform2d`] and the mesh importer's `v = 1 - t` account for.

use std::collections::HashMap;

use openusd::sdf::{self, Value};
use openusd::usd::Stage;

use super::budget::MemoryEstimate;
use super::gltf::ImportLimits;
use super::material::{AlphaMode, Channel, Clearcoat, Filter, TextureRef, UvTransform, Wrap};
use super::texture::{ColorSpace, Texture};
use super::usd::UsdImportError;
use super::{Material, Scene};

/// How many connection hops are followed before a network is taken to be cyclic.
const MAX_HOPS: usize = 16;

/// A material read from a UsdPreviewSurface network.
pub(crate) struct PreviewMaterial {
    pub material: Material,
    /// The primvar each UV set reads (index 0 is UV set 0); empty without textures.
    pub uv_primvars: Vec<String>,
    /// The diffuse colour is read from the mesh's `displayColor` (a `UsdPrimvarReader_float3`
    /// of `displayColor`), with `base_color` as the reader's fallback.
    pub diffuse_from_display_color: bool,
}

/// Reads texture bytes for a resolved asset path.
pub(crate) trait TextureFiles {
    fn read(&self, resolved: &str) -> Result<Vec<u8>, String>;
}

/// What an input is driven by.
enum Source {
    /// An authored value (or none).
    Value(Option<Value>),
    /// The output `output` of shader `shader`, whose `info:id` is `id`.
    Shader {
        shader: sdf::Path,
        id: String,
        output: String,
    },
}

/// Reads materials of one stage, decoding each texture file once per colour space.
pub(crate) struct MaterialReader<'a> {
    stage: &'a Stage,
    files: &'a dyn TextureFiles,
    limits: &'a ImportLimits,
    /// (resolved file, authored `sourceColorSpace`) -> index into the scene's textures.
    decoded: HashMap<(String, String), usize>,
}

impl<'a> MaterialReader<'a> {
    pub fn new(
        stage: &'a Stage,
        files: &'a dyn TextureFiles,
        limits: &'a ImportLimits,
    ) -> MaterialReader<'a> {
        MaterialReader {
            stage,
            files,
            limits,
            decoded: HashMap::new(),
        }
    }

    /// Reads the material at `path`; `None` when its surface is not a UsdPreviewSurface.
    pub fn read(
        &mut self,
        path: &sdf::Path,
        scene: &mut Scene,
        estimate: &mut MemoryEstimate,
        warnings: &mut Vec<String>,
    ) -> Result<Option<PreviewMaterial>, UsdImportError> {
        let fail = |e: anyhow::Error| UsdImportError::Prim {
            prim: path.as_str().to_owned(),
            reason: format!("{e:#}"),
        };
        let Some(surface) = self.surface_shader(path).map_err(fail)? else {
            return Ok(None);
        };
        let mut ctx = Ctx {
            scene,
            estimate,
            warnings,
            uv_primvars: Vec::new(),
            material: path.as_str().to_owned(),
        };
        let mut m = Material {
            name: path.name().map(str::to_owned),
            metallic: 0.0,
            roughness: 0.5,
            ..Material::default()
        };
        let mut diffuse_from_display_color = false;

        // diffuseColor (default 0.18 grey).
        match self.color_input(&surface, "diffuseColor", &mut ctx)? {
            ColorInput::Value(c) => m.base_color[..3].copy_from_slice(&c.map(clamp01)),
            ColorInput::Texture(mut t) => {
                m.base_color[..3].copy_from_slice(&[1.0; 3]);
                // USD's opacity is its own input: the diffuse texture's alpha is not coverage.
                t.scale[3] = 0.0;
                t.bias[3] = 1.0;
                m.base_color_texture = Some(t);
            }
            ColorInput::DisplayColor(fallback) => {
                m.base_color[..3].copy_from_slice(&fallback.map(clamp01));
                diffuse_from_display_color = true;
            }
            ColorInput::Unset => m.base_color[..3].copy_from_slice(&[0.18; 3]),
        }
        // emissiveColor (default black).
        match self.color_input(&surface, "emissiveColor", &mut ctx)? {
            ColorInput::Value(c) | ColorInput::DisplayColor(c) => m.emissive = c.map(non_negative),
            ColorInput::Texture(t) => {
                m.emissive = [1.0; 3];
                m.emissive_texture = Some(t);
            }
            ColorInput::Unset => {}
        }
        let (metallic, metallic_texture) =
            self.scalar_input(&surface, "metallic", 0.0, &mut ctx)?;
        m.metallic = clamp01(metallic);
        m.metallic_texture = metallic_texture;
        let (roughness, roughness_texture) =
            self.scalar_input(&surface, "roughness", 0.5, &mut ctx)?;
        m.roughness = clamp01(roughness);
        m.roughness_texture = roughness_texture;
        let (opacity, opacity_texture) = self.scalar_input(&surface, "opacity", 1.0, &mut ctx)?;
        m.base_color[3] = clamp01(opacity);
        m.opacity_texture = opacity_texture;
        let (threshold, _) = self.scalar_input(&surface, "opacityThreshold", 0.0, &mut ctx)?;
        let threshold = clamp01(threshold);
        m.alpha_mode = if threshold > 0.0 {
            AlphaMode::Mask { cutoff: threshold }
        } else if m.base_color[3] < 1.0 || m.opacity_texture.is_some() {
            AlphaMode::Blend
        } else {
            AlphaMode::Opaque
        };
        let (ior, _) = self.scalar_input(&surface, "ior", 1.5, &mut ctx)?;
        m.ior = if ior.is_finite() && ior >= 1.0 {
            ior
        } else {
            1.5
        };
        let (occlusion, occlusion_texture) =
            self.scalar_input(&surface, "occlusion", 1.0, &mut ctx)?;
        if occlusion_texture.is_some() {
            m.occlusion_texture = occlusion_texture;
        } else if occlusion < 1.0 {
            // A constant occlusion has no slot; it darkens like a texture of that value would,
            // which the base colour carries well enough for a preview surface.
            let k = clamp01(occlusion);
            for c in &mut m.base_color[..3] {
                *c *= k;
            }
        }
        if let ColorInput::Texture(t) = self.color_input(&surface, "normal", &mut ctx)? {
            m.normal_texture = Some(t);
        }
        let (coat, coat_texture) = self.scalar_input(&surface, "clearcoat", 0.0, &mut ctx)?;
        if coat > 0.0 || coat_texture.is_some() {
            let (coat_roughness, coat_roughness_texture) =
                self.scalar_input(&surface, "clearcoatRoughness", 0.01, &mut ctx)?;
            m.clearcoat = Some(Clearcoat {
                factor: clamp01(coat),
                texture: coat_texture,
                roughness: clamp01(coat_roughness),
                roughness_texture: coat_roughness_texture,
                ..Clearcoat::default()
            });
        }
        // The specular workflow gives F0 directly as specularColor; the model tints the F0 its
        // ior gives, so the tint is specularColor over that F0. Metalness does not apply.
        let specular_workflow = matches!(
            self.value(&surface, "useSpecularWorkflow").map_err(fail)?,
            Some(Value::Int(1))
        );
        if specular_workflow {
            m.metallic = 0.0;
            m.metallic_texture = None;
            let f0 = ((m.ior - 1.0) / (m.ior + 1.0)).powi(2).max(1e-4);
            match self.color_input(&surface, "specularColor", &mut ctx)? {
                ColorInput::Value(c) | ColorInput::DisplayColor(c) => {
                    m.specular_color = c.map(|v| clamp01(v) / f0);
                }
                ColorInput::Texture(t) => {
                    m.specular_color = [1.0 / f0; 3];
                    m.specular_color_texture = Some(t);
                }
                ColorInput::Unset => {}
            }
        }
        Ok(Some(PreviewMaterial {
            material: m,
            uv_primvars: ctx.uv_primvars,
            diffuse_from_display_color,
        }))
    }

    /// The UsdPreviewSurface shader a material's `outputs:surface` is connected to.
    fn surface_shader(&self, material: &sdf::Path) -> anyhow::Result<Option<sdf::Path>> {
        let output = material.append_property("outputs:surface")?;
        match self.source(&output)? {
            Source::Shader { shader, id, .. } if id == "UsdPreviewSurface" => Ok(Some(shader)),
            _ => Ok(None),
        }
    }

    /// Follows the connections of the attribute at `attr` to a shader output or a value.
    fn source(&self, attr: &sdf::Path) -> anyhow::Result<Source> {
        let mut current = attr.clone();
        for _ in 0..MAX_HOPS {
            let attribute = self.stage.attribute(current.clone());
            let Some(target) = attribute.connections()?.into_iter().next() else {
                return Ok(Source::Value(attribute.get::<Value>()?));
            };
            let prim = target.prim_path();
            let id = match self
                .stage
                .prim(prim.clone())
                .attribute("info:id")
                .get::<Value>()?
            {
                Some(Value::Token(t)) => Some(t.as_str().to_owned()),
                Some(Value::String(s)) => Some(s),
                _ => None,
            };
            match id {
                Some(id) => {
                    let property = target.as_str().rsplit_once('.').map_or("", |(_, p)| p);
                    let output = property.trim_start_matches("outputs:").to_owned();
                    return Ok(Source::Shader {
                        shader: prim,
                        id,
                        output,
                    });
                }
                // A material or node-graph interface input (or output): keep following.
                None => current = target,
            }
        }
        anyhow::bail!("connections of {attr} loop")
    }

    fn value(&self, shader: &sdf::Path, input: &str) -> anyhow::Result<Option<Value>> {
        let attr = shader.append_property(format!("inputs:{input}"))?;
        Ok(match self.source(&attr)? {
            Source::Value(v) => v,
            Source::Shader { .. } => None,
        })
    }

    fn color_input(
        &mut self,
        shader: &sdf::Path,
        input: &str,
        ctx: &mut Ctx,
    ) -> Result<ColorInput, UsdImportError> {
        let fail = |e: anyhow::Error| prim_error(shader, e);
        let attr = shader
            .append_property(format!("inputs:{input}"))
            .map_err(fail)?;
        match self.source(&attr).map_err(fail)? {
            Source::Value(v) => Ok(v
                .as_ref()
                .and_then(vec3)
                .map_or(ColorInput::Unset, ColorInput::Value)),
            Source::Shader {
                shader: s,
                id,
                output,
            } => match id.as_str() {
                "UsdUVTexture" => match self.texture(&s, &output, ctx)? {
                    Ok(t) => Ok(ColorInput::Texture(t)),
                    Err(fallback) => Ok(ColorInput::Value([fallback[0], fallback[1], fallback[2]])),
                },
                "UsdPrimvarReader_float3" | "UsdPrimvarReader_color3f" => {
                    let varname = self.token(&s, "varname").map_err(fail)?;
                    let fallback = self
                        .value(&s, "fallback")
                        .map_err(fail)?
                        .as_ref()
                        .and_then(vec3)
                        .unwrap_or([0.0; 3]);
                    if varname.as_deref() == Some("displayColor") {
                        Ok(ColorInput::DisplayColor(fallback))
                    } else {
                        // Per-vertex data other than displayColor has no slot in the model.
                        ctx.warn(format!(
                            "{input} reads primvar {:?}, which is not imported; its fallback is used",
                            varname.unwrap_or_default()
                        ));
                        Ok(ColorInput::Value(fallback))
                    }
                }
                other => {
                    ctx.warn(format!(
                        "{input} is connected to a {other} shader, which is not imported; \
                         the input's default is used"
                    ));
                    Ok(ColorInput::Unset)
                }
            },
        }
    }

    /// A scalar input's value (or `default`) and texture.
    fn scalar_input(
        &mut self,
        shader: &sdf::Path,
        input: &str,
        default: f32,
        ctx: &mut Ctx,
    ) -> Result<(f32, Option<TextureRef>), UsdImportError> {
        let fail = |e: anyhow::Error| prim_error(shader, e);
        let attr = shader
            .append_property(format!("inputs:{input}"))
            .map_err(fail)?;
        match self.source(&attr).map_err(fail)? {
            Source::Value(v) => Ok((v.as_ref().and_then(scalar).unwrap_or(default), None)),
            Source::Shader {
                shader: s,
                id,
                output,
            } => {
                if id != "UsdUVTexture" {
                    ctx.warn(format!(
                        "{input} is connected to a {id} shader, which is not imported; \
                         the input's default is used"
                    ));
                    return Ok((default, None));
                }
                let channel = match output.as_str() {
                    "g" => Channel::G,
                    "b" => Channel::B,
                    "a" => Channel::A,
                    _ => Channel::R,
                };
                match self.texture(&s, &output, ctx)? {
                    Ok(t) => Ok((1.0, Some(t.with_channel(channel)))),
                    Err(fallback) => Ok((fallback[channel.index()], None)),
                }
            }
        }
    }

    fn token(&self, shader: &sdf::Path, input: &str) -> anyhow::Result<Option<String>> {
        Ok(match self.value(shader, input)? {
            Some(Value::Token(t)) => Some(t.as_str().to_owned()),
            Some(Value::String(s)) => Some(s),
            _ => None,
        })
    }

    fn vec_input<const N: usize>(
        &self,
        shader: &sdf::Path,
        input: &str,
        default: [f32; N],
    ) -> anyhow::Result<[f32; N]> {
        let Some(v) = self.value(shader, input)? else {
            return Ok(default);
        };
        let values: Vec<f32> = match v {
            Value::Vec2f(v) => vec![v.x, v.y],
            Value::Vec2d(v) => vec![v.x as f32, v.y as f32],
            Value::Vec2h(v) => vec![v.x.to_f32(), v.y.to_f32()],
            Value::Vec3f(v) => vec![v.x, v.y, v.z],
            Value::Vec3d(v) => vec![v.x as f32, v.y as f32, v.z as f32],
            Value::Vec4f(v) => vec![v.x, v.y, v.z, v.w],
            Value::Vec4d(v) => vec![v.x as f32, v.y as f32, v.z as f32, v.w as f32],
            Value::Vec4h(v) => vec![v.x.to_f32(), v.y.to_f32(), v.z.to_f32(), v.w.to_f32()],
            other => match scalar(&other) {
                Some(s) => vec![s; N],
                None => return Ok(default),
            },
        };
        let mut out = default;
        for (o, v) in out.iter_mut().zip(values) {
            if v.is_finite() {
                *o = v;
            }
        }
        Ok(out)
    }

    /// The texture lookup of a UsdUVTexture, or its fallback value when its file cannot be read.
    fn texture(
        &mut self,
        shader: &sdf::Path,
        output: &str,
        ctx: &mut Ctx,
    ) -> Result<Result<TextureRef, [f32; 4]>, UsdImportError> {
        let fail = |e: anyhow::Error| prim_error(shader, e);
        let fallback = self
            .vec_input(shader, "fallback", [0.0, 0.0, 0.0, 1.0])
            .map_err(fail)?;
        let scale = self.vec_input(shader, "scale", [1.0; 4]).map_err(fail)?;
        let bias = self.vec_input(shader, "bias", [0.0; 4]).map_err(fail)?;
        let wrap = |token: Option<String>| match token.as_deref() {
            Some("clamp") => Wrap::Clamp,
            Some("mirror") => Wrap::Mirror,
            // repeat, and black and useMetadata (no border colour or image metadata here).
            _ => Wrap::Repeat,
        };
        let wrap_s = wrap(self.token(shader, "wrapS").map_err(fail)?);
        let wrap_t = wrap(self.token(shader, "wrapT").map_err(fail)?);
        let color_space = self.token(shader, "sourceColorSpace").map_err(fail)?;

        let file = match self.value(shader, "file").map_err(fail)? {
            Some(Value::AssetPath(a)) => a,
            _ => {
                ctx.warn(format!(
                    "texture {shader} ({output}) has no file; its fallback is used"
                ));
                return Ok(Err(fallback));
            }
        };
        let Some(resolved) = file.resolved_path().map(str::to_owned) else {
            ctx.warn(format!(
                "texture file {} of {shader} is missing; its fallback {fallback:?} is used",
                file.authored_path
            ));
            return Ok(Err(fallback));
        };
        let texture = match self.decode(&resolved, color_space.as_deref(), ctx)? {
            Ok(t) => t,
            Err(reason) => {
                ctx.warn(format!(
                    "texture file {} of {shader} cannot be read ({reason}); its fallback is used",
                    file.authored_path
                ));
                return Ok(Err(fallback));
            }
        };

        let (uv_set, transform) = self.coordinates(shader, ctx).map_err(fail)?;
        let mut lookup = TextureRef::new(texture);
        lookup.uv_set = uv_set;
        lookup.transform = transform;
        lookup.wrap = [wrap_s, wrap_t];
        lookup.filter = Filter::Linear;
        lookup.scale = scale;
        lookup.bias = bias;
        Ok(Ok(lookup))
    }

    /// The UV set and transform a texture's `inputs:st` is driven by.
    fn coordinates(
        &self,
        texture: &sdf::Path,
        ctx: &mut Ctx,
    ) -> anyhow::Result<(u32, UvTransform)> {
        let mut transform = UvTransform::IDENTITY;
        let mut attr = texture.append_property("inputs:st")?;
        for _ in 0..MAX_HOPS {
            match self.source(&attr)? {
                Source::Value(v) => {
                    // A constant st: every point reads the same texel.
                    let st = match v {
                        Some(Value::Vec2f(v)) => [v.x, v.y],
                        Some(Value::Vec2d(v)) => [v.x as f32, v.y as f32],
                        _ => [0.0, 0.0],
                    };
                    let uv = transform.apply([st[0], 1.0 - st[1]]);
                    return Ok((
                        0,
                        UvTransform {
                            rows: [[0.0, 0.0, uv[0]], [0.0, 0.0, uv[1]]],
                        },
                    ));
                }
                Source::Shader { shader, id, .. } => match id.as_str() {
                    "UsdTransform2d" => {
                        let translation = self.vec_input(&shader, "translation", [0.0; 2])?;
                        let rotation = self.vec_input(&shader, "rotation", [0.0; 1])?[0];
                        let scale = self.vec_input(&shader, "scale", [1.0; 2])?;
                        // This transform applies before the ones found closer to the texture.
                        let inner = UvTransform::from_usd_transform2d(translation, rotation, scale);
                        transform = compose(&transform, &inner);
                        attr = shader.append_property("inputs:in")?;
                    }
                    "UsdPrimvarReader_float2" => {
                        let varname = self
                            .token(&shader, "varname")?
                            .unwrap_or_else(|| "st".into());
                        return Ok((ctx.uv_set(&varname), transform));
                    }
                    other => {
                        ctx.warn(format!(
                            "texture {texture} reads its coordinates from a {other} shader, \
                             which is not imported; UV set st is used"
                        ));
                        return Ok((ctx.uv_set("st"), transform));
                    }
                },
            }
        }
        anyhow::bail!("the coordinates of {texture} pass through too many shaders")
    }

    /// Decodes the image at `resolved` in `color_space` (`raw`, `sRGB` or `auto`), once.
    fn decode(
        &mut self,
        resolved: &str,
        color_space: Option<&str>,
        ctx: &mut Ctx,
    ) -> Result<Result<usize, String>, UsdImportError> {
        let key = (
            resolved.to_owned(),
            color_space.unwrap_or("auto").to_owned(),
        );
        if let Some(&index) = self.decoded.get(&key) {
            return Ok(Ok(index));
        }
        let bytes = match self.files.read(resolved) {
            Ok(b) => b,
            Err(reason) => return Ok(Err(reason)),
        };
        // TGA has no magic number: the file's extension names it.
        let by_extension = image::ImageFormat::from_path(resolved.trim_end_matches(']')).ok();
        let open = || -> Option<image::ImageReader<std::io::Cursor<&[u8]>>> {
            let mut reader = image::ImageReader::new(std::io::Cursor::new(&bytes[..]))
                .with_guessed_format()
                .ok()?;
            if reader.format().is_none() {
                reader.set_format(by_extension?);
            }
            Some(reader)
        };
        let Some(reader) = open() else {
            return Ok(Err("not an image format the importer reads".into()));
        };
        let (width, height) = match reader.into_dimensions() {
            Ok(d) => d,
            Err(e) => return Ok(Err(format!("unreadable header: {e}"))),
        };
        let pixels = width as u64 * height as u64;
        if pixels > self.limits.max_texture_pixels {
            return Err(UsdImportError::TooLarge {
                what: "texture pixels",
                count: pixels,
                limit: self.limits.max_texture_pixels,
            });
        }
        let Some(mut reader) = open() else {
            return Ok(Err("not an image format the importer reads".into()));
        };
        // The header is checked; these guard the decoder itself.
        let mut decode_limits = image::Limits::default();
        decode_limits.max_alloc = Some(self.limits.max_texture_pixels.saturating_mul(16));
        reader.limits(decode_limits);
        let image = match reader.decode() {
            Ok(i) => i,
            Err(e) => return Ok(Err(format!("cannot decode: {e}"))),
        };
        // `auto`: 8-bit colour images are sRGB, everything else (grey, 16-bit, float) is data,
        // as Pixar's image reader decides.
        let srgb = match color_space {
            Some("raw") => false,
            Some("sRGB") => true,
            _ => matches!(
                image.color(),
                image::ColorType::Rgb8 | image::ColorType::Rgba8
            ),
        };
        let space = if srgb {
            ColorSpace::Srgb
        } else {
            ColorSpace::Linear
        };
        ctx.estimate.add_texture(width, height);
        ctx.estimate.check(self.limits.memory_budget)?;
        ctx.scene.textures.push(Texture {
            width,
            height,
            texels: texels(&image, srgb),
            color_space: space,
        });
        let index = ctx.scene.textures.len() - 1;
        self.decoded.insert(key, index);
        Ok(Ok(index))
    }
}

/// Per-material state while a material is read.
struct Ctx<'s> {
    scene: &'s mut Scene,
    estimate: &'s mut MemoryEstimate,
    warnings: &'s mut Vec<String>,
    uv_primvars: Vec<String>,
    material: String,
}

impl Ctx<'_> {
    fn warn(&mut self, message: String) {
        self.warnings
            .push(format!("material {}: {message}", self.material));
    }

    /// The UV set that reads primvar `name`: the first two distinct primvars of a material
    /// become sets 0 and 1.
    fn uv_set(&mut self, name: &str) -> u32 {
        if let Some(i) = self.uv_primvars.iter().position(|n| n == name) {
            return i as u32;
        }
        if self.uv_primvars.len() < 2 {
            self.uv_primvars.push(name.to_owned());
            return (self.uv_primvars.len() - 1) as u32;
        }
        self.warn(format!(
            "reads a third UV primvar {name:?}; the model has two UV sets, so {:?} is used",
            self.uv_primvars[0]
        ));
        0
    }
}

enum ColorInput {
    Unset,
    Value([f32; 3]),
    Texture(TextureRef),
    /// Driven by the mesh's displayColor; the value is the reader's fallback.
    DisplayColor([f32; 3]),
}

/// `outer` applied after `inner`.
fn compose(outer: &UvTransform, inner: &UvTransform) -> UvTransform {
    let [a, b] = outer.rows;
    let [c, d] = inner.rows;
    let row = |r: [f32; 3]| {
        [
            r[0] * c[0] + r[1] * d[0],
            r[0] * c[1] + r[1] * d[1],
            r[0] * c[2] + r[1] * d[2] + r[2],
        ]
    };
    UvTransform {
        rows: [row(a), row(b)],
    }
}

fn prim_error(path: &sdf::Path, e: anyhow::Error) -> UsdImportError {
    UsdImportError::Prim {
        prim: path.as_str().to_owned(),
        reason: format!("{e:#}"),
    }
}

fn clamp01(v: f32) -> f32 {
    if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

fn non_negative(v: f32) -> f32 {
    if v.is_finite() {
        v.max(0.0)
    } else {
        0.0
    }
}

fn scalar(v: &Value) -> Option<f32> {
    match v {
        Value::Float(f) => Some(*f),
        Value::Double(d) => Some(*d as f32),
        Value::Half(h) => Some(h.to_f32()),
        Value::Int(i) => Some(*i as f32),
        _ => None,
    }
    .filter(|v| v.is_finite())
}

fn vec3(v: &Value) -> Option<[f32; 3]> {
    let c = match v {
        Value::Vec3f(c) => [c.x, c.y, c.z],
        Value::Vec3d(c) => [c.x as f32, c.y as f32, c.z as f32],
        Value::Vec3h(c) => [c.x.to_f32(), c.y.to_f32(), c.z.to_f32()],
        _ => return None,
    };
    c.iter().all(|x| x.is_finite()).then_some(c)
}

fn srgb_to_linear(c: f32) -> f32 {
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

/// Linear RGBA texels of a decoded image; sRGB colour channels are linearised, alpha never is.
/// Grey images become grey RGB; images without alpha are opaque.
fn texels(image: &image::DynamicImage, srgb: bool) -> Vec<[f32; 4]> {
    let decode = |c: f32| if srgb { srgb_to_linear(c) } else { c };
    match image.color() {
        image::ColorType::Rgb32F | image::ColorType::Rgba32F => image
            .to_rgba32f()
            .pixels()
            .map(|p| [decode(p.0[0]), decode(p.0[1]), decode(p.0[2]), p.0[3]])
            .collect(),
        image::ColorType::L16
        | image::ColorType::La16
        | image::ColorType::Rgb16
        | image::ColorType::Rgba16 => image
            .to_rgba16()
            .pixels()
            .map(|p| {
                let c = |i: usize| p.0[i] as f32 / 65535.0;
                [decode(c(0)), decode(c(1)), decode(c(2)), c(3)]
            })
            .collect(),
        _ => {
            let lut: Vec<f32> = (0..256).map(|i| decode(i as f32 / 255.0)).collect();
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_compose_outer_after_inner() {
        let shift = UvTransform {
            rows: [[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]],
        };
        let double = UvTransform {
            rows: [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]],
        };
        let both = compose(&shift, &double);
        assert_eq!(both.apply([1.0, 1.0]), [2.5, 2.0]);
        assert_eq!(
            both.apply([1.0, 1.0]),
            shift.apply(double.apply([1.0, 1.0]))
        );
    }
}
