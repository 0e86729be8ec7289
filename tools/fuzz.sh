#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target in fuzz/ for SECS seconds each (default 60) and prints one line per
# target: runs, exec/s, corpus size, crashed yes(N new artifacts)/no. Exits non-zero if any target crashed; the input is
# in fuzz/artifacts/<target>/ (copy it to fuzz/regressions/<target>/ once the bug is fixed).
#
# Usage: tools/fuzz.sh [SECS] [TARGET...]
#   LIGHTBOX_FUZZ_SANITIZER  address (default) or none
#   LIGHTBOX_TOOLS_PYTHON    a Python with Pixar's `pxr` for the .usdc seeds (default .tools/venv)
#   CARGO_BUILD_JOBS         build parallelism (default 1)
#   LIGHTBOX_FUZZ_KEEP_GOING set: fork mode, carry on past crashes, OOMs and timeouts
#
# cargo-fuzz needs nightly-only flags (-Zsanitizer, -Cpasses=sancov-module, ...); the stable
# toolchain accepts them with RUSTC_BOOTSTRAP=1, which is set here and nowhere else.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(job_parsing glb_import usd_import image_decode)

cargo_fuzz_version=0.13.2
tools="$root/.tools/cargo"
if ! "$tools/bin/cargo-fuzz" fuzz --version 2>/dev/null | grep -q " $cargo_fuzz_version\$"; then
  cargo install --locked cargo-fuzz --version "$cargo_fuzz_version" --root "$tools"
fi
export PATH="$tools/bin:$PATH"
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
sanitizer="${LIGHTBOX_FUZZ_SANITIZER:-address}"
# -O: release build without cargo-fuzz's global debug assertions, so dependencies behave as in
# production (a wrapping subtraction in a dependency is not reported); the project's own crates
# still get overflow checks and debug assertions from fuzz/Cargo.toml's profile overrides.
build_flags=(-O -s "$sanitizer")
python="${LIGHTBOX_TOOLS_PYTHON:-$root/.tools/venv/bin/python}"

# Longest input per target: room for every seed, small enough to keep mutations effective.
max_len() {
  case "$1" in
    job_parsing) echo 8192 ;;
    image_decode) echo 65536 ;;
    usd_import) echo 65536 ;;
    *) echo 131072 ;;
  esac
}

cargo fuzz build "${build_flags[@]}"
bin_dir="fuzz/target/x86_64-unknown-linux-gnu/release"
log_dir="fuzz/target/fuzz-logs"
mkdir -p "$log_dir"

# Seeds: regenerated from the project's generators on every run, plus every regression input.
for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus"
  rm -f "$corpus"/seed-*
  ASAN_OPTIONS=detect_odr_violation=0:detect_leaks=0 LIGHTBOX_FUZZ_WRITE_SEEDS="$corpus" \
    "$bin_dir/$target" >/dev/null
  if [ -d "fuzz/regressions/$target" ]; then
    cp fuzz/regressions/"$target"/* "$corpus"/ 2>/dev/null || true
  fi
done
# Binary USD (usdc) seeds need Pixar's writer: converted from the generated usda when available.
if [[ " ${targets[*]} " == *" usd_import "* ]] && "$python" -c "import pxr" 2>/dev/null; then
  "$python" - fuzz/corpus/usd_import <<'EOF'
import pathlib, sys
from pxr import Sdf
for usda in sorted(pathlib.Path(sys.argv[1]).glob("seed-*.usda")):
    assert Sdf.Layer.FindOrOpen(str(usda)).Export(str(usda.with_suffix(".usdc")))
EOF
fi

# Keep going after a crash (libFuzzer's fork mode) to collect every crash in the time given.
keep_going=()
if [ -n "${LIGHTBOX_FUZZ_KEEP_GOING:-}" ]; then
  keep_going=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
fi

failed=()
for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  artifacts="fuzz/artifacts/$target"
  log="$log_dir/$target.log"
  mkdir -p "$artifacts"
  marker="$log_dir/$target.start"
  touch "$marker"
  start=$(date +%s)
  status=0
  cargo fuzz run "${build_flags[@]}" "$target" "$corpus" -- \
    -max_total_time="$secs" -max_len="$(max_len "$target")" -timeout=20 \
    -rss_limit_mb=2048 -malloc_limit_mb=256 -print_final_stats=1 "${keep_going[@]}" \
    >"$log" 2>&1 || status=$?
  elapsed=$(($(date +%s) - start))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  if [ -z "$runs" ]; then # fork mode: the last status line, `#RUNS: cov: ... exec/s: N ...`
    status_line=$(grep -E '^#[0-9]+: cov:' "$log" | tail -1 || true)
    runs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$status_line")
    rate=$(sed -nE 's/.* exec\/s: ([0-9]+).*/\1/p' <<<"$status_line")
  fi
  size=$(find "$corpus" -type f | wc -l)
  found=$(find "$artifacts" -type f -newer "$marker" | wc -l)
  crashed=no
  if [ "$status" -ne 0 ] || [ "$found" -gt 0 ]; then
    crashed="yes($found)"
    failed+=("$target ($artifacts)")
  fi
  printf 'fuzz %-13s runs=%s exec_per_s=%s corpus=%s time_s=%s crashed=%s\n' \
    "$target" "${runs:-?}" "${rate:-?}" "$size" "$elapsed" "$crashed"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]}; logs in $log_dir/" >&2
  exit 1
fi
