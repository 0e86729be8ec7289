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

# Run every test: unit tests and integration tests, which start and stop their own servers.
test: build
    cargo test --workspace --no-fail-fast

# Formatting and lints, as CI wants them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Foundation benchmark: job latency, runtime vs bare async-nats throughput, start-up, RSS, convert.
bench: build
    cargo build --release -p lightbox-convert --bins
    cargo run --release -q -p lightbox-tests --bin bench-foundation

# Renderer benchmark: the procedural bearing at 512² 64 spp (denoised), 1024² 128 spp and a 12-frame
# turntable, side by side with Blender 5.0 Cycles CPU (bpy, installed into .tools/bpy on first use).
bench-render *ARGS: setup
    test -x .tools/bpy/bin/python || (python3 -m venv .tools/bpy && .tools/bpy/bin/pip install -q bpy==5.0.1)
    cargo run --release -q -p render-runtime --example bench_render -- --blender-python .tools/bpy/bin/python {{ARGS}}

# Render-function benchmark: a 512² thumbnail through NATS and S3 next to the bare render, and
# light-queue throughput.
bench-render-e2e: setup
    cargo build --release -q -p lightbox-render --bins
    cargo run --release -q -p lightbox-tests --bin bench-render-e2e

# Fault injection: 300 mixed jobs while workers are SIGKILLed, nats-server restarts and S3 stops for
# 20 s; ends with `jobs=N kills=N restarts=N redeliveries=N lost=N duplicated=N p50_ms=N p99_ms=N`.
chaos: build
    cargo run -q -p lightbox-tests --bin chaos

# Tessellation benchmark: the 140-part bearing STEP → GLB next to OCCT's RWGltf_CafWriter path.
bench-tessellate: setup
    cargo run --release -q -p lightbox-tessellate --example bench_tessellate
