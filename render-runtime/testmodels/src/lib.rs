//! Test models generated in code: a procedural ball bearing and primitives.
//!
//! The bearing is a double-row deep-groove ball bearing of 140 parts: outer and inner ring,
//! 2 x 32 balls (one shared mesh), four pressed cage halves (one mesh), 64 cage rivets (one
//! mesh), two seals, two snap rings and two retaining washers. At `detail = 1.0` it has about
//! 1.5 M triangles as rendered. Call [`bearing_glb`] for the same model as GLB bytes, so tests
//! and benchmarks go through the real importer.

use std::f32::consts::{PI, TAU};

use lightbox_scene::export::export_glb;
use lightbox_scene::math::{Affine, Vec3};
use lightbox_scene::{Material, Mesh, Scene};

pub mod compare;
pub mod hostile;

/// One smooth run of a 2D profile `(radius, height)` with per-point profile normals.
struct ProfileSection {
    points: Vec<[f32; 2]>,
    normals: Vec<[f32; 2]>,
}

/// Builds sections from a closed polyline: corners sharper than ~35 degrees split sections
/// (hard edges); gentler bends are smoothed.
fn sections_from_polyline(poly: &[[f32; 2]]) -> Vec<ProfileSection> {
    let n = poly.len();
    let edge_normal = |i: usize| -> [f32; 2] {
        let a = poly[i];
        let b = poly[(i + 1) % n];
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len = (dx * dx + dy * dy).sqrt().max(1e-12);
        // Counter-clockwise polylines have their outside on the right: normal = (dy, -dx).
        [dy / len, -dx / len]
    };
    let mut sections = Vec::new();
    let mut current = ProfileSection {
        points: Vec::new(),
        normals: Vec::new(),
    };
    // Walk edges; a vertex between edges i-1 and i is smooth if the normals are close.
    let is_smooth = |i: usize| {
        let a = edge_normal((i + n - 1) % n);
        let b = edge_normal(i);
        a[0] * b[0] + a[1] * b[1] > 0.82
    };
    let start = (0..n).find(|&i| !is_smooth(i)).unwrap_or(0);
    for k in 0..=n {
        let i = (start + k) % n;
        let prev_n = edge_normal((i + n - 1) % n);
        let next_n = edge_normal(i);
        if k > 0 && (!is_smooth(i) || k == n) {
            // End the current section at this vertex with the incoming edge's normal.
            current.points.push(poly[i]);
            current.normals.push(if is_smooth(i) {
                let m = [prev_n[0] + next_n[0], prev_n[1] + next_n[1]];
                let l = (m[0] * m[0] + m[1] * m[1]).sqrt();
                [m[0] / l, m[1] / l]
            } else {
                prev_n
            });
            sections.push(std::mem::replace(
                &mut current,
                ProfileSection {
                    points: Vec::new(),
                    normals: Vec::new(),
                },
            ));
            if k == n {
                break;
            }
        }
        let normal = if k > 0 && is_smooth(i) {
            let m = [prev_n[0] + next_n[0], prev_n[1] + next_n[1]];
            let l = (m[0] * m[0] + m[1] * m[1]).sqrt();
            [m[0] / l, m[1] / l]
        } else {
            next_n
        };
        current.points.push(poly[i]);
        current.normals.push(normal);
    }
    sections
}

