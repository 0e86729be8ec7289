# Lightbox tasks. Run them through ./just, which installs the pinned tools on first use.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The CLI, built where cargo puts binaries (CARGO_TARGET_DIR is honoured).
lightbox := "cargo run -q -p lightbox-cli --bin lightbox --"

# List the recipes.
default:
    @./just --list

# Install Debian packages and the pinned tools (nats-server, SeaweedFS, just) into .tools/.
setup:
    bash tools/setup.sh

# Build every binary (functions and the lightbox CLI).
build: setup
    cargo build --workspace --bins

# The Quick start: start the local stack, submit a demo job, show its progress, fetch the result.
demo: build
    {{lightbox}} up --detach
    {{lightbox}} demo

# Run the local stack in the foreground (Ctrl-C stops it).
up: build
    {{lightbox}} up

# Stop a stack started with `demo` or `up --detach`.
down:
    {{lightbox}} down

# The Cycles engine's tests need Blender's Python module, installed once into .tools/bpy; the
# integration tests and the Python client's tests (clients/python) start and stop their own servers.
# Run every test: Rust unit and integration tests, then the Python client's tests.
test: build
    bash tools/setup-bpy.sh
    cargo test --workspace --no-fail-fast
    bash clients/python/run-tests.sh

# Installs its pinned packages into .tools/pyclient-venv on first use; ARGS go to pytest.
# The Python client's tests against real servers and the function binaries, as the `backend` user.
test-python *ARGS: build
    bash clients/python/run-tests.sh {{ARGS}}

# Formatting and lints, as CI wants them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Foundation benchmark: job latency, runtime vs bare async-nats throughput, start-up, RSS, convert.
bench: build
    cargo build --release -p lightbox-convert --bins
    cargo run --release -q -p lightbox-tests --bin bench-foundation

# Renderer benchmark: first the fair table of #17 (512² 64 spp: native, the Cycles engine and plain
# Blender Cycles at equal spp, mean FLIP against a Cycles reference, time to reach Cycles-64-spp's
# FLIP, each goal beside its figure), then the procedural bearing at 512² 64 spp, 1024² 128 spp and
# a 12-frame turntable next to plain Cycles (bpy and FLIP installed into .tools/bpy on first use).
bench-render *ARGS: setup
    bash tools/setup-bpy.sh
    cargo run --release -q -p render-runtime --example bench_render -- --blender-python .tools/bpy/bin/python {{ARGS}}

# Render-function benchmark: a 512² thumbnail through NATS and S3 next to the bare render, and
# light-queue throughput.
bench-render-e2e: setup
    cargo build --release -q -p lightbox-render --bins
    cargo run --release -q -p lightbox-tests --bin bench-render-e2e

# Fault injection: 300 mixed jobs (conversions, tessellations, render thumbnails) while workers are
# SIGKILLed, nats-server restarts and S3 stops for 20 s; ends with
# `jobs=N kills=N restarts=N redeliveries=N lost=N duplicated=N p50_ms=N p99_ms=N`.
chaos: build
    cargo run -q -p lightbox-tests --bin chaos

# Fault injection on the production shape (a few minutes, so not in CI): a 3-node JetStream cluster
# with R3 streams and KV, bind-only workers as their auth.conf users on the three-URL server list;
# SIGKILLs the node leading JOBS, EVENTS and KV_jobs in turn, stops S3 for 20 s, partitions one node for 30 s, kills
# workers, scales to zero for 3x ack_wait with jobs in flight; ends with
# `jobs=N kills=N leader_changes=N lost=0 duplicated=0 stuck=0 orphaned_objects=0` (non-zero exit otherwise).
chaos-cluster: build
    cargo run -q -p lightbox-tests --bin chaos -- --cluster

# The bad-input corpus (tests/corpus/) against real workers, printing every case's outcome.
corpus: build
    cargo test -p lightbox-tests --test tests bad_input_corpus -- --nocapture

# Fuzzing: job parsing, GLB import, USD import and image decoding, SECS seconds each, with cargo-fuzz
# (pinned into .tools/cargo) and generated seeds; one line per target, fails if any target crashed.
fuzz SECS="60":
    bash tools/fuzz.sh {{SECS}}

# Tessellation benchmark: the 140-part bearing STEP → GLB next to OCCT's RWGltf_CafWriter path.
bench-tessellate: setup
    cargo run --release -q -p lightbox-tessellate --example bench_tessellate

# Engines side by side on this CPU: native, the Cycles engine and plain Cycles at equal spp with mean
# FLIP against one high-sample Cycles reference, a turntable each, and the warm-worker gain.
bench-engines *ARGS: setup
    bash tools/setup-bpy.sh
    cargo run --release -q -p render-runtime --example bench_engines -- {{ARGS}}

# Per asset of ../shared/assets: collect and import time, native render time at 512² 64 spp, native
# vs Cycles (SSIM over the object, FLIP) at 256² 32 spp, and multi-file USD import next to usd-core
# opening the same stage; ARGS as bench_assets takes them (--compare-size 512 --compare-samples 64).
# Real-world asset benchmark: import, render and native-vs-Cycles similarity per asset.
bench-assets *ARGS: setup
    bash tools/setup-bpy.sh
    cargo run --release -q -p render-runtime --example bench_assets -- {{ARGS}}

# The prepared GPU check (2048² 256 spp and a 24-frame turntable, both engines where possible):
# `tools/gpu-prepare.sh` here, then run `tools/gpu-check.sh` on the GPU host with `.gpu/` carried.
gpu-check:
    bash tools/gpu-prepare.sh
    bash tools/gpu-check.sh
