// OpenCASCADE side of the tessellator: STEP in through XCAF, each distinct part meshed once, flat
// arrays out. Every entry point catches C++ and OCCT exceptions and turns them into a status plus
// a message, so nothing unwinds into Rust.
#include "shim.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include <BRepAdaptor_Curve.hxx>
#include <BRepAdaptor_Surface.hxx>
#include <BRepAlgoAPI_Cut.hxx>
#include <BRepAlgoAPI_Fuse.hxx>
#include <BRepBndLib.hxx>
#include <BRepBuilderAPI_MakeEdge.hxx>
#include <BRepBuilderAPI_MakeFace.hxx>
#include <BRepBuilderAPI_MakePolygon.hxx>
#include <BRepBuilderAPI_MakeWire.hxx>
#include <BRepFilletAPI_MakeFillet.hxx>
#include <BRepMesh_IncrementalMesh.hxx>
#include <BRepOffsetAPI_ThruSections.hxx>
#include <BRepPrimAPI_MakeBox.hxx>
#include <BRepPrimAPI_MakeCylinder.hxx>
#include <BRepPrimAPI_MakeRevol.hxx>
#include <BRepPrimAPI_MakeSphere.hxx>
#include <BRepPrimAPI_MakeTorus.hxx>
#include <BRep_Builder.hxx>
#include <BRep_Tool.hxx>
#include <Bnd_Box.hxx>
#include <GC_MakeEllipse.hxx>
#include <IFSelect_ReturnStatus.hxx>
#include <IMeshTools_Parameters.hxx>
#include <Interface_InterfaceModel.hxx>
#include <Interface_Static.hxx>
#include <Message.hxx>
#include <Message_Messenger.hxx>
#include <Message_Printer.hxx>
#include <Message_PrinterOStream.hxx>
#include <Message_ProgressRange.hxx>
#include <Poly_Triangulation.hxx>
#include <Quantity_ColorRGBA.hxx>
#include <RWGltf_CafWriter.hxx>
#include <RWMesh_CoordinateSystem.hxx>
#include <STEPCAFControl_Reader.hxx>
#include <STEPCAFControl_Writer.hxx>
#include <STEPControl_Reader.hxx>
#include <STEPControl_Writer.hxx>
#include <ShapeUpgrade_UnifySameDomain.hxx>
#include <Standard_Failure.hxx>
#include <TColStd_IndexedDataMapOfStringString.hxx>
#include <TCollection_AsciiString.hxx>
#include <TCollection_HAsciiString.hxx>
#include <TDF_Label.hxx>
#include <TDF_LabelSequence.hxx>
#include <TDF_Tool.hxx>
#include <TDataStd_Name.hxx>
#include <TDocStd_Document.hxx>
#include <TopExp_Explorer.hxx>
#include <TopLoc_Location.hxx>
#include <TopTools_DataMapOfShapeInteger.hxx>
#include <TopTools_ListOfShape.hxx>
#include <TopoDS.hxx>
#include <TopoDS_Compound.hxx>
#include <TopoDS_Edge.hxx>
#include <TopoDS_Face.hxx>
#include <TopoDS_Shape.hxx>
#include <TopoDS_Wire.hxx>
#include <UnitsMethods.hxx>
#include <XCAFApp_Application.hxx>
#include <XCAFDoc_ColorTool.hxx>
#include <XCAFDoc_DocumentTool.hxx>
#include <XCAFDoc_ShapeTool.hxx>
#include <gp_Ax2.hxx>
#include <gp_Circ.hxx>
#include <gp_Elips.hxx>
#include <gp_Trsf.hxx>

namespace {

// OCCT's global state (the default messenger, Interface_Static parameters, the XCAF
// application) is not safe to use from several threads: in-process callers are serialised.
std::mutex g_occt_mutex;

// Collects OCCT's warnings and failures so errors can quote the parser.
class Collector : public Message_Printer {
 public:
  mutable std::vector<std::string> lines;

