"""Who exists in the emulated Bipsync: tenants (customers), teams, users and team admins."""

from __future__ import annotations

import ipaddress
import secrets

from django.contrib.auth.hashers import check_password, make_password
from django.db import models

from bipsync_sandbox import hosts


def new_object_id() -> str:
    """A 24-hex identifier, the shape of Bipsync's (MongoDB ObjectId style) ids [doc]."""
    return secrets.token_hex(12)


class Tenant(models.Model):
    """A Bipsync customer with its own API and web hosts."""

    slug = models.CharField(max_length=63, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    # CIDRs allowed to call the API; empty means every address is allowed. A caller outside the
    # list gets 403 from the REST API (platform reference, "Errors").
    ip_allowlist = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def api_base(self) -> str:
        return hosts.api_template().base(self.slug)

    @property
    def web_base(self) -> str:
        return hosts.web_template().base(self.slug)

    @property
    def issuer(self) -> str:
        # The API base IS the issuer (docs/bipsync.md, "Endpoints": RFC 8414 §3.3).
        return self.api_base

    def api_url(self, path: str) -> str:
        return self.api_base + path

    def web_url(self, path: str) -> str:
        return self.web_base + path

    def allows_ip(self, address: str) -> bool:
        networks: list[str] = list(self.ip_allowlist or [])
        if not networks:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(cidr, strict=False) for cidr in networks)


class Team(models.Model):
    id = models.CharField(primary_key=True, max_length=24, default=new_object_id, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="teams")
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class User(models.Model):
    """A person at a customer. Signs in with email and password on the tenant's web host."""

    id = models.CharField(primary_key=True, max_length=24, default=new_object_id, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="users")
    email = models.CharField(max_length=254)
    name = models.CharField(max_length=200, blank=True, default="")
    password = models.CharField(max_length=256)
    is_active = models.BooleanField(default=True)
    teams: models.ManyToManyField[Team, Membership] = models.ManyToManyField(
        Team, through="Membership", related_name="members"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "email"], name="sandbox_user_email_per_tenant"
            )
        ]

    def __str__(self) -> str:
        return self.email

    def set_password(self, raw: str) -> None:
        self.password = make_password(raw)

    def check_password(self, raw: str) -> bool:
        return bool(check_password(raw, self.password))

    @property
    def display_name(self) -> str:
        return self.name or self.email


class Membership(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    is_admin = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "team"], name="sandbox_membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.team_id}"
