# syntax=docker/dockerfile:1.7
# lightbox-tessellate: STEP -> instanced GLB with OpenCASCADE 7.6 (Debian's libocct), through a
# C++ shim built by the crate's build script.
#
# Full build from a clean checkout, with the repository root as context:
#   DOCKER_BUILDKIT=1 docker build -f infra/docker/tessellate.Dockerfile -t lightbox-tessellate .
# CI builds the runtime stage alone from host-built release binaries (tools/images.sh).
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

# Builder: as in every function's Dockerfile, plus a C++ compiler, OCCT's headers and libraries,
# and Draco (the scene crate's glTF mesh decompression, linked statically).
FROM ${RUST_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++=4:12.2.0-3 \
       libocct-data-exchange-dev=7.6.3+dfsg1-7 libocct-ocaf-dev=7.6.3+dfsg1-7 \
       libocct-modeling-algorithms-dev=7.6.3+dfsg1-7 libocct-visualization-dev=7.6.3+dfsg1-7 \
       libdraco-dev=1.5.5+dfsg-2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,id=lightbox-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=lightbox-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p lightbox-tessellate --bin lightbox-tessellate \
    && install -D -m 0755 target/release/lightbox-tessellate /out/lightbox-tessellate

FROM ${RUNTIME_IMAGE}
# runtime-packages: libocct-data-exchange-7.6 libocct-foundation-7.6 libocct-modeling-algorithms-7.6 libocct-modeling-data-7.6 libocct-ocaf-7.6 libstdc++6
# ca-certificates: NATS over TLS and S3 over HTTPS check servers against the system roots.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20250419~deb12u2 \
       libocct-data-exchange-7.6=7.6.3+dfsg1-7 libocct-ocaf-7.6=7.6.3+dfsg1-7 \
       libocct-modeling-algorithms-7.6=7.6.3+dfsg1-7 libocct-modeling-data-7.6=7.6.3+dfsg1-7 \
       libocct-foundation-7.6=7.6.3+dfsg1-7 libstdc++6=12.2.0-14+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin lightbox
COPY --from=build /out/lightbox-tessellate /usr/local/bin/lightbox-tessellate
USER 10001
ENV LIGHTBOX_LOG_FORMAT=json
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["lightbox-tessellate", "--check"]
ENTRYPOINT ["lightbox-tessellate"]
