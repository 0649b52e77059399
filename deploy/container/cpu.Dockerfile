# anyprec-server for CPUs. Build from the repository root:
#   podman build --format docker -f deploy/container/cpu.Dockerfile -t anyprec:cpu .
# (docker build works the same way; --format docker keeps the HEALTHCHECK under podman.)
# BASE_IMAGE is any Debian 12 image; tests/container/run.sh makes one offline with debootstrap.
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
COPY deploy/install-deps.sh deploy/install-deps.sh
RUN deploy/install-deps.sh build && rm -rf /var/lib/apt/lists/*
COPY . .
# The compiler cache outlives the build, so rebuilds and the CUDA image's build reuse objects.
RUN --mount=type=cache,target=/root/.cache/ccache \
    cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DANYPREC_CUDA=OFF \
 && cmake --build /build --target anyprec-server anyprec anyprec-quantize --parallel "$(nproc)" \
 && mkdir -p /opt/anyprec/bin \
 && cp /build/bin/anyprec-server /build/bin/anyprec /build/bin/anyprec-quantize deploy/container/entrypoint.sh deploy/container/healthcheck.sh deploy/container/install-runtime.sh /opt/anyprec/bin/ \
 && deploy/container/runtime-packages.sh /opt/anyprec/bin/anyprec* > /opt/anyprec/runtime-packages.txt

FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=build /opt/anyprec /opt/anyprec
RUN /opt/anyprec/bin/install-runtime.sh
ENV PATH=/opt/anyprec/bin:$PATH
USER 10001:10001
WORKDIR /var/lib/anyprec
VOLUME /models
# gRPC (Generation, Admin, grpc.health.v1), Prometheus /metrics and the OpenAI-compatible HTTP API.
EXPOSE 50051 9464 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD ["healthcheck.sh"]
# SIGTERM drains: in-flight requests run on for --shutdown-grace seconds (default 30), so give
# `docker stop -t` / Compose's stop_grace_period / Kubernetes' terminationGracePeriodSeconds more.
STOPSIGNAL SIGTERM
ENTRYPOINT ["entrypoint.sh"]
