#!/usr/bin/env bash
# Installs Blender as a Python module (PyPI bpy 5.0.1, CPython 3.11 only) into .tools/bpy for the
# Cycles engine, its tests and the Cycles benchmarks. Large (about 0.8 GiB); skipped when present.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LIGHTBOX_TOOLS_DIR:-$root/.tools}/bpy"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import bpy" >/dev/null 2>&1; then
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
