// See shim.h. Draco owns the parsing of untrusted streams; this file only copies its output.
#include "shim.h"

#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>

#include <draco/compression/decode.h>
#include <draco/mesh/mesh.h>
#include <draco/point_cloud/point_cloud.h>

struct LbDracoGeometry {
  std::unique_ptr<draco::PointCloud> cloud;
  draco::Mesh* mesh = nullptr;  // cloud.get() when it is a mesh
};

static void write_error(char* err, size_t err_len, const char* message) {
  if (err != nullptr && err_len > 0) {
    std::snprintf(err, err_len, "%s", message);
  }
}

extern "C" int lb_draco_decode(const uint8_t* data, size_t len, int want_mesh,
                               LbDracoGeometry** out, char* err, size_t err_len) {
  try {
    draco::DecoderBuffer buffer;
    buffer.Init(reinterpret_cast<const char*>(data), len);
    draco::Decoder decoder;
    auto geometry = std::make_unique<LbDracoGeometry>();
    if (want_mesh) {
      auto decoded = decoder.DecodeMeshFromBuffer(&buffer);
      if (!decoded.ok()) {
        write_error(err, err_len, decoded.status().error_msg());
        return -1;
      }
      std::unique_ptr<draco::Mesh> mesh = std::move(decoded).value();
      geometry->mesh = mesh.get();
      geometry->cloud = std::move(mesh);
    } else {
      auto decoded = decoder.DecodePointCloudFromBuffer(&buffer);
      if (!decoded.ok()) {
        write_error(err, err_len, decoded.status().error_msg());
        return -1;
      }
      geometry->cloud = std::move(decoded).value();
    }
    *out = geometry.release();
    return 0;
  } catch (const std::exception& e) {
    write_error(err, err_len, e.what());
    return -1;
  } catch (...) {
    write_error(err, err_len, "the Draco decoder failed");
    return -1;
  }
}

extern "C" uint32_t lb_draco_num_points(const LbDracoGeometry* geometry) {
  return geometry->cloud->num_points();
}

extern "C" uint32_t lb_draco_num_faces(const LbDracoGeometry* geometry) {
  return geometry->mesh != nullptr ? geometry->mesh->num_faces() : 0;
}

extern "C" int lb_draco_indices(const LbDracoGeometry* geometry, uint32_t* out, size_t len) {
  const draco::Mesh* mesh = geometry->mesh;
  if (mesh == nullptr || len != static_cast<size_t>(mesh->num_faces()) * 3) {
    return -1;
  }
  for (draco::FaceIndex f(0); f < mesh->num_faces(); ++f) {
    const draco::Mesh::Face& face = mesh->face(f);
    for (int c = 0; c < 3; ++c) {
      out[f.value() * 3 + c] = face[c].value();
    }
  }
  return 0;
}

static const draco::PointAttribute* find_attribute(const LbDracoGeometry* geometry,
                                                   uint32_t unique_id) {
  return geometry->cloud->GetAttributeByUniqueId(unique_id);
}

extern "C" int lb_draco_attribute_components(const LbDracoGeometry* geometry,
                                             uint32_t unique_id) {
  const draco::PointAttribute* attribute = find_attribute(geometry, unique_id);
  return attribute != nullptr ? attribute->num_components() : -1;
}

extern "C" int lb_draco_attribute_floats(const LbDracoGeometry* geometry, uint32_t unique_id,
                                         float* out, size_t len) {
  try {
    const draco::PointAttribute* attribute = find_attribute(geometry, unique_id);
    if (attribute == nullptr) {
      return -1;
    }
    const int components = attribute->num_components();
    const uint32_t points = geometry->cloud->num_points();
    if (components <= 0 || len != static_cast<size_t>(points) * components) {
      return -1;
    }
    for (draco::PointIndex p(0); p < points; ++p) {
      const draco::AttributeValueIndex value = attribute->mapped_index(p);
      if (value.value() >= attribute->size() ||
          !attribute->ConvertValue<float>(value, components, out + p.value() * components)) {
        return -2;
      }
    }
    return 0;
  } catch (...) {
    return -2;
  }
}

extern "C" void lb_draco_free(LbDracoGeometry* geometry) { delete geometry; }
