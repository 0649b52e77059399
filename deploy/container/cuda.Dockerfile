# anyprec-server for NVIDIA GPUs: the CUDA plugin is built in NVIDIA's -devel image and run on
# its -runtime image (which has the cuBLAS the plugin loads). Build from the repository root:
#   podman build --format docker -f deploy/container/cuda.Dockerfile -t anyprec:cuda .
# Run with a GPU: docker run --gpus all … / podman run --device nvidia.com/gpu=all …
# The two images must be the same distribution; Ubuntu 24.04 has the Debian 12 libraries'
# versions (gRPC 1.51, protobuf 3.21) that anyprec is built and tested with.
ARG BUILD_IMAGE=docker.io/nvidia/cuda:12.8.1-devel-ubuntu24.04
ARG RUNTIME_IMAGE=docker.io/nvidia/cuda:12.8.1-runtime-ubuntu24.04

FROM ${BUILD_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
COPY deploy/install-deps.sh deploy/install-deps.sh
RUN deploy/install-deps.sh build && rm -rf /var/lib/apt/lists/*
COPY . .
# The compiler cache outlives the build, so rebuilds reuse objects (and the CPU image's).
RUN --mount=type=cache,target=/root/.cache/ccache \
    test -x /usr/local/cuda/bin/nvcc || { echo "no nvcc in the build image: the CUDA image needs a CUDA -devel base" >&2; exit 1; }; \
    cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DANYPREC_CUDA=ON \
 && cmake --build /build --target anyprec-server anyprec anyprec-quantize anyprec_cuda --parallel "$(nproc)" \
 && mkdir -p /opt/anyprec/bin /opt/anyprec/lib \
 && cp /build/bin/anyprec-server /build/bin/anyprec /build/bin/anyprec-quantize deploy/container/entrypoint.sh deploy/container/healthcheck.sh deploy/container/install-runtime.sh /opt/anyprec/bin/ \
 && cp /build/lib/libanyprec_cuda.so /opt/anyprec/lib/ \
 && deploy/container/runtime-packages.sh /opt/anyprec/bin/anyprec* /opt/anyprec/lib/libanyprec_cuda.so > /opt/anyprec/runtime-packages.txt

FROM ${RUNTIME_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=build /opt/anyprec /opt/anyprec
RUN /opt/anyprec/bin/install-runtime.sh
ENV PATH=/opt/anyprec/bin:$PATH
USER 10001:10001
WORKDIR /var/lib/anyprec
VOLUME /models
EXPOSE 50051 9464 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD ["healthcheck.sh"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["entrypoint.sh"]
