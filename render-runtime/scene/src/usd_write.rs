//! Our own USD writer: a [`Scene`] as `.usda` text, and `.usdz` packages of it.
//!
//! openusd's writers produce files that Pixar's USD refuses, so USD is written here by hand, in
//! the subset of the text format that Pixar's `usd-core` opens and validates (tests check every
//! file we write with it).
//!
//! Layout of a written stage (`metersPerUnit = 1`, `upAxis = "Y"`, default prim `/Root`):
//!
//! ```text
//! /Root                      Xform
//! /Root/Looks/<material>     Material + UsdPreviewSurface shader
//! /Root/<part>               Xform, instanceable, references </Prototypes/<mesh>>,
//!                            one per Scene instance, with its xformOp:transform
//! /Prototypes                class (abstract, never drawn on its own)
//! /Prototypes/<mesh>/Geom    Mesh, one per distinct Scene mesh, bound to its material; meshes
//!                            with several materials carry one GeomSubset per material
//! ```
//!
//! With [`UsdInstancing::PointInstancer`] the placements become one `PointInstancer` at
//! `/Root/Instancer`; its prototypes beneath it are instanceable references to the same
//! `/Prototypes` meshes (placements that do not decompose into translation, rotation and scale
//! fall back to instanceable references).
//!
//! ```
//! use lightbox_scene::usd_write::{export_usda, export_usdz};
//!
//! let scene = lightbox_testmodels::primitives_scene();
//! let usda = export_usda(&scene);
//! assert!(usda.starts_with("#usda 1.0"));
//! let usdz = export_usdz(&scene);
//! assert_eq!(&usdz[..4], b"PK\x03\x04");
//! ```

use std::collections::HashSet;
use std::fmt::Write as _;

use image::ImageEncoder as _;

use super::material::{Channel, TextureRef, UvTransform, Wrap};
use super::texture::ColorSpace;
use super::{AlphaMode, Material, Mesh, Scene, Texture};
use crate::math::{Affine, Vec3};

/// How placements of shared meshes are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UsdInstancing {
    /// One instanceable prim per placement, referencing the mesh prototype. Exact for any
    /// affine transform, and what most USD tools show as a normal scene tree.
    #[default]
    References,
    /// One `PointInstancer` for all placements (compact for many placements). Placements whose
    /// transform has shear fall back to instanceable references.
    PointInstancer,
}

/// Options for [`export_usda_with`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UsdWriteOptions {
    pub instancing: UsdInstancing,
}

/// Writes the scene as `.usda` text with instanceable references.
pub fn export_usda(scene: &Scene) -> String {
    export_usda_with(scene, &UsdWriteOptions::default())
}

/// Writes the scene as a `.usdz` package holding one `.usda` layer.
pub fn export_usdz(scene: &Scene) -> Vec<u8> {
    export_usdz_with(scene, &UsdWriteOptions::default())
}

/// Writes the scene as a `.usdz` package holding one `.usda` layer and the textures its
/// materials use (PNG files under `textures/`), with options.
pub fn export_usdz_with(scene: &Scene, options: &UsdWriteOptions) -> Vec<u8> {
    let written = export_usda_with_textures(scene, options);
    let mut files: Vec<(&str, &[u8])> = vec![("model.usda", written.usda.as_bytes())];
    files.extend(
        written
            .textures
            .iter()
            .map(|(path, png)| (path.as_str(), png.as_slice())),
    );
    package_usdz(&files)
}

/// A `.usda` layer and the texture files it names, by their path relative to the layer.
#[derive(Clone, Debug, PartialEq)]
pub struct UsdaWithTextures {
    pub usda: String,
    /// `(relative path, PNG bytes)`, to be written next to the layer.
    pub textures: Vec<(String, Vec<u8>)>,
}

/// Writes the scene as `.usda` text whose materials read their textures from PNG files next to
/// it (`textures/texture_N.png`), returned with the text.
pub fn export_usda_with_textures(scene: &Scene, options: &UsdWriteOptions) -> UsdaWithTextures {
    let files = TextureFiles::new(scene);
    let usda = write_stage(scene, options, Some(&files));
    UsdaWithTextures {
        usda,
        textures: files.files,
    }
}

/// Writes the scene as `.usda` text, alone: materials carry their factors (textures need files
/// beside the layer; see [`export_usda_with_textures`]).
pub fn export_usda_with(scene: &Scene, options: &UsdWriteOptions) -> String {
    write_stage(scene, options, None)
}