 protected:
  void send(const TCollection_AsciiString& text, const Message_Gravity gravity) const override {
    if (gravity >= Message_Fail && lines.size() < 64) {
      lines.emplace_back(text.ToCString());
    }
  }
};

Handle(Collector) collector() {
  static Handle(Collector) instance;
  if (instance.IsNull()) {
    instance = new Collector();
    const Handle(Message_Messenger)& messenger = Message::DefaultMessenger();
    // OCCT prints to stdout by default; keep stdout clean and collect what matters.
    messenger->RemovePrinters(STANDARD_TYPE(Message_PrinterOStream));
    messenger->AddPrinter(instance);
  }
  return instance;
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

void set_err(char* err, size_t err_len, const std::string& message) {
  if (err == nullptr || err_len == 0) return;
  size_t n = std::min(message.size(), err_len - 1);
  std::memcpy(err, message.data(), n);
  err[n] = 0;
}

std::string collected_messages() {
  Handle(Collector) c = collector();
  std::string out;
  size_t shown = 0;
  for (const std::string& line : c->lines) {
    if (line.empty()) continue;
    if (shown == 3) {
      out += "; ...";
      break;
    }
    out += (shown == 0 ? "" : "; ");
    std::string trimmed = line;
    trimmed.erase(std::remove(trimmed.begin(), trimmed.end(), '\n'), trimmed.end());
    out += trimmed;
    ++shown;
  }
  return out;
}

struct PartData {
  TopoDS_Shape shape;
  std::string name;
  float color[4] = {0.8f, 0.8f, 0.8f, 1.0f};
  bool has_color = false;
  // Distinct colours of styled faces (4 floats each) and, per face of `shape` in TopExp_Explorer
  // order, 0 (the placement's colour) or 1 + an index into them.
  std::vector<float> face_colors;
  std::vector<uint32_t> face_styles;
  std::vector<float> positions;
  std::vector<float> normals;
  std::vector<uint32_t> indices;
  // Per triangle: the style of the face it came from (see face_styles).
  std::vector<uint32_t> triangle_styles;
  uint32_t n_faces = 0;
  uint32_t n_faces_without_mesh = 0;
};

struct PlacementData {
  uint32_t part;
  gp_Trsf trsf;
  std::string name;
  float color[4] = {0, 0, 0, 1};
  bool has_color = false;
};

std::string label_name(const TDF_Label& label) {
  Handle(TDataStd_Name) name;
  if (!label.IsNull() && label.FindAttribute(TDataStd_Name::GetID(), name)) {
    TCollection_AsciiString text(name->Get());
    return text.ToCString();
  }
  return std::string();
}

bool label_color(const Handle(XCAFDoc_ColorTool)& tool, const TDF_Label& label, float out[4]) {
  Quantity_ColorRGBA color;
  if (tool->GetColor(label, XCAFDoc_ColorSurf, color) || tool->GetColor(label, XCAFDoc_ColorGen, color)) {
    const Quantity_Color& rgb = color.GetRGB();
    out[0] = float(rgb.Red());
    out[1] = float(rgb.Green());
    out[2] = float(rgb.Blue());
    out[3] = color.Alpha();
    return true;
  }
  return false;
}

bool shape_color(const Handle(XCAFDoc_ColorTool)& tool, const TopoDS_Shape& shape, float out[4]) {
  Quantity_ColorRGBA color;
  if (tool->GetColor(shape, XCAFDoc_ColorSurf, color) || tool->GetColor(shape, XCAFDoc_ColorGen, color)) {
    const Quantity_Color& rgb = color.GetRGB();
    out[0] = float(rgb.Red());
    out[1] = float(rgb.Green());
    out[2] = float(rgb.Blue());
    out[3] = color.Alpha();
    return true;
  }
  return false;
}

// How specific a styled sub-shape is: a face's own colour beats its shell's, which beats its
// solid's, which beats a compound's (the part's own colour comes last, as the placement colour).
int specificity(TopAbs_ShapeEnum type) {
  switch (type) {
    case TopAbs_FACE: return 4;
    case TopAbs_SHELL: return 3;
    case TopAbs_SOLID: return 2;
    case TopAbs_COMPSOLID: return 1;
    default: return 0;
  }
}

// Fills part.face_colors and part.face_styles from the colours XCAF keeps on the sub-shape
// labels of a part (STEP styled items on faces, shells, solids): each face of `located` (the
// label's shape, with its own location, as sub-shapes were recorded) takes the colour of the most
// specific styled sub-shape holding it, or none.
void assign_face_colors(const Handle(XCAFDoc_ColorTool)& colors, const TDF_Label& label,
                        const TopoDS_Shape& located, PartData& part) {
  TDF_LabelSequence subs;
  XCAFDoc_ShapeTool::GetSubShapes(label, subs);
  std::vector<std::array<float, 4>> sub_colors;
  struct Style {
    int specificity;
    uint32_t color;
  };
  std::vector<Style> styles;
  TopTools_DataMapOfShapeInteger same;              // face (same TShape and location) -> style
  std::map<const TopoDS_TShape*, size_t> partner;   // face (same TShape) -> style
  for (Standard_Integer i = 1; i <= subs.Length(); ++i) {
    std::array<float, 4> color;
    if (!label_color(colors, subs.Value(i), color.data())) continue;
    TopoDS_Shape sub = XCAFDoc_ShapeTool::GetShape(subs.Value(i));
    if (sub.IsNull()) continue;
    const int rank = specificity(sub.ShapeType());
    const uint32_t color_index = uint32_t(sub_colors.size());
    sub_colors.push_back(color);
    for (TopExp_Explorer faces(sub, TopAbs_FACE); faces.More(); faces.Next()) {
      const TopoDS_Shape& face = faces.Current();
      // Equal specificity: the later label wins, as in OCCT's own presentation (XCAFPrs).
      if (const Standard_Integer* found = same.Seek(face)) {
        if (styles[size_t(*found)].specificity > rank) continue;
      }
      styles.push_back(Style{rank, color_index});
      const size_t style = styles.size() - 1;
      same.Bind(face, Standard_Integer(style));
      auto known = partner.find(face.TShape().get());
      if (known == partner.end() || styles[known->second].specificity <= rank) {
        partner[face.TShape().get()] = style;
      }
    }
  }
  std::vector<int64_t> palette_of(sub_colors.size(), -1);
  for (TopExp_Explorer faces(located, TopAbs_FACE); faces.More(); faces.Next()) {
    const TopoDS_Shape& face = faces.Current();
    int64_t style = -1;
    if (const Standard_Integer* found = same.Seek(face)) {
      style = *found;
    } else {
      auto known = partner.find(face.TShape().get());
      if (known != partner.end()) style = int64_t(known->second);
    }
    if (style < 0) {
      part.face_styles.push_back(0);
      continue;
    }
    const uint32_t color_index = styles[size_t(style)].color;
    if (palette_of[color_index] < 0) {
      // Faces of one colour share a palette entry, whichever sub-shape they took it from.
      const std::array<float, 4>& c = sub_colors[color_index];
      int64_t entry = -1;
      for (size_t k = 0; k * 4 < part.face_colors.size(); ++k) {
        if (std::equal(c.begin(), c.end(), part.face_colors.begin() + k * 4)) entry = int64_t(k);
      }
      if (entry < 0) {
        entry = int64_t(part.face_colors.size() / 4);
        part.face_colors.insert(part.face_colors.end(), c.begin(), c.end());
      }
      palette_of[color_index] = entry;
    }
    part.face_styles.push_back(uint32_t(palette_of[color_index] + 1));
  }
}

struct Reader {
  Handle(XCAFDoc_ShapeTool) shapes;
  Handle(XCAFDoc_ColorTool) colors;
  std::map<std::string, uint32_t> part_by_entry;
  std::vector<PartData> parts;
  std::vector<PlacementData> placements;

  // The part for a label, read once: `shape` without its own location (placements carry it),
  // `located` with it.
  uint32_t part_for(const TDF_Label& label, const TopoDS_Shape& shape, const TopoDS_Shape& located) {
    TCollection_AsciiString entry;
    TDF_Tool::Entry(label, entry);
    auto found = part_by_entry.find(entry.ToCString());
    if (found != part_by_entry.end()) return found->second;
    PartData part;
    part.shape = shape;
    part.name = label_name(label);
    part.has_color = label_color(colors, label, part.color) || shape_color(colors, located, part.color);
    assign_face_colors(colors, label, located, part);
    uint32_t index = uint32_t(parts.size());
    parts.push_back(std::move(part));
    part_by_entry.emplace(entry.ToCString(), index);
    return index;
  }

  // Walks the assembly tree. `inherited` is the colour the parent gives this node; as in OCCT's
  // presentation (XCAFPrs_DocumentExplorer) a node's own colour (the referred shape's) overrides
  // it, and a colour set on the instance (the component label) overrides that. Face and solid
  // colours inside a part override the result (assign_face_colors).
  void visit(const TDF_Label& label, const TopLoc_Location& location, const std::string& instance_name,
             const float* inherited_color) {
    if (XCAFDoc_ShapeTool::IsAssembly(label)) {
      TDF_LabelSequence components;
      XCAFDoc_ShapeTool::GetComponents(label, components, Standard_False);
      for (Standard_Integer i = 1; i <= components.Length(); ++i) {
        const TDF_Label& component = components.Value(i);
        TDF_Label referred;
        if (!XCAFDoc_ShapeTool::GetReferredShape(component, referred)) continue;
        float own[4], instance[4];
        const float* child_color = inherited_color;
        if (label_color(colors, referred, own)) child_color = own;
        if (label_color(colors, component, instance)) child_color = instance;
        std::string name = label_name(component);
        visit(referred, location * XCAFDoc_ShapeTool::GetLocation(component), name, child_color);
      }
      return;
    }
    if (XCAFDoc_ShapeTool::IsReference(label)) {
      TDF_Label referred;
      if (XCAFDoc_ShapeTool::GetReferredShape(label, referred)) {
        // A reference is an instance: its own colour beats the referred shape's.
        float own[4], instance[4];
        const float* color = inherited_color;
        if (label_color(colors, referred, own)) color = own;
        if (label_color(colors, label, instance)) color = instance;
        visit(referred, location * XCAFDoc_ShapeTool::GetLocation(label), instance_name, color);
      }
      return;
    }
    TopoDS_Shape shape = XCAFDoc_ShapeTool::GetShape(label);
    if (shape.IsNull()) return;
    TopExp_Explorer faces(shape, TopAbs_FACE);
    if (!faces.More()) return;  // curves, points: nothing to mesh
    const TopoDS_Shape located = shape;
    TopLoc_Location own = shape.Location();
    shape.Location(TopLoc_Location());
    PlacementData placement;
    placement.part = part_for(label, shape, located);
    placement.trsf = (location * own).Transformation();
    placement.name = instance_name.empty() ? parts[placement.part].name : instance_name;
    if (inherited_color != nullptr) {
      std::copy(inherited_color, inherited_color + 4, placement.color);
      placement.has_color = true;
    }
    placements.push_back(std::move(placement));
  }
};

// Appends one face's triangulation (in the part frame, scaled to metres) to a part.
void extract_face(const TopoDS_Face& face, double scale, uint32_t style, PartData& part) {
  ++part.n_faces;
  TopLoc_Location location;
  const Handle(Poly_Triangulation)& tri = BRep_Tool::Triangulation(face, location);
  if (tri.IsNull() || tri->NbTriangles() == 0) {
    ++part.n_faces_without_mesh;
    return;
  }
  const bool reversed = face.Orientation() == TopAbs_REVERSED;
  const gp_Trsf trsf = location.Transformation();
  const bool has_location = !location.IsIdentity();
  const uint32_t base = uint32_t(part.positions.size() / 3);
  const Standard_Integer n_nodes = tri->NbNodes();
  std::vector<gp_Pnt> nodes(n_nodes);
  for (Standard_Integer i = 1; i <= n_nodes; ++i) {
    gp_Pnt p = tri->Node(i);
    if (has_location) p.Transform(trsf);
    nodes[i - 1] = p;
    part.positions.push_back(float(p.X() * scale));
    part.positions.push_back(float(p.Y() * scale));
    part.positions.push_back(float(p.Z() * scale));
  }
  // Fallback normals: area-weighted triangle normals, used where the surface normal is undefined.
  std::vector<gp_XYZ> accumulated(n_nodes, gp_XYZ(0, 0, 0));
  const Standard_Integer n_triangles = tri->NbTriangles();
  for (Standard_Integer t = 1; t <= n_triangles; ++t) {
    Standard_Integer a, b, c;
    tri->Triangle(t).Get(a, b, c);
    if (reversed) std::swap(b, c);
    gp_XYZ n = (nodes[b - 1].XYZ() - nodes[a - 1].XYZ()).Crossed(nodes[c - 1].XYZ() - nodes[a - 1].XYZ());
    accumulated[a - 1] += n;
    accumulated[b - 1] += n;
    accumulated[c - 1] += n;
    part.indices.push_back(base + uint32_t(a - 1));
    part.indices.push_back(base + uint32_t(b - 1));
    part.indices.push_back(base + uint32_t(c - 1));
    part.triangle_styles.push_back(style);
  }
  std::unique_ptr<BRepAdaptor_Surface> surface;
  if (tri->HasUVNodes()) surface.reset(new BRepAdaptor_Surface(face, Standard_False));
  for (Standard_Integer i = 1; i <= n_nodes; ++i) {
    gp_XYZ normal(0, 0, 0);
    bool found = false;
    if (surface) {
      gp_Pnt2d uv = tri->UVNode(i);
      gp_Pnt p;
      gp_Vec du, dv;
      surface->D1(uv.X(), uv.Y(), p, du, dv);
      gp_Vec n = du.Crossed(dv);
      if (n.SquareMagnitude() > 1e-24) {
        normal = n.XYZ();
        if (reversed) normal.Reverse();
        found = true;
      }
    }
    if (!found) normal = accumulated[i - 1];
    double length = normal.Modulus();
    if (length > 1e-30) {
      normal /= length;
    } else {
      normal = gp_XYZ(0, 0, 1);
    }
    part.normals.push_back(float(normal.X()));
    part.normals.push_back(float(normal.Y()));
    part.normals.push_back(float(normal.Z()));
  }
}

}  // namespace

struct lb_model {
  std::vector<PartData> parts;
  std::vector<PlacementData> placements;
  std::vector<lb_part> part_views;
  std::vector<lb_placement> placement_views;
};

namespace {

Handle(TDocStd_Document) new_document() {
  Handle(XCAFApp_Application) app = XCAFApp_Application::GetApplication();
  Handle(TDocStd_Document) doc;
  app->NewDocument("MDTV-XCAF", doc);
  return doc;
}

// Reads a STEP file into an XCAF document; on failure sets status and message.
bool read_step(const char* path, Handle(TDocStd_Document)& doc, STEPCAFControl_Reader& reader,
               int32_t* status, std::string& message) {
  reader.SetColorMode(Standard_True);
  reader.SetNameMode(Standard_True);
  reader.SetLayerMode(Standard_False);
  reader.SetPropsMode(Standard_False);
  IFSelect_ReturnStatus read = reader.ReadFile(path);
  if (read != IFSelect_RetDone) {
    *status = LB_NOT_STEP;
    std::string details = collected_messages();
    message = "OCCT could not parse the STEP file" + (details.empty() ? std::string() : ": " + details);
    return false;
  }
  doc = new_document();
  if (!reader.Transfer(doc)) {
    *status = LB_TRANSFER;
    std::string details = collected_messages();
    message = "OCCT could not transfer the STEP entities to shapes" +
              (details.empty() ? std::string() : ": " + details);
    return false;
  }
  return true;
}

// Names the root entities of a read STEP file (`#12 StepShape_ShapeDefinitionRepresentation`).
std::string describe_roots(STEPCAFControl_Reader& reader) {
  STEPControl_Reader& step = reader.ChangeReader();
  Handle(Interface_InterfaceModel) model = step.Model();
  Standard_Integer n = step.NbRootsForTransfer();
  std::string out;
  for (Standard_Integer i = 1; i <= n && i <= 4; ++i) {
    Handle(Standard_Transient) entity = step.RootForTransfer(i);
    if (entity.IsNull()) continue;
    if (!out.empty()) out += ", ";
    if (!model.IsNull()) {
      Handle(TCollection_HAsciiString) label = model->StringLabel(entity);
      if (!label.IsNull()) out += std::string(label->ToCString()) + " ";
    }
    out += entity->DynamicType()->Name();
  }
  if (n > 4) out += ", ...";
  return std::to_string(n) + " root entit" + (n == 1 ? "y" : "ies") + (out.empty() ? "" : ": " + out);
}

double metres_per_unit(const Handle(TDocStd_Document)& doc) {
  Standard_Real unit = 0;
  if (XCAFDoc_DocumentTool::GetLengthUnit(doc, unit, UnitsMethods_LengthUnit_Meter) && unit > 0) {
    return unit;
  }
  return UnitsMethods::GetCasCadeLengthUnit(UnitsMethods_LengthUnit_Meter);
}

double choose_deflection(double linear_m, double relative, double diagonal_units, double mpu) {
  if (linear_m > 0) return linear_m / mpu;
  double rel = relative > 0 ? relative : 0.001;
  return std::max(rel * diagonal_units, 1e-7);
}

template <typename F>
int32_t guarded(char* err, size_t err_len, F body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    set_err(err, err_len, "out of memory");
    return LB_OUT_OF_MEMORY;
  } catch (const Standard_Failure& failure) {
    set_err(err, err_len,
            std::string("OCCT failure: ") + failure.DynamicType()->Name() + ": " +
                (failure.GetMessageString() ? failure.GetMessageString() : ""));
    return LB_FAILURE;
  } catch (const std::exception& e) {
    set_err(err, err_len, std::string("failure: ") + e.what());
    return LB_FAILURE;
  } catch (...) {
    set_err(err, err_len, "unknown C++ exception");
    return LB_FAILURE;
  }
}

}  // namespace