/// Revolves a closed counter-clockwise profile around the Y axis. `wobble(theta)` offsets the
/// height per angle (used for the wavy cage).
fn revolve(name: &str, profile: &[[f32; 2]], segments: usize, wobble: &dyn Fn(f32) -> f32) -> Mesh {
    let segments = segments.max(3);
    let mut mesh = Mesh {
        name: Some(name.into()),
        normals: Some(Vec::new()),
        ..Mesh::default()
    };
    let normals = mesh.normals.as_mut().expect("just set");
    for section in sections_from_polyline(profile) {
        let base = mesh.positions.len() as u32;
        let m = section.points.len();
        for s in 0..segments {
            let theta = TAU * s as f32 / segments as f32;
            let (sin, cos) = theta.sin_cos();
            let dy = wobble(theta);
            for (p, nrm) in section.points.iter().zip(&section.normals) {
                mesh.positions.push([p[0] * cos, p[1] + dy, p[0] * sin]);
                normals.push([nrm[0] * cos, nrm[1], nrm[0] * sin]);
            }
        }
        for s in 0..segments {
            let s1 = (s + 1) % segments;
            for j in 0..m - 1 {
                let a = base + (s * m + j) as u32;
                let b = base + (s * m + j + 1) as u32;
                let c = base + (s1 * m + j) as u32;
                let d = base + (s1 * m + j + 1) as u32;
                // Counter-clockwise seen from outside (glTF front faces).
                mesh.triangles.push([a, b, c]);
                mesh.triangles.push([b, d, c]);
            }
        }
    }
    mesh
}

/// A chamfered rectangle `[r0, r1] x [y0, y1]` in the profile plane with circular raceway
/// grooves `(height, radius)` centred at radius `groove_center_r`, cut into the outer face
/// (`groove_on_outer_face`, inner ring) or the inner face (outer ring). Counter-clockwise.
#[allow(clippy::too_many_arguments)]
fn ring_profile(
    r0: f32,
    r1: f32,
    y0: f32,
    y1: f32,
    groove_center_r: f32,
    grooves: &[(f32, f32)],
    groove_on_outer_face: bool,
    arc_steps: usize,
) -> Vec<[f32; 2]> {
    let ch = (r1 - r0).min(y1 - y0) * 0.08;
    let steps = arc_steps.max(4);
    let cr = groove_center_r;
    let mut poly = vec![[r0 + ch, y0], [r1 - ch, y0], [r1, y0 + ch]];
    if groove_on_outer_face {
        let mut gs = grooves.to_vec();
        gs.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (gy, gr) in gs {
            let d = r1 - cr;
            let a_top = ((gr * gr - d * d).max(0.0).sqrt() / gr).asin();
            for k in 0..=steps {
                let a = -a_top + 2.0 * a_top * k as f32 / steps as f32;
                poly.push([cr - gr * a.cos(), gy + gr * a.sin()]);
            }
        }
    }
    poly.extend_from_slice(&[[r1, y1 - ch], [r1 - ch, y1], [r0 + ch, y1], [r0, y1 - ch]]);
    if !groove_on_outer_face {
        let mut gs = grooves.to_vec();
        gs.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (gy, gr) in gs {
            let d = r0 - cr;
            let a_top = ((gr * gr - d * d).max(0.0).sqrt() / gr).asin();
            for k in 0..=steps {
                let a = a_top - 2.0 * a_top * k as f32 / steps as f32;
                poly.push([cr + gr * a.cos(), gy + gr * a.sin()]);
            }
        }
    }
    poly.push([r0, y0 + ch]);
    poly
}

/// A UV sphere of `radius` centred at the origin.
pub fn sphere_mesh(radius: f32, rings: usize, segments: usize) -> Mesh {
    let rings = rings.max(3);
    let segments = segments.max(3);
    let mut mesh = Mesh {
        name: Some("sphere".into()),
        ..Mesh::default()
    };
    let mut normals = Vec::new();
    let mut uvs = Vec::new();
    for i in 0..=rings {
        let v = i as f32 / rings as f32;
        let phi = v * PI;
        for j in 0..=segments {
            let u = j as f32 / segments as f32;
            let theta = u * TAU;
            let n = [phi.sin() * theta.cos(), phi.cos(), phi.sin() * theta.sin()];
            mesh.positions.push(n.map(|c| c * radius));
            normals.push(n);
            uvs.push([u, v]);
        }
    }
    let row = segments + 1;
    for i in 0..rings {
        for j in 0..segments {
            let a = (i * row + j) as u32;
            let b = a + 1;
            let c = a + row as u32;
            let d = c + 1;
            if i != 0 {
                mesh.triangles.push([a, b, c]);
            }
            if i != rings - 1 {
                mesh.triangles.push([b, d, c]);
            }
        }
    }
    mesh.normals = Some(normals);
    mesh.uvs = Some(uvs);
    mesh
}

