from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.devtools.stack import Home


@pytest.fixture(scope="session")
def devstack_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    """One development home for every bin/run test of the session: its embedded servers and
    migrated databases are reused by each start, as a developer's are."""
    home = Home.create(tmp_path_factory.mktemp("devstack"))
    try:
        yield home
    finally:
        home.stop_servers()