fn write_stage(
    scene: &Scene,
    options: &UsdWriteOptions,
    textures: Option<&TextureFiles>,
) -> String {
    let mut w = Writer::default();
    let names = Names::new(scene);
    // Only materials some triangle uses are written; index -> written prim name.
    let mut used = vec![false; scene.materials.len()];
    for mesh in &scene.meshes {
        for &m in &mesh.triangle_materials {
            if let Some(u) = used.get_mut(m as usize) {
                *u = true;
            }
        }
    }

    w.line("#usda 1.0");
    w.line("(");
    w.line("    defaultPrim = \"Root\"");
    w.line("    doc = \"Written by Lightbox render-runtime\"");
    w.line("    metersPerUnit = 1");
    w.line("    upAxis = \"Y\"");
    w.line(")");
    w.line("");
    w.open("def Xform \"Root\"", &[]);

    if used.iter().any(|&u| u) {
        w.open("def Scope \"Looks\"", &[]);
        for (i, material) in scene.materials.iter().enumerate() {
            if used[i] {
                write_material(&mut w, &names.materials[i], material, scene, textures);
            }
        }
        w.close();
    }

    let mut by_reference: Vec<usize> = Vec::new();
    let mut point_instances: Vec<(usize, PointPlacement)> = Vec::new();
    for (i, inst) in scene.instances.iter().enumerate() {
        match options.instancing {
            UsdInstancing::References => by_reference.push(i),
            UsdInstancing::PointInstancer => match decompose(&inst.transform) {
                Some(p) => point_instances.push((i, p)),
                None => by_reference.push(i),
            },
        }
    }

    for &i in &by_reference {
        let inst = &scene.instances[i];
        let meta = [
            "instanceable = true".to_string(),
            format!(
                "prepend references = </Prototypes/{}>",
                names.meshes[inst.mesh]
            ),
        ];
        w.open(&format!("def Xform \"{}\"", names.instances[i]), &meta);
        w.line(&format!(
            "matrix4d xformOp:transform = {}",
            matrix4d(&inst.transform)
        ));
        w.line("uniform token[] xformOpOrder = [\"xformOp:transform\"]");
        w.close();
    }

    if !point_instances.is_empty() {
        // Prototypes of a PointInstancer live beneath it, so they are only drawn as instances.
        let mut protos: Vec<usize> = point_instances
            .iter()
            .map(|(i, _)| scene.instances[*i].mesh)
            .collect();
        protos.sort_unstable();
        protos.dedup();
        w.open("def PointInstancer \"Instancer\"", &[]);
        let targets: Vec<String> = protos
            .iter()
            .map(|&m| format!("</Root/Instancer/Prototypes/{}>", names.meshes[m]))
            .collect();
        w.line(&format!("rel prototypes = [{}]", targets.join(", ")));
        let proto_index = |mesh: usize| protos.binary_search(&mesh).unwrap_or(0);
        let indices: Vec<String> = point_instances
            .iter()
            .map(|(i, _)| proto_index(scene.instances[*i].mesh).to_string())
            .collect();
        w.line(&format!("int[] protoIndices = [{}]", indices.join(", ")));
        let positions: Vec<String> = point_instances
            .iter()
            .map(|(_, p)| tuple(&p.translation))
            .collect();
        w.line(&format!("point3f[] positions = [{}]", positions.join(", ")));
        let orientations: Vec<String> = point_instances
            .iter()
            .map(|(_, p)| {
                let [x, y, z, qw] = p.rotation_xyzw;
                tuple(&[qw, x, y, z])
            })
            .collect();
        w.line(&format!(
            "quatf[] orientationsf = [{}]",
            orientations.join(", ")
        ));
        let scales: Vec<String> = point_instances
            .iter()
            .map(|(_, p)| tuple(&p.scale))
            .collect();
        w.line(&format!("float3[] scales = [{}]", scales.join(", ")));
        // Each prototype is itself an instance of the shared mesh prototype, so a mesh is
        // stored once however it is placed.
        w.open("def Scope \"Prototypes\"", &[]);
        for &m in &protos {
            let meta = [
                "instanceable = true".to_string(),
                format!("prepend references = </Prototypes/{}>", names.meshes[m]),
            ];
            w.open(&format!("def Xform \"{}\"", names.meshes[m]), &meta);
            w.close();
        }
        w.close();
        w.close();
    }
    w.close();

    let referenced: HashSet<usize> = scene.instances.iter().map(|i| i.mesh).collect();
    if !referenced.is_empty() {
        w.line("");
        w.open("class \"Prototypes\"", &[]);
        for m in 0..scene.meshes.len() {
            if referenced.contains(&m) {
                write_prototype(&mut w, scene, &names, m);
            }
        }
        w.close();
    }
    w.out
}

/// Text output with indentation.
#[derive(Default)]
struct Writer {
    out: String,
    depth: usize,
}

