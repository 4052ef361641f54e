# The driftline image the compose stack runs (simulator and workers): `docker compose build`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY driftline ./driftline
RUN pip install . \
    && useradd --create-home --uid 1000 driftline \
    && mkdir -p /data \
    && chown driftline:driftline /data

USER driftline
WORKDIR /data
ENTRYPOINT ["driftline"]
CMD ["--help"]
