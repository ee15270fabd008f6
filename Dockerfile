# syntax=docker/dockerfile:1
# Multi-stage: build a wheel with its dependencies, then run as a non-root user under gunicorn (settings in
# govern/gunicorn_conf.py; GOVERN_WEB_THREADS sets the threads per worker).
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir --upgrade pip==24.3.1 build==1.2.2
COPY pyproject.toml README.md ./
COPY govern ./govern
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GOVERN_HOME=/var/lib/govern GOVERN_MIGRATIONS_DIR=/app/migrations GOVERN_ENV=production
RUN groupadd --system --gid 10001 govern && useradd --system --uid 10001 --gid govern --home-dir /var/lib/govern --create-home govern
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY migrations ./migrations
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["gunicorn", "-c", "python:govern.gunicorn_conf", "--bind", "0.0.0.0:8000", "--workers", "4", "govern.wsgi:app()"]
