"""``python -m devtools run|manage|check|stop|soak`` — what bin/run, bin/manage and
bin/check call, and the soak (devtools/soak/)."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from accounts import demo
from bipsync_partner.connections.crypto import new_encryption_key
from devtools import foreground, services
from devtools.secrets import load_or_create

ROOT = services.ROOT
BIN = Path(sys.executable).parent
# Overridable so that a second stack (a test's) can run beside a real bin/run.
WEB_PORT = services.env_port("DEVSTACK_WEB_PORT", 8000)
SANDBOX_PORT = services.env_port("DEVSTACK_SANDBOX_PORT", 8100)
# The demo Bipsync team that the sandbox's seed_demo creates (its default SANDBOX_DEMO_TEAM_ID).
DEMO_BIPSYNC_TEAM = "5e1ec7ed0000000000000001"


def say(message: str) -> None:
    sys.stdout.write(f"==> {message}\n")
    sys.stdout.flush()


def run_step(argv: Sequence[str], env: dict[str, str]) -> None:
    result = subprocess.run(list(argv), env=env, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"Step failed ({result.returncode}): {' '.join(argv)}")


def sandbox_env(base: dict[str, str], sandbox_db: str) -> dict[str, str]:
    env = dict(base)
    env["SANDBOX_DATABASE_URL"] = sandbox_db
    env["SANDBOX_DEBUG"] = "1"
    return env


#: What bin/run's partner app asks Bipsync for (docs/bipsync.md, "Scopes").
DEMO_BIPSYNC_SCOPES = (
    "rest_api:read rest_api:fields:read research:read users:read categories:read "
    "classifications:read contacts:read projects:read attachments:read external_ids:read"
)


def product_env(svc: services.Services, dev: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(dev)
    env.update(
        {
            "DEBUG": "1",
            "DATABASE_URL": services.with_database(svc.database_url, "bipsync_partner"),
            "REDIS_URL": svc.redis_url,
            "SITE_URL": f"http://127.0.0.1:{WEB_PORT}",
            "BIPSYNC_API_BASE_TEMPLATE": f"http://127.0.0.1:{SANDBOX_PORT}/t/{{tenant}}/api",
            "BIPSYNC_WEB_BASE_TEMPLATE": f"http://127.0.0.1:{SANDBOX_PORT}/t/{{tenant}}/web",
            "BIPSYNC_ALLOW_INSECURE_LOOPBACK": "1",
            # The demo asks for the GraphQL read scopes too (its sandbox applications may have
            # them), so that authors' names, tickers, note bodies and the new-research poll show;
            # the product's default stays REST-only, for applications registered without them.
            "BIPSYNC_SCOPES": os.environ.get("BIPSYNC_SCOPES", DEMO_BIPSYNC_SCOPES),
            # The demo's webhook receivers run on this machine.
            "EVENTS_ALLOW_PRIVATE_ADDRESSES": "1",
            "BIPSYNC_USER_CLIENT_ID": "partner-demo-user-app",
            "BIPSYNC_SERVICE_CLIENT_ID": "partner-demo-service-app",
            "BIPSYNC_PUBLIC_CLIENT_ID": "partner-demo-cli-app",
            "PARTNER_REDIRECT_URI": f"http://127.0.0.1:{WEB_PORT}/connections/callback/",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            # One log line per refused request: Django's says why (gunicorn_conf).
            "ACCESS_LOG_REFUSALS": "0",
            # Read by the Procfile.
            "DEVSTACK_WEB_PORT": str(WEB_PORT),
            "DEVSTACK_SANDBOX_PORT": str(SANDBOX_PORT),
            "DEVSTACK_VAR": str(services.VAR),
        }
    )
    return env


def development_env() -> dict[str, str]:
    """The environment of bin/run's processes (and of bin/manage's commands)."""
    svc = services.resolve(prefer_local=False)
    return product_env(svc, load_or_create(services.VAR / "dev.env"))


def ready_text(env: dict[str, str]) -> str:
    """The block that ends bin/run's start-up: where everything is and who can sign in."""
    web, sandbox = f"http://127.0.0.1:{WEB_PORT}", f"http://127.0.0.1:{SANDBOX_PORT}"
    admin, member = env["DEMO_ADMIN_PASSWORD"], env["DEMO_MEMBER_PASSWORD"]
    outsider = env["DEMO_OUTSIDER_PASSWORD"]
    width = max(len(e) for e in (demo.ADMIN_EMAIL, demo.MEMBER_EMAIL, demo.OUTSIDER_EMAIL))

    def login(email: str, password: str, what: str) -> str:
        return f"      {email.ljust(width)}  {password.ljust(12)}  {what}"

    return "\n".join(
        [
            "==> Ready",
            f"    Partner app      {web}/   (sign in by email)",
            login(
                demo.ADMIN_EMAIL, admin, f"admin of {demo.TEAM_NAME}; also staff for {web}/admin/"
            ),
            login(demo.MEMBER_EMAIL, member, f"member of {demo.TEAM_NAME}"),
            login(
                demo.OUTSIDER_EMAIL,
                outsider,
                f"outside {demo.TEAM_NAME} (admin of {demo.OUTSIDER_TEAM_NAME}): "
                f"/teams/{demo.TEAM_SLUG}/ answers 404",
            ),
            f"    Bipsync sandbox  {sandbox}/   (tenant acme: {sandbox}/t/acme/web/login)",
            login(demo.ADMIN_EMAIL, admin, "Bipsync admin of the demo team"),
            login(demo.MEMBER_EMAIL, member, "Bipsync member of the demo team"),
            "    In a second terminal: bin/manage <command>, e.g. bin/manage connect_device "
            f"--email {demo.MEMBER_EMAIL} --team {demo.TEAM_SLUG} --tenant acme",
            "    Ctrl-C stops everything (the embedded PostgreSQL and Redis keep running).",
        ]
    )