impl Writer {
    fn line(&mut self, text: &str) {
        if !text.is_empty() {
            for _ in 0..self.depth {
                self.out.push_str("    ");
            }
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// Opens a prim with optional metadata lines.
    fn open(&mut self, header: &str, metadata: &[String]) {
        if metadata.is_empty() {
            self.line(header);
        } else {
            self.line(&format!("{header} ("));
            self.depth += 1;
            for m in metadata {
                self.line(m);
            }
            self.depth -= 1;
            self.line(")");
        }
        self.line("{");
        self.depth += 1;
    }

    fn close(&mut self) {
        self.depth -= 1;
        self.line("}");
    }
}

/// Unique, valid USD prim names for meshes, materials and instances.
struct Names {
    meshes: Vec<String>,
    materials: Vec<String>,
    instances: Vec<String>,
}

impl Names {
    fn new(scene: &Scene) -> Names {
        let mut taken = HashSet::new();
        // Reserved names used by the layout itself.
        for reserved in ["Looks", "Instancer", "Prototypes", "Geom"] {
            taken.insert(reserved.to_string());
        }
        let materials = unique_names(
            scene.materials.iter().map(|m| m.name.as_deref()),
            "Material",
            &mut HashSet::new(),
        );
        let meshes = unique_names(
            scene.meshes.iter().map(|m| m.name.as_deref()),
            "Mesh",
            &mut HashSet::new(),
        );
        let instances = unique_names(
            scene.instances.iter().map(|i| i.name.as_deref()),
            "Part",
            &mut taken,
        );
        Names {
            meshes,
            materials,
            instances,
        }
    }
}

/// Turns optional display names into valid, unique USD identifiers (`[A-Za-z_][A-Za-z0-9_]*`).
fn unique_names<'a>(
    names: impl Iterator<Item = Option<&'a str>>,
    fallback: &str,
    taken: &mut HashSet<String>,
) -> Vec<String> {
    names
        .enumerate()
        .map(|(i, name)| {
            let mut base: String = name
                .unwrap_or("")
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if base.is_empty() || base.chars().all(|c| c == '_') {
                base = format!("{fallback}_{i}");
            } else if base.starts_with(|c: char| c.is_ascii_digit()) {
                base.insert(0, '_');
            }
            let mut candidate = base.clone();
            let mut n = 1;
            while taken.contains(&candidate) {
                candidate = format!("{base}_{n}");
                n += 1;
            }
            taken.insert(candidate.clone());
            candidate
        })
        .collect()
}

/// A float for USD text: finite, shortest round-trip form.
fn num(v: f32) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "0".to_string()
    }
}

fn tuple(values: &[f32]) -> String {
    let parts: Vec<String> = values.iter().map(|&v| num(v)).collect();
    format!("({})", parts.join(", "))
}

/// USD matrices are row-major with row vectors: row `i` is our column `i`.
fn matrix4d(transform: &Affine) -> String {
    let cols = transform.to_cols_4x4();
    let rows: Vec<String> = cols.iter().map(|c| tuple(c)).collect();
    format!("( {} )", rows.join(", "))
}

/// The PNG file of every texture a used material reads, named by texture index.
struct TextureFiles {
    /// Texture index -> its file's path relative to the layer.
    paths: Vec<Option<String>>,
    files: Vec<(String, Vec<u8>)>,
}

impl TextureFiles {
    fn new(scene: &Scene) -> TextureFiles {
        let mut used = vec![false; scene.textures.len()];
        for mesh in &scene.meshes {
            for &m in &mesh.triangle_materials {
                if let Some(material) = scene.materials.get(m as usize) {
                    for (r, _) in material.texture_refs() {
                        if let Some(u) = used.get_mut(r.texture) {
                            *u = true;
                        }
                    }
                }
            }
        }
        let mut out = TextureFiles {
            paths: vec![None; scene.textures.len()],
            files: Vec::new(),
        };
        for (i, texture) in scene.textures.iter().enumerate() {
            if !used[i] {
                continue;
            }
            if let Some(png) = encode_png(texture) {
                let path = format!("textures/texture_{i}.png");
                out.paths[i] = Some(path.clone());
                out.files.push((path, png));
            }
        }
        out
    }

    fn path(&self, texture: usize) -> Option<&str> {
        self.paths.get(texture).and_then(|p| p.as_deref())
    }
}

fn linear_to_srgb(c: f32) -> f32 {
    if c <= 0.003_130_8 {
        c * 12.92
    } else {
        1.055 * c.powf(1.0 / 2.4) - 0.055
    }
}

/// The texture as an 8-bit RGBA PNG, encoded the way it was decoded (sRGB colour or linear
/// data; alpha always linear).
fn encode_png(texture: &Texture) -> Option<Vec<u8>> {
    encode_png_texels(
        texture.width,
        texture.height,
        &texture.texels,
        texture.color_space == ColorSpace::Srgb,
    )
}

