"""deploy/k8s stays valid Kubernetes and in step with the code, as compose.yaml does (test_compose.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from caracal.cli import COMMANDS
from tests.unit.test_compose import settings_variables

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"  # the oldest minor still supported when this was written
SECRET_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "CARACAL_KEK",
    "STREAMS_HMAC_KEY",
    "ZONE_KEK",
    "AUDIT_HMAC_KEY",
)
REPLICAS = {"caracal-api": 3, "caracal-dispatcher": 2, "caracal-reaper": 1}
NOT_APPLIED = ("kustomization.yaml", "secret.example.yaml")


def _documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")) if doc]


def _resources() -> list[dict[str, Any]]:
    files = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))["resources"]
    return [doc for name in files for doc in _documents(name)]


def _of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in _resources() if doc["kind"] == kind}


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def _containers() -> dict[str, dict[str, Any]]:
    workloads = {**_of_kind("Deployment"), **_of_kind("Job")}
    return {name: _pod_spec(w)["containers"][0] for name, w in workloads.items()}


def _env_names(container: dict[str, Any]) -> set[str]:
    return {item["name"] for item in container.get("env", [])}


@pytest.mark.parametrize("name", sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"))
def test_every_manifest_validates_against_the_kubernetes_schemas(name: str) -> None:
    """Strict validation: an unknown or misplaced field fails, not only a wrong type."""
    for doc in _documents(name):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_applies_every_manifest_but_the_secret_example() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - set(NOT_APPLIED)


def test_every_container_runs_a_caracal_subcommand_and_each_process_is_there() -> None:
    commands = {name: container["command"] for name, container in _containers().items()}
    assert all(cmd[0] == "caracal" and cmd[1] in COMMANDS for cmd in commands.values()), commands
    assert sorted(cmd[1] for cmd in commands.values()) == ["api", "dispatcher", "migrate", "reaper"]


@pytest.mark.parametrize(("name", "replicas"), sorted(REPLICAS.items()))
def test_each_deployment_runs_its_number_of_replicas(name: str, replicas: int) -> None:
    assert _of_kind("Deployment")[name]["spec"]["replicas"] == replicas


def test_variables_given_to_the_processes_are_ones_the_settings_loader_reads() -> None:
    known = settings_variables()
    config = set(_of_kind("ConfigMap")["caracal-config"]["data"])
    secrets = {key for doc in _documents("secret.example.yaml") for key in doc["stringData"]}
    given = config | secrets | {n for c in _containers().values() for n in _env_names(c)}
    assert not given - known, sorted(given - known)


def test_secrets_come_from_secrets_and_the_admin_token_only_to_the_api() -> None:
    """No secret is a literal in a manifest; every process reads caracal-secrets, only the API the token."""
    shared = {key for doc in _documents("secret.example.yaml") for key in doc["stringData"]}
    assert set(SECRET_VARIABLES) <= shared
    for name, container in _containers().items():
        assert {"secretRef": {"name": "caracal-secrets"}} in container["envFrom"], name
        for item in container.get("env", []):
            assert item["name"] not in (*SECRET_VARIABLES, "CARACAL_ADMIN_TOKEN") or "value" not in item
        has_token = "CARACAL_ADMIN_TOKEN" in _env_names(container)
        assert has_token == (name == "caracal-api"), name


def test_the_api_is_ready_on_ready_and_alive_on_health_on_its_port() -> None:
    api = _containers()["caracal-api"]
    port = next(item["value"] for item in api["env"] if item["name"] == "PORT")
    assert api["ports"] == [{"name": "http", "containerPort": int(port)}]
    assert api["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}


def test_disruption_budgets_cover_the_api_and_the_dispatchers() -> None:
    budgets = {
        b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for b in _of_kind("PodDisruptionBudget").values()
    }
    assert budgets == {"caracal-api", "caracal-dispatcher"}
    for name, deployment in _of_kind("Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(), name


def test_every_container_requests_resources_and_drains_before_it_is_killed() -> None:
    """Requests for scheduling; a grace period longer than CARACAL_SHUTDOWN_TIMEOUT_MS for SIGTERM."""
    shutdown_ms = int(_of_kind("ConfigMap")["caracal-config"]["data"]["CARACAL_SHUTDOWN_TIMEOUT_MS"])
    for name, container in _containers().items():
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
    for name, deployment in _of_kind("Deployment").items():
        assert _pod_spec(deployment)["terminationGracePeriodSeconds"] * 1000 > shutdown_ms, name


def test_api_pods_keep_serving_while_their_endpoints_are_removed_then_drain_in_the_grace_period() -> None:
    """preStop pauses before SIGTERM (endpoint removal is asynchronous); the grace period covers the
    pause and the drain."""
    shutdown_ms = int(_of_kind("ConfigMap")["caracal-config"]["data"]["CARACAL_SHUTDOWN_TIMEOUT_MS"])
    api = _of_kind("Deployment")["caracal-api"]
    container = next(c for c in _pod_spec(api)["containers"] if c["name"] == "api")
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert int(command[1]) >= 3
    assert _pod_spec(api)["terminationGracePeriodSeconds"] * 1000 > int(command[1]) * 1000 + shutdown_ms


def test_the_migration_job_runs_once_with_retries() -> None:
    job = _of_kind("Job")["caracal-migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
    assert job["spec"]["backoffLimit"] >= 1
