# syntax=docker/dockerfile:1.7
# lightbox-convert: images in, WebP/PNG/JPEG out; GLB <-> USD. Needs only the C++ runtime:
# libwebp is built from source and Draco (glTF mesh compression) linked statically, and convert
# links no Embree (scene crate only).
#
# Full build from a clean checkout, with the repository root as context (.dockerignore keeps
# target/, .tools/, .lightbox/ and .git out of it):
#   DOCKER_BUILDKIT=1 docker build -f infra/docker/convert.Dockerfile -t lightbox-convert .
#   podman build -f infra/docker/convert.Dockerfile -t lightbox-convert .
# CI builds the runtime stage alone from host-built release binaries (tools/images.sh).
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

# Builder: the same in every function's Dockerfile except for its -dev packages (Draco's, for
# the scene crate's KHR_draco_mesh_compression decoder, linked statically).
# The cargo registry and the target folder are cache mounts shared by all of them, so a rebuild
# after a source change recompiles only the crates that changed.
FROM ${RUST_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++=4:12.2.0-3 libdraco-dev=1.5.5+dfsg-2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,id=lightbox-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=lightbox-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p lightbox-convert --bin lightbox-convert \
    && install -D -m 0755 target/release/lightbox-convert /out/lightbox-convert

FROM ${RUNTIME_IMAGE}
# runtime-packages: libstdc++6
# ca-certificates: NATS over TLS and S3 over HTTPS check servers against the system roots.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20250419~deb12u2 \
       libstdc++6=12.2.0-14+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin lightbox
COPY --from=build /out/lightbox-convert /usr/local/bin/lightbox-convert
USER 10001
ENV LIGHTBOX_LOG_FORMAT=json
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["lightbox-convert", "--check"]
ENTRYPOINT ["lightbox-convert"]
