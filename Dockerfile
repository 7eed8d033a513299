# syntax=docker/dockerfile:1
# One image for both processes: `jwks-operator run` (the operator) and `jwks-operator serve`
# (the JWKS server). The builder fetches the dependencies pinned in requirements.lock, each
# checked against its sha256 (`make lock` refreshes the file), and builds the project's own
# wheel; the final stage installs those wheels from local files only, so it needs no
# compiler, no network and no source tree, and two builds of one tag carry the same packages.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# .dockerignore lets through only pyproject.toml, requirements.lock, README.md, LICENSE and operator/.
COPY requirements.lock ./
RUN pip wheel --require-hashes --no-deps --wheel-dir /wheels -r requirements.lock \
 && cp requirements.lock /wheels/
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# The chart runs both pods as this UID (podSecurityContext.runAsUser: 10001).
RUN groupadd --system --gid 10001 jwks \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin jwks
# The locked dependencies (hashes checked again), then the project with no further
# resolution, then `pip check`: a lock that no longer satisfies pyproject.toml fails here.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels --require-hashes -r /wheels/requirements.lock \
 && pip install --no-index --find-links=/wheels --no-deps jwks-operator \
 && pip check
USER 10001:10001
WORKDIR /tmp
# 8080: the JWKS server (serve); 8081: the operator's liveness endpoint (run --liveness).
EXPOSE 8080 8081
ENTRYPOINT ["jwks-operator"]
CMD ["--help"]
