# One image for every Polar process; the Python module to run is the argument:
#
#   docker run IMAGE polar_organization             gRPC :50051
#   docker run IMAGE polar_repository               gRPC :50052
#   docker run IMAGE polar_reward                   gRPC :50053
#   docker run IMAGE polar_gateway                  HTTP :8000 (the default command)
#   docker run IMAGE polar_db.migrate upgrade head  one-shot migration
#   docker run IMAGE polar_kit.healthcheck HOST:PORT   gRPC health probe
#   docker run IMAGE polar_kit.parked list          operator tool for parked messages
#
# Why one image: the services share almost all their dependencies (polar_kit, polar_db,
# polar_proto, grpcio, SQLAlchemy...), so one image is built, scanned, pushed and pulled once
# and every process of a release runs exactly the same bits. The extra weight (the gateway's
# FastAPI/uvicorn in the domain services' image, githubkit in the gateway's) is a few MB.
#
# The venv holds the three services and their locked dependencies (uv.lock, --frozen), and
# NOT the dev-only packages: the root project's dependencies include polar-dev (embedded
# PostgreSQL and NATS binaries, the pytest plugin), so the image syncs the three service
# packages (`--package`, which installs a member and its dependencies only) instead of the
# root, and skips the dev dependency group (`--no-dev`).
#
# Build: docker build -t polar:dev .          (docs/deploying.md)
#
# Written for every builder Docker 20.10 and later has: no `# syntax=` line (BuildKit's
# built-in frontend, no frontend image to fetch) and no BuildKit-only instruction such as
# `RUN --mount`, so the classic builder (what `docker build` falls back to without buildx,
# what Compose 1.29 may use) builds it as well (issue 9, decision 0011).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

# Compile bytecode now (the final root filesystem is read-only); copy, don't hardlink, out of
# uv's cache (it stays in this stage); use this image's Python (identical path in the final
# stage) and never download another one.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_FROZEN=1

WORKDIR /src

# 1. Third-party dependencies only, in their own layer: it changes only when uv.lock or a
#    member's pyproject.toml does. uv needs every workspace member's pyproject.toml to read
#    the workspace (scripts/validate_deploy.py checks this list is complete).
COPY pyproject.toml uv.lock ./
COPY libs/polar_client/pyproject.toml libs/polar_client/
COPY libs/polar_db/pyproject.toml libs/polar_db/
COPY libs/polar_dev/pyproject.toml libs/polar_dev/
COPY libs/polar_events/pyproject.toml libs/polar_events/
COPY libs/polar_kit/pyproject.toml libs/polar_kit/
COPY libs/polar_proto/pyproject.toml libs/polar_proto/
COPY services/gateway/pyproject.toml services/gateway/
COPY services/organization/pyproject.toml services/organization/
COPY services/repository/pyproject.toml services/repository/
COPY services/reward/pyproject.toml services/reward/
RUN uv sync --no-dev --no-editable --no-install-workspace \
        --package polar-organization --package polar-repository --package polar-gateway --package polar-reward

# 2. Our own packages, installed as regular (non-editable) wheels: the final image needs no
#    source tree.
COPY libs libs
COPY services services
RUN uv sync --no-dev --no-editable \
        --package polar-organization --package polar-repository --package polar-gateway --package polar-reward \
    && /app/.venv/bin/python -c "import polar_organization, polar_repository, polar_gateway, polar_reward, polar_db.migrate, polar_kit.healthcheck"

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# No build tools: the slim image has no compiler, and pip/setuptools/wheel go too (the venv
# never needs them). The venv is owned by root and only readable by the service user.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
    && groupadd --system --gid 10001 polar \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin polar

COPY --from=builder /app/.venv /app/.venv

# Read-only root filesystem: nothing is written outside /tmp (mount an emptyDir/tmpfs there).
# Bytecode was compiled at build time; HOME points at /tmp for any library that wants a
# cache directory.
ENV PATH=/app/.venv/bin:${PATH} \
    VIRTUAL_ENV=/app/.venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp

WORKDIR /app
USER 10001:10001
EXPOSE 8000 50051 50052 50053

ENTRYPOINT ["python", "-m"]
CMD ["polar_gateway"]
