//! glTF materials as viewers render them, checked on rendered images: texture transforms, the
//! second UV set, sampler wrap modes, emissive maps (the real DamagedHelmet), glass with a
//! volume, and the error for an unsupported required extension.
//!
//! Texture tests draw the texture as emission on an unlit quad (no lights, black environment,
//! no specular): the image is then the texture as the renderer sampled it, free of lighting
//! noise, and a transformed texture can be compared with the same texture edited by hand.

use std::path::{Path, PathBuf};

use lightbox_testmodels::{self as testmodels, hostile::join_glb};
use render_runtime::film::Film;
use render_runtime::math::{Affine, Vec3};
use render_runtime::scene::{Material, Transmission, Volume};
use render_runtime::spec::RenderSpec;
use render_runtime::studio::{Background, CameraRig, Environment, Studio};
use render_runtime::{ImportError, ImportLimits, NoHooks, PreparedScene, RenderError, Scene};
use serde_json::{json, Value};

/// A studio that shows only what surfaces emit: no lights, black environment, camera on +Z.
fn emission_studio() -> Studio {
    Studio {
        camera: CameraRig {
            yaw_deg: 0.0,
            pitch_deg: 0.0,
            fov_deg: 30.0,
            margin: 0.0,
        },
        lights: Vec::new(),
        environment: Environment::Uniform { radiance: [0.0; 3] },
        ground: None,
        background: Background::Transparent,
    }
}

fn render(prepared: &PreparedScene, studio: Studio, size: u32, samples: u32) -> Film {
    let spec = RenderSpec {
        width: size,
        height: size,
        samples: Some(samples),
        studio,
        ..RenderSpec::default()
    };
    let plan = spec.resolve().unwrap();
    prepared.render_film(&plan, 0, &NoHooks).unwrap().0
}

fn render_glb(glb: &[u8], size: u32) -> Film {
    let prepared = PreparedScene::from_glb(glb, &ImportLimits::default()).unwrap();
    render(&prepared, emission_studio(), size, 4)
}

/// Mean absolute difference of two films' RGB, over all pixels.
fn mean_difference(a: &Film, b: &Film) -> f64 {
    let total: f64 = a
        .color
        .iter()
        .zip(&b.color)
        .map(|(p, q)| (0..3).map(|i| (p[i] - q[i]).abs() as f64).sum::<f64>() / 3.0)
        .sum();
    total / a.color.len() as f64
}

/// An RGB PNG of `columns` x `rows` texels (row-major, top row first).
fn png(columns: u32, rows: u32, texels: &[[u8; 3]]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, columns, rows);
        encoder.set_color(png::ColorType::Rgb);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&texels.concat()).unwrap();
    }
    out
}

