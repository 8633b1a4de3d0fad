"""Users sign in by email; they belong to teams through memberships that carry a role.

A team always keeps one admin: :meth:`Team.set_role` and :meth:`Team.remove_member` lock the
team's admin memberships before they look, so that two admins demoting each other at once cannot
leave the team without one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models, transaction
from django.utils import timezone
from django.utils.text import slugify


class LastAdminError(Exception):
    """The change would leave a team without an admin."""

    def __init__(self, team: Team) -> None:
        self.team = team
        super().__init__(
            f"{team} needs at least one admin: make someone else an admin first, then try again."
        )


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        if not email:
            raise ValueError("A user needs an email address.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def get_by_natural_key(self, username: str | None) -> User:
        # Email addresses are stored lower-cased; people type them any way they like.
        return self.get(email__iexact=username)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    @property
    def display_name(self) -> str:
        return self.name or self.email

    def memberships_with_teams(self) -> models.QuerySet[Membership]:
        return self.memberships.select_related("team").order_by("team__name")

    def membership_in(self, team: Team) -> Membership | None:
        return self.memberships.filter(team=team).first()


class Team(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=60, unique=True)
    created = models.DateTimeField(default=timezone.now)
    members: models.ManyToManyField[User, Membership] = models.ManyToManyField(
        User, through="Membership", related_name="teams"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.slug:
            self.slug = self._unique_slug()
        super().save(*args, **kwargs)

    def _unique_slug(self) -> str:
        base = slugify(self.name)[:50] or "team"
        slug, n = base, 2
        while Team.objects.filter(slug=slug).exists():
            slug, n = f"{base}-{n}", n + 1
        return slug

    def admins(self) -> models.QuerySet[User]:
        return User.objects.filter(memberships__team=self, memberships__role=Membership.Role.ADMIN)

    def add_member(self, user: User, role: str = "member") -> Membership:
        membership, _ = Membership.objects.update_or_create(
            team=self, user=user, defaults={"role": role}
        )
        return membership

    def join(self, user: User, role: str = "member") -> Membership:
        """Add ``user`` with ``role``, or keep the role they already have (an invitation never
        demotes an admin)."""
        membership, _ = Membership.objects.get_or_create(
            team=self, user=user, defaults={"role": role}
        )
        return membership

    def set_role(self, membership: Membership, role: str) -> Membership:
        """Change a member's role; :class:`LastAdminError` when it would demote the last admin."""
        with transaction.atomic():
            locked = self._lock_for_admin_change(membership)
            if locked.is_admin and role != Membership.Role.ADMIN:
                self._keep_an_admin(locked)
            locked.role = role
            locked.save(update_fields=["role"])
        return locked

    def remove_member(self, membership: Membership) -> None:
        """Delete a membership; :class:`LastAdminError` when it is the last admin's."""
        with transaction.atomic():
            locked = self._lock_for_admin_change(membership)
            if locked.is_admin:
                self._keep_an_admin(locked)
            locked.delete()

    def _lock_for_admin_change(self, membership: Membership) -> Membership:
        # Every admin row and the one being changed, in one order, so that concurrent changes
        # queue behind each other instead of each seeing the other admin still there.
        rows = list(
            Membership.objects.select_for_update()
            .filter(team=self)
            .filter(models.Q(role=Membership.Role.ADMIN) | models.Q(pk=membership.pk))
            .order_by("pk")
        )
        for row in rows:
            if row.pk == membership.pk:
                return row
        raise Membership.DoesNotExist("The membership is no longer there.")

    def _keep_an_admin(self, leaving: Membership) -> None:
        others = Membership.objects.filter(team=self, role=Membership.Role.ADMIN)
        if not others.exclude(pk=leaving.pk).exists():
            raise LastAdminError(self)


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    user = models.ForeignKey(User, models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "team"], name="one_membership_per_team")
        ]
        ordering = ["team__name", "user__email"]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"

    @property
    def is_admin(self) -> bool:
        return self.role == self.Role.ADMIN


class InvitationQuerySet(models.QuerySet["Invitation"]):
    def open(self) -> InvitationQuerySet:
        """Neither accepted nor revoked (expired ones included: they still block a duplicate)."""
        return self.filter(accepted_at__isnull=True, revoked_at__isnull=True)

    def pending(self, now: datetime) -> InvitationQuerySet:
        return self.open().filter(expires_at__gt=now)


class Invitation(models.Model):
    """An invitation by email to join a team with a role, usable once until it expires.

    The link carries a random token; only its SHA-256 is stored (``token_hash``), so neither the
    database, the admin nor this object's ``str`` can give the link away. The token has 256 bits
    of entropy, so a plain hash is enough (a slow password hash protects guessable secrets).
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"

    team = models.ForeignKey(Team, models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(
        max_length=10, choices=Membership.Role.choices, default=Membership.Role.MEMBER
    )
    invited_by = models.ForeignKey(User, models.SET_NULL, null=True, blank=True, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(User, models.SET_NULL, null=True, blank=True, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[InvitationQuerySet] = InvitationQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "email"],
                condition=models.Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="one_open_invitation_per_team_email",
            )
        ]

    def __str__(self) -> str:
        return f"Invitation of {self.email} to {self.team} ({self.role})"

    def __repr__(self) -> str:
        return f"<Invitation {self.pk} team={self.team_id} state={self.state(timezone.now())}>"

    def state(self, now: datetime) -> str:
        if self.accepted_at is not None:
            return self.State.ACCEPTED
        if self.revoked_at is not None:
            return self.State.REVOKED
        if self.expires_at <= now:
            return self.State.EXPIRED
        return self.State.PENDING