/// Linear RGBA texels as an 8-bit RGBA PNG: colour sRGB-encoded when `srgb`, alpha linear.
pub(crate) fn encode_png_texels(
    w: u32,
    h: u32,
    texels: &[[f32; 4]],
    srgb: bool,
) -> Option<Vec<u8>> {
    if w == 0 || h == 0 || texels.len() != w as usize * h as usize {
        return None;
    }
    let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
    let mut data = Vec::with_capacity(texels.len() * 4);
    for t in texels {
        for (i, &c) in t.iter().enumerate() {
            let c = if c.is_finite() { c } else { 0.0 };
            data.push(if srgb && i < 3 {
                byte(linear_to_srgb(c.clamp(0.0, 1.0)))
            } else {
                byte(c)
            });
        }
    }
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Adaptive,
    )
    .write_image(&data, w, h, image::ExtendedColorType::Rgba8)
    .ok()?;
    Some(out)
}

/// UsdUVTexture inputs for one lookup: which output it is read through, and the scale and bias
/// that fold the material's factor into the texel (USD's textured inputs have no factor).
struct Lookup {
    shader: &'static str,
    reference: TextureRef,
    scale: [f32; 4],
    bias: [f32; 4],
}

impl Lookup {
    /// `factor * (texel * scale + bias)`, per channel.
    fn scaled(shader: &'static str, reference: &TextureRef, factor: [f32; 4]) -> Lookup {
        let mut scale = reference.scale;
        let mut bias = reference.bias;
        for c in 0..4 {
            scale[c] *= factor[c];
            bias[c] *= factor[c];
        }
        Lookup {
            shader,
            reference: *reference,
            scale,
            bias,
        }
    }
}

fn channel_output(channel: Channel) -> &'static str {
    match channel {
        Channel::R => "r",
        Channel::G => "g",
        Channel::B => "b",
        Channel::A => "a",
    }
}

fn wrap_token(wrap: Wrap) -> &'static str {
    match wrap {
        Wrap::Repeat => "repeat",
        Wrap::Clamp => "clamp",
        Wrap::Mirror => "mirror",
    }
}

/// A UV transform of our uv space (v down) as UsdTransform2d inputs on st (t up): translation,
/// rotation in degrees and scale. A shear (which UsdTransform2d cannot hold) is dropped.
fn transform2d(t: &UvTransform) -> ([f32; 2], f32, [f32; 2]) {
    // st' = F(M(F(st))) with F(u, v) = (u, 1 - v): the inverse of from_usd_transform2d.
    let [[m00, m01, m02], [m10, m11, m12]] = t.rows;
    let (a00, a01, a10, a11) = (m00, -m01, -m10, m11);
    let b0 = m02 + m01;
    let b1 = 1.0 - m12 - m11;
    let sx = (a00 * a00 + a10 * a10).sqrt();
    let rotation = a10.atan2(a00);
    let (sin, cos) = rotation.sin_cos();
    // The second column is sy * (-sin, cos).
    let sy = -a01 * sin + a11 * cos;
    ([b0, b1], rotation.to_degrees(), [sx, sy])
}