extern "C" lb_model* lb_read_and_mesh(const char* step_path, double linear_deflection_m,
                                      double relative_deflection, double angular_deflection,
                                      lb_model_view* view, int32_t* status, char* err, size_t err_len) {
  std::lock_guard<std::mutex> lock(g_occt_mutex);
  lb_model* result = nullptr;
  *status = guarded(err, err_len, [&]() -> int32_t {
    collector()->lines.clear();
    auto start = std::chrono::steady_clock::now();
    Handle(TDocStd_Document) doc;
    STEPCAFControl_Reader reader;
    int32_t read_status = LB_OK;
    std::string message;
    if (!read_step(step_path, doc, reader, &read_status, message)) {
      set_err(err, err_len, message);
      return read_status;
    }
    Reader walk;
    walk.shapes = XCAFDoc_DocumentTool::ShapeTool(doc->Main());
    walk.colors = XCAFDoc_DocumentTool::ColorTool(doc->Main());
    TDF_LabelSequence roots;
    walk.shapes->GetFreeShapes(roots);
    for (Standard_Integer i = 1; i <= roots.Length(); ++i) {
      float color[4];
      const float* root_color = label_color(walk.colors, roots.Value(i), color) ? color : nullptr;
      walk.visit(roots.Value(i), TopLoc_Location(), label_name(roots.Value(i)), root_color);
    }
    if (walk.parts.empty()) {
      set_err(err, err_len, "the STEP file has no solids or surfaces (" + describe_roots(reader) + ")");
      return LB_NO_SOLIDS;
    }
    const double mpu = metres_per_unit(doc);
    const double read_ms = ms_since(start);

    auto mesh_start = std::chrono::steady_clock::now();
    std::vector<Bnd_Box> part_boxes(walk.parts.size());
    for (size_t i = 0; i < walk.parts.size(); ++i) {
      BRepBndLib::Add(walk.parts[i].shape, part_boxes[i], Standard_False);
    }
    Bnd_Box model_box;
    for (const PlacementData& placement : walk.placements) {
      if (!part_boxes[placement.part].IsVoid()) model_box.Add(part_boxes[placement.part].Transformed(placement.trsf));
    }
    const double diagonal = model_box.IsVoid() ? 0.0 : std::sqrt(model_box.SquareExtent());
    IMeshTools_Parameters params;
    params.Deflection = choose_deflection(linear_deflection_m, relative_deflection, diagonal, mpu);
    params.Angle = angular_deflection > 0 ? angular_deflection : 0.5;
    params.InParallel = Standard_True;
    params.Relative = Standard_False;
    TopoDS_Compound all;
    BRep_Builder builder;
    builder.MakeCompound(all);
    for (const PartData& part : walk.parts) builder.Add(all, part.shape);
    BRepMesh_IncrementalMesh mesher(all, params);
    const double mesh_ms = ms_since(mesh_start);

    auto extract_start = std::chrono::steady_clock::now();
    for (PartData& part : walk.parts) {
      size_t face = 0;
      for (TopExp_Explorer faces(part.shape, TopAbs_FACE); faces.More(); faces.Next(), ++face) {
        const uint32_t style = face < part.face_styles.size() ? part.face_styles[face] : 0;
        extract_face(TopoDS::Face(faces.Current()), mpu, style, part);
      }
    }
    std::unique_ptr<lb_model> model(new lb_model());
    model->parts = std::move(walk.parts);
    model->placements = std::move(walk.placements);
    for (const PartData& part : model->parts) {
      lb_part v;
      v.name = part.name.c_str();
      v.positions = part.positions.data();
      v.normals = part.normals.data();
      v.n_vertices = uint32_t(part.positions.size() / 3);
      v.indices = part.indices.data();
      v.n_indices = uint32_t(part.indices.size());
      std::copy(part.color, part.color + 4, v.color);
      v.has_color = part.has_color ? 1 : 0;
      v.n_faces = part.n_faces;
      v.n_faces_without_mesh = part.n_faces_without_mesh;
      v.face_colors = part.face_colors.data();
      v.n_face_colors = uint32_t(part.face_colors.size() / 4);
      v.triangle_colors = part.triangle_styles.data();
      model->part_views.push_back(v);
    }
    for (const PlacementData& placement : model->placements) {
      lb_placement v;
      v.part = placement.part;
      for (int col = 0; col < 4; ++col) {
        for (int row = 0; row < 4; ++row) {
          double value;
          if (row == 3) {
            value = col == 3 ? 1.0 : 0.0;
          } else {
            value = placement.trsf.Value(row + 1, col + 1);
            if (col == 3) value *= mpu;
          }
          v.matrix[col * 4 + row] = value;
        }
      }
      v.name = placement.name.c_str();
      std::copy(placement.color, placement.color + 4, v.color);
      v.has_color = placement.has_color ? 1 : 0;
      model->placement_views.push_back(v);
    }
    view->parts = model->part_views.data();
    view->n_parts = model->part_views.size();
    view->placements = model->placement_views.data();
    view->n_placements = model->placement_views.size();
    view->metres_per_unit = mpu;
    view->linear_deflection_m = params.Deflection * mpu;
    view->angular_deflection = params.Angle;
    view->bbox_diagonal_m = diagonal * mpu;
    view->read_ms = read_ms;
    view->mesh_ms = mesh_ms;
    view->extract_ms = ms_since(extract_start);
    result = model.release();
    return LB_OK;
  });
  return result;
}

