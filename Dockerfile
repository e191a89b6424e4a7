# The API image: `studio-integrations serve` behind uvicorn. Migrations run as a separate
# one-shot (`studio-integrations migrate`), see docker-compose.yml.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && useradd --system --uid 10001 studio
USER studio
ENV STUDIO_HOST=0.0.0.0 STUDIO_PORT=8000 STUDIO_STATE_DIR=/tmp/studio
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
CMD ["studio-integrations", "serve"]
