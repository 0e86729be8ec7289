"""Opens a USD file with Pixar's usd-core, runs its validators, and prints what it sees as JSON.

Used by render-runtime's USD tests: every file our writer produces must open in Pixar's USD and
pass its checks. Usage: python usd_check.py FILE
"""

import json
import sys

from pxr import Gf, Usd, UsdGeom, UsdShade, UsdUtils, UsdValidation

# The usd-core wheel ships without usdShaders' shaderDefs.usda, so Sdr cannot look up
# UsdPreviewSurface and the two shader-definition checks raise instead of checking. They are
# replaced by the explicit input type check below.
SDR_CHECKS = {"ShaderPropertyTypeConformanceChecker", "usdShadeValidators:ShaderSdrCompliance"}
PREVIEW_INPUT_TYPES = {
    "diffuseColor": "color3f",
    "emissiveColor": "color3f",
    "specularColor": "color3f",
    "metallic": "float",
    "roughness": "float",
    "opacity": "float",
    "opacityThreshold": "float",
    "ior": "float",
    "clearcoat": "float",
    "clearcoatRoughness": "float",
    "occlusion": "float",
    "normal": "normal3f",
    "useSpecularWorkflow": "int",
}


def main(path):
    errors = []
    warnings = []
    stage = Usd.Stage.Open(path)
    for e in stage.GetCompositionErrors():
        errors.append("composition: " + str(e))

    checker = UsdUtils.ComplianceChecker(
        arkit=False,
        skipARKitRootLayerCheck=False,
        rootPackageOnly=False,
        skipVariants=False,
        verbose=False,
    )
    checker._rules = [r for r in checker._rules if type(r).__name__ not in SDR_CHECKS]
    checker.CheckCompliance(path)
    errors += ["compliance: " + e for e in checker.GetErrors()]
    errors += ["compliance failed check: " + e for e in checker.GetFailedChecks()]
    warnings += ["compliance: " + w for w in checker.GetWarnings()]

    registry = UsdValidation.ValidationRegistry()
    validators = [
        v for v in registry.GetOrLoadAllValidators() if v.GetMetadata().name not in SDR_CHECKS
    ]
    for e in UsdValidation.ValidationContext(validators).Validate(stage):
        message = "validator %s: %s" % (e.GetName(), e.GetMessage())
        if e.GetType() == UsdValidation.ValidationErrorType.Error:
            errors.append(message)
        elif e.GetType() == UsdValidation.ValidationErrorType.Warn:
            warnings.append(message)

    materials = {}
    for prim in stage.Traverse(Usd.TraverseInstanceProxies(Usd.PrimAllPrimsPredicate)):
        if not prim.IsA(UsdShade.Shader):
            continue
        shader = UsdShade.Shader(prim)
        if shader.GetIdAttr().Get() != "UsdPreviewSurface":
            continue
        values = {}
        for shader_input in shader.GetInputs():
            name = shader_input.GetBaseName()
            type_name = str(shader_input.GetTypeName())
            expected = PREVIEW_INPUT_TYPES.get(name)
            if expected is None:
                errors.append("%s: unknown UsdPreviewSurface input %s" % (prim.GetPath(), name))
            elif type_name != expected:
                errors.append(
                    "%s: input %s is %s, UsdPreviewSurface wants %s"
                    % (prim.GetPath(), name, type_name, expected)
                )
            value = shader_input.Get()
            values[name] = list(value) if hasattr(value, "__len__") else value
        materials[str(prim.GetParent().GetPath())] = values

    # What a renderer draws: meshes (through instances) and point instancer placements.
    triangles = 0
    placements = 0
    mesh_bindings = {}
    it = iter(Usd.PrimRange.Stage(stage, Usd.TraverseInstanceProxies()))
    time = Usd.TimeCode.Default()

    def mesh_triangles(prim):
        counts = UsdGeom.Mesh(prim).GetFaceVertexCountsAttr().Get() or []
        return sum(max(c - 2, 0) for c in counts)

    def bound(prim):
        material, _ = UsdShade.MaterialBindingAPI(prim).ComputeBoundMaterial()
        return str(material.GetPath()) if material else None

    for prim in it:
        if prim.IsA(UsdGeom.PointInstancer):
            it.PruneChildren()
            instancer = UsdGeom.PointInstancer(prim)
            protos = instancer.GetPrototypesRel().GetTargets()
            for index in instancer.GetProtoIndicesAttr().Get(time) or []:
                for sub in Usd.PrimRange(
                    stage.GetPrimAtPath(protos[index]), Usd.TraverseInstanceProxies()
                ):
                    if sub.IsA(UsdGeom.Mesh):
                        triangles += mesh_triangles(sub)
                        placements += 1
                        key = bound(sub)
                        mesh_bindings[key] = mesh_bindings.get(key, 0) + 1
        elif prim.IsA(UsdGeom.Mesh):
            triangles += mesh_triangles(prim)
            placements += 1
            key = bound(prim)
            mesh_bindings[key] = mesh_bindings.get(key, 0) + 1

    cache = UsdGeom.BBoxCache(time, [UsdGeom.Tokens.default_, UsdGeom.Tokens.render])
    box = cache.ComputeWorldBound(stage.GetPseudoRoot()).ComputeAlignedRange()
    report = {
        "errors": errors,
        "warnings": warnings,
        "up_axis": UsdGeom.GetStageUpAxis(stage),
        "meters_per_unit": UsdGeom.GetStageMetersPerUnit(stage),
        "default_prim": str(stage.GetDefaultPrim().GetPath()),
        "prototypes": len(stage.GetPrototypes()),
        "triangles": triangles,
        "placements": placements,
        "mesh_bindings": mesh_bindings,
        "materials": materials,
        "bounds_min": list(box.GetMin()) if not box.IsEmpty() else None,
        "bounds_max": list(box.GetMax()) if not box.IsEmpty() else None,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
