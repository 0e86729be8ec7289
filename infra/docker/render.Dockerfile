# lightbox-render (native engine) for render.light and render.heavy on CPU hosts:
#   docker build -f infra/docker/render.Dockerfile -t lightbox-render .
FROM rust:1.95-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libembree-dev=3.13.5+dfsg-2 pkg-config=1.8.1-1 \
       g++=4:12.2.0-3 libdraco-dev=1.5.5+dfsg-2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p lightbox-render --bin lightbox-render

FROM debian:bookworm-slim
# runtime-packages: libembree3-3 libstdc++6
RUN apt-get update \
    && apt-get install -y --no-install-recommends libembree3-3=3.13.5+dfsg-2 \
       libstdc++6=12.2.0-14+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home lightbox
COPY --from=build /src/target/release/lightbox-render /usr/local/bin/lightbox-render
USER 10001
ENV LIGHTBOX_LOG_FORMAT=json LIGHTBOX_QUEUE=render.light
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["lightbox-render", "--check"]
ENTRYPOINT ["lightbox-render"]
