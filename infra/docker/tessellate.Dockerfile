# lightbox-tessellate: STEP → instanced GLB with OpenCASCADE 7.6.
#   docker build -f infra/docker/tessellate.Dockerfile -t lightbox-tessellate .
FROM rust:1.95-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++=4:12.2.0-3 pkg-config=1.8.1-1 \
       libocct-data-exchange-dev=7.6.3+dfsg1-7 libocct-ocaf-dev=7.6.3+dfsg1-7 \
       libocct-modeling-algorithms-dev=7.6.3+dfsg1-7 libocct-visualization-dev=7.6.3+dfsg1-7 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p lightbox-tessellate --bin lightbox-tessellate

FROM debian:bookworm-slim
# runtime-packages: libocct-data-exchange-7.6 libocct-foundation-7.6 libocct-modeling-algorithms-7.6 libocct-modeling-data-7.6 libocct-ocaf-7.6 libstdc++6
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       libocct-data-exchange-7.6=7.6.3+dfsg1-7 libocct-ocaf-7.6=7.6.3+dfsg1-7 \
       libocct-modeling-algorithms-7.6=7.6.3+dfsg1-7 libocct-modeling-data-7.6=7.6.3+dfsg1-7 \
       libocct-foundation-7.6=7.6.3+dfsg1-7 libstdc++6=12.2.0-14+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home lightbox
COPY --from=build /src/target/release/lightbox-tessellate /usr/local/bin/lightbox-tessellate
USER 10001
ENV LIGHTBOX_LOG_FORMAT=json
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["lightbox-tessellate", "--check"]
ENTRYPOINT ["lightbox-tessellate"]