fn write_material(
    w: &mut Writer,
    name: &str,
    material: &Material,
    scene: &Scene,
    files: Option<&TextureFiles>,
) {
    let textures = &scene.textures;
    let path_of = |r: &Option<TextureRef>| -> Option<TextureRef> {
        let r = (*r)?;
        files?.path(r.texture)?;
        Some(r)
    };
    let [r, g, b, a] = material.base_color;
    let base_tex = path_of(&material.base_color_texture);
    let opacity_tex = path_of(&material.opacity_texture);
    let metallic_tex = path_of(&material.metallic_texture);
    let roughness_tex = path_of(&material.roughness_texture);
    let emissive_tex = path_of(&material.emissive_texture);
    let normal_tex = path_of(&material.normal_texture);
    let occlusion_tex = path_of(&material.occlusion_texture);
    let translucent = !matches!(material.alpha_mode, AlphaMode::Opaque);

    let base = format!("/Root/Looks/{name}");
    w.open(&format!("def Material \"{name}\""), &[]);
    w.line(&format!(
        "token outputs:surface.connect = <{base}/PreviewSurface.outputs:surface>"
    ));
    w.open("def Shader \"PreviewSurface\"", &[]);
    w.line("uniform token info:id = \"UsdPreviewSurface\"");
    let connect = |w: &mut Writer, decl: &str, shader: &str, output: &str| {
        w.line(&format!(
            "{decl}.connect = <{base}/{shader}.outputs:{output}>"
        ));
    };
    let mut lookups: Vec<Lookup> = Vec::new();
    match &base_tex {
        Some(t) => {
            connect(w, "color3f inputs:diffuseColor", "BaseColorTexture", "rgb");
            lookups.push(Lookup::scaled("BaseColorTexture", t, [r, g, b, a]));
        }
        None => w.line(&format!(
            "color3f inputs:diffuseColor = {}",
            tuple(&[r, g, b])
        )),
    }
    match &emissive_tex {
        Some(t) => {
            connect(w, "color3f inputs:emissiveColor", "EmissiveTexture", "rgb");
            let [er, eg, eb] = material.emissive;
            lookups.push(Lookup::scaled("EmissiveTexture", t, [er, eg, eb, 1.0]));
        }
        None => w.line(&format!(
            "color3f inputs:emissiveColor = {}",
            // Without its texture in the file, the map's mean stands in for it (the factor
            // alone would make a mostly dark emissive map glow everywhere).
            tuple(&material.emissive_mean(textures))
        )),
    }
    let scalar = |w: &mut Writer,
                  lookups: &mut Vec<Lookup>,
                  input: &str,
                  shader: &'static str,
                  factor: f32,
                  texture: Option<&TextureRef>| {
        match texture {
            Some(t) => {
                connect(
                    w,
                    &format!("float inputs:{input}"),
                    shader,
                    channel_output(t.channel),
                );
                lookups.push(Lookup::scaled(shader, t, [factor; 4]));
            }
            None => w.line(&format!("float inputs:{input} = {}", num(factor))),
        }
    };
    scalar(
        w,
        &mut lookups,
        "metallic",
        "MetallicTexture",
        material.metallic,
        metallic_tex.as_ref(),
    );
    scalar(
        w,
        &mut lookups,
        "roughness",
        "RoughnessTexture",
        material.roughness,
        roughness_tex.as_ref(),
    );
    if translucent {
        match (&opacity_tex, &base_tex) {
            (Some(t), _) => scalar(w, &mut lookups, "opacity", "OpacityTexture", a, Some(t)),
            // glTF's coverage is the base colour texture's alpha times the factor.
            (None, Some(_)) => connect(w, "float inputs:opacity", "BaseColorTexture", "a"),
            (None, None) => w.line(&format!("float inputs:opacity = {}", num(a))),
        }
        if let AlphaMode::Mask { cutoff } = material.alpha_mode {
            w.line(&format!("float inputs:opacityThreshold = {}", num(cutoff)));
        }
    }
    if let Some(t) = &normal_tex {
        connect(w, "normal3f inputs:normal", "NormalTexture", "rgb");
        let ns = material.normal_scale;
        let mut lookup = Lookup::scaled("NormalTexture", t, [ns, ns, 1.0, 1.0]);
        // The bias of x and y scales with them.
        lookup.bias = [t.bias[0] * ns, t.bias[1] * ns, t.bias[2], t.bias[3]];
        lookups.push(lookup);
    }
    if let Some(t) = &occlusion_tex {
        connect(
            w,
            "float inputs:occlusion",
            "OcclusionTexture",
            channel_output(t.channel),
        );
        // 1 + strength * (v - 1) with v = texel * scale + bias.
        let k = material.occlusion_strength;
        let mut lookup = Lookup::scaled("OcclusionTexture", t, [k; 4]);
        for c in 0..4 {
            lookup.bias[c] += 1.0 - k;
        }
        lookups.push(lookup);
    }
    w.line("token outputs:surface");
    w.close();

    // The coordinate readers the lookups use (one per UV set), then the textures.
    let mut sets: Vec<u32> = lookups.iter().map(|l| l.reference.uv_set).collect();
    sets.sort_unstable();
    sets.dedup();
    for set in &sets {
        w.open(&format!("def Shader \"Primvar{set}\""), &[]);
        w.line("uniform token info:id = \"UsdPrimvarReader_float2\"");
        w.line(&format!(
            "token inputs:varname = \"{}\"",
            if *set == 0 { "st" } else { "st1" }
        ));
        w.line("float2 outputs:result");
        w.close();
    }
    for lookup in &lookups {
        let t = &lookup.reference;
        let Some(path) = files.and_then(|f| f.path(t.texture)) else {
            continue;
        };
        let mut st = format!("{base}/Primvar{}.outputs:result", t.uv_set);
        if !t.transform.is_identity() {
            let transform = format!("{}Transform", lookup.shader);
            let (translation, rotation, scale) = transform2d(&t.transform);
            w.open(&format!("def Shader \"{transform}\""), &[]);
            w.line("uniform token info:id = \"UsdTransform2d\"");
            w.line(&format!("float2 inputs:in.connect = <{st}>"));
            w.line(&format!("float inputs:rotation = {}", num(rotation)));
            w.line(&format!("float2 inputs:scale = {}", tuple(&scale)));
            w.line(&format!(
                "float2 inputs:translation = {}",
                tuple(&translation)
            ));
            w.line("float2 outputs:result");
            w.close();
            st = format!("{base}/{transform}.outputs:result");
        }
        let color_space = match textures.get(t.texture).map(|t| t.color_space) {
            Some(ColorSpace::Linear) => "raw",
            _ => "sRGB",
        };
        w.open(&format!("def Shader \"{}\"", lookup.shader), &[]);
        w.line("uniform token info:id = \"UsdUVTexture\"");
        w.line(&format!("asset inputs:file = @{path}@"));
        w.line(&format!("float2 inputs:st.connect = <{st}>"));
        w.line(&format!(
            "token inputs:wrapS = \"{}\"",
            wrap_token(t.wrap[0])
        ));
        w.line(&format!(
            "token inputs:wrapT = \"{}\"",
            wrap_token(t.wrap[1])
        ));
        w.line(&format!("float4 inputs:scale = {}", tuple(&lookup.scale)));
        w.line(&format!("float4 inputs:bias = {}", tuple(&lookup.bias)));
        w.line(&format!(
            "token inputs:sourceColorSpace = \"{color_space}\""
        ));
        w.line("float3 outputs:rgb");
        for c in ["r", "g", "b", "a"] {
            w.line(&format!("float outputs:{c}"));
        }
        w.close();
    }
    w.close();
}