extern "C" void lb_model_free(lb_model* model) { delete model; }

// ---------------------------------------------------------------------------------------------
// Sample models.

namespace {

TopoDS_Shape cut(const TopoDS_Shape& body, const TopoDS_Shape& tool) {
  BRepAlgoAPI_Cut op(body, tool);
  if (!op.IsDone()) throw Standard_Failure("boolean cut failed");
  return op.Shape();
}

TopoDS_Compound compound_of(const std::vector<TopoDS_Shape>& shapes) {
  TopoDS_Compound out;
  BRep_Builder builder;
  builder.MakeCompound(out);
  for (const TopoDS_Shape& s : shapes) builder.Add(out, s);
  return out;
}

TopoDS_Shape cylinder(gp_Pnt origin, gp_Dir axis, double radius, double height) {
  return BRepPrimAPI_MakeCylinder(gp_Ax2(origin, axis), radius, height).Shape();
}

// A solid of revolution about Z from a closed (r, z) polygon.
TopoDS_Shape revolve(const std::vector<std::pair<double, double>>& profile) {
  BRepBuilderAPI_MakePolygon polygon;
  for (const auto& rz : profile) polygon.Add(gp_Pnt(rz.first, 0, rz.second));
  polygon.Close();
  TopoDS_Face face = BRepBuilderAPI_MakeFace(polygon.Wire());
  return BRepPrimAPI_MakeRevol(face, gp_Ax1(gp::Origin(), gp::DZ())).Shape();
}

TopoDS_Shape ring(double r_in, double r_out, double z0, double z1) {
  return revolve({{r_in, z0}, {r_out, z0}, {r_out, z1}, {r_in, z1}});
}

TopoDS_Shape bracket() {
  TopoDS_Shape base = BRepPrimAPI_MakeBox(80., 50., 8.).Shape();
  TopoDS_Shape wall = BRepPrimAPI_MakeBox(8., 50., 60.).Shape();
  TopoDS_Shape body = BRepAlgoAPI_Fuse(base, wall).Shape();
  ShapeUpgrade_UnifySameDomain unify(body);
  unify.Build();
  body = unify.Shape();
  BRepFilletAPI_MakeFillet fillet(body);
  for (TopExp_Explorer edges(body, TopAbs_EDGE); edges.More(); edges.Next()) {
    const TopoDS_Edge& edge = TopoDS::Edge(edges.Current());
    BRepAdaptor_Curve curve(edge);
    if (curve.GetType() != GeomAbs_Line) continue;
    gp_Pnt a = curve.Value(curve.FirstParameter());
    gp_Pnt b = curve.Value(curve.LastParameter());
    auto near = [](double x, double y) { return std::abs(x - y) < 1e-6; };
    bool vertical = near(a.X(), b.X()) && near(a.Y(), b.Y());
    bool along_y = near(a.X(), b.X()) && near(a.Z(), b.Z());
    if (vertical && near(a.X(), 80.)) fillet.Add(6., edge);                       // outer base corners
    if (along_y && near(a.X(), 8.) && near(a.Z(), 8.)) fillet.Add(4., edge);      // inner corner
    if (along_y && near(a.Z(), 60.)) fillet.Add(2.5, edge);                       // top of the wall
  }
  fillet.Build();
  if (fillet.IsDone()) body = fillet.Shape();
  TopoDS_Shape holes = compound_of({cylinder(gp_Pnt(55, 15, -5), gp::DZ(), 4., 20.),
                                    cylinder(gp_Pnt(55, 35, -5), gp::DZ(), 4., 20.),
                                    cylinder(gp_Pnt(-5, 25, 40), gp::DX(), 6., 20.)});
  return cut(body, holes);
}

TopoDS_Shape flange() {
  TopoDS_Shape body = revolve({{10, 0}, {60, 0}, {60, 12}, {28, 12}, {25, 15}, {25, 40}, {10, 40}});
  std::vector<TopoDS_Shape> bolts;
  for (int i = 0; i < 6; ++i) {
    double angle = 2 * M_PI * i / 6;
    bolts.push_back(cylinder(gp_Pnt(45 * std::cos(angle), 45 * std::sin(angle), -1), gp::DZ(), 4.5, 14.));
  }
  return cut(body, compound_of(bolts));
}

TopoDS_Wire wire_of(const TopoDS_Edge& edge) { return BRepBuilderAPI_MakeWire(edge).Wire(); }

TopoDS_Shape loft(double shrink) {
  BRepOffsetAPI_ThruSections sections(Standard_True, Standard_False);
  sections.AddWire(wire_of(BRepBuilderAPI_MakeEdge(gp_Circ(gp_Ax2(gp_Pnt(0, 0, 0), gp::DZ()), 20 - shrink))));
  sections.AddWire(wire_of(
      BRepBuilderAPI_MakeEdge(gp_Elips(gp_Ax2(gp_Pnt(10, 0, 60), gp::DZ()), 28 - shrink, 14 - shrink))));
  sections.AddWire(wire_of(BRepBuilderAPI_MakeEdge(
      gp_Circ(gp_Ax2(gp_Pnt(30, 0, 120), gp_Dir(0.3, 0, 1)), 15 - shrink))));
  sections.CheckCompatibility(Standard_False);
  sections.Build();
  if (!sections.IsDone()) throw Standard_Failure("loft failed");
  return sections.Shape();
}

TopoDS_Shape duct() {
  TopoDS_Shape outer = loft(0);
  try {
    BRepAlgoAPI_Cut hollow(outer, loft(2));
    if (hollow.IsDone() && !hollow.HasErrors()) return hollow.Shape();
  } catch (const Standard_Failure&) {
  }
  return outer;
}

struct DocWriter {
  Handle(TDocStd_Document) doc = new_document();
  Handle(XCAFDoc_ShapeTool) shapes = XCAFDoc_DocumentTool::ShapeTool(doc->Main());
  Handle(XCAFDoc_ColorTool) colors = XCAFDoc_DocumentTool::ColorTool(doc->Main());

