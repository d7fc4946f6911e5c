# One image for web (granian, WSGI), asgi (Daphne), worker, beat and sources;
# docker-compose.yml picks the command.

# The dashboard's chart library comes from npm (package-lock.json); only its dist files are
# kept, served as static files like ours (settings.STATICFILES_DIRS).
FROM node:20-bookworm-slim AS js
WORKDIR /js
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_ENV=production

RUN useradd --create-home --uid 1000 marketflux
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=marketflux:marketflux . .
COPY --from=js --chown=marketflux:marketflux /js/node_modules/lightweight-charts/dist node_modules/lightweight-charts/dist
# collectstatic needs settings, not secrets: a throwaway key for the build step only.
RUN SECRET_KEY=build-only-collectstatic-key-not-used-at-runtime-0123456789 \
    python manage.py collectstatic --noinput

USER marketflux
EXPOSE 8000
CMD ["python", "-m", "marketflux_site.serving", "web", "--host", "0.0.0.0", "--port", "8000"]