/// A closed cube from `-half` to `half` with flat faces (no normals: imported flat).
pub fn cube_mesh(half: f32) -> Mesh {
    let mut mesh = Mesh {
        name: Some("cube".into()),
        ..Mesh::default()
    };
    for i in 0..8u32 {
        let s = |bit: u32| if i & bit != 0 { half } else { -half };
        mesh.positions.push([s(1), s(2), s(4)]);
    }
    // Faces as quads of corner indices, counter-clockwise seen from outside.
    let quads = [
        [0, 4, 6, 2],
        [1, 3, 7, 5],
        [0, 1, 5, 4],
        [2, 6, 7, 3],
        [0, 2, 3, 1],
        [4, 5, 7, 6],
    ];
    for q in quads {
        mesh.triangles.push([q[0], q[1], q[2]]);
        mesh.triangles.push([q[0], q[2], q[3]]);
    }
    mesh
}

/// A scene with one sphere of the given material, centred at the origin.
pub fn sphere_scene(radius: f32, detail: usize, material: Material) -> Scene {
    let mut scene = Scene::default();
    scene.add_material(material);
    let mesh = scene.add_mesh(sphere_mesh(radius, detail, detail * 2));
    scene.add_instance(mesh, Affine::IDENTITY, Some("sphere".into()));
    scene
}

/// A small still life for golden images: a sphere on a cube, both instanced, plus a second
/// sphere placement.
pub fn primitives_scene() -> Scene {
    primitives_scene_at(24, 48)
}

/// [`primitives_scene`] with the spheres tessellated into `rings` x `segments`.
pub fn primitives_scene_at(rings: usize, segments: usize) -> Scene {
    let mut scene = Scene::default();
    let red = scene.add_material(Material {
        name: Some("red plastic".into()),
        base_color: [0.7, 0.08, 0.05, 1.0],
        metallic: 0.0,
        roughness: 0.35,
        ..Material::default()
    });
    let steel = scene.add_material(Material {
        name: Some("steel".into()),
        base_color: [0.85, 0.85, 0.88, 1.0],
        metallic: 1.0,
        roughness: 0.2,
        ..Material::default()
    });
    let mut sphere = sphere_mesh(0.5, rings, segments);
    sphere.triangle_materials = vec![red; sphere.triangles.len()];
    let mut cube = cube_mesh(0.5);
    cube.triangle_materials = vec![steel; cube.triangles.len()];
    let sphere = scene.add_mesh(sphere);
    let cube = scene.add_mesh(cube);
    scene.add_instance(
        cube,
        Affine::translation(Vec3::new(0.0, 0.5, 0.0)),
        Some("cube".into()),
    );
    scene.add_instance(
        sphere,
        Affine::translation(Vec3::new(0.0, 1.5, 0.0)),
        Some("sphere top".into()),
    );
    scene.add_instance(
        sphere,
        Affine::translation(Vec3::new(1.1, 0.3, 0.4)).mul(&Affine::scale(Vec3::splat(0.6))),
        Some("sphere small".into()),
    );
    scene
}

