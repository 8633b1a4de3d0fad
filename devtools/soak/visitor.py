"""A signed-in person using the partner's pages during the soak, faults included.

One request a second, in turn: the connections list, the connection's page, the sync overview,
the connection's sync history and the research browser; every fifth one is "Sync now" on the
connection (a POST with its CSRF token), which queues a sync that uses the connection's token.
Each answer is kept with its time, so the report can tell which fault window it fell in, and
whether a 503 said why in a sentence. A redirect to the sign-in page (a session the database lost)
signs in again; it is not an error.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

_CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
# A 503 page that explains itself: a sentence of at least a few words ending in a full stop.
_SENTENCE = re.compile(r"<p>[^<]*\w+ \w+ \w+[^<]*\.</p>")
LOGIN = "/accounts/login/"


@dataclass
class Answer:
    at: float  # when the request was sent
    ended: float  # when its answer (or its error) came
    page: str
    status: int | str  # an HTTP status, or the exception's name when there was no answer
    sentence: bool = False

    def as_json(self, t0: float) -> dict[str, Any]:
        return {
            "at_s": round(self.at - t0, 1),
            "page": self.page,
            "status": self.status,
            "sentence": self.sentence,
        }


@dataclass
class Visitor:
    web_url: str
    email: str
    password: str
    team: str
    connection: str
    answers: list[Answer] = field(default_factory=list)
    _turn: int = 0
    _http: httpx.Client | None = None

    @property
    def pages(self) -> list[str]:
        team, conn = f"/teams/{self.team}", self.connection
        return [
            f"{team}/connections/",
            f"{team}/connections/{conn}/",
            f"{team}/sync/",
            f"{team}/sync/{conn}/",
            f"{team}/research/",
        ]

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(base_url=self.web_url, timeout=5, follow_redirects=False)
        return self._http

    def visit(self) -> None:
        """One request (bounded by a 5 s timeout); never raises."""
        self._turn += 1
        if self._turn % 5 == 0:
            page = f"/teams/{self.team}/sync/{self.connection}/now/"
            self._record(page, lambda http: self._post(http, page))
        else:
            page = self.pages[self._turn % len(self.pages)]
            self._record(page, lambda http: http.get(page))

    def _record(self, page: str, send: Any) -> None:
        started = time.time()
        try:
            response: httpx.Response = send(self._client())
            if _to_login(response):
                self._sign_in()
                response = send(self._client())
            status: int | str = response.status_code
            sentence = status == 503 and bool(_SENTENCE.search(response.text))
        except httpx.HTTPError as exc:
            status, sentence = type(exc).__name__, False
        except SignInRefused as exc:
            status, sentence = exc.status, exc.sentence
        self.answers.append(Answer(started, time.time(), page, status, sentence))

    def _post(self, http: httpx.Client, page: str) -> httpx.Response:
        form = http.get(f"/teams/{self.team}/sync/{self.connection}/")
        if _to_login(form) or form.status_code != 200:
            return form
        return http.post(page, data={"csrfmiddlewaretoken": _csrf(form.text)})

    def _sign_in(self) -> None:
        http = self._client()
        form = http.get(LOGIN)
        if form.status_code != 200:
            raise SignInRefused(form)
        done = http.post(
            LOGIN,
            data={
                "csrfmiddlewaretoken": _csrf(form.text),
                "username": self.email,
                "password": self.password,
            },
        )
        if done.status_code != 302:
            raise SignInRefused(done)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


class SignInRefused(Exception):
    """The sign-in page did not sign in (during an outage: its 503)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.status = response.status_code
        self.sentence = self.status == 503 and bool(_SENTENCE.search(response.text))


def _to_login(response: httpx.Response) -> bool:
    return response.status_code == 302 and LOGIN in response.headers.get("location", "")


def _csrf(html: str) -> str:
    match = _CSRF_FIELD.search(html)
    return match.group(1) if match else ""
