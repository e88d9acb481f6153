# The GPU worker: CUDA PyTorch runtime + PyAV + the project. Loads the models once, then serves
# RQ jobs. Checkpoints come from a mounted folder (/weights) or from S3 via `mmd fetch-weights`
# (run as an init container, or as `docker run ... mmd-worker fetch-weights --dest /weights ...`).
# Build from the repository root:  docker build -f docker/worker.Dockerfile -t mmd-worker .
# The base image's torch must be the minor version pyproject's `worker` extra pins (2.13.x);
# the build fails otherwise.
ARG TORCH_IMAGE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime
FROM ${TORCH_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

RUN python -c "import sys, torch; v = torch.__version__; \
sys.exit(0 if v.startswith('2.13.') else f'base image has torch {v}; the worker needs 2.13.x')" \
    && groupadd --system --gid 10001 mmd \
    && useradd --system --uid 10001 --gid mmd --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin mmd

WORKDIR /app

# Dependency layer (torch is already in the base image and is not touched).
COPY docker/requirements-gateway.txt docker/requirements-worker.txt /tmp/
RUN pip install --no-deps -r /tmp/requirements-gateway.txt -r /tmp/requirements-worker.txt \
    && rm /tmp/requirements-gateway.txt /tmp/requirements-worker.txt

# Source layer.
COPY docker/healthcheck.py /usr/local/bin/mmd-healthcheck
COPY pyproject.toml README.md ./
COPY model/ model/
COPY core/ core/
COPY service/ service/
COPY worker/ worker/
COPY cli/ cli/
RUN pip install --no-deps --no-build-isolation . \
    && rm -rf build ./*.egg-info \
    && mkdir -p /data /weights && chown mmd:mmd /data /weights \
    && chmod 0755 /usr/local/bin/mmd-healthcheck

# GPU at half precision by default; the CPU-only compose override sets MMD_DEVICE=cpu.
# Caches go to /tmp so that the root filesystem can be read-only.
ENV MMD_DEVICE=cuda \
    MMD_PRECISION=fp16 \
    MMD_DATA_DIR=/data \
    MMD_WORKER_METRICS_PORT=9100 \
    MMD_WORKER_READY_FILE=/tmp/mmd-worker-ready \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    TORCH_HOME=/tmp/.cache/torch

USER 10001:10001
EXPOSE 9100
# Healthy = models loaded, warmed up, heartbeat fresh. Loading full-size models takes minutes.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10m --retries=3 \
    CMD ["mmd-healthcheck", "worker"]
ENTRYPOINT ["mmd"]
CMD ["worker"]
