"""The Bipsync REST API client used by syncs (and any other call a job makes on a connection).

It lives in ``sync/`` rather than ``connections/`` because it is a *consumer* of the token service:
the data flow is one way (architecture sketch: "sync/ asks the token service for an access token
and never touches token fields itself"), and ``connections/`` must not depend on what is built on
top of it. The only thing it takes from ``connections/`` is a :class:`TokenSource` and the shared
per-tenant :class:`~bipsync_partner.coordination.TenantGate`.

How it reacts to each answer (docs/bipsync.md, "Errors"):

- 401 (token invalid or missing scope): one forced refresh through the token service, one retry;
  a second 401 is an error. A challenge saying ``insufficient_scope`` (RFC 6750 §3.1) is reported
  at once: a refreshed token carries the same scopes.
- 403: the caller's IP address is not allow-listed by the tenant. Bipsync documents 403 as
  exactly that, not as a permission problem, so it becomes :class:`IpNotAllowListed` with a
  sentence saying so. Retrying cannot help.
- 429: wait as ``Retry-After`` says (RFC 9110 §10.2.3, seconds or an HTTP date), record the wait
  in the tenant's gate so that every other worker waits too, then retry, a bounded number of times.
  A wait longer than ``max_inline_wait`` is not slept through: :class:`RateLimited` tells the
  caller to come back later.
- 5xx, timeouts and network errors: retry with exponential backoff and full jitter, a bounded
  number of attempts, then :class:`ApiUnavailable` (transient).
- Anything else (400, 404, 405, 406...): :class:`ApiError`, terminal.

Bodies are read in a stream up to a bound, and never logged: they hold customers' research.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import orjson

from bipsync_partner.coordination import TenantGate
from bipsync_partner.oauth.transport import BearerAuth, TransportSettings, create_httpx_client

log = logging.getLogger(__name__)

#: A page of 100 research items with their fields is tens of kilobytes; 20 MiB is generous and
#: still bounds what a misbehaving proxy can make us hold.
MAX_RESPONSE_BYTES = 20 * 1024 * 1024
#: Retry-After values beyond this are treated as this (a broken header must not park us for days).
MAX_RETRY_AFTER_SECONDS = 3600.0
#: When a 429 carries no Retry-After we still have to wait; one second, then backoff.
DEFAULT_RETRY_AFTER_SECONDS = 1.0

#: How long an open tenant gate is trusted before Redis is asked again. Asking before every
#: request cost a Redis round trip per page, a sixth of the reading thread's interpreter time
#: during a sync. A wait that another worker was told of is seen within this time; the few
#: requests sent meanwhile get 429 themselves, which this client honours as usual.
GATE_RECHECK_SECONDS = 0.25

#: Makes a fresh iterator of a request's bytes, once per attempt (an upload is never held whole).
BodyFactory = Callable[[], Iterator[bytes]]

IP_NOT_ALLOW_LISTED = "this server's IP address is not allow-listed by the Bipsync tenant"


class ApiError(Exception):
    """A call to the Bipsync API failed. ``sentence`` is for people; ``code`` for programs.

    ``transient`` says whether the same call may succeed later; ``retry_after`` how long to wait
    before trying, when known.
    """

    default_code = "api_error"
    default_transient = False

    def __init__(
        self,
        sentence: str,
        *,
        code: str | None = None,
        status: int | None = None,
        transient: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(sentence)
        self.sentence = sentence
        self.code = code or self.default_code
        self.status = status
        self.transient = self.default_transient if transient is None else transient
        self.retry_after = retry_after


class IpNotAllowListed(ApiError):
    """HTTP 403 from Bipsync: the tenant does not allow this server's address."""

    default_code = "ip_not_allow_listed"

    def __init__(self) -> None:
        super().__init__(
            f"Bipsync refused the call because {IP_NOT_ALLOW_LISTED}. Ask the customer's "
            "Bipsync administrator to allow-list this server's outgoing address.",
            status=403,
        )


