# syntax=docker/dockerfile:1
#
# Dendrite images. Targets (the last one, cpu, is the default):
#   docker build --target cpu  -t dendrite:cpu  .   # default serving image (onnxruntime, no torch)
#   docker build --target cuda -t dendrite:cuda .   # NVIDIA GPU serving image (onnxruntime-gpu, CUDA 13 / cuDNN 9)
#   docker build --target train -t dendrite:train . # the training stage alone (torch CPU + data)
# The default models are trained once in the `train` stage; both serving images copy only the
# resulting model repository (ONNX files + config.yaml), never torch. To skip that hour of training
# and bake models already trained on the host instead (BuildKit, Docker's default builder):
#   docker build --build-context host-models=./models --build-arg MODELS=host --target cpu -t dendrite:cpu .
# Both images run the same Python minor version (3.12: the only one Ubuntu 24.04, the CUDA 13
# base, ships), so a wheel or bug fix that holds for one holds for the other.
#
# Base images are pinned to exact tags; pin them to digests as well in your registry mirror
# (`FROM image:tag@sha256:...`) when you need bit-for-bit rebuilds. Python packages are pinned
# where it matters (torch, onnxruntime-gpu) and otherwise follow pyproject.toml. Distribution
# packages (apt) follow the pinned base image's release: their point versions are not pinned
# (hadolint DL3008, ignored on those two lines only) because the archive drops superseded
# security-update versions, which would break the build rather than make it reproducible.
ARG PYTHON_IMAGE=python:3.12.12-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04
# Where the serving images' models come from: train (the train stage) or host (see host below).
ARG MODELS=train

# ------------------------------------------------------------------------------------------
# train: torch (CPU build, pinned), the data packages, `make models`.
FROM ${PYTHON_IMAGE} AS train
# torch==2.13.0 from the default index is the multi-GB CUDA build; the CPU build comes from this index.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python -m venv .venv \
    && .venv/bin/pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0
COPY pyproject.toml README.md Makefile ./
# The Debian packages the project needs (data sets among them), before the source so that
# editing code does not redo it.
RUN make system-deps \
    && rm -rf /var/lib/apt/lists/*
COPY app ./app
COPY models ./models
# Installs the train extra (torch above already satisfies its pin), obtains the data and trains
# every default model into models/ (`make models` = data + python -m app.training all).
RUN make models

# ------------------------------------------------------------------------------------------
# host: a model repository trained on the host (<model>/config.yaml, <model>/<version>/model.onnx),
# given as the named build context host-models. It is a context of its own because .dockerignore
# keeps trained versions out of the main context, so that the default build trains from scratch.
FROM scratch AS host
# hadolint ignore=DL3022
COPY --from=host-models . /src/models

# models: the repository the serving images copy, from the stage the MODELS argument names.
# BuildKit builds only the stages a target needs: with MODELS=host the train stage never runs.
FROM ${MODELS} AS models

# ------------------------------------------------------------------------------------------
# cuda: NVIDIA GPU serving image. The base provides the CUDA 13 runtime libraries and cuDNN 9,
# so onnxruntime-gpu is installed without its [cuda,cudnn] pip extras (that would ship a second
# copy of the same libraries). Models choose the GPU with `instance_group: {kind: cuda}`; the
# dashboard's provider table shows what each session really runs on.
FROM ${CUDA_IMAGE} AS cuda
ARG ORT_GPU_VERSION=1.31.1
LABEL org.opencontainers.image.title="dendrite" \
      org.opencontainers.image.description="Dendrite inference server (ONNX Runtime, CUDA 13 / cuDNN 9)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEBIAN_FRONTEND=noninteractive \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-venv \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 dendrite \
    && useradd --system --uid 10001 --gid dendrite --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin dendrite
WORKDIR /build
COPY pyproject.toml README.md ./
COPY app ./app
# No extra: onnxruntime comes only from onnxruntime-gpu (installing the CPU wheel beside it breaks the module).
RUN python3.12 -m venv /opt/venv \
    && /opt/venv/bin/pip install . "onnxruntime-gpu==${ORT_GPU_VERSION}" \
    && rm -rf /build
ENV PATH=/opt/venv/bin:${PATH} \
    DENDRITE_HOST=0.0.0.0 \
    DENDRITE_HTTP_PORT=8000 \
    DENDRITE_GRPC_PORT=8001 \
    DENDRITE_MODEL_REPOSITORY=/models
COPY --from=models --chown=10001:10001 /src/models /models
WORKDIR /models
USER 10001:10001
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DENDRITE_HTTP_PORT', '8000') + '/v2/health/ready', timeout=2)"]
ENTRYPOINT ["python", "-m", "app"]
CMD ["serve"]

# ------------------------------------------------------------------------------------------
# cpu-venv: the serving virtual environment (onnxruntime CPU), built apart so the runtime
# image carries no pip cache, no build files and no source tree.
FROM ${PYTHON_IMAGE} AS cpu-venv
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
COPY pyproject.toml README.md ./
COPY app ./app
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install ".[cpu]"

# ------------------------------------------------------------------------------------------
# cpu: the default serving image.
FROM ${PYTHON_IMAGE} AS cpu
LABEL org.opencontainers.image.title="dendrite" \
      org.opencontainers.image.description="Dendrite inference server (ONNX Runtime, CPU)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DENDRITE_HOST=0.0.0.0 \
    DENDRITE_HTTP_PORT=8000 \
    DENDRITE_GRPC_PORT=8001 \
    DENDRITE_MODEL_REPOSITORY=/models
RUN groupadd --system --gid 10001 dendrite \
    && useradd --system --uid 10001 --gid dendrite --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin dendrite
COPY --from=cpu-venv /opt/venv /opt/venv
COPY --from=models --chown=10001:10001 /src/models /models
WORKDIR /models
USER 10001:10001
EXPOSE 8000 8001
# Ready (not just live): 503 until every model has loaded and warmed up.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DENDRITE_HTTP_PORT', '8000') + '/v2/health/ready', timeout=2)"]
ENTRYPOINT ["python", "-m", "app"]
CMD ["serve"]
