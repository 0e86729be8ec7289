"""Lightbox's persistent Blender Cycles worker, driven over JSON lines on stdin/stdout.

Started once by `render_runtime::engine::cycles::CyclesEngine` with Blender's Python (PyPI
`bpy` 5.0.1 on CPython 3.11) and reused for every job: Blender's start-up, the device setup and
(when the same model comes again) the glTF import are paid once.

Protocol: one JSON object per line in each direction. Requests carry an `id`; every reply
echoes it.

    -> (on start)                                   <- {"op": "ready", "blender", "device", "devices", "startup_s"}
    -> {"op": "load", "id", "path", "key", "format"} <- {"op": "loaded", "id", "cached", "import_s", "bounds", "objects"}
    -> {"op": "render", "id", "width", "height", "samples", "seed", "max_bounces", "denoise",
        "camera", "lights", "environment", "ground", "out"}
                                                    <- {"op": "progress", "id", "sample", "samples"} (many)
                                                    <- {"op": "rendered", "id", "sync_s", "render_s", "denoise_s", "readback_s", ...}
    -> {"op": "quit"}
    any failure                                     <- {"op": "error", "id", "message"}

All geometry in requests is already in Blender's Z-up world: the Rust side resolves the studio
(camera framing, light placement and power) and converts it, so both engines light the same
scene from the same numbers. The rendered frame comes back as raw little-endian float32 RGBA,
scene-linear and premultiplied, rows bottom-up (Blender's order), written to `out`; Rust tone
maps and encodes it with the same code as the native engine.

Blender prints its own log lines to stdout. The protocol therefore runs on a private duplicate
of the original stdout, and file descriptor 1 is pointed at stderr before bpy is imported.
"""

import json
import math
import os
import re
import sys
import time
import traceback
import warnings

T_START = time.perf_counter()
_PROTO = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
os.dup2(2, 1)
sys.stdout = sys.stderr

import bpy  # noqa: E402  (after the stdout redirect, on purpose)
import numpy as np  # noqa: E402
from mathutils import Matrix, Vector  # noqa: E402

SAMPLE_RE = re.compile(r"Sample (\d+)/(\d+)")


def send(msg):
    _PROTO.write(json.dumps(msg) + "\n")
    _PROTO.flush()


