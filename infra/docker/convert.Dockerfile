# lightbox-convert: images in, WebP/PNG/JPEG out. Build from the repository root:
#   docker build -f infra/docker/convert.Dockerfile -t lightbox-convert .
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p lightbox-convert --bin lightbox-convert

FROM debian:bookworm-slim
# libwebp is linked statically, so the binary needs nothing beyond the base image.
# runtime-packages:
RUN useradd --system --uid 10001 --no-create-home lightbox
COPY --from=build /src/target/release/lightbox-convert /usr/local/bin/lightbox-convert
USER 10001
ENV LIGHTBOX_LOG_FORMAT=json
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["lightbox-convert", "--check"]
ENTRYPOINT ["lightbox-convert"]
