# The HTTP gateway: FastAPI + RQ client. No torch, no CUDA, no model or worker code (core/ and
# service/ only; its command is `mmd-gateway`: gateway, cleanup, hash-key).
# Build from the repository root:  docker build -f docker/gateway.Dockerfile -t mmd-gateway .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 mmd \
    && useradd --system --uid 10001 --gid mmd --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin mmd

WORKDIR /app

# Dependency layer: changes only when the pins change.
COPY docker/requirements-gateway.txt /tmp/requirements-gateway.txt
RUN pip install --no-deps -r /tmp/requirements-gateway.txt && rm /tmp/requirements-gateway.txt

# Source layer.
COPY docker/healthcheck.py /usr/local/bin/mmd-healthcheck
COPY pyproject.toml README.md ./
COPY core/ core/
COPY service/ service/
RUN pip install --no-deps --no-build-isolation . \
    && rm -rf build ./*.egg-info \
    && mkdir -p /data && chown mmd:mmd /data \
    && chmod 0755 /usr/local/bin/mmd-healthcheck

# Containers listen on all interfaces; everything else comes from MMD_* at run time.
ENV MMD_HOST=0.0.0.0 \
    MMD_PORT=8000 \
    MMD_DATA_DIR=/data \
    HOME=/tmp

USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["mmd-healthcheck", "gateway"]
ENTRYPOINT ["mmd-gateway"]
CMD ["gateway"]
