"""What Pixar's usd-core composes and draws for each USD stage named on the command line.

The oracle for the importer's tests: for every stage, the gprims a renderer draws (Mesh and the
implicit surfaces, through instances and point instancers, skipping inactive, invisible, guide
and proxy prims), counted by type, and the stage's world bounds from UsdGeom's bounding-box
cache, with the stage's upAxis and metersPerUnit and its composition errors. Prints one JSON
list, one object per stage. Usage: python usd_stage.py STAGE...
"""

import json
import sys

from pxr import Usd, UsdGeom

GPRIMS = ["Mesh", "Cube", "Sphere", "Cylinder", "Cylinder_1", "Cone", "Capsule", "Capsule_1", "Plane"]


def report(path):
    stage = Usd.Stage.Open(path)
    time = Usd.TimeCode.Default()
    purposes = [UsdGeom.Tokens.default_, UsdGeom.Tokens.render]
    counts = {}
    placements = 0

    def drawn(prim):
        imageable = UsdGeom.Imageable(prim)
        if not imageable:
            return True
        if imageable.ComputeVisibility(time) == UsdGeom.Tokens.invisible:
            return False
        return imageable.ComputePurpose() in purposes

    def count(prim, times=1):
        nonlocal placements
        name = prim.GetTypeName()
        if name in GPRIMS:
            counts[name] = counts.get(name, 0) + times
            placements += times

    it = iter(Usd.PrimRange.Stage(stage, Usd.TraverseInstanceProxies()))
    for prim in it:
        if not drawn(prim):
            it.PruneChildren()
            continue
        if prim.IsA(UsdGeom.PointInstancer):
            it.PruneChildren()
            instancer = UsdGeom.PointInstancer(prim)
            protos = instancer.GetPrototypesRel().GetTargets()
            for index in instancer.GetProtoIndicesAttr().Get(time) or []:
                for sub in Usd.PrimRange(stage.GetPrimAtPath(protos[index]), Usd.TraverseInstanceProxies()):
                    count(sub)
            continue
        count(prim)

    cache = UsdGeom.BBoxCache(time, purposes)
    box = cache.ComputeWorldBound(stage.GetPseudoRoot()).ComputeAlignedRange()
    return {
        "path": path,
        "composition_errors": [str(e) for e in stage.GetCompositionErrors()],
        "up_axis": UsdGeom.GetStageUpAxis(stage),
        "meters_per_unit": UsdGeom.GetStageMetersPerUnit(stage),
        "gprims": counts,
        "placements": placements,
        "bounds_min": list(box.GetMin()) if not box.IsEmpty() else None,
        "bounds_max": list(box.GetMax()) if not box.IsEmpty() else None,
    }


if __name__ == "__main__":
    print(json.dumps([report(p) for p in sys.argv[1:]]))
