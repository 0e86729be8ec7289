//! Per-vertex tangent frames for normal mapping, generated from UVs when a file has none.
//!
//! This is not MikkTSpace itself but its simple core: each triangle's tangent and bitangent
//! follow from its UV derivatives, are accumulated (weighted by the triangle's area, which the
//! unnormalised cross products carry) onto its vertices, orthogonalised against the vertex
//! normal (Gram-Schmidt), and the handedness (`w = ±1`) records whether the bitangent is
//! `cross(n, t)` or its opposite. Following glTF, the tangent points along increasing u and the
//! bitangent `cross(n, t) * w` along decreasing v (glTF's v points down the image, a normal
//! map's green points up it). MikkTSpace additionally splits vertices where the frames of
//! adjacent triangles disagree and weights by corner angle; on meshes whose UV seams already
//! split vertices (what exporters write) the results agree closely, and normal maps baked with
//! MikkTSpace look right.

use crate::math::Vec3;

/// Tangents (`[x, y, z, w]`, unit xyz, `w` the bitangent sign) for every vertex. `normals`
/// default to the area-weighted face normals when absent. Vertices without usable UVs get an
/// arbitrary tangent perpendicular to their normal.
pub fn generate_tangents(
    positions: &[[f32; 3]],
    normals: Option<&[[f32; 3]]>,
    uvs: &[[f32; 2]],
    triangles: &[[u32; 3]],
) -> Vec<[f32; 4]> {
    let n = positions.len();
    let mut tan = vec![Vec3::ZERO; n];
    let mut bit = vec![Vec3::ZERO; n];
    let mut face_normals = if normals.is_none() {
        vec![Vec3::ZERO; n]
    } else {
        Vec::new()
    };
    for tri in triangles {
        let [ia, ib, ic] = tri.map(|i| i as usize);
        if ia >= n || ib >= n || ic >= n || ia >= uvs.len() || ib >= uvs.len() || ic >= uvs.len() {
            continue;
        }
        let [a, b, c] = [ia, ib, ic].map(|i| Vec3::from_array(positions[i]));
        let (e1, e2) = (b - a, c - a);
        if normals.is_none() {
            let fnrm = e1.cross(e2);
            for i in [ia, ib, ic] {
                face_normals[i] += fnrm;
            }
        }
        let (ua, ub, uc) = (uvs[ia], uvs[ib], uvs[ic]);
        let (du1, dv1) = (ub[0] - ua[0], ub[1] - ua[1]);
        let (du2, dv2) = (uc[0] - ua[0], uc[1] - ua[1]);
        let det = du1 * dv2 - du2 * dv1;
        if det.abs() < 1e-20 || !det.is_finite() {
            continue;
        }
        // Weight by area in position space: scaling by |det| undoes the 1/det of the UV
        // inversion, so each triangle contributes (area-weighted) directions.
        let sign = det.signum();
        let t = (e1 * dv2 - e2 * dv1) * sign;
        // Towards decreasing v: up the image, where a normal map's green points.
        let bt = (e1 * du2 - e2 * du1) * sign;
        for i in [ia, ib, ic] {
            tan[i] += t;
            bit[i] += bt;
        }
    }
    (0..n)
        .map(|i| {
            let nrm = match normals {
                Some(ns) => Vec3::from_array(ns[i]),
                None => face_normals[i],
            }
            .normalized();
            let nrm = if nrm == Vec3::ZERO {
                Vec3::new(0.0, 0.0, 1.0)
            } else {
                nrm
            };
            let t = (tan[i] - nrm * nrm.dot(tan[i])).normalized();
            if t == Vec3::ZERO || !t.is_finite() {
                let (t, _) = nrm.orthonormal_basis();
                return [t.x, t.y, t.z, 1.0];
            }
            let w = if nrm.cross(t).dot(bit[i]) < 0.0 {
                -1.0
            } else {
                1.0
            };
            [t.x, t.y, t.z, w]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planar_quad_gets_the_u_direction_and_the_v_handedness() {
        // A quad in the XY plane facing +Z; u along +X, v along -Y (glTF's v points down the
        // image, so an upright image has v decreasing upwards).
        let positions = [
            [0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0],
            [1.0, 1.0, 0.0],
            [0.0, 1.0, 0.0],
        ];
        let normals = [[0.0, 0.0, 1.0]; 4];
        let uvs = [[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]];
        let triangles = [[0, 1, 2], [0, 2, 3]];
        let t = generate_tangents(&positions, Some(&normals), &uvs, &triangles);
        for v in &t {
            assert!((v[0] - 1.0).abs() < 1e-5 && v[1].abs() < 1e-5 && v[2].abs() < 1e-5);
            // Up the image (decreasing v) is +Y, and so is cross(n, t): handedness +1.
            assert_eq!(v[3], 1.0);
        }
        // Mirrored UVs flip the tangent and the handedness, not the bitangent.
        let mirrored: Vec<[f32; 2]> = uvs.iter().map(|uv| [1.0 - uv[0], uv[1]]).collect();
        let t = generate_tangents(&positions, Some(&normals), &mirrored, &triangles);
        assert!((t[0][0] + 1.0).abs() < 1e-5, "{:?}", t[0]);
        assert_eq!(t[0][3], -1.0);
    }

    #[test]
    fn degenerate_uvs_still_give_a_perpendicular_unit_tangent() {
        let positions = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        let uvs = [[0.5, 0.5]; 3];
        let t = generate_tangents(&positions, None, &uvs, &[[0, 1, 2]]);
        for v in &t {
            let tv = Vec3::new(v[0], v[1], v[2]);
            assert!((tv.length() - 1.0).abs() < 1e-5);
            assert!(tv.dot(Vec3::new(0.0, 0.0, 1.0)).abs() < 1e-5);
        }
    }
}