const RED: [u8; 3] = [255, 0, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const WHITE: [u8; 3] = [255, 255, 255];

/// A GLB being assembled by hand: one binary buffer, views, accessors.
struct Glb {
    json: Value,
    bin: Vec<u8>,
}

impl Glb {
    fn new() -> Glb {
        Glb {
            json: json!({
                "asset": {"version": "2.0"},
                "scene": 0,
                "scenes": [{"nodes": [0]}],
                "nodes": [{"mesh": 0}],
                "bufferViews": [],
                "accessors": [],
                "images": [],
                "textures": [],
                "samplers": [],
            }),
            bin: Vec::new(),
        }
    }

    fn view(&mut self, bytes: &[u8]) -> usize {
        while !self.bin.len().is_multiple_of(4) {
            self.bin.push(0);
        }
        let views = self.json["bufferViews"].as_array_mut().unwrap();
        views.push(json!({"buffer": 0, "byteOffset": self.bin.len(), "byteLength": bytes.len()}));
        self.bin.extend_from_slice(bytes);
        views.len() - 1
    }

    fn floats<const N: usize>(&mut self, values: &[[f32; N]], kind: &str) -> usize {
        let bytes: Vec<u8> = values
            .iter()
            .flatten()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let view = self.view(&bytes);
        let mut accessor =
            json!({"bufferView": view, "componentType": 5126, "count": values.len(), "type": kind});
        if kind == "VEC3" {
            let min: Vec<f32> = (0..N)
                .map(|i| values.iter().map(|v| v[i]).fold(f32::MAX, f32::min))
                .collect();
            let max: Vec<f32> = (0..N)
                .map(|i| values.iter().map(|v| v[i]).fold(f32::MIN, f32::max))
                .collect();
            accessor["min"] = json!(min);
            accessor["max"] = json!(max);
        }
        let accessors = self.json["accessors"].as_array_mut().unwrap();
        accessors.push(accessor);
        accessors.len() - 1
    }

    fn indices(&mut self, indices: &[u16]) -> usize {
        let bytes: Vec<u8> = indices.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = self.view(&bytes);
        let accessors = self.json["accessors"].as_array_mut().unwrap();
        accessors.push(json!({"bufferView": view, "componentType": 5123, "count": indices.len(), "type": "SCALAR"}));
        accessors.len() - 1
    }

    /// Adds a PNG texture with a sampler; returns the texture index.
    fn texture(&mut self, png: &[u8], sampler: Value) -> usize {
        let view = self.view(png);
        let images = self.json["images"].as_array_mut().unwrap();
        images.push(json!({"bufferView": view, "mimeType": "image/png"}));
        let image = images.len() - 1;
        let samplers = self.json["samplers"].as_array_mut().unwrap();
        samplers.push(sampler);
        let sampler = samplers.len() - 1;
        let textures = self.json["textures"].as_array_mut().unwrap();
        textures.push(json!({"source": image, "sampler": sampler}));
        textures.len() - 1
    }

    fn finish(mut self) -> Vec<u8> {
        self.json["buffers"] = json!([{"byteLength": self.bin.len()}]);
        join_glb(&self.json, &self.bin)
    }
}

/// Nearest filtering, so edited textures and transformed ones agree texel for texel.
fn nearest(wrap: u32) -> Value {
    json!({"magFilter": 9728, "minFilter": 9728, "wrapS": wrap, "wrapT": wrap})
}
const REPEAT: u32 = 10497;
const CLAMP: u32 = 33071;
const MIRROR: u32 = 33648;

/// A unit-ish quad in the XY plane facing the camera (+Z), u to the right, v down, UVs
/// `0..uv_extent`, with an optional second UV set, drawn with `material` (whose
/// `emissiveTexture` and other texture infos refer to textures added by `textures`).
fn quad_glb(
    uv0: [[f32; 2]; 4],
    uv1: Option<[[f32; 2]; 4]>,
    textures: impl FnOnce(&mut Glb) -> Value,
) -> Vec<u8> {
    let mut glb = Glb::new();
    let positions = [
        [-1.0, -1.0, 0.0],
        [1.0, -1.0, 0.0],
        [1.0, 1.0, 0.0],
        [-1.0, 1.0, 0.0],
    ];
    let normals = [[0.0, 0.0, 1.0f32]; 4];
    let p = glb.floats(&positions, "VEC3");
    let n = glb.floats(&normals, "VEC3");
    let t0 = glb.floats(&uv0, "VEC2");
    let mut attributes = json!({"POSITION": p, "NORMAL": n, "TEXCOORD_0": t0});
    if let Some(uv1) = uv1 {
        attributes["TEXCOORD_1"] = json!(glb.floats(&uv1, "VEC2"));
    }
    let i = glb.indices(&[0, 1, 2, 0, 2, 3]);
    let material = textures(&mut glb);
    glb.json["materials"] = json!([material]);
    glb.json["meshes"] =
        json!([{"primitives": [{"attributes": attributes, "indices": i, "material": 0}]}]);
    glb.json["extensionsUsed"] = json!(["KHR_texture_transform", "KHR_materials_specular"]);
    glb.finish()
}

/// UVs of the quad corners (bottom-left, bottom-right, top-right, top-left) spanning
/// `0..extent` in u and v, the image upright.
fn quad_uvs(extent: f32) -> [[f32; 2]; 4] {
    [[0.0, extent], [extent, extent], [extent, 0.0], [0.0, 0.0]]
}

/// An unlit material showing texture info `info` as emission.
fn emissive_material(info: Value) -> Value {
    json!({
        "pbrMetallicRoughness": {"baseColorFactor": [0, 0, 0, 1], "metallicFactor": 0},
        "emissiveFactor": [1, 1, 1],
        "emissiveTexture": info,
        "extensions": {"KHR_materials_specular": {"specularFactor": 0}},
    })
}

fn textured_quad(image: &[u8], sampler: Value, info: Value, uv_extent: f32) -> Vec<u8> {
    let image = image.to_vec();
    quad_glb(quad_uvs(uv_extent), None, move |glb| {
        let texture = glb.texture(&image, sampler);
        let mut info = info;
        info["index"] = json!(texture);
        emissive_material(info)
    })
}

/// The mean linear RGB of the film's pixels in the rectangle of fractions `[x0, x1) x [y0, y1)`.
fn region_mean(film: &Film, x0: f32, x1: f32, y0: f32, y1: f32) -> [f32; 3] {
    let (w, h) = (film.width as f32, film.height as f32);
    let mut sum = [0.0f32; 3];
    let mut n = 0.0;
    for y in (y0 * h) as u32..(y1 * h) as u32 {
        for x in (x0 * w) as u32..(x1 * w) as u32 {
            let c = film.color[(y * film.width + x) as usize];
            for i in 0..3 {
                sum[i] += c[i];
            }
            n += 1.0;
        }
    }
    sum.map(|s| s / n)
}

#[test]
fn a_texture_transform_moves_the_pattern_like_the_same_texture_edited() {
    // Left half red, right half blue.
    let halves = png(2, 1, &[RED, BLUE]);
    let plain = render_glb(&textured_quad(&halves, nearest(REPEAT), json!({}), 1.0), 32);
    // Half a tile to the right: the halves swap.
    let offset = json!({"extensions": {"KHR_texture_transform": {"offset": [0.5, 0.0]}}});
    let moved = render_glb(&textured_quad(&halves, nearest(REPEAT), offset, 1.0), 32);
    let swapped = render_glb(
        &textured_quad(&png(2, 1, &[BLUE, RED]), nearest(REPEAT), json!({}), 1.0),
        32,
    );
    let left = region_mean(&plain, 0.1, 0.4, 0.3, 0.7);
    let right = region_mean(&plain, 0.6, 0.9, 0.3, 0.7);
    assert!(
        left[0] > 0.8 && left[2] < 0.05,
        "untransformed left is red: {left:?}"
    );
    assert!(
        right[2] > 0.8 && right[0] < 0.05,
        "untransformed right is blue: {right:?}"
    );
    let moved_left = region_mean(&moved, 0.1, 0.4, 0.3, 0.7);
    assert!(
        moved_left[2] > 0.8 && moved_left[0] < 0.05,
        "offset moves blue to the left: {moved_left:?}"
    );
    let d_moved = mean_difference(&moved, &swapped);
    let d_plain = mean_difference(&moved, &plain);
    assert!(
        d_moved < 0.02,
        "offset texture differs from the swapped texture by {d_moved}"
    );
    assert!(
        d_plain > 0.2,
        "offset texture looks like the untransformed one ({d_plain})"
    );

    // Scale 2 with repeat tiles the halves twice; rotation by 90 degrees turns columns into rows.
    let scaled = json!({"extensions": {"KHR_texture_transform": {"scale": [2.0, 1.0]}}});
    let scaled = render_glb(&textured_quad(&halves, nearest(REPEAT), scaled, 1.0), 32);
    let tiled = render_glb(
        &textured_quad(
            &png(4, 1, &[RED, BLUE, RED, BLUE]),
            nearest(REPEAT),
            json!({}),
            1.0,
        ),
        32,
    );
    let d = mean_difference(&scaled, &tiled);
    assert!(d < 0.02, "scale 2 differs from the tiled texture by {d}");
    let rotated = json!({"extensions": {"KHR_texture_transform": {"rotation": std::f32::consts::FRAC_PI_2, "offset": [0.0, 1.0]}}});
    let rotated = render_glb(&textured_quad(&halves, nearest(REPEAT), rotated, 1.0), 32);
    let top = region_mean(&rotated, 0.3, 0.7, 0.1, 0.4);
    let bottom = region_mean(&rotated, 0.3, 0.7, 0.6, 0.9);
    let (l, r) = (
        region_mean(&rotated, 0.1, 0.4, 0.3, 0.7),
        region_mean(&rotated, 0.6, 0.9, 0.3, 0.7),
    );
    assert!(
        (top[0] - bottom[0]).abs() > 0.8 && (l[0] - r[0]).abs() < 0.3,
        "a quarter turn makes the halves top and bottom: top {top:?} bottom {bottom:?} left {l:?} right {r:?}"
    );
}

#[test]
fn texcoord_1_reads_the_second_uv_set() {
    let halves = png(2, 1, &[RED, BLUE]);
    // UV set 0 is constant (every corner at the red texel); set 1 spans the quad.
    let make = |set: u32| {
        let image = halves.clone();
        quad_glb([[0.25, 0.5]; 4], Some(quad_uvs(1.0)), move |glb| {
            let texture = glb.texture(&image, nearest(REPEAT));
            emissive_material(json!({"index": texture, "texCoord": set}))
        })
    };
    let set0 = render_glb(&make(0), 32);
    let set1 = render_glb(&make(1), 32);
    let reference = render_glb(&textured_quad(&halves, nearest(REPEAT), json!({}), 1.0), 32);
    let right0 = region_mean(&set0, 0.6, 0.9, 0.3, 0.7);
    assert!(
        right0[0] > 0.8,
        "texCoord 0 reads the constant set: {right0:?}"
    );
    let d = mean_difference(&set1, &reference);
    assert!(
        d < 0.02,
        "texCoord 1 differs from the same UVs in set 0 by {d}"
    );
    assert!(mean_difference(&set1, &set0) > 0.2);
    // A transform's own texCoord overrides the texture info's.
    let image = halves.clone();
    let overridden = quad_glb([[0.25, 0.5]; 4], Some(quad_uvs(1.0)), move |glb| {
        let texture = glb.texture(&image, nearest(REPEAT));
        emissive_material(
            json!({"index": texture, "texCoord": 0, "extensions": {"KHR_texture_transform": {"texCoord": 1}}}),
        )
    });
    let d = mean_difference(&render_glb(&overridden, 32), &reference);
    assert!(d < 0.02, "KHR_texture_transform texCoord 1 ignored ({d})");
}

#[test]
fn wrap_modes_repeat_clamp_and_mirror_differ_as_specified() {
    // UVs 0..2 over the quad; the texture is red | blue.
    let halves = png(2, 1, &[RED, BLUE]);
    let with_wrap =
        |wrap: u32| render_glb(&textured_quad(&halves, nearest(wrap), json!({}), 2.0), 32);
    // What each mode shows, drawn as one 0..1 texture: four columns over the quad.
    let expected = |columns: [[u8; 3]; 4]| {
        // Rows repeat the same way along v (one texel high), so only columns matter.
        render_glb(
            &textured_quad(&png(4, 1, &columns), nearest(REPEAT), json!({}), 1.0),
            32,
        )
    };
    let cases = [
        ("repeat", REPEAT, [RED, BLUE, RED, BLUE]),
        ("clamp", CLAMP, [RED, BLUE, BLUE, BLUE]),
        ("mirror", MIRROR, [RED, BLUE, BLUE, RED]),
    ];
    let renders: Vec<Film> = cases.iter().map(|(_, wrap, _)| with_wrap(*wrap)).collect();
    for ((name, _, columns), film) in cases.iter().zip(&renders) {
        let d = mean_difference(film, &expected(*columns));
        assert!(d < 0.02, "{name}: differs from its expected pattern by {d}");
    }
    assert!(
        mean_difference(&renders[0], &renders[1]) > 0.1,
        "repeat and clamp look alike"
    );
    assert!(
        mean_difference(&renders[1], &renders[2]) > 0.1,
        "clamp and mirror look alike"
    );
}

#[test]
fn colour_textures_are_srgb_and_data_textures_linear() {
    // The same mid-grey image as an emissive (colour) texture and as occlusion-free data: the
    // emissive shows sRGB 128 as linear 0.216; through KHR_materials_emissive_strength 2 it
    // doubles.
    let grey = png(1, 1, &[[128, 128, 128]]);
    let film = render_glb(&textured_quad(&grey, nearest(REPEAT), json!({}), 1.0), 16);
    let c = region_mean(&film, 0.3, 0.7, 0.3, 0.7);
    assert!((c[0] - 0.216).abs() < 0.01, "sRGB 128 decodes to {c:?}");
    let image = grey.clone();
    let strong = quad_glb(quad_uvs(1.0), None, move |glb| {
        let texture = glb.texture(&image, nearest(REPEAT));
        let mut m = emissive_material(json!({"index": texture}));
        m["extensions"]["KHR_materials_emissive_strength"] = json!({"emissiveStrength": 2.0});
        m
    });
    let c2 = region_mean(&render_glb(&strong, 16), 0.3, 0.7, 0.3, 0.7);
    assert!(
        (c2[0] - 2.0 * c[0]).abs() < 0.02,
        "emissive strength 2: {c2:?} vs {c:?}"
    );
}

fn assets() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/assets/gltf");
    assert!(
        dir.join("DamagedHelmet/DamagedHelmet.glb").is_file(),
        "the shared assets are missing: expected {} (see ../shared/assets/README.md)",
        dir.display()
    );
    dir
}