/// Writes `/…/<mesh name>` (an Xform) with its `Geom` mesh child.
fn write_prototype(w: &mut Writer, scene: &Scene, names: &Names, mesh_idx: usize) {
    let mesh = &scene.meshes[mesh_idx];
    w.open(&format!("def Xform \"{}\"", names.meshes[mesh_idx]), &[]);
    let mut materials: Vec<u32> = mesh
        .triangle_materials
        .iter()
        .copied()
        .filter(|&m| (m as usize) < scene.materials.len())
        .collect();
    materials.sort_unstable();
    materials.dedup();
    let single = materials.len() == 1 && mesh.triangle_materials.iter().all(|&m| m == materials[0]);
    let meta = if single {
        vec!["prepend apiSchemas = [\"MaterialBindingAPI\"]".to_string()]
    } else {
        Vec::new()
    };
    w.open("def Mesh \"Geom\"", &meta);
    write_mesh_body(w, mesh);
    if single {
        w.line(&format!(
            "rel material:binding = </Root/Looks/{}>",
            names.materials[materials[0] as usize]
        ));
    } else if !materials.is_empty() {
        w.line("uniform token subsetFamily:materialBind:familyType = \"nonOverlapping\"");
        for &m in &materials {
            let indices: Vec<String> = mesh
                .triangle_materials
                .iter()
                .enumerate()
                .filter(|(_, &tm)| tm == m)
                .map(|(i, _)| i.to_string())
                .collect();
            let name = &names.materials[m as usize];
            w.open(
                &format!("def GeomSubset \"{name}\""),
                &["prepend apiSchemas = [\"MaterialBindingAPI\"]".to_string()],
            );
            w.line("uniform token elementType = \"face\"");
            w.line("uniform token familyName = \"materialBind\"");
            w.line(&format!("int[] indices = [{}]", indices.join(", ")));
            w.line(&format!("rel material:binding = </Root/Looks/{name}>"));
            w.close();
        }
    }
    w.close();
    w.close();
}

fn write_mesh_body(w: &mut Writer, mesh: &Mesh) {
    // Our renderer shades both sides of every triangle.
    w.line("uniform bool doubleSided = 1");
    let mut bounds = crate::math::Aabb::EMPTY;
    for p in &mesh.positions {
        bounds.grow(Vec3::from_array(*p));
    }
    if !bounds.is_empty() {
        w.line(&format!(
            "float3[] extent = [{}, {}]",
            tuple(&bounds.min.to_array()),
            tuple(&bounds.max.to_array())
        ));
    }
    let mut s = String::with_capacity(mesh.triangles.len() * 2 + 32);
    s.push_str("int[] faceVertexCounts = [");
    for i in 0..mesh.triangles.len() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('3');
    }
    s.push(']');
    w.line(&s);

    let mut s = String::with_capacity(mesh.triangles.len() * 24 + 32);
    s.push_str("int[] faceVertexIndices = [");
    for (i, t) in mesh.triangles.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{}, {}, {}", t[0], t[1], t[2]);
    }
    s.push(']');
    w.line(&s);

    if let Some(normals) = &mesh.normals {
        w.line(&format!(
            "normal3f[] normals = [{}] (",
            vec3_list(normals.iter().copied())
        ));
        w.line("    interpolation = \"vertex\"");
        w.line(")");
    }
    w.line(&format!(
        "point3f[] points = [{}]",
        vec3_list(mesh.positions.iter().copied())
    ));
    if let Some(uvs) = &mesh.uvs {
        // glTF's v axis points down the image, USD's t axis up.
        let mut s = String::with_capacity(uvs.len() * 24);
        for (i, uv) in uvs.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let _ = write!(s, "({}, {})", num(uv[0]), num(1.0 - uv[1]));
        }
        w.line(&format!("texCoord2f[] primvars:st = [{s}] ("));
        w.line("    interpolation = \"vertex\"");
        w.line(")");
    }
    if let Some(uvs) = &mesh.uvs1 {
        let mut s = String::with_capacity(uvs.len() * 24);
        for (i, uv) in uvs.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let _ = write!(s, "({}, {})", num(uv[0]), num(1.0 - uv[1]));
        }
        w.line(&format!("texCoord2f[] primvars:st1 = [{s}] ("));
        w.line("    interpolation = \"vertex\"");
        w.line(")");
    }
    w.line("uniform token subdivisionScheme = \"none\"");
}

