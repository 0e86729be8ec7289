#!/usr/bin/env bash
# Installs Blender as a Python module (PyPI bpy 5.0.1, CPython 3.11 only) into .tools/bpy for the
# Cycles engine, its tests and the Cycles benchmarks. Large (about 0.8 GiB); skipped when present.
# Then the benchmarks' pinned, hash-checked extras (tools/requirements-bench.txt: FLIP) into the
# same venv, again when that list changes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LIGHTBOX_TOOLS_DIR:-$root/.tools}/bpy"
bench_extras() {
  local stamp="$venv/.lightbox-bench.sha256" want
  want="$(sha256sum "$root/tools/requirements-bench.txt" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup-bpy: installing benchmark extras into $venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --require-hashes \
      -r "$root/tools/requirements-bench.txt"
    echo "$want" > "$stamp"
  fi
}
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import bpy" >/dev/null 2>&1; then
  bench_extras
  exit 0
fi
python=""
for candidate in python3.11 python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    python="$candidate"; break
  fi
done
[ -n "$python" ] || { echo "setup-bpy: bpy 5.0.1 needs CPython 3.11 (python3.11 not found)" >&2; exit 1; }
echo "setup-bpy: installing bpy 5.0.1 into $venv (large download)" >&2
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check bpy==5.0.1
"$venv/bin/python" -c "import bpy" >/dev/null
bench_extras
