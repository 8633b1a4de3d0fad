"""gunicorn's configuration for the partner web app: the one file every shipped command line loads
(``gunicorn --config python:bipsync_partner.gunicorn_conf``: the Dockerfile, Compose, Kubernetes,
systemd and the Procfile), so that they cannot drift apart.

Access log lines name paths, never query strings: the OAuth callback's address carries the
authorization ``code`` and ``state`` (RFC 6749 §4.1.2), and an access log is read by more people
and kept longer than any secret should be. :class:`PathOnlyLogger` enforces it whatever format is
configured: the request line is rebuilt from the path, ``%(q)s`` is empty, URLs in the referrer,
``Location`` and the environment lose their query, and cookies and credentials are masked. Every
command line still gives its own ``--bind``; anything here can be overridden the same way.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from gunicorn.glogging import Logger

from bipsync_partner.env import env_bool

#: Whether refused requests (4xx) get an access line. Production keeps every access line for its
#: log tooling; bin/run switches it off, because Django's log already has one line for each
#: refused request, saying why and with the request id (ops.logs.RefusalFilter).
ACCESS_LOG_REFUSALS: Final = env_bool("ACCESS_LOG_REFUSALS", True)

workers = 3
timeout = 30
# "-": standard output, which Docker, Kubernetes, systemd's journal and honcho collect.
accesslog = "-"
# gunicorn's default format with the path (%(U)s) where it has the raw request URI (%(r)s).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'

# Atoms holding a URL that may carry a query (the referrer of a request made from the callback's
# page, the authorize URL with its state in Connect's Location, the raw request URI).
_URL_ATOMS: Final = frozenset(
    {
        "f",
        "{referer}i",
        "{location}o",
        "{http_referer}e",
        "{raw_uri}e",
        "{request_uri}e",
    }
)
# Atoms that hold credentials outright.
_SECRET_ATOMS: Final = frozenset(
    {
        "{cookie}i",
        "{authorization}i",
        "{proxy-authorization}i",
        "{set-cookie}o",
        "{http_cookie}e",
        "{http_authorization}e",
        "{query_string}e",
    }
)


def without_query(value: object) -> object:
    """``value`` without its query and fragment when it is a URL or a path; else unchanged."""
    if not isinstance(value, str) or not (value.startswith("/") or "://" in value):
        return value
    parts = urlsplit(value)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class PathOnlyLogger(Logger):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's logger, with query strings and credentials left out of every access log atom
    and query strings out of the error log's arguments."""

    def atoms(
        self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta
    ) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        atoms["r"] = f"{atoms['m']} {atoms['U']} {atoms['H']}"
        atoms["q"] = ""
        for name in _URL_ATOMS & atoms.keys():
            atoms[name] = without_query(atoms[name])
        for name in _SECRET_ATOMS & atoms.keys():
            atoms[name] = "[redacted]"
        return atoms

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        status = getattr(resp, "status_code", None)
        if not ACCESS_LOG_REFUSALS and isinstance(status, int) and 400 <= status < 500:
            return
        super().access(resp, req, environ, request_time)

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)  # again on every SIGHUP: add the filter once
        if not any(isinstance(f, _PathOnlyArguments) for f in self.error_log.filters):
            self.error_log.addFilter(_PathOnlyArguments())


class _PathOnlyArguments(logging.Filter):
    """The error log's arguments without queries: gunicorn logs ``req.uri`` (path and query)
    when a request fails inside it ("Error handling request %s")."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(without_query(arg) for arg in record.args)
        return True


logger_class = PathOnlyLogger