class RateLimited(ApiError):
    """Bipsync asked us to wait longer than we are willing to wait inside one task."""

    default_code = "rate_limited"
    default_transient = True


class ApiUnavailable(ApiError):
    """5xx, timeouts or network failures outlasted the bounded retries."""

    default_code = "unavailable"
    default_transient = True


class OutcomeUnknown(ApiUnavailable):
    """A request that changes something may have reached Bipsync, and no answer says whether it
    acted (a timeout, a dropped connection, a 5xx after it was sent). Sending it again blindly
    could do it twice: the caller must look the result up first."""

    default_code = "outcome_unknown"


class NotAuthorized(ApiError):
    """401 even with a freshly refreshed token: the grant lacks a scope or was revoked."""

    default_code = "not_authorized"


class InsufficientScope(NotAuthorized):
    """401 with ``error="insufficient_scope"``: the grant lacks a scope this call needs."""

    default_code = "insufficient_scope"


class TokenUnavailable(ApiError):
    """The token service could not give us a token (``transient`` tells whether to retry)."""

    default_code = "token_unavailable"


class TokenSource(Protocol):
    """Where the client gets Bearer tokens. The token service adapter lives in ``tokens.py``."""

    def access_token(self) -> str:
        """A usable access token (may refresh first). Raises :class:`TokenUnavailable`."""
        ...

    def refresh_after_rejection(self, rejected: str) -> str:
        """Bipsync refused ``rejected`` with 401: return a token newer than it (refreshing
        unless another process already did). Raises :class:`TokenUnavailable`."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 10.0
    max_inline_wait: float = 30.0
    rate_limit_attempts: int = 10

    def backoff(self, failures: int) -> float:
        """Full jitter (uniform 0..min(cap, base·2^n)), so that many workers spread out."""
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** max(0, failures - 1)))
        return random.uniform(ceiling / 2, ceiling)


@dataclass
class _Read:
    """What one read has been through so far: its token, and the counts its policy bounds."""

    token: str
    failures: int = 0
    rate_limits: int = 0
    refreshed: bool = False


@dataclass(frozen=True)
class Page:
    """One page of an offset/limit listing (docs/bipsync.md, "The REST API slice")."""

    total: int
    offset: int
    limit: int
    results: list[dict[str, Any]] = field(repr=False)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP-date (RFC 9110 §10.2.3), bounded."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


class BipsyncApi:
    """Calls on one tenant's REST API with one connection's tokens: GET for syncs, and
    :meth:`send` for writes.

    Reuses one ``httpx.Client`` (keep-alive) for all calls; close it with :meth:`close` or use
    the object as a context manager.
    """

    def __init__(
        self,
        *,
        api_base: str,
        tenant: str,
        tokens: TokenSource,
        policy: RetryPolicy | None = None,
        timeout: float = 15.0,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.tenant = tenant
        self.tokens = tokens
        self.policy = policy or RetryPolicy()
        self.gate = TenantGate(tenant)
        self._owns_http = http is None
        self.http = http or create_httpx_client(TransportSettings(timeout=timeout))
        self._sleep = sleep
        #: Calls answered 429 and seconds waited for them, for the run's record and tests.
        self.rate_limited = 0
        #: Until when (monotonic) the tenant's gate is taken as open without asking Redis.
        self._gate_open_until = 0.0
        self.retried = 0

    def __enter__(self) -> BipsyncApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    # --- calls ---------------------------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        """GET ``{api_base}{path}`` and return the decoded JSON body, reacting to errors as the
        module docstring describes."""
        url = f"{self.api_base}{path}"
        read = _Read(token=self.tokens.access_token())
        while True:
            self._wait_for_gate()
            try:
                status, headers, body = self._fetch(url, params, read.token)
            except httpx.TimeoutException:
                read.failures += 1
                self._backoff_or_raise(read.failures, "Bipsync did not answer in time")
                continue
            except httpx.TransportError as exc:
                self._after_transport_error(read, exc)
                continue
            if status == 200:
                return _decode(body)
            self._after_refused_read(read, status, headers, path, f"the request {path}")

    @contextlib.contextmanager
    def download(self, path: str) -> Iterator[httpx.Response]:
        """GET ``{api_base}{path}`` as a stream: the answer is handed over once its status is
        200, its body unread, so a file of any size passes through in chunks. Until then the
        policy of :meth:`get` applies (a download is a read, safe to ask again)."""
        url = f"{self.api_base}{path}"
        read = _Read(token=self.tokens.access_token())
        while True:
            self._wait_for_gate()
            try:
                response = self.http.send(
                    # identity: the bytes pass through as Bipsync stores them, their length too.
                    self.http.build_request("GET", url, headers={"Accept-Encoding": "identity"}),
                    auth=BearerAuth(read.token),
                    stream=True,
                    follow_redirects=False,
                )
            except httpx.TransportError as exc:
                self._after_transport_error(read, exc)
                continue
            status, headers = response.status_code, response.headers
            if status == 200:
                try:
                    yield response
                finally:
                    response.close()
                return
            response.close()
            self._after_refused_read(read, status, headers, path, "the download")

    def _after_transport_error(self, read: _Read, exc: httpx.TransportError) -> None:
        read.failures += 1
        self._backoff_or_raise(
            read.failures, f"Bipsync could not be reached ({type(exc).__name__})"
        )

    def _after_refused_read(
        self, read: _Read, status: int, headers: httpx.Headers, path: str, what: str
    ) -> None:
        """One policy for every read that did not get a 200 (:meth:`get`, :meth:`download`):
        return to ask again (a new token, after a rate limit or a back-off), or raise."""
        if status == 401:
            read.token = self._after_rejection(
                headers, path, read.token, read.refreshed, "rest_api:read"
            )
            read.refreshed = True
            return
        if status == 403:
            raise IpNotAllowListed()
        if status == 429:
            read.rate_limits += 1
            self._after_rate_limit(headers, read.rate_limits)
            return
        if status >= 500:
            read.failures += 1
            self._backoff_or_raise(
                read.failures, f"Bipsync answered with a server error (HTTP {status})", status
            )
            return
        raise ApiError(
            f"Bipsync refused {what} with HTTP {status}.", code=f"http_{status}", status=status
        )

    def send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str | int] | None = None,
        body: BodyFactory | None = None,
        headers: Mapping[str, str] | None = None,
        url: str | None = None,
        idempotent: bool = False,
        bearer: bool = True,
    ) -> Any:
        """A request that writes (or reads for a write), with the policy of :meth:`get` where
        it is safe: 401 (refresh once), 403, and 429 (the tenant's gate) never mean Bipsync
        acted, and neither does a connection that was never made. A timeout, a dropped
        connection or a 5xx after the request went out may: an ``idempotent`` request (a PUT,
        a look-up, an upsert by external id) is retried with backoff, any other raises
        :class:`OutcomeUnknown`. Other 4xx answers raise :class:`ApiError` with Bipsync's own
        description. ``body`` makes a fresh iterator of the bytes for each attempt, so an
        upload streams instead of sitting in memory. ``url`` replaces ``api_base + path``
        (an upload address Bipsync gave us); ``bearer`` False sends no token with it."""
        target = url or f"{self.api_base}{path}"
        failures = rate_limits = 0
        refreshed = False
        token = self.tokens.access_token() if bearer else ""
        while True:
            self._wait_for_gate()
            try:
                status, answer_headers, answer = self._exchange(
                    method, target, token, json_body, params, body, headers
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # Nothing was sent: retrying cannot do the work twice.
                failures += 1
                self._backoff_or_raise(
                    failures, f"Bipsync could not be reached ({type(exc).__name__})"
                )
                continue
            except httpx.TransportError as exc:
                failures += 1
                self._unknown_or_backoff(
                    idempotent, failures, f"Bipsync did not answer ({type(exc).__name__})"
                )
                continue
            if 200 <= status < 300:
                return _decode(answer) if answer.strip() else None
            if status == 401 and bearer:
                token = self._after_rejection(
                    answer_headers, path, token, refreshed, "rest_api:write"
                )
                refreshed = True
                continue
            if status == 403:
                raise IpNotAllowListed()
            if status == 429:
                rate_limits += 1
                self._after_rate_limit(answer_headers, rate_limits)
                continue
            if status >= 500:
                failures += 1
                self._unknown_or_backoff(
                    idempotent, failures, f"Bipsync answered with a server error (HTTP {status})"
                )
                continue
            raise ApiError(
                f"Bipsync refused {method} {path} with HTTP {status}: {_description(answer)}",
                code=f"http_{status}",
                status=status,
            )

    def _unknown_or_backoff(self, idempotent: bool, failures: int, sentence: str) -> None:
        if not idempotent:
            raise OutcomeUnknown(f"{sentence}; it may have acted on the request.")
        self._backoff_or_raise(failures, sentence)

    def _after_rejection(
        self, headers: httpx.Headers, path: str, token: str, refreshed: bool, scope: str
    ) -> str:
        """A 401: the token refreshed once, or the reason it cannot help."""
        if _bearer_error(headers) == "insufficient_scope":
            # RFC 6750 §3.1: a new token with the same grant would not have the scope
            # either, so no refresh (Bipsync answers 401 for both cases).
            raise InsufficientScope(
                f"The connection's grant does not include the scope {path} needs.",
                status=401,
            )
        if refreshed:
            raise NotAuthorized(
                "Bipsync refused the connection's token even after a refresh; the "
                f"grant may lack the {scope} scope or have been revoked.",
                status=401,
            )
        return self.tokens.refresh_after_rejection(token)

    def _after_rate_limit(self, headers: httpx.Headers, rate_limits: int) -> None:
        """A 429: close the tenant's gate for Retry-After, or give up after too many."""
        self.rate_limited += 1
        wait = parse_retry_after(headers.get("retry-after"))
        if wait is None:
            wait = max(DEFAULT_RETRY_AFTER_SECONDS, self.policy.backoff(rate_limits))
        # Every worker calling this tenant honours the wait, not only this one.
        self.gate.defer(wait)
        self._gate_open_until = 0.0
        if rate_limits >= self.policy.rate_limit_attempts:
            raise RateLimited(
                "Bipsync kept asking us to slow down; the work will continue later.",
                status=429,
                retry_after=wait,
            )

    def page(self, path: str, *, offset: int, limit: int) -> Page:
        """One page of an offset/limit listing."""
        body = self.get(path, {"offset": offset, "limit": limit})
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise ApiError(
                f"Bipsync answered {path} without a list of results.",
                code="invalid_response",
                transient=True,
            )
        results = [item for item in body["results"] if isinstance(item, dict)]
        total = body.get("total")
        return Page(
            total=total if isinstance(total, int) and total >= 0 else offset + len(results),
            offset=offset,
            limit=limit,
            results=results,
        )

    def pages(self, path: str, *, start: int = 0, limit: int = 100) -> Iterator[Page]:
        """Pages from ``start`` to the end, one at a time (nothing accumulates)."""
        offset = start
        while True:
            page = self.page(path, offset=offset, limit=limit)
            yield page
            offset += len(page.results)
            if len(page.results) < limit or offset >= page.total:
                return

    def all_items(self, path: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """Every item of a small listing (content types, fields), whether the server pages it
        in the research envelope or returns a bare list."""
        body = self.get(path, {"offset": 0, "limit": limit})
        if isinstance(body, list):
            return [item for item in body if isinstance(item, dict)]
        items: list[dict[str, Any]] = []
        for page in self.pages(path, limit=limit):
            items.extend(page.results)
        return items

    # --- internals ----------------------------------------------------------------------------

    def _wait_for_gate(self) -> None:
        now = time.monotonic()
        if now < self._gate_open_until:
            return
        remaining = self.gate.remaining()
        if remaining <= 0:
            self._gate_open_until = now + GATE_RECHECK_SECONDS
            return
        if remaining > self.policy.max_inline_wait:
            raise RateLimited(
                f"Bipsync asked us to wait {remaining:.0f} s; the sync will continue then.",
                retry_after=remaining,
            )
        self._sleep(remaining)

    def _backoff_or_raise(self, failures: int, sentence: str, status: int | None = None) -> None:
        if failures >= self.policy.attempts:
            raise ApiUnavailable(f"{sentence}, {failures} times in a row.", status=status)
        self.retried += 1
        delay = self.policy.backoff(failures)
        log.info("%s; retrying in %.2f s", sentence, delay)
        self._sleep(delay)

    def _fetch(
        self, url: str, params: Mapping[str, str | int] | None, token: str
    ) -> tuple[int, httpx.Headers, bytes]:
        with self.http.stream(
            "GET", url, params=dict(params or {}), auth=BearerAuth(token), follow_redirects=False
        ) as response:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise ApiError(
                        f"Bipsync's answer exceeded {MAX_RESPONSE_BYTES} bytes.",
                        code="response_too_large",
                        transient=True,
                    )
                chunks.append(chunk)
            return response.status_code, response.headers, b"".join(chunks)

    def _exchange(
        self,
        method: str,
        url: str,
        token: str,
        json_body: Any,
        params: Mapping[str, str | int] | None,
        body: BodyFactory | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[int, httpx.Headers, bytes]:
        content: Iterator[bytes] | bytes | None = None
        sent_headers = dict(headers or {})
        if body is not None:
            content = body()
        elif json_body is not None:
            content = orjson.dumps(json_body)
            sent_headers["Content-Type"] = "application/json"
        with self.http.stream(
            method,
            url,
            # None, not {}: an empty mapping would strip the query of a signed upload address.
            params=dict(params) if params else None,
            content=content,
            headers=sent_headers,
            auth=BearerAuth(token) if token else None,
            follow_redirects=False,
        ) as response:
            return response.status_code, response.headers, _bounded(response)


def _bounded(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise ApiError(
                f"Bipsync's answer exceeded {MAX_RESPONSE_BYTES} bytes.",
                code="response_too_large",
                transient=True,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _description(body: bytes) -> str:
    """Bipsync's own words from an error answer (``error_description`` or ``message``)."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        decoded = None
    if isinstance(decoded, dict):
        for name in ("error_description", "message", "detail", "error"):
            value = decoded.get(name)
            if isinstance(value, str) and value.strip():
                return value.strip()[:500]
    return "no description was given."


_BEARER_ERROR = re.compile(r'error\s*=\s*"([^"]*)"')


def _bearer_error(headers: httpx.Headers) -> str | None:
    """The ``error`` of a ``WWW-Authenticate: Bearer ...`` challenge (RFC 6750 §3)."""
    for value in headers.get_list("www-authenticate"):
        if value.strip().lower().startswith("bearer"):
            match = _BEARER_ERROR.search(value)
            if match:
                return match.group(1)
    return None


def _decode(body: bytes) -> Any:
    try:
        # orjson parses a page about three times faster than json, and it runs for every page.
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)  # what orjson refuses and json reads (integers beyond 64 bits)
    except (ValueError, UnicodeDecodeError):
        # Typically a proxy's HTML page; worth trying again later.
        raise ApiError(
            "Bipsync answered with something that is not JSON.",
            code="invalid_response",
            transient=True,
        ) from None
