"""Django settings of the soak's partner processes: production settings, refresh timings scaled.

Everything comes from :mod:`bipsync_partner.settings` (DEBUG off, JSON logs, the same Celery
configuration). Four values that production keeps in code are read from the environment here,
because a soak with two-minute access tokens needs them in proportion (see :mod:`.config`):

- the refresh sweep's beat interval (production: 60 s),
- the refresh back-off base and cap (production: 30 s and 3600 s),
- the token service's leeway before expiry (production: 60 s).

The collected static files live in the soak's temporary folder (``SOAK_STATIC_ROOT``), not in the
checkout's ``var/``: production pages need the manifest that ``collectstatic`` writes.
"""

from __future__ import annotations

from pathlib import Path

from bipsync_partner.env import env_int, env_optional
from bipsync_partner.settings import *  # noqa: F403
from bipsync_partner.settings import CELERY_BEAT_SCHEDULE as _PRODUCTION_SCHEDULE

_sweep = env_int("SOAK_SWEEP_INTERVAL_SECONDS", 60, minimum=1)
CELERY_BEAT_SCHEDULE = {
    **_PRODUCTION_SCHEDULE,
    "refresh-sweep": {
        "task": "connections.sweep_refreshes",
        "schedule": float(_sweep),
        # As in production: a sweep that could not start within its interval is dropped.
        "options": {"expires": max(1.0, _sweep * 0.9)},
    },
}
BIPSYNC_REFRESH_BACKOFF_BASE_SECONDS = env_int("SOAK_BACKOFF_BASE_SECONDS", 30, minimum=1)
BIPSYNC_REFRESH_BACKOFF_CAP_SECONDS = env_int("SOAK_BACKOFF_CAP_SECONDS", 3600, minimum=1)
BIPSYNC_TOKEN_LEEWAY_SECONDS = env_int("SOAK_TOKEN_LEEWAY_SECONDS", 60, minimum=0)
if _static_root := env_optional("SOAK_STATIC_ROOT"):
    STATIC_ROOT = Path(_static_root)
