"""A running ``bin/run | tee run.log`` and what a developer does beside it: the Ready block's
logins, the README's commands in a second terminal (``bin/manage``), and the log they read."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from accounts import demo
from bipsync_sandbox.client import SandboxClient
from tests.devtools.stack import READY, ROOT, Home, Stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(devstack_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(devstack_home, tmp_path_factory.mktemp("run") / "run.log")
    try:
        stack.wait_until_ready()
        yield stack
    finally:
        with contextlib.suppress(Exception):
            stack.ctrl_c()
        stack.kill_leftovers()


@contextlib.contextmanager
def sign_in(web: str, email: str, password: str) -> Iterator[httpx.Client]:
    """A cookie jar signed in to the partner app, as a browser would be."""
    with httpx.Client(base_url=web, timeout=30) as browser:
        page = browser.get("/accounts/login/")
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert match, page.text[:500]
        answer = browser.post(
            "/accounts/login/",
            data={"csrfmiddlewaretoken": match.group(1), "username": email, "password": password},
        )
        assert answer.status_code == 302, f"{email} could not sign in: {answer.status_code}"
        yield browser


def test_bin_run_ends_its_start_up_with_a_ready_block_whose_logins_work(
    devstack_home: Home, stack: Stack
) -> None:
    output = stack.output()
    ready = output[output.index(READY) :]
    banners = output[: output.index(READY)]
    secrets = devstack_home.dev_env()
    admin, member = secrets["DEMO_ADMIN_PASSWORD"], secrets["DEMO_MEMBER_PASSWORD"]
    outsider = secrets["DEMO_OUTSIDER_PASSWORD"]

    assert f"Listening at: {devstack_home.web}" in banners
    assert f"Listening at: {devstack_home.sandbox}" in banners
    assert re.search(r"celery@\S+ ready\.", banners)
    assert f"{devstack_home.web}/" in ready
    assert f"{devstack_home.sandbox}/" in ready
    for email, password in [
        (demo.ADMIN_EMAIL, admin),
        (demo.MEMBER_EMAIL, member),
        (demo.OUTSIDER_EMAIL, outsider),
    ]:
        assert re.search(rf"{re.escape(email)}\s+{re.escape(password)}", ready), ready
    assert f"staff for {devstack_home.web}/admin/" in ready

    with sign_in(devstack_home.web, demo.ADMIN_EMAIL, admin) as browser:
        assert browser.get("/admin/").status_code == 200
    with sign_in(devstack_home.web, demo.MEMBER_EMAIL, member) as browser:
        assert browser.get(f"/teams/{demo.TEAM_SLUG}/").status_code == 200
    with sign_in(devstack_home.web, demo.OUTSIDER_EMAIL, outsider) as browser:
        assert browser.get(f"/teams/{demo.TEAM_SLUG}/").status_code == 404
        assert browser.get(f"/teams/{demo.OUTSIDER_TEAM_SLUG}/").status_code == 200
    bipsync = SandboxClient(devstack_home.sandbox, secrets["SANDBOX_ADMIN_KEY"])
    with bipsync.sign_in("acme", demo.MEMBER_EMAIL, member) as browser:
        assert "Max Member" in browser.get(bipsync.web_base("acme") + "/").text


def test_bin_manage_creates_a_team_in_a_second_terminal_that_the_running_app_serves(
    devstack_home: Home, stack: Stack
) -> None:
    name = f"Initech {uuid.uuid4().hex[:8]}"
    email = f"boss-{uuid.uuid4().hex[:8]}@initech.example"

    result = devstack_home.manage("create_team", "--name", name, "--admin-email", email)

    assert result.returncode == 0, result.stderr
    slug = re.search(r"\(/([\w-]+)/\)", result.stdout)
    password = re.search(rf"Admin {re.escape(email)} password: (\S+)", result.stdout)
    assert slug, result.stdout
    assert password, result.stdout
    with sign_in(devstack_home.web, email, password.group(1)) as browser:
        page = browser.get(f"/teams/{slug.group(1)}/")
    assert page.status_code == 200
    assert name in page.text


def test_bin_manage_connect_device_connects_the_demo_member_through_the_running_sandbox(
    devstack_home: Home, stack: Stack
) -> None:
    secrets = devstack_home.dev_env()
    command = subprocess.Popen(
        [
            "bin/manage",
            "connect_device",
            "--email",
            demo.MEMBER_EMAIL,
            "--team",
            demo.TEAM_SLUG,
            "--tenant",
            "acme",
        ],
        cwd=ROOT,
        env=devstack_home.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert command.stdout is not None
        head: list[str] = []
        while not (head and head[-1].startswith("Press Ctrl-C")):
            line = command.stdout.readline()
            assert line, f"connect_device ended early: {command.communicate()}"
            head.append(line)
        code = re.search(r"enter\s+(\S+)", "".join(head))
        assert code, head
        assert f"{devstack_home.sandbox}/t/acme/web/oauth/device" in "".join(head)

        bipsync = SandboxClient(devstack_home.sandbox, secrets["SANDBOX_ADMIN_KEY"])
        bipsync.approve_device(
            "acme", code.group(1), demo.MEMBER_EMAIL, secrets["DEMO_MEMBER_PASSWORD"]
        )
        out, err = command.communicate(timeout=90)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()

    assert command.returncode == 0, err
    assert f"Connected: acme / {demo.MEMBER_EMAIL}" in out


def lines_of(stack: Stack, process: str) -> list[str]:
    """The log lines of one process (honcho prefixes each with the time and the name)."""
    prefix = re.compile(rf"^\S+ {process}\s+\| ")
    return [line for line in stack.output().splitlines() if prefix.match(line)]


def wait_for(stack: Stack, process: str, text: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not any(text in line for line in lines_of(stack, process)):
        assert time.monotonic() < deadline, f"{text!r} never reached {process}'s log"
        time.sleep(0.2)


def test_the_development_log_has_one_line_per_refused_request_and_no_line_twice(
    devstack_home: Home, stack: Stack
) -> None:
    secrets = devstack_home.dev_env()
    missing = f"/no-such-page-{uuid.uuid4().hex[:8]}/"
    admin_only = f"/teams/{demo.TEAM_SLUG}/members/"

    with sign_in(devstack_home.web, demo.MEMBER_EMAIL, secrets["DEMO_MEMBER_PASSWORD"]) as member:
        assert member.get(admin_only).status_code == 403
    assert httpx.get(devstack_home.web + missing).status_code == 404
    assert httpx.get(devstack_home.sandbox + missing).status_code == 404
    wait_for(stack, "web", missing)
    wait_for(stack, "sandbox", missing)
    time.sleep(1)  # a second line, if any, would be printed by now

    web, sandbox = lines_of(stack, "web"), lines_of(stack, "sandbox")
    assert len([line for line in web if admin_only in line]) == 1, web[-20:]
    assert len([line for line in web if missing in line]) == 1, web[-20:]
    assert len([line for line in sandbox if missing in line]) == 1, sandbox[-20:]
    assert "Traceback" not in stack.output()
    assert len([line for line in web if "Listening at:" in line]) == 1
