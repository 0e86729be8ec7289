//! Seed corpora, generated from the project's own generators (test models, the GLB and USD
//! writers, the convert function's sample images and encoders, and `Envelope::new`).

use std::io;
use std::path::Path;

use base64::Engine as _;
use lightbox_convert::samples::{png_with_claimed_size, test_card_png};
use lightbox_convert::{convert_bytes, ConvertParams, Limits};
use lightbox_scene::export::export_glb;
use lightbox_scene::usd_write::{export_usda_with, export_usdz_with};
use lightbox_scene::Material;
use lightbox_testmodels::hostile::{split_glb, textured_glb};
use lightbox_scene::{
    testmodels, RenderSpec, Scene, TurntableSpec, UsdInstancing, UsdWriteOptions,
};
use serde_json::{json, Value};
use lightbox_runtime::job::{Continuation, Envelope, Function};
use lightbox_runtime::requests::{
    ConvertRequest, ImageFormat, RenderOutputRequest, RenderRequest, Size, TessellateRequest,
    TessellationParams,
};
use lightbox_runtime::ObjectKey;

use crate::image_control;

/// Writes the seeds of `target` into `dir` (created if missing); returns how many.
pub fn write(target: &str, dir: &Path) -> io::Result<usize> {
    let seeds = match target {
        "job_parsing" => job_seeds(),
        "glb_import" => glb_seeds(),
        "usd_import" => usd_seeds(),
        "image_decode" => image_seeds(),
        other => {
            return Err(io::Error::other(format!("no seeds for target {other:?}")));
        }
    };
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in &seeds {
        std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
    }
    Ok(seeds.len())
}

type Seeds = Vec<(String, Vec<u8>)>;

fn key(text: &str) -> ObjectKey {
    ObjectKey::new(text).expect("seed keys are valid")
}

fn job_seeds() -> Seeds {
    let mut out = Seeds::new();
    let convert = ConvertRequest {
        input: key("inputs/card.png"),
        output: Some(key("outputs/card.webp")),
        format: ImageFormat::Webp,
        quality: Some(80),
        lossless: false,
        resize: Some(Size {
            width: 256,
            height: 128,
        }),
    };
    out.push((
        "convert.json".into(),
        Envelope::new(Function::Convert, &convert).to_json(),
    ));
    let model = ConvertRequest {
        input: key("models/bearing.glb"),
        output: None,
        format: ImageFormat::Usdz,
        quality: None,
        lossless: true,
        resize: None,
    };
    let mut with_deadline = Envelope::new(Function::Convert, &model);
    with_deadline.deadline_ms = Some(60_000);
    out.push((
        "convert-model-deadline.json".into(),
        with_deadline.to_json(),
    ));

    let still = RenderSpec {
        width: 640,
        height: 480,
        samples: Some(16),
        ..RenderSpec::default()
    };
    let turntable = RenderSpec {
        width: 256,
        height: 256,
        turntable: Some(TurntableSpec::default()),
        ..RenderSpec::default()
    };
    let output = |spec: &RenderSpec, key_text: Option<&str>| RenderOutputRequest {
        output: key_text.map(key),
        spec: match serde_json::to_value(spec).expect("specs serialise") {
            Value::Object(map) => map,
            _ => unreachable!("a spec is an object"),
        },
    };
    let render = RenderRequest {
        model: key("models/bearing.glb"),
        usd_master: Some(key("models/bearing.usdz")),
        outputs: vec![
            output(&still, Some("outputs/still.png")),
            output(&turntable, None),
        ],
        engine: Some("native".into()),
        tessellation: None,
        tessellated_by: None,
    };
    let render_envelope = Envelope::new(Function::Render, &render);
    out.push(("render.json".into(), render_envelope.to_json()));
    // A minimal render request, as the CLI sends one.
    let minimal = json!({"model": "models/a.glb", "outputs": [{"width": 64, "height": 64}]});
    out.push((
        "render-minimal.json".into(),
        Envelope::new(Function::Render, minimal).to_json(),
    ));

    // Tessellate, continued by a render job: what the render function publishes for STEP input.
    let step_render = RenderRequest {
        model: key("models/bearing.step"),
        usd_master: None,
        outputs: vec![output(&still, None)],
        engine: None,
        tessellation: Some(TessellationParams {
            linear_deflection: Some(0.001),
            angular_deflection: Some(0.5),
        }),
        tessellated_by: Some("tessellate-for-x".into()),
    };
    let continued = Envelope::new(Function::Render, &step_render);
    let tessellate = TessellateRequest {
        input: key("models/bearing.step"),
        output: Some(key("cache/tessellate/abc.glb")),
        linear_deflection: Some(0.001),
        angular_deflection: None,
    };
    let mut chained = Envelope::new(Function::Tessellate, &tessellate);
    chained.then = Some(Continuation {
        subject: "render.light".into(),
        job: serde_json::to_value(&continued).expect("envelopes serialise"),
    });
    out.push(("tessellate-then-render.json".into(), chained.to_json()));
    out.push((
        "tessellate.json".into(),
        Envelope::new(Function::Tessellate, &tessellate).to_json(),
    ));
    out
}

