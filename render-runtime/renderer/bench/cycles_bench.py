"""Render a GLB with Blender Cycles on the CPU and print timings as JSON.

Reference side of `render-runtime/examples/bench_render.rs`. Needs Blender as a Python module
(PyPI `bpy` 5.0.1 on CPython 3.11):

    python cycles_bench.py --glb bearing.glb --width 512 --height 512 --samples 64 --denoise

The studio approximates the native "product" preset: a 3/4 camera framed on the bounds,
key/fill/rim area lights, a grey world and a shadow catcher, so both engines do comparable work.
Output: one JSON line {"import_s", "render_s", "frames", "width", "height", "samples", ...}.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--glb", required=True)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--frames", type=int, default=1, help="turntable frames (1 = still)")
    p.add_argument("--denoise", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="0 = all cores")
    p.add_argument("--out", default=None, help="directory for the rendered images")
    return p.parse_args(argv)


def scene_bounds(objects):
    from mathutils import Vector

    lo = Vector((math.inf,) * 3)
    hi = Vector((-math.inf,) * 3)
    for obj in objects:
        if obj.type != "MESH":
            continue
        for corner in obj.bound_box:
            w = obj.matrix_world @ Vector(corner)
            lo = Vector(map(min, lo, w))
            hi = Vector(map(max, hi, w))
    return lo, hi


def look_at(obj, target):
    direction = target - obj.location
    obj.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()


def spherical(yaw, pitch):
    """Blender is Z-up; the glTF importer maps glTF +Y to Blender +Z and glTF +Z to Blender -Y."""
    from mathutils import Vector

    x = math.cos(pitch) * math.sin(yaw)
    up = math.sin(pitch)
    z_gltf = math.cos(pitch) * math.cos(yaw)
    return Vector((x, -z_gltf, up))


def main():
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    args = parse_args(argv)

    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    t0 = time.perf_counter()
    bpy.ops.import_scene.gltf(filepath=os.path.abspath(args.glb))
    import_s = time.perf_counter() - t0

    scene = bpy.context.scene
    meshes = [o for o in scene.objects if o.type == "MESH"]
    lo, hi = scene_bounds(meshes)
    center = (lo + hi) * 0.5
    radius = (hi - lo).length * 0.5

    # Camera: yaw 35, pitch 25, vertical fov 30, framed on the bounding sphere.
    cam_data = bpy.data.cameras.new("camera")
    cam_data.sensor_fit = "VERTICAL"
    cam_data.angle_y = math.radians(30.0)
    cam = bpy.data.objects.new("camera", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    distance = radius / math.sin(math.radians(15.0)) * 0.95

    # Key / fill / rim area lights relative to the camera, as in the native preset.
    rig = [(-45.0, 45.0, 5.0, 3.0, 2.4), (60.0, 15.0, 6.0, 4.0, 0.7), (165.0, 50.0, 5.0, 2.5, 2.0)]
    lights = []
    for i, (az, el, dist, size, irradiance) in enumerate(rig):
        data = bpy.data.lights.new(f"light{i}", type="AREA")
        data.shape = "SQUARE"
        data.size = size * radius
        # Blender area light power (W) for radiance L over area A: P = L * A * pi.
        d = dist * radius
        area = (size * radius) ** 2
        data.energy = irradiance * d * d / area * area * math.pi
        obj = bpy.data.objects.new(f"light{i}", data)
        scene.collection.objects.link(obj)
        lights.append((obj, az, el, d))

    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs[0].default_value = (0.42, 0.42, 0.42, 1.0)
    scene.world = world

    # Shadow catcher plane under the model.
    bpy.ops.mesh.primitive_plane_add(size=radius * 40.0, location=(center.x, center.y, lo.z))
    bpy.context.active_object.is_shadow_catcher = True

    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = args.samples
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = args.denoise
    if args.denoise:
        scene.cycles.denoiser = "OPENIMAGEDENOISE"
    scene.cycles.max_bounces = 6
    scene.render.film_transparent = True
    scene.render.resolution_x = args.width
    scene.render.resolution_y = args.height
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    if args.threads > 0:
        scene.render.threads_mode = "FIXED"
        scene.render.threads = args.threads

    out_dir = args.out or tempfile.mkdtemp(prefix="cycles-bench-")
    frame_times = []
    t_render = time.perf_counter()
    for frame in range(args.frames):
        yaw = math.radians(35.0 + 360.0 * frame / max(args.frames, 1))
        pitch = math.radians(25.0)
        cam.location = center + spherical(yaw, pitch) * distance
        look_at(cam, center)
        for obj, az, el, d in lights:
            obj.location = center + spherical(yaw + math.radians(az), math.radians(el)) * d
            look_at(obj, center)
        scene.render.filepath = os.path.join(out_dir, f"frame_{frame + 1:04d}.png")
        t = time.perf_counter()
        bpy.ops.render.render(write_still=True)
        frame_times.append(time.perf_counter() - t)
    render_s = time.perf_counter() - t_render

    print(
        json.dumps(
            {
                "engine": "cycles",
                "blender": bpy.app.version_string,
                "import_s": import_s,
                "render_s": render_s,
                "frame_s": frame_times,
                "frames": args.frames,
                "width": args.width,
                "height": args.height,
                "samples": args.samples,
                "denoise": args.denoise,
                "out": out_dir,
            }
        )
    )


if __name__ == "__main__":
    main()