class Worker:
    def __init__(self):
        self.model_key = None
        self.model_objects = []
        self.bounds = None
        self.studio_objects = {}
        self.world = None
        self.world_key = None
        self.device = "CPU"
        self.devices = []
        self.render_id = None
        self.stats = {}

    # ---- set-up ---------------------------------------------------------------------------

    def setup(self):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene
        scene.render.engine = "CYCLES"
        self.device, self.devices = pick_device()
        scene.cycles.device = "GPU" if self.device != "CPU" else "CPU"
        # Rebuild nothing between renders that only move the camera and lights (turntables).
        scene.render.use_persistent_data = True
        bpy.app.handlers.render_stats.append(self.on_stats)

    def on_stats(self, stats, *_):
        """Render statistics callback: stage boundaries and sample progress."""
        now = time.perf_counter()
        text = str(stats)
        if os.environ.get("LIGHTBOX_CYCLES_DEBUG"): print(f"{now - T_START:8.3f} STATS {text}", file=sys.stderr)
        st = self.stats
        m = SAMPLE_RE.search(text)
        if m:
            st.setdefault("first_sample", now)
            done, total = int(m.group(1)), int(m.group(2))
            if 0 < done < total:
                # The last partial count before the end: with the denoiser on, Cycles reports
                # the final count only after denoising, so this dates the end of sampling.
                st["partial"] = (done, total, now)
            if now - st.get("last_progress", 0.0) > 0.25 or done == total:
                st["last_progress"] = now
                send({"op": "progress", "id": self.render_id, "sample": done, "samples": total})

    # ---- model -----------------------------------------------------------------------------

    def load(self, req):
        key = req["key"]
        if key == self.model_key and self.model_objects:
            return {"cached": True, "import_s": 0.0, "bounds": self.bounds, "objects": len(self.model_objects)}
        self.clear_model()
        before = set(bpy.data.objects)
        t0 = time.perf_counter()
        path = req["path"]
        try:
            if req.get("format", "gltf") == "usd":
                bpy.ops.wm.usd_import(filepath=path)
            else:
                bpy.ops.import_scene.gltf(filepath=path)
        except BaseException:
            # Leave no half-imported model behind for the next job.
            self.clear_model([o for o in bpy.data.objects if o not in before])
            raise
        import_s = time.perf_counter() - t0
        new = [o for o in bpy.data.objects if o not in before]
        meshes = [o for o in new if o.type == "MESH"]
        if not meshes:
            self.clear_model(new)
            raise ValueError(f"{path}: the model has no meshes")
        for o in new:
            # Imported cameras and lights would fight the studio.
            if o.type in ("CAMERA", "LIGHT"):
                o.hide_render = True
        self.model_objects = [o.name for o in new]
        self.model_key = key
        self.bounds = world_bounds(meshes)
        return {"cached": False, "import_s": import_s, "bounds": self.bounds, "objects": len(meshes)}

    def clear_model(self, objects=None):
        names = objects if objects is not None else self.model_objects
        objs = [bpy.data.objects[n] if isinstance(n, str) else n for n in names]
        objs = [o for o in objs if o is not None and o.name in bpy.data.objects]
        if objs:
            bpy.data.batch_remove(objs)
        bpy.data.orphans_purge(do_local_ids=True, do_linked_ids=True, do_recursive=True)
        self.model_objects = []
        self.model_key = None
        self.bounds = None

    # ---- studio ----------------------------------------------------------------------------

    def studio_object(self, name, make_data):
        obj = self.studio_objects.get(name)
        if obj is None or obj.name not in bpy.data.objects:
            obj = bpy.data.objects.new(name, make_data())
            bpy.context.scene.collection.objects.link(obj)
            self.studio_objects[name] = obj
        return obj

    def apply_studio(self, req):
        scene = bpy.context.scene
        cam = self.studio_object("lightbox_camera", lambda: bpy.data.cameras.new("lightbox_camera"))
        cam.data.sensor_fit = "VERTICAL"
        cam.data.angle_y = req["camera"]["fov_y"]
        cam.data.clip_start = req["camera"]["clip_start"]
        cam.data.clip_end = req["camera"]["clip_end"]
        cam.matrix_world = Matrix(req["camera"]["matrix"])
        scene.camera = cam

        wanted = set()
        for i, light in enumerate(req["lights"]):
            name = f"lightbox_light_{i}"
            wanted.add(name)
            obj = self.studio_object(name, lambda n=name: bpy.data.lights.new(n, type="AREA"))
            data = obj.data
            data.shape = "SQUARE"
            data.size = light["size"]
            data.color = light["color"]
            data.energy = light["power"]
            obj.matrix_world = Matrix(light["matrix"])
            # Studio lights light the model and show in reflections, never to the camera.
            obj.visible_camera = False
            obj.hide_render = False
        for name, obj in list(self.studio_objects.items()):
            if name.startswith("lightbox_light_") and name not in wanted:
                obj.hide_render = True

        self.apply_environment(req["environment"])

        ground = req.get("ground")
        catcher = self.studio_object("lightbox_ground", make_ground_mesh)
        if ground is None:
            catcher.hide_render = True
        else:
            catcher.hide_render = False
            # Sized to where the model's shadows fall, cut at a reach from the model, plus a
            # margin (the Rust side computes them): Cycles shades every camera ray that hits a
            # catcher in full, so a catcher under the whole frame costs about 3x the render.
            cx, cy = ground["center"]
            reach, margin = ground["reach"], ground["margin"]
            lo = [max(ground["shadow_lo"][0], cx - reach) - margin, max(ground["shadow_lo"][1], cy - reach) - margin]
            hi = [min(ground["shadow_hi"][0], cx + reach) + margin, min(ground["shadow_hi"][1], cy + reach) + margin]
            catcher.matrix_world = Matrix(
                (
                    (hi[0] - lo[0], 0, 0, (lo[0] + hi[0]) * 0.5),
                    (0, hi[1] - lo[1], 0, (lo[1] + hi[1]) * 0.5),
                    (0, 0, 1, ground["z"]),
                    (0, 0, 0, 1),
                )
            )
            catcher.is_shadow_catcher = True
            # Like the native engine's ground: seen by the camera only, never in reflections
            # and never blocking light that reaches the model from below.
            catcher.visible_diffuse = False
            catcher.visible_glossy = False
            catcher.visible_transmission = False
            catcher.visible_volume_scatter = False
            catcher.visible_shadow = False

    def apply_environment(self, env):
        key = json.dumps(env, sort_keys=True)
        if self.world is not None and self.world_key == key:
            # Unchanged: keep the shader so persistent data stays valid across frames.
            bpy.context.scene.world = self.world
            return
        if self.world is None:
            self.world = bpy.data.worlds.new("lightbox_world")
        self.world_key = key
        world = self.world
        bpy.context.scene.world = world
        # Like the native engine, the environment is reached by BSDF sampling only: the studio's
        # environments are smooth, and an importance map costs seconds per change on a CPU.
        world.cycles.sampling_method = "NONE"
        if world.node_tree is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                world.use_nodes = True
        nt = world.node_tree
        nt.nodes.clear()
        out = nt.nodes.new("ShaderNodeOutputWorld")
        bg = nt.nodes.new("ShaderNodeBackground")
        bg.inputs["Strength"].default_value = 1.0
        nt.links.new(bg.outputs["Background"], out.inputs["Surface"])
        if env["kind"] == "uniform":
            bg.inputs["Color"].default_value = (*env["radiance"], 1.0)
            return
        # Gradient: horizon → zenith by sqrt(up) above the horizon, horizon → nadir by
        # sqrt(-up) below, exactly as `Environment::radiance` in studio.rs.
        coords = nt.nodes.new("ShaderNodeTexCoord")
        norm = nt.nodes.new("ShaderNodeVectorMath")
        norm.operation = "NORMALIZE"
        nt.links.new(coords.outputs["Generated"], norm.inputs[0])
        sep = nt.nodes.new("ShaderNodeSeparateXYZ")
        nt.links.new(norm.outputs["Vector"], sep.inputs[0])

        def factor(sign):
            scale = nt.nodes.new("ShaderNodeMath")
            scale.operation = "MULTIPLY"
            scale.inputs[1].default_value = sign
            nt.links.new(sep.outputs["Z"], scale.inputs[0])
            clamp = nt.nodes.new("ShaderNodeMath")
            clamp.operation = "MAXIMUM"
            clamp.inputs[1].default_value = 0.0
            nt.links.new(scale.outputs[0], clamp.inputs[0])
            root = nt.nodes.new("ShaderNodeMath")
            root.operation = "SQRT"
            nt.links.new(clamp.outputs[0], root.inputs[0])
            return root.outputs[0]

        def mix(fac, a, b):
            node = nt.nodes.new("ShaderNodeMix")
            node.data_type = "RGBA"
            node.blend_type = "MIX"
            nt.links.new(fac, node.inputs["Factor"])
            sockets = [s for s in node.inputs if s.type == "RGBA"]
            if isinstance(a, (list, tuple)):
                sockets[0].default_value = (*a, 1.0)
            else:
                nt.links.new(a, sockets[0])
            sockets[1].default_value = (*b, 1.0)
            return [s for s in node.outputs if s.type == "RGBA"][0]

        upper = mix(factor(1.0), env["horizon"], env["zenith"])
        full = mix(factor(-1.0), upper, env["nadir"])
        nt.links.new(full, bg.inputs["Color"])

    # ---- render ----------------------------------------------------------------------------

    def configure_output(self, req):
        """What every render needs, whatever its light transport: size, samples, seed, a
        scene-linear float frame over a transparent film for the Rust side to tone map."""
        scene = bpy.context.scene
        r = scene.render
        c = scene.cycles
        r.resolution_x = req["width"]
        r.resolution_y = req["height"]
        r.resolution_percentage = 100
        r.film_transparent = True
        r.use_compositing = False
        r.use_sequencer = False
        # Scene-linear output; the Rust side applies the job's tone curve and background.
        scene.view_settings.view_transform = "Standard"
        scene.view_settings.look = "None"
        scene.view_settings.exposure = 0.0
        scene.view_settings.gamma = 1.0
        # Exactly the requested samples in every pixel (the native engine has no adaptivity).
        c.samples = req["samples"]
        c.use_adaptive_sampling = False
        c.seed = req["seed"] % (2**31)
        c.use_animated_seed = False
        c.use_denoising = bool(req["denoise"])
        if c.use_denoising:
            c.denoiser = "OPENIMAGEDENOISE"
            c.denoising_input_passes = "RGB_ALBEDO_NORMAL"
            c.denoising_prefilter = "ACCURATE"
            if hasattr(c, "denoising_use_gpu"):
                c.denoising_use_gpu = self.device != "CPU"
        img = r.image_settings
        img.file_format = "OPEN_EXR"
        img.color_mode = "RGBA"
        img.color_depth = "32"
        img.exr_codec = "NONE"

    def configure(self, req):
        """The studio's light transport, matched to the native path tracer (a subclass may keep
        Blender's defaults instead: bench/plain_cycles.py)."""
        c = bpy.context.scene.cycles
        bounces = req["max_bounces"]
        c.max_bounces = bounces
        c.diffuse_bounces = bounces
        c.glossy_bounces = bounces
        c.transmission_bounces = bounces
        c.transparent_max_bounces = max(bounces, 8)
        # Unbiased like the native path tracer: no clamping, no glossy blur, a box pixel filter.
        c.sample_clamp_direct = 0.0
        c.sample_clamp_indirect = 0.0
        c.blur_glossy = 0.0
        c.pixel_filter_type = "BOX"
        c.filter_width = 1.0

    def render(self, req):
        if not self.model_objects:
            raise ValueError("render before load: no model is loaded")
        self.configure_output(req)
        self.configure(req)
        self.apply_studio(req)

        out = req["out"]
        exr = out + ".exr"
        bpy.context.scene.render.filepath = exr
        self.stats = {}
        t0 = time.perf_counter()
        bpy.ops.render.render(write_still=True)
        t_end = time.perf_counter()
        st = self.stats
        first = st.get("first_sample", t0)
        den = t_end
        if req["denoise"] and "partial" in st:
            # Cycles does not report when denoising starts: extrapolate the sampling rate seen
            # in progress reports to the full count; the rest of the time is the denoiser's.
            done, total, t_done = st["partial"]
            den = first + (t_done - first) * total / done
        den = min(max(den, first), t_end)

        t1 = time.perf_counter()
        image = bpy.data.images.load(exr, check_existing=False)
        try:
            w, h = image.size
            if (w, h) != (req["width"], req["height"]):
                raise RuntimeError(f"rendered {w}x{h}, asked for {req['width']}x{req['height']}")
            pixels = np.empty(w * h * 4, dtype=np.float32)
            image.pixels.foreach_get(pixels)
            straight = image.alpha_mode == "STRAIGHT"
        finally:
            bpy.data.images.remove(image)
        if straight:
            # Hand back premultiplied colour whatever Blender's buffer convention is.
            px = pixels.reshape(-1, 4)
            px[:, :3] *= px[:, 3:4]
        pixels.astype("<f4").tofile(out)
        os.remove(exr)
        readback_s = time.perf_counter() - t1
        return {
            "sync_s": first - t0,
            "render_s": den - first,
            "denoise_s": t_end - den,
            "readback_s": readback_s,
            "device": self.device,
            "alpha_mode": "straight" if straight else "premultiplied",
        }