/// The GLB as self-contained `.gltf` JSON with a base64 data URI buffer.
fn gltf_json(glb: &[u8]) -> Vec<u8> {
    let (mut document, bin) = split_glb(glb).expect("an exported GLB");
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bin);
    document["buffers"][0]["uri"] =
        json!(format!("data:application/octet-stream;base64,{encoded}"));
    document["buffers"][0]["byteLength"] = json!(bin.len());
    serde_json::to_vec_pretty(&document).expect("JSON serialises")
}

fn sphere_with_texture_scene() -> Scene {
    testmodels::sphere_scene(0.5, 6, Material::default())
}

/// `testmodels::primitives_scene` at low detail, so the seed stays a few kB.
fn small_primitives_scene() -> Scene {
    testmodels::primitives_scene_at(4, 8)
}

fn encode_as(png: &[u8], format: ImageFormat, lossless: bool) -> Vec<u8> {
    let params = ConvertParams {
        format,
        quality: Some(75),
        lossless,
        resize: None,
    };
    convert_bytes(png, &params, &Limits::default())
        .expect("the test card converts")
        .bytes
}

fn glb_seeds() -> Seeds {
    let mut out = Seeds::new();
    let primitives = export_glb(&small_primitives_scene());
    out.push(("primitives.gltf".into(), gltf_json(&primitives)));
    out.push(("primitives.glb".into(), primitives));
    out.push(("bearing.glb".into(), testmodels::bearing_glb(0.01)));
    let sphere = sphere_with_texture_scene();
    out.push(("sphere.glb".into(), export_glb(&sphere)));
    let card = test_card_png(16, 8);
    out.push((
        "sphere-png-texture.glb".into(),
        textured_glb(&sphere, &card, "image/png"),
    ));
    let jpeg = encode_as(&card, ImageFormat::Jpeg, false);
    out.push((
        "sphere-jpeg-texture.glb".into(),
        textured_glb(&sphere, &jpeg, "image/jpeg"),
    ));
    out
}

fn usd_seeds() -> Seeds {
    let mut out = Seeds::new();
    let references = UsdWriteOptions::default();
    let point_instancer = UsdWriteOptions {
        instancing: UsdInstancing::PointInstancer,
    };
    let primitives = small_primitives_scene();
    let sphere = sphere_with_texture_scene();
    out.push((
        "primitives.usda".into(),
        export_usda_with(&primitives, &references).into_bytes(),
    ));
    out.push((
        "primitives-pointinstancer.usda".into(),
        export_usda_with(&primitives, &point_instancer).into_bytes(),
    ));
    out.push((
        "sphere.usda".into(),
        export_usda_with(&sphere, &references).into_bytes(),
    ));
    out.push((
        "primitives.usdz".into(),
        export_usdz_with(&primitives, &references),
    ));
    out.push((
        "sphere-pointinstancer.usdz".into(),
        export_usdz_with(&sphere, &point_instancer),
    ));
    out
}

fn image_seeds() -> Seeds {
    let mut out = Seeds::new();
    let with = |control: u8, image: &[u8]| {
        let mut bytes = vec![control];
        bytes.extend_from_slice(image);
        bytes
    };
    let card = test_card_png(48, 32);
    let small = test_card_png(8, 8);
    let jpeg = encode_as(&card, ImageFormat::Jpeg, false);
    let webp_lossy = encode_as(&card, ImageFormat::Webp, false);
    let webp_lossless = encode_as(&small, ImageFormat::Webp, true);
    let png_rgb = encode_as(&jpeg, ImageFormat::Png, false);
    let c = image_control;
    out.push((
        "card-to-webp.png".into(),
        with(c(ImageFormat::Webp, false, 0), &card),
    ));
    out.push((
        "card-to-jpeg-resized.png".into(),
        with(c(ImageFormat::Jpeg, false, 3), &card),
    ));
    out.push((
        "rgb-to-png.png".into(),
        with(c(ImageFormat::Png, false, 0), &png_rgb),
    ));
    out.push((
        "card-to-png.jpg".into(),
        with(c(ImageFormat::Png, false, 0), &jpeg),
    ));
    out.push((
        "card-to-webp-lossless.jpg".into(),
        with(c(ImageFormat::Webp, true, 1), &jpeg),
    ));
    out.push((
        "card-to-jpeg.webp".into(),
        with(c(ImageFormat::Jpeg, false, 0), &webp_lossy),
    ));
    out.push((
        "small-to-png.webp".into(),
        with(c(ImageFormat::Png, false, 2), &webp_lossless),
    ));
    // Headers that claim more pixels than the limit, and a size within it with no pixel data.
    out.push((
        "bomb-header.png".into(),
        with(
            c(ImageFormat::Webp, false, 0),
            &png_with_claimed_size(100_000, 100_000),
        ),
    ));
    out.push((
        "empty-idat.png".into(),
        with(
            c(ImageFormat::Png, false, 0),
            &png_with_claimed_size(256, 256),
        ),
    ));
    out
}
