"""The deployment files are valid and agree with the code and with the guide.

Docker and a Kubernetes API server cannot run here, so the files are checked against the
Compose specification's JSON schema, the Kubernetes client's typed models, and systemd's own
unit verifier, plus the invariants that matter to us (one beat, probes, queues, secrets).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import check_jsonschema
import jsonschema
import kubernetes.client
import pytest
import yaml
from django.conf import settings
from django.urls import resolve

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def test_the_compose_file_matches_the_compose_specification() -> None:
    schema_path = (
        Path(check_jsonschema.__file__).parent / "builtin_schemas/vendor/compose-spec.json"
    )
    schema = json.loads(schema_path.read_text())
    jsonschema.validate(compose(), schema)


def test_the_compose_file_runs_every_role_with_one_beat() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "web", "worker-refresh", "worker-sync", "beat"} <= set(
        services
    )
    assert services["sandbox"]["profiles"] == ["sandbox"]
    assert "deploy" not in services["beat"]  # no replicas setting: exactly one
    for name in ("web", "worker-refresh", "worker-sync", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )


def worker_queues(command: list[str]) -> set[str]:
    return set(command[command.index("--queues") + 1].split(","))


def test_the_workers_together_consume_every_routed_queue() -> None:
    services = compose()["services"]
    consumed = worker_queues(services["worker-refresh"]["command"]) | worker_queues(
        services["worker-sync"]["command"]
    )
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert routed | {settings.CELERY_TASK_DEFAULT_QUEUE} <= consumed
    assert worker_queues(services["worker-refresh"]["command"]) == {"refresh"}


KINDS = {
    "Deployment": "V1Deployment",
    "Service": "V1Service",
    "Job": "V1Job",
    "ConfigMap": "V1ConfigMap",
}


@pytest.mark.parametrize(
    "doc", k8s_documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}"
)
def test_each_kubernetes_manifest_is_a_valid_typed_object(doc: dict[str, Any]) -> None:
    api = kubernetes.client.ApiClient()
    # The client's model classes check required fields and types as they are built.
    obj = api._ApiClient__deserialize(doc, KINDS[doc["kind"]])  # type: ignore[attr-defined]
    assert obj.metadata.name == doc["metadata"]["name"]
    assert doc["kind"] != "Secret", "secrets come from the cluster, never from the repository"


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s_documents() if d["kind"] == "Deployment"}


def test_kubernetes_runs_web_each_worker_queue_and_a_single_beat() -> None:
    deps = deployments()
    assert set(deps) == {
        "bipsync-partner-web",
        "bipsync-partner-worker-refresh",
        "bipsync-partner-worker-sync",
        "bipsync-partner-beat",
    }
    beat = deps["bipsync-partner-beat"]["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"]["type"] == "Recreate"


def test_every_container_has_resources_and_secrets_from_the_cluster() -> None:
    for dep in deployments().values():
        for container in dep["spec"]["template"]["spec"]["containers"]:
            assert {"requests", "limits"} <= set(container["resources"])
            refs = [next(iter(ref)) for ref in container["envFrom"]]
            assert refs == ["configMapRef", "secretRef"]


def test_the_web_probes_point_at_real_health_endpoints() -> None:
    web = deployments()["bipsync-partner-web"]["spec"]["template"]["spec"]["containers"][0]
    assert resolve(web["readinessProbe"]["httpGet"]["path"]).url_name == "readyz"
    assert resolve(web["livenessProbe"]["httpGet"]["path"]).url_name == "healthz"


def test_the_systemd_units_pass_systemds_verifier(tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), "systemd-analyze ships with Debian's systemd"
    for unit in (DEPLOY / "systemd").glob("*.service"):
        # Point the units at this checkout so the verifier can find the executables.
        (tmp_path / unit.name).write_text(
            unit.read_text().replace("/opt/bipsync-partner", str(ROOT))
        )
    units = sorted(str(p) for p in tmp_path.glob("*.service"))
    assert len(units) == 4
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def guide_commands() -> list[str]:
    text = (DEPLOY / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]


def test_the_guide_names_only_files_and_services_that_exist() -> None:
    services = set(compose()["services"])
    commands = guide_commands()
    assert commands
    for command in commands:
        for path in re.findall(r"deploy/[\w./-]+", command):
            assert (ROOT / path.rstrip("/")).exists(), path
        if command.startswith("docker compose") and " logs " in command:
            named = command.split(" logs -f ")[1].split()
            assert set(named) <= services
        if command.startswith("systemctl enable"):
            units = {u + ".service" for u in command.split()[3:]}
            assert units <= {p.name for p in (DEPLOY / "systemd").glob("*.service")}


def test_the_guide_names_management_commands_that_exist() -> None:
    from django.core.management import get_commands

    text = (DEPLOY / "README.md").read_text()
    for name in set(re.findall(r"manage\.py (\w+)", text)):
        assert name in get_commands(), name


def test_systemd_stops_celery_workers_with_a_warm_shutdown() -> None:
    # systemd's default KillMode=control-group sends SIGTERM to every process of the unit at
    # once: Celery's pool processes then die mid-task ("Worker exited prematurely: signal 15"),
    # and a refresh that reached Bipsync dies before its rotated tokens are stored, which loses
    # the grant (rotation, docs/bipsync.md "Grants"). Found by the soak. KillMode=mixed sends
    # SIGTERM to the main process only (Celery's warm shutdown), SIGKILL to the rest at the end.
    for unit in (DEPLOY / "systemd").glob("bipsync-partner-worker-*.service"):
        lines = unit.read_text().splitlines()
        assert "KillMode=mixed" in lines, unit.name