/// Saturation (max - min channel) and luminance of a linear pixel.
fn chroma_luma(c: [f32; 4]) -> (f32, f32) {
    let max = c[0].max(c[1]).max(c[2]);
    let min = c[0].min(c[1]).min(c[2]);
    (max - min, Vec3::new(c[0], c[1], c[2]).luminance())
}

#[test]
fn damaged_helmet_renders_its_textures_and_only_the_mapped_parts_glow() {
    let bytes = std::fs::read(assets().join("DamagedHelmet/DamagedHelmet.glb")).unwrap();
    let prepared = PreparedScene::from_glb(&bytes, &ImportLimits::default()).unwrap();
    let scene = prepared.scene();
    let helmet = &scene.materials[0];
    assert!(helmet.emissive_texture.is_some(), "emissive map imported");
    assert!(helmet.normal_texture.is_some() && helmet.occlusion_texture.is_some());
    assert!(helmet.metallic_texture.is_some() && helmet.base_color_texture.is_some());
    assert!(
        scene.meshes[0].tangents.is_some(),
        "tangents generated for the normal map"
    );

    let studio = Studio {
        camera: CameraRig {
            yaw_deg: 0.0,
            pitch_deg: 0.0,
            ..CameraRig::default()
        },
        ..Studio::product()
    };
    let size = 64;
    let lit = render(&prepared, studio.clone(), size, 16);

    // Not a silhouette: colours vary over the helmet.
    let covered: Vec<[f32; 4]> = lit.color.iter().copied().filter(|c| c[3] > 0.99).collect();
    assert!(
        covered.len() > 500,
        "helmet covers {} pixels",
        covered.len()
    );
    let n = covered.len() as f32;
    let mean_chroma = covered.iter().map(|&c| chroma_luma(c).0).sum::<f32>() / n;
    let lumas: Vec<f32> = covered.iter().map(|&c| chroma_luma(c).1).collect();
    let mean_luma = lumas.iter().sum::<f32>() / n;
    let luma_sd = (lumas.iter().map(|l| (l - mean_luma).powi(2)).sum::<f32>() / n).sqrt();
    assert!(
        mean_luma < 0.8,
        "the helmet is not white: mean luminance {mean_luma}"
    );
    assert!(
        luma_sd > 0.05,
        "luminance varies over the helmet: sd {luma_sd}"
    );
    assert!(
        mean_chroma > 0.02,
        "colours vary over the helmet: mean chroma {mean_chroma}"
    );

    // Emission comes from the map: turning it off changes some pixels a lot and most not at all.
    let mut dark = scene.clone();
    for m in &mut dark.materials {
        m.emissive = [0.0; 3];
    }
    let unlit = PreparedScene::from_scene(dark).unwrap();
    let dark = render(&unlit, studio, size, 16);
    let mut glowing = 0usize;
    let mut unchanged = 0usize;
    let mut total = 0usize;
    for (a, b) in lit.color.iter().zip(&dark.color) {
        if a[3] < 0.99 {
            continue;
        }
        total += 1;
        let d = (0..3).map(|i| a[i] - b[i]).fold(f32::MIN, f32::max);
        if d > 0.3 {
            glowing += 1;
        }
        if d.abs() < 0.05 {
            unchanged += 1;
        }
    }
    let glowing = glowing as f32 / total as f32;
    let unchanged = unchanged as f32 / total as f32;
    assert!(
        glowing > 0.01,
        "the visor and lights glow: {:.1} % of pixels",
        glowing * 100.0
    );
    assert!(
        glowing < 0.4,
        "emission is not everywhere: {:.1} % of pixels glow",
        glowing * 100.0
    );
    assert!(
        unchanged > 0.4,
        "most of the helmet does not glow: {:.1} % unchanged",
        unchanged * 100.0
    );
}

