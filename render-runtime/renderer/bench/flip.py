"""Mean FLIP (NVIDIA's perceptual image difference, PyPI `flip-evaluator`) of test images
against one reference, for the render benchmarks.

    python flip.py REFERENCE.png TEST.png [TEST.png ...]

Prints one JSON line: {"flip": [mean FLIP of each test, in order]}. LDR FLIP on the encoded
(sRGB) images at FLIP's default 67 pixels per degree; 0 is identical, 1 is as different as black
and white.
"""

import json
import sys

import flip_evaluator


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    reference, tests = argv[0], argv[1:]
    means = []
    for test in tests:
        _, mean, _ = flip_evaluator.evaluate(reference, test, "LDR", applyMagma=False)
        means.append(float(mean))
    print(json.dumps({"flip": means}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
