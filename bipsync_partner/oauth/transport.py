"""HTTP transport: bounded, time-limited, redirect-refusing calls, and a Bearer auth for httpx.

Every call the OAuth core makes goes through :class:`HttpClient`, which

- sets connect/read/write/pool timeouts on the underlying ``httpx.Client`` *and* enforces an overall
  deadline while the body streams in (a server dripping one byte at a time cannot hold us);
- never follows redirects: the token, device, revocation and metadata endpoints must answer
  directly (a 3xx there is a misconfiguration, or an attempt to bounce credentials elsewhere);
- reads the body through ``iter_bytes`` and stops at ``max_response_bytes`` (decoded size, so a
  compressed bomb is bounded too);
- identifies itself as ``bipsync-partner/<version>``;
- turns every httpx failure into :class:`~bipsync_partner.oauth.errors.TransportError`.

:func:`create_httpx_client` is the factory for callers that need a plain ``httpx.Client`` with the
same defaults (the REST API client), and :class:`BearerAuth` sends ``Authorization: Bearer <token>``
unquoted and unaltered, as Bipsync requires.
"""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final

import httpx

from bipsync_partner.oauth.errors import ConfigurationError, TransportError
from bipsync_partner.oauth.version import __version__

USER_AGENT: Final = f"bipsync-partner/{__version__}"
DEFAULT_TIMEOUT: Final = 15.0
DEFAULT_TOTAL_TIMEOUT: Final = 30.0
#: OAuth responses are a few hundred bytes; metadata a few kilobytes. 1 MiB is generous.
DEFAULT_MAX_RESPONSE_BYTES: Final = 1024 * 1024


@dataclass(frozen=True)
class TransportSettings:
    """Bounds applied to every HTTP call.

    Attributes:
        timeout: seconds allowed for each phase (connect, each read, each write, pool wait).
        total_timeout: seconds allowed for a whole exchange, body included.
        max_response_bytes: largest (decoded) body accepted.
        user_agent: the ``User-Agent`` header.
        trust_env: let httpx read proxy and CA settings from the environment.
    """

    timeout: float = DEFAULT_TIMEOUT
    total_timeout: float = DEFAULT_TOTAL_TIMEOUT
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    user_agent: str = USER_AGENT
    trust_env: bool = True

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.total_timeout <= 0 or self.max_response_bytes <= 0:
            raise ConfigurationError("timeouts and max_response_bytes must be positive")


@functools.cache
def _tls_context(trust_env: bool) -> ssl.SSLContext:
    """httpx's default verifying context, built once per process: loading the CA bundle takes
    about 25 ms, which every new client (one per token refresh) would otherwise pay. An
    ``SSLContext`` may be shared by clients and threads."""
    return httpx.create_ssl_context(trust_env=trust_env)


def create_httpx_client(
    settings: TransportSettings | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` with timeouts on every call, redirects disabled and our User-Agent.

    TLS verification stays on (httpx's default); there is deliberately no switch to turn it off.
    ``transport`` is for callers that need a custom one (e.g. retries on connect).
    """
    settings = settings or TransportSettings()
    return httpx.Client(
        timeout=httpx.Timeout(settings.timeout),
        follow_redirects=False,
        headers={"User-Agent": settings.user_agent, "Accept": "application/json"},
        trust_env=settings.trust_env,
        verify=_tls_context(settings.trust_env),
        transport=transport,
    )


@dataclass(frozen=True)
class HttpResponse:
    """A fully read, size-bounded response. ``body`` is kept out of the repr: it may hold tokens."""

    status: int
    headers: httpx.Headers
    body: bytes = field(repr=False)
    url: str

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters, lowercased (``""`` when absent)."""
        content_type: str = self.headers.get("content-type", "")
        return content_type.split(";", 1)[0].strip().lower()


class HttpClient:
    """The OAuth core's HTTP client: an ``httpx.Client`` plus the bounds of
    :class:`TransportSettings` applied to every request. Use as a context manager, or call
    :meth:`close`. Pass ``client`` to reuse an existing ``httpx.Client`` (it is then not closed
    by :meth:`close`); its redirect setting is irrelevant, as :meth:`request` refuses any 3xx.
    """

    def __init__(
        self,
        settings: TransportSettings | None = None,
        *,
        client: httpx.Client | None = None,
    ) -> None:
        self.settings = settings or TransportSettings()
        self._owns_client = client is None
        self.client = client or create_httpx_client(self.settings)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
    ) -> HttpResponse:
        """Send one request and read the whole body within the configured bounds.

        Raises ``TransportError`` with ``error`` = ``timeout``, ``network_error``,
        ``response_too_large`` or ``unexpected_redirect``; ``ConfigurationError`` for a URL httpx
        cannot use. Any HTTP status other than 3xx is returned for the caller to interpret.
        """
        limit = self.settings.max_response_bytes
        deadline = time.monotonic() + self.settings.total_timeout
        try:
            with self.client.stream(
                method,
                url,
                data=dict(data) if data is not None else None,
                headers=dict(headers) if headers is not None else None,
                auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
                follow_redirects=False,
            ) as response:
                if 300 <= response.status_code < 400:
                    raise TransportError(
                        "the server answered with a redirect; OAuth endpoints must answer "
                        "directly, so it is not followed",
                        error="unexpected_redirect",
                        status=response.status_code,
                        transient=False,
                    )
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise _too_large(limit, response.status_code)
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(limit, response.status_code)
                    if time.monotonic() > deadline:
                        raise TransportError(
                            f"the response took longer than {self.settings.total_timeout:g} s",
                            error="timeout",
                        )
                    chunks.append(chunk)
                return HttpResponse(
                    status=response.status_code,
                    headers=response.headers,
                    body=b"".join(chunks),
                    url=str(response.url),
                )
        except httpx.TimeoutException as exc:
            raise TransportError(
                f"no answer within {self.settings.timeout:g} s ({type(exc).__name__})",
                error="timeout",
            ) from exc
        except httpx.InvalidURL as exc:
            raise ConfigurationError(f"unusable URL: {exc}") from exc
        except httpx.HTTPError as exc:
            raise TransportError(
                f"the HTTP exchange failed ({type(exc).__name__})", error="network_error"
            ) from exc


def _too_large(limit: int, status: int) -> TransportError:
    return TransportError(
        f"the response body exceeds {limit} bytes",
        error="response_too_large",
        status=status,
        # A body that large is typically an HTML error page from a proxy: classify as transient
        # like the other malformed bodies, and never let it reach a parser.
        transient=True,
    )


def _is_token68ish(token: str) -> bool:
    # Visible ASCII only: anything else (spaces, CR/LF, non-ASCII) would be altered by, or break,
    # the header. RFC 6750 §2.1's b64token is narrower, but Bipsync says tokens are opaque.
    return bool(token) and all("\x21" <= ch <= "\x7e" for ch in token)


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>``, the token unquoted and unaltered (Bipsync reference,
    "Tokens"; RFC 6750 §2.1). The token is kept out of the repr."""

    def __init__(self, access_token: str) -> None:
        if not _is_token68ish(access_token):
            raise ConfigurationError(
                "an access token must be non-empty visible ASCII", error="invalid_token_value"
            )
        self._access_token = access_token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._access_token}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(access_token=<hidden>)"
