"""The Celery app: configuration comes from Django settings prefixed CELERY_."""

import os

from celery import Celery

from bipsync_partner.ops import broker

# Before any broker connection: a lost Redis must not crash a worker (see ops/broker.py).
broker.install()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bipsync_partner.settings")

app = Celery("bipsync_partner")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
