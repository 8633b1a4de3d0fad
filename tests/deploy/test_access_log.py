"""The web server's access log names paths, never the OAuth callback's code and state.

Each shipped web command line (Dockerfile, Compose, Kubernetes, systemd, Procfile) is started as
it is written, only on a free port of 127.0.0.1: a real gunicorn with the shared configuration.
A callback carrying a code and a state, with a referrer that carries a state too, is requested
over real HTTP, and the log the process wrote (its standard output, where every deployment
collects it) is read back.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from devtools.processes import die_with_parent
from tests.support.sandbox import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SHARED_CONFIG = "python:bipsync_partner.gunicorn_conf"
CODE = "code-Sfw7kQ2mXc9bTz4LrN1vYp8Hd3Jg6Ua0"
STATE = "state-Lq3Vn8Rt2Wz6Yb1Mx5Kc9Pd4Hs7Jf0Ga"
REFERRER_STATE = "referrer-Ee4Tg7Uy1Io3Pa6Sd9Fh2Jk5Lz8Xc0Vb"


def dockerfile_command() -> list[str]:
    line = next(
        line for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line.startswith("CMD")
    )
    command: list[str] = json.loads(line.removeprefix("CMD"))
    return command


def compose_command() -> list[str]:
    command: list[str] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["web"][
        "command"
    ]
    return command


def kubernetes_command() -> list[str]:
    (deployment, *_) = yaml.safe_load_all((DEPLOY / "kubernetes" / "web.yaml").read_text())
    command: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    return command


def systemd_command() -> list[str]:
    unit = (DEPLOY / "systemd" / "bipsync-partner-web.service").read_text()
    (line,) = re.findall(r"^ExecStart=(.*)$", unit, re.M)
    return shlex.split(line)


def procfile_command() -> list[str]:
    (line,) = re.findall(r"^web:(.*)$", (ROOT / "Procfile").read_text(), re.M)
    return shlex.split(line)


SHIPPED = {
    "Dockerfile": dockerfile_command,
    "compose": compose_command,
    "kubernetes": kubernetes_command,
    "systemd": systemd_command,
    "Procfile": procfile_command,
}


@pytest.mark.parametrize("source", SHIPPED)
def test_every_shipped_web_command_loads_the_shared_gunicorn_config(source: str) -> None:
    command = SHIPPED[source]()

    assert Path(command[0]).name == "gunicorn"
    assert command[command.index("--config") + 1] == SHARED_CONFIG
    # Nothing on the command line replaces what the shared file decides about the access log.
    assert not {"--access-logformat", "--logger-class", "--log-config"} & set(command)


def local(command: list[str], port: int) -> list[str]:
    """The command as written, with this checkout's gunicorn and a free loopback port."""
    argv = [str(Path(sys.executable).parent / "gunicorn"), *command[1:]]
    argv[argv.index("--bind") + 1] = f"127.0.0.1:{port}"
    return argv


@pytest.fixture(params=list(SHIPPED))
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A running gunicorn started from one shipped command line; its URL and its log file."""
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    # DEBUG=1 so that no TLS proxy or collected static files are needed in front of it.
    env = {**os.environ, "DEBUG": "1", "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            local(SHIPPED[request.param](), port),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()[-3000:]
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        yield base, log_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def test_the_access_log_names_the_callback_without_its_code_or_state(
    served: tuple[str, Path],
) -> None:
    base, log_path = served

    response = httpx.get(
        f"{base}/connections/callback/",
        params={"code": CODE, "state": STATE, "iss": "https://acme-api.bipsync.com"},
        headers={"Referer": f"https://acme.bipsync.com/oauth/authorize?state={REFERRER_STATE}"},
        timeout=30,
    )
    assert response.status_code == 400
    # gunicorn writes the access line after the answer; give it a moment to reach the file.
    deadline = time.monotonic() + 10
    while '"GET /connections/callback/' not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)

    log = log_path.read_text()
    lines = [line for line in log.splitlines() if '"GET /connections/callback/' in line]
    assert len(lines) == 1, log[-3000:]
    assert '"GET /connections/callback/ HTTP/1.1" 400' in lines[0]
    assert '"https://acme.bipsync.com/oauth/authorize"' in lines[0]
    for secret in (CODE, STATE, REFERRER_STATE):
        assert secret not in log