  TDF_Label part(const TopoDS_Shape& shape, const char* name, double r, double g, double b) {
    TDF_Label label = shapes->AddShape(shape, Standard_False);
    TDataStd_Name::Set(label, name);
    colors->SetColor(label, Quantity_Color(r, g, b, Quantity_TOC_sRGB), XCAFDoc_ColorSurf);
    return label;
  }

  TDF_Label assembly(const char* name) {
    TDF_Label label = shapes->NewShape();
    TDataStd_Name::Set(label, name);
    return label;
  }

  // A colour on a face, shell or solid of a part (written as a STEP styled item on it).
  void sub_color(const TDF_Label& part, const TopoDS_Shape& sub, double r, double g, double b,
                 double alpha = 1.0) {
    TDF_Label label = shapes->AddSubShape(part, sub);
    if (label.IsNull()) throw Standard_Failure("not a sub-shape of the part");
    colors->SetColor(label, Quantity_ColorRGBA(Quantity_Color(r, g, b, Quantity_TOC_sRGB), float(alpha)),
                     XCAFDoc_ColorSurf);
  }

  TDF_Label add(const TDF_Label& parent, const TDF_Label& child, const gp_Trsf& trsf, const std::string& name) {
    TDF_Label component = shapes->AddComponent(parent, child, TopLoc_Location(trsf));
    if (!name.empty()) TDataStd_Name::Set(component, name.c_str());
    return component;
  }

