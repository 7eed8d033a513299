# syntax=docker/dockerfile:1
# One image for both processes: `jwks-operator run` (the operator) and `jwks-operator serve`
# (the JWKS server). The builder turns the source into wheels; the final stage installs them
# from local files only, so it needs no compiler, no network and no source tree.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# .dockerignore lets through only pyproject.toml, README.md and operator/.
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip wheel --wheel-dir /wheels /wheels/jwks_operator-*.whl

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# The chart runs both pods as this UID (podSecurityContext.runAsUser: 10001).
RUN groupadd --system --gid 10001 jwks \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin jwks
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels jwks-operator
USER 10001:10001
WORKDIR /tmp
# 8080: the JWKS server (serve); 8081: the operator's liveness endpoint (run --liveness).
EXPOSE 8080 8081
ENTRYPOINT ["jwks-operator"]
CMD ["--help"]
