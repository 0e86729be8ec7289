//! STEP colours as CAD viewers show them, end to end through the isolated tessellator: the
//! generated `Sample::Styled` assembly (face colours over a solid colour, solid colours inside a
//! part, part, instance and inherited colours, transparency) becomes one glTF material per distinct colour in
//! linear space, a part with styled faces one primitive per colour, the GLB passes the Khronos
//! validator, and the native engine renders the styled faces brass, not the solid's white.

mod support;

use std::collections::BTreeMap;

use lightbox_tessellate::samples::{self, Sample};
use lightbox_tessellate::scene::{glb_counts, GlbCounts};
use lightbox_tessellate::Tessellated;
use render_runtime::spec::RenderSpec;
use render_runtime::{Film, ImportLimits, NoHooks, PreparedScene};
use serde_json::Value;
use support::{parse_glb, run, validate};

/// The sRGB values `styled` in `occt/shim.cpp` writes (STEP COLOUR_RGB is sRGB).
const BRASS: [f64; 3] = [0.71, 0.65, 0.26];
const SOLID_WHITE: [f64; 3] = [0.95, 0.95, 0.95];
const RED: [f64; 3] = [0.8, 0.1, 0.1];
const ORANGE: [f64; 3] = [0.9, 0.45, 0.1];
const PURPLE: [f64; 3] = [0.5, 0.2, 0.6];
const BLUE: [f64; 3] = [0.1, 0.2, 0.7];
const GREEN: [f64; 3] = [0.1, 0.6, 0.2];
const YELLOW: [f64; 3] = [0.9, 0.8, 0.1];

/// The IEC 61966-2-1 sRGB decoding, written out here so the test does not trust OCCT's.
fn linear(srgb: [f64; 3], alpha: f64) -> [f64; 4] {
    let decode = |c: f64| {
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    [decode(srgb[0]), decode(srgb[1]), decode(srgb[2]), alpha]
}

/// One primitive as a viewer draws it: its material's colour, alpha mode and triangles.
#[derive(Debug, Clone, PartialEq)]
struct Drawn {
    color: [f64; 4],
    blend: bool,
    triangles: u64,
}

struct Glb {
    json: Value,
}

impl Glb {
    fn new(done: &Tessellated) -> Glb {
        let (root, _) = parse_glb(&done.glb);
        Glb {
            json: serde_json::to_value(&root).unwrap(),
        }
    }

    fn array(&self, key: &str) -> &Vec<Value> {
        self.json[key].as_array().unwrap()
    }

    /// The primitives of a mesh, as drawn.
    fn drawn(&self, mesh: usize) -> Vec<Drawn> {
        self.array("meshes")[mesh]["primitives"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let material = &self.array("materials")[p["material"].as_u64().unwrap() as usize];
                let factor: Vec<f64> = serde_json::from_value(
                    material["pbrMetallicRoughness"]["baseColorFactor"].clone(),
                )
                .unwrap();
                let indices = &self.array("accessors")[p["indices"].as_u64().unwrap() as usize];
                Drawn {
                    color: [factor[0], factor[1], factor[2], factor[3]],
                    blend: material["alphaMode"] == "BLEND",
                    triangles: indices["count"].as_u64().unwrap() / 3,
                }
            })
            .collect()
    }

    /// Meshes with this name (colour variants of one part share it).
    fn meshes_named(&self, name: &str) -> Vec<usize> {
        (0..self.array("meshes").len())
            .filter(|&i| self.array("meshes")[i]["name"] == name)
            .collect()
    }

    /// The mesh a named node places.
    fn node_mesh(&self, name: &str) -> usize {
        let node = self
            .array("nodes")
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("no node {name:?}"));
        node["mesh"].as_u64().unwrap() as usize
    }

    fn positions(&self, mesh: usize) -> &Value {
        &self.array("meshes")[mesh]["primitives"][0]["attributes"]["POSITION"]
    }
}

/// Asserts that `drawn` is exactly one primitive per expected colour, each with its triangles
/// (`None`: any number), colours within 1e-4 of the expected linear values.
fn assert_drawn(what: &str, drawn: &[Drawn], expected: &[([f64; 4], bool, Option<u64>)]) {
    assert_eq!(
        drawn.len(),
        expected.len(),
        "{what}: one primitive per colour: {drawn:?}"
    );
    for (color, blend, triangles) in expected {
        let found = drawn
            .iter()
            .find(|d| d.color.iter().zip(color).all(|(a, b)| (a - b).abs() < 1e-4))
            .unwrap_or_else(|| panic!("{what}: no primitive of colour {color:?} in {drawn:?}"));
        assert_eq!(found.blend, *blend, "{what}: alpha mode of {found:?}");
        if let Some(triangles) = triangles {
            assert_eq!(found.triangles, *triangles, "{what}: {found:?}");
        }
    }
}

fn styled() -> Tessellated {
    let step = samples::step_bytes(Sample::Styled).unwrap();
    run(&step).unwrap()
}

