# The medallion images (deploy/compose.yaml builds both):
#   docker build -t medallion .                             the CLI (the last stage, `runtime`)
#   docker build --target airflow -t medallion-airflow .    Airflow 3 with medallion installed
# Both install the same wheels, built once in `build`, with the kafka and export extras.

FROM python:3.11.15-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# the project's wheel and its dependencies' wheels, so no later stage reads an index, and a
# requirements file naming that very wheel (a `medallion` on an index is someone else's)
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --wheel-dir /wheels ".[kafka,export,spark]" \
 && python -c "import pathlib; w = next(pathlib.Path('/wheels').glob('medallion-*.whl')); \
pathlib.Path('/wheels/medallion.txt').write_text(f'medallion[kafka,export,spark] @ {w.as_uri()}\n')"


FROM apache/airflow:3.3.2-python3.11 AS airflow
# Airflow stays at its version: pip fails the build rather than move it for medallion.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels \
        --requirement /wheels/medallion.txt "apache-airflow==3.3.2" \
 && mkdir -p /opt/airflow/medallion
ENV MEDALLION_HOME=/opt/airflow/medallion


FROM python:3.11.15-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="medallion" \
      org.opencontainers.image.description="Olist e-commerce lakehouse: Bronze, Silver, Gold on Delta Lake" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MEDALLION_HOME=/var/lib/medallion
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels \
        --requirement /wheels/medallion.txt \
 && groupadd --system --gid 10001 medallion \
 && useradd --system --uid 10001 --gid medallion --home-dir /var/lib/medallion \
        --create-home --shell /usr/sbin/nologin medallion
USER 10001:10001
WORKDIR /var/lib/medallion
ENTRYPOINT ["medallion"]
CMD ["--help"]