  void write(const char* path) {
    shapes->UpdateAssemblies();
    STEPCAFControl_Writer writer;
    writer.SetColorMode(Standard_True);
    writer.SetNameMode(Standard_True);
    if (!writer.Transfer(doc, STEPControl_AsIs)) throw Standard_Failure("STEP transfer failed");
    if (writer.Write(path) != IFSelect_RetDone) throw Standard_Failure("STEP write failed");
  }
};

gp_Trsf translation(double x, double y, double z) {
  gp_Trsf t;
  t.SetTranslation(gp_Vec(x, y, z));
  return t;
}

gp_Trsf flip_to(double z) {
  gp_Trsf rotate;
  rotate.SetRotation(gp_Ax1(gp::Origin(), gp::DX()), M_PI);
  return translation(0, 0, z) * rotate;
}

void bearing(const char* path) {
  const double pitch = 92, ball_r = 4, row_z = 6;
  const int balls_per_row = 67;
  DocWriter w;
  std::vector<TopoDS_Shape> grooves;
  for (double z : {row_z, -row_z}) {
    grooves.push_back(BRepPrimAPI_MakeTorus(gp_Ax2(gp_Pnt(0, 0, z), gp::DZ()), pitch, ball_r + 0.2).Shape());
  }
  TopoDS_Shape groove_tool = compound_of(grooves);
  TDF_Label outer = w.part(cut(ring(95.5, 104, -13, 13), groove_tool), "outer ring", 0.55, 0.57, 0.6);
  TDF_Label inner = w.part(cut(ring(80, 88.5, -13, 13), groove_tool), "inner ring", 0.5, 0.52, 0.56);
  TDF_Label seal = w.part(ring(88.8, 95.2, 0, 1), "seal", 0.1, 0.2, 0.6);
  TDF_Label cage = w.part(ring(89, 95, 0, 1), "cage", 0.72, 0.53, 0.25);
  TDF_Label ball = w.part(BRepPrimAPI_MakeSphere(ball_r).Shape(), "ball", 0.8, 0.8, 0.82);
  TDF_Label row = w.assembly("ball row");
  for (int i = 0; i < balls_per_row; ++i) {
    double angle = 2 * M_PI * i / balls_per_row;
    w.add(row, ball, translation(pitch * std::cos(angle), pitch * std::sin(angle), 0),
          "ball " + std::to_string(i + 1));
  }
  TDF_Label top = w.assembly("bearing");
  w.add(top, outer, gp_Trsf(), "outer ring");
  w.add(top, inner, gp_Trsf(), "inner ring");
  w.add(top, seal, translation(0, 0, 12), "seal A");
  w.add(top, seal, flip_to(-12), "seal B");
  w.add(top, cage, translation(0, 0, 10.2), "cage A");
  w.add(top, cage, flip_to(-10.2), "cage B");
  gp_Trsf stagger;
  stagger.SetRotation(gp_Ax1(gp::Origin(), gp::DZ()), M_PI / balls_per_row);
  w.add(top, row, translation(0, 0, row_z), "row A");
  w.add(top, row, translation(0, 0, -row_z) * stagger, "row B");
  w.write(path);
}

void single(const char* path, const TopoDS_Shape& shape, const char* name, double r, double g, double b) {
  DocWriter w;
  w.part(shape, name, r, g, b);
  w.write(path);
}

// Colours at every level XCAF keeps them (sRGB values as a CAD system writes them):
// - "brass block", a 60 x 40 x 20 mm box whose solid is near white (0.95) with its top and three
//   sides brass (0.71, 0.65, 0.26), one side translucent red (0.8, 0.1, 0.1, alpha 0.5) and the
//   bottom left in the solid's colour;
// - "two bodies", one part of two 10 mm cubes coloured purple (0.5, 0.2, 0.6) whose first solid is
//   orange (0.9, 0.45, 0.1);
// - "pin", a blue (0.1, 0.2, 0.7) cylinder placed as "pin A" (blue), "pin B" with a green
//   (0.1, 0.6, 0.2) instance colour, and "pin C" in the sub-assembly "group", whose instance is
//   yellow (0.9, 0.8, 0.1): pin C stays blue (the part's colour beats an inherited one);
// - "plain pin", an uncoloured cylinder in "group": yellow, inherited.
// (STEPCAFControl_Writer 7.6 writes no colour set on an assembly's own label, only on instances.)
void styled(const char* path) {
  DocWriter w;
  BRepPrimAPI_MakeBox box(60., 40., 20.);
  TopoDS_Shape block_shape = box.Shape();
  TDF_Label block = w.part(block_shape, "brass block", 0.95, 0.95, 0.95);
  for (const TopoDS_Face& face : {box.TopFace(), box.FrontFace(), box.RightFace(), box.BackFace()}) {
    w.sub_color(block, face, 0.71, 0.65, 0.26);
  }
  w.sub_color(block, box.LeftFace(), 0.8, 0.1, 0.1, 0.5);

  TopoDS_Shape first = BRepPrimAPI_MakeBox(gp_Pnt(0, 0, 0), 10., 10., 10.).Shape();
  TopoDS_Shape second = BRepPrimAPI_MakeBox(gp_Pnt(15, 0, 0), 10., 10., 10.).Shape();
  TDF_Label bodies = w.part(compound_of({first, second}), "two bodies", 0.5, 0.2, 0.6);
  w.sub_color(bodies, first, 0.9, 0.45, 0.1);

  TDF_Label pin = w.part(cylinder(gp::Origin(), gp::DZ(), 4., 30.), "pin", 0.1, 0.2, 0.7);
  TDF_Label plain = w.shapes->AddShape(cylinder(gp::Origin(), gp::DZ(), 3., 25.), Standard_False);
  TDataStd_Name::Set(plain, "plain pin");

  TDF_Label group = w.assembly("group");
  w.add(group, pin, gp_Trsf(), "pin C");
  w.add(group, plain, translation(0, 15, 0), "plain pin");

  TDF_Label top = w.assembly("styled assembly");
  w.add(top, block, gp_Trsf(), "brass block");
  w.add(top, bodies, translation(0, 55, 0), "two bodies");
  w.add(top, pin, translation(75, 10, 0), "pin A");
  TDF_Label pin_b = w.add(top, pin, translation(75, 30, 0), "pin B");
  w.colors->SetColor(pin_b, Quantity_Color(0.1, 0.6, 0.2, Quantity_TOC_sRGB), XCAFDoc_ColorSurf);
  TDF_Label group_instance = w.add(top, group, translation(90, 10, 0), "group");
  w.colors->SetColor(group_instance, Quantity_Color(0.9, 0.8, 0.1, Quantity_TOC_sRGB), XCAFDoc_ColorSurf);
  w.write(path);
}

void curve_only(const char* path) {
  STEPControl_Writer writer;
  TopoDS_Edge edge = BRepBuilderAPI_MakeEdge(gp_Pnt(0, 0, 0), gp_Pnt(10, 5, 0));
  if (writer.Transfer(edge, STEPControl_AsIs) != IFSelect_RetDone) throw Standard_Failure("transfer failed");
  if (writer.Write(path) != IFSelect_RetDone) throw Standard_Failure("STEP write failed");
}

}  // namespace

