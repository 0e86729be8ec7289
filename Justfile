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
