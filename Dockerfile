# RepViT-SAM HTTP service on CPU. Build and run: see the README's "Docker" section.
#   docker build -t repvit-sam .
#   docker run --rm -p 8000:8000 -v repvit-sam-weights:/weights repvit-sam
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build stage: a virtual environment with CPU torch and the service, copied whole into the
# runtime stage (no compilers, pip caches or sources there).
FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=
ARG TORCHVISION_VERSION=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# torch in its own layer: it changes far less often than the code.
COPY deploy/install.sh deploy/requirements-torch.txt deploy/
# Wheels put in deploy/wheels/ are preferred to the index's (where the index cannot be reached);
# they stay in this stage.
COPY deploy/wheels/ deploy/wheels/
RUN TORCH_INDEX_URL="$TORCH_INDEX_URL" TORCH_VERSION="$TORCH_VERSION" \
    TORCHVISION_VERSION="$TORCHVISION_VERSION" sh deploy/install.sh torch
COPY pyproject.toml README.md ./
COPY repvit_sam repvit_sam
COPY client client
COPY app app
RUN sh deploy/install.sh project

# Runtime stage: slim Python, tini as PID 1, an unprivileged user, weights in a volume.
FROM ${PYTHON_IMAGE} AS runtime
# Debian bookworm's tini; the trailing * accepts the per-architecture rebuild suffix (+b3).
RUN apt-get update \
    && apt-get install -y --no-install-recommends "tini=0.19.0-1*" \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 sam \
    && useradd --system --uid 10001 --gid sam --home-dir /home/sam --create-home sam \
    && mkdir /weights \
    && chown sam:sam /weights
COPY --from=build /opt/venv /opt/venv
COPY deploy/healthcheck.py /opt/repvit-sam/healthcheck.py
# Every REPVIT_SAM_* setting (README, "Service") can be given with -e; these suit a container.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    REPVIT_SAM_HOME=/weights \
    REPVIT_SAM_HOST=0.0.0.0 \
    REPVIT_SAM_PORT=8000 \
    REPVIT_SAM_SHUTDOWN_TIMEOUT_SECONDS=30
USER 10001:10001
WORKDIR /home/sam
# The official weights are downloaded here on first start (verified) unless
# REPVIT_SAM_CHECKPOINT names a mounted file.
VOLUME ["/weights"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "/opt/repvit-sam/healthcheck.py"]
# tini reaps zombies and forwards SIGTERM: uvicorn then stops accepting, finishes the requests
# in flight (up to REPVIT_SAM_SHUTDOWN_TIMEOUT_SECONDS) and exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "--", "repvit-sam"]
CMD ["serve"]
