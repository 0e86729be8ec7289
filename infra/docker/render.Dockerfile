# syntax=docker/dockerfile:1.7
# lightbox-render (native engine) for render.light, and render.heavy on CPU hosts
# (LIGHTBOX_QUEUE picks the queue). Links the system Embree 3.
#
# Full build from a clean checkout, with the repository root as context:
#   DOCKER_BUILDKIT=1 docker build -f infra/docker/render.Dockerfile -t lightbox-render .
# CI builds the runtime stage alone from host-built release binaries (tools/images.sh).
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

# Builder: as in every function's Dockerfile, plus Embree's headers and library.
FROM ${RUST_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libembree-dev=3.13.5+dfsg-2 \
       g++=4:12.2.0-3 libdraco-dev=1.5.5+dfsg-2 python3-pip=23.0.1+dfsg-1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Intel OIDN (the native engine's denoiser, loaded at run time) from the pinned, hash-checked
# pyoidn wheel, where tools/setup.sh puts it: the build copies its CPU runtime to release/oidn/lib.
RUN python3 -m pip install --no-cache-dir --break-system-packages --no-deps --require-hashes \
       --target .tools/pyoidn -r tools/requirements-oidn.txt \
    && ln -s /src/.tools/pyoidn/pyoidn/oidn .tools/oidn
RUN --mount=type=cache,id=lightbox-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=lightbox-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p lightbox-render --bin lightbox-render \
    && install -D -m 0755 target/release/lightbox-render /out/lightbox-render \
    && mkdir -p /out/oidn && cp -r target/release/oidn/lib /out/oidn/

FROM ${RUNTIME_IMAGE}
# runtime-packages: libembree3-3 libstdc++6
# ca-certificates: NATS over TLS and S3 over HTTPS check servers against the system roots.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20250419~deb12u2 libembree3-3=3.13.5+dfsg-2 \
       libstdc++6=12.2.0-14+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin lightbox
COPY --from=build /out/lightbox-render /usr/local/bin/lightbox-render
# OIDN's CPU runtime, where lightbox-render looks for it (../lib/lightbox/oidn/lib from its folder).
COPY --from=build /out/oidn/lib/ /usr/local/lib/lightbox/oidn/lib/
USER 10001
ENV LIGHTBOX_LOG_FORMAT=json LIGHTBOX_QUEUE=render.light
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["lightbox-render", "--check"]
ENTRYPOINT ["lightbox-render"]
