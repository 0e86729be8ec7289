//! Decoded textures and their lookups (wrap modes, nearest and bilinear filtering).

use crate::material::{Filter, Wrap};

/// How the image a texture was decoded from was encoded. Texels are always linear; writers use
/// this to encode them back the way they came.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ColorSpace {
    /// Colour data (base colour, emissive, specular and sheen colour): sRGB in the file.
    #[default]
    Srgb,
    /// Non-colour data (metallic-roughness, normal, occlusion, transmission): linear in the file.
    Linear,
}

/// A decoded texture in linear RGBA float, row 0 at the top of the image.
#[derive(Clone, Debug, PartialEq)]
pub struct Texture {
    pub width: u32,
    pub height: u32,
    pub texels: Vec<[f32; 4]>,
    pub color_space: ColorSpace,
}

/// The texel index along one axis of `n` texels for integer coordinate `i`.
#[inline]
fn wrap_index(i: i64, n: u32, wrap: Wrap) -> usize {
    let n = n as i64;
    let k = match wrap {
        Wrap::Repeat => i.rem_euclid(n),
        Wrap::Clamp => i.clamp(0, n - 1),
        Wrap::Mirror => {
            let m = i.rem_euclid(2 * n);
            if m >= n {
                2 * n - 1 - m
            } else {
                m
            }
        }
    };
    k as usize
}

impl Texture {
    /// Bilinear lookup with repeat wrapping.
    pub fn sample(&self, uv: [f32; 2]) -> [f32; 4] {
        self.lookup(uv, [Wrap::Repeat; 2], Filter::Linear)
    }

    /// A lookup at `uv` (glTF convention: `(0, 0)` is the top-left corner of the image) with
    /// per-axis wrap modes and a filter. Non-finite coordinates read texel 0; an empty texture
    /// reads white.
    #[inline]
    pub fn lookup(&self, uv: [f32; 2], wrap: [Wrap; 2], filter: Filter) -> [f32; 4] {
        if self.texels.is_empty() || self.width == 0 || self.height == 0 {
            return [1.0; 4];
        }
        let uv = uv.map(|c| if c.is_finite() { c } else { 0.0 });
        let (w, h) = (self.width as f32, self.height as f32);
        let row = self.width as usize;
        match filter {
            Filter::Nearest => {
                let x = wrap_index((uv[0] * w).floor() as i64, self.width, wrap[0]);
                let y = wrap_index((uv[1] * h).floor() as i64, self.height, wrap[1]);
                self.texels[y * row + x]
            }
            Filter::Linear => {
                let x = uv[0] * w - 0.5;
                let y = uv[1] * h - 0.5;
                let (x0, y0) = (x.floor(), y.floor());
                let (fx, fy) = (x - x0, y - y0);
                let (xi, yi) = (x0 as i64, y0 as i64);
                let xa = wrap_index(xi, self.width, wrap[0]);
                let xb = wrap_index(xi.saturating_add(1), self.width, wrap[0]);
                let ya = wrap_index(yi, self.height, wrap[1]) * row;
                let yb = wrap_index(yi.saturating_add(1), self.height, wrap[1]) * row;
                let (a, b, c, d) = (
                    self.texels[ya + xa],
                    self.texels[ya + xb],
                    self.texels[yb + xa],
                    self.texels[yb + xb],
                );
                let mut out = [0.0; 4];
                for i in 0..4 {
                    let top = a[i] + (b[i] - a[i]) * fx;
                    let bottom = c[i] + (d[i] - c[i]) * fx;
                    out[i] = top + (bottom - top) * fy;
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4x1 ramp: texel i has value i.
    fn ramp() -> Texture {
        Texture {
            width: 4,
            height: 1,
            texels: (0..4).map(|i| [i as f32; 4]).collect(),
            color_space: ColorSpace::Linear,
        }
    }

    #[test]
    fn wrap_modes_differ_outside_the_unit_square() {
        let t = ramp();
        let at = |u: f32, wrap: Wrap| t.lookup([u, 0.5], [wrap; 2], Filter::Nearest)[0];
        // u = 1.1 is texel 4.4 -> 4.
        assert_eq!(at(1.1, Wrap::Repeat), 0.0);
        assert_eq!(at(1.1, Wrap::Clamp), 3.0);
        assert_eq!(at(1.1, Wrap::Mirror), 3.0);
        // u = 1.6 is texel 6.4 -> 6.
        assert_eq!(at(1.6, Wrap::Repeat), 2.0);
        assert_eq!(at(1.6, Wrap::Clamp), 3.0);
        assert_eq!(at(1.6, Wrap::Mirror), 1.0);
        assert_eq!(at(-0.1, Wrap::Repeat), 3.0);
        assert_eq!(at(-0.1, Wrap::Clamp), 0.0);
        assert_eq!(at(-0.1, Wrap::Mirror), 0.0);
    }

    #[test]
    fn nearest_does_not_blend_and_linear_does() {
        let t = ramp();
        // Halfway between texel centres 1 and 2.
        let u = 2.0 / 4.0;
        assert_eq!(
            t.lookup([u, 0.5], [Wrap::Clamp; 2], Filter::Nearest)[0],
            2.0
        );
        assert!((t.lookup([u, 0.5], [Wrap::Clamp; 2], Filter::Linear)[0] - 1.5).abs() < 1e-6);
    }

    #[test]
    fn hostile_coordinates_do_not_panic() {
        let t = ramp();
        for u in [f32::NAN, f32::INFINITY, -f32::INFINITY, 1e30, -1e30] {
            for wrap in [Wrap::Repeat, Wrap::Clamp, Wrap::Mirror] {
                for filter in [Filter::Linear, Filter::Nearest] {
                    let v = t.lookup([u, u], [wrap; 2], filter);
                    assert!(v[0].is_finite());
                }
            }
        }
    }
}