/// A glass sphere (radius 0.5 at the origin) in front of a red emissive backdrop at z = -2.
fn glass_scene(glass: Material) -> Scene {
    let mut scene = Scene::default();
    let sphere_material = scene.add_material(glass);
    let mut sphere = testmodels::sphere_mesh(0.5, 48, 96);
    sphere.triangle_materials = vec![sphere_material; sphere.triangles.len()];
    let sphere = scene.add_mesh(sphere);
    scene.add_instance(sphere, Affine::IDENTITY, Some("sphere".into()));
    let backdrop_material = scene.add_material(Material {
        emissive: [1.0, 0.05, 0.05],
        ..Material::lambertian([0.0; 3])
    });
    let mut backdrop = testmodels::cube_mesh(0.5);
    backdrop.triangle_materials = vec![backdrop_material; backdrop.triangles.len()];
    let backdrop = scene.add_mesh(backdrop);
    scene.add_instance(
        backdrop,
        Affine::translation(Vec3::new(0.0, 0.0, -2.0))
            .mul(&Affine::scale(Vec3::new(2.5, 2.5, 0.1))),
        Some("backdrop".into()),
    );
    scene
}

fn glass(roughness: f32, volume: Option<Volume>) -> Material {
    Material {
        base_color: [1.0; 4],
        metallic: 0.0,
        roughness,
        transmission: Some(Transmission {
            factor: 1.0,
            texture: None,
        }),
        volume,
        ..Material::default()
    }
}

