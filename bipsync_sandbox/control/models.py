"""Run-time switches of the sandbox, kept in the database so that every gunicorn worker sees them.

- :class:`RuntimeConfig`: one row of lifetime overrides (tests use short token lifetimes).
- :class:`Fault`: injected faults, off unless a row exists. ``target`` names the surface:
  the OAuth endpoints here ("token", "device_authorization", "revocation", "metadata"), and the
  REST API pages later ("api"); the same table serves both.
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


class Fault(models.Model):
    target = models.CharField(max_length=32, choices=FaultTarget.choices)
    kind = models.CharField(max_length=32, choices=FaultKind.choices)
    status_code = models.PositiveSmallIntegerField(default=503)
    delay_ms = models.PositiveIntegerField(default=0)
    when = models.CharField(max_length=6, default="before")  # for SLOW: "before" or "after"
    # How many matching requests still get the fault; NULL = until cleared.
    remaining = models.PositiveIntegerField(null=True, blank=True)
    # Optional filters; empty = any.
    tenant_slug = models.CharField(max_length=63, blank=True, default="")
    client_id = models.CharField(max_length=100, blank=True, default="")
    grant_type = models.CharField(max_length=64, blank=True, default="")
    path_prefix = models.CharField(max_length=200, blank=True, default="")
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
