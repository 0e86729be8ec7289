# lightbox-convert: images in, WebP/PNG/JPEG out. Build from the repository root:
#   docker build -f infra/docker/convert.Dockerfile -t lightbox-convert .
FROM rust:1.95-slim-bookworm AS build
# Draco (glTF mesh compression) is linked statically into the scene crate.
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++=4:12.2.0-3 libdraco-dev=1.5.5+dfsg-2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p lightbox-convert --bin lightbox-convert

FROM debian:bookworm-slim
# libwebp and Draco are linked statically, so the binary needs only the C++ runtime.
# runtime-packages: libstdc++6
RUN apt-get update \
    && apt-get install -y --no-install-recommends libstdc++6=12.2.0-14+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home lightbox
COPY --from=build /src/target/release/lightbox-convert /usr/local/bin/lightbox-convert
USER 10001
ENV LIGHTBOX_LOG_FORMAT=json
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["lightbox-convert", "--check"]
ENTRYPOINT ["lightbox-convert"]