def cmd_run(_: argparse.Namespace) -> None:
    say("Finding PostgreSQL and Redis (embedded ones unless DATABASE_URL / REDIS_URL are set)")
    svc = services.resolve(prefer_local=False)
    say(f"Using {svc.description}")
    dev = load_or_create(services.VAR / "dev.env")
    env = product_env(svc, dev)
    sandbox_db = services.with_database(svc.database_url, "bipsync_sandbox")
    for url in (env["DATABASE_URL"], sandbox_db):
        services.ensure_database(url)
    py = sys.executable
    say("Migrating the partner app and the Bipsync sandbox")
    run_step([py, "manage.py", "migrate", "--noinput", "-v", "0"], env)
    run_step(
        [py, "-m", "bipsync_sandbox", "migrate", "--noinput", "-v", "0"],
        sandbox_env(env, sandbox_db),
    )
    say("Seeding demo data")
    run_step([py, "-m", "bipsync_sandbox", "seed_demo"], sandbox_env(env, sandbox_db))
    # Research for the demo team, shared with the service-account app so a demo sync finds it.
    generate = f"generate_research --tenant acme --team {DEMO_BIPSYNC_TEAM} --count 2500 --seed 1"
    run_step(
        [
            py,
            "-m",
            "bipsync_sandbox",
            *generate.split(),
            "--if-empty",
            "--attachments",
            "8",
            "--share-with",
            env["BIPSYNC_SERVICE_CLIENT_ID"],
        ],
        sandbox_env(env, sandbox_db),
    )
    run_step([py, "manage.py", "seed_demo_team"], env)
    env["SANDBOX_DATABASE_URL"] = sandbox_db
    say(
        f"Starting web (http://127.0.0.1:{WEB_PORT}), worker, beat and the sandbox "
        f"(http://127.0.0.1:{SANDBOX_PORT}); Ctrl-C stops them all"
    )
    readiness = foreground.Readiness(
        urls=[f"http://127.0.0.1:{WEB_PORT}/healthz", f"http://127.0.0.1:{SANDBOX_PORT}/healthz"],
        # Celery's worker logs "celery@<host> ready." once it consumes its queues.
        lines={"worker": " ready."},
    )
    raise SystemExit(foreground.run(ROOT / "Procfile", env, readiness, ready_text(env)))