def make_ground_mesh():
    mesh = bpy.data.meshes.new("lightbox_ground")
    h = 0.5
    mesh.from_pydata([(-h, -h, 0), (h, -h, 0), (h, h, 0), (-h, h, 0)], [], [(0, 1, 2, 3)])
    mesh.update()
    return mesh


def world_bounds(meshes):
    """Axis-aligned world bounds from each object's box corners, in glTF's Y-up frame.

    Same construction as the native `Scene::bounds` (mesh box corners through the instance
    transform), so both engines frame the same box."""
    lo = [math.inf] * 3
    hi = [-math.inf] * 3
    for obj in meshes:
        mw = obj.matrix_world
        for corner in obj.bound_box:
            p = mw @ Vector(corner)
            # Blender (x, y, z) → glTF (x, z, -y).
            q = (p.x, p.z, -p.y)
            for i in range(3):
                lo[i] = min(lo[i], q[i])
                hi[i] = max(hi[i], q[i])
    return [lo, hi]


def pick_device():
    """OptiX > CUDA > CPU, whichever this machine really has; returns (kind, device names)."""
    forced = os.environ.get("LIGHTBOX_CYCLES_DEVICE", "").upper()
    order = ["OPTIX", "CUDA"]
    if forced in ("CPU",):
        return "CPU", ["CPU"]
    if forced in ("OPTIX", "CUDA"):
        order = [forced]
    try:
        prefs = bpy.context.preferences.addons["cycles"].preferences
    except (KeyError, AttributeError):
        return "CPU", ["CPU"]
    for kind in order:
        try:
            prefs.compute_device_type = kind
        except TypeError:
            continue
        try:
            prefs.refresh_devices()
        except AttributeError:
            prefs.get_devices()
        devices = [d for d in prefs.devices if d.type == kind]
        if devices:
            for d in prefs.devices:
                d.use = d.type == kind
            return kind, [d.name for d in devices]
    try:
        prefs.compute_device_type = "NONE"
    except TypeError:
        pass
    return "CPU", ["CPU"]


