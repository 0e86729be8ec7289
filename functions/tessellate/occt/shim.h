// The narrow C API between Rust and OpenCASCADE 7.6. Everything OCCT stays behind it; the Rust
// side (src/ffi.rs) copies what it needs out of the views below and frees the model.
#ifndef LIGHTBOX_OCCT_SHIM_H
#define LIGHTBOX_OCCT_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Status codes of every call.
enum lb_status {
  LB_OK = 0,
  LB_NOT_STEP = 1,       // the file is not a readable STEP file (bad header, syntax error, truncated)
  LB_TRANSFER = 2,       // STEP entities could not be turned into shapes
  LB_NO_SOLIDS = 3,      // the file holds no solids or surfaces
  LB_OUT_OF_MEMORY = 4,  // an allocation failed (the memory limit was hit)
  LB_FAILURE = 5,        // any other OCCT failure (message says which)
};

// One distinct part, meshed once. Positions are in metres in the part's own frame.
typedef struct lb_part {
  const char* name;
  const float* positions;  // n_vertices * 3
  const float* normals;    // n_vertices * 3
  uint32_t n_vertices;
  const uint32_t* indices;  // n_indices, counter-clockwise triangles
  uint32_t n_indices;
  float color[4];  // linear RGBA
  int32_t has_color;
  uint32_t n_faces;
  uint32_t n_faces_without_mesh;
  // Colours of styled faces (STEP face, shell or solid colours), linear RGBA, 4 floats each.
  const float* face_colors;
  uint32_t n_face_colors;
  // Per triangle (n_indices / 3): 0 takes the placement's colour, k > 0 face_colors[k - 1].
  const uint32_t* triangle_colors;
} lb_part;

// One placement of a part: a column-major 4x4 transform in metres (model frame, usually Z-up).
// `color` is the colour its faces take unless styled themselves: the instance's colour, else the
// part's, else the one inherited from the assemblies above (OCCT's XCAFPrs order).
typedef struct lb_placement {
  uint32_t part;
  double matrix[16];
  const char* name;
  float color[4];
  int32_t has_color;
} lb_placement;

typedef struct lb_model_view {
  const lb_part* parts;
  size_t n_parts;
  const lb_placement* placements;
  size_t n_placements;
  double metres_per_unit;     // length unit of the file's geometry after reading
  double linear_deflection_m; // the deflection actually used, in metres
  double angular_deflection;  // radians
  double bbox_diagonal_m;
  double read_ms;
  double mesh_ms;
  double extract_ms;
} lb_model_view;

typedef struct lb_model lb_model;

// Reads a STEP file with XCAF and meshes each distinct part once. `linear_deflection_m` > 0 is an
// absolute chordal deflection in metres; otherwise `relative_deflection` times the model's
// bounding-box diagonal is used. On success returns a model (free it with lb_model_free) and fills
// `view`; on failure returns NULL, sets `*status` and writes a message into `err`.
lb_model* lb_read_and_mesh(const char* step_path, double linear_deflection_m,
                           double relative_deflection, double angular_deflection,
                           lb_model_view* view, int32_t* status, char* err, size_t err_len);
void lb_model_free(lb_model* model);

// Sample models generated with OCCT: 0 filleted drilled bracket, 1 revolved flange, 2 lofted
// B-spline duct, 3 a 140-part ball bearing assembly (balls instance one part), 4 a STEP file with
// a curve and no solids, 5 an assembly with colours on faces, solids, parts, instances and a
// sub-assembly (see `styled` in shim.cpp). Writes a STEP (AP214) file.
int32_t lb_write_sample(int32_t kind, const char* step_path, char* err, size_t err_len);

// OCCT's own path for comparison: STEPCAFControl_Reader, BRepMesh, RWGltf_CafWriter (binary).
// timings_ms receives read, mesh, write.
int32_t lb_caf_step_to_glb(const char* step_path, const char* glb_path,
                           double linear_deflection_m, double relative_deflection,
                           double angular_deflection, double* timings_ms, uint64_t* triangles,
                           char* err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