#[test]
fn a_glass_sphere_shows_the_backdrop_through_it() {
    let solid_volume = Volume {
        thickness: 1.0,
        ..Volume::default()
    };
    let studio = Studio {
        environment: Environment::Uniform { radiance: [0.2; 3] },
        ..emission_studio()
    };
    let centre = |material: Material| {
        let prepared = PreparedScene::from_scene(glass_scene(material)).unwrap();
        let film = render(&prepared, studio.clone(), 64, 32);
        region_mean(&film, 0.45, 0.55, 0.45, 0.55)
    };
    let clear = centre(glass(0.0, Some(solid_volume)));
    let opaque = centre(Material {
        base_color: [1.0; 4],
        metallic: 0.0,
        roughness: 0.3,
        ..Material::default()
    });
    let thin = centre(glass(0.0, None));
    // Through the glass: the red backdrop, nearly all of it (Fresnel takes a few percent at
    // each surface).
    assert!(
        clear[0] > 0.75 && clear[1] < 0.25 * clear[0],
        "clear glass centre {clear:?}"
    );
    assert!(
        thin[0] > 0.75 && thin[1] < 0.25 * thin[0],
        "thin glass centre {thin:?}"
    );
    // An opaque sphere shows its own grey.
    assert!(
        opaque[0] < 0.5 && (opaque[0] - opaque[1]).abs() < 0.1,
        "opaque centre {opaque:?}"
    );
    // A green-tinted absorbing volume keeps green and swallows red over the sphere's diameter.
    let absorbing = centre(glass(
        0.0,
        Some(Volume {
            thickness: 1.0,
            attenuation_color: [0.1, 1.0, 0.1],
            attenuation_distance: 0.5,
            ..Volume::default()
        }),
    ));
    assert!(
        absorbing[0] < 0.2 * clear[0],
        "absorption: {absorbing:?} vs {clear:?}"
    );
    // Rough glass blurs but still transmits.
    let frosted = centre(glass(0.5, Some(solid_volume)));
    assert!(
        frosted[0] > 0.4 && frosted[0] > 2.0 * frosted[1],
        "frosted centre {frosted:?}"
    );
}

