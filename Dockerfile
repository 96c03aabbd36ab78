# The Anthra key ledger as a container: `docker compose up` runs it beside PostgreSQL.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY projections ./projections
COPY infra ./infra
COPY ledger ./ledger
COPY api ./api
COPY deploy ./deploy
RUN pip install . && useradd --system --uid 10001 anthra && mkdir -p /app/var && chown anthra /app/var
USER anthra

ENV ANTHRA_HOST=0.0.0.0 ANTHRA_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz').status == 200 else 1)"
CMD ["anthra-keys", "serve"]
