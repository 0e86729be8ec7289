# syntax=docker/dockerfile:1.7
# The `lightbox` CLI, for operators and for the Kubernetes Job that runs `lightbox infra apply`
# before the functions start. It links what the functions link (it runs their code locally):
# Embree and OCCT.
#
# Full build from a clean checkout, with the repository root as context:
#   DOCKER_BUILDKIT=1 docker build -f infra/docker/cli.Dockerfile -t lightbox-cli .
# CI builds the runtime stage alone from host-built release binaries (tools/images.sh).
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

# Builder: as in every function's Dockerfile, plus the render and tessellate -dev packages.
FROM ${RUST_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++=4:12.2.0-3 libembree-dev=3.13.5+dfsg-2 \
       libocct-data-exchange-dev=7.6.3+dfsg1-7 libocct-ocaf-dev=7.6.3+dfsg1-7 \
       libocct-modeling-algorithms-dev=7.6.3+dfsg1-7 libocct-visualization-dev=7.6.3+dfsg1-7 \
       libdraco-dev=1.5.5+dfsg-2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,id=lightbox-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=lightbox-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p lightbox-cli --bin lightbox \
    && install -D -m 0755 target/release/lightbox /out/lightbox

FROM ${RUNTIME_IMAGE}
# runtime-packages: libembree3-3 libocct-data-exchange-7.6 libocct-foundation-7.6 libocct-modeling-algorithms-7.6 libocct-modeling-data-7.6 libocct-ocaf-7.6 libstdc++6
# ca-certificates: NATS over TLS and S3 over HTTPS check servers against the system roots.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20250419~deb12u2 libembree3-3=3.13.5+dfsg-2 \
       libocct-data-exchange-7.6=7.6.3+dfsg1-7 libocct-ocaf-7.6=7.6.3+dfsg1-7 \
       libocct-modeling-algorithms-7.6=7.6.3+dfsg1-7 libocct-modeling-data-7.6=7.6.3+dfsg1-7 \
       libocct-foundation-7.6=7.6.3+dfsg1-7 libstdc++6=12.2.0-14+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin lightbox
COPY --from=build /out/lightbox /usr/local/bin/lightbox
USER 10001
# The CLI writes downloads relative to its working directory; /tmp is writable under a
# read-only root filesystem.
WORKDIR /tmp
ENTRYPOINT ["lightbox"]
