"""The Cycles engine's worker with one studio setting changed at a time, to measure what each
costs (`bench_engines --only ablate`, issue #17 Must-have 2).

`LIGHTBOX_CYCLES_VARIANT` names the change (the benchmark sets it in a one-line launcher):
    engine            the engine's worker as it is
    no_catcher        no shadow-catcher plane
    old_catcher       the catcher plane as it was before #17: 400 scene radii wide
    reach_N           the catcher cut N scene radii from the model (the engine: 3)
    opaque_film       film not transparent (the world shows behind the model)
    uniform_bounces   6 bounces of every kind (as before #17)
    default_bounces   Blender's per-kind defaults (12 total, 4 diffuse, 4 glossy, 12 transmission)
    uniform_world     the world's mean colour instead of the gradient shader
    world_importance  the world importance sampled (Blender's default) instead of BSDF-only
    plain_filter      Blender's default pixel filter (Blackman-Harris 1.5) instead of a box
    diffuse_N, glossy_N  at most N diffuse (glossy) bounces, the other kinds unchanged
    no_light_tree     Cycles' light tree off (lights picked by power, as before Blender 3.5)
    catcher_emission  the catcher shaded by an emission shader (no BSDF to sample or light:
                      Cycles then catches no shadow; measures what the catcher's shading costs)
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cycles"))

import worker  # noqa: E402

bpy = worker.bpy
VARIANT = os.environ.get("LIGHTBOX_CYCLES_VARIANT", "engine")


class VariantWorker(worker.Worker):
    def configure_output(self, req):
        super().configure_output(req)
        if VARIANT == "opaque_film":
            bpy.context.scene.render.film_transparent = False

    def configure(self, req):
        super().configure(req)
        c = bpy.context.scene.cycles
        if VARIANT == "uniform_bounces":
            b = req["max_bounces"]
            c.max_bounces = c.diffuse_bounces = c.glossy_bounces = c.transmission_bounces = b
            c.transparent_max_bounces = max(b, 8)
        elif VARIANT == "default_bounces":
            c.max_bounces, c.diffuse_bounces, c.glossy_bounces = 12, 4, 4
            c.transmission_bounces, c.transparent_max_bounces = 12, 8
        elif VARIANT == "no_light_tree":
            c.use_light_tree = False
        elif VARIANT.startswith("diffuse_"):
            c.diffuse_bounces = int(VARIANT[8:])
        elif VARIANT.startswith("glossy_"):
            c.glossy_bounces = int(VARIANT[7:])
        elif VARIANT == "plain_filter":
            c.pixel_filter_type, c.filter_width = "BLACKMAN_HARRIS", 1.5

    def apply_studio(self, req):
        if VARIANT == "no_catcher":
            req = dict(req, ground=None)
        elif VARIANT == "old_catcher" and req.get("ground"):
            g = req["ground"]
            r = g["radius"] * 200.0
            lo, hi = [g["center"][0] - r, g["center"][1] - r], [g["center"][0] + r, g["center"][1] + r]
            req = dict(req, ground=dict(g, shadow_lo=lo, shadow_hi=hi, reach=r, margin=0.0))
        elif VARIANT.startswith("reach_") and req.get("ground"):
            g = req["ground"]
            req = dict(req, ground=dict(g, reach=g["radius"] * float(VARIANT[6:])))
        super().apply_studio(req)
        if VARIANT == "catcher_emission":
            catcher = self.studio_objects.get("lightbox_ground")
            if catcher is not None and not catcher.data.materials:
                mat = bpy.data.materials.new("lightbox_catcher_emission")
                mat.use_nodes = True
                nt = mat.node_tree
                nt.nodes.clear()
                out = nt.nodes.new("ShaderNodeOutputMaterial")
                em = nt.nodes.new("ShaderNodeEmission")
                nt.links.new(em.outputs[0], out.inputs["Surface"])
                catcher.data.materials.append(mat)

    def apply_environment(self, env):
        if VARIANT == "uniform_world" and env.get("kind") != "uniform":
            mean = [(h * 2 + z + n) / 4 for h, z, n in zip(env["horizon"], env["zenith"], env["nadir"])]
            env = {"kind": "uniform", "radiance": mean}
        super().apply_environment(env)
        if VARIANT == "world_importance":
            self.world.cycles.sampling_method = "AUTOMATIC"


if __name__ == "__main__":
    sys.exit(worker.main(VariantWorker))
