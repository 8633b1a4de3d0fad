"""Debian's chromium, driven by Playwright, for the browser tests.

Never ``playwright install``: the machine has no internet for browser downloads, and Debian's
package is the browser we support. bin/check and .ci/run install it when it is missing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from playwright.sync_api import Browser, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# The background-networking flags keep chromium from calling out to Google on a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.contextmanager
def chromium(*, allow_sync_orm: bool = False) -> Iterator[Browser]:
    """Launch chromium for one test module.

    ``allow_sync_orm``: Playwright's sync API keeps an asyncio loop on the test thread, and Django
    then refuses the test's own (plain, synchronous) ORM calls as "async"; this lets them through.
    """
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    if allow_sync_orm:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield launched
            finally:
                launched.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
