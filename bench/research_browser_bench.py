"""The research browser at a million documents, against the same page views at ten thousand.

One fresh partner database ``bench_browser_<pid>`` (dropped at the end, also on failure or
Ctrl-C) holds two teams with the same mix of documents: "big" with DOCS (1,000,000) and "small"
with SMALL (10,000). Documents are written with ``COPY``, their sightings (the visibility rows:
every document seen by the team's machine connection, one in a hundred by a member's own
connection only) with one ``INSERT … SELECT``; the indexes are built after the load, as a
deployment's migration builds them on existing data, then ``VACUUM ANALYZE``.

Every case is the research page requested through Django's test client as that member (the view,
its queries and the template: what a browser gets), REPS times after WARMUP, for each team in
turn; plus the count on its own (``browse.count``). Reported per case: p50 and p95 in ms for both
teams, the ratio of the big team's p95 to the small's, and whether the big p95 is under 50 ms.

    .venv/bin/python bench/research_browser_bench.py [--docs 1000000] [--small 10000]
        [--reps 40] [--json out.json] [--keep bench_browser_kept]

With ``--keep NAME`` the database is made and loaded once and kept; later runs migrate it (so a
new migration's indexes are built on the million rows, as a deployment builds them) and reuse it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import random
import re
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SERVER = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/12")
TARGET_MS = 50.0
WARMUP = 3

COMPANIES = [f"{a}{b}" for a in ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay",
             "Stark", "Wayne", "Tyrell", "Cyberdyne") for b in ("", " Labs", " Bank", " Energy",
             " Retail", " Mining", " Pharma", " Media", " Motors", " Foods")]  # fmt: skip
TOPICS = ["earnings preview", "site visit", "management meeting", "channel checks",
          "model update", "initiation", "sector review", "conference notes", "expert call",
          "price target change", "guidance cut", "capital markets day"]  # fmt: skip
QUARTERS = ["Q1", "Q2", "Q3", "Q4", "FY"]
#: Search terms by how often they match: "earnings" ~ 1 title in 12, "hooli pharma" 1 in 100
#: (about the count's bound at a million), "zeppelin" 1 in 50,000 (planted), "xylophonic" never.
TERMS = {
    "common": "earnings",
    "medium": "hooli pharma",
    "rare": "zeppelin",
    "none": "xylophonic",
}
CONTENT_TYPES = [(f"{n:024x}", name, weight) for n, (name, weight) in enumerate(
    [("Note", 60), ("Meeting", 20), ("Model", 10), ("Call", 6), ("File", 3.5), ("Memo", 0.5)],
    start=1)]  # fmt: skip
AUTHORS = 300


def say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def load() -> float:
    return round(os.getloadavg()[0], 2)


# --- the database -------------------------------------------------------------------------------


@contextlib.contextmanager
def partner_database(kept: str | None) -> Iterator[str]:
    """A fresh database dropped at the end; or the database ``kept``, made when missing and
    left in place (its documents are loaded once and reused by the next runs)."""
    name = kept or f"bench_browser_{os.getpid()}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        if kept is None:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if kept is not None:
            say(f"kept database {name}")
        else:
            with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
            say(f"dropped database {name}")


def setup_django(db_name: str) -> None:
    import base64

    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bipsync_partner.settings",
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "TOKEN_ENCRYPTION_KEYS": "k1:" + base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "DATABASE_URL": f"{SERVER}/{db_name}",
            "REDIS_URL": REDIS,
            "COORDINATION_KEY_PREFIX": f"bench-{os.getpid()}-{uuid.uuid4().hex[:6]}:coord",
            "ALLOWED_HOSTS": "testserver",
            "SECURE_SSL_REDIRECT": "0",
            "LOG_LEVEL": "WARNING",
        }
    )
    import warnings

    import django
    from django.core.management import call_command

    # Static files are not collected for the bench (see below); whitenoise says so once.
    warnings.filterwarnings("ignore", message="No directory at")
    django.setup()
    from django.conf import settings

    # Production serves collected static files (a manifest); the bench renders the page
    # without collecting them, which costs the same lookup per asset.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    call_command("migrate", verbosity=0)


# --- the data -----------------------------------------------------------------------------------


def loaded_team(slug: str) -> dict[str, Any] | None:
    """The team ``slug`` of a kept database, as :func:`make_team` made it (None if missing)."""
    from accounts.models import Team
    from bipsync_partner.connections.models import Connection

    team = Team.objects.filter(slug=slug).first()
    if team is None:
        return None
    machine = Connection.objects.get(team=team, kind=Connection.Kind.CLIENT_CREDENTIALS)
    own = Connection.objects.select_related("user").get(team=team, kind=Connection.Kind.USER)
    return {"team": team, "member": own.user, "machine": machine, "own": own}


def make_team(slug: str) -> dict[str, Any]:
    from accounts.models import Membership, Team, User
    from bipsync_partner.connections.models import Connection
    from bipsync_partner.sync.models import SyncedContentType, TeamSyncSettings

    team = Team.objects.create(name=f"Team {slug}", slug=slug)
    TeamSyncSettings.objects.create(team=team, sync_user_connections=True)
    member = User.objects.create_user(f"member@{slug}.example", secrets.token_urlsafe(12))
    team.add_member(member, Membership.Role.MEMBER)
    machine = Connection.objects.create(
        team=team,
        tenant=slug,
        kind=Connection.Kind.CLIENT_CREDENTIALS,
        client_id=f"export-{slug}",
        client_secret=secrets.token_urlsafe(16),
        bipsync_team_id="5f0c9a1b2c3d4e5f60718293",
        scopes="rest_api:read",
    )
    own = Connection.objects.create(
        team=team, user=member, tenant=slug, kind=Connection.Kind.USER, subject_id="f" * 24
    )
    for bid, name, _ in CONTENT_TYPES:
        SyncedContentType.objects.create(
            connection=machine,
            team=team,
            tenant=slug,
            bipsync_id=bid,
            name=name.lower(),
            display_name=name,
            content_hash="x",
        )
    return {"team": team, "member": member, "machine": machine, "own": own}


def copy_documents(world: dict[str, Any], count: int, seed: int) -> None:
    """``count`` documents of one team with ``COPY``: titles from companies, topics and quarters,
    skewed content types and authors, modification times over five years (a few unknown), 2 %
    deleted; "zeppelin" planted in one title of 50,000."""
    from django.db import connection

    rng = random.Random(seed)
    team, tenant, machine = world["team"].pk, world["team"].slug, world["machine"].pk
    types = [bid for bid, _, _ in CONTENT_TYPES]
    type_weights = [w for _, _, w in CONTENT_TYPES]
    authors = [f"{n:024x}" for n in range(1, AUTHORS + 1)]
    author_weights = [1 / n for n in range(1, AUTHORS + 1)]
    named = {a: f"Analyst {n}" for n, a in enumerate(authors, 1) if n % 3 == 0}
    start = datetime(2021, 1, 1, tzinfo=UTC)
    span = int(timedelta(days=5 * 365).total_seconds())
    now = datetime.now(UTC).isoformat()
    columns = (
        "team_id, tenant, bipsync_id, source_connection_id, content_hash, first_synced_at, "
        "changed_at, deleted_at, title, content_type_bid, author_bid, author_name, "
        "lookup_fields, bipsync_created, bipsync_modified"
    )
    chosen_types = rng.choices(types, type_weights, k=count)
    chosen_authors = rng.choices(authors, author_weights, k=count)
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor, for COPY
        with raw.copy(f"COPY sync_researchdocument ({columns}) FROM STDIN") as copy:
            buffer = io.StringIO()
            for n in range(count):
                title = f"{rng.choice(COMPANIES)} {rng.choice(TOPICS)} {rng.choice(QUARTERS)}"
                if n % 50_000 == 7:
                    title += " zeppelin"
                modified = (
                    "\\N"
                    if n % 1000 == 3
                    else (start + timedelta(seconds=rng.randrange(span))).isoformat()
                )
                deleted = now if n % 50 == 11 else "\\N"
                author = chosen_authors[n]
                buffer.write(
                    f"{team}\t{tenant}\t{n:024x}\t{machine}\t{'0' * 64}\t{now}\t{now}\t"
                    f"{deleted}\t{title}\t{chosen_types[n]}\t{author}\t{named.get(author, '')}"
                    f"\t{{}}\t{modified}\t{modified}\n"
                )
                if n % 20_000 == 19_999:
                    copy.write(buffer.getvalue())
                    buffer = io.StringIO()
            copy.write(buffer.getvalue())
        # Visibility: the machine connection sees 99 % of the documents, the member's own
        # connection the other 1 % (their private notes) and a tenth of the rest as well.
        cursor.execute(
            "INSERT INTO sync_documentsighting (document_id, connection_id, first_seen_at) "
            "SELECT id, %s, now() FROM sync_researchdocument WHERE team_id = %s AND id %% 100 <> 0",
            [machine, team],
        )
        cursor.execute(
            "INSERT INTO sync_documentsighting (document_id, connection_id, first_seen_at) "
            "SELECT id, %s, now() FROM sync_researchdocument WHERE team_id = %s AND id %% 10 = 0",
            [world["own"].pk, team],
        )


@contextlib.contextmanager
def indexes_built_after_load() -> Iterator[None]:
    """Drop the secondary indexes of the two tables, load, then build them again from their
    own definitions (a bulk load into indexed tables is several times slower)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename IN "
            "('sync_researchdocument', 'sync_documentsighting') AND NOT EXISTS (SELECT 1 FROM "
            "pg_constraint c WHERE c.conname = i.indexname)"
        )
        saved = cursor.fetchall()
        for name, _ in saved:
            cursor.execute(f'DROP INDEX "{name}"')
    yield
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '256MB'")
        for name, definition in saved:
            began = time.perf_counter()
            cursor.execute(definition)
            say(f"  index {name}: {time.perf_counter() - began:.1f} s")


