// A small C API over Google's Draco decoder (Debian libdraco-dev), for KHR_draco_mesh_compression.
// Every function catches C++ exceptions and reports failure through its return value.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct LbDracoGeometry LbDracoGeometry;

// Decodes a Draco stream. `want_mesh` asks for a triangle mesh (else a point cloud). On success
// returns 0 and sets *out; on failure returns -1 and writes a message into err (NUL-terminated).
int lb_draco_decode(const uint8_t* data, size_t len, int want_mesh, LbDracoGeometry** out,
                    char* err, size_t err_len);

// Points (vertices) and triangles of the decoded geometry (0 triangles for a point cloud).
uint32_t lb_draco_num_points(const LbDracoGeometry* geometry);
uint32_t lb_draco_num_faces(const LbDracoGeometry* geometry);

// Writes the 3 * num_faces point indices of the triangles. Returns 0, or -1 when `len` differs.
int lb_draco_indices(const LbDracoGeometry* geometry, uint32_t* out, size_t len);

// Components of the attribute with Draco unique id `unique_id`, or -1 when there is none.
int lb_draco_attribute_components(const LbDracoGeometry* geometry, uint32_t unique_id);

// Writes num_points * components floats of the attribute (dequantized, normalized integers
// mapped to [0, 1] or [-1, 1]). Returns 0, -1 for no such attribute or a wrong `len`, -2 when a
// value cannot be converted.
int lb_draco_attribute_floats(const LbDracoGeometry* geometry, uint32_t unique_id, float* out,
                              size_t len);

void lb_draco_free(LbDracoGeometry* geometry);

#ifdef __cplusplus
}
#endif
