# lightbox-render for render.heavy on GPU hosts: the native engine plus the Cycles engine
# (Blender as a Python module, bpy 5.0.1 on CPython 3.11; OptiX/CUDA come from the NVIDIA
# container runtime's driver mount).
#   docker build -f infra/docker/render-gpu.Dockerfile -t lightbox-render-gpu .
FROM rust:1.95-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libembree-dev=3.13.5+dfsg-2 pkg-config=1.8.1-1 \
       g++=4:12.2.0-3 libdraco-dev=1.5.5+dfsg-2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p lightbox-render --bin lightbox-render

FROM python:3.11-slim-bookworm
# runtime-packages: libembree3-3 libstdc++6
# Blender's Python module needs X/GL client libraries even headless.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libembree3-3=3.13.5+dfsg-2 \
       libstdc++6=12.2.0-14+deb12u1 \
       libxrender1=1:0.9.10-1.1 libxxf86vm1=1:1.1.4-1+b2 libxfixes3=1:6.0.0-2 libxi6=2:1.8-1+b1 libxkbcommon0=1.5.0-1 libsm6=2:1.2.3-1 libgl1=1.6.0-1 libegl1=1.6.0-1 \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir bpy==5.0.1 \
    && useradd --system --uid 10001 --create-home lightbox
COPY --from=build /src/target/release/lightbox-render /usr/local/bin/lightbox-render
COPY render-runtime/cycles /opt/lightbox/cycles
USER 10001
ENV LIGHTBOX_LOG_FORMAT=json LIGHTBOX_QUEUE=render.heavy LIGHTBOX_BLENDER_PYTHON=/usr/local/bin/python \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["lightbox-render", "--check"]
ENTRYPOINT ["lightbox-render"]
