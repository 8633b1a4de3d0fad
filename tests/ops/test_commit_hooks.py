"""Work asked for many times in one transaction runs once at its commit, never after a rollback,
and a rollback leaves nothing behind for the next transaction."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from bipsync_partner.commit_hooks import on_commit_once

pytestmark = pytest.mark.django_db(transaction=True)  # real commits and rollbacks


class Calls(list[str]):
    def ask(self, key: str) -> None:
        on_commit_once(("test", key), lambda: self.append(key))


class RolledBack(Exception):
    pass


def rolled_back(calls: Calls, key: str, held: list[object] | None = None) -> None:
    """Ask for ``key`` in a transaction (or savepoint) that then rolls back."""
    with transaction.atomic():
        calls.ask(key)
        if held is not None:
            held.extend(connection.run_on_commit)  # as captured hooks or a traceback would
        raise RolledBack


def test_it_runs_each_key_once_when_the_transaction_commits() -> None:
    calls = Calls()
    with transaction.atomic():
        for _ in range(1000):
            calls.ask("a")
        calls.ask("b")
        assert calls == []  # nothing before the commit
    assert calls == ["a", "b"]


def test_it_runs_at_once_outside_a_transaction() -> None:
    calls = Calls()
    calls.ask("a")
    calls.ask("a")
    assert calls == ["a", "a"]


def test_a_rolled_back_transaction_runs_nothing_and_the_next_one_runs_again() -> None:
    calls = Calls()
    with pytest.raises(RolledBack):
        rolled_back(calls, "a")
    assert calls == []
    with transaction.atomic():
        calls.ask("a")
    assert calls == ["a"]


def test_a_key_first_asked_for_in_a_rolled_back_savepoint_still_runs_when_asked_again() -> None:
    calls = Calls()
    with transaction.atomic():
        with pytest.raises(RolledBack):
            rolled_back(calls, "a")  # a savepoint: its commit hook goes with it
        calls.ask("a")
        calls.ask("b")
    assert calls == ["a", "b"]


def test_a_transaction_begun_by_a_commit_hook_gets_its_own() -> None:
    calls = Calls()

    def then_another() -> None:
        with transaction.atomic():
            calls.ask("second")
        calls.append("after the second commit")

    with transaction.atomic():
        calls.ask("first")
        on_commit_once(("test", "then"), then_another)
    assert calls == ["first", "second", "after the second commit"]


def test_a_rolled_back_hook_that_something_still_holds_does_not_swallow_the_next_transaction() -> (
    None
):
    calls = Calls()
    held: list[object] = []
    with pytest.raises(RolledBack):
        rolled_back(calls, "a", held)
    with transaction.atomic():
        calls.ask("a")
    assert calls == ["a"]
    assert held  # kept alive until here