def cmd_manage(argv: Sequence[str]) -> None:
    """``manage.py`` with the settings of bin/run's processes, e.g. in a second terminal."""
    env = development_env()
    py = sys.executable
    os.execve(py, [py, str(ROOT / "manage.py"), *argv], env)


def ensure_chromium() -> None:
    """Browser tests drive Debian's chromium; install the package when it is missing."""
    if shutil.which("chromium"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(
            "Browser tests need Debian's chromium: run `sudo apt-get install chromium`."
        )
    say("Installing Debian's chromium for the browser tests")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "chromium"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def test_env(svc: services.Services) -> dict[str, str]:
    run = os.getpid()
    env = dict(os.environ)
    env.update(
        {
            "DEBUG": "1",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "TOKEN_ENCRYPTION_KEYS": new_encryption_key(),
            # Per-run names let several test runs share one machine (pytest-django creates and
            # drops test_<name>); Redis databases 8-15 are spread over runs the same way.
            "DATABASE_URL": services.with_database(svc.database_url, f"bipsync_partner_{run}"),
            "REDIS_URL": svc.redis_url.rsplit("/", 1)[0] + f"/{8 + run % 8}",
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    return env


def cmd_check(args: argparse.Namespace) -> None:
    svc = services.resolve(prefer_local=True)
    say(f"Tests use {svc.description}")
    services.drop_stale_test_databases(svc.database_url, "test_bipsync_partner_")
    env = test_env(svc)
    ensure_chromium()
    pytest_args = list(args.pytest_args)
    failures = []
    if not pytest_args:
        for name, argv in [
            ("ruff check", [str(BIN / "ruff"), "check", "."]),
            ("ruff format", [str(BIN / "ruff"), "format", "--check", "."]),
            (
                "mypy",
                [
                    str(BIN / "mypy"),
                    "bipsync_partner",
                    "bipsync_sandbox",
                    "devtools",
                    "accounts",
                    "tests",
                ],
            ),
        ]:
            say(name)
            if subprocess.run(argv, cwd=ROOT, env=env).returncode != 0:
                failures.append(name)
        # The suite waits on servers and workers more than it computes, so two pytest processes
        # (pytest-xdist) finish it in about two thirds of the time even on two cores. Each has its
        # own test database (pytest-django suffixes it), sandbox and Redis key prefix.
        pytest_args = ["-n", os.environ.get("BIPSYNC_TEST_PROCESSES", "2")]
    say("pytest")
    result = subprocess.run([str(BIN / "pytest"), *pytest_args], cwd=ROOT, env=env)
    if result.returncode != 0:
        failures.append(f"pytest (exit {result.returncode})")
    if failures:
        raise SystemExit(f"Failed: {', '.join(failures)}")
    say("All checks passed")


def cmd_stop(_: argparse.Namespace) -> None:
    services.stop_embedded()
    say("Stopped the embedded PostgreSQL and Redis servers (data stays in var/)")


def cmd_soak(args: argparse.Namespace) -> None:
    from devtools.soak import config, runner

    raise SystemExit(runner.main(config.from_arguments(args)))


def main(argv: Sequence[str] | None = None) -> None:
    args_given = list(sys.argv[1:] if argv is None else argv)
    if args_given[:1] == ["manage"]:
        # Everything after "manage" is manage.py's, --help included.
        cmd_manage(args_given[1:])
        return
    parser = argparse.ArgumentParser(prog="python -m devtools")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the whole product on embedded defaults").set_defaults(
        func=cmd_run
    )
    sub.add_parser("manage", help="manage.py with bin/run's settings (bin/manage)")
    check = sub.add_parser("check", help="ruff, mypy and pytest; pytest arguments narrow it")
    check.add_argument("pytest_args", nargs=argparse.REMAINDER)
    check.set_defaults(func=cmd_check)
    sub.add_parser("stop", help="stop the embedded servers").set_defaults(func=cmd_stop)
    soak = sub.add_parser(
        "soak", help="the whole product on its own servers, under faults, measured"
    )
    from devtools.soak.config import add_arguments

    add_arguments(soak)
    soak.set_defaults(func=cmd_soak)
    args = parser.parse_args(args_given)
    args.func(args)


if __name__ == "__main__":
    main()
