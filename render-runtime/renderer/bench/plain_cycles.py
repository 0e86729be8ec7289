"""Plain Blender Cycles: the project's studio as a Blender user would render it.

Run instead of `cycles/worker.py` by the benchmarks (`CyclesConfig::worker_script`), speaking the
same protocol. It places the same model, camera, area lights and world as the project's studio
(the Rust side resolves them, exactly as for the Cycles engine) and otherwise keeps Blender 5.0's
defaults: default bounces (12 total, 4 diffuse, 4 glossy, 12 transmission), light clamping and
glossy filter, the Blackman-Harris pixel filter, world importance sampling, OIDN denoising with
albedo and normal guides, and no shadow catcher.

What it shares with the engine is only what makes its frame comparable: the requested size,
samples (fixed: adaptive sampling off, so both render the same spp) and seed, and a scene-linear
float frame over a transparent film that the Rust side tone maps onto the studio background.
`LIGHTBOX_PLAIN_CYCLES_DEBUG=1` prints the settings it rendered with to stderr.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cycles"))

import worker  # noqa: E402  (redirects stdout for the protocol, as the engine's worker does)


class PlainWorker(worker.Worker):
    def configure(self, req):
        # Blender's defaults: nothing to set. Print what they are when asked.
        if os.environ.get("LIGHTBOX_PLAIN_CYCLES_DEBUG"):
            c = worker.bpy.context.scene.cycles
            names = ["max_bounces", "diffuse_bounces", "glossy_bounces", "transmission_bounces",
                     "transparent_max_bounces", "sample_clamp_indirect", "blur_glossy",
                     "pixel_filter_type", "filter_width", "denoiser", "use_light_tree"]
            print({n: getattr(c, n, None) for n in names}, file=sys.stderr)

    def apply_studio(self, req):
        super().apply_studio(dict(req, ground=None))

    def apply_environment(self, env):
        super().apply_environment(env)
        # Blender's default for a world: importance sampled.
        self.world.cycles.sampling_method = "AUTOMATIC"


if __name__ == "__main__":
    sys.exit(worker.main(PlainWorker))