#[test]
fn an_unsupported_required_extension_fails_naming_it() {
    let image = png(1, 1, &[WHITE]);
    let glb = textured_quad(&image, nearest(REPEAT), json!({}), 1.0);
    let (mut json, bin) = lightbox_testmodels::hostile::split_glb(&glb).unwrap();
    json["extensionsUsed"] = json!([
        "KHR_materials_unlit",
        "EXT_lights_ies",
        "KHR_materials_clearcoat"
    ]);
    json["extensionsRequired"] = json!(["KHR_materials_clearcoat", "EXT_lights_ies"]);
    let err = PreparedScene::from_glb(&join_glb(&json, &bin), &ImportLimits::default())
        .err()
        .expect("a required extension we lack fails");
    let RenderError::Import(ImportError::UnsupportedExtension { extension }) = &err else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!(extension, "EXT_lights_ies");
    let chain = format!("{}", std::error::Error::source(&err).unwrap());
    assert!(chain.contains("EXT_lights_ies"), "{chain}");
    // Required extensions the importer implements import.
    json["extensionsRequired"] = json!([
        "KHR_materials_clearcoat",
        "KHR_materials_volume",
        "KHR_materials_specular",
        "KHR_texture_transform"
    ]);
    PreparedScene::from_glb(&join_glb(&json, &bin), &ImportLimits::default()).unwrap();
}

