//! Hostile and broken models for tests of the import guards: GLB surgery (split a GLB into its
//! JSON document and binary chunk, edit, join), textured cubes and PNG headers that lie.

use serde_json::{json, Value};

use lightbox_scene::export::{export_glb, read_glb_container, write_glb_container};
use lightbox_scene::math::Affine;
use lightbox_scene::{Material, Scene};

/// Splits a GLB into its JSON document and its binary chunk (empty when there is none).
/// Returns `None` for bytes that are not a well-formed GLB container.
pub fn split_glb(glb: &[u8]) -> Option<(Value, Vec<u8>)> {
    let chunks = read_glb_container(glb)?;
    let json = serde_json::from_slice(chunks.json).ok()?;
    Some((json, chunks.bin.to_vec()))
}

/// Assembles a GLB from a JSON document and a binary chunk, padding both to four bytes.
pub fn join_glb(json: &Value, bin: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(json).expect("a JSON value serializes");
    write_glb_container(&json, bin).expect("test models fit in a GLB")
}

/// A unit cube as a GLB document and binary chunk, ready for surgery.
pub fn cube_parts() -> (Value, Vec<u8>) {
    let mut scene = Scene::default();
    scene.add_material(Material::default());
    let cube = scene.add_mesh(super::cube_mesh(0.5));
    scene.add_instance(cube, Affine::IDENTITY, Some("box".into()));
    split_glb(&export_glb(&scene)).expect("the exporter writes a well-formed GLB")
}

/// A cube whose material's base colour texture is `image` (encoded PNG/JPEG bytes, embedded in
/// the binary chunk through a buffer view).
pub fn textured_cube_glb(image: &[u8], mime_type: &str) -> Vec<u8> {
    let mut scene = Scene::default();
    scene.add_material(Material::default());
    let cube = scene.add_mesh(super::cube_mesh(0.5));
    scene.add_instance(cube, Affine::IDENTITY, Some("box".into()));
    textured_glb(&scene, image, mime_type)
}

/// The scene's GLB with `image` (encoded PNG/JPEG bytes, stored in the binary chunk) as the
/// base colour texture of every material.
pub fn textured_glb(scene: &Scene, image: &[u8], mime_type: &str) -> Vec<u8> {
    let (mut json, mut bin) =
        split_glb(&export_glb(scene)).expect("the exporter writes a well-formed GLB");
    while !bin.len().is_multiple_of(4) {
        bin.push(0);
    }
    let offset = bin.len();
    bin.extend_from_slice(image);
    json["buffers"][0]["byteLength"] = json!(bin.len());
    let views = json["bufferViews"].as_array_mut().expect("bufferViews");
    views.push(json!({"buffer": 0, "byteOffset": offset, "byteLength": image.len()}));
    let view = views.len() - 1;
    json["images"] = json!([{"bufferView": view, "mimeType": mime_type}]);
    json["samplers"] = json!([{"magFilter": 9729, "minFilter": 9987}]);
    json["textures"] = json!([{"source": 0, "sampler": 0}]);
    for material in json["materials"].as_array_mut().expect("materials") {
        material["pbrMetallicRoughness"]["baseColorTexture"] = json!({"index": 0});
    }
    join_glb(&json, &bin)
}

/// A cube whose triangle accessor claims `triangles` triangles (its buffer holds twelve): a
/// tiny file that declares a huge mesh.
pub fn cube_claiming_triangles(triangles: u64) -> Vec<u8> {
    let (mut json, bin) = cube_parts();
    let indices = json["meshes"][0]["primitives"][0]["indices"]
        .as_u64()
        .expect("the cube is indexed") as usize;
    json["accessors"][indices]["count"] = json!(triangles * 3);
    join_glb(&json, &bin)
}

/// PNG bytes whose header claims `width` x `height` RGBA pixels, followed by one tiny image data
/// chunk: what a decompression bomb looks like before decoding.
pub fn png_claiming_size(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA, deflate, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    // A zlib stream of a few zero bytes: valid, and far too short for the claimed size.
    png_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// CRC-32 (IEEE), as PNG chunks use it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glb_surgery_round_trips() {
        let (json, bin) = cube_parts();
        let (json2, bin2) = split_glb(&join_glb(&json, &bin)).unwrap();
        assert_eq!(json, json2);
        assert_eq!(bin, bin2);
        assert!(split_glb(b"glTF\x02\x00").is_none());
    }

    #[test]
    fn claimed_png_size_is_what_the_header_says() {
        let png = png_claiming_size(100_000, 70_000);
        let reader = image::ImageReader::new(std::io::Cursor::new(&png))
            .with_guessed_format()
            .unwrap();
        assert_eq!(reader.into_dimensions().unwrap(), (100_000, 70_000));
    }
}
