#!/usr/bin/env bash
# Prepares `.gpu/` for tools/gpu-check.sh on a GPU machine that has no internet and no Rust:
#   .gpu/bin/bench_engines   the engine benchmark, built here in release mode
#   .gpu/lib/                the shared libraries it needs beyond glibc (Embree, TBB, ...)
#   .gpu/python/             with --with-cycles: a copy of this machine's CPython 3.11 with
#                            PyPI bpy==5.0.1 installed into it (Blender Cycles, CUDA/OptiX)
#
# Usage: tools/gpu-prepare.sh [--with-cycles]
#
# Size: without Blender .gpu/ is about 50 MiB (Embree is most of it). Blender's Python module alone is ~0.8 GiB
# unpacked (the wheel ~0.3 GiB), far over the 64 MiB that the lent device machines accept per
# call, so --with-cycles is for GPU hosts you copy to yourself (rsync/scp). `.gpu/` is added to
# .git/info/exclude; pass it as a carried path (carry: [".gpu"]) when the command ships it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

with_cycles=0
for arg in "$@"; do
    case "$arg" in
        --with-cycles) with_cycles=1 ;;
        *) echo "usage: $0 [--with-cycles]" >&2; exit 2 ;;
    esac
done

grep -qxF '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu
mkdir -p .gpu/bin .gpu/lib

# 1. The benchmark binary (the GPU machine has no cargo and no crates.io).
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p render-runtime --example bench_engines
cp "$target/release/examples/bench_engines" .gpu/bin/
# Debug info is most of the binary; the device machines accept 64 MiB per call in all.
strip .gpu/bin/bench_engines

# 2. Its shared libraries, except the C library and loader every Linux has.
ldd .gpu/bin/bench_engines | awk '/=> \//{print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
        # The C and C++ runtimes are on every Linux (and newer there): never shadow them.
        libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libgcc_s.so*|libstdc++.so*) ;;
        *) cp -L "$lib" .gpu/lib/ && strip --strip-unneeded ".gpu/lib/$(basename "$lib")" ;;
    esac
done
# Embree loads nothing else at run time; TBB is linked directly.

# 3. Blender as a Python module, with the exact CPython it needs (3.11).
if [[ $with_cycles == 1 ]]; then
    py311="${PYTHON311:-$(command -v python3.11 || true)}"
    [[ -n $py311 ]] || { echo "python3.11 not found (set PYTHON311)" >&2; exit 1; }
    prefix="$("$py311" -c 'import sys; print(sys.base_prefix)')"
    echo "copying CPython 3.11 from $prefix"
    cp -a "$prefix" .gpu/python
    rm -rf .gpu/python/lib/python3.11/test .gpu/python/lib/python3.11/site-packages/*
    export LD_LIBRARY_PATH="$PWD/.gpu/python/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    .gpu/python/bin/python3.11 -m ensurepip -q
    .gpu/python/bin/python3.11 -m pip install -q --no-cache-dir bpy==5.0.1
    .gpu/python/bin/python3.11 -c 'import bpy; print("bpy", bpy.app.version_string)'
fi

du -sh .gpu
echo "prepared .gpu/ (run tools/gpu-check.sh on the GPU machine)"
