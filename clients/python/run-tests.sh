#!/usr/bin/env bash
# Runs the Python client's tests against real servers (nats-server with infra/nats/auth.conf,
# SeaweedFS, the function binaries). Installs the pinned packages of
# tools/requirements-pyclient.txt and the client itself into .tools/pyclient-venv first.
# Needs the pinned tools (tools/setup.sh) and the binaries (cargo build --workspace --bins);
# `./just test` provides both. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="${LIGHTBOX_TOOLS_DIR:-$root/.tools}"
venv="$tools/pyclient-venv"
requirements="$root/tools/requirements-pyclient.txt"

stamp="$venv/.lightbox-requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "pyclient: installing pinned packages into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --only-binary=:all: --require-hashes \
    -r "$requirements"
  echo "$want" > "$stamp"
fi
# The client itself, as a backend would install it (not from the source tree).
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation \
  --force-reinstall "$root/clients/python"

# pytest run from the repository root: the tests import the installed package, not the sources.
cd "$root"
status=0
"$venv/bin/pytest" "$root/clients/python/tests" "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "pyclient: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$status"