fn vec3_list(values: impl ExactSizeIterator<Item = [f32; 3]>) -> String {
    let mut s = String::with_capacity(values.len() * 36);
    for (i, v) in values.enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "({}, {}, {})", num(v[0]), num(v[1]), num(v[2]));
    }
    s
}

/// A placement split into PointInstancer form.
struct PointPlacement {
    translation: [f32; 3],
    rotation_xyzw: [f32; 4],
    scale: [f32; 3],
}

/// Splits a transform into translation, rotation and per-axis scale; `None` when it has shear
/// or a reflection that a PointInstancer's scale would misrepresent.
fn decompose(t: &Affine) -> Option<PointPlacement> {
    let r = &t.rows;
    let col = |j: usize| Vec3::new(r[0][j], r[1][j], r[2][j]);
    let (c0, c1, c2) = (col(0), col(1), col(2));
    let s = [c0.length(), c1.length(), c2.length()];
    if s.iter().any(|&v| !v.is_finite() || v <= 1e-20) {
        return None;
    }
    let (x, y, mut z) = (c0 * (1.0 / s[0]), c1 * (1.0 / s[1]), c2 * (1.0 / s[2]));
    let mut scale = s;
    if x.cross(y).dot(z) < 0.0 {
        z *= -1.0;
        scale[2] = -scale[2];
    }
    let tol = 1e-4;
    if x.dot(y).abs() > tol || x.dot(z).abs() > tol || y.dot(z).abs() > tol {
        return None;
    }
    // Rotation matrix columns x, y, z -> quaternion.
    let m = [[x.x, y.x, z.x], [x.y, y.y, z.y], [x.z, y.z, z.z]];
    let trace = m[0][0] + m[1][1] + m[2][2];
    let q = if trace > 0.0 {
        let s = (trace + 1.0).sqrt() * 2.0;
        [
            (m[2][1] - m[1][2]) / s,
            (m[0][2] - m[2][0]) / s,
            (m[1][0] - m[0][1]) / s,
            0.25 * s,
        ]
    } else if m[0][0] > m[1][1] && m[0][0] > m[2][2] {
        let s = (1.0 + m[0][0] - m[1][1] - m[2][2]).sqrt() * 2.0;
        [
            0.25 * s,
            (m[0][1] + m[1][0]) / s,
            (m[0][2] + m[2][0]) / s,
            (m[2][1] - m[1][2]) / s,
        ]
    } else if m[1][1] > m[2][2] {
        let s = (1.0 + m[1][1] - m[0][0] - m[2][2]).sqrt() * 2.0;
        [
            (m[0][1] + m[1][0]) / s,
            0.25 * s,
            (m[1][2] + m[2][1]) / s,
            (m[0][2] - m[2][0]) / s,
        ]
    } else {
        let s = (1.0 + m[2][2] - m[0][0] - m[1][1]).sqrt() * 2.0;
        [
            (m[0][2] + m[2][0]) / s,
            (m[1][2] + m[2][1]) / s,
            0.25 * s,
            (m[1][0] - m[0][1]) / s,
        ]
    };
    let placement = PointPlacement {
        translation: [r[0][3], r[1][3], r[2][3]],
        rotation_xyzw: q,
        scale,
    };
    // Accept only if the parts rebuild the transform.
    let rebuilt = Affine::from_trs(placement.translation, q, scale);
    let err = rebuilt
        .rows
        .iter()
        .flatten()
        .zip(r.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let magnitude = r.iter().flatten().map(|v| v.abs()).fold(1.0f32, f32::max);
    (err <= 1e-4 * magnitude).then_some(placement)
}

/// Packs files into a USDZ package: an uncompressed zip whose file data starts at 64-byte
/// aligned offsets, first file first (the root layer). Paths must be relative and ASCII.
pub fn package_usdz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in files {
        let offset = out.len();
        let crc = crc32(data);
        let name_bytes = name.as_bytes();
        // The local header is 30 bytes plus the name plus an extra field that pads the data to
        // a 64-byte boundary (an extra field needs at least 4 bytes: id and size).
        let header_end = offset + 30 + name_bytes.len();
        let mut pad = (64 - (header_end + 4) % 64) % 64;
        pad += 4;
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&0u16.to_le_bytes()); // stored
        out.extend_from_slice(&0u16.to_le_bytes()); // time
        out.extend_from_slice(&0x21u16.to_le_bytes()); // date: 1980-01-01
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name_bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(&(pad as u16).to_le_bytes());
        out.extend_from_slice(name_bytes);
        // Padding extra field: an unregistered id with its payload of zeros.
        out.extend_from_slice(&0x1986u16.to_le_bytes());
        out.extend_from_slice(&((pad - 4) as u16).to_le_bytes());
        out.extend(std::iter::repeat_n(0u8, pad - 4));
        debug_assert_eq!(out.len() % 64, 0);
        out.extend_from_slice(data);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        central.extend_from_slice(&20u16.to_le_bytes()); // version needed
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0x21u16.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(name_bytes.len() as u16).to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // extra
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&(offset as u32).to_le_bytes());
        central.extend_from_slice(name_bytes);
    }
    let central_offset = out.len();
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&(central_offset as u32).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// CRC-32 (IEEE), as zip requires.
fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, entry) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *entry = c;
        }
        t
    });
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc = table[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emissive_colour_is_the_material_emission_not_white() {
        use crate::{ColorSpace, TextureRef};
        let mut scene = Scene::default();
        // Emissive factor 1 with a map that glows in a quarter of its texels (DamagedHelmet's
        // case): the written colour is the map's mean, not (1, 1, 1).
        scene.textures.push(Texture {
            width: 2,
            height: 2,
            texels: vec![[0.0; 4], [0.0; 4], [0.0; 4], [0.8, 0.4, 0.0, 1.0]],
            color_space: ColorSpace::Srgb,
        });
        scene.add_material(Material {
            emissive: [1.0; 3],
            emissive_texture: Some(TextureRef::new(0)),
            ..Material::default()
        });
        scene.add_material(Material {
            emissive: [0.5, 0.25, 0.0],
            ..Material::default()
        });
        let cube = crate::Mesh {
            positions: vec![[0.0; 3], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            triangles: vec![[0, 1, 2], [0, 2, 1]],
            triangle_materials: vec![0, 1],
            ..crate::Mesh::default()
        };
        let mesh = scene.add_mesh(cube);
        scene.add_instance(mesh, Affine::IDENTITY, None);
        let usda = export_usda(&scene);
        // The mapped material either connects its map or, written without textures, the
        // map's mean (0.2, 0.1, 0); never the bare factor.
        assert!(
            usda.contains("color3f inputs:emissiveColor.connect")
                || usda.contains("color3f inputs:emissiveColor = (0.2, 0.1, 0)"),
            "{usda}"
        );
        assert!(
            usda.contains("color3f inputs:emissiveColor = (0.5, 0.25, 0)"),
            "{usda}"
        );
        assert!(!usda.contains("emissiveColor = (1, 1, 1)"), "{usda}");
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn usdz_file_data_is_64_byte_aligned() {
        let a = vec![1u8; 100];
        let b = vec![2u8; 7];
        let z = package_usdz(&[("model.usda", &a), ("textures/x.png", &b)]);
        let first = z.windows(100).position(|w| w == a.as_slice()).unwrap();
        assert_eq!(first % 64, 0);
        let second = z.windows(7).position(|w| w == b.as_slice()).unwrap();
        assert_eq!(second % 64, 0);
    }

    #[test]
    fn names_are_valid_identifiers_and_unique() {
        let names = unique_names(
            [Some("ring steel"), Some("ring steel"), None, Some("9x")].into_iter(),
            "Mesh",
            &mut HashSet::new(),
        );
        assert_eq!(names, ["ring_steel", "ring_steel_1", "Mesh_2", "_9x"]);
    }

    #[test]
    fn decompose_rebuilds_rotation_and_scale_and_rejects_shear() {
        let t = Affine::translation(Vec3::new(1.0, 2.0, 3.0))
            .mul(&Affine::rotation_y(0.7))
            .mul(&Affine::scale(Vec3::new(2.0, 3.0, 0.5)));
        assert!(decompose(&t).is_some());
        let mut shear = Affine::IDENTITY;
        shear.rows[0][1] = 0.5;
        assert!(decompose(&shear).is_none());
    }
}
