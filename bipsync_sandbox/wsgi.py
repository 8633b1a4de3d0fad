"""WSGI entry point of the sandbox (gunicorn bipsync_sandbox.wsgi:application)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bipsync_sandbox.settings")

application = get_wsgi_application()
