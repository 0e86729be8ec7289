#!/usr/bin/env bash
# The heavy benchmark on a GPU machine, in one command and under 5 minutes:
# the procedural bearing (1.5 M triangles) at 2048x2048, 256 spp, OIDN, and a 24-frame
# turntable (512x512, 64 spp), on Cycles (OptiX > CUDA, picked by the worker) and on the native
# engine (CPU, all cores), with the cross-engine SSIM of the still.
#
# Needs `.gpu/` from tools/gpu-prepare.sh (no internet, no Rust needed here). Cycles runs when
# .gpu/python (gpu-prepare.sh --with-cycles) or LIGHTBOX_BLENDER_PYTHON is there; otherwise only
# the native engine runs and the script says so. Results: stdout, and $OUT/gpu-check.log plus the
# stills under $OUT when OUT is set.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out="${OUT:-/tmp/lightbox-gpu-check}"
mkdir -p "$out"
log="$out/gpu-check.log"
: > "$log"
say() { echo "$@" | tee -a "$log"; }

[[ -x .gpu/bin/bench_engines ]] || { say "missing .gpu/bin/bench_engines: run tools/gpu-prepare.sh first"; exit 1; }
export LD_LIBRARY_PATH="$PWD/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONUNBUFFERED=1

say "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$log" || say "no nvidia-smi"
say "cpus: $(nproc)"

engines=native
if [[ -z ${LIGHTBOX_BLENDER_PYTHON:-} && -x .gpu/python/bin/python3.11 ]]; then
    export LD_LIBRARY_PATH="$PWD/.gpu/python/lib:$LD_LIBRARY_PATH"
    export LIGHTBOX_BLENDER_PYTHON="$PWD/.gpu/python/bin/python3.11"
fi
if [[ -n ${LIGHTBOX_BLENDER_PYTHON:-} ]] && "$LIGHTBOX_BLENDER_PYTHON" -c 'import bpy' >/dev/null 2>&1; then
    engines=cycles,native
else
    say "Blender's Python (bpy 5.0.1) not available: Cycles skipped (gpu-prepare.sh --with-cycles)"
fi

# Each run has its own time limit so the whole check stays under 5 minutes.
run() {
    local limit=$1; shift
    say "== $*"
    timeout --kill-after=10 "$limit" .gpu/bin/bench_engines "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    [[ $rc == 0 ]] || say "exit $rc$([[ $rc == 124 ]] && echo ' (time limit)')"
    return 0
}

common=(--detail 1.0 --ref-samples 0 --out "$out")
if [[ $engines == cycles,native ]]; then
    # Cycles first: the GPU is what this machine is for. Still, turntable, and warm-worker gain.
    run 150 "${common[@]}" --engines cycles --size 2048 --samples 256 \
        --frames 24 --turntable-size 512 --turntable-samples 64
fi
# Native on the CPU cores: the same still, and the turntable.
run 120 "${common[@]}" --engines native --size 2048 --samples 256 --only still
run 60 "${common[@]}" --engines native --size 512 --samples 64 --frames 24 --only turntable
if [[ -f $out/still-cycles.png && -f $out/still-native.png ]]; then
    say "== cross-engine parity of the 2048x2048 still"
    .gpu/bin/bench_engines --compare "$out/still-native.png" "$out/still-cycles.png" 2>&1 | tee -a "$log"
fi
say "== done; log at $log"