/// The procedural 140-part double-row ball bearing, in metres (outer diameter 100 mm).
///
/// `detail` scales every tessellation resolution: 1.0 gives about 1.5 M rendered triangles,
/// 0.05 a few thousand for fast tests.
pub fn bearing_scene(detail: f32) -> Scene {
    let detail = detail.clamp(0.01, 4.0);
    let seg = |n: f32| ((n * detail).round() as usize).max(6);
    let mut scene = Scene::default();
    let steel = scene.add_material(Material {
        name: Some("ring steel".into()),
        base_color: [0.78, 0.78, 0.8, 1.0],
        metallic: 1.0,
        roughness: 0.28,
        ..Material::default()
    });
    let ball_steel = scene.add_material(Material {
        name: Some("polished ball".into()),
        base_color: [0.9, 0.9, 0.92, 1.0],
        metallic: 1.0,
        roughness: 0.08,
        ..Material::default()
    });
    let brass = scene.add_material(Material {
        name: Some("brass cage".into()),
        base_color: [0.91, 0.72, 0.38, 1.0],
        metallic: 1.0,
        roughness: 0.35,
        ..Material::default()
    });
    let rubber = scene.add_material(Material {
        name: Some("seal rubber".into()),
        base_color: [0.5, 0.04, 0.03, 1.0],
        metallic: 0.0,
        roughness: 0.6,
        ..Material::default()
    });
    let black = scene.add_material(Material {
        name: Some("black oxide".into()),
        base_color: [0.04, 0.04, 0.045, 1.0],
        metallic: 1.0,
        roughness: 0.45,
        ..Material::default()
    });

    let with_material = |mut m: Mesh, mat: u32| {
        m.triangle_materials = vec![mat; m.triangles.len()];
        m
    };

    // Dimensions (metres).
    let outer_r = 0.050;
    let bore_r = 0.020;
    let half_width = 0.018;
    let row_y = 0.0085;
    let ball_r = 0.0058;
    let pitch_r = 0.035;
    let groove_r = ball_r * 1.04;
    let arc = seg(40.0);
    let around = seg(1024.0);

    let outer_profile = ring_profile(
        pitch_r + ball_r * 0.55,
        outer_r,
        -half_width,
        half_width,
        pitch_r,
        &[(-row_y, groove_r), (row_y, groove_r)],
        false,
        arc,
    );
    let outer = revolve("outer ring", &outer_profile, around, &|_| 0.0);
    let outer = scene.add_mesh(with_material(outer, steel));
    let inner_profile = ring_profile(
        bore_r,
        pitch_r - ball_r * 0.55,
        -half_width,
        half_width,
        pitch_r,
        &[(-row_y, groove_r), (row_y, groove_r)],
        true,
        arc,
    );
    let inner = revolve("inner ring", &inner_profile, around, &|_| 0.0);
    let inner = scene.add_mesh(with_material(inner, steel));
    scene.add_instance(outer, Affine::IDENTITY, Some("outer ring".into()));
    scene.add_instance(inner, Affine::IDENTITY, Some("inner ring".into()));

    // Balls: one mesh, 64 placements.
    let ball_rings = seg(64.0);
    let ball = scene.add_mesh(with_material(
        sphere_mesh(ball_r, ball_rings, ball_rings * 2),
        ball_steel,
    ));
    let n_balls = 32;
    for row in 0..2 {
        let y = if row == 0 { -row_y } else { row_y };
        for i in 0..n_balls {
            let a = TAU * (i as f32 + 0.5 * row as f32) / n_balls as f32;
            let p = Vec3::new(pitch_r * a.cos(), y, pitch_r * a.sin());
            scene.add_instance(
                ball,
                Affine::translation(p),
                Some(format!("ball {row}-{i}")),
            );
        }
    }

    // Cage halves: a thin band that waves around the balls. One mesh, four placements
    // (two per row, mirrored).
    let cage_t = 0.0009;
    let cage_h = 0.0028;
    let cage_profile = [
        [pitch_r - cage_t * 0.5, 0.0],
        [pitch_r + cage_t * 0.5, 0.0],
        [pitch_r + cage_t * 0.5, cage_h],
        [pitch_r - cage_t * 0.5, cage_h],
    ];
    let wave =
        move |theta: f32| -> f32 { ball_r * 0.75 * (0.5 + 0.5 * (theta * n_balls as f32).cos()) };
    let cage = revolve("cage half", &cage_profile, seg(4096.0), &wave);
    let cage = scene.add_mesh(with_material(cage, brass));
    for row in 0..2 {
        let y = if row == 0 { -row_y } else { row_y };
        let phase = if row == 0 { 0.0 } else { PI / n_balls as f32 };
        let top = Affine::translation(Vec3::new(0.0, y + ball_r * 0.35, 0.0))
            .mul(&Affine::rotation_y(-phase));
        let bottom = Affine::translation(Vec3::new(0.0, y - ball_r * 0.35, 0.0))
            .mul(&Affine::scale(Vec3::new(1.0, -1.0, 1.0)))
            .mul(&Affine::rotation_y(-phase + PI / n_balls as f32));
        scene.add_instance(cage, top, Some(format!("cage {row} upper")));
        scene.add_instance(cage, bottom, Some(format!("cage {row} lower")));
    }

    // Rivets between balls: a small cylinder with domed heads, 64 placements.
    let rivet_r = 0.0007;
    let rivet_len = ball_r * 1.7 + cage_h * 2.0;
    let rivet_profile = [
        [0.0, -rivet_len * 0.5],
        [rivet_r * 1.6, -rivet_len * 0.5],
        [rivet_r * 1.6, -rivet_len * 0.5 + 0.0006],
        [rivet_r, -rivet_len * 0.5 + 0.0006],
        [rivet_r, rivet_len * 0.5 - 0.0006],
        [rivet_r * 1.6, rivet_len * 0.5 - 0.0006],
        [rivet_r * 1.6, rivet_len * 0.5],
        [0.0, rivet_len * 0.5],
    ];
    let rivet = scene.add_mesh(with_material(
        revolve("rivet", &rivet_profile, seg(48.0), &|_| 0.0),
        black,
    ));
    for row in 0..2 {
        let y = if row == 0 { -row_y } else { row_y };
        for i in 0..n_balls {
            let a = TAU * (i as f32 + 0.5 + 0.5 * row as f32) / n_balls as f32;
            let p = Vec3::new(pitch_r * a.cos(), y, pitch_r * a.sin());
            scene.add_instance(
                rivet,
                Affine::translation(p),
                Some(format!("rivet {row}-{i}")),
            );
        }
    }

    // Seals: a lip profile spanning the gap between rings, on both faces.
    let s0 = pitch_r - ball_r * 0.6;
    let s1 = pitch_r + ball_r * 0.6;
    let mut seal_profile = Vec::new();
    let lip_steps = seg(16.0).max(4);
    seal_profile.push([s0, 0.0]);
    for k in 0..=lip_steps {
        let t = k as f32 / lip_steps as f32;
        let r = s0 + (s1 - s0) * t;
        seal_profile.push([r, 0.0006 * (PI * t).sin()]);
    }
    seal_profile.pop();
    seal_profile.push([s1, 0.0]);
    seal_profile.push([s1, 0.0012]);
    for k in (0..=lip_steps).rev() {
        let t = k as f32 / lip_steps as f32;
        let r = s0 + (s1 - s0) * t;
        seal_profile.push([r, 0.0012 + 0.0008 * (PI * t).sin()]);
    }
    seal_profile.pop();
    seal_profile.push([s0, 0.0012]);
    let seal_poly = make_ccw(seal_profile);
    let seal = scene.add_mesh(with_material(
        revolve("seal", &seal_poly, around, &|_| 0.0),
        rubber,
    ));
    // Both seals sit on the bottom face (a contact seal behind a shield), so the open top
    // face shows balls and cage in product shots.
    let seal_y = half_width - 0.0022;
    scene.add_instance(
        seal,
        Affine::translation(Vec3::new(0.0, -seal_y, 0.0))
            .mul(&Affine::scale(Vec3::new(1.0, -1.0, 1.0))),
        Some("seal outer".into()),
    );
    scene.add_instance(
        seal,
        Affine::translation(Vec3::new(0.0, -seal_y + 0.0025, 0.0))
            .mul(&Affine::scale(Vec3::new(1.0, -1.0, 1.0))),
        Some("seal inner".into()),
    );

    // Snap rings in the outer ring's outer face, and retaining washers on the inner ring.
    let snap_profile: Vec<[f32; 2]> = (0..seg(24.0))
        .map(|k| {
            let a = TAU * k as f32 / seg(24.0) as f32;
            [outer_r + 0.0006 * a.cos(), 0.0006 * a.sin()]
        })
        .collect();
    let snap = scene.add_mesh(with_material(
        revolve("snap ring", &snap_profile, around, &|_| 0.0),
        black,
    ));
    for (i, y) in [-0.012f32, 0.012].iter().enumerate() {
        scene.add_instance(
            snap,
            Affine::translation(Vec3::new(0.0, *y, 0.0)),
            Some(format!("snap ring {i}")),
        );
    }
    let washer_profile = [
        [bore_r - 0.001, 0.0],
        [bore_r + 0.006, 0.0],
        [bore_r + 0.006, 0.0008],
        [bore_r - 0.001, 0.0008],
    ];
    let washer = scene.add_mesh(with_material(
        revolve("washer", &washer_profile, seg(512.0), &|_| 0.0),
        steel,
    ));
    scene.add_instance(
        washer,
        Affine::translation(Vec3::new(0.0, half_width, 0.0)),
        Some("washer top".into()),
    );
    scene.add_instance(
        washer,
        Affine::translation(Vec3::new(0.0, -half_width - 0.0008, 0.0)),
        Some("washer bottom".into()),
    );

    scene
}

