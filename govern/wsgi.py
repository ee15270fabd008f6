"""gunicorn entry point: `gunicorn 'govern.wsgi:app()'` builds the app in each worker (no import-time wiring)."""
from govern.app import create_app


def app():
    return create_app()
