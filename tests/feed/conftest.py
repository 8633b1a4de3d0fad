"""The sync fixtures (the sandbox's world, the partner pointed at it), reused."""

from tests.sync.conftest import _isolated_redis_keys, partner, sync_world

__all__ = ["_isolated_redis_keys", "partner", "sync_world"]