#[test]
fn alpha_blend_coverage_is_smooth_at_thumbnail_samples() {
    // A 30 %-opaque quad over nothing, at 4 samples per pixel: each pixel's coverage should be
    // near 0.3, not the 0, 0.25, 0.5, 0.75 lottery of independent random tests (whose standard
    // deviation per pixel would be about 0.23).
    let glb = quad_glb(quad_uvs(1.0), None, |_| {
        json!({
            "pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 0.3], "metallicFactor": 0},
            "alphaMode": "BLEND",
        })
    });
    let prepared = PreparedScene::from_glb(&glb, &ImportLimits::default()).unwrap();
    let film = render(&prepared, emission_studio(), 32, 4);
    let (w, h) = (film.width as usize, film.height as usize);
    let inner: Vec<f32> = (h / 4..3 * h / 4)
        .flat_map(|y| (w / 4..3 * w / 4).map(move |x| (x, y)))
        .map(|(x, y)| film.color[y * w + x][3])
        .collect();
    let n = inner.len() as f32;
    let mean = inner.iter().sum::<f32>() / n;
    let sd = (inner.iter().map(|a| (a - mean).powi(2)).sum::<f32>() / n).sqrt();
    assert!((mean - 0.3).abs() < 0.03, "mean coverage {mean}");
    assert!(sd < 0.12, "coverage varies per pixel with sd {sd}");
}