def vacuum_analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE sync_researchdocument")
        cursor.execute("VACUUM ANALYZE sync_documentsighting")


# --- the cases ----------------------------------------------------------------------------------


def middle_cursor(world: dict[str, Any], visible: int) -> str:
    """The keyset cursor of the row at the middle of the member's list, found once (by OFFSET,
    outside the timing): what "Older" links lead to after following them half way."""
    from bipsync_partner.sync import browse
    from bipsync_partner.sync.models import ResearchDocument
    from bipsync_partner.sync.visibility import research_visible_to

    docs = ResearchDocument.objects.filter(
        research_visible_to(world["team"], world["member"]), deleted_at__isnull=True
    )
    row = docs.order_by(*browse.ORDER)[visible // 2]
    return str(browse.Cursor.of(row))


def cases(world: dict[str, Any], visible: int) -> dict[str, dict[str, str]]:
    common_type, rare_type = CONTENT_TYPES[0][0], CONTENT_TYPES[-1][0]
    # Author 1 writes 16 % of the documents, author 100 one in 600.
    common_author, rare_author = f"{1:024x}", f"{100:024x}"
    return {
        "first page": {},
        "page 2": {"page": "2"},
        "page 20 (last numbered)": {"page": str(browse_module().MAX_NUMBERED_PAGES)},
        "middle page (keyset)": {"after": middle_cursor(world, visible)},
        "last page": {"page": "last"},
        **{f"title: {kind} term": {"q": term} for kind, term in TERMS.items()},
        "common type": {"content_type": common_type},
        "rare type": {"content_type": rare_type},
        "common author": {"author": common_author},
        "rare author": {"author": rare_author},
        "common term + rare type": {"q": TERMS["common"], "content_type": rare_type},
        "rare term + common author": {"q": TERMS["rare"], "author": common_author},
    }


def browse_module() -> Any:
    from bipsync_partner.sync import browse

    return browse


def run_queries(world: dict[str, Any], params: dict[str, str]) -> Any:
    """The browser's database work for one page view, as the view does it: the viewer's
    documents, the authors offered, then the count and the page of the filtered ones."""
    from bipsync_partner.sync import browse
    from bipsync_partner.sync.models import ResearchDocument
    from bipsync_partner.sync.visibility import research_visible_to

    docs = ResearchDocument.objects.filter(
        research_visible_to(world["team"], world["member"]), deleted_at__isnull=True
    )
    browse.author_names(docs, 500)
    data = {k: v for k, v in params.items() if k in ("q", "content_type", "author")}
    return browse.page(
        browse.filtered(docs, data),
        number=params.get("page"),
        after=params.get("after"),
        before=params.get("before"),
        per_page=50,
        limit=browse.exact_count_limit(),
    )


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def timed(call: Callable[[], Any], reps: int) -> list[float]:
    for _ in range(WARMUP):
        call()
    samples = []
    for _ in range(reps):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def measure(worlds: list[tuple[dict[str, Any], int]], reps: int) -> list[dict[str, dict[str, Any]]]:
    """Each case for each team in turn (so that a burst from another session on the shared
    machine falls on both alike), through the test client as the team's member."""
    from django.test import Client
    from django.urls import reverse

    from bipsync_partner.sync import browse
    from bipsync_partner.sync.models import ResearchDocument
    from bipsync_partner.sync.visibility import research_visible_to

    prepared = []
    for world, visible in worlds:
        client = Client()
        client.force_login(world["member"])
        url = reverse("sync:research", kwargs={"team_slug": world["team"].slug})
        prepared.append((world, client, url, cases(world, visible)))
    results: list[dict[str, dict[str, Any]]] = [{} for _ in worlds]
    for name in prepared[0][3]:
        for index, (_, client, url, queries) in enumerate(prepared):
            query = queries[name]
            response = client.get(url, query)
            assert response.status_code == 200, (name, response.status_code)
            text = response.content.decode()
            said = re.search(r'<p class="muted">([^<]*documents?)\.</p>', text)
            samples = timed(functools.partial(client.get, url, query), reps)
            p50, p95 = percentiles(samples)
            world = prepared[index][0]
            q50, q95 = percentiles(timed(functools.partial(run_queries, world, query), reps))
            results[index][name] = {
                "p50": p50,
                "p95": p95,
                "q50": q50,
                "q95": q95,
                "shown": text.count("<tr>") - 1,
                "count": said.group(1) if said else "?",
            }
    for index, (world, *_) in enumerate(prepared):

        def count(world: dict[str, Any] = world) -> browse.Count:
            docs = ResearchDocument.objects.filter(
                research_visible_to(world["team"], world["member"]), deleted_at__isnull=True
            )
            return browse.count(docs, browse.exact_count_limit())

        p50, p95 = percentiles(timed(count, reps))
        results[index]["count alone (browse.count)"] = {
            "p50": p50, "p95": p95, "q50": p50, "q95": p95, "shown": 0, "count": str(count())
        }  # fmt: skip
    return results


def visible_count(world: dict[str, Any]) -> int:
    from bipsync_partner.sync.models import ResearchDocument
    from bipsync_partner.sync.visibility import research_visible_to

    return ResearchDocument.objects.filter(
        research_visible_to(world["team"], world["member"]), deleted_at__isnull=True
    ).count()


def report(big: dict[str, dict[str, Any]], small: dict[str, dict[str, Any]], docs: int,
           small_docs: int) -> None:  # fmt: skip
    say("")
    say("Queries: the view's database work (visible documents, authors, count, page).")
    say("Page: the whole page through the test client (middleware, session, queries, template).")
    say("")
    say(f"| case | queries {small_docs:,}: p50 / p95 | queries {docs:,}: p50 / p95 | "
        f"p95 ratio | < {TARGET_MS:.0f} ms | page {small_docs:,} p95 | page {docs:,}: p50 / p95 "
        "| what the page says |")  # fmt: skip
    say("|---|---|---|---|---|---|---|---|")
    for name, b in big.items():
        s = small[name]
        ratio = b["q95"] / s["q95"] if s["q95"] else float("nan")
        ok = "yes" if b["q95"] < TARGET_MS else "**no**"
        say(
            f"| {name} | {s['q50']:.1f} / {s['q95']:.1f} | {b['q50']:.1f} / {b['q95']:.1f} | "
            f"{ratio:.2f} | {ok} | {s['p95']:.1f} | {b['p50']:.1f} / {b['p95']:.1f} | "
            f"{b['count']} ({max(0, b['shown'])} shown) |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--keep",
        metavar="NAME",
        help="use the database NAME and keep it: loaded on the first run (--docs, --small), "
        "migrated and reused as it is on the next ones",
    )
    args = parser.parse_args()
    say(f"load average before: {load()}")
    with partner_database(args.keep) as db_name:
        setup_django(db_name)
        kept = loaded_team("big"), loaded_team("small")
        if kept[0] is not None and kept[1] is not None:
            big, small = kept
            vacuum_analyze()
            say(f"reusing the documents of database {db_name}")
        else:
            big, small = make_team("big"), make_team("small")
            began = time.perf_counter()
            with indexes_built_after_load():
                copy_documents(big, args.docs, seed=1)
                copy_documents(small, args.small, seed=2)
                say(f"COPY of {args.docs + args.small:,} documents and their sightings: "
                    f"{time.perf_counter() - began:.1f} s")  # fmt: skip
            vacuum_analyze()
            say(f"loaded, indexed and analyzed in {time.perf_counter() - began:.1f} s; "
                f"load average {load()}")  # fmt: skip
        big_visible, small_visible = visible_count(big), visible_count(small)
        say(f"visible to the member: {big_visible:,} and {small_visible:,}")
        load_before = load()
        small_results, big_results = measure(
            [(small, small_visible), (big, big_visible)], args.reps
        )
        load_after = load()
        report(big_results, small_results, args.docs, args.small)
        say(f"\nload average during the timing: {load_before} before, {load_after} after")
        if args.json:
            figures = {"big": big_results, "small": small_results}
            args.json.write_text(json.dumps({**figures, "load": [load_before, load_after]}))


if __name__ == "__main__":
    main()
