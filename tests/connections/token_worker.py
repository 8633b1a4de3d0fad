"""A separate process asking the token service for a connection's token (concurrency tests).

Run as ``python -m tests.connections.token_worker <connection id>`` with the partner settings in
the environment (DATABASE_URL naming the test database). It sets Django up, prints ``ready``,
waits for a line on stdin (the start signal shared with the other callers), asks for the token
and prints its SHA-256 (the token itself never goes to a pipe or a log).
"""

from __future__ import annotations

import hashlib
import sys

import django


def main(connection_id: str) -> None:
    django.setup()
    from bipsync_partner.connections.models import Connection
    from bipsync_partner.connections.tokens import get_access_token

    connection = Connection.objects.get(pk=connection_id)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    token = get_access_token(connection)
    sys.stdout.write(hashlib.sha256(token.encode()).hexdigest() + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