/// Reverses a polygon if it is clockwise in the (r, y) plane.
fn make_ccw(mut poly: Vec<[f32; 2]>) -> Vec<[f32; 2]> {
    let area: f32 = (0..poly.len())
        .map(|i| {
            let a = poly[i];
            let b = poly[(i + 1) % poly.len()];
            a[0] * b[1] - b[0] * a[1]
        })
        .sum();
    if area < 0.0 {
        poly.reverse();
    }
    poly
}

/// The bearing as GLB bytes.
pub fn bearing_glb(detail: f32) -> Vec<u8> {
    export_glb(&bearing_scene(detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearing_has_140_parts_and_shares_meshes() {
        let scene = bearing_scene(0.05);
        assert_eq!(scene.instances.len(), 140);
        // Balls share one mesh: 64 instances of the same mesh index.
        let ball_mesh = scene
            .instances
            .iter()
            .find(|i| i.name.as_deref() == Some("ball 0-0"))
            .unwrap()
            .mesh;
        assert_eq!(
            scene
                .instances
                .iter()
                .filter(|i| i.mesh == ball_mesh)
                .count(),
            64
        );
        assert!(scene.meshes.len() <= 10);
    }

    #[test]
    fn full_detail_bearing_exceeds_a_million_triangles() {
        let scene = bearing_scene(1.0);
        let n = scene.instanced_triangle_count();
        assert!(n >= 1_000_000, "only {n} triangles");
    }

    #[test]
    fn winding_agrees_with_vertex_normals() {
        // Renderers such as Cycles shade from the face winding; it must match the normals.
        let scene = bearing_scene(0.1);
        for mesh in &scene.meshes {
            let normals = mesh.normals.as_ref().unwrap();
            let mut agree = 0usize;
            let mut total = 0usize;
            for t in &mesh.triangles {
                let [a, b, c] = t.map(|i| Vec3::from_array(mesh.positions[i as usize]));
                let face = (b - a).cross(c - a);
                if face.length() < 1e-14 {
                    continue;
                }
                let n = Vec3::from_array(normals[t[0] as usize]);
                total += 1;
                if face.dot(n) > 0.0 {
                    agree += 1;
                }
            }
            assert!(
                agree as f64 >= 0.99 * total as f64,
                "{:?}: {agree}/{total} faces agree",
                mesh.name
            );
        }
    }

    #[test]
    fn profiles_are_counter_clockwise_so_normals_point_out() {
        // The outer ring's vertex normals must point away from the ring's material centre.
        let scene = bearing_scene(0.1);
        let outer = &scene.meshes[scene.instances[0].mesh];
        let normals = outer.normals.as_ref().unwrap();
        let mut outward = 0usize;
        for (p, n) in outer.positions.iter().zip(normals) {
            let r = (p[0] * p[0] + p[2] * p[2]).sqrt();
            let radial = [p[0] / r, 0.0, p[2] / r];
            let dot = radial[0] * n[0] + radial[2] * n[2];
            // Outer cylinder face: normals point outward (positive radial component).
            if r > 0.0499 && dot > 0.5 {
                outward += 1;
            }
        }
        assert!(outward > 0, "no outward normals on the outer face");
    }
}