#[test]
fn face_solid_part_and_instance_colours_become_one_material_each() {
    let done = styled();
    let report = validate(&done.glb, "styled");
    assert_eq!(report["numErrors"], 0, "{report:#}");
    assert_eq!(report["numWarnings"], 0, "{report:#}");
    assert_eq!((done.stats.parts, done.stats.instances), (4, 6));
    // A cache hit reads the same counts back from the GLB, primitives per colour and all.
    assert_eq!(
        glb_counts(&done.glb),
        Some(GlbCounts {
            parts: 4,
            instances: 6,
            triangles: done.stats.triangles
        })
    );
    let glb = Glb::new(&done);

    // Each planar face of a box meshes as two triangles: four brass faces over the near-white
    // solid, one translucent red face (STEP transparency 0.5), the bottom in the solid's colour.
    let block = glb.meshes_named("brass block");
    assert_eq!(block.len(), 1);
    assert_drawn(
        "brass block",
        &glb.drawn(block[0]),
        &[
            (linear(BRASS, 1.0), false, Some(8)),
            (linear(RED, 0.5), true, Some(2)),
            (linear(SOLID_WHITE, 1.0), false, Some(2)),
        ],
    );

    // A solid's colour inside a multi-solid part covers that solid's six faces.
    let bodies = glb.meshes_named("two bodies");
    assert_eq!(bodies.len(), 1);
    assert_drawn(
        "two bodies",
        &glb.drawn(bodies[0]),
        &[
            (linear(ORANGE, 1.0), false, Some(12)),
            (linear(PURPLE, 1.0), false, Some(12)),
        ],
    );

    // The part's blue, overridden by pin B's own instance colour; the two share vertices.
    let pin_a = glb.node_mesh("pin A");
    let pin_b = glb.node_mesh("pin B");
    assert_ne!(pin_a, pin_b);
    assert_eq!(
        glb.meshes_named("pin"),
        vec![pin_a.min(pin_b), pin_a.max(pin_b)]
    );
    assert_drawn(
        "pin A",
        &glb.drawn(pin_a),
        &[(linear(BLUE, 1.0), false, None)],
    );
    assert_drawn(
        "pin B",
        &glb.drawn(pin_b),
        &[(linear(GREEN, 1.0), false, None)],
    );
    assert_eq!(glb.drawn(pin_a)[0].triangles, glb.drawn(pin_b)[0].triangles);
    assert_eq!(glb.positions(pin_a), glb.positions(pin_b));
    // Pin C, in the sub-assembly placed yellow, keeps the part's blue: a part's own colour beats
    // the one it inherits.
    let nodes_on_pin_a = glb
        .array("nodes")
        .iter()
        .filter(|n| n["mesh"].as_u64() == Some(pin_a as u64))
        .count();
    assert_eq!(nodes_on_pin_a, 2, "pin A and pin C");

    // The uncoloured part beside it inherits the sub-assembly instance's yellow.
    let plain = glb.node_mesh("plain pin");
    assert_drawn(
        "plain pin",
        &glb.drawn(plain),
        &[(linear(YELLOW, 1.0), false, None)],
    );

    // One material per distinct colour, shared wherever the colour recurs.
    let mut colours = BTreeMap::new();
    for material in glb.array("materials") {
        let key = material["pbrMetallicRoughness"]["baseColorFactor"].to_string();
        *colours.entry(key).or_insert(0) += 1;
    }
    assert_eq!(colours.len(), 8, "{colours:?}");
    assert!(colours.values().all(|&n| n == 1), "{colours:?}");
}

/// What the camera sees of the model: the share of its pixels (first hit on the model) showing
/// the brass faces and the solid's white, and the mean radiance of the brass pixels.
struct Seen {
    brass: f64,
    white: f64,
    brass_radiance: [f64; 3],
}

fn seen(film: &Film) -> Seen {
    let is = |albedo: &[f32; 3], srgb: [f64; 3]| {
        let want = linear(srgb, 1.0);
        albedo
            .iter()
            .zip(&want)
            .all(|(&a, &w)| (a as f64 - w).abs() < 0.02)
    };
    let (mut object, mut brass, mut white) = (0usize, 0usize, 0usize);
    let mut radiance = [0.0f64; 3];
    for (color, albedo) in film.color.iter().zip(&film.albedo) {
        if albedo.iter().all(|&a| a <= 0.0) {
            continue;
        }
        object += 1;
        if is(albedo, BRASS) {
            brass += 1;
            for (sum, &c) in radiance.iter_mut().zip(color) {
                *sum += c as f64;
            }
        }
        if is(albedo, SOLID_WHITE) {
            white += 1;
        }
    }
    assert!(object > 0, "the model is in view");
    Seen {
        brass: brass as f64 / object as f64,
        white: white as f64 / object as f64,
        brass_radiance: radiance.map(|c| c / brass.max(1) as f64),
    }
}

#[test]
fn styled_faces_render_brass_with_the_native_engine() {
    let done = styled();
    let prepared = PreparedScene::from_glb(&done.glb, &ImportLimits::default()).unwrap();
    let spec = RenderSpec {
        width: 96,
        height: 96,
        samples: Some(16),
        ..RenderSpec::default()
    };
    let (film, _) = prepared
        .render_film(&spec.resolve().unwrap(), 0, &NoHooks)
        .unwrap();
    let seen = seen(&film);
    eprintln!(
        "brass faces {:.1} %, the solid's white {:.1} % of the model's pixels; brass radiance {:.3?}",
        seen.brass * 100.0,
        seen.white * 100.0,
        seen.brass_radiance
    );
    // The block's top and a long side are brass: 35 % of the model's pixels at 96², 16 spp
    // (0 % when face colours are lost); its solid's white is only on the bottom, out of view.
    assert!(seen.brass > 0.2, "brass covers {:.1} %", seen.brass * 100.0);
    assert!(
        seen.white < 0.01,
        "white covers {:.1} %",
        seen.white * 100.0
    );
    // And they look brass under the studio lights: red and green close, blue far below.
    let [r, g, b] = seen.brass_radiance;
    assert!(
        g / r > 0.6 && g / r < 1.0 && b / r < 0.3,
        "brass pixels have radiance {:?}",
        seen.brass_radiance
    );

    // The same, as an image to look at.
    let out = prepared.render(&spec, &NoHooks).unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("styled-step.png");
    std::fs::write(&path, &out.images[0].bytes).unwrap();
    eprintln!("rendered {}", path.display());
}
