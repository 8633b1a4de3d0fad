"""An encrypted text field: callers assign and read plaintext, the database only sees ciphertext.

In the spirit of django-oauth-toolkit's hashed client secret, the transformation happens in the
field's ``pre_save``, so no caller can forget it. The ciphertext is bound to its row and field
(``<app>.<model>:<pk>:<field>``, see :mod:`crypto`); because the row's primary key must be known
before the INSERT, models with encrypted fields inherit :class:`EncryptedModel`, whose UUID primary
key is made on the client.

Reading is lazy: loading a row keeps the ciphertext in a :class:`SealedValue` and decrypts only when
the attribute is read. An admin list of a thousand connections decrypts nothing, and a missing or
wrong key fails only where a token is actually needed.

What cannot be made safe is refused: lookups other than ``isnull`` (a ciphertext is randomised, so
equality is meaningless) and ``QuerySet.update()``/``bulk_update()`` with a plaintext (there is no
row to bind it to). ``None`` may always be written, which is how tokens are wiped.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self

from django.core import checks
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Expression
from django.db.models.lookups import IsNull
from django.db.models.query_utils import DeferredAttribute

from bipsync_partner.connections import crypto

# While set, the descriptor hands out and accepts SealedValue objects instead of plaintext. Only
# EncryptedModel.refresh_from_db sets it, so that reloading a row copies ciphertext, not plaintext.
_raw_access: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "encrypted_field_raw_access", default=False
)


@contextmanager
def raw_access() -> Iterator[None]:
    token = _raw_access.set(True)
    try:
        yield
    finally:
        _raw_access.reset(token)


class Ciphertext(str):
    """Marks a string as ciphertext made by ``pre_save``: the only non-None value the field
    lets through to the database."""

    __slots__ = ()


class SealedValue:
    """What an encrypted attribute holds internally: a ciphertext (and the context it is bound
    to), a plaintext waiting to be encrypted, or both once either has been derived.

    Its repr and str never show the plaintext; pickling keeps only the ciphertext.
    """

    __slots__ = ("_plaintext", "ciphertext", "context")

    def __init__(
        self,
        *,
        ciphertext: str | None = None,
        plaintext: str | None = None,
        context: str | None = None,
    ) -> None:
        if ciphertext is None and plaintext is None:
            raise ValueError("a SealedValue needs a ciphertext or a plaintext")
        self.ciphertext = ciphertext
        self._plaintext = plaintext
        self.context = context

    @property
    def is_saved(self) -> bool:
        return self.ciphertext is not None

    @property
    def key_id(self) -> str | None:
        """The key id of the ciphertext (no decryption); None when not yet encrypted."""
        return crypto.key_id_of(self.ciphertext) if self.ciphertext is not None else None

    def reveal(self) -> str:
        """The plaintext, decrypting (once) if needed."""
        if self._plaintext is None:
            assert self.ciphertext is not None
            if self.context is None:
                raise crypto.DecryptionError(
                    "this encrypted value was read without its row (e.g. through values()); "
                    "load the model instance to decrypt it."
                )
            self._plaintext = crypto.decrypt(self.ciphertext, context=self.context)
        return self._plaintext

    def sealed_for(self, context: str) -> SealedValue:
        """This value encrypted for ``context`` with the current key; self when it already is."""
        if (
            self.ciphertext is not None
            and self.context == context
            and crypto.keyring().is_current(self.ciphertext)
        ):
            return self
        plaintext = self.reveal()
        return SealedValue(
            ciphertext=crypto.encrypt(plaintext, context=context),
            plaintext=plaintext,
            context=context,
        )

    def __repr__(self) -> str:
        if self.ciphertext is None:
            return "<SealedValue: unsaved secret>"
        return f"<SealedValue: encrypted with key {self.key_id}>"

    __str__ = __repr__

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        if self.ciphertext is None:
            raise TypeError("an unsaved secret cannot be pickled; save the model first")
        return (_unpickle_sealed, (self.ciphertext, self.context))


def _unpickle_sealed(ciphertext: str, context: str | None) -> SealedValue:
    return SealedValue(ciphertext=ciphertext, context=context)


class EncryptedAttribute(DeferredAttribute):
    """Plaintext in, plaintext out; a :class:`SealedValue` underneath in ``instance.__dict__``."""

    field: EncryptedTextField

    def __get__(self, instance: models.Model | None, cls: type | None = None) -> Any:
        if instance is None:
            return self
        state = super().__get__(instance, cls)  # loads the column when it was deferred
        if state is None or _raw_access.get():
            return state
        assert isinstance(state, SealedValue)
        return state.reveal()

    def __set__(self, instance: models.Model, value: object) -> None:
        attname = self.field.attname
        if value is None or isinstance(value, SealedValue):
            instance.__dict__[attname] = value
        elif isinstance(value, str):
            instance.__dict__[attname] = SealedValue(plaintext=value)
        else:
            raise TypeError(
                f"{self.field.model.__name__}.{self.field.name} takes a str or None, "
                f"not {type(value).__name__}"
            )


class EncryptedTextField(models.TextField[Any, Any]):
    """A text column holding ``v1:<key id>:<data>`` ciphertext of the plaintext assigned to it.

    Not editable by default: model forms and the admin never show it.
    """

    descriptor_class = EncryptedAttribute
    description = "Text encrypted with AES-256-GCM, bound to its row and field"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if kwargs.get("editable") is False:
            del kwargs["editable"]
        else:
            kwargs["editable"] = True
        return name, path, args, kwargs

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors = super().check(**kwargs)
        model = getattr(self, "model", None)
        if model is not None and not issubclass(model, EncryptedModel):
            errors.append(
                checks.Error(
                    f"{model.__name__}.{self.name} is encrypted, so its model must inherit "
                    "EncryptedModel (a client-side UUID primary key binds each ciphertext to "
                    "its row before the INSERT).",
                    obj=self,
                    id="connections.E001",
                )
            )
        return errors

    def context_for(self, instance: models.Model) -> str:
        """The associated data binding this field's ciphertext to ``instance``'s row."""
        if instance.pk is None:
            raise ValueError(
                f"{type(instance).__name__} needs its primary key before a secret can be encrypted"
            )
        return f"{instance._meta.label_lower}:{instance.pk}:{self.name}"

    def sealed(self, instance: models.Model) -> SealedValue | None:
        """The raw state of this field on ``instance``, without decrypting."""
        with raw_access():
            value = getattr(instance, self.attname)
        assert value is None or isinstance(value, SealedValue)
        return value

    def pre_save(self, model_instance: models.Model, add: bool) -> Ciphertext | None:
        state = self.sealed(model_instance)
        if state is None:
            return None
        context = self.context_for(model_instance)
        if state.ciphertext is None or state.context != context:
            # Newly assigned plaintext, or a value copied from another instance: (re-)encrypt.
            state = state.sealed_for(context)
            model_instance.__dict__[self.attname] = state
        assert state.ciphertext is not None
        return Ciphertext(state.ciphertext)

    def from_db_value(
        self, value: str | None, expression: Expression, connection: BaseDatabaseWrapper
    ) -> SealedValue | None:
        # The context is attached by EncryptedModel.from_db, which knows the row.
        return None if value is None else SealedValue(ciphertext=value)

    def to_python(self, value: Any) -> Any:
        return value

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, Ciphertext):
            return str(value)
        raise TypeError(
            f"{self.model.__name__}.{self.name} is encrypted: assign the value on a model "
            "instance and save() it; QuerySet.update(), bulk_update() and lookups on it are "
            "not possible (only None may be written that way)."
        )

    def value_to_string(self, obj: models.Model) -> str:
        # Serialisers (dumpdata) get the ciphertext, never the plaintext.
        state = self.sealed(obj)
        if state is None:
            return ""
        if state.ciphertext is None:
            raise ValueError(f"{type(obj).__name__}.{self.name} must be saved before serialising")
        return state.ciphertext

    def get_lookup(self, lookup_name: str) -> Any:
        # Ciphertexts are randomised: only "is there a value" can be asked of the database.
        return IsNull if lookup_name == "isnull" else None

    def get_transform(self, lookup_name: str) -> Any:
        return None


class EncryptedModel(models.Model):
    """Base for models with :class:`EncryptedTextField` columns.

    The UUID primary key is made on the client, so each ciphertext can be bound to its row before
    the INSERT; loading a row binds each sealed value to that row; reloading copies ciphertext.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)

    class Meta:
        abstract = True

    @classmethod
    def get_encrypted_fields(cls) -> Sequence[EncryptedTextField]:
        return [f for f in cls._meta.concrete_fields if isinstance(f, EncryptedTextField)]

    @classmethod
    def from_db(cls, db: str | None, field_names: Collection[str], values: Collection[Any]) -> Self:
        instance = super().from_db(db, field_names, values)
        for field in cls.get_encrypted_fields():
            state = instance.__dict__.get(field.attname)
            if isinstance(state, SealedValue) and state.context is None:
                state.context = field.context_for(instance)
        return instance

    def refresh_from_db(
        self,
        using: str | None = None,
        fields: Iterable[str] | None = None,
        from_queryset: models.QuerySet[Self] | None = None,
    ) -> None:
        # Django copies each field with getattr/setattr; in raw mode that copies the sealed
        # value (ciphertext bound to this row) instead of decrypting every secret.
        with raw_access():
            super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)

    def secrets_on_old_keys(self) -> list[EncryptedTextField]:
        """Encrypted fields whose stored ciphertext is not under the current key."""
        current = crypto.keyring().current.key_id
        stale = []
        for field in self.get_encrypted_fields():
            state = field.sealed(self)
            if state is not None and state.ciphertext is not None and state.key_id != current:
                stale.append(field)
        return stale

    def secrets_reencrypted(self, key_id: str) -> None:
        """Called by ``rotate_token_keys`` after this row's secrets moved to ``key_id`` (inside
        the row's transaction); subclasses record it in their history."""

    def reencrypt_secrets(self) -> list[str]:
        """Re-encrypt every secret not under the current key (in memory; the caller saves the
        returned field names). Decrypts with whichever configured key each one names."""
        changed = []
        for field in self.secrets_on_old_keys():
            state = field.sealed(self)
            assert state is not None
            self.__dict__[field.attname] = state.sealed_for(field.context_for(self))
            changed.append(field.attname)
        return changed