extern "C" int32_t lb_write_sample(int32_t kind, const char* step_path, char* err, size_t err_len) {
  std::lock_guard<std::mutex> lock(g_occt_mutex);
  return guarded(err, err_len, [&]() -> int32_t {
    collector()->lines.clear();
    switch (kind) {
      case 0: single(step_path, bracket(), "bracket", 0.3, 0.45, 0.7); break;
      case 1: single(step_path, flange(), "flange", 0.6, 0.6, 0.62); break;
      case 2: single(step_path, duct(), "duct", 0.85, 0.5, 0.2); break;
      case 3: bearing(step_path); break;
      case 4: curve_only(step_path); break;
      case 5: styled(step_path); break;
      default: set_err(err, err_len, "unknown sample kind " + std::to_string(kind)); return LB_FAILURE;
    }
    return LB_OK;
  });
}

extern "C" int32_t lb_caf_step_to_glb(const char* step_path, const char* glb_path,
                                      double linear_deflection_m, double relative_deflection,
                                      double angular_deflection, double* timings_ms, uint64_t* triangles,
                                      char* err, size_t err_len) {
  std::lock_guard<std::mutex> lock(g_occt_mutex);
  return guarded(err, err_len, [&]() -> int32_t {
    collector()->lines.clear();
    auto start = std::chrono::steady_clock::now();
    Handle(TDocStd_Document) doc;
    STEPCAFControl_Reader reader;
    int32_t status = LB_OK;
    std::string message;
    if (!read_step(step_path, doc, reader, &status, message)) {
      set_err(err, err_len, message);
      return status;
    }
    Handle(XCAFDoc_ShapeTool) shapes = XCAFDoc_DocumentTool::ShapeTool(doc->Main());
    TDF_LabelSequence roots;
    shapes->GetFreeShapes(roots);
    const double mpu = metres_per_unit(doc);
    timings_ms[0] = ms_since(start);

    auto mesh_start = std::chrono::steady_clock::now();
    Bnd_Box box;
    TopoDS_Compound all;
    BRep_Builder builder;
    builder.MakeCompound(all);
    for (Standard_Integer i = 1; i <= roots.Length(); ++i) {
      TopoDS_Shape shape = XCAFDoc_ShapeTool::GetShape(roots.Value(i));
      BRepBndLib::Add(shape, box, Standard_False);
      builder.Add(all, shape);
    }
    IMeshTools_Parameters params;
    params.Deflection = choose_deflection(linear_deflection_m, relative_deflection,
                                          box.IsVoid() ? 0.0 : std::sqrt(box.SquareExtent()), mpu);
    params.Angle = angular_deflection > 0 ? angular_deflection : 0.5;
    params.InParallel = Standard_True;
    BRepMesh_IncrementalMesh mesher(all, params);
    timings_ms[1] = ms_since(mesh_start);

    auto write_start = std::chrono::steady_clock::now();
    RWGltf_CafWriter writer(glb_path, Standard_True);
    writer.ChangeCoordinateSystemConverter().SetInputLengthUnit(mpu);
    writer.ChangeCoordinateSystemConverter().SetInputCoordinateSystem(RWMesh_CoordinateSystem_Zup);
    TColStd_IndexedDataMapOfStringString info;
    if (!writer.Perform(doc, info, Message_ProgressRange())) {
      set_err(err, err_len, "RWGltf_CafWriter failed");
      return LB_FAILURE;
    }
    timings_ms[2] = ms_since(write_start);
    if (triangles != nullptr) {
      uint64_t count = 0;
      for (TopExp_Explorer faces(all, TopAbs_FACE); faces.More(); faces.Next()) {
        TopLoc_Location location;
        const Handle(Poly_Triangulation)& tri = BRep_Tool::Triangulation(TopoDS::Face(faces.Current()), location);
        if (!tri.IsNull()) count += tri->NbTriangles();
      }
      *triangles = count;
    }
    return LB_OK;
  });
}
