"""Run-time switches of the sandbox, kept in the database so that every gunicorn worker sees them.

- :class:`RuntimeConfig`: one row of lifetime overrides (tests use short token lifetimes).
- :class:`Fault`: injected faults, off unless a row exists. ``target`` names the surface:
  the OAuth endpoints here ("token", "device_authorization", "revocation", "metadata"), and the
  REST API pages ("api"); the same table serves both.
- :class:`EndpointCounter`: how often each client hit an endpoint, by grant type and outcome, so
  that tests can assert "exactly one refresh".
"""

from __future__ import annotations

from django.db import models


class RuntimeConfig(models.Model):
    SINGLETON_ID = 1

    access_token_lifetime = models.PositiveIntegerField(null=True, blank=True)
    refresh_token_lifetime = models.PositiveIntegerField(null=True, blank=True)
    code_lifetime = models.PositiveIntegerField(null=True, blank=True)
    device_code_lifetime = models.PositiveIntegerField(null=True, blank=True)
    device_poll_interval = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return "sandbox run-time configuration"


class FaultTarget(models.TextChoices):
    TOKEN = "token", "Token endpoint"
    DEVICE_AUTHORIZATION = "device_authorization", "Device authorization endpoint"
    REVOCATION = "revocation", "Revocation endpoint"
    METADATA = "metadata", "Authorization server metadata"
    API = "api", "REST API pages"
    GRAPHQL = "graphql", "GraphQL endpoint"


class FaultKind(models.TextChoices):
    # Answer with ``status_code`` (default 503) without processing the request.
    STATUS = "status", "Answer with an error status"
    # Wait ``delay_ms`` before processing (or after, with when="after"), then answer normally.
    SLOW = "slow", "Answer slowly"
    # Close the connection without processing the request or answering.
    CLOSE = "close", "Close the connection"
    # Process and commit (e.g. rotate the refresh token), then close without answering.
    LOSE_RESPONSE = "lose_response", "Commit, then lose the response"
    # Answer 429 with Retry-After (``delay_ms`` rounded up to seconds); used by the API pages.
    RATE_LIMIT = "rate_limit", "Answer 429 Too Many Requests"
    # Process and commit, then answer with the members of ``alter`` set in a successful JSON
    # answer (a null member removes it): a token answer that rotated the refresh token but is
    # unusable otherwise, or that carries a member the grant must not have.
    ALTER_RESPONSE = "alter_response", "Commit, then alter the answer"
    # Listings (target "api") only: answer 200 with no results and a total of 0, as a backend
    # that lost its data or the token's visibility for a moment would.
    EMPTY_PAGE = "empty_page", "Answer an empty listing"
    # Listings (target "api") only: answer the page with only its first ``keep`` results while
    # the envelope still reports the real total, a page that contradicts its own total.
    SHORT_PAGE = "short_page", "Answer a page shorter than its total says"
    # Listings (target "api") only: the page's first ``keep`` results, and a total that says the
    # list ends there: a listing that lost documents and is consistent about it.
    END_EARLY = "end_early", "Answer a listing that ends early"
    # Process and commit (e.g. create the note), then answer with ``status_code`` (default 503)
    # instead of the real answer: a server error after the work was done.
    STATUS_AFTER = "status_after", "Commit, then answer an error status"


#: Fault kinds that rewrite a listing's answer (the view runs, then its page is changed).
LISTING_FAULTS = (FaultKind.EMPTY_PAGE, FaultKind.SHORT_PAGE, FaultKind.END_EARLY)


class Fault(models.Model):
    target = models.CharField(max_length=32, choices=FaultTarget.choices)
    kind = models.CharField(max_length=32, choices=FaultKind.choices)
    status_code = models.PositiveSmallIntegerField(default=503)
    delay_ms = models.PositiveIntegerField(default=0)
    when = models.CharField(max_length=6, default="before")  # for SLOW: "before" or "after"
    keep = models.PositiveIntegerField(default=0)  # for SHORT_PAGE: results left on the page
    # How many matching requests still get the fault; NULL = until cleared.
    remaining = models.PositiveIntegerField(null=True, blank=True)
    # The chance (0..1) that a matching request gets the fault, so that a long run sees a rate
    # of faults rather than a burst; 1 = every matching request.
    probability = models.FloatField(default=1.0)
    # Optional filters; empty = any.
    method = models.CharField(max_length=10, blank=True, default="")
    tenant_slug = models.CharField(max_length=63, blank=True, default="")
    client_id = models.CharField(max_length=100, blank=True, default="")
    grant_type = models.CharField(max_length=64, blank=True, default="")
    path_prefix = models.CharField(max_length=200, blank=True, default="")
    # For ALTER_RESPONSE: a JSON object of the members to set (null: remove).
    alter = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["target"])]

    def __str__(self) -> str:
        return f"{self.kind} fault on {self.target}"


class EndpointCounter(models.Model):
    client_id = models.CharField(max_length=100)
    endpoint = models.CharField(max_length=32)
    grant_type = models.CharField(max_length=64, blank=True, default="")
    outcome = models.CharField(max_length=64)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["client_id", "endpoint", "grant_type", "outcome"],
                name="sandbox_endpoint_counter_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.grant_type} {self.outcome}: {self.count}"
