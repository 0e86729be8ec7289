//! Decoding of `EXT_meshopt_compression` (and its successor `KHR_meshopt_compression`) buffer
//! views with meshoptimizer, through the `meshopt` crate's bindings (meshoptimizer 1.x, vendored
//! and built by the crate). The decoders are documented as safe for untrusted input; this
//! module checks every size it passes them, and is one of the two modules here with `unsafe`.

#![allow(unsafe_code)]

use std::ffi::c_void;

/// How a compressed view was encoded (the extension's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Attributes,
    Triangles,
    Indices,
}

/// The post-decoding filter (the extension's `filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    None,
    Octahedral,
    Quaternion,
    Exponential,
    Color,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "ATTRIBUTES" => Some(Mode::Attributes),
            "TRIANGLES" => Some(Mode::Triangles),
            "INDICES" => Some(Mode::Indices),
            _ => None,
        }
    }
}

impl Filter {
    pub fn parse(text: &str) -> Option<Filter> {
        match text {
            "NONE" => Some(Filter::None),
            "OCTAHEDRAL" => Some(Filter::Octahedral),
            "QUATERNION" => Some(Filter::Quaternion),
            "EXPONENTIAL" => Some(Filter::Exponential),
            "COLOR" => Some(Filter::Color),
            _ => None,
        }
    }
}

/// Decodes `count` elements of `stride` bytes from `encoded`. Returns the decoded bytes
/// (`count * stride`), or why the stream or its parameters are invalid.
pub fn decode(
    encoded: &[u8],
    count: usize,
    stride: usize,
    mode: Mode,
    filter: Filter,
) -> Result<Vec<u8>, String> {
    let len = count
        .checked_mul(stride)
        .ok_or("count times byteStride overflows")?;
    match mode {
        Mode::Attributes => {
            if stride == 0 || !stride.is_multiple_of(4) || stride > 256 {
                return Err(format!(
                    "byteStride {stride} of an ATTRIBUTES view must be a multiple of 4 up to 256"
                ));
            }
        }
        Mode::Triangles | Mode::Indices => {
            if stride != 2 && stride != 4 {
                return Err(format!(
                    "byteStride {stride} of an index view must be 2 or 4"
                ));
            }
            if mode == Mode::Triangles && !count.is_multiple_of(3) {
                return Err(format!(
                    "a TRIANGLES view holds whole triangles, not {count} indices"
                ));
            }
            if filter != Filter::None {
                return Err("filters apply only to ATTRIBUTES views".into());
            }
        }
    }
    match filter {
        Filter::None => {}
        Filter::Octahedral | Filter::Color if stride != 4 && stride != 8 => {
            return Err(format!(
                "the {filter:?} filter needs byteStride 4 or 8, not {stride}"
            ));
        }
        Filter::Quaternion if stride != 8 => {
            return Err(format!(
                "the QUATERNION filter needs byteStride 8, not {stride}"
            ));
        }
        _ => {}
    }
    // Decoded into 32-bit words so the filters, which write whole components, see aligned data.
    let mut words = vec![0u32; len.div_ceil(4)];
    let destination = words.as_mut_ptr().cast::<c_void>();
    // SAFETY: `destination` holds at least `count * stride` bytes; the decoders read only
    // `encoded.len()` bytes of `encoded` and report malformed input through their result.
    let rc = unsafe {
        match mode {
            Mode::Attributes => ::meshopt::ffi::meshopt_decodeVertexBuffer(
                destination,
                count,
                stride,
                encoded.as_ptr(),
                encoded.len(),
            ),
            Mode::Triangles => ::meshopt::ffi::meshopt_decodeIndexBuffer(
                destination,
                count,
                stride,
                encoded.as_ptr(),
                encoded.len(),
            ),
            Mode::Indices => ::meshopt::ffi::meshopt_decodeIndexSequence(
                destination,
                count,
                stride,
                encoded.as_ptr(),
                encoded.len(),
            ),
        }
    };
    if rc != 0 {
        return Err(format!("the meshopt stream does not decode (error {rc})"));
    }
    // SAFETY: the filters rewrite `count` elements of `stride` bytes in place, within the
    // buffer decoded above; the strides were checked against what each filter accepts.
    unsafe {
        match filter {
            Filter::None => {}
            Filter::Octahedral => {
                ::meshopt::ffi::meshopt_decodeFilterOct(destination, count, stride)
            }
            Filter::Quaternion => {
                ::meshopt::ffi::meshopt_decodeFilterQuat(destination, count, stride)
            }
            Filter::Exponential => {
                ::meshopt::ffi::meshopt_decodeFilterExp(destination, count, stride)
            }
            Filter::Color => ::meshopt::ffi::meshopt_decodeFilterColor(destination, count, stride),
        }
    }
    let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    bytes.truncate(len);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vertex_and_index_streams_round_trip_and_garbage_fails() {
        let vertices: Vec<[u16; 4]> = (0..100u16).map(|i| [i, i * 2, i * 3, 7]).collect();
        let encoded = ::meshopt::encode_vertex_buffer(&vertices).unwrap();
        let decoded = decode(&encoded, 100, 8, Mode::Attributes, Filter::None).unwrap();
        let expected: Vec<u8> = vertices
            .iter()
            .flat_map(|v| v.iter().flat_map(|c| c.to_le_bytes()))
            .collect();
        assert_eq!(decoded, expected);

        let indices: Vec<u32> = (0..30).map(|i| (i * 7) % 10).collect();
        let encoded = ::meshopt::encode_index_buffer(&indices, 10).unwrap();
        let decoded = decode(&encoded, 30, 4, Mode::Triangles, Filter::None).unwrap();
        let got: Vec<u32> = decoded
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(got, indices);

        assert!(decode(&[0xa0, 1, 2, 3], 100, 8, Mode::Attributes, Filter::None).is_err());
        assert!(decode(&encoded, 30, 3, Mode::Triangles, Filter::None).is_err());
        assert!(decode(&encoded, 30, 6, Mode::Attributes, Filter::None).is_err());
        assert!(decode(&encoded, 30, 4, Mode::Attributes, Filter::Quaternion).is_err());
    }
}
