"""The partner's HTTP API under /api/v1/ (django-ninja), its API keys and its idempotency keys."""