def main(worker_class=None):
    worker = (worker_class or Worker)()
    try:
        worker.setup()
    except Exception as exc:  # noqa: BLE001 - reported to Rust, then exit
        send({"op": "error", "id": None, "message": f"worker set-up failed: {exc}"})
        return 1
    send(
        {
            "op": "ready",
            "blender": bpy.app.version_string,
            "device": worker.device,
            "devices": worker.devices,
            "startup_s": time.perf_counter() - T_START,
            "pid": os.getpid(),
        }
    )
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req_id = None
        try:
            req = json.loads(line)
            req_id = req.get("id")
            op = req.get("op")
            if op == "quit":
                send({"op": "bye", "id": req_id})
                return 0
            if op == "load":
                reply = worker.load(req)
                reply.update(op="loaded", id=req_id)
            elif op == "render":
                worker.render_id = req_id
                reply = worker.render(req)
                reply.update(op="rendered", id=req_id)
            elif op == "ping":
                reply = {"op": "pong", "id": req_id}
            else:
                raise ValueError(f"unknown op {op!r}")
            send(reply)
        except Exception as exc:  # noqa: BLE001 - every failure goes back as a reply
            traceback.print_exc(file=sys.stderr)
            send({"op": "error", "id": req_id, "message": f"{type(exc).__name__}: {exc}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
